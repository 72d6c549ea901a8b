"""The ``treadlab.session`` v1 archive (DESIGN §4): in-memory dataclasses, reader and writer.

Lab frame: X = direction of travel, Y = left, Z = up; positions in mm, forces in N, moments in
N·m, times in float64 seconds on the session clock.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.config import software_version
from treadlab.config.errors import InputError

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


# =============================================================================================
# Reader / writer
# =============================================================================================

log = logging.getLogger(__name__)

LIBVER = ("v110", "v110")
#: gzip level for every dataset (DESIGN §4: gzip only, readable everywhere without plugins).
#: Level 1: on noisy float32 force it wrote 20 % faster than level 4 at the same ratio (0.96).
GZIP_LEVEL = 1
#: gzip level of ``/derived/angles/values``: 0 (deflate "stored" blocks, still the gzip filter,
#: read everywhere). Joint angles are measured float32 noise to gzip: level 1 shrank them by 7 %
#: (ratio 0.93) at about 20 MB/s, 54 ms of a 2-minute session's write; level 0 takes 6 ms.
DERIVED_ANGLES_GZIP_LEVEL = 0
#: Longest time span one chunk of a live (resizable) stream may hold, in seconds. Under SWMR a
#: chunk must not span more than the flush interval (NOTES.md), and the recorder flushes at least
#: once a second.
CHUNK_SECONDS = 0.5
STATUSES = ("recording", "complete", "interrupted")
COMPONENTS = ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
WRENCH_UNITS = "N (Fx, Fy, Fz), N*m (Mx, My, Mz)"
REQUIRED_ROOT_ATTRS = ("format", "format_version", "session_id", "subject_id", "body_mass_kg",
                       "created_utc", "software", "lab", "status", "belt_speed_m_s")
CONTACT_FIELDS = ("side", "t_strike", "t_off", "contact_time", "flight_time", "peak_vgrf",
                  "loading_rate", "peak_braking", "braking_impulse", "propulsive_impulse",
                  "pelvic_drop", "trunk_lean", "overstride", "shank_angle_ic",
                  "peak_hip_extension", "valid")
SCORE_FIELDS = ("cause", "score", "value", "value_left", "value_right", "unit", "normal_low",
                "normal_high", "n_steps")
#: Units of the known per-row derived quantities. Others are stored with units "1" unless the
#: ``derived`` dict given to :func:`write_derived` carries ``"units": {name: unit}``.
DERIVED_UNITS = {
    "side": "1", "t_strike": "s", "t_off": "s", "contact_time": "s", "flight_time": "s",
    "peak_vgrf": "BW", "loading_rate": "BW/s", "loading_rate_fallback": "BW/s",
    "peak_braking": "BW", "braking_impulse": "BW*s", "propulsive_impulse": "BW*s",
    "pelvic_drop": "deg", "trunk_lean": "deg", "trunk_lean_midstance": "deg",
    "overstride": "mm", "shank_angle_ic": "deg", "peak_hip_extension": "deg", "valid": "1",
    "flags": "1", "i_strike": "sample", "i_off": "sample", "peak_n": "N",
    "score": "1", "value": "see unit", "value_left": "see unit", "value_right": "see unit",
    "unit": "", "cause": "", "normal_low": "see unit", "normal_high": "see unit",
    "n_steps": "1", "z": "1", "status": "", "plate": "1", "pelvis_tilt_mean": "deg",
    "peak_hip_extension_source": "", "heel_lead": "mm",
}
#: Index datasets written only to serve as netCDF dimensions; the reader drops them.
_INDEX_SCALES = ("contact", "step", "row", "event")
_ALLOWED_FILTERS = {"gzip", "shuffle", "fletcher32", "scaleoffset"}
#: Units the raw streams must be in (a file in m or kN would be silently wrong by 1000×).
_RAW_UNITS = {
    "raw/force/time": lambda u: u in ("s", "seconds", "second"),
    "raw/markers/time": lambda u: u in ("s", "seconds", "second"),
    "raw/markers/positions": lambda u: u == "mm",
    "raw/force/wrench": lambda u: u.startswith("N") and not u.startswith("N*mm"),
}
_RAW_UNITS_TEXT = {"raw/force/time": "'s'", "raw/markers/time": "'s'",
                   "raw/markers/positions": "'mm'",
                   "raw/force/wrench": f"N and N*m (e.g. {WRENCH_UNITS!r})"}


# --- small helpers ---------------------------------------------------------------------------

def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _str_dtype():
    return h5py.string_dtype("utf-8")


def _to_attr(value):
    """Python/NumPy value → something h5py stores portably as an attribute."""
    if isinstance(value, (bool, np.bool_)):
        return np.uint8(bool(value))
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=_str_dtype())
    if isinstance(value, (list, tuple)) and not value:
        return np.array([], dtype=_str_dtype())
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    arr = np.asarray(value)
    if arr.dtype.kind in ("U", "O"):
        return arr.astype(str).astype(_str_dtype())
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    return value


def _from_attr(value):
    """h5py attribute value → plain Python (str, int, float, list[str]) or a NumPy array."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in ("S", "O", "U"):
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in value.ravel()]
        if value.ndim == 0:
            return value.item()
        return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _attrs(obj) -> dict:
    return {k: _from_attr(v) for k, v in obj.attrs.items()
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid")}


def _read_array(ds) -> np.ndarray:
    """A dataset as a NumPy array; variable-length strings come back as ``str`` objects."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.array(ds.asstr()[()], dtype=object) if ds.shape else np.array(ds.asstr()[()])
    return ds[()]


def _chunk_rows(rate_hz: float, row_bytes: int) -> int:
    rows = max(1, int(rate_hz * CHUNK_SECONDS))
    # keep a chunk under ~1 MiB even for very wide rows
    return max(1, min(rows, (1 << 20) // max(1, row_bytes)))


def _new_dataset(group, name, shape, dtype, units, *, rows_per_chunk=None, data=None,
                 level=None, **attrs):
    """Create one chunked, gzip-compressed dataset with a ``units`` attribute.

    ``rows_per_chunk`` given: the first axis is resizable (``maxshape=None``), chunked by that
    many rows, for live appending. Otherwise the dataset has a fixed shape (chunked along the
    first axis when it is not scalar). ``level``: gzip level (default :data:`GZIP_LEVEL`).
    """
    dtype = _str_dtype() if dtype is str else np.dtype(dtype)
    kwargs = {}
    if rows_per_chunk is not None:
        # a zero-width axis (no plates, no markers) cannot hold a chunk unless it may grow
        kwargs["maxshape"] = (None,) + tuple(s if s else None for s in shape[1:])
        kwargs["chunks"] = (rows_per_chunk,) + tuple(max(1, s) for s in shape[1:])
    elif len(shape) and all(s > 0 for s in shape):
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * (dtype.itemsize or 16)
        rows = max(1, min(shape[0], (1 << 20) // max(1, row_bytes)))
        if level == 0:  # stored, not compressed: equal chunks, no padded edge chunk on disk
            rows = -(-shape[0] // -(-shape[0] // rows))
        kwargs["chunks"] = (rows,) + tuple(shape[1:])
    elif len(shape):  # empty fixed dataset: make it resizable so it can be chunked
        kwargs["maxshape"] = tuple(None if s == 0 else s for s in shape)
        kwargs["chunks"] = tuple(max(1, s) for s in shape)
    if "chunks" in kwargs:
        kwargs["compression"] = "gzip"
        kwargs["compression_opts"] = GZIP_LEVEL if level is None else level
    if data is not None and "maxshape" not in kwargs and np.shape(data) == tuple(shape):
        # written as it is created: one call into HDF5 instead of create, select and write
        ds = group.create_dataset(name, dtype=dtype, data=data, **kwargs)
    else:
        ds = group.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
        if data is not None and ds.size:
            ds[...] = data
    ds.attrs["units"] = units
    for key, value in attrs.items():
        ds.attrs[key] = _to_attr(value)
    return ds


def _write_array(group, name, data, units, *, level=None, **attrs):
    """Write a whole array (numbers or strings) as a fixed-size chunked, compressed dataset
    (gzip ``level``, default :data:`GZIP_LEVEL`)."""
    arr = np.asarray(data)
    if arr.dtype.kind in ("U", "S", "O"):
        arr = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()],
                       dtype=object).reshape(arr.shape)
        return _new_dataset(group, name, arr.shape, str, units, data=arr, level=level, **attrs)
    if arr.dtype.kind == "b":
        attrs.setdefault("boolean", 1)
        arr = arr.astype(np.uint8)
    return _new_dataset(group, name, arr.shape, arr.dtype, units, data=arr, level=level,
                        **attrs)


def _scale(group, name, values, units=""):
    """Create a fixed dimension-scale dataset ``name`` (netCDF dimension of the same name)."""
    ds = _write_array(group, name, np.asarray(values), units)
    ds.make_scale(name)
    return ds


def _attach(ds, *scales):
    for axis, sc in enumerate(scales):
        if sc is not None:
            ds.dims[axis].attach_scale(sc)


def append_rows(ds, values) -> None:
    """Append ``values`` along axis 0 of a resizable dataset (no-op when empty)."""
    values = np.asarray(values)
    if not len(values):
        return
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


# --- the live layout -------------------------------------------------------------------------

def create_raw_layout(h5file, *, plates, origin, corners, force_rate_hz, labels,
                      marker_rate_hz, n_channels=None, counts_dtype=None, calibration=None,
                      device_time=False, log=True) -> dict:
    """Create the empty, appendable ``/raw`` groups of a session (DESIGN §4).

    Used by :func:`write_session` and by the crash-safe recorder, which then appends rows with
    ``ds.resize`` + slice assignment and flushes. Every stream dataset is resizable along its
    first (time) axis and chunked by at most :data:`CHUNK_SECONDS` of data, gzip level
    :data:`GZIP_LEVEL`. Dimension scales are created and attached here, so call this *before*
    ``h5file.swmr_mode = True`` (NOTES.md).

    Parameters
    ----------
    h5file : h5py.File
        Open for writing, created with ``libver=LIBVER``.
    plates : list of str
        p plate names.
    origin : array_like, (p, 3) float, mm, lab frame
        Point about which each plate's moments are expressed.
    corners : array_like, (p, 4, 3) float, mm, lab frame
    force_rate_hz, marker_rate_hz : float
        Nominal rates (Hz).
    labels : list of str
        k marker labels in wire order.
    n_channels : int, optional
        Number of raw ADC channels; creates ``/raw/force/counts`` (n, c).
    counts_dtype : numpy dtype, optional
        ``int16`` or ``int32`` (default int32).
    calibration : dict, optional
        ``{"volts_per_count": float, "zero": (c,) counts, "channels": (p, 6) int,
        "matrix": (p, 6, 6) V → N, N·m}``; written as datasets in ``/raw/force/calibration``
        (datasets, not attributes, so a recorder can still write the tare ``zero`` under SWMR).
    device_time : bool or collection of {"force", "markers"}
        Also create ``/raw/<stream>/device_time`` (s, raw device clock): True for both streams.
    log : bool
        Create the ``/raw/log`` datasets (time, source, kind, detail).

    Returns
    -------
    dict of str → h5py.Dataset
        Keys ``"force/time"``, ``"force/wrench"``, ``"markers/time"``, ``"markers/positions"``
        and, when created, ``"force/counts"``, ``"force/device_time"``,
        ``"markers/device_time"``, ``"log/time"``, ``"log/source"``, ``"log/kind"``,
        ``"log/detail"``.
    """
    if isinstance(device_time, bool):
        device_time = ("force", "markers") if device_time else ()
    plates = [str(p) for p in plates]
    labels = [str(lb) for lb in labels]
    p, k = len(plates), len(labels)
    origin = np.asarray(origin, dtype=np.float64).reshape(p, 3)
    corners = np.asarray(corners, dtype=np.float64).reshape(p, 4, 3)
    out = {}

    force = h5file.require_group("raw").create_group("force")
    force.attrs["rate_hz"] = float(force_rate_hz)
    force.attrs["plates"] = _to_attr(plates)
    force.attrs["origin"] = origin
    force.attrs["corners"] = corners
    force.attrs["frame"] = "lab: X travel, Y left, Z up; mm"
    rows = _chunk_rows(force_rate_hz, p * 6 * 4)
    t = _new_dataset(force, "time", (0,), np.float64, "s", rows_per_chunk=rows, clock="session")
    t.make_scale("time")
    plate_sc = _scale(force, "plate", np.array(plates, dtype=object))
    comp_sc = _scale(force, "component", np.array(COMPONENTS, dtype=object))
    w = _new_dataset(force, "wrench", (0, p, 6), np.float32, WRENCH_UNITS, rows_per_chunk=rows,
                     components=list(COMPONENTS),
                     description="ground reaction on the body, moments about plate origin")
    _attach(w, t, plate_sc, comp_sc)
    out["force/time"], out["force/wrench"] = t, w
    if "force" in device_time:
        dt = _new_dataset(force, "device_time", (0,), np.float64, "s", rows_per_chunk=rows,
                          clock="device")
        _attach(dt, t)
        out["force/device_time"] = dt
    if n_channels:
        cdt = np.dtype(counts_dtype or np.int32)
        ch_sc = _scale(force, "channel", np.arange(n_channels, dtype=np.int32), "1")
        crow = _chunk_rows(force_rate_hz, n_channels * cdt.itemsize)
        c = _new_dataset(force, "counts", (0, n_channels), cdt, "counts", rows_per_chunk=crow)
        _attach(c, t, ch_sc)
        out["force/counts"] = c
    if calibration is not None:
        _write_calibration(force, calibration)

    markers = h5file["raw"].create_group("markers")
    markers.attrs["labels"] = _to_attr(labels)
    markers.attrs["rate_hz"] = float(marker_rate_hz)
    markers.attrs["frame"] = "lab: X travel, Y left, Z up; mm"
    mrows = _chunk_rows(marker_rate_hz, max(1, k) * 3 * 4)
    mt = _new_dataset(markers, "time", (0,), np.float64, "s", rows_per_chunk=mrows,
                      clock="session")
    mt.make_scale("time")
    lab_sc = _scale(markers, "label", np.array(labels, dtype=object))
    ax_sc = _scale(markers, "axis", np.array(["X", "Y", "Z"], dtype=object))
    pos = _new_dataset(markers, "positions", (0, k, 3), np.float32, "mm", rows_per_chunk=mrows,
                       occluded="NaN")
    _attach(pos, mt, lab_sc, ax_sc)
    out["markers/time"], out["markers/positions"] = mt, pos
    if "markers" in device_time:
        mdt = _new_dataset(markers, "device_time", (0,), np.float64, "s", rows_per_chunk=mrows,
                           clock="device")
        _attach(mdt, mt)
        out["markers/device_time"] = mdt

    if log:
        lg = h5file["raw"].create_group("log")
        lt = _new_dataset(lg, "time", (0,), np.float64, "s", rows_per_chunk=256, clock="session")
        lt.make_scale("event")
        out["log/time"] = lt
        for name in ("source", "kind", "detail"):
            ds = _new_dataset(lg, name, (0,), str, "", rows_per_chunk=256)
            _attach(ds, lt)
            out[f"log/{name}"] = ds
    return out


def _write_calibration(force_group, calibration: dict) -> None:
    cal = force_group.create_group("calibration")
    units = {"volts_per_count": "V/count", "zero": "counts", "channels": "1",
             "matrix": "N/V (Fx, Fy, Fz), N*m/V (Mx, My, Mz)"}
    for key, value in calibration.items():
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.ndim == 0:
            ds = cal.create_dataset(key, data=arr)
            ds.attrs["units"] = units.get(key, "1")
        else:
            _write_array(cal, key, arr, units.get(key, "1"))


def _read_calibration(force_group) -> dict | None:
    if "calibration" in force_group and isinstance(force_group["calibration"], h5py.Group):
        cal = force_group["calibration"]
        out = {}
        for key, ds in cal.items():
            value = _read_array(ds)
            out[key] = value.item() if np.ndim(value) == 0 else value
        return out
    # a calibration stored as attributes by another writer
    names = [k for k in force_group.attrs if k.startswith("calibration_")]
    if names or "volts_per_count" in force_group.attrs:
        out = {k[len("calibration_"):]: _from_attr(force_group.attrs[k]) for k in names}
        if "volts_per_count" in force_group.attrs:
            out["volts_per_count"] = _from_attr(force_group.attrs["volts_per_count"])
        return out
    return None


# --- writing a whole session -----------------------------------------------------------------

def _root_attrs(session: Session) -> dict:
    attrs = dict(session.attrs)
    attrs["format"] = FORMAT
    attrs.setdefault("format_version", FORMAT_VERSION)
    attrs.setdefault("session_id", str(uuid.uuid4()))
    attrs.setdefault("created_utc", _utc_now())
    attrs.setdefault("software", software_version())
    attrs.setdefault("status", "complete")
    return attrs


def write_session(path, session: Session) -> Path:
    """Write ``session`` as a new ``treadlab.session`` v1 file (replacing ``path``).

    The file is written beside ``path`` under a temporary name and moved into place with
    ``os.replace``, so a reader never sees a half-written archive.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.h5`` file.
    session : Session
        What to write. Missing root attributes ``format``, ``format_version``, ``session_id``
        (UUID4), ``created_utc`` (ISO 8601, UTC), ``software`` and ``status`` ("complete") are
        filled in; ``session.attrs`` itself is not modified.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as f:
            _write_session_into(f, session)
            f.flush()
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    log.debug("wrote %s", path)
    return path


def _write_session_into(f: h5py.File, session: Session) -> None:
    for key, value in _root_attrs(session).items():
        if value is not None:
            f.attrs[key] = _to_attr(value)
    fo, mk = session.force, session.markers
    wrench = np.asarray(fo.wrench, dtype=np.float32)
    counts = None if fo.counts is None else np.asarray(fo.counts)
    dsets = create_raw_layout(
        f, plates=fo.plates, origin=fo.origin, corners=fo.corners, force_rate_hz=fo.rate_hz,
        labels=mk.labels, marker_rate_hz=mk.rate_hz,
        n_channels=None if counts is None else counts.shape[1],
        counts_dtype=None if counts is None else counts.dtype, calibration=fo.calibration,
        device_time=[name for name, dt in (("force", fo.device_time),
                                           ("markers", mk.device_time)) if dt is not None],
        log=bool(session.log))
    append_rows(dsets["force/time"], np.asarray(fo.time, dtype=np.float64))
    append_rows(dsets["force/wrench"], wrench.reshape(len(wrench), len(fo.plates), 6))
    if counts is not None:
        append_rows(dsets["force/counts"], counts)
    if fo.device_time is not None:
        append_rows(dsets["force/device_time"], np.asarray(fo.device_time, dtype=np.float64))
    append_rows(dsets["markers/time"], np.asarray(mk.time, dtype=np.float64))
    pos = np.asarray(mk.positions, dtype=np.float32)
    append_rows(dsets["markers/positions"], pos.reshape(len(pos), len(mk.labels), 3))
    if mk.device_time is not None:
        append_rows(dsets["markers/device_time"], np.asarray(mk.device_time, dtype=np.float64))
    if session.log:
        rows = list(zip(*session.log))
        append_rows(dsets["log/time"], np.asarray(rows[0], dtype=np.float64))
        for i, name in enumerate(("source", "kind", "detail"), start=1):
            append_rows(dsets[f"log/{name}"], np.array([str(v) for v in rows[i]], dtype=object))

    if session.subject:
        g = f.create_group("subject")
        for key, value in session.subject.items():
            if value is not None:
                g.attrs[key] = _to_attr(value)
    if session.truth:
        _write_truth(f, session.truth)
    if session.reference:
        _write_reference(f, session.reference)
    if session.derived:
        _write_derived_into(f, session.derived, {})


def _write_truth(f, truth: dict) -> None:
    g = f.create_group("truth")
    params = g.create_group("params")
    for key, value in (truth.get("params") or {}).items():
        if value is not None:
            params.attrs[key] = _to_attr(value)
    _write_rows(g, "steps", truth.get("steps") or {}, "step")
    for key, value in truth.items():
        if key not in ("params", "steps") and value is not None:
            if isinstance(value, dict):
                _write_rows(g, key, value, "row")
            else:
                _write_array(g, key, value, DERIVED_UNITS.get(key, "1"))


def _write_rows(parent, name, columns: dict, dim: str, *, units: dict | None = None,
                index_name: str | None = None):
    """A group of parallel 1-D (or n-D sharing axis 0) datasets sharing one dimension ``dim``."""
    g = parent.create_group(name)
    lengths = {len(np.atleast_1d(v)) for v in columns.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"{g.name}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if index_name and index_name in columns:
        sc = _write_array(g, index_name, np.asarray(columns[index_name]),
                          (units or {}).get(index_name, DERIVED_UNITS.get(index_name, "")))
        sc.make_scale(index_name)
    else:
        sc = _scale(g, dim, np.arange(n, dtype=np.int32), "1")
    for key, value in columns.items():
        if value is None or key == index_name:
            continue
        unit = (units or {}).get(key, DERIVED_UNITS.get(key, "1"))
        ds = _write_array(g, key, np.atleast_1d(value), unit)
        if ds.ndim >= 1 and ds.shape[0] == n:
            ds.dims[0].attach_scale(sc)
    return g


def _write_reference(f, reference: dict) -> None:
    g = f.create_group("reference")
    events = reference.get("events")
    if events:
        ev = {k: v for k, v in events.items() if v is not None}
        _write_rows(g, "events", ev, "event", units={"time": "s", "side": "", "kind": "",
                                                       "source": ""})
    points = reference.get("points")
    if points:
        pg = g.create_group("points")
        units = reference.get("point_units") or {}
        for label, value in points.items():
            name = str(label).replace("/", "_")
            _write_array(pg, name, np.asarray(value, dtype=np.float32),
                         units.get(label, "deg" if "Angle" in str(label) else "mm"),
                         label=str(label))
    for key, value in reference.items():
        if key in ("events", "points", "point_units") or value is None:
            continue
        if isinstance(value, dict):
            sub = g.create_group(key)
            for k2, v2 in value.items():
                if isinstance(v2, (str, int, float, bool, np.generic)):
                    sub.attrs[k2] = _to_attr(v2)
                else:
                    _write_array(sub, k2, np.asarray(v2), "1")
        else:
            g.attrs[key] = _to_attr(value)


def _write_derived_into(f, derived: dict, attrs: dict) -> None:
    if "derived" in f:
        del f["derived"]
    g = f.create_group("derived")
    attrs = dict(attrs)
    attrs.setdefault("processed_utc", _utc_now())
    for key, value in attrs.items():
        if value is not None:
            g.attrs[key] = _to_attr(value)
    units = {**DERIVED_UNITS, **dict(derived.get("units") or {})}
    for key, value in derived.items():
        if value is None or key in ("units", "attrs"):
            continue
        if key == "contacts":
            _write_rows(g, "contacts", value, "contact", units=units)
        elif key == "scores":
            _write_rows(g, "scores", value, "cause", index_name="cause", units=units)
        elif key == "angles":
            _write_angles(g, value)
        elif isinstance(value, dict):
            _write_rows(g, key, value, "row", units=units)
        else:
            _write_array(g, key, np.asarray(value), units.get(key, "1"))


def _write_angles(parent, angles: dict) -> None:
    g = parent.create_group("angles")
    names = [str(n) for n in angles.get("names", [])]
    time = np.asarray(angles.get("time", []), dtype=np.float64)
    values = np.asarray(angles.get("values", np.zeros((len(time), len(names)))),
                        dtype=np.float32).reshape(len(time), len(names))
    reasons = dict(angles.get("reasons") or {})
    g.attrs["names"] = _to_attr(names)
    # one reason per angle, "" when computed, so MATLAB/R readers get a plain string array
    g.attrs["reasons"] = _to_attr([str(reasons.get(n, "")) for n in names])
    t = _write_array(g, "time", time, "s", clock="session")
    t.make_scale("time")
    sc = _scale(g, "angle", np.array(names, dtype=object))
    v = _write_array(g, "values", values, "deg", level=DERIVED_ANGLES_GZIP_LEVEL,
                     conventions="Plug-in Gait (left-side signs)")
    _attach(v, t, sc)
    extra = {k: v for k, v in reasons.items() if k not in names}
    if extra:
        g.attrs["reasons_other"] = json.dumps(extra, sort_keys=True)


# --- reading ---------------------------------------------------------------------------------

def _open(path) -> h5py.File:
    """Open an archive read-only; InputError (one line) when it cannot be read as HDF5."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as first:  # RuntimeError: corrupt superblocks
        msg = str(first).splitlines()[0] if str(first) else type(first).__name__
        # A capture killed in SWMR mode leaves the consistency flags set (NOTES.md); such a file
        # opens in SWMR-read mode. Only then: SWMR-read of a damaged file retries for minutes.
        if "h5clear" in msg or "already open for write" in msg:
            try:
                return h5py.File(path, "r", swmr=True)
            except (OSError, RuntimeError, ValueError):
                pass
        raise InputError(path, None, f"not a readable HDF5 file ({msg})") from None


def _require(f, path, name):
    if name not in f:
        raise InputError(path, "/" + name, "missing")
    return f[name]


def _require_attr(obj, path, name):
    if name not in obj.attrs:
        raise InputError(path, f"{obj.name}@{name}", "missing attribute")
    return _from_attr(obj.attrs[name])


def _read_rows(g) -> dict:
    out = {}
    for key, ds in g.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if key in _INDEX_SCALES and ds.attrs.get("CLASS") == b"DIMENSION_SCALE":
            continue
        arr = _read_array(ds)
        if int(ds.attrs.get("boolean", 0)):
            arr = arr.astype(bool)
        out[key] = arr
    return out


def read_session(path, derived: bool = False) -> Session:
    """Read a ``treadlab.session`` archive into a :class:`Session`.

    Works on the minimum contract (root attributes, ``/raw/force`` time/wrench/attributes and
    ``/raw/markers``) written by any program: optional pieces come back as ``None`` or empty.

    Parameters
    ----------
    path : str or os.PathLike
    derived : bool
        Also read ``/derived`` into ``session.derived`` (``None`` when absent).

    Raises
    ------
    InputError
        The file is not HDF5, or a required dataset/attribute is missing or malformed; the
        message names the file and the dataset/attribute.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            return _read_session_from(f, path, derived)
        except InputError:
            raise
        except (KeyError, ValueError, TypeError, OSError, RuntimeError, AttributeError) as exc:
            raise InputError(path, None, f"cannot read session: {_one_line(exc)}") from None


def _read_session_from(f, path, derived) -> Session:
    attrs = _attrs(f)
    fg = _require(f, path, "raw/force")
    time = np.asarray(_require(f, path, "raw/force/time")[()], dtype=np.float64)
    wrench = np.asarray(_require(f, path, "raw/force/wrench")[()], dtype=np.float32)
    plates = _require_attr(fg, path, "plates")
    plates = [plates] if isinstance(plates, str) else list(plates)
    p = len(plates)
    if wrench.ndim == 2 and wrench.shape[1] == 6 * p:
        wrench = wrench.reshape(len(wrench), p, 6)
    if wrench.ndim != 3 or wrench.shape[1:] != (p, 6) or len(wrench) != len(time):
        raise InputError(path, "/raw/force/wrench",
                         f"shape {wrench.shape}, expected ({len(time)}, {p}, 6)")
    force = ForceData(
        time=time, wrench=wrench, rate_hz=float(_require_attr(fg, path, "rate_hz")),
        plates=plates,
        origin=np.asarray(_require_attr(fg, path, "origin"), dtype=np.float64).reshape(p, 3),
        corners=np.asarray(_require_attr(fg, path, "corners"), dtype=np.float64).reshape(p, 4, 3),
        counts=fg["counts"][()] if "counts" in fg else None,
        calibration=_read_calibration(fg),
        device_time=fg["device_time"][()] if "device_time" in fg else None)

    mg = _require(f, path, "raw/markers")
    mtime = np.asarray(_require(f, path, "raw/markers/time")[()], dtype=np.float64)
    pos = np.asarray(_require(f, path, "raw/markers/positions")[()], dtype=np.float32)
    labels = _require_attr(mg, path, "labels")
    labels = [labels] if isinstance(labels, str) else list(labels)
    if len(mtime) == 0 and pos.size == 0:
        pos = pos.reshape(0, len(labels), 3)
    if pos.ndim != 3 or pos.shape[1:] != (len(labels), 3) or len(pos) != len(mtime):
        raise InputError(path, "/raw/markers/positions",
                         f"shape {pos.shape}, expected ({len(mtime)}, {len(labels)}, 3)")
    markers = MarkerData(time=mtime, positions=pos, labels=labels,
                         rate_hz=float(_require_attr(mg, path, "rate_hz")),
                         device_time=mg["device_time"][()] if "device_time" in mg else None)

    events = []
    if "raw/log" in f and "time" in f["raw/log"]:
        lg = f["raw/log"]
        cols = [lg["time"][()]] + [
            _read_array(lg[n]) if n in lg else np.array([""] * len(lg["time"]), dtype=object)
            for n in ("source", "kind", "detail")]
        events = [(float(t), str(s), str(k), str(d)) for t, s, k, d in zip(*cols)]

    subject = _attrs(f["subject"]) if "subject" in f else {}
    truth = None
    if "truth" in f:
        tg = f["truth"]
        truth = {"params": _attrs(tg["params"]) if "params" in tg else {},
                 "steps": _read_rows(tg["steps"]) if "steps" in tg else {}}
        for key, obj in tg.items():
            if key not in ("params", "steps"):
                truth[key] = _read_rows(obj) if isinstance(obj, h5py.Group) else _read_array(obj)
    reference = None
    if "reference" in f:
        rg = f["reference"]
        reference = {}
        if "events" in rg:
            reference["events"] = _read_rows(rg["events"])
        if "points" in rg:
            reference["points"] = {str(_from_attr(ds.attrs.get("label", key))): ds[()]
                                   for key, ds in rg["points"].items()}
        for key, obj in rg.items():
            if key in ("events", "points"):
                continue
            if isinstance(obj, h5py.Group):
                sub = _attrs(obj)
                sub.update({k: _read_array(d) for k, d in obj.items()
                            if isinstance(d, h5py.Dataset)})
                reference[key] = sub
        reference.update({k: v for k, v in _attrs(rg).items()})
    session = Session(attrs=attrs, force=force, markers=markers, log=events, subject=subject,
                      truth=truth, reference=reference)
    if derived:
        session.derived = _read_derived_from(f)
    return session


def _read_derived_from(f) -> dict | None:
    if "derived" not in f:
        return None
    g = f["derived"]
    out: dict = {"attrs": _attrs(g)}
    for key, obj in g.items():
        if key == "angles" and isinstance(obj, h5py.Group):
            names = _from_attr(obj.attrs.get("names", []))
            names = [names] if isinstance(names, str) else list(names)
            reasons_list = _from_attr(obj.attrs.get("reasons", []))
            reasons_list = [reasons_list] if isinstance(reasons_list, str) else reasons_list
            reasons = {n: r for n, r in zip(names, reasons_list) if r}
            if "reasons_other" in obj.attrs:
                reasons.update(json.loads(_from_attr(obj.attrs["reasons_other"])))
            out["angles"] = {"time": obj["time"][()] if "time" in obj else np.zeros(0),
                             "values": obj["values"][()] if "values" in obj
                             else np.zeros((0, len(names)), np.float32),
                             "names": names, "reasons": reasons}
        elif isinstance(obj, h5py.Group):
            out[key] = _read_rows(obj)
        else:
            out[key] = _read_array(obj)
    return out


def read_derived(path) -> dict | None:
    """``/derived`` of an archive, or ``None`` when it has not been processed.

    Returns ``{"attrs": {...}, "contacts": {name: (s,) array}, "angles": {"time": (m,) s,
    "values": (m, a) float32 deg, "names": [a], "reasons": {name: why NaN}},
    "scores": {name: (4,) array}}`` (string columns as object arrays of ``str``; ``valid`` as
    bool).
    """
    path = Path(path)
    with _open(path) as f:
        return _read_derived_from(f)


# --- atomic derived write --------------------------------------------------------------------

def _fsync(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quiet(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_derived(path, derived: dict, attrs: dict) -> Path:
    """Store ``derived`` as ``/derived`` of the archive at ``path``, atomically.

    The archive is copied to a temporary file in the same folder, ``/derived`` is replaced in
    the copy, the copy is flushed and fsynced and then moved over the original with
    ``os.replace``. The original is never opened for writing: a crash or kill at any point
    leaves either the old or the new archive, complete.

    Parameters
    ----------
    path : str or os.PathLike
        An existing archive.
    derived : dict
        ``{"contacts": {name: (s,) array}, "angles": {"time", "values", "names", "reasons"},
        "scores": {name: (4,) array}}`` (DESIGN §4 names; extra columns and extra groups of
        parallel columns are kept). An optional ``"units": {column: unit}`` entry gives the
        units of columns :data:`DERIVED_UNITS` does not know; ``"attrs"`` (as returned by
        :func:`read_derived`) is ignored.
    attrs : dict
        ``/derived`` attributes: ``pipeline_version``, ``config_hash`` (``processed_utc`` is
        filled in when missing).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        try:
            f = h5py.File(tmp, "r+")
        except OSError as exc:
            raise InputError(path, None, f"not a writable HDF5 file ({exc})") from None
        with f:
            _write_derived_into(f, derived, attrs)
            f.flush()
        _fsync(tmp)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return path


# --- validation ------------------------------------------------------------------------------

def validate_session(path) -> list[str]:
    """Check an archive against the ``treadlab.session`` v1 contract (DESIGN §4).

    Never raises for a bad file: an unreadable or non-HDF5 file gives one item.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    list of str
        One problem per item, each naming the dataset or attribute (``/raw/force/time:
        not increasing at sample 12``, ``/@session_id: missing attribute``); empty = valid.
    """
    path = Path(path)
    try:
        f = _open(path)
    except InputError as exc:
        return [exc.message]
    problems: list[str] = []
    try:
        with f:
            _validate_into(f, problems)
    except Exception as exc:  # a damaged file can fail anywhere; report, never trace back
        problems.append(f"unreadable structure: {type(exc).__name__}: {exc}")
    return problems


def _validate_into(f, problems: list[str]) -> None:
    add = problems.append
    # root attributes
    for key in REQUIRED_ROOT_ATTRS:
        if key not in f.attrs:
            add(f"/@{key}: missing attribute")
    ra = _attrs(f)
    if "format" in ra and ra["format"] != FORMAT:
        add(f"/@format: {ra['format']!r}, expected {FORMAT!r}")
    if "format_version" in ra:
        v = ra["format_version"]
        if not isinstance(v, (int, float)) or int(v) != v or not 1 <= v <= FORMAT_VERSION:
            add(f"/@format_version: {v!r}, this software reads versions 1..{FORMAT_VERSION}")
    if "session_id" in ra:
        try:
            uuid.UUID(str(ra["session_id"]))
        except ValueError:
            add(f"/@session_id: {ra['session_id']!r} is not a UUID")
    if "status" in ra:
        if ra["status"] not in STATUSES:
            add(f"/@status: {ra['status']!r}, expected one of {', '.join(STATUSES)}")
        elif ra["status"] == "recording":
            add("/@status: 'recording': the capture did not finish; run `treadlab recover`")
    if "created_utc" in ra:
        try:
            datetime.fromisoformat(str(ra["created_utc"]).replace("Z", "+00:00"))
        except ValueError:
            add(f"/@created_utc: {ra['created_utc']!r} is not an ISO 8601 time")
    if "body_mass_kg" in ra:  # needed for body-weight normalisation
        val = ra["body_mass_kg"]
        if not _is_number(val) or not val > 0:
            add(f"/@body_mass_kg: {val!r} must be a number > 0 (kg)")
    if "belt_speed_m_s" in ra:  # NaN = unknown (e.g. overground recordings)
        val = ra["belt_speed_m_s"]
        if not _is_number(val) or val < 0:
            add(f"/@belt_speed_m_s: {val!r} must be a number >= 0 (m/s) or NaN (unknown)")

    # every dataset: units (the right ones for the raw streams), portable filters
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if "units" not in obj.attrs:
                add(f"/{name}: missing attribute 'units'")
            elif name in _RAW_UNITS:
                unit = str(_from_attr(obj.attrs["units"])).strip()
                if not _RAW_UNITS[name](unit):
                    add(f"/{name}: units {unit!r}, expected {_RAW_UNITS_TEXT[name]}")
            bad = set(obj._filters) - _ALLOWED_FILTERS
            if bad:
                add(f"/{name}: filter(s) {', '.join(sorted(bad))} need plugins; use gzip")
    f.visititems(visit)

    n_force = _validate_stream(f, "raw/force", "wrench", problems)
    _validate_stream(f, "raw/markers", "positions", problems)
    if "raw/force" in f and n_force is not None:
        fg = f["raw/force"]
        if "counts" in fg:
            c = fg["counts"]
            if c.ndim != 2 or c.shape[0] != n_force:
                add(f"/raw/force/counts: shape {c.shape}, expected ({n_force}, channels)")
            elif c.dtype.kind not in "iu":
                add(f"/raw/force/counts: dtype {c.dtype}, expected integer ADC counts")
        if "device_time" in fg and fg["device_time"].shape != (n_force,):
            add(f"/raw/force/device_time: shape {fg['device_time'].shape}, expected ({n_force},)")
        _validate_calibration(fg, problems)
    if "raw/log" in f:
        _validate_columns(f["raw/log"], ("time", "source", "kind", "detail"), problems)
    if "derived" in f:
        _validate_derived(f["derived"], problems)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_time(ds, problems) -> None:
    name = ds.name
    if ds.ndim != 1:
        problems.append(f"{name}: {ds.ndim}-D, expected 1-D")
        return
    if ds.dtype.kind != "f":
        problems.append(f"{name}: dtype {ds.dtype}, expected float seconds")
        return
    t = ds[()]
    if len(t) and not np.all(np.isfinite(t)):
        problems.append(f"{name}: {int(np.sum(~np.isfinite(t)))} non-finite time(s)")
        return
    d = np.diff(t)
    if len(d) and np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        problems.append(f"{name}: not increasing at sample {i} (t = {t[i]:.6f} s)")


def _validate_stream(f, group, data_name, problems) -> int | None:
    """Check one raw stream group; returns its sample count when time is readable."""
    add = problems.append
    if group not in f:
        add(f"/{group}: missing group")
        return None
    g = f[group]
    if not isinstance(g, h5py.Group):
        add(f"/{group}: not a group")
        return None
    names_attr = "plates" if data_name == "wrench" else "labels"
    for key in ("rate_hz", names_attr) + (("origin", "corners") if data_name == "wrench" else ()):
        if key not in g.attrs:
            add(f"/{group}@{key}: missing attribute")
    rate = _from_attr(g.attrs["rate_hz"]) if "rate_hz" in g.attrs else None
    if rate is not None and (not isinstance(rate, (int, float)) or not rate > 0):
        add(f"/{group}@rate_hz: {rate!r} must be a number > 0")
    names = _from_attr(g.attrs[names_attr]) if names_attr in g.attrs else None
    if isinstance(names, str):
        names = [names]
    if names is not None and not isinstance(names, list):
        add(f"/{group}@{names_attr}: expected a list of strings")
        names = None
    if names is not None and len(set(names)) != len(names):
        add(f"/{group}@{names_attr}: duplicate names")
    n = None
    if "time" not in g:
        add(f"/{group}/time: missing dataset")
    else:
        _check_time(g["time"], problems)
        n = g["time"].shape[0] if g["time"].ndim == 1 else None
    if data_name not in g:
        add(f"/{group}/{data_name}: missing dataset")
        return n
    d = g[data_name]
    width = len(names) if names is not None else None
    expect = (n, width, 6 if data_name == "wrench" else 3)
    ok = d.ndim == 3 and (n is None or d.shape[0] == n) and (width is None or d.shape[1] == width) \
        and d.shape[2] == expect[2]
    if not ok:
        shown = tuple("?" if e is None else e for e in expect)
        add(f"/{group}/{data_name}: shape {d.shape}, expected {shown}")
    if d.dtype.kind != "f":
        add(f"/{group}/{data_name}: dtype {d.dtype}, expected float")
    if data_name == "wrench" and names is not None:
        p = len(names)
        for key, shape in (("origin", (p, 3)), ("corners", (p, 4, 3))):
            if key in g.attrs and np.shape(g.attrs[key]) != shape:
                add(f"/{group}@{key}: shape {np.shape(g.attrs[key])}, expected {shape}")
    if "device_time" in g and data_name == "positions" and g["device_time"].shape != (n,):
        add(f"/{group}/device_time: shape {g['device_time'].shape}, expected ({n},)")
    return n


def _validate_calibration(fg, problems) -> None:
    cal = _read_calibration(fg)
    if not cal:
        return
    p = len(_from_attr(fg.attrs["plates"])) if "plates" in fg.attrs else None
    c = fg["counts"].shape[1] if "counts" in fg and fg["counts"].ndim == 2 else None
    where = "/raw/force/calibration"
    if "matrix" in cal and p is not None and np.shape(cal["matrix"]) != (p, 6, 6):
        problems.append(f"{where}/matrix: shape {np.shape(cal['matrix'])}, expected ({p}, 6, 6)")
    if "channels" in cal and p is not None:
        ch = np.asarray(cal["channels"])
        if ch.shape != (p, 6):
            problems.append(f"{where}/channels: shape {ch.shape}, expected ({p}, 6)")
        elif c is not None and (ch.min() < 0 or ch.max() >= c):
            problems.append(f"{where}/channels: index out of range 0..{c - 1}")
    if "zero" in cal and c is not None and np.shape(cal["zero"]) != (c,):
        problems.append(f"{where}/zero: shape {np.shape(cal['zero'])}, expected ({c},)")


def _validate_columns(g, required, problems) -> int | None:
    """Parallel 1-D datasets of one group: all present (``required``) and of one length."""
    lengths = {}
    for key in required:
        if key not in g:
            problems.append(f"{g.name}/{key}: missing dataset")
    for key, ds in g.items():
        if isinstance(ds, h5py.Dataset):
            lengths[key] = ds.shape[0] if ds.ndim else None
    if len(set(lengths.values())) > 1:
        problems.append(f"{g.name}: columns of different lengths "
                        + ", ".join(f"{k}={v}" for k, v in sorted(lengths.items())))
    return next(iter(lengths.values()), None)


def _validate_derived(g, problems) -> None:
    for key in ("pipeline_version", "config_hash", "processed_utc"):
        if key not in g.attrs:
            problems.append(f"/derived@{key}: missing attribute")
    if "contacts" in g:
        _validate_columns(g["contacts"], CONTACT_FIELDS, problems)
    if "scores" in g:
        _validate_columns(g["scores"], SCORE_FIELDS, problems)
    if "angles" in g:
        a = g["angles"]
        names = _from_attr(a.attrs["names"]) if "names" in a.attrs else None
        if names is None:
            problems.append("/derived/angles@names: missing attribute")
        for key in ("time", "values"):
            if key not in a:
                problems.append(f"/derived/angles/{key}: missing dataset")
        if "time" in a and "values" in a and names is not None:
            expect = (a["time"].shape[0], len(names))
            if a["values"].shape != expect:
                problems.append(f"/derived/angles/values: shape {a['values'].shape}, "
                                f"expected {expect}")


# --- inspection ------------------------------------------------------------------------------

def _time_summary(t: np.ndarray, rate_hz: float | None) -> dict:
    out = {"samples": int(len(t)),
           "start_s": float(t[0]) if len(t) else None,
           "duration_s": float(t[-1] - t[0]) if len(t) > 1 else 0.0}
    if len(t) > 1:
        d = np.diff(t)
        nominal = 1.0 / rate_hz if rate_hz else float(np.median(d))
        gaps = d > 1.5 * nominal
        out["measured_rate_hz"] = float((len(t) - 1) / (t[-1] - t[0])) if t[-1] > t[0] else None
        out["gaps"] = int(np.count_nonzero(gaps))
        out["missing_samples"] = int(np.sum(np.round(d[gaps] / nominal) - 1)) if gaps.any() else 0
        out["longest_gap_s"] = float(d.max()) if gaps.any() else 0.0
    else:
        out.update(measured_rate_hz=None, gaps=0, missing_samples=0, longest_gap_s=0.0)
    return out


def inspect_session(path) -> dict:
    """Summarise an archive for a technician (``treadlab inspect``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``path``, ``size_bytes``, ``attrs`` (root attributes), ``status``, ``subject``,
        ``streams`` → ``force``: {rate_hz, plates, samples, duration_s, measured_rate_hz, gaps,
        missing_samples, longest_gap_s, has_counts, has_calibration}; ``markers``: the same plus
        ``labels`` and ``nan_fraction`` {label: fraction of frames occluded}; ``log``: {kind:
        count}; ``groups`` present; ``derived`` (when processed): attrs, ``contacts``
        {n, left, right, valid, contact_time_ms mean per side}, ``scores`` [rows], ``angles``
        names and NaN reasons; ``problems`` from :func:`validate_session`.

    Raises
    ------
    InputError
        The file cannot be opened as HDF5.
    """
    path = Path(path)
    info: dict = {"path": str(path), "size_bytes": path.stat().st_size if path.exists() else 0}
    with _open(path) as f:
        try:
            _inspect_into(f, info)
        except Exception as exc:  # a damaged layout: one line, never a traceback
            raise InputError(path, None, f"cannot inspect: {_one_line(exc)}") from None
    info["problems"] = validate_session(path)
    return info


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _inspect_into(f, info: dict) -> None:
    info["attrs"] = _attrs(f)
    info["status"] = info["attrs"].get("status")
    info["groups"] = sorted(k for k in f.keys())
    info["subject"] = _attrs(f["subject"]) if "subject" in f else {}
    streams = {}
    if "raw/force" in f and "time" in f["raw/force"]:
        fg = f["raw/force"]
        rate = _from_attr(fg.attrs.get("rate_hz"))
        s = {"rate_hz": rate, "plates": _from_attr(fg.attrs.get("plates", []))}
        s.update(_time_summary(fg["time"][()], rate))
        s["has_counts"] = "counts" in fg
        s["has_calibration"] = _read_calibration(fg) is not None
        if "wrench" in fg and fg["wrench"].size:
            s["nan_fraction"] = float(_nan_fraction(fg["wrench"]).mean())
        streams["force"] = s
    if "raw/markers" in f and "time" in f["raw/markers"]:
        mg = f["raw/markers"]
        rate = _from_attr(mg.attrs.get("rate_hz"))
        labels = _from_attr(mg.attrs.get("labels", []))
        labels = [labels] if isinstance(labels, str) else list(labels)
        s = {"rate_hz": rate, "labels": labels}
        s.update(_time_summary(mg["time"][()], rate))
        if "positions" in mg and mg["positions"].ndim == 3 and \
                mg["positions"].shape[1] == len(labels):
            frac, empty = _nan_fraction(mg["positions"], all_nan_rows=True)
            s["nan_fraction"] = {lb: float(x) for lb, x in zip(labels, frac)}
            s["frames_all_occluded"] = int(empty)
        streams["markers"] = s
    info["streams"] = streams
    kinds: dict = {}
    if "raw/log" in f and "kind" in f["raw/log"]:
        for k in _read_array(f["raw/log/kind"]):
            kinds[str(k)] = kinds.get(str(k), 0) + 1
    info["log"] = dict(sorted(kinds.items()))
    info["derived"] = _derived_summary(f) if "derived" in f else None


def _nan_fraction(ds, rows: int = 100_000, all_nan_rows: bool = False):
    """Fraction of rows where each column (axis 1) has any NaN, read block by block; with
    ``all_nan_rows`` also the number of rows where every column has a NaN."""
    n = ds.shape[0]
    count = np.zeros(ds.shape[1], dtype=np.int64)
    empty = 0
    for i in range(0, n, rows):
        block = ds[i:i + rows]
        nan = np.isnan(block).reshape(block.shape[0], block.shape[1], -1).any(axis=2)
        count += nan.sum(0)
        empty += int(nan.all(axis=1).sum()) if nan.shape[1] else 0
    frac = count / max(1, n)
    return (frac, empty) if all_nan_rows else frac


def _derived_summary(f) -> dict:
    d = _read_derived_from(f) or {}
    out: dict = {"attrs": d.get("attrs", {})}
    c = d.get("contacts")
    if c and "side" in c:
        side = np.asarray(c["side"])
        valid = np.asarray(c.get("valid", np.ones(len(side), bool))).astype(bool)
        summ = {"n": int(len(side)), "left": int(np.sum(side == 0)),
                "right": int(np.sum(side == 1)), "valid": int(valid.sum())}
        if "contact_time" in c:
            ct = np.asarray(c["contact_time"], dtype=float)
            for name, code in (("left", 0), ("right", 1)):
                sel = (side == code) & valid & np.isfinite(ct)
                summ[f"contact_time_ms_{name}"] = float(ct[sel].mean() * 1e3) if sel.any() \
                    else None
        out["contacts"] = summ
    s = d.get("scores")
    if s and "cause" in s:
        rows = []
        for i, cause in enumerate(s["cause"]):
            row = {"cause": str(cause)}
            for key, col in s.items():
                if key != "cause" and len(col) > i:
                    v = col[i]
                    row[key] = v.item() if isinstance(v, np.generic) else v
            rows.append(row)
        out["scores"] = rows
    a = d.get("angles")
    if a:
        out["angles"] = {"names": a["names"], "samples": int(len(a["time"])),
                         "reasons": a["reasons"]}
    return out


def _fmt_num(v, spec=".1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def format_inspection(info: dict) -> str:
    """Readable multi-line text of :func:`inspect_session`'s result."""
    a = info.get("attrs", {})
    lines = [f"{info.get('path')}  ({info.get('size_bytes', 0) / 1e6:.1f} MB)",
             f"  format     {a.get('format', '?')} v{a.get('format_version', '?')}   "
             f"status {info.get('status') or '?'}",
             f"  session    {a.get('session_id', '?')}   created {a.get('created_utc', '?')}",
             f"  subject    {a.get('subject_id', '?')}   body mass "
             f"{_fmt_num(a.get('body_mass_kg'))} kg   belt "
             f"{_fmt_num(a.get('belt_speed_m_s'), '.2f')} m/s   lab {a.get('lab', '?')}",
             f"  software   {a.get('software', '?')}"]
    for name, s in info.get("streams", {}).items():
        lines.append(f"  {name:<10} {_fmt_num(s.get('rate_hz'), 'g')} Hz  "
                     f"{s.get('samples', 0)} samples  {_fmt_num(s.get('duration_s'), '.2f')} s  "
                     f"gaps {s.get('gaps', 0)} ({s.get('missing_samples', 0)} samples missing, "
                     f"longest {_fmt_num(s.get('longest_gap_s'), '.3f')} s)")
        if name == "force":
            plates = ", ".join(map(str, s.get("plates", []))) or "(none)"
            lines.append(f"             plates {plates}"
                         f"   counts {'yes' if s.get('has_counts') else 'no'}"
                         f"   calibration {'yes' if s.get('has_calibration') else 'no'}")
        nf = s.get("nan_fraction")
        if isinstance(nf, dict) and nf:
            occl = [f"{k} {v * 100:.1f}%" if v >= 0.001 else f"{k} <0.1%"
                    for k, v in nf.items() if v > 0]
            head = f"             {len(nf)} markers"
            if s.get("frames_all_occluded"):
                head += f", {s['frames_all_occluded']} frames with none visible"
            lines.append(head + ("; occluded:" if occl else "; occluded: none"))
            for i in range(0, len(occl), 6):
                lines.append("               " + ", ".join(occl[i:i + 6]))
    if info.get("log"):
        lines.append("  log        " + ", ".join(f"{k} {v}" for k, v in info["log"].items()))
    d = info.get("derived")
    if d is None:
        lines.append("  derived    not processed")
    else:
        da = d.get("attrs", {})
        lines.append(f"  derived    pipeline {da.get('pipeline_version', '?')}  config "
                     f"{str(da.get('config_hash', '?'))[:12]}  at {da.get('processed_utc', '?')}")
        c = d.get("contacts")
        if c:
            lines.append(f"  contacts   {c['n']} ({c['left']} left, {c['right']} right, "
                         f"{c['valid']} valid)  contact time L "
                         f"{_fmt_num(c.get('contact_time_ms_left'), '.0f')} ms  R "
                         f"{_fmt_num(c.get('contact_time_ms_right'), '.0f')} ms")
        for row in d.get("scores", []):
            status = f"   {row['status']}" if row.get("status") else ""
            lines.append(f"  score      {row['cause']:<22} {_fmt_num(row.get('score'), '5.1f')}"
                         f"   value {_fmt_num(row.get('value'), '.2f')} {row.get('unit', '')}"
                         f"   steps {row.get('n_steps', '-')}{status}")
        ang = d.get("angles")
        if ang and ang.get("reasons"):
            for k, why in ang["reasons"].items():
                lines.append(f"  angle NaN  {k}: {why}")
    probs = info.get("problems") or []
    lines.append("  valid      yes" if not probs else f"  problems   {len(probs)}")
    lines.extend(f"    - {p}" for p in probs)
    return "\n".join(lines)
