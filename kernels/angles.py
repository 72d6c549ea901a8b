"""Joint and segment angles from CGM / Plug-in Gait markers (docs/archive.md §4.2, docs/metrics.md §1, §4).

:func:`joint_angles` validates its input, resolves the model (which markers exist, subject
measurements and the defaults standing in for missing ones, the Davis hip-joint-centre offsets)
and runs the per-frame geometry in the compiled kernel :mod:`treadlab.kernels._angles_cy`.
:func:`treadlab.kernels._angles_ref.joint_angles` is the NumPy reference with the same signature
and result; its module docstring is the specification of every axis, sign and fallback.

Accuracy against Vicon Plug-in Gait (tests/kernels/test_angles.py, the public Plug-in Gait
walking sample recordings): pelvis angles to 1e-5 degrees RMS; hip flexion within 1 degree RMS
with the file's subject measurements (Plug-in Gait's static thigh-rotation / tibial-torsion offsets
are not modelled).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from treadlab.kernels._compiled import compiled
from treadlab.kernels._angles_common import (MARKERS, NAMES, PARAMS, UNITS, Angles,
                                             resolve_model)

__all__ = ["Angles", "MARKERS", "NAMES", "UNITS", "joint_angles", "resolve_model"]



def joint_angles(positions, labels, subject=None):
    """Pelvis, trunk, hip, knee and ankle angles, plus the 2-D running measures, per frame.

    Parameters
    ----------
    positions : ndarray, shape (m, k, 3), float32 or float64
        Marker positions in mm in the progression-aligned lab frame (X = direction of travel,
        Y = left, Z = up); NaN where a marker is occluded (fill gaps first:
        :func:`treadlab.kernels.gaps.fill_gaps`). float32 and float64 are read as they are (no
        float64 copy); other floating types are converted to float64.
    labels : sequence of str, length k
        Marker names; CGM names (``LASI RASI LPSI RPSI SACR LTHI LKNE LTIB LANK LHEE LTOE``,
        ``R…``, ``C7 T10 CLAV STRN``) are used, others ignored.
    subject : mapping, optional
        Measurements in mm, each optional: ``leg_length_left_mm``, ``leg_length_right_mm``,
        ``inter_asis_mm``, ``asis_trochanter_left_mm``, ``asis_trochanter_right_mm``,
        ``knee_width_left_mm``, ``knee_width_right_mm``, ``ankle_width_left_mm``,
        ``ankle_width_right_mm``, ``marker_diameter_mm``. Missing ones are replaced, in order,
        by an estimate from the markers (leg length: 95th percentile of the ASIS–ankle-marker
        distance; inter-ASIS: median LASI–RASI distance) or a treadlab default (leg length
        900 mm, knee width 100 mm, ankle width 70 mm, marker diameter 14 mm); ``Angles.attrs``
        records each value used and its source.

    Returns
    -------
    Angles
        ``names`` (``NAMES``), ``values`` (m, a) float64 — degrees, ``heel_lead_*`` in mm —,
        ``reasons`` {name: why it is all NaN}, ``attrs`` (model settings), ``units``.
        Signs (Plug-in Gait, left-side conventions): pelvis tilt + anterior, obliquity + left
        side up, rotation + left side forward; hip flexion, hip adduction, knee flexion, ankle
        dorsiflexion +; ``trunk_lean`` + forward (CGM thorax long axis, else C7 over the pelvis
        centre); ``shank_angle_*`` + ankle ahead of knee; ``thigh_angle_*`` + knee ahead of the
        thigh marker; ``heel_lead_*`` = heel X − pelvis centre X.
    """
    pos = np.asarray(positions)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions must have shape (m, k, 3), got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.floating):
        raise TypeError(f"positions must be floating point (mm), got {pos.dtype}")
    labels = [str(s) for s in labels]
    if pos.shape[1] != len(labels):
        raise ValueError(f"{len(labels)} labels for {pos.shape[1]} markers")
    if subject is not None and not isinstance(subject, Mapping):
        raise TypeError(f"subject must be a mapping or None, got {type(subject).__name__}")
    cy = compiled("_angles_cy")
    # the kernel reads float32 and float64 as they are: no widened copy of the recording
    pos = np.ascontiguousarray(pos, dtype=pos.dtype if pos.dtype in (np.float32, np.float64)
                               else np.float64)
    index, params, attrs, reasons = resolve_model(pos, labels, subject)
    enabled = np.array([name not in reasons for name in NAMES], dtype=np.uint8)
    out = np.full((pos.shape[0], len(NAMES)), np.nan)
    assert len(index) == len(MARKERS) and len(params) == len(PARAMS)
    cy.joint_angles_cy(pos, np.ascontiguousarray(index, dtype=np.int64),
                               np.ascontiguousarray(params), enabled, out)
    return Angles(names=list(NAMES), values=out, reasons=reasons, attrs=attrs,
                  units=dict(UNITS))
