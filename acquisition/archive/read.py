"""Reading ``treadlab.session`` archives (docs/archive.md).
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.archive.chunks import read_all
from treadlab.acquisition.archive.format import (DERIVED_FORMAT, INDEX_SCALES, ForceData,
                                                 MarkerData, Session, attrs_of, from_attr,
                                                 one_line, read_array)
from treadlab.acquisition.archive.plausible import (MAX_POSITION_MM, MAX_WRENCH, label_problems,
                                                    rate_problems, root_problems,
                                                    time_problems, value_problems)
from treadlab.config.errors import InputError

log = logging.getLogger(__name__)


def _raise_first(path, problems) -> None:
    """The first ``(field, problem)`` of a plausibility check as a one-line InputError."""
    if problems:
        field, message = problems[0]
        raise InputError(path, field, message)


# --- reading ---------------------------------------------------------------------------------

def open_archive(path) -> h5py.File:
    """Open an archive read-only; InputError (one line) when it cannot be read as HDF5."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as first:  # RuntimeError: corrupt superblocks
        msg = str(first).splitlines()[0] if str(first) else type(first).__name__
        # A capture killed in SWMR mode leaves the consistency flags set (docs/design.md
        # §13.3); such a file opens in SWMR-read mode. Only then: SWMR-read of a damaged file retries for minutes.
        if "h5clear" in msg or "already open for write" in msg:
            try:
                return h5py.File(path, "r", swmr=True)
            except (OSError, RuntimeError, ValueError):
                pass
        raise InputError(path, None, f"not a readable HDF5 file ({msg})") from None
    except Exception as exc:  # h5py raises other types for some corrupt files
        raise InputError(path, None, f"not a readable HDF5 file ({one_line(exc)})") from None


@contextlib.contextmanager
def reading(path) -> Iterator[h5py.File]:
    """:func:`open_archive` for a ``with`` block in which anything h5py raises on a damaged file
    (corrupt object headers, chunks, attributes) becomes one InputError naming the file."""
    f = open_archive(path)
    try:
        with f:
            yield f
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError,
            IndexError) as exc:
        raise InputError(path, None, f"cannot read, damaged file? ({one_line(exc)})") from None


def attr(obj, name, default=None):
    """Attribute ``name`` of an HDF5 object as a plain Python value, ``default`` when absent."""
    try:  # one HDF5 lookup (``in`` then ``[]`` would be two)
        value = obj.attrs[name]
    except KeyError:
        return default
    return from_attr(value)


def read_meta(f) -> dict:
    """Root attributes and ``/subject`` of an open archive (cheap: no datasets are read).

    Returns ``{"attrs": {...}, "subject": {...}}`` with plain Python values.
    Raises InputError (naming the file when ``f`` has a name) for implausible root attributes.
    """
    attrs = {k: from_attr(v) for k, v in f.attrs.items()}
    subject = {k: from_attr(v) for k, v in f["subject"].attrs.items()} if "subject" in f else {}
    _raise_first(getattr(f, "filename", None), root_problems(attrs))
    return {"attrs": attrs, "subject": subject}


def read_belt(f) -> dict | None:
    """``/raw/belt`` of an open archive (docs/archive.md §3.5), or ``None`` when the session
    has no belt-speed stream.

    Returns ``{"time": (n,) float64 s on the session clock, "speed": (n, b) float64 m/s,
    "belts": [b names]}`` (belt order as recorded; treadlab writes ``["left", "right"]``).
    Samples with a non-finite time are dropped, and rows not held by both ``time`` and
    ``speed`` (a capture killed between the two appends) are left out; speeds may hold NaN
    (unknown)."""
    g = f.get("raw/belt")
    if not isinstance(g, h5py.Group) or "time" not in g or "speed" not in g:
        return None
    t = np.asarray(g["time"][()], dtype=np.float64).reshape(-1)
    v = np.asarray(g["speed"][()], dtype=np.float64)
    v = v.reshape(len(v), -1) if v.ndim != 1 else v[:, None]
    n = min(len(t), len(v))
    t, v = t[:n], v[:n]
    belts = from_attr(g.attrs["belts"]) if "belts" in g.attrs else []
    belts = [belts] if isinstance(belts, str) else [str(b) for b in belts]
    keep = np.isfinite(t)
    return {"time": t[keep], "speed": v[keep], "belts": belts}


