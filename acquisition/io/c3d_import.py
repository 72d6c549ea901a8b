"""C3D recordings into a raw ``treadlab.session`` (docs/archive.md), read with ezc3d.

Public API
----------
``read_c3d(path, *, marker_names=None, subject_id=None, body_mass_kg=None, static=None)
-> Session``
    the recording in memory, in the lab frame and treadlab units;
``import_c3d(c3d_path, out_path, config_path=None, subject_id=None, body_mass_kg=None,
static_path=None) -> Path``
    the same written as an archive (``treadlab import``).

With a static trial (``static`` / ``static_path``, ``treadlab import --static``), anatomical
markers the recording lacks (knees, ankles) are rebuilt from the thigh and shank clusters by
:mod:`treadlab.acquisition.io.static_calibration` (cluster technique) and the static measurements
fill ``subject`` (``static_calibration*`` attributes).

What the reader does, and the decisions it takes (each is recorded in the session attributes):

* **Axes.** The file's axes are mapped onto the lab frame (X = direction of travel, Y = left,
  Z = up) by a signed permutation ``c3d_axes`` (3×3, ``lab = c3d_axes @ file``). Up is the force
  plates' normal (markers above the plate surface) or, with no plates, the axis from the feet to
  the pelvis. Travel is the pelvis progression when the pelvis moves more than 0.5 m
  (overground), else the mean heel→toe direction (treadmill, static). The check of docs/metrics.md §1
  (toe ahead of heel in +X while the foot is on the ground) is stored as ``c3d_axes_check``.
* **Clock.** Session time 0 is the first stored frame, whatever POINT first frame the file
  declares; C3D event times (``(frame − 1)/rate`` with 1-based frames) are shifted onto it.
* **Markers.** POINT labels renamed to CGM names where known (``treadlab.config.markers``;
  the file's labels and indices in ``c3d_marker_labels``/``c3d_marker_index``), the virtual
  ``SACR``/``LTOE``/``RTOE`` added where their sources exist (``c3d_virtual_markers``); model
  outputs are not markers and go to ``reference["points"]``; a marker stored as exact zeros or
  with a negative residual is NaN; float32 mm.
* **Force.** Plates of types 1–4 become the lab-frame wrench ``[Fx,Fy,Fz,Mx,My,Mz]`` (N, N·m):
  the ground reaction on the body, moments about the centre of each plate's working surface
  (the mean of its corners, stored as ``origin``). Type 2/4 moments measured about the
  transducer are transferred with FORCE_PLATFORM:ORIGIN (the vector from the transducer to the
  surface centre in the plate frame; a positive Z, as Vicon writes it, is negated, as in ezc3d
  and BTK). A plate whose loaded vertical force comes out negative has its whole wrench negated
  (``force_polarity_flipped``).
  Moment channels whose stated unit puts the centre of pressure off the plate are read in the
  other of N·mm / N·m (``force_moment_units``).
* **Body mass.** ``body_mass_kg`` argument, else PROCESSING:Bodymass, else the mean vertical
  force over whole strides divided by g (``body_mass_source`` says which).
* **Bad files.** Empty, truncated, corrupt parameter section, MIPS, inconsistent
  FORCE_PLATFORM: an :class:`~treadlab.config.errors.InputError` naming the file and the byte
  offset or parameter, checked before ezc3d sees the file where ezc3d would be slow or silent.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from pathlib import Path

import ezc3d
import numpy as np

from treadlab.acquisition.archive import ForceData, MarkerData, Session, write_session
from treadlab.acquisition.io.static_calibration import apply_static, calibrate_static
from treadlab.config import load_lab
from treadlab.config.constants import G
from treadlab.config.errors import InputError
from treadlab.config.markers import to_cgm, virtual_markers
from treadlab.kernels.forces import estimate_body_weight

log = logging.getLogger(__name__)


#: POINT sub-groups that list model outputs (Vicon / Nexus), with the units parameter of each.
_OUTPUT_GROUPS = {
    "ANGLES": ("angle", "ANGLE_UNITS"),
    "FORCES": ("force", "FORCE_UNITS"),
    "MOMENTS": ("moment", "MOMENT_UNITS"),
    "POWERS": ("power", "POWER_UNITS"),
    "SCALARS": ("scalar", "SCALAR_UNITS"),
    "REACTIONS": ("reaction", "REACTION_UNITS"),
    "MODELED_MARKERS": ("position", "MODELED_MARKER_UNITS"),
}
#: Plug-in Gait segment-axis points (PELO, LFEA …), joint centres, centre of mass, pyCGM2 outputs.
_PIG_AXES = re.compile(r"^(HED|TRX|PEL|CSP|[LR](CL|FE|TI|FO|TO|HU|RA|HN))[OALP]$")
_JOINT_CENTRE = re.compile(r"^[LR](HJC|KJC|AJC|FJC|SJC|EJC|WJC)$|^(Centre|Center)OfMass")
_OUTPUT_NAME = re.compile(r"(Angles?|Force|Moment|Power|GRF)$|_CGM", re.IGNORECASE)

_LENGTH_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "dm": 100.0, "in": 25.4}

#: PROCESSING parameters (Vicon Plug-in Gait / pyCGM2 subject measurements) → Session.subject.
_SUBJECT_PARAMS = {
    "LegLength": ("leg_length_left_mm", "leg_length_right_mm"),
    "LLegLength": ("leg_length_left_mm",),
    "RLegLength": ("leg_length_right_mm",),
    "InterAsisDistance": ("inter_asis_mm",),
    "KneeWidth": ("knee_width_left_mm", "knee_width_right_mm"),
    "LKneeWidth": ("knee_width_left_mm",),
    "RKneeWidth": ("knee_width_right_mm",),
    "AnkleWidth": ("ankle_width_left_mm", "ankle_width_right_mm"),
    "LAnkleWidth": ("ankle_width_left_mm",),
    "RAnkleWidth": ("ankle_width_right_mm",),
    "MarkerDiameter": ("marker_diameter_mm",),
    "Height": ("height_mm",),
}


# --- public API ------------------------------------------------------------------------------

def read_c3d(path, *, marker_names: dict | None = None, subject_id: str | None = None,
             body_mass_kg: float | None = None, static=None) -> Session:
    """Read a C3D recording as a raw session in the lab frame.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.c3d`` file.
    marker_names : dict of str to str, optional
        Lab marker names → CGM names, on top of the built-in aliases (the lab config's
        ``[marker_names]`` table).
    subject_id : str, optional
        Subject identifier; default: the file name without extension.
    body_mass_kg : float, optional
        Body mass (kg); default: PROCESSING:Bodymass, else estimated from the force.
    static : str or os.PathLike, optional
        A static standing trial (``.c3d``) of the same subject with the same marker clusters:
        its anatomical markers are calibrated in the clusters and added to this recording as
        virtual markers (:func:`~treadlab.acquisition.io.static_calibration.calibrate_static`,
        :func:`~treadlab.acquisition.io.static_calibration.apply_static`), and its measurements
        (knee/ankle widths, leg lengths, inter-ASIS distance, mm) complete ``subject`` without
        replacing what this file states.

    Returns
    -------
    Session
        ``markers.positions`` (m, k, 3) float32 mm, lab frame, NaN = missing;
        ``force.wrench`` (n, p, 6) float32 N and N·m, lab frame, ground reaction on the body,
        moments about each plate's ``origin`` (centre of the working surface, lab mm);
        ``reference`` holds the file's events and model outputs; ``subject`` the measurements
        found in PROCESSING (mm). Times are float64 s from the first stored frame.

    Raises
    ------
    InputError
        The file is missing, not a C3D file ezc3d can read, or a parameter the import needs is
        malformed; the message names the file and the parameter. Also a ``static`` trial that
        does not share the recording's clusters (names the static file and the markers).
    """
    path = Path(path)
    c3d = _open_c3d(path)
    params = c3d["parameters"]
    header = c3d["header"]

    rate = float(header["points"]["frame_rate"])
    first_frame = int(header["points"]["first_frame"])  # 0-based in ezc3d
    if not rate > 0 and c3d["data"]["points"].shape[2] > 0:
        raise InputError(path, "POINT:RATE", f"frame rate {rate!r} is not positive")

    raw_labels, file_labels, pts, kinds, units = _parse_points(path, c3d)
    n_frames = pts.shape[2]
    is_marker = np.array([k == "marker" for k in kinds], dtype=bool)

    # Axis mapping from the markers and plates still in file coordinates.
    corners_file = _parse_plate_corners(path, params)
    axes, axes_info = _detect_axes(path, params, raw_labels, pts, is_marker, corners_file)

    markers, virtual = _markers_in_lab(path, params, raw_labels, pts, is_marker, axes, rate,
                                       marker_names)
    force, force_info = _read_force(path, c3d, axes, n_frames)
    events = _parse_events(path, params, first_frame, rate)
    points = _reference_points(raw_labels, pts, kinds, units, axes, params)
    subject, file_mass = _parse_subject(path, params)

    attrs: dict = {
        "subject_id": subject_id if subject_id else path.stem,
        "lab": f"C3D import ({_manufacturer(params) or 'unknown system'})",
        "c3d_manufacturer": _manufacturer(params),
        "status": "complete",
        "source_file": path.name,
        "source_format": "c3d",
        "c3d_first_frame": first_frame + 1,
        "c3d_axes": axes,
        "c3d_axes_description": _describe_axes(axes),
        # the file's POINT labels and 0-based indices, parallel to markers.labels; the
        # virtual markers added at the end have label "" and index -1
        "c3d_marker_labels": [file_labels[j] for j in np.flatnonzero(is_marker)]
        + [""] * len(virtual),
        "c3d_marker_index": np.concatenate([np.flatnonzero(is_marker),
                                            np.full(len(virtual), -1)]).astype(np.int64),
        "c3d_virtual_markers": virtual,
    }
    attrs.update(axes_info)
    attrs.update(force_info)

    recording = axes_info.get("c3d_recording", "unknown")
    attrs["belt_speed_m_s"] = (_belt_speed(raw_labels, pts, is_marker, axes, rate, params)
                               if recording == "treadmill" else 0.0)

    mass, source, mass_info = _body_mass(path, force, body_mass_kg, file_mass)
    attrs["body_mass_kg"] = mass
    attrs["body_mass_source"] = source
    attrs.update(mass_info)

    reference = {"events": events, "points": points["data"], "point_kinds": points["kinds"],
                 "point_units": points["units"]}
    log.info("%s: %d markers × %d frames at %g Hz, %d plates, %d events, %d model outputs, "
             "body mass %.1f kg (%s)", path.name, len(markers.labels), n_frames, rate,
             len(force.plates), len(events["time"]), len(points["data"]), mass, source)
    session = Session(attrs=attrs, force=force, markers=markers, subject=subject,
                      reference=reference)
    if static is not None:
        calibration = calibrate_static(read_c3d(static, marker_names=marker_names))
        session = apply_static(session, calibration)
    return session


def import_c3d(c3d_path, out_path, config_path=None, subject_id: str | None = None,
               body_mass_kg: float | None = None, static_path=None) -> Path:
    """Import a C3D recording into a raw session archive (``treadlab import``).

    Parameters
    ----------
    c3d_path : str or os.PathLike
        The ``.c3d`` file.
    out_path : str or os.PathLike
        The archive to write (``.h5``).
    config_path : str or os.PathLike, optional
        Lab TOML: its ``[marker_names]`` table extends the built-in aliases and its lab name is
        stored as the ``lab`` attribute.
    subject_id, body_mass_kg
        As in :func:`read_c3d`.
    static_path : str or os.PathLike, optional
        Static trial for the cluster technique (``static`` of :func:`read_c3d`).

    Returns
    -------
    Path
        ``out_path``.
    """
    marker_names = None
    lab_name = None
    if config_path is not None:
        cfg = load_lab(config_path)
        marker_names = dict(getattr(cfg, "marker_names", None) or {}) or None
        lab = getattr(cfg, "lab", None)
        lab_name = getattr(lab, "name", None)
    session = read_c3d(c3d_path, marker_names=marker_names, subject_id=subject_id,
                       body_mass_kg=body_mass_kg, static=static_path)
    if not session.attrs["body_mass_kg"] > 0:
        raise InputError(c3d_path, "body mass",
                         "not in the file (PROCESSING:Bodymass) and not measurable from the "
                         "force (no whole strides, no standing); pass --body-mass KG")
    if lab_name:
        session.attrs["lab"] = lab_name

    return Path(write_session(out_path, session))


# --- reading the file ------------------------------------------------------------------------

def _open_c3d(path: Path) -> dict:
    """Open with ezc3d; anything it rejects becomes an InputError naming the file."""
    if not path.exists():
        raise InputError(path, None, "no such file")
    if path.is_dir():
        raise InputError(path, None, "is a directory, not a C3D file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "byte 0", "empty file (0 bytes), not a C3D file")
    if size < 512:
        raise InputError(path, "header", f"file too short for a C3D header ({size} bytes)")
    first, last = _check_parameter_section(path)
    try:
        c3d = ezc3d.c3d(os.fspath(path), extract_forceplat_data=False)
    except Exception as exc:  # ezc3d raises RuntimeError/OSError/ValueError with C++ text
        msg = str(exc).replace("\n", " ").strip()
        if "MIPS" in msg:
            msg = "MIPS (big-endian SGI) processor format is not supported by ezc3d"
        elif "not standard" in msg:
            msg = "malformed parameter section (ezc3d: not a standard C3D layout)"
        raise InputError(path, "parameters", f"cannot read C3D: {msg}") from None
    # ezc3d silently shortens a truncated file (and rewrites its header to match): compare
    # with what the header declared (TRIAL:ACTUAL_*_FIELD when frames exceed 16 bits)
    trial = c3d["parameters"].get("TRIAL") or {}
    for key, idx in (("ACTUAL_START_FIELD", 0), ("ACTUAL_END_FIELD", 1)):
        v = np.asarray(trial[key]["value"]).ravel() if key in trial else np.zeros(0)
        if v.size >= 2 and v[0] > 0:
            value = int(v[0]) + 65536 * int(v[1])
            first, last = (value, last) if idx == 0 else (first, value)
    declared = last - first + 1
    points = np.asarray(c3d["data"]["points"])
    held = int(points.shape[2])
    if points.shape[1] > 0 and declared > 0 and held < declared:
        raise InputError(path, "data", f"truncated: the header declares {declared} frames "
                                       f"({first}-{last}), the file holds {held}")
    return c3d


_PROCESSORS = {84: "Intel", 85: "DEC", 86: "MIPS"}


def _check_parameter_section(path: Path) -> tuple[int, int]:
    """Walk the C3D header and parameter records before ezc3d sees the file.

    ezc3d spends many seconds (and much memory) on a corrupt parameter section before it
    fails, and cannot read MIPS files at all; this walk answers both in microseconds with the
    byte offset of the problem. It checks the key byte, the processor type and that every
    group/parameter record's link stays inside the parameter section.

    Returns
    -------
    (first, last) : the 1-based first and last frame the header declares (words 4 and 5).
    """
    with open(path, "rb") as fh:
        head = fh.read(512)
        if head[1] != 0x50:
            raise InputError(path, "byte 1", f"not a C3D file (key byte 0x{head[1]:02x}, "
                                             "expected 0x50)")
        first = head[0]
        if first < 2:
            raise InputError(path, "byte 0", f"parameter section at block {first}, "
                                             "expected 2 or later")
        frames = (int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"))
        start = (first - 1) * 512
        fh.seek(start)
        sec_head = fh.read(4)
        if len(sec_head) < 4:
            raise InputError(path, f"byte {start}", "file ends before the parameter section")
        n_blocks, proc = sec_head[2], sec_head[3]
        if proc not in _PROCESSORS:
            raise InputError(path, f"byte {start + 3}",
                             f"unknown processor type {proc} (expected 84 Intel, 85 DEC, "
                             "86 MIPS)")
        if _PROCESSORS[proc] == "MIPS":
            raise InputError(path, f"byte {start + 3}",
                             "MIPS (big-endian SGI) processor format: ezc3d cannot read it; "
                             "convert the file to Intel format first")
        fh.seek(start)
        sec = fh.read(max(n_blocks, 1) * 512)
    end = len(sec)
    i = 4
    while i + 2 <= end:
        nch = abs(int.from_bytes(sec[i:i + 1], "little", signed=True))
        if nch == 0:
            return frames  # end of the parameter records
        j = i + 2 + nch
        if j + 2 > end:
            break
        link = int.from_bytes(sec[j:j + 2], "little", signed=True)
        if link == 0:
            return frames  # last record
        if link < 0 or j + link > end:
            name = sec[i + 2:j].decode("ascii", "replace")
            what = f"record {name}" if name.isidentifier() else f"the record at byte {start + i}"
            raise InputError(path, f"byte {start + j}",
                             f"corrupt parameter section: {what} links {link:+d} bytes, "
                             f"outside the {n_blocks}-block section")
        i = j + link
    raise InputError(path, f"byte {start + end}",
                     "corrupt parameter section: no end-of-parameters record")


def _param(params: dict, group: str, name: str, default=None):
    """The value of GROUP:NAME, or ``default`` when absent."""
    g = params.get(group)
    if not isinstance(g, dict) or name not in g:
        return default
    return g[name]["value"]


def _strings(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v).strip() for v in value]


def _parse_points(path: Path, c3d: dict):
    """Labels, data (3, k, m) in file units, and the kind and units of each point."""
    params = c3d["parameters"]
    pts = np.asarray(c3d["data"]["points"][:3], dtype=np.float64)
    k = pts.shape[1]
    labels = _strings(_param(params, "POINT", "LABELS", []))
    i = 2
    while len(labels) < k and _param(params, "POINT", f"LABELS{i}") is not None:
        labels += _strings(_param(params, "POINT", f"LABELS{i}"))
        i += 1
    labels = labels[:k] + [""] * max(0, k - len(labels))
    # Empty and duplicate labels get stable unique names; the originals are kept in attrs.
    out = _unique([lab or f"POINT{j + 1}" for j, lab in enumerate(labels)])

    pos_units = (_strings(_param(params, "POINT", "UNITS", ["mm"])) or ["mm"])[0]
    group_of: dict[str, tuple[str, str]] = {}
    for grp, (kind, unit_param) in _OUTPUT_GROUPS.items():
        unit = (_strings(_param(params, "POINT", unit_param, [])) or [""])[0]
        if kind == "position" and not unit:
            unit = pos_units
        for lab in _strings(_param(params, "POINT", grp, [])):
            group_of.setdefault(lab, (kind, unit))
    kinds, units = [], []
    for lab, orig in zip(out, labels):
        if orig in group_of:
            kind, unit = group_of[orig]
        elif _PIG_AXES.match(orig) or _JOINT_CENTRE.match(orig):
            kind, unit = "position", pos_units
        elif _OUTPUT_NAME.search(orig):
            kind, unit = _guess_output_kind(orig), ""
        else:
            kind, unit = "marker", pos_units
        kinds.append(kind)
        units.append(unit)

    # Residual < 0 means "not reconstructed" (ezc3d already gives NaN for most writers).
    resid = np.asarray(c3d["data"]["meta_points"]["residuals"], dtype=np.float64)
    if resid.size:
        bad = resid[0] < 0
        pts[:, bad] = np.nan
    return out, labels, pts, kinds, units


def _guess_output_kind(label: str) -> str:
    low = label.lower()
    for word, kind in (("angle", "angle"), ("power", "power"), ("moment", "moment"),
                       ("force", "force"), ("grf", "force")):
        if word in low:
            return kind
    return "position"


# --- axes ------------------------------------------------------------------------------------

_PELVIS = re.compile(r"asi|psi|sacr|sac$|iliac|ips|ias|^v?sac", re.IGNORECASE)
_HEEL = re.compile(r"hee|heel|fcc|calc", re.IGNORECASE)
_ANKLE = re.compile(r"ank|mal", re.IGNORECASE)
_TOE = re.compile(r"toe|mt[1-5]|p[15]mt|fm[1-5]|mh$|^[lr]\.?to$", re.IGNORECASE)


def _parse_plate_corners(path: Path, params: dict) -> np.ndarray:
    """FORCE_PLATFORM:CORNERS as (p, 4, 3) in file coordinates (empty when no plates)."""
    used = _param(params, "FORCE_PLATFORM", "USED")
    n = int(np.asarray(used).ravel()[0]) if used is not None and np.size(used) else 0
    if n == 0:
        return np.zeros((0, 4, 3))
    corners = _param(params, "FORCE_PLATFORM", "CORNERS")
    c = np.asarray(corners, dtype=np.float64) if corners is not None else np.zeros(0)
    if c.ndim != 3 or c.shape[0] != 3 or c.shape[1] != 4 or c.shape[2] < n:
        raise InputError(path, "FORCE_PLATFORM:CORNERS",
                         f"shape {c.shape} does not hold 4 corners for {n} plates")
    return np.transpose(c[:, :, :n], (2, 1, 0))


def _nanmean_rows(x: np.ndarray, axis: int) -> np.ndarray:
    with _quiet():
        return np.nanmean(x, axis=axis)


@contextlib.contextmanager
def _quiet():
    """Silence NumPy's 'Mean of empty slice' warnings inside the reader (all-NaN markers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        yield


