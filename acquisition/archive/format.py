"""The ``treadlab.session`` v1 format: constants, in-memory dataclasses and the small HDF5
helpers every reader and writer shares (docs/archive.md).

Lab frame: X = direction of travel, Y = left, Z = up; positions in mm, forces in N, moments in
N·m, times in float64 seconds on the session clock.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.archive.chunks import read_all, write_chunks_id

FORMAT = "treadlab.session"
#: 2: ``/derived`` lives in its own file beside the session (``NAME.derived.h5``), reached
#: from the session through an HDF5 external link; force-plate ``origin`` and ``corners`` are
#: datasets with named dimensions. 1: ``/derived`` inside the session file (docs/archive.md §11).
FORMAT_VERSION = 2
#: ``format`` root attribute of a derived file.
DERIVED_FORMAT = "treadlab.derived"
#: How a derived file's name ends: ``run3.h5`` → ``run3.derived.h5``.
DERIVED_SUFFIX = ".derived.h5"


def derived_path(path) -> Path:
    """The derived file of session ``path``: ``<stem>.derived.h5`` in the same folder."""
    path = Path(path)
    return path.with_name(path.stem + DERIVED_SUFFIX)


def is_derived_file(path) -> bool:
    """True for a derived file (``*.derived.h5``), which is never a session of its own."""
    return Path(path).name.endswith(DERIVED_SUFFIX)


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

    attrs : root attributes of docs/archive.md §2; the writer fills ``format``,
        ``format_version``, ``session_id``, ``created_utc`` and ``software`` when missing.
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


LIBVER = ("v110", "v110")
#: gzip level for every dataset (docs/archive.md §1: gzip only, readable everywhere without
#: plugins).
#: Level 1: on noisy float32 force it wrote 20 % faster than level 4 at the same ratio (0.96).
GZIP_LEVEL = 1
#: gzip level of ``/derived/angles/values``. The values are rounded to
#: :data:`ANGLE_SIGNIFICANT_BITS` first and stored with the shuffle filter: full float32 angles
#: are noise to gzip (level 1 shrank them by 7 %), rounded and shuffled they shrink to 0.41
#: (5-minute synthetic session), which keeps a reprocess's writes under 5 % of the raw bytes.
DERIVED_ANGLES_GZIP_LEVEL = 1
#: Mantissa bits kept in the stored joint angles (BitRound, as netCDF-C's ``nc_def_var_quantize``
#: does; float32 has 23): a relative error ≤ 2**-11 (0.05 %), at most 0.03° below 64° and 0.06°
#: below 180° — two orders of magnitude under the accuracy of marker-based joint angles. The
#: dataset carries it as attribute ``quantize_bitround_bits``.
ANGLE_SIGNIFICANT_BITS = 10
#: Longest time span one chunk of a live (resizable) stream may hold, in seconds. Under SWMR a
#: chunk must not span more than the flush interval (docs/design.md §13.3), and the recorder
#: flushes at least once a second.
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
    "peak_hip_extension_source": "", "heel_lead": "mm", "belt_speed": "m/s", "belt_steady": "1",
    "speed_m_s": "m/s",
}
#: Index datasets written only to serve as netCDF dimensions; the reader drops them.
INDEX_SCALES = ("contact", "step", "row", "event")
ALLOWED_FILTERS = {"gzip", "shuffle", "fletcher32", "scaleoffset"}
#: Units the raw streams must be in (a file in m or kN would be silently wrong by 1000×).
RAW_UNITS = {
    "raw/force/time": lambda u: u in ("s", "seconds", "second"),
    "raw/markers/time": lambda u: u in ("s", "seconds", "second"),
    "raw/markers/positions": lambda u: u == "mm",
    "raw/force/wrench": lambda u: u.startswith("N") and not u.startswith("N*mm"),
    "raw/belt/time": lambda u: u in ("s", "seconds", "second"),
    "raw/belt/speed": lambda u: u == "m/s",
}
RAW_UNITS_TEXT = {"raw/force/time": "'s'", "raw/markers/time": "'s'",
                   "raw/markers/positions": "'mm'",
                   "raw/force/wrench": f"N and N*m (e.g. {WRENCH_UNITS!r})",
                   "raw/belt/time": "'s'", "raw/belt/speed": "'m/s'"}


# --- small helpers ---------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def str_dtype():
    return h5py.string_dtype("utf-8")


_STR_DTYPE = str_dtype()

_UTF8_VLEN = h5py.check_string_dtype(_STR_DTYPE)


def to_attr(value):
    """Python/NumPy value → something h5py stores portably as an attribute."""
    if isinstance(value, (bool, np.bool_)):
        return np.uint8(bool(value))
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=str_dtype())
    if isinstance(value, (list, tuple)) and not value:
        return np.array([], dtype=str_dtype())
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    arr = np.asarray(value)
    if arr.dtype.kind in ("U", "O"):
        return arr.astype(str).astype(str_dtype())
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    return value


#: Ending of the attribute holding the shape of a multi-dimensional array attribute that is
#: stored flattened (netCDF attributes are 1-D): ``c3d_axes`` (9,) + ``c3d_axes__shape`` [3, 3].
SHAPE_SUFFIX = "__shape"


def put_attr(obj, key: str, value) -> None:
    """Set attribute ``key`` of an HDF5 object portably (:func:`to_attr`). A numeric array of
    2 or more dimensions is stored flattened with its shape in ``key + "__shape"``, because
    netCDF (ncdump, netCDF4, MATLAB's ncread, R's ncdf4) cannot read multi-dimensional
    attributes; :func:`attrs_of` restores the shape."""
    value = to_attr(value)
    if isinstance(value, np.ndarray) and value.ndim > 1 and value.dtype.kind in "biuf":
        set_attr(obj, key + SHAPE_SUFFIX, np.asarray(value.shape, dtype=np.int64))
        value = value.ravel()
    set_attr(obj, key, value)


#: HDF5 types of the attributes and datasets :func:`set_attr` and :func:`new_dataset` write
#: through HDF5's own API, by NumPy dtype: ``(file type, memory type)`` as h5py makes them.
_TYPES: dict = {}
#: Simple dataspaces by shape (``()``: scalar), as h5py makes them, each made once: a new
#: ``SpaceID`` costs about 2.4 us of h5py's bookkeeping, and a derived file has about 45 arrays
#: of a handful of shapes. HDF5 only reads a dataspace given to ``H5Acreate`` or ``H5Dcreate``.
_SPACES: dict = {}
_STR_KEY = "vlen utf-8"


def _space(shape: tuple):
    space = _SPACES.get(shape)
    if space is None:
        space = _SPACES[shape] = h5py.h5s.create_simple(shape)
    return space


def _h5types(dtype: np.dtype) -> tuple:
    key = _STR_KEY if dtype.kind == "O" else dtype.str
    types = _TYPES.get(key)
    if types is None:
        types = _TYPES[key] = (h5py.h5t.py_create(dtype, logical=True), h5py.h5t.py_create(dtype))
    return types


def _attr_array(value):
    """``value`` as the array h5py would store for it, or ``None`` when it is not one of the
    common kinds (a str, a number, a numeric or UTF-8 string array): h5py itself stores those."""
    if type(value) is str:
        return np.array(value, dtype=object).view(_STR_DTYPE)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iuf":
            return np.ascontiguousarray(value)
        if value.dtype.kind == "O" and h5py.check_string_dtype(value.dtype) == _UTF8_VLEN:
            return np.ascontiguousarray(value)
        return None
    if type(value) in (float, int) or (isinstance(value, np.generic)
                                       and value.dtype.kind in "iuf"):
        arr = np.asarray(value)
        return arr if arr.dtype.kind in "iuf" else None  # an int beyond 64 bits
    return None


def set_attr(obj, key: str, value) -> None:
    """``obj.attrs[key] = value`` (``obj``: an h5py object or a dataset's low-level
    ``DatasetID``): the same attribute (type, dataspace, value), replacing one of that name,
    written through HDF5's attribute calls directly for the common kinds of value
    (:func:`_attr_array`), by h5py otherwise. A derived file has about 120 attributes: its 59
    ``/derived`` attributes took 1.4 ms through h5py's ``attrs``, 0.74 ms this way."""
    arr = _attr_array(value)
    if arr is None:
        if not isinstance(obj, h5py.HLObject):
            obj = h5py.Dataset(obj)
        obj.attrs[key] = value
        return
    oid = obj.id if isinstance(obj, h5py.HLObject) else obj
    name = key.encode("utf-8")
    ftype, mtype = _h5types(arr.dtype)
    space = _space(arr.shape)
    try:
        attr = h5py.h5a.create(oid, name, ftype, space)
    except OSError:  # one of that name (asked only now: most attributes are new)
        if not h5py.h5a.exists(oid, name):
            raise
        h5py.h5a.delete(oid, name)
        attr = h5py.h5a.create(oid, name, ftype, space)
    try:
        attr.write(arr, mtype=mtype)
    except BaseException:
        attr.close()
        h5py.h5a.delete(oid, name)
        raise
    attr.close()


