"""The ``treadlab.session`` v1 archive (DESIGN §4): in-memory dataclasses, reader and writer.

Lab frame: X = direction of travel, Y = left, Z = up; positions in mm, forces in N, moments in
N·m, times in float64 seconds on the session clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FORMAT = "treadlab.session"
FORMAT_VERSION = 1


@dataclass
class ForceData:
    """Force-plate stream.

    time : (n,) float64, s, session clock.
    wrench : (n, p, 6) float32, [Fx, Fy, Fz, Mx, My, Mz] in N and N·m, lab frame, the ground
        reaction acting on the body (Fz > 0 in stance, Fx < 0 while braking), moments about each
        plate's ``origin``.
    rate_hz : nominal sample rate (Hz).
    plates : p plate names.
    origin : (p, 3) float64 mm, lab frame. corners : (p, 4, 3) float64 mm, lab frame.
    counts : (n, c) int16/int32 raw ADC counts, when recorded live.
    calibration : {"volts_per_count": float, "zero": (c,) counts, "channels": (p, 6) int,
        "matrix": (p, 6, 6) volts → N, N·m}, the calibration used to make ``wrench``.
    device_time : (n,) float64 s, the raw device clock (kept so alignment can be redone).
    """

    time: np.ndarray
    wrench: np.ndarray
    rate_hz: float
    plates: list[str]
    origin: np.ndarray
    corners: np.ndarray
    counts: np.ndarray | None = None
    calibration: dict | None = None
    device_time: np.ndarray | None = None


@dataclass
class MarkerData:
    """Marker stream.

    time : (m,) float64 s, session clock.
    positions : (m, k, 3) float32 mm, lab frame; NaN = occluded.
    labels : k marker names (CGM names where known, others kept).
    rate_hz : nominal frame rate (Hz).
    device_time : (m,) float64 s, the raw device clock, when recorded live.
    """

    time: np.ndarray
    positions: np.ndarray
    labels: list[str]
    rate_hz: float
    device_time: np.ndarray | None = None


@dataclass
class Session:
    """One session: root attributes, the raw streams and the optional groups.

    attrs : root attributes of DESIGN §4; the writer fills ``format``, ``format_version``,
        ``session_id``, ``created_utc`` and ``software`` when missing.
    log : acquisition events ``(time s, source, kind, detail)``.
    subject : anthropometrics stored as ``/subject`` attributes (all optional, mm):
        ``leg_length_left_mm``, ``leg_length_right_mm``, ``inter_asis_mm``,
        ``knee_width_left_mm`` …, ``ankle_width_left_mm`` …, ``marker_diameter_mm``, ``height_mm``.
    truth : ``/truth`` (simulator only): ``{"params": {...}, "steps": {name: (s,) array}}``.
    reference : ``/reference`` (import only): ``{"events": {"time", "side", "kind", "source"},
        "points": {label: (m, 3) float32}}``.
    derived : ``/derived`` when read with ``derived=True``.
    """

    attrs: dict
    force: ForceData
    markers: MarkerData
    log: list = field(default_factory=list)
    subject: dict = field(default_factory=dict)
    truth: dict | None = None
    reference: dict | None = None
    derived: dict | None = None
