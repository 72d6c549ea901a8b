"""What the per-step kernel's public module and its NumPy reference share (docs/design.md §11):
the output and input column names and :func:`prepare`, the validation and normalisation of the
inputs. The per-contact windows are not here: ``_steps_cy.pyx`` and ``_steps_ref.py`` each
implement them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["OUTPUTS", "COLUMNS", "HIP_AFTER_OFF_S", "prepare"]

#: Default end of the peak-hip-extension window after toe off (s): past the peak on every
#: contact of the cohort (latest peak 54 ms at the 99th percentile), before the hip flexes far.
HIP_AFTER_OFF_S = 0.10

#: Per-contact outputs (all float64 except the int8 source flag).
OUTPUTS = ("pelvic_drop", "trunk_lean", "trunk_lean_midstance", "pelvis_tilt_mean", "overstride",
           "shank_angle_ic", "peak_hip_extension", "peak_hip_extension_source")

#: Angle columns used, in the order of the column table handed to the kernel.
COLUMNS = ("pelvis_obliquity", "trunk_lean", "pelvis_tilt",
           "heel_lead_left", "heel_lead_right", "shank_angle_left", "shank_angle_right",
           "hip_flexion_left", "hip_flexion_right", "thigh_angle_left", "thigh_angle_right")


def prepare(t_strike, t_off, side, angle_time, angle_values, angle_names, static_obliquity_deg,
            min_valid_fraction, hip_after_off_s=HIP_AFTER_OFF_S, keep_float32=False):
    """Validate and normalise the inputs shared by both implementations.

    Returns ``(t_strike, t_off, side, time, values, columns, stride_lo, stride_hi, static,
    min_valid_fraction, hip_after_off_s)``: float64/int64 contiguous arrays, ``columns`` (len(COLUMNS),) int64
    index into ``values`` or -1, and the stride bounds (s,) float64 (NaN when no stride).
    ``keep_float32``: float32 ``angle_values`` stay float32 (the compiled kernel reads them
    as float64 values itself; no float64 copy of the table).
    """
    t_strike = np.ascontiguousarray(t_strike, dtype=np.float64).reshape(-1)
    t_off = np.ascontiguousarray(t_off, dtype=np.float64).reshape(-1)
    side = np.ascontiguousarray(side).reshape(-1)
    if not (len(t_strike) == len(t_off) == len(side)):
        raise ValueError(f"t_strike, t_off and side differ in length: {len(t_strike)}, "
                         f"{len(t_off)}, {len(side)}")
    if side.size and not np.isin(side, (0, 1)).all():
        raise ValueError("side must hold 0 (left) or 1 (right)")
    side = side.astype(np.int64)
    time = np.ascontiguousarray(angle_time, dtype=np.float64).reshape(-1)
    values = np.asarray(angle_values)
    if not (keep_float32 and values.dtype == np.float32):
        values = values.astype(np.float64, copy=False)
    if values.ndim != 2 or values.shape[0] != len(time):
        raise ValueError(f"angle_values must have shape (m, a) with m = len(angle_time) = "
                         f"{len(time)}, got {values.shape}")
    names = [str(n) for n in angle_names]
    if len(names) != values.shape[1]:
        raise ValueError(f"{len(names)} angle_names for {values.shape[1]} columns")
    if len(time) > 1 and np.any(np.diff(time) < 0):
        raise ValueError("angle_time must be non-decreasing")
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    hip_after_off_s = float(hip_after_off_s)
    if not (np.isfinite(hip_after_off_s) and hip_after_off_s >= 0.0):
        raise ValueError(f"hip_after_off_s must be >= 0 s, got {hip_after_off_s}")
    values = np.ascontiguousarray(values)
    columns = np.array([names.index(n) if n in names else -1 for n in COLUMNS], dtype=np.int64)
    static = np.nan if static_obliquity_deg is None else float(static_obliquity_deg)

    s = len(t_strike)
    stride_lo = np.full(s, np.nan)
    stride_hi = np.full(s, np.nan)
    for foot in (0, 1):
        idx = np.flatnonzero(side == foot)
        idx = idx[np.argsort(t_strike[idx], kind="stable")]
        if idx.size < 2:
            continue
        # this strike to the next of the same foot; the last: the previous one to this
        stride_lo[idx[:-1]], stride_hi[idx[:-1]] = t_strike[idx[:-1]], t_strike[idx[1:]]
        stride_lo[idx[-1]], stride_hi[idx[-1]] = t_strike[idx[-2]], t_strike[idx[-1]]
    return (t_strike, t_off, side, time, values, columns, stride_lo, stride_hi, static,
            float(min_valid_fraction), hip_after_off_s)