def from_attr(value):
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


def attrs_of(obj) -> dict:
    out = {k: from_attr(v) for k, v in obj.attrs.items()
           if k not in ("DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid")}
    for key in [k for k in out if k.endswith(SHAPE_SUFFIX)]:
        base = key[:-len(SHAPE_SUFFIX)]
        shape = out.pop(key)
        if base in out:
            out[base] = np.asarray(out[base]).reshape([int(n) for n in np.atleast_1d(shape)])
    return out


def read_array(ds) -> np.ndarray:
    """A dataset as a NumPy array; variable-length strings come back as ``str`` objects."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.array(ds.asstr()[()], dtype=object) if ds.shape else np.array(ds.asstr()[()])
    return read_all(ds)


def bitround(values, bits: int) -> np.ndarray:
    """float32 ``values`` rounded to nearest (ties away from zero in magnitude) keeping ``bits``
    of the 23 mantissa bits, the rest zeroed so gzip (after shuffle) drops them; NaN and ±inf
    unchanged. Relative error ≤ 2**-(bits + 1)."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    drop = 23 - int(bits)
    if drop <= 0:
        return x.copy() if x is values else x
    u = x.view(np.uint32)
    half = np.uint32(1 << (drop - 1))
    mask = np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF)
    out = u + half  # a new array: ``values`` is never modified
    out &= mask
    np.copyto(out, u, where=~np.isfinite(x))
    return out.view(np.float32)


