"""Writing ``treadlab.session`` archives: the live layout, whole sessions and ``/derived``
(docs/archive.md). Every whole-file write goes through :func:`~.atomic.atomic_write`.
"""
from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.archive.atomic import atomic_h5
from treadlab.acquisition.archive.format import (
    ANGLE_SIGNIFICANT_BITS, COMPONENTS, DERIVED_ANGLES_GZIP_LEVEL, DERIVED_FORMAT, DERIVED_UNITS,
    FORMAT, FORMAT_VERSION, LIBVER, WRENCH_UNITS, Session, attach_scales, bitround, chunk_rows,
    derived_path, make_scale, make_scale_id, new_dataset, put_attr, set_attr, to_attr, utc_now,
    write_array, write_array_id)
from treadlab.config import software_version

log = logging.getLogger(__name__)


def append_rows(ds, values) -> None:
    """Append ``values`` along axis 0 of a resizable dataset (no-op when empty)."""
    values = np.asarray(values)
    if not len(values):
        return
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


# --- the live layout -------------------------------------------------------------------------

def _device_time(group, time_scale, rows):
    """The appendable raw device clock of a stream (s), on the stream's time dimension."""
    ds = new_dataset(group, "device_time", (0,), np.float64, "s", rows_per_chunk=rows,
                     clock="device")
    attach_scales(ds, time_scale)
    return ds


