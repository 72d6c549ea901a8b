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

from treadlab.kernels._kinematic_contacts_common import (LOW_FRACTION, MIN_CONTACT_S, OFF_MM,
                                                         STRIKE_MM, prepare)

__all__ = ["STRIKE_MM", "OFF_MM", "LOW_FRACTION", "MIN_CONTACT_S", "prepare",
           "kinematic_contacts"]



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
