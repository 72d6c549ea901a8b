"""NumPy reference for per-contact force metrics: the specification of ``_forces_cy``.

For each contact the stance samples are ``[i_strike, i_off)`` (``Contacts`` convention). NaN
samples are left out: peaks ignore them and the integrals bridge them linearly (trapezoid
between the valid neighbours). All outputs are divided by the body weight ``bw`` (N).

- ``peak_vgrf``: max Fz. ``peak_braking``: min Fx (negative while braking).
- ``braking_impulse`` / ``propulsive_impulse``: trapezoid rule over the valid samples of
  ``min(Fx, 0)`` / ``max(Fx, 0)``, ``dt = 1/rate_hz`` per sample step. Their sum is exactly the
  trapezoid integral of Fx over stance.
- impact peak: scanning Fz forward from the strike sample with its running maximum ``m``, the
  first time Fz falls to ``m - impact_drop_bw·bw`` or lower, before the sample of the stance
  maximum, ``m`` is the impact peak. No such fall = no impact peak.
- ``loading_rate`` with an impact peak ``P``: ``0.6 P / (t80 - t20)``, where ``t20``/``t80`` are
  the first times after the strike at which Fz reaches 20 % / 80 % of ``P``, each interpolated
  linearly between the sample below the level and the first sample at or above it (NaN when
  ``t80 <= t20``).
- without an impact peak, ``loading_rate_fallback`` is True and the rate is
  ``(Fz[a] - Fz[b]) / (b - a)·rate`` over the samples ``a = i_strike + round(w0·rate)``,
  ``b = i_strike + round(w1·rate)`` (``fallback_window_s = (w0, w1)``, clipped to stance; NaN
  when fewer than 2 samples or either end is NaN).
A contact with no valid sample gets NaN everywhere (``loading_rate_fallback`` False).
"""
from __future__ import annotations

import numpy as np


def force_metrics(fx, fz, rate_hz, i_strike, i_off, body_weight_n, *, impact_drop_bw=0.05,
                  fallback_window_s=(0.01, 0.04)):
    """Reference of :func:`treadlab.kernels.forces.force_metrics` (same signature)."""
    fx = np.asarray(fx, np.float64)
    fz = np.asarray(fz, np.float64)
    i_strike = np.asarray(i_strike, np.int64)
    i_off = np.asarray(i_off, np.int64)
    bw = float(body_weight_n)
    dt = 1.0 / float(rate_hz)
    c = i_strike.size
    out = {k: np.full(c, np.nan) for k in ("peak_vgrf", "loading_rate", "peak_braking",
                                            "braking_impulse", "propulsive_impulse",
                                            "impact_peak")}
    out["loading_rate_fallback"] = np.zeros(c, bool)
    w0 = int(round(fallback_window_s[0] * rate_hz))
    w1 = int(round(fallback_window_s[1] * rate_hz))
    for j in range(c):
        a, b = int(i_strike[j]), int(i_off[j])
        x, z = fx[a:b], fz[a:b]
        ok_x = ~np.isnan(x)
        if ok_x.any():
            xv = x[ok_x]
            steps = np.diff(np.flatnonzero(ok_x)) * dt
            neg, pos = np.minimum(xv, 0.0), np.maximum(xv, 0.0)
            out["peak_braking"][j] = xv.min() / bw
            out["braking_impulse"][j] = np.sum(steps * (neg[:-1] + neg[1:]) / 2) / bw
            out["propulsive_impulse"][j] = np.sum(steps * (pos[:-1] + pos[1:]) / 2) / bw
        if np.isnan(z).all():
            continue
        k_max = int(np.nanargmax(z))
        out["peak_vgrf"][j] = z[k_max] / bw
        impact = _impact_peak(z[:k_max], impact_drop_bw * bw)
        if impact is not None:
            out["impact_peak"][j] = impact / bw
            t20 = _first_crossing(z, 0.2 * impact)
            t80 = _first_crossing(z, 0.8 * impact)
            if t80 > t20:
                out["loading_rate"][j] = 0.6 * impact / ((t80 - t20) * dt) / bw
        else:
            out["loading_rate_fallback"][j] = True
            lo, hi = w0, min(w1, z.size - 1)
            if hi > lo:
                out["loading_rate"][j] = (z[hi] - z[lo]) / ((hi - lo) * dt) / bw
    return out


def _impact_peak(z, drop):
    """Running max ``m`` of ``z``; the first value <= ``m - drop`` makes ``m`` the impact peak."""
    if z.size == 0:
        return None
    m = np.fmax.accumulate(z)                  # NaN-skipping running maximum
    fell = np.flatnonzero(z <= m - drop)
    return float(m[fell[0]]) if fell.size else None


def _first_crossing(z, level):
    """Fractional sample position where ``z`` first reaches ``level`` (interpolated from the
    previous sample when it is valid and below; the sample itself otherwise)."""
    k = int(np.flatnonzero(z >= level)[0])
    if k == 0 or np.isnan(z[k - 1]):
        return float(k)
    return (k - 1) + (level - z[k - 1]) / (z[k] - z[k - 1])
