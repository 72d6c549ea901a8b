"""C3D export: a session's markers, analog force channels and contact events as C3D
(``treadlab export --format c3d``; docs/design.md §7, docs/archive.md §8).

Markers in mm, lab frame. Analog channels per plate (``Fx1 … Mz1``): the force and moment the
runner applies to the plate (the negated ground reaction on the body), N and N·mm, about the
centre of the plate surface, with ``FORCE_PLATFORM`` type-2 parameters. Contacts of
``/derived/contacts`` become ``Foot Strike`` / ``Foot Off`` events. ezc3d writes at most 65535
frames per file, so longer sessions are split into equal numbered parts ``…_part01.c3d``; a C3D
parameter dimension is one byte, so a part also holds at most 255 events (about 40 s of
running), which sets the number of parts of a processed session.

The reader is :mod:`treadlab.acquisition.io.c3d_import`; the two agree on axes and units
(tests/pipeline/test_export.py reads an export back with it).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import ezc3d
import numpy as np

from treadlab.acquisition.archive import atomic_write
from treadlab.config.errors import InputError

log = logging.getLogger(__name__)

#: ezc3d writes at most this many point frames per file.
C3D_MAX_FRAMES = 65535
#: A C3D parameter dimension is one byte: the EVENT group holds at most 255 events.
C3D_MAX_EVENTS = 255


def write_c3d(session, to_dir, stem: str, *, subject_id: str = "", session_id: str = "",
              date: str | None = None, source=None, check=None) -> list[Path]:
    """Write a session's markers, force channels and contact events as C3D file(s).

    Parameters
    ----------
    session : treadlab.acquisition.archive.Session
        With ``session.derived`` (as ``read_session(..., derived=True)`` returns) for events;
        without it the files carry no events.
    to_dir : str or os.PathLike
        Destination folder.
    stem : str
        File name without suffix; parts get ``_part01`` … appended.
    subject_id, session_id, date : str
        Written to the ``SUBJECTS`` and ``TREADLAB`` parameter groups.
    source : path, optional
        The archive the session came from (named in errors).
    check : callable, optional
        ``check(target, strings)`` is called before each part is written with the
        ``(where, text)`` pairs of every parameter (:func:`c3d_strings`); raising refuses the
        part (the export's identifier check).

    Returns
    -------
    list of pathlib.Path
        The files written (each atomically, :func:`treadlab.acquisition.archive.atomic_write`).

    Raises
    ------
    InputError
        Fewer than two marker frames (the marker clock carries the analog channels).
    """
    src = source if source is not None else stem
    to_dir = Path(to_dir)
    mk, fo = session.markers, session.force
    m = len(mk.time)
    if m < 2:
        raise InputError(src, "/raw/markers/time", f"{m} marker frame(s): C3D needs the marker "
                                                   "clock to carry the analog channels")
    rate = float(mk.rate_hz)
    analog_rate, ratio, resampled = _analog_rate(fo.rate_hz, rate)
    analog = _analog_channels(fo)  # (n, 6p) action on plate, N and N*mm
    # analog samples on the marker clock: frame j carries samples j*ratio .. j*ratio+ratio-1
    ta = mk.time[0] + np.arange(m * ratio) / analog_rate
    if not resampled and len(fo.time) and abs(fo.time[0] - mk.time[0]) < 0.25 / fo.rate_hz:
        idx = np.rint((ta - fo.time[0]) * fo.rate_hz).astype(np.int64)
        ok = (idx >= 0) & (idx < len(fo.time))
        a = np.zeros((len(ta), analog.shape[1]))
        a[ok] = analog[idx[ok]]
    else:
        a = np.stack([np.interp(ta, fo.time, analog[:, c], left=0.0, right=0.0)
                      for c in range(analog.shape[1])], axis=1) if len(fo.time) \
            else np.zeros((len(ta), analog.shape[1]))
    if resampled:
        log.info("%s: force resampled from %g Hz to %g Hz (%d x the marker rate)", src,
                 fo.rate_hz, analog_rate, ratio)
    events = _events(session)
    bounds, groups = split_parts(mk.time, rate, [e[0] for e in events])
    n_parts = len(bounds) - 1
    if n_parts > 1:
        log.info("%s: %d frames, %d events: split into %d C3D parts (at most %d frames and %d "
                 "events each)", src, m, len(events), n_parts, C3D_MAX_FRAMES, C3D_MAX_EVENTS)
    out = []
    for part in range(n_parts):
        i0, i1 = bounds[part], bounds[part + 1]
        name = stem + (f"_part{part + 1:02d}" if n_parts > 1 else "") + ".c3d"
        target = to_dir / name
        c = ezc3d.c3d()
        _fill_points(c, mk, i0, i1)
        _fill_analogs(c, fo, a[i0 * ratio:i1 * ratio], analog_rate, resampled)
        t0 = mk.time[i0]
        _fill_events(c, [(max(0.0, events[j][0] - t0),) + events[j][1:] for j in groups[part]])
        _fill_treadlab(c, session, subject_id, session_id, date, part, n_parts, float(t0),
                       fo.rate_hz, resampled)
        if check is not None:
            check(target, c3d_strings(c, name))
        with atomic_write(target, suffix=".c3d") as tmp:
            c.write(str(tmp))
        out.append(target)
    return out


def split_parts(time: np.ndarray, rate: float, event_times: list[float]):
    """Split frames ``0..m`` into the fewest equal parts with at most :data:`C3D_MAX_FRAMES`
    frames and :data:`C3D_MAX_EVENTS` events each.

    Returns ``(bounds, groups)``: part ``i`` holds frames ``bounds[i]:bounds[i+1]`` and the
    events with indices ``groups[i]`` (an event belongs to the part whose frames it falls on).
    """
    m = len(time)
    et = np.asarray(event_times, dtype=np.float64)
    frame = np.clip(np.rint((et - time[0]) * rate).astype(np.int64), 0, m - 1) if et.size \
        else np.zeros(0, np.int64)
    n = max(1, math.ceil(m / C3D_MAX_FRAMES), math.ceil(et.size / C3D_MAX_EVENTS))
    while True:
        bounds = np.linspace(0, m, n + 1).round().astype(np.int64)
        part = np.searchsorted(bounds, frame, side="right") - 1
        counts = np.bincount(part, minlength=n) if et.size else np.zeros(n, np.int64)
        if counts.max(initial=0) <= C3D_MAX_EVENTS or n >= m:
            return bounds, [np.flatnonzero(part == i) for i in range(n)]
        n += 1


def _fill_events(c, events) -> None:
    """EVENT group from ``[(time s from the part start, context, label)]``, written in one
    go (``add_event`` rebuilds the group per event) with USED stored as an integer."""
    if not events:
        return
    n = len(events)
    c.add_parameter("EVENT", "USED", [n])
    c.add_parameter("EVENT", "TIMES", np.array([[0.0] * n, [float(e[0]) for e in events]]))
    c.add_parameter("EVENT", "CONTEXTS", [e[1] for e in events])
    c.add_parameter("EVENT", "LABELS", [e[2] for e in events])
    c.add_parameter("EVENT", "DESCRIPTIONS", ["" for _ in events])
    c.add_parameter("EVENT", "SUBJECTS", ["" for _ in events])
    c.add_parameter("EVENT", "ICON_IDS", [0.0] * n)
    c.add_parameter("EVENT", "GENERIC_FLAGS", [0.0] * n)
    # add_parameter stores integers as floats (docs/design.md §13.6): assign the existing
    # parameter
    c["parameters"]["EVENT"]["USED"]["value"] = np.array([n])


def _analog_rate(force_rate: float, marker_rate: float) -> tuple[float, int, bool]:
    """(analog rate, samples per marker frame, resampled?): the force rate when it is an integer
    multiple of the marker rate, else the next multiple above it."""
    ratio = force_rate / marker_rate
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        return float(force_rate), int(round(ratio)), False
    k = max(1, math.ceil(ratio))
    return float(k * marker_rate), k, True


def _analog_channels(fo) -> np.ndarray:
    """(n, 6p) float64: per plate the force (N) and moment (N*mm) the runner applies to the
    plate, lab axes, moments about the centre of the plate surface (mean of its corners)."""
    w = np.asarray(fo.wrench, dtype=np.float64)
    n, p = w.shape[0], w.shape[1]
    out = np.zeros((n, 6 * p))
    for i in range(p):
        force = w[:, i, :3]
        moment = w[:, i, 3:]  # N*m about origin
        centre = np.asarray(fo.corners[i], dtype=np.float64).mean(axis=0)
        r = (np.asarray(fo.origin[i], dtype=np.float64) - centre) / 1000.0  # m, centre->origin
        m_centre = moment + np.cross(r, force)
        out[:, 6 * i:6 * i + 3] = -force
        out[:, 6 * i + 3:6 * i + 6] = -m_centre * 1000.0
    return np.nan_to_num(out, nan=0.0)


def _fill_points(c, mk, i0: int, i1: int) -> None:
    pos = np.asarray(mk.positions[i0:i1], dtype=np.float64)  # (f, k, 3)
    k = pos.shape[1]
    pts = np.ones((4, k, i1 - i0))
    pts[:3] = pos.transpose(2, 1, 0)
    c["parameters"]["POINT"]["RATE"]["value"] = [float(mk.rate_hz)]
    c["parameters"]["POINT"]["LABELS"]["value"] = [str(lb) for lb in mk.labels]
    c["parameters"]["POINT"]["DESCRIPTIONS"]["value"] = ["marker, lab frame"] * k
    c["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c["data"]["points"] = pts
    resid = np.zeros((1, k, i1 - i0))
    resid[0][np.isnan(pos).any(axis=2).T] = -1.0  # C3D: negative residual = invalid point
    c["data"]["meta_points"] = {"residuals": resid,
                                "camera_masks": np.zeros((7, k, i1 - i0), dtype=bool)}


def _fill_analogs(c, fo, a: np.ndarray, analog_rate: float, resampled: bool) -> None:
    p = len(fo.plates)
    labels, units, desc = [], [], []
    for i, plate in enumerate(fo.plates):
        for comp in ("Fx", "Fy", "Fz", "Mx", "My", "Mz"):
            labels.append(f"{comp}{i + 1}")
            units.append("N" if comp[0] == "F" else "Nmm")
            desc.append(f"plate {plate}: {comp} applied to the plate, lab axes"
                        + ("" if comp[0] == "F" else ", about the surface centre"))
    n = len(labels)
    ap = c["parameters"]["ANALOG"]
    ap["RATE"]["value"] = [float(analog_rate)]
    ap["LABELS"]["value"] = labels
    ap["DESCRIPTIONS"]["value"] = desc
    ap["UNITS"]["value"] = units
    ap["SCALE"]["value"] = [1.0] * n
    ap["OFFSET"]["value"] = [0] * n
    ap["GEN_SCALE"]["value"] = [1.0]
    c["data"]["analogs"] = a.T[np.newaxis, :, :].astype(np.float64)
    fp = c["parameters"]["FORCE_PLATFORM"]
    fp["USED"]["value"] = np.array([p])
    fp["TYPE"]["value"] = np.full(p, 2)
    fp["ZERO"]["value"] = np.array([0, 0])
    fp["CHANNEL"]["value"] = np.arange(1, 6 * p + 1).reshape(p, 6).T
    # C3D corner order: +x+y, -x+y, -x-y, +x-y in the plate frame; plate axes = lab axes
    corners = np.zeros((3, 4, p))
    for i in range(p):
        cr = np.asarray(fo.corners[i], dtype=np.float64)
        centre = cr.mean(axis=0)
        d = cr - centre
        order = [int(np.argmax(d[:, 0] * sx + d[:, 1] * sy))
                 for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
        corners[:, :, i] = cr[order].T
    fp["CORNERS"]["value"] = corners
    fp["ORIGIN"]["value"] = np.zeros((3, p))


def _events(session) -> list[tuple[float, str, str]]:
    """(time s, "Left"/"Right", "Foot Strike"/"Foot Off") of the sided contacts."""
    d = session.derived or {}
    c = d.get("contacts") or {}
    if not c or "t_strike" not in c:
        log.info("session not processed: C3D written without events")
        return []
    out = []
    side = np.asarray(c.get("side"), dtype=np.int64)
    for s, ts, to in zip(side, np.asarray(c["t_strike"], float), np.asarray(c["t_off"], float)):
        if s not in (0, 1):
            continue
        context = "Left" if s == 0 else "Right"
        if np.isfinite(ts):
            out.append((float(ts), context, "Foot Strike"))
        if np.isfinite(to):
            out.append((float(to), context, "Foot Off"))
    out.sort()
    return out


def _fill_treadlab(c, session, subject_id, session_id, date, part, n_parts, t0, force_rate,
                   resampled) -> None:
    c.add_parameter("SUBJECTS", "NAMES", [subject_id or ""])
    c.add_parameter("SUBJECTS", "USED", [1.0])
    c.add_parameter("TREADLAB", "FORMAT", "treadlab.session v1 export")
    c.add_parameter("TREADLAB", "SUBJECT_ID", subject_id or "")
    c.add_parameter("TREADLAB", "SESSION_ID", session_id or "")
    c.add_parameter("TREADLAB", "DATE", date or "")
    c.add_parameter("TREADLAB", "PART", f"{part + 1} of {n_parts}")
    c.add_parameter("TREADLAB", "PART_START_S", [float(t0)])
    bm = session.attrs.get("body_mass_kg")
    if _is_number(bm):
        c.add_parameter("TREADLAB", "BODY_MASS_KG", [float(bm)])
    bs = session.attrs.get("belt_speed_m_s")
    if _is_number(bs):
        c.add_parameter("TREADLAB", "BELT_SPEED_M_S", [float(bs)])
    c.add_parameter("TREADLAB", "FRAME", "lab: X travel, Y left, Z up; mm")
    c.add_parameter("TREADLAB", "FORCE",
                    "analog Fx..Mz per plate: force and moment applied to the plate (the "
                    "negated ground reaction on the body), N and N*mm, about the plate centre"
                    + (f"; resampled from {force_rate:g} Hz" if resampled else ""))


def c3d_strings(c, name: str):
    """(where, text) of every parameter name, string value and description of an ezc3d
    object, and the file name."""
    yield name, name
    for group, params in c["parameters"].items():
        yield group, group
        for key, p in params.items():
            if key == "__METADATA__":
                continue
            yield f"{group}:{key}", key
            for s in text_values(p.get("value")):
                yield f"{group}:{key}", s
            yield f"{group}:{key}", str(p.get("description", ""))


def text_values(value):
    """Every text in a parameter value (str, bytes, nested lists, string arrays)."""
    if isinstance(value, (bytes, np.bytes_)):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from text_values(v)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "SOU":
        for v in value.ravel():
            yield from text_values(v)


def _is_number(value) -> bool:
    return isinstance(value, (bool, int, float, np.integer, np.floating))