def plate_geometry(force_group, name, default=None):
    """``origin`` or ``corners`` of ``/raw/force``: the dataset (format 2) or the attribute
    (format 1 and third-party files), ``default`` when neither exists."""
    obj = force_group.get(name)
    if isinstance(obj, h5py.Dataset):
        return obj[()]
    return attr(force_group, name, default)


def derived_group(f):
    """``/derived`` of an open session as an ``h5py.Group``, or ``None`` when the session has
    not been processed (no ``/derived``, or an external link whose derived file does not exist
    yet). Raises :class:`InputError` naming the derived file when it exists but cannot be
    read, or belongs to another session (its ``session_id`` differs)."""
    link = f.get("derived", getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.ExternalLink):
        return f["derived"]
    target = Path(f.filename).parent / link.filename
    if not target.exists():
        return None
    try:
        g = f["derived"]
    except (KeyError, OSError) as exc:
        raise InputError(target, None, f"not a readable derived file ({one_line(exc)})") from None
    dfile = g.file
    if attr(dfile, "format") == DERIVED_FORMAT:
        mine, theirs = attr(f, "session_id"), attr(dfile, "session_id")
        if mine and theirs and str(mine) != str(theirs):
            raise InputError(target, "/@session_id",
                             f"belongs to session {theirs}, not to {f.filename}'s {mine}")
    if not len(g) and attr(g, "status") == "not processed":
        return None  # the placeholder written with the session
    return g


def _dataset(parent, path, name, field=None) -> np.ndarray:
    """All of dataset ``name`` of ``parent``: the file, or a group (a name in a group is found
    faster than its whole path from the root); InputError naming ``field`` (default
    ``"/" + name``) when missing, ``parent`` not being a group, or unreadable (a corrupt
    compressed chunk)."""
    field = field or "/" + name
    if not isinstance(parent, h5py.Group) or name not in parent:
        raise InputError(path, field, "missing")
    try:
        return read_all(parent[name])
    except Exception as exc:  # OSError/RuntimeError/ValueError/DeflateError on damaged chunks
        raise InputError(path, field, f"unreadable data, damaged file? "
                                      f"({one_line(exc)})") from None


def read_force(f, path) -> ForceData:
    """``/raw/force`` of an open archive, the pipeline's fast path: time and wrench only (no
    counts, calibration or device times); ``plates``, ``origin``, ``corners`` and ``rate_hz``
    may be missing (a minimal third-party file) and are then defaulted (names ``plate1…``,
    zeros, the median sample interval). A single plate stored as (n, 6) is read as (n, 1, 6).

    Returns :class:`ForceData` (time (n,) float64 s, wrench (n, p, 6) float32 N and N·m).
    Raises :class:`InputError` naming the dataset or attribute that is missing or malformed.
    """
    g = f.get("raw/force")
    t = np.asarray(_dataset(g, path, "time", "/raw/force/time"), dtype=np.float64)
    w = np.asarray(_dataset(g, path, "wrench", "/raw/force/wrench"), dtype=np.float32)
    if w.ndim == 2 and w.shape[1] == 6:  # a single plate written as (n, 6)
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[2] != 6 or w.shape[0] != t.shape[0]:
        raise InputError(path, "/raw/force/wrench",
                         f"shape {w.shape} is not (n, plates, 6) with n = {t.shape[0]}")
    rate = attr(g, "rate_hz")
    if rate is None:
        rate = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else 0.0
    p = w.shape[1]
    plates = attr(g, "plates")
    if plates is None or len(plates) == 0:
        plates = [f"plate{i + 1}" for i in range(p)]
    plates = [plates] if isinstance(plates, str) else list(plates)
    origin = np.asarray(plate_geometry(g, "origin", np.zeros((p, 3))),
                        dtype=np.float64).reshape(p, 3)
    corners = np.asarray(plate_geometry(g, "corners", np.zeros((p, 4, 3))),
                         dtype=np.float64).reshape(p, 4, 3)
    _raise_first(path, rate_problems("raw/force", rate)
                 + time_problems("/raw/force/time", t)
                 + value_problems("/raw/force/wrench", w, MAX_WRENCH, "N or N*m")
                 + label_problems("/raw/force@plates", plates))
    return ForceData(time=t, wrench=w, rate_hz=float(rate), plates=plates, origin=origin,
                     corners=corners)


