"""NumPy reference for :func:`treadlab.kernels.steps.step_metrics` (the specification).

Per foot contact ``i`` (side 0 = left, 1 = right; stance from ``t_strike[i]`` to ``t_off[i]``),
with *stance frames* the angle samples whose time lies in ``[t_strike, t_off]`` (both ends
included) and *valid* meaning finite:

* ``pelvic_drop`` (deg): contralateral pelvic drop, the largest drop of the swing side during
  stance. Obliquity is zeroed on ``static_obliquity_deg`` when given, else on the mean over the
  stride containing the stance (this strike to the next strike of the same foot; for the last
  contact of a foot, the previous strike of that foot to this one). Left stance:
  ``max(obliquity - zero)``; right stance: ``max(-(obliquity - zero))``.
* ``trunk_lean`` (deg): mean trunk lean over stance; ``trunk_lean_midstance``: trunk lean
  interpolated at midstance ``(t_strike + t_off) / 2``.
* ``pelvis_tilt_mean`` (deg): mean pelvis tilt over stance (docs/metrics.md §4, cause 4 context).
* ``overstride`` (mm): heel lead of the striking foot interpolated at ``t_strike``.
* ``shank_angle_ic`` (deg): shank angle of the striking foot interpolated at ``t_strike``.
* ``peak_hip_extension`` (deg): ``-min(hip_flexion_<side>)`` over the frames in
  ``[midstance, t_off]``; when that is NaN, ``-min(thigh_angle_<side>)`` instead, and
  ``peak_hip_extension_source`` says which was used (0 hip angle, 1 thigh angle, -1 none).

A window statistic is NaN when the window holds no frame or fewer than ``min_valid_fraction`` of
its frames are valid (``static``/stride zero included). Interpolation is linear between the two
samples bracketing ``t`` and NaN when either is NaN or ``t`` lies outside the sampled time range.
A column missing from ``angle_names`` gives NaN.
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._steps_common import COLUMNS, OUTPUTS, prepare

__all__ = ["OUTPUTS", "COLUMNS", "prepare", "step_metrics"]

def _window(time, lo, hi, closed=True):
    """Frames with lo <= t <= hi (closed) or lo <= t < hi."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return slice(0, 0)
    end = np.searchsorted(time, hi, "right" if closed else "left")
    return slice(int(np.searchsorted(time, lo, "left")), int(end))


def _enough(x, frac):
    return x.size > 0 and np.isfinite(x).sum() >= frac * x.size and np.isfinite(x).any()


def _interp(time, v, t):
    m = len(time)
    if m == 0 or not np.isfinite(t):
        return np.nan
    if m >= 1 and t == time[-1]:
        return v[-1]
    j = int(np.searchsorted(time, t, "right")) - 1
    if j < 0 or j >= m - 1:
        return np.nan
    w = (t - time[j]) / (time[j + 1] - time[j])
    return v[j] + w * (v[j + 1] - v[j])


def step_metrics(t_strike, t_off, side, angle_time, angle_values, angle_names, *,
                 static_obliquity_deg=None, min_valid_fraction=0.5):
    """Reference implementation; same signature and result as ``steps.step_metrics``."""
    (t_strike, t_off, side, time, values, columns, stride_lo, stride_hi, static,
     frac) = prepare(t_strike, t_off, side, angle_time, angle_values, angle_names,
                     static_obliquity_deg, min_valid_fraction)
    s = len(t_strike)
    out = {name: np.full(s, np.nan) for name in OUTPUTS}
    out["peak_hip_extension_source"] = np.full(s, -1, dtype=np.int8)
    nan_col = np.full(len(time), np.nan)
    col = {name: (values[:, j] if j >= 0 else nan_col) for name, j in zip(COLUMNS, columns)}

    for i in range(s):
        ts, to, foot = t_strike[i], t_off[i], side[i]
        lr = "left" if foot == 0 else "right"
        tm = 0.5 * (ts + to)
        stance = _window(time, ts, to)

        obl = col["pelvis_obliquity"][stance]
        if np.isfinite(static):
            zero = static
        else:
            stride = col["pelvis_obliquity"][_window(time, stride_lo[i], stride_hi[i],
                                                     closed=False)]
            zero = np.nanmean(stride) if _enough(stride, frac) else np.nan
        if _enough(obl, frac) and np.isfinite(zero):
            sign = 1.0 if foot == 0 else -1.0
            out["pelvic_drop"][i] = np.nanmax(sign * (obl - zero))

        for name, key in (("trunk_lean", "trunk_lean"), ("pelvis_tilt_mean", "pelvis_tilt")):
            x = col[key][stance]
            if _enough(x, frac):
                out[name][i] = np.nanmean(x)
        out["trunk_lean_midstance"][i] = _interp(time, col["trunk_lean"], tm)
        out["overstride"][i] = _interp(time, col[f"heel_lead_{lr}"], ts)
        out["shank_angle_ic"][i] = _interp(time, col[f"shank_angle_{lr}"], ts)

        late = _window(time, tm, to)
        for source, key in ((0, f"hip_flexion_{lr}"), (1, f"thigh_angle_{lr}")):
            x = col[key][late]
            if _enough(x, frac):
                out["peak_hip_extension"][i] = -np.nanmin(x)
                out["peak_hip_extension_source"][i] = source
                break
    return out