def _group_track(labels, pts, is_marker, pattern) -> np.ndarray | None:
    """Mean trajectory (3, m) of the markers whose label matches ``pattern``, or None."""
    idx = [j for j, lab in enumerate(labels) if is_marker[j] and pattern.search(lab)]
    if not idx:
        return None
    with _quiet():
        track = np.nanmean(pts[:, idx, :], axis=1)
    return track if np.isfinite(track).any() else None


def _detect_axes(path, params, labels, pts, is_marker, corners) -> tuple[np.ndarray, dict]:
    """The signed permutation ``A`` with ``lab = A @ file`` and how it was found."""
    info: dict = {}
    markers = pts[:, is_marker, :]
    pelvis = _group_track(labels, pts, is_marker, _PELVIS)
    heel = _group_track(labels, pts, is_marker, _HEEL)
    if heel is None:  # no heel marker (e.g. lower-body PiG without HEE): the ankles
        heel = _group_track(labels, pts, is_marker, _ANKLE)
    toe = _group_track(labels, pts, is_marker, _TOE)

    # Up: the plate normal, oriented towards the markers.
    up = None
    if corners.shape[0]:
        normals = []
        for c in corners:
            n = np.cross(c[0] - c[1], c[0] - c[3])
            if np.linalg.norm(n) > 0:
                normals.append(n / np.linalg.norm(n))
        if normals:
            n = np.mean([nv * np.sign(nv[np.argmax(np.abs(nv))]) for nv in normals], axis=0)
            axis = int(np.argmax(np.abs(n)))
            with _quiet():
                mk = np.nanmedian(markers[axis]) if markers.size else np.nan
            surface = float(np.mean(corners[:, :, axis]))
            sign = 1.0 if not np.isfinite(mk) or mk >= surface else -1.0
            up = np.zeros(3)
            up[axis] = sign
            info["c3d_up_method"] = "force plate normal"
    if up is None and pelvis is not None and (heel is not None or toe is not None):
        foot = heel if heel is not None else toe
        d = _nanmean_rows(pelvis - foot, 1)
        if np.isfinite(d).all():
            axis = int(np.argmax(np.abs(d)))
            up = np.zeros(3)
            up[axis] = np.sign(d[axis])
            info["c3d_up_method"] = "feet to pelvis"
    if up is None:
        ys = (_strings(_param(params, "POINT", "Y_SCREEN", [])) or [""])[0].upper()
        m = re.fullmatch(r"([+-])([XYZ])", ys)
        up = np.zeros(3)
        if m:
            up["XYZ".index(m.group(2))] = 1.0 if m.group(1) == "+" else -1.0
            info["c3d_up_method"] = "POINT:Y_SCREEN"
        else:
            up[2] = 1.0
            info["c3d_up_method"] = "assumed +Z"
        log.warning("%s: vertical axis not found from plates or markers; using %s", path.name,
                    info["c3d_up_method"])
    up_axis = int(np.argmax(np.abs(up)))
    horiz = [a for a in range(3) if a != up_axis]

    # Travel: pelvis progression overground, else the heel→toe direction.
    fwd = _progression(pelvis, horiz)
    if fwd is not None:
        info["c3d_recording"] = "overground"
        info["c3d_forward_method"] = "pelvis progression"
        info["c3d_progression_mm"] = float(np.abs(fwd).max())
    if fwd is None and heel is not None and toe is not None:
        d = _nanmean_rows(toe - heel, 1)
        if np.isfinite(d[horiz]).all() and np.max(np.abs(d[horiz])) > 0:
            a = horiz[int(np.argmax(np.abs(d[horiz])))]
            fwd = np.zeros(3)
            fwd[a] = np.sign(d[a])
            info["c3d_forward_method"] = "heel to toe"
            info["c3d_recording"] = _treadmill_or_static(heel, up_axis)
    if fwd is None and markers.size:
        with _quiet():
            fwd = _progression(np.nanmean(markers, axis=1), horiz)  # all markers' centroid
        if fwd is not None:
            info["c3d_recording"] = "overground"
            info["c3d_forward_method"] = "progression of the marker centroid"
            info["c3d_progression_mm"] = float(np.abs(fwd).max())
    if fwd is not None:
        fwd = np.sign(fwd)
    if fwd is None:
        xs = (_strings(_param(params, "POINT", "X_SCREEN", [])) or [""])[0].upper()
        m = re.fullmatch(r"([+-])([XYZ])", xs)
        fwd = np.zeros(3)
        if m and "XYZ".index(m.group(2)) != up_axis:
            fwd["XYZ".index(m.group(2))] = 1.0 if m.group(1) == "+" else -1.0
            info["c3d_forward_method"] = "POINT:X_SCREEN"
        else:
            fwd[horiz[0]] = 1.0
            info["c3d_forward_method"] = "assumed first horizontal axis"
        info.setdefault("c3d_recording", "unknown")
        log.warning("%s: direction of travel not found from pelvis or feet; using %s",
                    path.name, info["c3d_forward_method"])
    left = np.cross(up, fwd)
    axes = np.vstack([fwd, left, up])

    # docs/metrics.md §1 check: toe ahead of heel in +X while the foot is low (on the ground).
    if heel is not None and toe is not None:
        h_lab = axes @ heel
        t_lab = axes @ toe
        ok = np.isfinite(h_lab).all(axis=0) & np.isfinite(t_lab).all(axis=0)
        if ok.sum() >= 1:
            z = h_lab[2, ok]
            low = z <= np.percentile(z, 30)
            ahead = float(np.mean((t_lab[0, ok] > h_lab[0, ok])[low]))
            info["c3d_axes_check"] = ahead
            if ahead < 0.5:
                log.warning("%s: toe markers ahead of heel in only %.0f %% of stance frames "
                            "after the axis mapping", path.name, 100 * ahead)
    return axes, info