def chunk_rows(rate_hz: float, row_bytes: int) -> int:
    rows = max(1, int(rate_hz * CHUNK_SECONDS))
    # keep a chunk under ~1 MiB even for very wide rows
    return max(1, min(rows, (1 << 20) // max(1, row_bytes)))


def new_dataset(group, name, shape, dtype, units, *, rows_per_chunk=None, data=None,
                 level=None, shuffle=False, **attrs):
    """Create one chunked, gzip-compressed dataset with a ``units`` attribute.

    ``rows_per_chunk`` given: the first axis is resizable (``maxshape=None``), chunked by that
    many rows, for live appending. Otherwise the dataset has a fixed shape, chunked along the
    first axis when it is not scalar (:func:`fixed_chunks`). ``level``: gzip level (default
    :data:`GZIP_LEVEL`). ``shuffle``: the shuffle filter before gzip (numbers wider than a
    byte only).
    """
    return h5py.Dataset(_new_dataset_id(group, name, shape, dtype, units,
                                        rows_per_chunk=rows_per_chunk, data=data, level=level,
                                        shuffle=shuffle, attrs=attrs))


def _new_dataset_id(group, name, shape, dtype, units, *, rows_per_chunk, data, level, shuffle,
                    attrs):
    """:func:`new_dataset`, returning the low-level ``DatasetID``: a fixed dataset with its
    data through :func:`_fixed_dataset` where that covers it, else through h5py."""
    dtype = _STR_DTYPE if dtype is str else np.dtype(dtype)
    shape = tuple(shape)
    if rows_per_chunk is None and data is not None:
        dsid = _fixed_dataset(group.id, name, shape, dtype, data, level, shuffle)
        if dsid is not None:
            _dataset_attrs(dsid, units, attrs)
            return dsid
    kwargs = {}
    if rows_per_chunk is not None:
        # a zero-width axis (no plates, no markers) cannot hold a chunk unless it may grow
        kwargs["maxshape"] = (None,) + tuple(s if s else None for s in shape[1:])
        kwargs["chunks"] = (rows_per_chunk,) + tuple(max(1, s) for s in shape[1:])
    elif len(shape) and all(s > 0 for s in shape):
        kwargs["chunks"] = fixed_chunks(shape, dtype)
    elif len(shape):  # empty fixed dataset: make it resizable so it can be chunked
        kwargs["maxshape"] = tuple(None if s == 0 else s for s in shape)
        kwargs["chunks"] = tuple(max(1, s) for s in shape)
    if "chunks" in kwargs:
        kwargs["compression"] = "gzip"
        kwargs["compression_opts"] = GZIP_LEVEL if level is None else level
        if shuffle and dtype.itemsize > 1 and not h5py.check_string_dtype(dtype):
            kwargs["shuffle"] = True
    if data is not None and "maxshape" not in kwargs and np.shape(data) == shape:
        ds = group.create_dataset(name, dtype=dtype, data=data, **kwargs)
    else:
        ds = group.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
        if data is not None and ds.size:
            ds[...] = data
    _dataset_attrs(ds.id, units, attrs)
    return ds.id


def fixed_chunks(shape, dtype) -> tuple:
    """Chunk shape of a fixed-size dataset: whole rows, the rows split into equal chunks of
    1 to 2 MiB (``n // rows_in_1_MiB`` of them; one chunk below 2 MiB). Equal chunks leave no
    padded edge chunk to compress and store; chunks of 1 MiB or more compress better (the
    shuffled joint angles 6 % smaller in 21845-row chunks than in 12000-row ones)."""
    row_bytes = math.prod(shape[1:]) * (dtype.itemsize or 16)
    rows = max(1, min(shape[0], (1 << 20) // max(1, row_bytes)))
    n_chunks = max(1, shape[0] // rows)
    return (-(-shape[0] // n_chunks),) + tuple(shape[1:])


def _fixed_dataset(gid, name, shape, dtype, data, level, shuffle):
    """A fixed-size dataset ``name`` in group ``gid`` holding ``data`` (of that shape),
    created and written through HDF5's calls directly: what h5py's ``create_dataset`` makes
    (type, chunks, filters, no time stamps), without the ~30 us of Python h5py spends on each
    (40 small columns: 2.7 ms through ``create_dataset``, 1.5 ms this way). Numeric arrays are
    compressed by :func:`~.chunks.write_chunks_id` (HDF5's zlib behind its chunk cache took
    about 20 us more per small column).
    ``None`` (nothing created) for what this does not cover: an empty axis, a shape other than
    ``data``'s, data only h5py converts (e.g. bytes into text)."""
    if 0 in shape or np.shape(data) != shape:
        return None
    arr = _data_array(data, dtype)
    if arr is None:
        return None
    chunks = level_ = None
    numeric = dtype.kind in "biuf"  # else UTF-8 text (_data_array)
    if shape:
        chunks = fixed_chunks(shape, dtype)
        level_ = GZIP_LEVEL if level is None else level
    shuffle = bool(chunks and shuffle and numeric and dtype.itemsize > 1)
    dsid = h5py.h5d.create(gid, name.encode("utf-8"), _h5types(dtype)[0],
                           _space(shape), dcpl=_dcpl(chunks, level_, shuffle))
    if level_ and numeric:
        # fill value: HDF5's default (0), as _dcpl sets none
        write_chunks_id(dsid, np.ascontiguousarray(arr, dtype=dtype), chunks, shuffle)
    else:
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, arr, mtype=_h5types(arr.dtype)[1])
    return dsid


def _data_array(data, dtype):
    """``data`` as the C-contiguous array h5py's ``create_dataset(data=...)`` would write into
    a dataset of ``dtype``, or ``None`` when only h5py knows how (e.g. bytes into text).
    Numbers keep their own dtype: HDF5 converts them as it writes."""
    if dtype.kind in "biuf":
        arr = np.asarray(data, order="C")
        return arr if arr.dtype.kind in "biuf" else None
    if h5py.check_string_dtype(dtype) != _UTF8_VLEN:
        return None
    arr = np.asarray(data, dtype=object, order="C")
    if not all(type(v) is str for v in arr.flat):
        return None
    return arr.view(dtype)


def _dataset_attrs(dsid, units, attrs) -> None:
    set_attr(dsid, "units", units)
    for key, value in attrs.items():
        set_attr(dsid, key, to_attr(value))


#: Dataset creation property lists by (chunks, gzip level, shuffle), made once.
_DCPLS: dict = {}


def _dcpl(chunks, level, shuffle):
    """The creation property list h5py makes for a fixed dataset with these settings
    (``track_times=False`` and no attribute creation order: h5py's defaults)."""
    key = (chunks, level, shuffle)
    dcpl = _DCPLS.get(key)
    if dcpl is None:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        if chunks is not None:
            dcpl.set_chunk(chunks)
            if shuffle:
                dcpl.set_shuffle()
            dcpl.set_deflate(level)
        dcpl.set_obj_track_times(False)
        dcpl.set_attr_creation_order(0)
        _DCPLS[key] = dcpl
    return dcpl


def write_array(group, name, data, units, *, level=None, shuffle=True, **attrs):
    """Write a whole array (numbers or strings) as a fixed-size chunked, compressed dataset
    (gzip ``level``, default :data:`GZIP_LEVEL`; numbers byte-shuffled first: the shuffle
    filter is built into HDF5 and read everywhere, and makes float columns compress)."""
    return h5py.Dataset(write_array_id(group, name, data, units, level=level, shuffle=shuffle,
                                       **attrs))


def write_array_id(group, name, data, units, *, level=None, shuffle=True, **attrs):
    """:func:`write_array`, returning the low-level ``h5py.h5d.DatasetID`` (what the derived
    writer attaches dimension scales to, without building an ``h5py.Dataset``)."""
    arr = np.asarray(data)
    if arr.dtype.kind in ("U", "S", "O"):
        arr = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()],
                       dtype=object).reshape(arr.shape)
        dtype, shuffle = _STR_DTYPE, False
    else:
        if arr.dtype.kind == "b":
            attrs.setdefault("boolean", 1)
            arr = arr.astype(np.uint8)
        dtype = arr.dtype
    return _new_dataset_id(group, name, arr.shape, dtype, units, rows_per_chunk=None, data=arr,
                           level=level, shuffle=shuffle, attrs=attrs)


def make_scale(group, name, values, units=""):
    """Create a fixed dimension-scale dataset ``name`` (netCDF dimension of the same name)."""
    return h5py.Dataset(make_scale_id(group, name, values, units))


def make_scale_id(group, name, values, units="", **attrs):
    """:func:`make_scale` (with ``attrs`` as :func:`write_array`'s), returning the low-level
    ``DatasetID``."""
    dsid = write_array_id(group, name, np.asarray(values), units, **attrs)
    h5py.h5ds.set_scale(dsid, name.encode("utf-8"))
    return dsid


def attach_scales(ds, *scales):
    """Attach dimension scale ``scales[i]`` to axis ``i`` of ``ds`` (``None``: none); datasets
    or their low-level ids."""
    dsid = ds.id if isinstance(ds, h5py.HLObject) else ds
    for axis, sc in enumerate(scales):
        if sc is not None:
            h5py.h5ds.attach_scale(dsid, sc.id if isinstance(sc, h5py.HLObject) else sc, axis)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
