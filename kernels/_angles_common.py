"""The joint-angle model both implementations share (docs/design.md §11): output columns, marker
slots, subject parameters and their defaults, and :func:`resolve_model`, the set-up step (which
markers exist, subject measurements and their defaults, hip-joint-centre offsets, the reasons an
angle cannot be computed). The per-frame geometry is not here: the public kernel
(``_angles_cy.pyx``) and the NumPy reference (``_angles_ref.py``) each implement it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Angles", "NAMES", "UNITS", "MARKERS", "MARKER_SLOT", "PARAMS", "resolve_model"]

#: Output columns, in order.
NAMES = (
    "pelvis_tilt", "pelvis_obliquity", "pelvis_rotation", "trunk_lean",
    "hip_flexion_left", "hip_flexion_right", "hip_adduction_left", "hip_adduction_right",
    "knee_flexion_left", "knee_flexion_right",
    "ankle_dorsiflexion_left", "ankle_dorsiflexion_right",
    "shank_angle_left", "shank_angle_right", "thigh_angle_left", "thigh_angle_right",
    "heel_lead_left", "heel_lead_right",
)
UNITS = {name: ("mm" if name.startswith("heel_lead") else "deg") for name in NAMES}

#: Marker slots used by the model, in the order of the index table handed to the kernel.
MARKERS = (
    "LASI", "RASI", "LPSI", "RPSI", "SACR",
    "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
    "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE",
    "C7", "T10", "CLAV", "STRN",
)
#: Slot of each marker name in :data:`MARKERS`.
MARKER_SLOT = {name: i for i, name in enumerate(MARKERS)}

#: Model parameters handed to the kernel (float64 vector, this order).
PARAMS = (
    "hjc_left_x", "hjc_left_y", "hjc_left_z", "hjc_right_x", "hjc_right_y", "hjc_right_z",
    "knee_radius_left", "knee_radius_right", "ankle_radius_left", "ankle_radius_right",
)

#: treadlab defaults for measurements a session may lack (stated in ``Angles.attrs``).
DEFAULT_MARKER_DIAMETER_MM = 14.0     # Plug-in Gait / pyCGM2 default
DEFAULT_LEG_LENGTH_MM = 900.0         # used only when neither the subject nor LASI/LANK give one
DEFAULT_KNEE_WIDTH_MM = 100.0         # treadlab default (adult), when not measured
DEFAULT_ANKLE_WIDTH_MM = 70.0         # treadlab default (adult), when not measured


@dataclass
class Angles:
    """Joint and segment angles over a marker recording.

    Attributes
    ----------
    names : list of str
        Column names (``NAMES``): the angles of docs/archive.md §4.2 plus ``shank_angle_*``,
        ``thigh_angle_*`` and ``heel_lead_*``.
    values : ndarray, shape (m, a), float64
        Degrees (``heel_lead_*`` in mm), one row per marker frame; NaN where the markers needed
        are missing at that frame or in the whole recording.
    reasons : dict of str to str
        For every column that cannot be computed at all, why (missing marker labels).
    attrs : dict
        Model settings actually used (hip-joint-centre method, leg lengths, widths, marker
        diameter) and where each came from (``subject`` / ``markers`` / ``default``).
    units : dict of str to str
        Unit of each column (``deg`` or ``mm``).
    """

    names: list
    values: np.ndarray
    reasons: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        """Column ``name`` as a (m,) float64 view."""
        return self.values[:, self.names.index(name)]


def _positive(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def resolve_model(positions: np.ndarray, labels, subject: dict | None):
    """Shared set-up: marker index table, model parameters, attrs and reasons.

    Parameters
    ----------
    positions : ndarray, shape (m, k, 3), float32 or float64
        Marker positions, mm, lab frame (X = travel, Y = left, Z = up); the marker distances
        behind the estimates are computed in float64 either way.
    labels : sequence of str, length k
        CGM marker names (unknown names are ignored).
    subject : dict or None
        Optional measurements (mm): ``leg_length_left_mm``, ``leg_length_right_mm``,
        ``inter_asis_mm``, ``asis_trochanter_left_mm``, ``asis_trochanter_right_mm``,
        ``knee_width_left_mm``, ``knee_width_right_mm``, ``ankle_width_left_mm``,
        ``ankle_width_right_mm``, ``marker_diameter_mm``.

    Returns
    -------
    index : ndarray, shape (len(MARKERS),), int64
        Column of each model marker in ``positions``; -1 when absent. ``SACR`` is -1 when both
        PSIS are present (mid-PSIS is used).
    params : ndarray, shape (len(PARAMS),), float64
        Hip-joint-centre offsets in the pelvis frame (mm) and chord radii (mm).
    attrs : dict
    reasons : dict
    """
    subject = dict(subject or {})
    labels = [str(s) for s in labels]
    where = {}
    for j, name in enumerate(labels):
        where.setdefault(name, j)
    index = np.array([where.get(name, -1) for name in MARKERS], dtype=np.int64)
    have = {name: index[MARKER_SLOT[name]] >= 0 for name in MARKERS}
    if have["LPSI"] and have["RPSI"]:
        index[MARKER_SLOT["SACR"]] = -1
        posterior = "mid-PSIS"
    elif have["SACR"]:
        index[MARKER_SLOT["LPSI"]] = -1
        index[MARKER_SLOT["RPSI"]] = -1
        posterior = "SACR"
    else:
        posterior = None

    attrs = {"model": "CGM1 / Plug-in Gait conventions (treadlab.kernels.angles)",
             "hip_joint_centre": "Davis et al. 1991 regression (pyCGM2 davisRegression)",
             "knee_ankle_joint_centre": "CGM chord function, offset angle 0 (no thigh rotation "
                                        "or tibial torsion offsets)",
             "pelvis_posterior": posterior or "missing",
             "foot_axis": "TOE - HEE (TOE - AJC without HEE), no static offsets"}
    reasons: dict[str, str] = {}

    def col(name):
        j = index[MARKER_SLOT[name]]
        return positions[:, j, :] if j >= 0 else None

    def measure(key, fallback_fn, default, label):
        value = _positive(subject.get(key))
        if value is not None:
            attrs[label] = value
            attrs[label + "_source"] = "subject"
            return value
        value = fallback_fn() if fallback_fn is not None else None
        if value is not None:
            attrs[label] = value
            attrs[label + "_source"] = "markers"
            return value
        attrs[label] = default
        attrs[label + "_source"] = "default"
        return default

    def marker_distance(a, b, q):
        pa, pb = col(a), col(b)
        if pa is None or pb is None or len(positions) == 0:
            return None
        d = np.linalg.norm(np.asarray(pa, np.float64) - pb, axis=-1)   # float64 for float32 input
        d = d[np.isfinite(d)]
        return float(np.percentile(d, q)) if d.size else None

    md = measure("marker_diameter_mm", None, DEFAULT_MARKER_DIAMETER_MM, "marker_diameter_mm")
    # Leg length is ASIS to medial malleolus along the leg; without a measurement the 95th
    # percentile of the ASIS-to-ankle-marker distance (the nearly straight leg) stands in.
    legs = {}
    for side, s in (("left", "L"), ("right", "R")):
        legs[side] = measure(f"leg_length_{side}_mm",
                             lambda s=s: marker_distance(f"{s}ASI", f"{s}ANK", 95.0),
                             DEFAULT_LEG_LENGTH_MM, f"leg_length_{side}_mm")
    iad = measure("inter_asis_mm", lambda: marker_distance("LASI", "RASI", 50.0),
                  np.nan, "inter_asis_mm")
    mean_leg = 0.5 * (legs["left"] + legs["right"])
    c = mean_leg * 0.115 - 15.3
    theta, beta = 0.5, 0.314
    hjc = []
    for side, sign in (("left", 1.0), ("right", -1.0)):
        at = _positive(subject.get(f"asis_trochanter_{side}_mm"))
        if at is None:
            at = 0.1288 * legs[side] - 48.56
        attrs[f"asis_trochanter_{side}_mm"] = at
        x = c * np.cos(theta) * np.sin(beta) - (at + md / 2.0) * np.cos(beta)
        y = sign * (iad / 2.0 - c * np.sin(theta))
        z = -c * np.cos(theta) * np.cos(beta) - (at + md / 2.0) * np.sin(beta)
        hjc += [x, y, z]
    knee_w = [measure(f"knee_width_{side}_mm", None, DEFAULT_KNEE_WIDTH_MM,
                      f"knee_width_{side}_mm") for side in ("left", "right")]
    ankle_w = [measure(f"ankle_width_{side}_mm", None, DEFAULT_ANKLE_WIDTH_MM,
                       f"ankle_width_{side}_mm") for side in ("left", "right")]
    params = np.array(hjc + [(w + md) / 2.0 for w in knee_w] + [(w + md) / 2.0 for w in ankle_w],
                      dtype=np.float64)

    # Reasons: which columns need which markers.
    def missing(*names):
        return [n for n in names if not have[n]]

    pelvis_missing = missing("LASI", "RASI") + ([] if posterior else ["LPSI+RPSI or SACR"])
    if pelvis_missing:
        why = "missing pelvis markers: " + ", ".join(pelvis_missing)
        for name in ("pelvis_tilt", "pelvis_obliquity", "pelvis_rotation"):
            reasons[name] = why
    thorax = missing("C7", "T10", "CLAV", "STRN")
    if not thorax:
        attrs["trunk_lean_method"] = "CGM thorax: mid(T10,STRN) -> mid(C7,CLAV)"
    elif have["C7"] and not pelvis_missing:
        attrs["trunk_lean_method"] = "C7 over the pelvis centre"
    else:
        attrs["trunk_lean_method"] = "none"
        need = ", ".join(thorax) if not have["C7"] else ", ".join(pelvis_missing)
        reasons["trunk_lean"] = ("no trunk markers: needs C7 T10 CLAV STRN, or C7 and the pelvis"
                                 f" (missing: {need})")
    pelvis_markers_missing = pelvis_missing
    if not np.isfinite(iad) and not pelvis_missing:
        pelvis_missing = ["inter-ASIS distance (LASI, RASI never seen)"]
    for side, s in (("left", "L"), ("right", "R")):
        hip = pelvis_missing + missing(f"{s}THI", f"{s}KNE")
        if hip:
            why = "missing " + ", ".join(hip) + " (needs the pelvis, hip and knee centres)"
            reasons[f"hip_flexion_{side}"] = why
            reasons[f"hip_adduction_{side}"] = why
        knee = hip + missing(f"{s}TIB", f"{s}ANK")
        if knee:
            reasons[f"knee_flexion_{side}"] = ("missing " + ", ".join(knee)
                                               + " (needs the thigh and shank frames)")
        ankle = knee + missing(f"{s}TOE")
        if ankle:
            reasons[f"ankle_dorsiflexion_{side}"] = ("missing " + ", ".join(ankle)
                                                     + " (needs the shank and foot frames)")
        if missing(f"{s}KNE", f"{s}ANK"):
            reasons[f"shank_angle_{side}"] = "missing " + ", ".join(missing(f"{s}KNE", f"{s}ANK"))
        if missing(f"{s}THI", f"{s}KNE"):
            reasons[f"thigh_angle_{side}"] = "missing " + ", ".join(missing(f"{s}THI", f"{s}KNE"))
        heel = pelvis_markers_missing + missing(f"{s}HEE")
        if heel:
            reasons[f"heel_lead_{side}"] = "missing " + ", ".join(heel)
    return index, params, attrs, reasons