def _progression(track, horiz, min_mm: float = 500.0) -> np.ndarray | None:
    """Displacement (3,) along the horizontal axis the track moved most, first to last valid
    frame, zero elsewhere; None when it moved less than ``min_mm`` (treadmill, static)."""
    if track is None:
        return None
    ok = np.isfinite(track).all(axis=0)
    if ok.sum() < 2:
        return None
    first, last = np.flatnonzero(ok)[[0, -1]]
    disp = track[:, last] - track[:, first]
    a = horiz[int(np.argmax(np.abs(disp[horiz])))]
    if abs(disp[a]) <= min_mm:
        return None
    out = np.zeros(3)
    out[a] = disp[a]
    return out


def _treadmill_or_static(heel, up_axis) -> str:
    """A recording with no progression: the feet move (treadmill) or stand still (static)."""
    with _quiet():
        z = heel[up_axis]
        z = z[np.isfinite(z)]
    if z.size < 2:
        return "unknown"
    return "treadmill" if np.percentile(z, 95) - np.percentile(z, 5) > 50.0 else "static"


def _describe_axes(axes: np.ndarray) -> str:
    out = []
    for name, row in zip("XYZ", axes):
        a = int(np.argmax(np.abs(row)))
        out.append(f"lab {name} = {'+' if row[a] > 0 else '-'}file {'XYZ'[a]}")
    return ", ".join(out)