def read_markers(f, path) -> MarkerData:
    """``/raw/markers`` of an open archive, the pipeline's fast path: time, positions and the
    file's labels (no device times); ``rate_hz`` defaults to the median frame interval.

    Returns :class:`MarkerData` (time (m,) float64 s, positions (m, k, 3) float32 mm).
    Raises :class:`InputError` naming the dataset that is missing or malformed.
    """
    g = f.get("raw/markers")
    if g is None:
        raise InputError(path, "/raw/markers", "missing")
    t = np.asarray(_dataset(g, path, "time", "/raw/markers/time"), dtype=np.float64)
    pos = np.asarray(_dataset(g, path, "positions", "/raw/markers/positions"), dtype=np.float32)
    labels = attr(g, "labels")
    labels = [] if labels is None else [labels] if isinstance(labels, str) else list(labels)
    _raise_first(path, label_problems("/raw/markers@labels", labels))
    rate = attr(g, "rate_hz")
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[:2] != (t.shape[0], len(labels)):
        raise InputError(path, "/raw/markers/positions",
                         f"shape {pos.shape} is not (m, k, 3) with m = {t.shape[0]}, "
                         f"k = {len(labels)} labels")
    if rate is None:
        rate = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else 0.0
    _raise_first(path, rate_problems("raw/markers", rate)
                 + time_problems("/raw/markers/time", t)
                 + value_problems("/raw/markers/positions", pos, MAX_POSITION_MM, "mm")
                 + label_problems("/raw/markers@labels", labels))
    return MarkerData(time=t, positions=pos, labels=labels, rate_hz=float(rate))


def _require(f, path, name):
    if name not in f:
        raise InputError(path, "/" + name, "missing")
    return f[name]


def _require_attr(obj, path, name):
    if name not in obj.attrs:
        raise InputError(path, f"{obj.name}@{name}", "missing attribute")
    return from_attr(obj.attrs[name])


def _require_geometry(fg, path, name):
    value = plate_geometry(fg, name)
    if value is None:
        raise InputError(path, f"{fg.name}/{name}", "missing (dataset, or attribute in format 1)")
    return value


def read_rows(g) -> dict:
    out = {}
    for key, ds in g.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        if key in INDEX_SCALES and ds.attrs.get("CLASS") == b"DIMENSION_SCALE":
            continue
        arr = read_array(ds)
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
    with open_archive(path) as f:
        try:
            return read_session_from(f, path, derived)
        except InputError:
            raise
        except (KeyError, ValueError, TypeError, OSError, RuntimeError, AttributeError) as exc:
            raise InputError(path, None, f"cannot read session: {one_line(exc)}") from None


