"""NumPy reference for :func:`treadlab.kernels.angles.joint_angles` (the specification).

Written for clarity, vectorised over frames; :mod:`treadlab.kernels._angles_cy` must agree with
it to floating-point rounding. The set-up shared by both implementations (which markers exist,
subject measurements and their defaults, the hip-joint-centre offsets, the reasons an angle cannot
be computed) lives here in :func:`resolve_model`; only the per-frame geometry differs.

Conventions (Conventional Gait Model / Plug-in Gait, pyCGM2):

* every segment frame has X anterior, Y to the left, Z proximal/up, for both sides;
* pelvis: origin mid-ASIS, Y = unit(LASI - RASI), X = the part of (mid-ASIS - posterior point)
  orthogonal to Y, Z = X x Y; the posterior point is mid-PSIS, or SACR when a PSIS is missing;
* hip joint centre: Davis et al. 1991 regression in the pelvis frame (pyCGM2 ``davisRegression``);
* knee / ankle joint centres: the CGM chord function (pyCGM2 ``VCMJointCentre``, offset angle 0):
  KJC from (KNE, HJC, THI) at (knee width + marker diameter) / 2, AJC from (ANK, KJC, TIB) at
  (ankle width + marker diameter) / 2;
* thigh: Z = unit(HJC - KJC), Y from KNE - KJC (pointing left), X = Y x Z;
  shank: Z = unit(KJC - AJC), Y from ANK - AJC (pointing left), X = Y x Z;
  foot: X = unit(TOE - HEE) (TOE - AJC without HEE), Z = unit(X x Y_shank), Y = Z x X;
* angles: Cardan Y-X-Z of the distal frame in the proximal one (the pelvis in the lab frame,
  which must be progression aligned: X = direction of travel, Y left, Z up), R = Ry(a) Rx(b) Rz(c);
  pelvis tilt = a, obliquity = b, rotation = -c (Plug-in Gait ``LPelvisAngles``);
  hip flexion = -a, hip adduction = -b (left) / +b (right); knee flexion = +a;
  ankle dorsiflexion = -a (foot in shank);
* trunk lean = sagittal angle of the thorax long axis (mid(T10, STRN) -> mid(C7, CLAV)) from the
  lab vertical, + forward (equal to the first Y-X-Z Cardan angle of the CGM thorax); without the
  four thorax markers, C7 over the pelvis centre;
* pelvis centre = midpoint of mid-ASIS and the posterior point; heel lead = HEE x - pelvis
  centre x (mm);
* shank angle = sagittal angle of KNE -> ANK from the downward vertical, + when the ankle is ahead
  of the knee; thigh angle = sagittal angle of THI -> KNE from the downward vertical, + when the
  knee is ahead (flexion), needing no hip centre.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Angles", "NAMES", "UNITS", "MARKERS", "PARAMS", "resolve_model", "joint_angles"]

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
_COL = {name: i for i, name in enumerate(NAMES)}

#: Marker slots used by the model, in the order of the index table handed to the kernel.
MARKERS = (
    "LASI", "RASI", "LPSI", "RPSI", "SACR",
    "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
    "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE",
    "C7", "T10", "CLAV", "STRN",
)
_SLOT = {name: i for i, name in enumerate(MARKERS)}

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
        Column names (``NAMES``): the DESIGN §4 angles plus ``shank_angle_*``,
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


def _norm_rows(v):
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


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
    positions : ndarray, shape (m, k, 3), float64
        Marker positions, mm, lab frame (X = travel, Y = left, Z = up).
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
    have = {name: index[_SLOT[name]] >= 0 for name in MARKERS}
    if have["LPSI"] and have["RPSI"]:
        index[_SLOT["SACR"]] = -1
        posterior = "mid-PSIS"
    elif have["SACR"]:
        index[_SLOT["LPSI"]] = -1
        index[_SLOT["RPSI"]] = -1
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
        j = index[_SLOT[name]]
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
        d = np.linalg.norm(pa - pb, axis=-1)
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


def _cardan_yxz(r):
    """(a, b, c) of R = Ry(a) Rx(b) Rz(c), radians; r is (m, 3, 3) with axes as columns."""
    a = np.arctan2(r[:, 0, 2], r[:, 2, 2])
    b = np.arcsin(np.clip(-r[:, 1, 2], -1.0, 1.0))
    c = np.arctan2(r[:, 1, 0], r[:, 1, 1])
    return a, b, c


def _frame(x, y, z):
    return np.stack([x, y, z], axis=-1)      # (m, 3, 3), columns = axes


def _relative(prox, dist):
    return np.einsum("mji,mjk->mik", prox, dist)   # prox^T dist


def _chord(radius, joint_marker, top_joint, stick_marker):
    """CGM chord function (pyCGM2 VCMJointCentre with offset angle 0), rows of (m, 3)."""
    x = top_joint - joint_marker
    t = stick_marker - joint_marker
    p = np.cross(x, t)
    e = _norm_rows(np.cross(x, p))
    x2 = np.einsum("ij,ij->i", x, x)
    with np.errstate(invalid="ignore", divide="ignore"):
        l = radius / x2
        m = 1.0 - radius * l
        inside = joint_marker + x * (l * radius)[:, None] + e * (np.sqrt(np.maximum(m, 0.0))
                                                                 * radius)[:, None]
    outside = joint_marker + e * radius
    return np.where((m > 0)[:, None], inside, outside)


def _sagittal_deg(dx, dz):
    return np.degrees(np.arctan2(dx, dz))


def joint_angles(positions, labels, subject=None):
    """Reference implementation; same signature and result as ``angles.joint_angles``."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions must have shape (m, k, 3), got {pos.shape}")
    if pos.shape[1] != len(labels):
        raise ValueError(f"{len(labels)} labels for {pos.shape[1]} markers")
    index, params, attrs, reasons = resolve_model(pos, labels, subject)
    m = pos.shape[0]
    out = np.full((m, len(NAMES)), np.nan)

    def mk(name):
        j = index[_SLOT[name]]
        return pos[:, j, :] if j >= 0 else None

    def put(name, value):
        if name not in reasons:
            out[:, _COL[name]] = value

    lasi, rasi = mk("LASI"), mk("RASI")
    if mk("LPSI") is not None:
        post = 0.5 * (mk("LPSI") + mk("RPSI"))
    else:
        post = mk("SACR")
    pelvis = centre = None
    hjc = {}
    if lasi is not None and rasi is not None and post is not None:
        origin = 0.5 * (lasi + rasi)
        y = _norm_rows(lasi - rasi)
        fwd = origin - post
        x = _norm_rows(fwd - np.einsum("ij,ij->i", fwd, y)[:, None] * y)
        z = np.cross(x, y)
        pelvis = _frame(x, y, z)
        centre = 0.5 * (origin + post)
        a, b, c = _cardan_yxz(pelvis)
        put("pelvis_tilt", np.degrees(a))
        put("pelvis_obliquity", np.degrees(b))
        put("pelvis_rotation", -np.degrees(c))
        for k, side in enumerate(("left", "right")):
            hjc[side] = origin + pelvis @ params[3 * k:3 * k + 3]

    c7 = mk("C7")
    thorax = [mk(n) for n in ("C7", "T10", "CLAV", "STRN")]
    if all(v is not None for v in thorax):
        top = 0.5 * (thorax[0] + thorax[2])
        bottom = 0.5 * (thorax[1] + thorax[3])
        d = top - bottom
        put("trunk_lean", _sagittal_deg(d[:, 0], d[:, 2]))
    elif c7 is not None and centre is not None:
        d = c7 - centre
        put("trunk_lean", _sagittal_deg(d[:, 0], d[:, 2]))

    for k, (side, s, sign) in enumerate((("left", "L", 1.0), ("right", "R", -1.0))):
        thi, kne, tib, ank, hee, toe = (mk(s + n) for n in ("THI", "KNE", "TIB", "ANK", "HEE",
                                                            "TOE"))
        if kne is not None and ank is not None:
            d = ank - kne
            put(f"shank_angle_{side}", _sagittal_deg(d[:, 0], -d[:, 2]))
        if thi is not None and kne is not None:
            d = kne - thi
            put(f"thigh_angle_{side}", _sagittal_deg(d[:, 0], -d[:, 2]))
        if hee is not None and centre is not None:
            put(f"heel_lead_{side}", hee[:, 0] - centre[:, 0])
        if pelvis is None or thi is None or kne is None:
            continue
        kjc = _chord(params[6 + k], kne, hjc[side], thi)
        z = _norm_rows(hjc[side] - kjc)
        v = sign * (kne - kjc)
        y = _norm_rows(v - np.einsum("ij,ij->i", v, z)[:, None] * z)
        thigh = _frame(np.cross(y, z), y, z)
        a, b, _ = _cardan_yxz(_relative(pelvis, thigh))
        put(f"hip_flexion_{side}", -np.degrees(a))
        put(f"hip_adduction_{side}", -sign * np.degrees(b))
        if tib is None or ank is None:
            continue
        ajc = _chord(params[8 + k], ank, kjc, tib)
        z = _norm_rows(kjc - ajc)
        v = sign * (ank - ajc)
        y = _norm_rows(v - np.einsum("ij,ij->i", v, z)[:, None] * z)
        shank = _frame(np.cross(y, z), y, z)
        a, _, _ = _cardan_yxz(_relative(thigh, shank))
        put(f"knee_flexion_{side}", np.degrees(a))
        if toe is None:
            continue
        xf = _norm_rows(toe - (hee if hee is not None else ajc))
        zf = _norm_rows(np.cross(xf, y))
        foot = _frame(xf, np.cross(zf, xf), zf)
        a, _, _ = _cardan_yxz(_relative(shank, foot))
        put(f"ankle_dorsiflexion_{side}", -np.degrees(a))

    return Angles(names=list(NAMES), values=out, reasons=reasons, attrs=attrs,
                  units=dict(UNITS))