# --- markers ---------------------------------------------------------------------------------

def _markers_in_lab(path, params, labels, pts, is_marker, axes, rate, marker_names):
    """MarkerData in the lab frame with CGM names, plus the virtual markers added.

    Exact zeros become NaN; names go through :func:`treadlab.config.markers.to_cgm` and the
    documented virtual markers (``SACR`` from the PSIS, ``LTOE``/``RTOE`` from MT1/MT5) are
    appended by :func:`treadlab.config.markers.virtual_markers`.
    """
    units = (_strings(_param(params, "POINT", "UNITS", ["mm"])) or ["mm"])[0].lower()
    scale = _LENGTH_MM.get(units)
    if scale is None:
        raise InputError(path, "POINT:UNITS", f"unknown length unit {units!r}")
    idx = np.flatnonzero(is_marker)
    xyz = pts[:, idx, :]
    zero = np.all(xyz == 0.0, axis=0)
    xyz = np.where(zero[None], np.nan, xyz)
    lab = np.einsum("ij,jkm->mki", axes, xyz) * scale
    names = _unique(list(to_cgm([labels[j] for j in idx], marker_names)))
    positions, all_names = virtual_markers(lab.astype(np.float32), names)
    n = lab.shape[0]
    md = MarkerData(time=np.arange(n, dtype=np.float64) / rate if rate > 0 else np.zeros(n),
                    positions=np.ascontiguousarray(positions, dtype=np.float32),
                    labels=list(all_names), rate_hz=float(rate))
    return md, list(all_names[len(names):])


