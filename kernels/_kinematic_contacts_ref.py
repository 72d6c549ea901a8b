"""NumPy reference for :func:`treadlab.kernels.kinematic_contacts.kinematic_contacts` (the
specification).

Foot contacts of one foot from the heights of two of its markers (mm, lab Z up, low-pass
filtered): the heel (``HEE``) and a forefoot marker (``TOE``, else a metatarsal head). It is the
fallback for stretches where force cannot time a contact (no force, a contact flagged as a
cross-step or a force drop-out), following the foot-marker approach of Handsaker et al. 2016
(running, heel or forefoot for touchdown, forefoot for toe off) with height thresholds instead of
their acceleration / jerk peaks, which a 12 Hz marker low-pass smears by tens of milliseconds.

Rule (``prepare`` computes the shared set-up):

1. ``low`` = the lower of the two markers in each frame (NaN only when both are). Ground level
   ``level_mm`` = 5th percentile of ``low`` plus ``low_fraction`` of its 5th-95th percentile
   range (unless given). A *ground run* is a maximal run of frames with ``low < level_mm``;
   runs shorter than ``min_frames`` are not contacts (they still bound their neighbours).
2. In each ground run ``[a, b)``: ``lh``/``lf`` = lowest heel / forefoot height in the run;
   ``rel = fmin(heel - lh, fore - lf)`` (each foot marker above its own stance level).
3. Foot strike: from the frame of the run's lowest ``rel`` back towards the end of the previous
   run (or frame 0), the first frame pair where ``rel`` goes from ``>= strike_mm`` to
   ``< strike_mm``; the time is interpolated linearly between the two frames.
4. Toe off: from the frame of the run's lowest forefoot forwards to the start of the next run
   (or the end), the first frame pair where ``fore - lf`` goes from ``<= off_mm`` to
   ``> off_mm``, interpolated.
5. An event whose crossing is not found (gaps, recording edges) is NaN.

Defaults (``strike_mm`` 5, ``off_mm`` 25, ``low_fraction`` 0.2) were chosen on the Fukuchi 2017
cohort against force events (``docs/validation.md`` reports the accuracy per speed).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["STRIKE_MM", "OFF_MM", "LOW_FRACTION", "MIN_CONTACT_S", "prepare",
           "kinematic_contacts"]

STRIKE_MM = 5.0       #: mm above the stance level at which the foot counts as landed
OFF_MM = 25.0         #: mm the forefoot rises above its stance level at toe off
LOW_FRACTION = 0.2    #: ground level: this fraction of the 5-95th percentile height range
MIN_CONTACT_S = 0.1   #: s, shortest ground run that is a contact (the force rule's minimum)


def prepare(time, heel_z, fore_z, strike_mm, off_mm, low_fraction, min_contact_s, level_mm):
    """Validate and normalise; returns ``(time, heel, fore, level_mm, min_frames, strike_mm,
    off_mm)`` with contiguous float64 arrays (``level_mm`` NaN when fewer than 10 frames have
    a foot marker)."""
    time = np.ascontiguousarray(time, dtype=np.float64).reshape(-1)
    heel = np.ascontiguousarray(heel_z, dtype=np.float64).reshape(-1)
    fore = np.ascontiguousarray(fore_z, dtype=np.float64).reshape(-1)
    if not (time.size == heel.size == fore.size):
        raise ValueError(f"time, heel_z and fore_z differ in length: {time.size}, {heel.size}, "
                         f"{fore.size}")
    if time.size > 1 and np.any(np.diff(time) <= 0):
        raise ValueError("time must be strictly increasing")
    for name, v in (("strike_mm", strike_mm), ("off_mm", off_mm)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0 mm, got {v!r}")
    if not 0.0 < float(low_fraction) < 1.0:
        raise ValueError(f"low_fraction must be in (0, 1), got {low_fraction!r}")
    if not (np.isfinite(min_contact_s) and min_contact_s >= 0):
        raise ValueError(f"min_contact_s must be >= 0 s, got {min_contact_s!r}")
    rate = 1.0 / float(np.median(np.diff(time))) if time.size > 1 else 1.0
    min_frames = max(1, int(math.ceil(float(min_contact_s) * rate - 1e-9)))
    if level_mm is None:
        with np.errstate(invalid="ignore"):
            low = np.fmin(heel, fore)
        low = low[np.isfinite(low)]
        if low.size < 10:
            level = math.nan
        else:
            p5, p95 = np.percentile(low, [5.0, 95.0])
            level = float(p5 + float(low_fraction) * (p95 - p5))
    else:
        level = float(level_mm)
    return time, heel, fore, level, min_frames, float(strike_mm), float(off_mm)


def _runs(low, level):
    on = np.isfinite(low) & (low < level)
    d = np.diff(np.concatenate(([0], on.astype(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def kinematic_contacts(time, heel_z, fore_z, *, strike_mm=STRIKE_MM, off_mm=OFF_MM,
                       low_fraction=LOW_FRACTION, min_contact_s=MIN_CONTACT_S, level_mm=None):
    """Reference implementation; same signature and result as
    ``kinematic_contacts.kinematic_contacts``."""
    time, heel, fore, level, min_frames, s_mm, o_mm = prepare(
        time, heel_z, fore_z, strike_mm, off_mm, low_fraction, min_contact_s, level_mm)
    m = time.size
    if not np.isfinite(level) or m == 0:
        return np.zeros(0), np.zeros(0)
    low = np.fmin(heel, fore)
    starts, ends = _runs(low, level)
    t_strike, t_off = [], []
    for k, (a, b) in enumerate(zip(starts, ends)):
        if b - a < min_frames:
            continue
        lo = ends[k - 1] if k > 0 else 0
        hi = starts[k + 1] if k + 1 < len(starts) else m
        h, f = heel[a:b], fore[a:b]
        lh = float(np.min(h[np.isfinite(h)])) if np.isfinite(h).any() else math.nan
        lf = float(np.min(f[np.isfinite(f)])) if np.isfinite(f).any() else math.nan
        rel = np.fmin(heel - lh, fore - lf)
        seg = rel[a:b]
        s = math.nan
        if np.isfinite(seg).any():
            j = a + int(np.nanargmin(seg))
            for i in range(j, lo, -1):
                r0, r1 = rel[i - 1], rel[i]
                if np.isfinite(r0) and np.isfinite(r1) and r0 >= s_mm > r1:
                    s = time[i - 1] + (r0 - s_mm) / (r0 - r1) * (time[i] - time[i - 1])
                    break
        e = math.nan
        if np.isfinite(lf):
            jf = a + int(np.nanargmin(f))
            for i in range(jf + 1, hi):
                f0, f1 = fore[i - 1] - lf, fore[i] - lf
                if np.isfinite(f0) and np.isfinite(f1) and f0 <= o_mm < f1:
                    e = time[i - 1] + (o_mm - f0) / (f1 - f0) * (time[i] - time[i - 1])
                    break
        t_strike.append(s)
        t_off.append(e)
    return np.asarray(t_strike, dtype=np.float64), np.asarray(t_off, dtype=np.float64)