def create_raw_layout(h5file, *, plates, origin, corners, force_rate_hz, labels,
                      marker_rate_hz, n_channels=None, counts_dtype=None, calibration=None,
                      device_time=False, log=True) -> dict:
    """Create the empty, appendable ``/raw`` groups of a session (docs/archive.md §3).

    Used by :func:`write_session` and by the crash-safe recorder, which then appends rows with
    ``ds.resize`` + slice assignment and flushes. Every stream dataset is resizable along its
    first (time) axis and chunked by at most :data:`CHUNK_SECONDS` of data, gzip level
    :data:`GZIP_LEVEL`. Dimension scales are created and attached here, so call this *before*
    ``h5file.swmr_mode = True`` (docs/design.md §13.3).

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
    force.attrs["plates"] = to_attr(plates)
    force.attrs["frame"] = "lab: X travel, Y left, Z up; mm"
    rows = chunk_rows(force_rate_hz, p * 6 * 4)
    t = new_dataset(force, "time", (0,), np.float64, "s", rows_per_chunk=rows, clock="session")
    t.make_scale("time")
    plate_sc = make_scale(force, "plate", np.array(plates, dtype=object))
    comp_sc = make_scale(force, "component", np.array(COMPONENTS, dtype=object))
    write_plate_geometry(force, origin, corners, plate_sc)
    w = new_dataset(force, "wrench", (0, p, 6), np.float32, WRENCH_UNITS, rows_per_chunk=rows,
                     components=list(COMPONENTS),
                     description="ground reaction on the body, moments about plate origin")
    attach_scales(w, t, plate_sc, comp_sc)
    out["force/time"], out["force/wrench"] = t, w
    if "force" in device_time:
        out["force/device_time"] = _device_time(force, t, rows)
    if n_channels:
        cdt = np.dtype(counts_dtype or np.int32)
        ch_sc = make_scale(force, "channel", np.arange(n_channels, dtype=np.int32), "1")
        crow = chunk_rows(force_rate_hz, n_channels * cdt.itemsize)
        c = new_dataset(force, "counts", (0, n_channels), cdt, "counts", rows_per_chunk=crow)
        attach_scales(c, t, ch_sc)
        out["force/counts"] = c
    if calibration is not None:
        _write_calibration(force, calibration)

    markers = h5file["raw"].create_group("markers")
    markers.attrs["labels"] = to_attr(labels)
    markers.attrs["rate_hz"] = float(marker_rate_hz)
    markers.attrs["frame"] = "lab: X travel, Y left, Z up; mm"
    mrows = chunk_rows(marker_rate_hz, max(1, k) * 3 * 4)
    mt = new_dataset(markers, "time", (0,), np.float64, "s", rows_per_chunk=mrows,
                      clock="session")
    mt.make_scale("time")
    lab_sc = make_scale(markers, "label", np.array(labels, dtype=object))
    ax_sc = make_scale(markers, "axis", np.array(["X", "Y", "Z"], dtype=object))
    pos = new_dataset(markers, "positions", (0, k, 3), np.float32, "mm", rows_per_chunk=mrows,
                       occluded="NaN")
    attach_scales(pos, mt, lab_sc, ax_sc)
    out["markers/time"], out["markers/positions"] = mt, pos
    if "markers" in device_time:
        out["markers/device_time"] = _device_time(markers, mt, mrows)

    if log:
        lg = h5file["raw"].create_group("log")
        lt = new_dataset(lg, "time", (0,), np.float64, "s", rows_per_chunk=256, clock="session")
        lt.make_scale("event")
        out["log/time"] = lt
        for name in ("source", "kind", "detail"):
            ds = new_dataset(lg, name, (0,), str, "", rows_per_chunk=256)
            attach_scales(ds, lt)
            out[f"log/{name}"] = ds
    return out


def write_plate_geometry(force_group, origin, corners, plate_scale=None) -> None:
    """``/raw/force/origin`` (plate, xyz) and ``/raw/force/corners`` (plate, corner, xyz), mm,
    lab frame, as datasets with named dimensions (format 2; netCDF cannot represent
    multi-dimensional attributes, docs/archive.md §13)."""
    origin = np.asarray(origin, dtype=np.float64)
    corners = np.asarray(corners, dtype=np.float64)
    p = origin.shape[0]
    if plate_scale is None:
        plate_scale = force_group["plate"] if "plate" in force_group else None
    xyz = (force_group["xyz"] if "xyz" in force_group
           else make_scale(force_group, "xyz", np.array(["X", "Y", "Z"], dtype=object)))
    corner = (force_group["corner"] if "corner" in force_group
              else make_scale(force_group, "corner", np.arange(4, dtype=np.int32), "1"))
    o = new_dataset(force_group, "origin", (p, 3), np.float64, "mm", data=origin,
                    description="point about which each plate's moments are expressed, lab frame")
    c = new_dataset(force_group, "corners", (p, 4, 3), np.float64, "mm", data=corners,
                    description="plate corners, lab frame")
    attach_scales(o, plate_scale, xyz)
    attach_scales(c, plate_scale, corner, xyz)


def _write_calibration(force_group, calibration: dict) -> None:
    """``/raw/force/calibration``: ``volts_per_count`` (scalar), ``zero`` (c,) counts along
    ``/raw/force/channel``, ``channels`` (p, 6) ADC channel of each plate component and
    ``matrix`` (p, 6, 6) along ``plate`` × ``component`` × ``input`` (the plate's six input
    voltages, a scale of this group): named dimensions, so netCDF readers see no phony ones."""
    cal = force_group.create_group("calibration")
    units = {"volts_per_count": "V/count", "zero": "counts", "channels": "1",
             "matrix": "N/V (Fx, Fy, Fz), N*m/V (Mx, My, Mz)"}
    written = {}
    for key, value in calibration.items():
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.ndim == 0:
            ds = cal.create_dataset(key, data=arr)
            ds.attrs["units"] = units.get(key, "1")
        else:
            written[key] = write_array(cal, key, arr, units.get(key, "1"))
    plate, comp = force_group.get("plate"), force_group.get("component")
    channel = force_group.get("channel")
    for key, ds in written.items():
        scales = {"zero": (channel,), "channels": (plate, comp),
                  "matrix": (plate, comp, None)}.get(key, ())
        if key == "matrix" and ds.ndim == 3:
            scales = (plate, comp, make_scale(cal, "input",
                                              np.arange(ds.shape[2], dtype=np.int32), "1"))
        if len(scales) == ds.ndim and all(sc is not None and sc.shape[0] == n
                                          for sc, n in zip(scales, ds.shape)):
            attach_scales(ds, *scales)


# --- writing a whole session -----------------------------------------------------------------

def _root_attrs(session: Session) -> dict:
    attrs = dict(session.attrs)
    attrs["format"] = FORMAT
    attrs.setdefault("format_version", FORMAT_VERSION)
    attrs.setdefault("session_id", str(uuid.uuid4()))
    attrs.setdefault("created_utc", utc_now())
    attrs.setdefault("software", software_version())
    attrs.setdefault("status", "complete")
    return attrs


def write_session(path, session: Session, *, self_contained: bool = False) -> Path:
    """Write ``session`` as a new ``treadlab.session`` file (replacing ``path``).

    The file is written beside ``path`` under a temporary name and moved into place with
    ``os.replace``, so a reader never sees a half-written archive. ``/derived`` is an HDF5
    external link to ``<stem>.derived.h5`` beside it (docs/archive.md §11); when
    ``session.derived`` is given that derived file is written first (atomically too).
    ``self_contained=True`` (exports) stores ``session.derived`` inside the file instead and
    creates no link.

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
    if self_contained:
        with atomic_h5(path, libver=LIBVER) as f:
            write_session_into(f, session)
    else:
        # the derived file exists from the start (empty until processed): netCDF-C cannot open
        # a file with a dangling external link
        write_derived_file(path, session.derived or None,
                           dict((session.derived or {}).get("attrs") or {}),
                           session_id=_root_attrs_id(session))
        with atomic_h5(path, libver=LIBVER) as f:
            write_session_into(f, session, derived_link=derived_path(path).name)
    log.debug("wrote %s", path)
    return path