def _unique(names: list[str]) -> list[str]:
    """Suffix ``_2``, ``_3`` … to repeated names (a lab alias table mapping two onto one)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


# --- force -----------------------------------------------------------------------------------

def _int_param(params, group, name, default=None):
    v = _param(params, group, name)
    if v is None or np.size(v) == 0:
        return default
    return np.asarray(v).astype(np.int64)


def _read_force(path: Path, c3d: dict, axes: np.ndarray, n_frames: int):
    """The wrench of every plate in the lab frame, and attributes describing how."""
    params = c3d["parameters"]
    header = c3d["header"]
    analogs = np.asarray(c3d["data"]["analogs"], dtype=np.float64)
    analogs = analogs[0] if analogs.ndim == 3 else np.zeros((0, 0))
    arate = float(header["analogs"]["frame_rate"] or 0.0)
    n = analogs.shape[1] if analogs.ndim == 2 else 0
    used = _int_param(params, "FORCE_PLATFORM", "USED", np.array([0]))
    p = int(used.ravel()[0]) if used.size else 0
    info: dict = {}
    if p == 0 or n == 0:
        if p and n == 0:
            log.info("%s: %d force plates declared but no analog samples", path.name, p)
        # no force recorded: an empty stream at the nominal (analog or point) rate
        nominal = arate if arate > 0 else float(header["points"]["frame_rate"])
        empty = ForceData(time=np.zeros(0), wrench=np.zeros((0, 0, 6), np.float32),
                          rate_hz=nominal, plates=[],
                          origin=np.zeros((0, 3)), corners=np.zeros((0, 4, 3)))
        return empty, info

    types = _int_param(params, "FORCE_PLATFORM", "TYPE")
    if types is None or types.size < p:
        raise InputError(path, "FORCE_PLATFORM:TYPE", f"needs {p} values, has "
                                                      f"{0 if types is None else types.size}")
    channel = _param(params, "FORCE_PLATFORM", "CHANNEL")
    ch = np.asarray(channel if channel is not None else [], dtype=np.int64)
    if ch.ndim == 1:
        ch = ch[:, None]
    if ch.ndim != 2 or ch.shape[1] < p:
        raise InputError(path, "FORCE_PLATFORM:CHANNEL",
                         f"shape {ch.shape} does not list channels for {p} plates")
    corners_file = _parse_plate_corners(path, params)
    origin_raw = _param(params, "FORCE_PLATFORM", "ORIGIN")
    org = np.asarray(origin_raw if origin_raw is not None else [], dtype=np.float64)
    if org.ndim == 1 and org.size == 3 * p:
        org = org.reshape(p, 3).T
    if org.ndim != 2 or org.shape[0] != 3 or org.shape[1] < p:
        raise InputError(path, "FORCE_PLATFORM:ORIGIN", f"shape {org.shape} does not hold "
                                                        f"3 values for {p} plates")
    cal_raw = _param(params, "FORCE_PLATFORM", "CAL_MATRIX")
    cal = np.asarray(cal_raw if cal_raw is not None else [], dtype=np.float64)
    a_units = _strings(_param(params, "ANALOG", "UNITS", []))
    pos_units = (_strings(_param(params, "POINT", "UNITS", ["mm"])) or ["mm"])[0].lower()
    pos_scale = _LENGTH_MM.get(pos_units)
    if pos_scale is None:
        raise InputError(path, "POINT:UNITS", f"unknown length unit {pos_units!r}")

    wrench = np.zeros((n, p, 6), dtype=np.float64)
    origin = np.zeros((p, 3))
    corners = np.zeros((p, 4, 3))
    flipped = []
    moment_units = []
    for i in range(p):
        t = int(types[i])
        nch = 8 if t == 3 else 6
        if t not in (1, 2, 3, 4):
            raise InputError(path, f"FORCE_PLATFORM:TYPE[{i + 1}]",
                             f"plate type {t} is not supported (types 1-4 are)")
        if ch.shape[0] < nch:
            raise InputError(path, "FORCE_PLATFORM:CHANNEL",
                             f"type {t} plate {i + 1} needs {nch} channels, "
                             f"{ch.shape[0]} listed")
        cidx = ch[:nch, i] - 1
        if (cidx < 0).any() or (cidx >= analogs.shape[0]).any():
            raise InputError(path, f"FORCE_PLATFORM:CHANNEL[:, {i + 1}]",
                             f"channel numbers {list(cidx + 1)} outside 1..{analogs.shape[0]}")
        data = analogs[cidx]  # (nch, n)
        c = corners_file[i] * pos_scale  # mm
        rot = _plate_frame(path, i, c)
        centre = c.mean(axis=0)
        o = org[:, i] * pos_scale
        if o[2] > 0:
            o = -o  # Vicon writes the transducer→surface vector with +Z; the convention is −Z
        if t == 4:
            data = _cal_matrix(path, cal, i) @ data
        if t in (2, 4):
            k, unit = _moment_units(a_units, cidx, pos_scale, data, o, c)
            data = np.vstack([data[:3], data[3:6] * k])
            moment_units.append(unit)
            if "check" in unit:
                log.warning("%s: plate %d: moment channels labelled %r put the centre of "
                            "pressure off the plate; read as %s", path.name, i + 1,
                            a_units[int(cidx[3])], unit.split()[0])
        elif t == 1:
            data = np.vstack([data[:3], data[3:5] * pos_scale, data[5:6] * pos_scale])
        f_plate, m_plate = _plate_wrench(t, data, o)  # (3, n) N and N·mm about the centre
        f_lab = axes @ (rot @ f_plate)
        m_lab = axes @ (rot @ m_plate) * 1e-3  # N·m
        if _polarity_inverted(f_lab[2]):
            f_lab, m_lab = -f_lab, -m_lab
            flipped.append(i + 1)
        wrench[:, i, :3] = f_lab.T
        wrench[:, i, 3:] = m_lab.T
        origin[i] = axes @ centre
        corners[i] = (axes @ c.T).T
    if flipped:
        log.warning("%s: plates %s gave a negative vertical ground reaction in stance; their "
                    "wrench was negated", path.name, flipped)
    info.update({
        "force_plate_types": np.asarray(types[:p], dtype=np.int64),
        "force_polarity_flipped": np.asarray(flipped, dtype=np.int64),
        "force_moment_reference": "centre of each plate's working surface (mean of corners)",
        "force_moment_units": ", ".join(moment_units),
        "c3d_plate_origin": org[:, :p].T.astype(np.float64),
    })
    fd = ForceData(time=np.arange(n, dtype=np.float64) / arate,
                   wrench=wrench.astype(np.float32), rate_hz=arate,
                   plates=[f"FP{i + 1}" for i in range(p)],
                   origin=origin, corners=corners)
    return fd, info


def _plate_frame(path: Path, i: int, c: np.ndarray) -> np.ndarray:
    """Rotation plate → file (columns: plate x, y, z) from the corners, as the C3D spec."""
    x = c[0] - c[1]
    y = c[0] - c[3]
    z = np.cross(x, y)
    if np.linalg.norm(x) == 0 or np.linalg.norm(z) == 0:
        raise InputError(path, f"FORCE_PLATFORM:CORNERS[{i + 1}]",
                         "corners do not span a plate surface")
    y = np.cross(z, x)
    return np.column_stack([x / np.linalg.norm(x), y / np.linalg.norm(y),
                            z / np.linalg.norm(z)])


def _cal_matrix(path: Path, cal: np.ndarray, i: int) -> np.ndarray:
    if cal.ndim == 2 and cal.shape == (6, 6) and i == 0:
        return cal
    if cal.ndim != 3 or cal.shape[:2] != (6, 6) or cal.shape[2] <= i:
        raise InputError(path, "FORCE_PLATFORM:CAL_MATRIX",
                         f"shape {cal.shape} has no 6×6 matrix for type-4 plate {i + 1}")
    return cal[:, :, i]


def _plate_wrench(t: int, data: np.ndarray, o: np.ndarray):
    """Force and moment about the surface centre, in the plate frame (file units)."""
    if t == 1:
        f = data[0:3]
        px, py, tz = data[3], data[4], data[5]
        # force applied at (px, py, 0) about the surface centre, plus the free moment
        p = np.vstack([px, py, np.zeros_like(px)])
        m = np.cross(p.T, f.T).T
        m[2] += tz
        return f, m
    if t == 3:
        fx12, fx34, fy14, fy23, fz1, fz2, fz3, fz4 = data
        a, b, az0 = o
        f = np.vstack([fx12 + fx34, fy14 + fy23, fz1 + fz2 + fz3 + fz4])
        m = np.vstack([b * (fz1 + fz2 - fz3 - fz4),
                       a * (-fz1 + fz2 + fz3 - fz4),
                       b * (-fx12 + fx34) - a * (fy14 - fy23)])
        m = m + np.cross(f.T, np.array([0.0, 0.0, az0])).T
        return f, m
    f = data[0:3]
    m = data[3:6] + np.cross(f.T, o).T  # M_centre = M_origin + F × (centre − origin)
    return f, m


_MOMENT_TO_NMM = {"nmm": 1.0, "nm": 1000.0, "ncm": 10.0}


def _moment_units(a_units, cidx, pos_scale, data, o, c):
    """Factor turning a type-2/4 plate's moment channels into N·mm, and what was used.

    ANALOG:UNITS is not trusted blindly: some writers label N·mm channels "Nm" (gait-pig-nz).
    The stated unit is kept when the centre of pressure it implies falls on the plate while the
    plate is loaded; otherwise the other of N·mm / N·m is tried. With no unit (raw volts
    through a calibration matrix) the C3D convention N × POINT:UNITS is the first guess.
    """
    stated = a_units[int(cidx[3])] if len(a_units) > int(cidx[3]) else ""
    key = stated.replace(".", "").replace("·", "").replace("*", "").replace(" ", "").lower()
    first = _MOMENT_TO_NMM.get(key)
    label = stated if first is not None else f"N*{'mm' if pos_scale == 1 else 'POINT:UNITS'}"
    if first is None:
        first = pos_scale
    half_diag = 0.5 * max(np.linalg.norm(c[0] - c[2]), np.linalg.norm(c[1] - c[3]))
    f = data[:3]
    load = np.abs(f[2])
    loaded = load > max(50.0, 0.2 * (load.max() if load.size else 0.0))
    if loaded.sum() < 3:
        return first, label
    fl, ml = f[:, loaded], data[3:6, loaded]

    def radius(k):
        m = ml * k + np.cross(fl.T, o).T
        return float(np.median(np.hypot(m[1] / fl[2], m[0] / fl[2])))

    if radius(first) <= 1.2 * half_diag:
        return first, label
    for name, k in (("Nmm", 1.0), ("Nm", 1000.0)):
        if k != first and radius(k) <= 1.2 * half_diag:
            return k, f"{name} (file says {stated or 'nothing'}; centre-of-pressure check)"
    return first, label


def _polarity_inverted(fz: np.ndarray) -> bool:
    """True when a clearly loaded plate reads mostly negative vertical force."""
    if fz.size == 0:
        return False
    lo, hi = np.percentile(fz, [1, 99])
    return bool(-lo > 250.0 and -lo > 3.0 * max(hi, 0.0))


# --- events ----------------------------------------------------------------------------------

_SIDE_CODES = {"l": 0, "left": 0, "r": 1, "right": 1}


def _parse_events(path: Path, params: dict, first_frame: int, rate: float) -> dict:
    """EVENT group → parallel arrays on the session clock.

    Handles the (2, n) minutes/seconds TIMES array, the flat interleaved 1-D variant
    (Nexus), labels without contexts (Qualisys ``LHS``) and codes in CONTEXTS with empty labels
    (Motion Analysis).
    """
    out = {"time": np.zeros(0), "side": np.zeros(0, np.int8), "kind": [], "source": []}
    used = _param(params, "EVENT", "USED")
    times = _param(params, "EVENT", "TIMES")
    if times is None or np.size(times) == 0:
        return out
    t = np.asarray(times, dtype=np.float64)
    if t.ndim == 1:
        if t.size % 2:
            raise InputError(path, "EVENT:TIMES", f"{t.size} values cannot be "
                                                  "(minutes, seconds) pairs")
        t = t.reshape(-1, 2).T
    elif t.ndim != 2 or t.shape[0] != 2:
        raise InputError(path, "EVENT:TIMES", f"shape {t.shape}, expected (2, n)")
    n = t.shape[1]
    if used is not None and np.size(used):
        n = min(n, int(np.asarray(used).ravel()[0]))
    seconds = t[0, :n] * 60.0 + t[1, :n]
    contexts = _strings(_param(params, "EVENT", "CONTEXTS", []))
    labels = _strings(_param(params, "EVENT", "LABELS", []))
    contexts += [""] * (n - len(contexts))
    labels += [""] * (n - len(labels))
    t0 = first_frame / rate if rate > 0 else 0.0  # C3D time of the first stored frame
    sides, kinds, sources = [], [], []
    for ctx, lab in zip(contexts[:n], labels[:n]):
        side, kind = _decode_event(ctx, lab)
        sides.append(side)
        kinds.append(kind)
        sources.append(f"{ctx}:{lab}" if ctx and lab else (ctx or lab))
    order = np.argsort(seconds, kind="stable")
    out["time"] = (seconds - t0)[order]
    out["side"] = np.asarray(sides, dtype=np.int8)[order]
    out["kind"] = [kinds[j] for j in order]
    out["source"] = [sources[j] for j in order]
    return out


def _decode_event(context: str, label: str) -> tuple[int, str]:
    """(side 0 left / 1 right / -1 none, kind) from an event's context and label."""
    ctx = context.strip().lower()
    lab = label.strip().lower()
    side = _SIDE_CODES.get(ctx, -1)
    code = lab or ctx  # Motion Analysis puts the code in CONTEXTS
    m = re.fullmatch(r"([lr])\s*[-_.]?\s*(hs|fs|ic|to|fo|tc)", code)
    if m:
        side = _SIDE_CODES[m.group(1)]
        kind = "foot_strike" if m.group(2) in ("hs", "fs", "ic") else "foot_off"
        return side, kind
    words = code.replace("_", " ")
    if side < 0:
        if words.startswith("left") or words.startswith("l "):
            side = 0
        elif words.startswith("right") or words.startswith("r "):
            side = 1
    if re.search(r"(foot|heel) ?strike|initial contact|foot ?contact|\bhs\b|\bfs\b", words):
        return side, "foot_strike"
    if re.search(r"(foot|toe) ?off|\bto\b|\bfo\b", words):
        return side, "foot_off"
    return side, re.sub(r"\s+", "_", words) or "event"


