"""NumPy reference for :func:`treadlab.kernels.angles.joint_angles` (the specification).

Written for clarity, vectorised over frames; :mod:`treadlab.kernels._angles_cy` must agree with
it to floating-point rounding. The set-up shared by both implementations (which markers exist,
subject measurements and their defaults, the hip-joint-centre offsets, the reasons an angle cannot
be computed) is :func:`treadlab.kernels._angles_common.resolve_model`; the per-frame geometry
below is this module's own, independent of the compiled kernel.

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

import numpy as np

from treadlab.kernels._angles_common import (MARKER_SLOT, MARKERS, NAMES, PARAMS, UNITS, Angles,
                                            resolve_model)

_COL = {name: i for i, name in enumerate(NAMES)}

__all__ = ["Angles", "NAMES", "UNITS", "MARKERS", "PARAMS", "resolve_model", "joint_angles"]


def _norm_rows(v):
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


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
        j = index[MARKER_SLOT[name]]
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