def _root_attrs_id(session: Session) -> str:
    """The session's UUID, created now (and kept in ``session.attrs``) when missing."""
    if not session.attrs.get("session_id"):
        session.attrs = {**session.attrs, "session_id": str(uuid.uuid4())}
    return str(session.attrs["session_id"])


def link_derived(f: h5py.File, derived_name: str) -> None:
    """Make ``/derived`` of the open session ``f`` an HDF5 external link to
    ``derived_name:/derived`` (a file name relative to the session's folder, where HDF5 looks
    first). The link may dangle until the session is first processed."""
    if "derived" in f or f.get("derived", getlink=True) is not None:
        del f["derived"]
    f["derived"] = h5py.ExternalLink(str(derived_name), "/derived")


def write_session_into(f: h5py.File, session: Session, *, derived_link: str | None = None) -> None:
    """Write ``session`` into the open, empty file ``f``. ``derived_link``: the derived file's
    name, linked as ``/derived`` (``session.derived`` is then not written here); ``None``:
    ``session.derived`` is stored inside ``f`` (a self-contained file: exports)."""
    for key, value in _root_attrs(session).items():
        if value is not None:
            put_attr(f, key, value)
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
                put_attr(g, key, value)
    if session.truth:
        _write_truth(f, session.truth)
    if session.reference:
        _write_reference(f, session.reference)
    if derived_link is not None:
        link_derived(f, derived_link)
    elif session.derived:
        write_derived_into(f, session.derived, dict(session.derived.get("attrs") or {}))


def _write_truth(f, truth: dict) -> None:
    g = f.create_group("truth")
    params = g.create_group("params")
    for key, value in (truth.get("params") or {}).items():
        if value is not None:
            put_attr(params, key, value)
    _write_rows(g, "steps", truth.get("steps") or {}, "step")
    for key, value in truth.items():
        if key not in ("params", "steps") and value is not None:
            if isinstance(value, dict):
                _write_rows(g, key, value, "row")
            else:
                write_array(g, key, value, DERIVED_UNITS.get(key, "1"))