# --- model outputs, subject, body mass -------------------------------------------------------

def _reference_points(labels, pts, kinds, units, axes, params) -> dict:
    """Model outputs by label: positions rotated into the lab frame (mm), others untouched."""
    pos_units = (_strings(_param(params, "POINT", "UNITS", ["mm"])) or ["mm"])[0].lower()
    data, kind_of, unit_of = {}, {}, {}
    for j, (lab, kind, unit) in enumerate(zip(labels, kinds, units)):
        if kind == "marker":
            continue
        v = pts[:, j, :]
        if kind == "position":
            scale = _LENGTH_MM.get((unit or pos_units).lower(), 1.0)
            v = (axes @ v) * scale
            unit = "mm"
            kind_of[lab] = "position (lab frame)"
        else:
            kind_of[lab] = f"{kind} (as stored)"
        data[lab] = np.ascontiguousarray(v.T, dtype=np.float32)
        unit_of[lab] = unit
    return {"data": data, "kinds": kind_of, "units": unit_of}


def _parse_subject(path: Path, params: dict) -> tuple[dict, float | None]:
    subject: dict = {}
    proc = params.get("PROCESSING") or {}
    for name, keys in _SUBJECT_PARAMS.items():
        if name not in proc:
            continue
        v = np.asarray(proc[name]["value"], dtype=np.float64).ravel()
        if v.size and np.isfinite(v[0]) and v[0] > 0:
            for key in keys:
                subject.setdefault(key, float(v[0]))
    if "marker_diameter_mm" not in subject:
        d = _param(params, "SEG", "MARKER_DIAMETER")
        if d is not None and np.size(d) and float(np.asarray(d).ravel()[0]) > 0:
            subject["marker_diameter_mm"] = float(np.asarray(d).ravel()[0])
    mass = None
    if "Bodymass" in proc:
        v = np.asarray(proc["Bodymass"]["value"], dtype=np.float64).ravel()
        if v.size and np.isfinite(v[0]) and v[0] > 0:
            mass = float(v[0])
    return subject, mass


