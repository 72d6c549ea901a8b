"""Per-step running metrics joining foot contacts and joint angles (docs/metrics.md §4).

:func:`step_metrics` validates its input and runs the per-contact windows in the compiled kernel
:mod:`treadlab.kernels._steps_cy`; :func:`treadlab.kernels._steps_ref.step_metrics` is the NumPy
reference with the same signature and result, and its module docstring is the specification.
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._compiled import compiled
from treadlab.kernels._steps_common import COLUMNS, HIP_AFTER_OFF_S, OUTPUTS, prepare

__all__ = ["OUTPUTS", "HIP_AFTER_OFF_S", "step_metrics"]



def step_metrics(t_strike, t_off, side, angle_time, angle_values, angle_names, *,
                 static_obliquity_deg=None, min_valid_fraction=0.5,
                 hip_after_off_s=HIP_AFTER_OFF_S):
    """Per-contact metrics for the four causes of running-related low back pain.

    Parameters
    ----------
    t_strike, t_off : array_like, shape (s,), float64
        Foot-strike and toe-off times of each contact, s, session clock.
    side : array_like, shape (s,), int
        0 = left foot, 1 = right foot.
    angle_time : array_like, shape (m,), float64
        Time of each angle frame, s, session clock, non-decreasing.
    angle_values : array_like, shape (m, a), float64 or float32
        Angles as returned by :func:`treadlab.kernels.angles.joint_angles` (degrees; heel lead
        in mm), NaN where unknown. Computed in float64 either way (a float32 table is read as
        it is, not copied).
    angle_names : sequence of str, length a
        Column names; used: ``pelvis_obliquity``, ``pelvis_tilt``, ``trunk_lean``,
        ``heel_lead_*``, ``shank_angle_*``, ``hip_flexion_*``, ``thigh_angle_*``. Missing
        columns give NaN metrics.
    static_obliquity_deg : float, optional
        Pelvic obliquity of a static trial, degrees; zeroes obliquity instead of the stride mean.
    min_valid_fraction : float, default 0.5
        A window statistic needs at least this fraction of its frames finite, else it is NaN.
    hip_after_off_s : float, default ``HIP_AFTER_OFF_S`` (0.10 s)
        The peak-hip-extension window runs from midstance to ``t_off + hip_after_off_s``
        (s): through toe off into early swing, where the peak lies in running.

    Returns
    -------
    dict of str to ndarray, each shape (s,)
        ``pelvic_drop`` (deg, contralateral pelvic drop, + = swing side lower),
        ``trunk_lean`` (deg, mean over stance, + forward), ``trunk_lean_midstance`` (deg),
        ``pelvis_tilt_mean`` (deg, mean over stance, + anterior), ``overstride`` (mm, heel lead
        of the striking foot at strike), ``shank_angle_ic`` (deg, + ankle ahead of knee),
        ``peak_hip_extension`` (deg, midstance to toe off + ``hip_after_off_s``, + extension)
        — all float64, NaN where the inputs are missing — and ``peak_hip_extension_source``
        (int8: 0 = 3-D hip angle, 1 = 2-D thigh angle fallback, -1 = none).
    """
    (t_strike, t_off, side, time, values, columns, stride_lo, stride_hi, static,
     frac, after) = prepare(t_strike, t_off, side, angle_time, angle_values, angle_names,
                            static_obliquity_deg, min_valid_fraction, hip_after_off_s,
                            keep_float32=True)
    cy = compiled("_steps_cy")
    s = len(t_strike)
    out = np.full((len(OUTPUTS) - 1, s), np.nan)
    source = np.full(s, -1, dtype=np.int8)
    assert len(columns) == len(COLUMNS)
    cy.step_metrics_cy(t_strike, t_off, side, time, values, columns, stride_lo,
                              stride_hi, static, frac, after, out, source)
    result = {name: out[k].copy() for k, name in enumerate(OUTPUTS[:-1])}
    result["peak_hip_extension_source"] = source
    return result
