"""What :mod:`treadlab.kernels.kinematic_contacts` and its NumPy reference share: the default
thresholds and :func:`prepare`, the validation and normalisation of the inputs. The rule itself
(``_kinematic_contacts_ref.py`` is its specification) is implemented by each on its own.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["STRIKE_MM", "OFF_MM", "LOW_FRACTION", "MIN_CONTACT_S", "prepare"]

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
    step = np.diff(time)
    if time.size > 1 and step.min() <= 0:
        raise ValueError("time must be strictly increasing")
    for name, v in (("strike_mm", strike_mm), ("off_mm", off_mm)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be > 0 mm, got {v!r}")
    if not 0.0 < float(low_fraction) < 1.0:
        raise ValueError(f"low_fraction must be in (0, 1), got {low_fraction!r}")
    if not (np.isfinite(min_contact_s) and min_contact_s >= 0):
        raise ValueError(f"min_contact_s must be >= 0 s, got {min_contact_s!r}")

    def frames(step_s):  # shortest contact in frames at 1 / step_s frames per second
        return max(1, int(math.ceil(float(min_contact_s) * (1.0 / step_s) - 1e-9)))

    if time.size > 1:
        # at the median frame step; frames() falls as the step grows, so when the longest
        # and the shortest step give one count the median gives it too, without a sort
        fewest, most = frames(float(step.max())), frames(float(step.min()))
        min_frames = fewest if fewest == most else frames(float(np.median(step)))
    else:
        min_frames = frames(1.0)
    if level_mm is None:
        with np.errstate(invalid="ignore"):
            low = np.fmin(heel, fore)
        low = low[np.isfinite(low)]
        if low.size < 10:
            level = math.nan
        else:
            p5, p95 = np.percentile(low, [5.0, 95.0], overwrite_input=True)  # low: a copy
            level = float(p5 + float(low_fraction) * (p95 - p5))
    else:
        level = float(level_mm)
    return time, heel, fore, level, min_frames, float(strike_mm), float(off_mm)