def _write_rows(parent, name, columns: dict, dim: str, *, units: dict | None = None,
                index_name: str | None = None):
    """A group of parallel 1-D (or n-D sharing axis 0) datasets sharing one dimension ``dim``."""
    g = parent.create_group(name)
    lengths = {len(np.atleast_1d(v)) for v in columns.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"{g.name}: columns of different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    units = {**DERIVED_UNITS, **(units or {})}
    if index_name and index_name in columns:
        sc = make_scale_id(g, index_name, columns[index_name], units.get(index_name, ""))
    else:
        sc = make_scale_id(g, dim, np.arange(n, dtype=np.int32), "1")
    along = []
    for key, value in columns.items():
        if value is None or key == index_name:
            continue
        value = np.atleast_1d(value)
        ds = write_array_id(g, key, value, units.get(key, "1"))
        if value.shape[0] == n:
            along.append(ds)
    # attached once all columns exist: attaching each as it is written took twice as long
    # (HDF5 2.0: 2.6 ms instead of 1.4 ms for the 28 contact columns)
    for ds in along:
        h5py.h5ds.attach_scale(ds, sc, 0)
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
            write_array(pg, name, np.asarray(value, dtype=np.float32),
                         units.get(label, "deg" if "Angle" in str(label) else "mm"),
                         label=str(label))
    for key, value in reference.items():
        if key in ("events", "points", "point_units") or value is None:
            continue
        if isinstance(value, dict):
            sub = g.create_group(key)
            for k2, v2 in value.items():
                if isinstance(v2, (str, int, float, bool, np.generic)):
                    put_attr(sub, k2, v2)
                else:
                    write_array(sub, k2, np.asarray(v2), "1")
        else:
            put_attr(g, key, value)


def write_derived_into(f, derived: dict, attrs: dict) -> None:
    if "derived" in f:
        del f["derived"]
    g = f.create_group("derived")
    attrs = dict(attrs)
    attrs.setdefault("processed_utc", utc_now())
    for key, value in attrs.items():
        if value is not None:
            put_attr(g, key, value)
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
            write_array(g, key, np.asarray(value), units.get(key, "1"))


def _write_angles(parent, angles: dict) -> None:
    g = parent.create_group("angles")
    names = [str(n) for n in angles.get("names", [])]
    time = np.asarray(angles.get("time", []), dtype=np.float64)
    values = np.asarray(angles["values"] if "values" in angles
                        else np.zeros((len(time), len(names))),
                        dtype=np.float32).reshape(len(time), len(names))
    reasons = dict(angles.get("reasons") or {})
    put_attr(g, "names", names)
    # one reason per angle, "" when computed, so MATLAB/R readers get a plain string array
    put_attr(g, "reasons", [str(reasons.get(n, "")) for n in names])
    t = make_scale_id(g, "time", time, "s", clock="session")
    sc = make_scale_id(g, "angle", np.array(names, dtype=object))
    v = write_array_id(g, "values", bitround(values, ANGLE_SIGNIFICANT_BITS), "deg",
                       level=DERIVED_ANGLES_GZIP_LEVEL,
                       quantize_bitround_bits=ANGLE_SIGNIFICANT_BITS,
                       conventions="Plug-in Gait (left-side signs)")
    attach_scales(v, t, sc)
    extra = {k: v for k, v in reasons.items() if k not in names}
    if extra:
        put_attr(g, "reasons_other", json.dumps(extra, sort_keys=True))


def write_derived_file(session_path, derived: dict, attrs: dict, *, session_id: str,
                       target=None) -> Path:
    """Write the derived file of ``session_path`` (``<stem>.derived.h5``, or ``target``),
    atomically: root attributes ``format="treadlab.derived"``, ``format_version``,
    ``session_id`` and ``session_file``, and the group ``/derived``. Built in memory and written
    by plain I/O (a full disk is one ``OSError``; the previous derived file stays).

    ``derived=None`` writes the placeholder of a session not processed yet: an empty
    ``/derived`` with ``status="not processed"`` (readers treat it as no derived data), so the
    session's external link never dangles (netCDF-C refuses a file whose link dangles)."""
    session_path = Path(session_path)
    target = derived_path(session_path) if target is None else Path(target)
    with atomic_h5(target, libver=LIBVER, small=True) as f:
        set_attr(f, "format", DERIVED_FORMAT)
        set_attr(f, "format_version", FORMAT_VERSION)
        set_attr(f, "session_id", str(session_id))
        set_attr(f, "session_file", session_path.name)
        set_attr(f, "software", software_version())
        if derived is None:
            set_attr(f.create_group("derived"), "status", "not processed")
        else:
            write_derived_into(f, derived, attrs)
    return target
