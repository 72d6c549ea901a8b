"""Foot contacts from foot-marker heights: the fallback when force cannot time a contact.

:func:`kinematic_contacts` validates its input and runs the compiled kernel
:mod:`treadlab.kernels._kinematic_contacts_cy`; the NumPy reference
:func:`treadlab.kernels._kinematic_contacts_ref.kinematic_contacts` has the same signature and
result and its module docstring is the specification (rule, thresholds, their origin).
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._compiled import compiled
from treadlab.kernels._kinematic_contacts_common import (LOW_FRACTION, MIN_CONTACT_S, OFF_MM,
                                                         STRIKE_MM, prepare)

__all__ = ["STRIKE_MM", "OFF_MM", "LOW_FRACTION", "MIN_CONTACT_S", "kinematic_contacts"]


def kinematic_contacts(time, heel_z, fore_z, *, strike_mm=STRIKE_MM, off_mm=OFF_MM,
                       low_fraction=LOW_FRACTION, min_contact_s=MIN_CONTACT_S, level_mm=None):
    """Foot-strike and toe-off times of one foot from its heel and forefoot marker heights.

    Parameters
    ----------
    time : array_like, shape (m,), float64
        Marker frame times, s, strictly increasing.
    heel_z, fore_z : array_like, shape (m,), float
        Height (lab Z, mm) of the heel marker and of a forefoot marker (toe or metatarsal
        head), low-pass filtered; NaN where occluded.
    strike_mm : float, default 5 mm
        Height above the foot's stance level at which it counts as landed.
    off_mm : float, default 25 mm
        Rise of the forefoot above its stance level that marks toe off.
    low_fraction : float, default 0.2
        Ground level for finding stances, as a fraction of the 5th-95th percentile height range.
    min_contact_s : float, default 0.1 s
        Shortest stance counted.
    level_mm : float, optional
        Ground level (mm) instead of the percentile rule (e.g. the level of a whole recording
        when detecting block by block).

    Returns
    -------
    t_strike, t_off : ndarray, shape (c,), float64
        Event times (s, the clock of ``time``) of each stance found, in order; NaN where the
        crossing could not be found (gaps, recording edges).
    """
    time, heel, fore, level, min_frames, s_mm, o_mm = prepare(
        time, heel_z, fore_z, strike_mm, off_mm, low_fraction, min_contact_s, level_mm)
    if time.size == 0 or not np.isfinite(level):
        return np.zeros(0), np.zeros(0)
    cap = time.size // 2 + 1
    ts = np.empty(cap)
    to = np.empty(cap)
    n = compiled("_kinematic_contacts_cy").kinematic_contacts_cy(
        time, heel, fore, level, min_frames, s_mm, o_mm, ts, to)
    return ts[:n].copy(), to[:n].copy()