def _body_mass(path: Path, force: ForceData, given, file_mass) -> tuple[float, str, dict]:
    """(mass kg, source, attrs): the argument, else PROCESSING:Bodymass, else the force.

    Whenever the force allows an estimate it is stored (``body_mass_force_estimate_kg``) and a
    stated mass more than 10 % away from it is logged: a plausibility check of the plates'
    calibration and sign as much as of the stated mass.
    """
    if given is not None:
        try:
            given = float(given)
        except (TypeError, ValueError):
            given = float("nan")
        if not (math.isfinite(given) and given > 0):
            raise InputError(path, "body mass", f"must be a positive number of kg, got {given!r}")
    est = _force_body_mass(force)
    info: dict = {}
    method = None
    if est is not None:
        est_mass, info = est
        method = info.pop("body_mass_method")
        info["body_mass_force_estimate_kg"] = est_mass
    if given is not None or file_mass is not None:
        mass = given if given is not None else file_mass
        source = "argument" if given is not None else "c3d PROCESSING:Bodymass"
        if est is not None and abs(est_mass - mass) > 0.10 * mass:
            log.warning("%s: body mass %.1f kg (%s) but the plates give %.1f kg", path.name,
                        mass, source, est_mass)
        return mass, source, info
    if est is None:
        # info, not warning: import_c3d turns this into its one-line error
        log.info("%s: body mass unknown: no --body-mass, no PROCESSING:Bodymass, and the "
                 "force holds neither whole strides nor standing", path.name)
        return float("nan"), "unknown", {}
    if "loaded throughout" in method:
        return est_mass, ("force: mean vertical force, plates loaded throughout (standing or "
                          "walking) / g"), info
    return est_mass, "force: mean vertical force over whole strides / g", info


