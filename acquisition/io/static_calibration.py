"""Static calibration by the cluster technique (CAST, Cappozzo et al. 1995).

Running trials often carry rigid marker *clusters* on the thigh and shank but not the
anatomical markers of the Conventional Gait Model (knee, ankle), which fall off or get in the
way when running. A static standing trial carries both. :func:`calibrate_static` expresses
every anatomical marker of a segment in the local frame of that segment's cluster (mm);
:func:`apply_static` rebuilds them in each frame of a running trial from the cluster's pose,
found by a least-squares rigid fit (Kabsch / SVD, batched over all frames) of the cluster
markers that are visible in that frame (at least 3; NaN otherwise), and adds them to the
session as virtual markers under CGM names so :func:`treadlab.kernels.angles.joint_angles`
can build the thigh and shank.

Virtual markers added (left shown; right uses R…), each only where the session lacks it:

* ``LKNE`` = the lateral femoral epicondyle marker of the static trial (``L.Knee``);
* ``LANK`` = the lateral malleolus marker (``L.Ankle``);
* ``LTHI`` = a *reconstructed* point, not a cluster marker: in the static trial, the point
  halfway between the lateral epicondyle and the hip joint centre (Davis regression in the
  static pelvis, as the angle kernel computes it), moved laterally by the knee width at right
  angles to that line *within the plane of hip centre, lateral and medial epicondyle*;
* ``LTIB`` = likewise, halfway between the lateral malleolus and the knee joint centre
  (midpoint of the epicondyle markers), moved laterally by the ankle width within the plane
  of knee centre, lateral and medial malleolus;
* the other anatomical markers of the static trial under their own names (``L.Knee.Medial``,
  ``L.GTR``, ``L.Ankle.Medial``, ``L.TT``, ``L.HF``), for inspection.

Why a reconstructed ``THI``/``TIB`` and not a cluster marker: the CGM chord function puts the
knee centre in the plane (hip centre, ``KNE``, ``THI``), so that plane is the thigh's frontal
plane and fixes the knee flexion axis. A cluster marker lies wherever the plate was strapped
(often anterolateral), which would rotate the knee axis by tens of degrees; the reconstructed
point makes the plane contain both epicondyles in the static trial, i.e. the knee axis is the
epicondylar axis (the same for the ankle with the malleoli). Being on the thigh's long axis
laterally, its sagittal projection also gives the 2-D thigh angle (``THI`` → ``KNE``).
Without pelvis markers in the static trial the greater trochanter (``L.GTR``) stands in for
the hip centre (recorded in ``static_calibration_thigh_proximal``).

Frames: positions are mm in the lab frame of each trial (X travel, Y left, Z up, as the C3D
importer maps them); the cluster-local frame is independent of the lab frame, so the static
and running trials may be mapped differently, provided both mappings are proper rotations.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from treadlab.config.errors import InputError
from treadlab.config.markers import to_cgm
from treadlab.kernels.angles import joint_angles, resolve_model

log = logging.getLogger(__name__)

__all__ = ["Segment", "DEFAULT_SEGMENTS", "StaticCalibration", "calibrate_static",
           "apply_static", "fit_clusters", "reconstruct_markers", "static_values"]


@dataclass(frozen=True)
class Segment:
    """One segment's cluster and the anatomical markers calibrated in its frame.

    Marker names are as recorded (dotted Fukuchi names); they are looked up in a session
    after mapping through :func:`treadlab.config.markers.to_cgm` (``L.Knee`` → ``LKNE``,
    ``L.Ankle`` → ``LANK``; names without an alias are kept).

    Attributes
    ----------
    name : str
        Segment name, e.g. ``"left_thigh"``.
    side : str
        ``"L"`` or ``"R"``.
    kind : str
        ``"thigh"`` or ``"shank"``: which CGM wand marker (``THI`` / ``TIB``) is built.
    cluster : tuple of str
        Technical cluster markers (≥ 3, not collinear), present in static and dynamic trials.
    anatomical : tuple of str
        Anatomical markers of the static trial carried by the cluster (those present are used).
    lateral, medial : str
        Lateral and medial landmark of the segment's distal joint (epicondyles for the thigh,
        malleoli for the shank): they define the joint width and the wand marker's plane.
    wand : str
        CGM name of the wand marker built (``LTHI`` …).
    """

    name: str
    side: str
    kind: str
    cluster: tuple
    anatomical: tuple
    lateral: str
    medial: str
    wand: str


def _fukuchi(side: str) -> tuple:
    s = side
    return (
        Segment(f"{'left' if s == 'L' else 'right'}_thigh", s, "thigh",
                tuple(f"{s}.Thigh.{a}.{b}" for a in ("Top", "Bottom") for b in ("Lateral",
                                                                                 "Medial")),
                (f"{s}.Knee", f"{s}.Knee.Medial", f"{s}.GTR"),
                f"{s}.Knee", f"{s}.Knee.Medial", f"{s}THI"),
        Segment(f"{'left' if s == 'L' else 'right'}_shank", s, "shank",
                tuple(f"{s}.Shank.{a}.{b}" for a in ("Top", "Bottom") for b in ("Lateral",
                                                                                 "Medial")),
                (f"{s}.Ankle", f"{s}.Ankle.Medial", f"{s}.TT", f"{s}.HF"),
                f"{s}.Ankle", f"{s}.Ankle.Medial", f"{s}TIB"),
    )


#: The segment table: the four-marker thigh and shank clusters of the Fukuchi, Fukuchi &
#: Duarte 2017 treadmill running data (RBDS). Add other cluster marker sets as further
#: :class:`Segment` tuples (names as recorded).
DEFAULT_SEGMENTS: tuple = _fukuchi("L") + _fukuchi("R")


@dataclass
class StaticCalibration:
    """Result of :func:`calibrate_static`.

    Attributes
    ----------
    source : str
        File name of the static trial.
    segments : tuple of Segment
        The segments calibrated (those whose cluster the static trial holds).
    cluster_local : dict of str to ndarray
        Segment name → (c, 3) float64 cluster markers in the cluster-local frame (mm), in the
        order of ``Segment.cluster``; NaN for a marker the static trial lacks (≥ 3 present).
    anatomical_local : dict of str to dict of str to ndarray
        Segment name → {CGM-mapped marker name → (3,) float64 position in the cluster-local
        frame (mm)}, including the wand marker (``LTHI`` …).
    subject : dict
        Static measurements (mm): ``knee_width_*_mm``, ``ankle_width_*_mm``,
        ``leg_length_*_mm``, ``inter_asis_mm``, ``marker_diameter_mm`` (if the static file
        states it); only those the static trial allows.
    pelvic_obliquity_deg : float
        Mean pelvic obliquity of the static trial (deg, + left side higher), for zeroing;
        NaN without pelvis markers.
    pelvic_tilt_deg : float
        Mean pelvic tilt of the static trial (deg, + anterior, Plug-in Gait pelvis), the
        standing reference for the running tilt; NaN without pelvis markers.
    static_residual_mm : dict of str to float
        Segment name → median cluster-fit RMS residual over the static frames (mm).
    info : dict
        How each quantity was obtained (definitions, sources).
    """

    source: str
    segments: tuple
    cluster_local: dict
    anatomical_local: dict
    subject: dict = field(default_factory=dict)
    pelvic_obliquity_deg: float = float("nan")
    pelvic_tilt_deg: float = float("nan")
    static_residual_mm: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


# --- geometry --------------------------------------------------------------------------------

def _unit(v):
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)


def fit_clusters(template, observed):
    """Batched least-squares rigid fit (Kabsch / SVD) of a template onto observed markers.

    Parameters
    ----------
    template : array_like, (c, 3)
        Cluster marker positions in the cluster-local frame (mm); NaN rows are ignored.
    observed : array_like, (m, c, 3)
        The same markers in each frame (mm, lab frame); NaN = occluded.

    Returns
    -------
    rotation : (m, 3, 3) float64
        ``observed ≈ rotation @ template + translation`` (proper rotation, det +1).
    translation : (m, 3) float64, mm
    rms : (m,) float64, mm
        Root-mean-square distance between fitted and observed markers over the visible ones.
    n_used : (m,) int64
        Visible markers used; frames with fewer than 3 are NaN in all outputs.
    """
    q = np.asarray(template, dtype=np.float64)
    p = np.asarray(observed, dtype=np.float64)
    m = p.shape[0]
    w = (np.isfinite(p).all(axis=-1) & np.isfinite(q).all(axis=-1)[None, :])  # (m, c)
    n_used = w.sum(axis=1).astype(np.int64)
    wf = w.astype(np.float64)[..., None]
    p0 = np.where(w[..., None], p, 0.0)
    q0 = np.where(w[..., None], np.broadcast_to(np.nan_to_num(q), p.shape), 0.0)
    cnt = np.maximum(n_used, 1)[:, None].astype(np.float64)
    cp = p0.sum(axis=1) / cnt
    cq = q0.sum(axis=1) / cnt
    dp = (p0 - cp[:, None, :]) * wf
    dq = (q0 - cq[:, None, :]) * wf
    h = np.einsum("mci,mcj->mij", dq, dp)                      # Σ q pᵀ, (m, 3, 3)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.einsum("mji,mkj->mik", vt, u)))  # det(V Uᵀ)
    d = np.where(d == 0, 1.0, d)
    corr = np.ones((m, 3))
    corr[:, 2] = d
    rot = np.einsum("mji,mj,mkj->mik", vt, corr, u)             # V diag(1,1,d) Uᵀ
    trans = cp - np.einsum("mij,mj->mi", rot, cq)
    fitted = np.einsum("mij,cj->mci", rot, np.nan_to_num(q)) + trans[:, None, :]
    err2 = (((fitted - p0) ** 2).sum(axis=-1) * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(err2 / n_used)
    bad = n_used < 3
    rot[bad] = np.nan
    trans[bad] = np.nan
    rms[bad] = np.nan
    return rot, trans, rms, n_used


def _local_frame(points):
    """Cluster-local frame from mean static cluster positions (c, 3), NaN rows allowed.

    Origin = centroid of the markers present; X towards the second present marker from the
    first, Z normal to the plane of the first three present markers, Y = Z × X.

    Returns
    -------
    origin : (3,), rotation : (3, 3) with the local axes as columns (lab = R @ local + o).
    """
    ok = np.isfinite(points).all(axis=1)
    pts = points[ok]
    origin = pts.mean(axis=0)
    x = _unit(pts[1] - pts[0])
    z = _unit(np.cross(x, pts[2] - pts[0]))
    y = np.cross(z, x)
    return origin, np.stack([x, y, z], axis=1)


def _columns(positions, labels, names):
    """(m, len(names), 3) float64 with NaN columns for names absent from labels."""
    index = {lb: j for j, lb in reversed(list(enumerate(labels)))}
    out = np.full((positions.shape[0], len(names), 3), np.nan)
    for i, n in enumerate(names):
        j = index.get(n)
        if j is not None:
            out[:, i] = positions[:, j]
    return out


def _mapped(names, extra=None):
    return to_cgm(list(names), extra)


def _static_hjc(pos, labels, subject):
    """Per-frame hip joint centres (Davis regression, as the angle kernel) in a static trial.

    Returns {"L": (m, 3), "R": (m, 3)} (mm, lab frame) or {} without the pelvis markers.
    """
    cols = _columns(pos, labels, ["LASI", "RASI", "LPSI", "RPSI", "SACR"])
    lasi, rasi, lpsi, rpsi, sacr = (cols[:, i] for i in range(5))
    if not (np.isfinite(lasi).any() and np.isfinite(rasi).any()):
        return {}
    post = 0.5 * (lpsi + rpsi)
    if not np.isfinite(post).any():
        post = sacr
    if not np.isfinite(post).any():
        return {}
    _, params, _, _ = resolve_model(pos, labels, subject)
    origin = 0.5 * (lasi + rasi)
    y = _unit(lasi - rasi)
    a = origin - post
    x = _unit(a - (a * y).sum(axis=1, keepdims=True) * y)
    z = np.cross(x, y)
    out = {}
    for side, off in (("L", params[0:3]), ("R", params[3:6])):
        out[side] = origin + off[0] * x + off[1] * y + off[2] * z
    return out


def _wand_point(prox, lat, med, offset):
    """Point halfway between the lateral landmark and the proximal joint centre, moved
    laterally by ``offset`` (mm) at right angles to that line, in the plane (prox, lat, med).
    Rows of (m, 3), mm."""
    axis = _unit(prox - lat)
    lateral = lat - med
    lateral = _unit(lateral - (lateral * axis).sum(axis=1, keepdims=True) * axis)
    return lat + 0.5 * (prox - lat) + offset * lateral


# --- calibration -----------------------------------------------------------------------------

def calibrate_static(static_session, segments=DEFAULT_SEGMENTS) -> StaticCalibration:
    """Calibrate anatomical markers in their segment clusters from a static trial.

    Parameters
    ----------
    static_session : treadlab.acquisition.archive.Session
        The static standing trial as :func:`~treadlab.acquisition.io.c3d_import.read_c3d` reads
        it (``read_c3d(path, static=...)`` does both); marker positions mm, lab frame.
    segments : sequence of Segment, optional
        The segment table (default :data:`DEFAULT_SEGMENTS`). Segments whose cluster (≥ 3
        markers) or distal landmarks the static trial lacks are skipped.

    Returns
    -------
    StaticCalibration
        Local positions are the means over the static frames (mm, cluster-local frame).
        Measurements (mm), each the mean over static frames:

        * knee width = lateral–medial epicondyle marker-centre distance minus one marker
          diameter (the width over the skin a caliper reads; marker centres sit a radius off
          the skin), so that the CGM chord (radius (width + diameter)/2) puts the knee centre
          at the epicondyle midpoint; ankle width likewise with the malleoli;
        * leg length = straight-line distance from the ASIS marker to the medial malleolus
          marker of the same side (standing, knee extended);
        * inter-ASIS distance = LASI–RASI marker distance.

    Raises
    ------
    InputError
        No segment of the table can be calibrated from the static trial (the message lists
        the missing markers).
    """
    src = str(static_session.attrs.get("source_file") or static_session.attrs.get(
        "subject_id", "static trial"))
    labels = list(static_session.markers.labels)
    pos = np.asarray(static_session.markers.positions, dtype=np.float64)
    md = static_session.subject.get("marker_diameter_mm")
    md = float(md) if md else None
    md_used = md if md else 14.0  # Plug-in Gait default, as in the angle kernel

    subject: dict = {}
    info: dict = {"marker_diameter_mm_used": md_used,
                  "knee_width": "lateral-medial epicondyle marker distance - marker diameter",
                  "ankle_width": "lateral-medial malleolus marker distance - marker diameter",
                  "leg_length": "ASIS marker to medial malleolus marker, straight line, "
                                "standing static trial",
                  "inter_asis": "LASI-RASI marker distance, static trial"}
    if md:
        subject["marker_diameter_mm"] = md
    iad = _inter_asis_mm(pos, labels)
    if np.isfinite(iad):
        subject["inter_asis_mm"] = iad

    done, missing = [], {}
    cluster_local, anatomical_local, residual = {}, {}, {}
    joint_centre = {}      # side -> KJC per frame (for the shank wand)
    hjc = None
    segs = sorted(segments, key=lambda s: 0 if s.kind == "thigh" else 1)
    for seg in segs:
        cl_names = _mapped(seg.cluster)
        cl = _columns(pos, labels, cl_names)
        present = [n for n, c in zip(cl_names, np.moveaxis(cl, 1, 0)) if np.isfinite(c).any()]
        an_names = _mapped(seg.anatomical)
        lat_name, med_name = _mapped([seg.lateral, seg.medial])
        need = [n for n in (lat_name, med_name) if n not in labels]
        if len(present) < 3 or need:
            missing[seg.name] = [n for n in cl_names if n not in present] + need
            continue
        with _quiet_nan():
            mean_cl = np.nanmean(cl, axis=0)
        origin, rot = _local_frame(mean_cl)
        local_cl = (mean_cl - origin) @ rot                 # (c, 3) local mm
        cluster_local[seg.name] = local_cl
        r, t, rms, _ = fit_clusters(local_cl, cl)
        with _quiet_nan():
            residual[seg.name] = float(np.nanmedian(rms))

        lat = _columns(pos, labels, [lat_name])[:, 0]
        med = _columns(pos, labels, [med_name])[:, 0]
        with _quiet_nan():
            width = float(np.nanmean(np.linalg.norm(lat - med, axis=-1))) - md_used
        side_word = "left" if seg.side == "L" else "right"
        points = {n: _columns(pos, labels, [n])[:, 0] for n in an_names if n in labels}
        if seg.kind == "thigh":
            subject[f"knee_width_{side_word}_mm"] = width
            joint_centre[seg.side] = 0.5 * (lat + med)
            if hjc is None:
                hjc = _static_hjc(pos, labels, {**subject, **dict(static_session.subject)})
            if seg.side in hjc:
                prox = hjc[seg.side]
                info[f"{seg.name}_wand_proximal"] = "hip joint centre (Davis, static pelvis)"
            else:
                prox = _columns(pos, labels, _mapped([f"{seg.side}.GTR"]))[:, 0]
                info[f"{seg.name}_wand_proximal"] = "greater trochanter (no static pelvis)"
        else:
            subject[f"ankle_width_{side_word}_mm"] = width
            leg = _leg_length_mm(pos, labels, seg.side, med_name)
            if np.isfinite(leg):
                subject[f"leg_length_{side_word}_mm"] = leg
            prox = joint_centre.get(seg.side)
            if prox is None:
                knee = _columns(pos, labels,
                                _mapped([f"{seg.side}.Knee", f"{seg.side}.Knee.Medial"]))
                prox = 0.5 * (knee[:, 0] + knee[:, 1])
            info[f"{seg.name}_wand_proximal"] = "knee joint centre (epicondyle midpoint)"
        points[seg.wand] = _wand_point(prox, lat, med, width)
        local = {}
        for name, p in points.items():
            # into the cluster frame frame by frame (rᵀ (p − t)), then the mean
            loc = np.einsum("mji,mj->mi", r, p - t)
            with _quiet_nan():
                v = np.nanmean(loc, axis=0)
            if np.isfinite(v).all():
                local[name] = v
        anatomical_local[seg.name] = local
        done.append(seg)

    if not done:
        raise InputError(src, "markers", "static trial shares no cluster with the segment "
                                         "table: missing " + "; ".join(
                                             f"{k}: {', '.join(v)}" for k, v in missing.items()))
    for k, v in missing.items():
        log.info("%s: segment %s not calibrated (missing %s)", src, k, ", ".join(v))

    obliquity, tilt = _standing_pelvis_deg(pos, labels,
                                           {**subject, **dict(static_session.subject)})
    return StaticCalibration(source=src, segments=tuple(done), cluster_local=cluster_local,
                             anatomical_local=anatomical_local, subject=subject,
                             pelvic_obliquity_deg=obliquity, pelvic_tilt_deg=tilt,
                             static_residual_mm=residual,
                             info=info)


def _inter_asis_mm(pos, labels) -> float:
    """Mean LASI–RASI marker distance over the frames (mm); NaN without both markers."""
    with np.errstate(invalid="ignore"), _quiet_nan():
        asis = _columns(pos, labels, ["LASI", "RASI"])
        return float(np.nanmean(np.linalg.norm(asis[:, 0] - asis[:, 1], axis=-1)))


def _leg_length_mm(pos, labels, side: str, ankle: str) -> float:
    """Mean straight-line distance from the ASIS marker of ``side`` to the ``ankle`` marker
    (mm); NaN without them."""
    asi = _columns(pos, labels, [f"{side}ASI"])[:, 0]
    ank = _columns(pos, labels, [ankle])[:, 0]
    with np.errstate(invalid="ignore"), _quiet_nan():
        return float(np.nanmean(np.linalg.norm(asi - ank, axis=-1)))


def _standing_pelvis_deg(pos, labels, subject) -> tuple[float, float]:
    """Mean Plug-in Gait pelvic obliquity and tilt over the frames (deg); NaN, NaN without
    the pelvis markers."""
    obliquity = tilt = float("nan")
    try:
        ang = joint_angles(pos, labels, subject)
        if "pelvis_obliquity" not in ang.reasons:
            with _quiet_nan():
                obliquity = float(np.nanmean(ang["pelvis_obliquity"]))
                tilt = float(np.nanmean(ang["pelvis_tilt"]))
    except ValueError:
        pass
    return obliquity, tilt


#: Largest movement of the pelvis markers allowed in a static trial: the 5–95 % range of the
#: mid-ASIS point on any axis (mm). Quiet standing sways a few mm; stepping or running moves
#: it by tens to hundreds.
STATIC_MAX_SWAY_MM = 40.0


def static_values(static_session) -> dict:
    """The standing values a static trial gives, without marker clusters: the measurements
    :func:`calibrate_static` takes (same code), for a marker set that already carries the CGM
    knee and ankle markers (Plug-in Gait lower body).

    Parameters
    ----------
    static_session : Session
        A standing trial: markers mm, lab frame (``/subject`` may give the marker diameter and
        widths the angle model uses).

    Returns
    -------
    dict
        ``pelvic_obliquity_deg``, ``pelvic_tilt_deg`` (deg, mean Plug-in Gait pelvis, + left
        side higher / + anterior), ``leg_length_left_mm``, ``leg_length_right_mm`` (mm, ASIS
        marker to the medial malleolus marker, or to the lateral malleolus marker ``LANK`` /
        ``RANK`` when the trial has no medial one), ``inter_asis_mm`` (mm), ``sway_mm`` (mm,
        largest 5–95 % range of the mid-ASIS point over the axes), ``frames`` (frames with
        both ASIS markers) and ``definitions`` (key → how it was measured).

    Raises
    ------
    InputError
        Naming the field: no frames with the pelvis markers (``markers``), a pelvis that moved
        more than :data:`STATIC_MAX_SWAY_MM` (``sway``: the runner was not standing still),
        no ankle marker for a leg length (``leg_length``) or no pelvic angles (``pelvis``).
    """
    src = str(static_session.attrs.get("trial_id") or static_session.attrs.get("source_file")
              or static_session.attrs.get("subject_id", "static trial"))
    labels = list(static_session.markers.labels)
    pos = np.asarray(static_session.markers.positions, dtype=np.float64)
    asis = _columns(pos, labels, ["LASI", "RASI"])
    ok = np.isfinite(asis).all(axis=(1, 2))
    if not ok.any():
        raise InputError(src, "markers", "no frame with both ASIS markers (LASI, RASI)")
    mid = 0.5 * (asis[ok, 0] + asis[ok, 1])
    sway = float(np.max(np.percentile(mid, 95, axis=0) - np.percentile(mid, 5, axis=0)))
    if sway > STATIC_MAX_SWAY_MM:
        raise InputError(src, "sway", f"the pelvis moved {sway:.0f} mm (at most "
                                      f"{STATIC_MAX_SWAY_MM:.0f} mm standing still): the "
                                      "runner was not standing still")
    out: dict = {"inter_asis_mm": _inter_asis_mm(pos, labels), "sway_mm": sway,
                 "frames": int(ok.sum())}
    defs = {"inter_asis_mm": "LASI-RASI marker distance, static trial",
            "pelvic_obliquity_deg": "mean Plug-in Gait pelvic obliquity, static trial",
            "pelvic_tilt_deg": "mean Plug-in Gait pelvic tilt, static trial"}
    for side, word in (("L", "left"), ("R", "right")):
        medial = _mapped([f"{side}.Ankle.Medial"])[0]
        ankle = medial if medial in labels else f"{side}ANK"
        leg = _leg_length_mm(pos, labels, side, ankle)
        if not np.isfinite(leg):
            raise InputError(src, "leg_length", f"no {side}ASI and {ankle} markers for the "
                                                f"{word} leg length")
        out[f"leg_length_{word}_mm"] = leg
        defs[f"leg_length_{word}_mm"] = (f"{side}ASI to {ankle} marker "
                                         + ("(medial malleolus)" if ankle == medial
                                            else "(lateral malleolus: no medial marker)")
                                         + ", straight line, standing static trial")
    subject = {**dict(static_session.subject), "leg_length_left_mm": out["leg_length_left_mm"],
               "leg_length_right_mm": out["leg_length_right_mm"],
               "inter_asis_mm": out["inter_asis_mm"]}
    obliquity, tilt = _standing_pelvis_deg(pos, labels, subject)
    if not (np.isfinite(obliquity) and np.isfinite(tilt)):
        raise InputError(src, "pelvis", "no pelvic angles (need LASI, RASI and LPSI/RPSI or "
                                        "SACR)")
    out.update(pelvic_obliquity_deg=obliquity, pelvic_tilt_deg=tilt, definitions=defs)
    return out


def reconstruct_markers(positions, labels, calibration: StaticCalibration):
    """Rebuild the calibrated anatomical markers in every frame from the cluster poses.

    Parameters
    ----------
    positions : array_like, (m, k, 3)
        Marker positions, mm, lab frame; NaN = occluded.
    labels : sequence of str
        k marker names (CGM names via ``to_cgm``, others as recorded).
    calibration : StaticCalibration

    Returns
    -------
    markers : dict of str to ndarray
        CGM-mapped name → (m, 3) float64 mm, lab frame; NaN where fewer than 3 cluster markers
        are visible.
    fits : dict of str to dict
        Segment name → ``{"rms": (m,) mm, "n_used": (m,) int}``.

    Raises
    ------
    InputError
        A calibrated segment's cluster is absent from ``labels`` (names the missing markers;
        the file name is the caller's).
    """
    pos = np.asarray(positions, dtype=np.float64)
    labels = [str(x) for x in labels]
    markers, fits = {}, {}
    for seg in calibration.segments:
        names = _mapped(seg.cluster)
        absent = [n for n in names if n not in labels]
        have = len(names) - len(absent)
        if have < 3:
            raise InputError("session", "markers", f"segment {seg.name}: cluster markers "
                                                   f"missing {', '.join(absent)}")
        r, t, rms, n = fit_clusters(calibration.cluster_local[seg.name],
                                    _columns(pos, labels, names))
        fits[seg.name] = {"rms": rms, "n_used": n}
        for name, loc in calibration.anatomical_local[seg.name].items():
            markers[name] = np.einsum("mij,j->mi", r, loc) + t
    return markers, fits


def apply_static(session, calibration: StaticCalibration):
    """Add the calibrated anatomical markers to a (running) session as virtual markers.

    Parameters
    ----------
    session : Session
        Markers mm, lab frame; must hold the calibrated clusters.
    calibration : StaticCalibration

    Returns
    -------
    Session
        A copy with the virtual markers appended (markers already present are kept, not
        replaced), ``subject`` completed with the static measurements (values the session
        already states win), and the attributes ``static_calibration`` (static file name),
        ``static_calibration_segments``, ``static_calibration_markers`` (names added),
        ``static_calibration_residual_median_mm`` / ``_p95_mm`` (per segment, cluster-fit RMS
        over the frames fitted, mm), ``static_calibration_fit_fraction`` (frames with ≥ 3
        cluster markers), ``static_calibration_static_residual_mm``,
        ``static_calibration_subject_from_static`` (keys filled), ``subject_value_sources``
        (one ``"key = value unit: source"`` line per static measurement, including those the
        session's own values kept out), ``static_pelvic_obliquity_deg`` (deg, mean of the static
        trial, zeroes pelvic obliquity), ``static_pelvic_tilt_deg`` (deg, + anterior, the
        standing tilt reported beside the running tilt) and ``static_calibration_method``.
        ``c3d_marker_labels``/``c3d_marker_index`` are extended with ``""``/-1.

    Raises
    ------
    InputError
        The session lacks a calibrated cluster (fewer than 3 of its markers): names the static
        file, the session's file and the missing markers.
    """
    labels = list(session.markers.labels)
    src = session.attrs.get("source_file", session.attrs.get("subject_id", "session"))
    try:
        markers, fits = reconstruct_markers(session.markers.positions, labels, calibration)
    except InputError as exc:
        raise InputError(calibration.source, "markers",
                         f"static trial does not share the clusters of {src}: "
                         f"{exc.message}") from None
    added = [n for n in markers if n not in labels]
    pos = np.asarray(session.markers.positions)
    if added:
        extra = np.stack([markers[n] for n in added], axis=1).astype(pos.dtype)
        pos = np.concatenate([pos, extra], axis=1)
    new_markers = dataclasses.replace(session.markers, positions=pos, labels=labels + added)
    subject = dict(session.subject)
    filled = []
    for k, v in calibration.subject.items():
        if k not in subject or not subject[k]:
            subject[k] = v
            filled.append(k)
    how = {"leg_length": calibration.info.get("leg_length", ""),
           "inter_asis": calibration.info.get("inter_asis", ""),
           "knee_width": calibration.info.get("knee_width", ""),
           "ankle_width": calibration.info.get("ankle_width", "")}
    sources = []
    for k, v in sorted(calibration.subject.items()):
        kind = next((h for key, h in how.items() if k.startswith(key)), "static trial file")
        who = (f"static trial {calibration.source} ({kind})" if k in filled
               else f"session value kept; static trial {calibration.source} gave {v:.1f}")
        sources.append(f"{k} = {float(subject[k]):.1f} mm: {who}")
    sources.append(f"static_pelvic_obliquity_deg = {calibration.pelvic_obliquity_deg:.2f} deg: "
                   f"static trial {calibration.source} (mean Plug-in Gait pelvic obliquity)")
    sources.append(f"static_pelvic_tilt_deg = {calibration.pelvic_tilt_deg:.2f} deg: "
                   f"static trial {calibration.source} (mean Plug-in Gait pelvic tilt)")
    attrs = dict(session.attrs)
    names = [s.name for s in calibration.segments]
    med, p95, frac = [], [], []
    for s in names:
        rms = fits[s]["rms"]
        ok = np.isfinite(rms)
        frac.append(float(ok.mean()) if rms.size else 0.0)
        med.append(float(np.median(rms[ok])) if ok.any() else float("nan"))
        p95.append(float(np.percentile(rms[ok], 95)) if ok.any() else float("nan"))
    attrs.update({
        "static_calibration": calibration.source,
        "static_calibration_segments": names,
        "static_calibration_markers": added,
        "static_calibration_residual_median_mm": np.array(med),
        "static_calibration_residual_p95_mm": np.array(p95),
        "static_calibration_fit_fraction": np.array(frac),
        "static_calibration_static_residual_mm": np.array(
            [calibration.static_residual_mm.get(s, np.nan) for s in names]),
        "static_calibration_subject_from_static": filled,
        "static_pelvic_obliquity_deg": calibration.pelvic_obliquity_deg,
        "static_pelvic_tilt_deg": calibration.pelvic_tilt_deg,
        "subject_value_sources": sources,
        "static_calibration_method": (
            "cluster technique (Cappozzo 1995): anatomical markers in the cluster frame of the "
            "static trial, rebuilt per frame by a least-squares rigid fit (Kabsch/SVD) of >= 3 "
            "visible cluster markers; THI/TIB reconstructed halfway up the segment, lateral, in "
            "the plane of the proximal joint centre and both distal landmarks"),
    })
    if "c3d_marker_labels" in attrs:
        attrs["c3d_marker_labels"] = list(attrs["c3d_marker_labels"]) + [""] * len(added)
    if "c3d_marker_index" in attrs:
        attrs["c3d_marker_index"] = np.concatenate(
            [np.asarray(attrs["c3d_marker_index"], np.int64), np.full(len(added), -1)])
    log.info("%s: static calibration from %s added %d markers; cluster-fit RMS median %s mm",
             src, calibration.source, len(added), ", ".join(f"{v:.2f}" for v in med))
    return dataclasses.replace(session, markers=new_markers, subject=subject, attrs=attrs)


class _quiet_nan:
    """Silence NumPy's all-NaN slice warnings inside a block."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