def read_session_from(f, path, derived) -> Session:
    attrs = attrs_of(f)
    _raise_first(path, root_problems(attrs))
    fg = _require(f, path, "raw/force")
    time = np.asarray(_dataset(f, path, "raw/force/time"), dtype=np.float64)
    wrench = np.asarray(_dataset(f, path, "raw/force/wrench"), dtype=np.float32)
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
        origin=np.asarray(_require_geometry(fg, path, "origin"),
                          dtype=np.float64).reshape(p, 3),
        corners=np.asarray(_require_geometry(fg, path, "corners"),
                           dtype=np.float64).reshape(p, 4, 3),
        counts=fg["counts"][()] if "counts" in fg else None,
        calibration=read_calibration(fg),
        device_time=fg["device_time"][()] if "device_time" in fg else None)

    _raise_first(path, rate_problems("raw/force", force.rate_hz)
                 + time_problems("/raw/force/time", time)
                 + value_problems("/raw/force/wrench", wrench, MAX_WRENCH, "N or N*m")
                 + label_problems("/raw/force@plates", plates))
    mg = _require(f, path, "raw/markers")
    mtime = np.asarray(_dataset(f, path, "raw/markers/time"), dtype=np.float64)
    pos = np.asarray(_dataset(f, path, "raw/markers/positions"), dtype=np.float32)
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
    _raise_first(path, rate_problems("raw/markers", markers.rate_hz)
                 + time_problems("/raw/markers/time", mtime)
                 + value_problems("/raw/markers/positions", pos, MAX_POSITION_MM, "mm")
                 + label_problems("/raw/markers@labels", labels))

    events = []
    if "raw/log" in f and "time" in f["raw/log"]:
        lg = f["raw/log"]
        cols = [lg["time"][()]] + [
            read_array(lg[n]) if n in lg else np.array([""] * len(lg["time"]), dtype=object)
            for n in ("source", "kind", "detail")]
        events = [(float(t), str(s), str(k), str(d)) for t, s, k, d in zip(*cols)]

    subject = attrs_of(f["subject"]) if "subject" in f else {}
    truth = None
    if "truth" in f:
        tg = f["truth"]
        truth = {"params": attrs_of(tg["params"]) if "params" in tg else {},
                 "steps": read_rows(tg["steps"]) if "steps" in tg else {}}
        for key, obj in tg.items():
            if key not in ("params", "steps"):
                truth[key] = read_rows(obj) if isinstance(obj, h5py.Group) else read_array(obj)
    reference = None
    if "reference" in f:
        rg = f["reference"]
        reference = {}
        if "events" in rg:
            reference["events"] = read_rows(rg["events"])
        if "points" in rg:
            reference["points"] = {str(from_attr(ds.attrs.get("label", key))): ds[()]
                                   for key, ds in rg["points"].items()}
        for key, obj in rg.items():
            if key in ("events", "points"):
                continue
            if isinstance(obj, h5py.Group):
                sub = attrs_of(obj)
                sub.update({k: read_array(d) for k, d in obj.items()
                            if isinstance(d, h5py.Dataset)})
                reference[key] = sub
        reference.update({k: v for k, v in attrs_of(rg).items()})
    session = Session(attrs=attrs, force=force, markers=markers, log=events, subject=subject,
                      truth=truth, reference=reference)
    if derived:
        session.derived = read_derived_from(f)
    return session


def read_derived_from(f) -> dict | None:
    g = derived_group(f)
    if g is None:
        return None
    out: dict = {"attrs": attrs_of(g)}
    for key, obj in g.items():
        if key == "angles" and isinstance(obj, h5py.Group):
            names = from_attr(obj.attrs.get("names", []))
            names = [names] if isinstance(names, str) else list(names)
            reasons_list = from_attr(obj.attrs.get("reasons", []))
            reasons_list = [reasons_list] if isinstance(reasons_list, str) else reasons_list
            reasons = {n: r for n, r in zip(names, reasons_list) if r}
            if "reasons_other" in obj.attrs:
                reasons.update(json.loads(from_attr(obj.attrs["reasons_other"])))
            out["angles"] = {"time": obj["time"][()] if "time" in obj else np.zeros(0),
                             "values": obj["values"][()] if "values" in obj
                             else np.zeros((0, len(names)), np.float32),
                             "names": names, "reasons": reasons}
        elif isinstance(obj, h5py.Group):
            out[key] = read_rows(obj)
        else:
            out[key] = read_array(obj)
    for key, required in _DERIVED_REQUIRED.items():
        if key in out:
            _raise_first(getattr(f, "filename", None),
                         _rows_problems(f"/derived/{key}", out[key], required,
                                        _DERIVED_NUMERIC[key]))
    return out