def _force_body_mass(force: ForceData) -> tuple[float, dict] | None:
    """(kg, attrs) from the plates' summed vertical force with the shared estimate
    (:func:`treadlab.kernels.forces.estimate_body_weight`), or None when it gives none."""
    if force.wrench.shape[0] == 0 or force.wrench.shape[1] == 0 or not force.rate_hz > 0:
        return None
    fz = force.wrench[:, :, 2].astype(np.float64).sum(axis=1)
    t0 = float(force.time[0]) if len(force.time) else 0.0
    weight, how = estimate_body_weight(fz, float(force.rate_hz), t0=t0)
    if not np.isfinite(weight):
        return None
    info = {"body_mass_method": how["method"]}
    if how["strides"]:
        info.update(body_mass_window_s=how["window_s"], body_mass_strides=how["strides"],
                    body_mass_zero_offset_n=how["zero_offset_n"])
    return weight / G, info


def _belt_speed(labels, pts, is_marker, axes, rate, params) -> float:
    """Treadmill belt speed (m/s): median backward speed of the heels while on the ground.

    A foot on the belt moves backwards with it; the heel markers' lowest 15 % of frames are
    taken as ground contact.
    """
    units = (_strings(_param(params, "POINT", "UNITS", ["mm"])) or ["mm"])[0].lower()
    scale = _LENGTH_MM.get(units, 1.0)
    speeds = []
    for side in "LR":
        idx = [j for j, lab in enumerate(labels) if is_marker[j] and _HEEL.search(lab)
               and lab.upper().startswith(side)]
        if not idx or not rate > 0:
            continue
        with _quiet():
            p = (axes @ np.nanmean(pts[:, idx, :], axis=1)) * scale  # (3, m) lab mm
        ok = np.isfinite(p).all(axis=0)
        if ok.sum() < 10:
            continue
        low = ok & (p[2] <= np.percentile(p[2, ok], 15))
        v = -np.gradient(p[0]) * rate / 1000.0
        sel = low & np.isfinite(v)
        if sel.sum() >= 5:
            speeds.append(float(np.median(v[sel])))
    return float(np.median(speeds)) if speeds else float("nan")


def _manufacturer(params: dict) -> str:
    m = params.get("MANUFACTURER") or {}
    parts = []
    for key in ("COMPANY", "Company", "SOFTWARE", "Software"):
        if key in m:
            s = _strings(m[key]["value"])
            if s and s[0] and not any(s[0] in p for p in parts):
                parts = [p for p in parts if p not in s[0]] + [s[0]]
    return " ".join(parts)