#: The columns a reader of ``/derived`` relies on, and those that must hold numbers.
_DERIVED_REQUIRED = {"contacts": ("side", "t_strike", "t_off"), "scores": ("cause", "score")}
_DERIVED_NUMERIC = {"contacts": ("side", "t_strike", "t_off", "contact_time", "flight_time",
                                 "peak_vgrf", "loading_rate", "valid"),
                    "scores": ("score", "value", "value_left", "value_right", "normal_low",
                               "normal_high", "n_steps")}


def _rows_problems(name: str, rows: dict, required, numeric) -> list[tuple[str, str]]:
    """Parallel columns of one ``/derived`` group: required ones present, one length, numbers
    where numbers are expected."""
    out = [(f"{name}/{k}", "missing dataset") for k in required if k not in rows]
    lengths = {k: len(np.atleast_1d(v)) for k, v in rows.items()}
    if len(set(lengths.values())) > 1:
        out.append((name, "columns of different lengths "
                          + ", ".join(f"{k}={n}" for k, n in sorted(lengths.items()))))
    for k in numeric:
        if k in rows and np.asarray(rows[k]).dtype.kind not in "biuf":
            out.append((f"{name}/{k}", f"dtype {np.asarray(rows[k]).dtype}, expected numbers"))
    return out


def read_derived(path) -> dict | None:
    """``/derived`` of an archive, or ``None`` when it has not been processed.

    Returns ``{"attrs": {...}, "contacts": {name: (s,) array}, "angles": {"time": (m,) s,
    "values": (m, a) float32 deg, "names": [a], "reasons": {name: why NaN}},
    "scores": {name: (4,) array}}`` (string columns as object arrays of ``str``; ``valid`` as
    bool).
    """
    path = Path(path)
    with open_archive(path) as f:
        return read_derived_from(f)


def read_calibration(force_group) -> dict | None:
    if "calibration" in force_group and isinstance(force_group["calibration"], h5py.Group):
        cal = force_group["calibration"]
        out = {}
        for key, ds in cal.items():
            value = read_array(ds)
            out[key] = value.item() if np.ndim(value) == 0 else value
        return out
    # a calibration stored as attributes by another writer
    names = [k for k in force_group.attrs if k.startswith("calibration_")]
    if names or "volts_per_count" in force_group.attrs:
        out = {k[len("calibration_"):]: from_attr(force_group.attrs[k]) for k in names}
        if "volts_per_count" in force_group.attrs:
            out["volts_per_count"] = from_attr(force_group.attrs["volts_per_count"])
        return out
    return None


def open_xarray(path, group: str):
    """``xarray.open_dataset`` of one group of a session, with named dimensions (engine
    h5netcdf): ``raw/...`` and the other session groups from the session file, ``derived/...``
    from its derived file.

    h5py, MATLAB and every HDF5-library reader follow the session's ``/derived`` external link;
    h5netcdf does too, but then looks up the dimension scales of the derived datasets in the
    session file and fails, so derived groups are opened in the derived file itself, where
    they have the same paths (docs/archive.md §11).

    Parameters
    ----------
    path : str or os.PathLike
        The session (``NAME.h5``).
    group : str
        e.g. ``"raw/force"``, ``"derived/contacts"``.
    """
    import xarray as xr

    path = Path(path)
    group = group.strip("/")
    target = path
    if group == "derived" or group.startswith("derived/"):
        with open_archive(path) as f:
            link = f.get("derived", getlink=True)
            if isinstance(link, h5py.ExternalLink):
                target = path.parent / link.filename
    return xr.open_dataset(target, group=group, engine="h5netcdf")
