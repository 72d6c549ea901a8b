"""Checking and summarising archives: ``treadlab validate`` and ``treadlab inspect``
(docs/archive.md §7).
"""
from __future__ import annotations

import math
import uuid
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np

import treadlab.acquisition.archive.plausible as plausible
from treadlab.acquisition.archive.chunks import read_all
from treadlab.acquisition.archive.format import (one_line, ALLOWED_FILTERS, CONTACT_FIELDS, FORMAT,
    FORMAT_VERSION, RAW_UNITS, RAW_UNITS_TEXT, REQUIRED_ROOT_ATTRS, SCORE_FIELDS, STATUSES,
    attrs_of, from_attr, read_array)
from treadlab.acquisition.archive.read import (derived_group, open_archive, read_belt,
                                               read_calibration, read_derived_from)
from treadlab.config.errors import InputError


# --- validation ------------------------------------------------------------------------------

def validate_session(path, quick: bool = False) -> list[str]:
    """Check an archive against the ``treadlab.session`` v1 contract (docs/archive.md).

    Never raises for a bad file: an unreadable or non-HDF5 file gives one item.

    Parameters
    ----------
    path : str or os.PathLike
    quick : bool
        Layout only (groups, datasets, shapes, attributes, units, time bases). By default every
        dataset is also read in full (a corrupt compressed chunk is found) and the values are
        checked for physical plausibility
        (:mod:`treadlab.acquisition.archive.plausible`: rates, body mass, finite forces and
        positions of lab size, text labels and identifiers).

    Returns
    -------
    list of str
        One problem per item, each naming the dataset or attribute (``/raw/force/time:
        not increasing at sample 12``, ``/@session_id: missing attribute``); empty = valid.
    """
    path = Path(path)
    try:
        f = open_archive(path)
    except InputError as exc:
        return [exc.message]
    problems: list[str] = []
    try:
        with f:
            _validate_into(f, problems)
            if not quick:
                _validate_values(f, problems)
    except Exception as exc:  # a damaged file can fail anywhere; report, never trace back
        problems.append(f"unreadable structure: {type(exc).__name__}: {one_line(exc)}")
    return problems


def _validate_values(f, problems: list[str]) -> None:
    """Read every dataset in full; check the values of the raw streams and ``/derived``."""
    add = problems.append
    data: dict[str, np.ndarray] = {}

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            try:
                data[name] = read_all(obj)
            except Exception as exc:  # a corrupt chunk: gzip or checksum failure
                add(f"/{name}: unreadable data, damaged file? ({one_line(exc)})")
    f.visititems(read)  # hard links only: the derived file (format 2) is read below
    try:
        dg = derived_group(f)
    except InputError:
        dg = None  # reported by the layout check
    if dg is not None and dg.file.filename != f.filename:
        dg.visititems(lambda name, obj: read(f"derived/{name}", obj))
    found = list(plausible.root_problems(attrs_of(f)))
    for group, name, limit, unit, names in (
            ("raw/force", "wrench", plausible.MAX_WRENCH, "N or N*m", "plates"),
            ("raw/markers", "positions", plausible.MAX_POSITION_MM, "mm", "labels")):
        g = f.get(group)
        if not isinstance(g, h5py.Group):
            continue
        if "rate_hz" in g.attrs:
            found += plausible.rate_problems(group, from_attr(g.attrs["rate_hz"]))
        if names in g.attrs:
            found += plausible.label_problems(f"/{group}@{names}", from_attr(g.attrs[names]))
        key = f"{group}/{name}"
        if key in data and np.asarray(data[key]).dtype.kind in "fiu":
            found += plausible.value_problems(f"/{key}", data[key], limit, unit)
    numeric = {"derived/contacts": CONTACT_FIELDS,
               "derived/scores": ("score", "value", "value_left", "value_right", "normal_low",
                                  "normal_high", "n_steps"),
               "derived/scores_by_speed": ("score", "value", "value_left", "value_right",
                                           "normal_low", "normal_high", "n_steps",
                                           "speed_m_s"),
               "raw/belt": ("time", "speed")}
    for group, fields in numeric.items():
        for key in fields:
            full = f"{group}/{key}"
            if full in data and np.asarray(data[full]).dtype.kind not in "biuf":
                found.append((f"/{full}", f"dtype {np.asarray(data[full]).dtype}, expected "
                                          f"numbers"))
    problems.extend(f"{field}: {message}" for field, message in found)


def _validate_into(f, problems: list[str]) -> None:
    add = problems.append
    # root attributes
    for key in REQUIRED_ROOT_ATTRS:
        if key not in f.attrs:
            add(f"/@{key}: missing attribute")
    ra = attrs_of(f)
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
        if not is_number(val) or not val > 0:
            add(f"/@body_mass_kg: {val!r} must be a number > 0 (kg)")
    if "belt_speed_m_s" in ra:  # NaN = unknown (e.g. overground recordings)
        val = ra["belt_speed_m_s"]
        if not is_number(val) or val < 0:
            add(f"/@belt_speed_m_s: {val!r} must be a number >= 0 (m/s) or NaN (unknown)")

    # every dataset: units (the right ones for the raw streams), portable filters
    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if "units" not in obj.attrs:
                add(f"/{name}: missing attribute 'units'")
            elif name in RAW_UNITS:
                unit = str(from_attr(obj.attrs["units"])).strip()
                if not RAW_UNITS[name](unit):
                    add(f"/{name}: units {unit!r}, expected {RAW_UNITS_TEXT[name]}")
            bad = set(obj._filters) - ALLOWED_FILTERS
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
    try:
        dg = derived_group(f)
    except InputError as exc:
        add(str(exc))
        return
    if dg is not None:
        if dg.file.filename != f.filename:  # a derived file (format 2): visit it too
            dg.visititems(lambda name, obj: visit(f"derived/{name}", obj))
        _validate_derived(dg, problems)


def is_number(value) -> bool:
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
    for key in ("rate_hz", names_attr):
        if key not in g.attrs:
            add(f"/{group}@{key}: missing attribute")
    if data_name == "wrench":  # format 2: datasets; format 1: attributes
        for key in ("origin", "corners"):
            if key not in g.attrs and not isinstance(g.get(key), h5py.Dataset):
                add(f"/{group}/{key}: missing dataset")
    rate = from_attr(g.attrs["rate_hz"]) if "rate_hz" in g.attrs else None
    if rate is not None and (not isinstance(rate, (int, float)) or not rate > 0):
        add(f"/{group}@rate_hz: {rate!r} must be a number > 0")
    names = from_attr(g.attrs[names_attr]) if names_attr in g.attrs else None
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
            elif isinstance(g.get(key), h5py.Dataset) and g[key].shape != shape:
                add(f"/{group}/{key}: shape {g[key].shape}, expected {shape}")
    if "device_time" in g and data_name == "positions" and g["device_time"].shape != (n,):
        add(f"/{group}/device_time: shape {g['device_time'].shape}, expected ({n},)")
    return n


def _validate_calibration(fg, problems) -> None:
    cal = read_calibration(fg)
    if not cal:
        return
    p = len(from_attr(fg.attrs["plates"])) if "plates" in fg.attrs else None
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
    if "scores_by_speed" in g:
        _validate_columns(g["scores_by_speed"], SCORE_FIELDS + ("speed_m_s",), problems)
    if "angles" in g:
        a = g["angles"]
        names = from_attr(a.attrs["names"]) if "names" in a.attrs else None
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
        ``labels`` and ``nan_fraction`` {label: fraction of frames occluded}; ``belt`` (when
        recorded): the same plus ``belts`` and ``speed_range_m_s`` {belt: [min, max] m/s};
        ``analog`` (when recorded): the same plus ``channels``, ``units``, ``device``, gaps
        from the device's sample numbers; ``log``: {kind:
        count}; ``groups`` present; ``derived`` (when processed): attrs, ``contacts``
        {n, left, right, valid, contact_time_ms mean per side}, ``scores`` [rows], ``angles``
        names and NaN reasons, ``scores_by_speed`` [rows per plateau and cause]; ``problems``
        from :func:`validate_session`.

    Raises
    ------
    InputError
        The file cannot be opened as HDF5.
    """
    path = Path(path)
    info: dict = {"path": str(path), "size_bytes": path.stat().st_size if path.exists() else 0}
    with open_archive(path) as f:
        try:
            _inspect_into(f, info)
        except Exception as exc:  # a damaged layout: one line, never a traceback
            raise InputError(path, None, f"cannot inspect: {one_line(exc)}") from None
    info["problems"] = validate_session(path)
    return info


def _inspect_into(f, info: dict) -> None:
    info["attrs"] = attrs_of(f)
    info["status"] = info["attrs"].get("status")
    info["groups"] = sorted(k for k in f.keys())
    info["subject"] = attrs_of(f["subject"]) if "subject" in f else {}
    streams = {}
    if "raw/force" in f and "time" in f["raw/force"]:
        fg = f["raw/force"]
        rate = from_attr(fg.attrs.get("rate_hz"))
        s = {"rate_hz": rate, "plates": from_attr(fg.attrs.get("plates", []))}
        s.update(_time_summary(fg["time"][()], rate))
        s["has_counts"] = "counts" in fg
        s["has_calibration"] = read_calibration(fg) is not None
        if "wrench" in fg and fg["wrench"].size:
            s["nan_fraction"] = float(_nan_fraction(fg["wrench"]).mean())
        streams["force"] = s
    if "raw/markers" in f and "time" in f["raw/markers"]:
        mg = f["raw/markers"]
        rate = from_attr(mg.attrs.get("rate_hz"))
        labels = from_attr(mg.attrs.get("labels", []))
        labels = [str(x) for x in ([labels] if isinstance(labels, str) else list(labels))]
        s = {"rate_hz": rate, "labels": labels}
        s.update(_time_summary(mg["time"][()], rate))
        if "positions" in mg and mg["positions"].ndim == 3 and \
                mg["positions"].shape[1] == len(labels):
            frac, empty = _nan_fraction(mg["positions"], all_nan_rows=True)
            s["nan_fraction"] = {lb: float(x) for lb, x in zip(labels, frac)}
            s["frames_all_occluded"] = int(empty)
        streams["markers"] = s
    belt = read_belt(f)
    if belt is not None:
        bg = f["raw/belt"]
        rate = from_attr(bg.attrs.get("rate_hz"))
        s = {"rate_hz": rate, "belts": [str(b) for b in belt["belts"]]}
        s.update(_time_summary(belt["time"], rate))
        sp = belt["speed"]
        s["speed_range_m_s"] = {
            str(b): ([float(np.nanmin(sp[:, i])), float(np.nanmax(sp[:, i]))]
                     if len(sp) and np.isfinite(sp[:, i]).any() else None)
            for i, b in enumerate(belt["belts"])}
        streams["belt"] = s
    if "raw/analog" in f and "time" in f["raw/analog"]:
        ag = f["raw/analog"]
        rate = from_attr(ag.attrs.get("rate_hz"))
        chans = from_attr(ag.attrs.get("channels", []))
        units = from_attr(ag.attrs.get("units", []))
        chans = [str(x) for x in ([chans] if isinstance(chans, str) else list(chans))]
        units = [str(x) for x in ([units] if isinstance(units, str) else list(units))]
        s = {"rate_hz": rate, "channels": chans, "units": units,
             "device": str(from_attr(ag.attrs.get("device", "")) or "")}
        s.update(_time_summary(ag["time"][()], rate))
        if "seq" in ag and ag["seq"].shape[0] > 1:
            # the device's sample numbers count what was missed, whatever the time stamps say
            d = np.diff(ag["seq"][()].astype(np.int64))
            s["gaps"] = int(np.count_nonzero(d > 1))
            s["missing_samples"] = int(np.sum(d[d > 1] - 1))
        streams["analog"] = s
    info["streams"] = streams
    kinds: dict = {}
    if "raw/log" in f and "kind" in f["raw/log"]:
        for k in read_array(f["raw/log/kind"]):
            kinds[str(k)] = kinds.get(str(k), 0) + 1
    info["log"] = dict(sorted(kinds.items()))
    info["derived"] = _derived_summary(f) if derived_group(f) is not None else None
    link = f.get("derived", getlink=True)
    info["derived_file"] = getattr(link, "filename", None)


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
    d = read_derived_from(f) or {}
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
    sb = d.get("scores_by_speed")
    if sb and "cause" in sb and "speed_m_s" in sb:
        out["scores_by_speed"] = [
            {"speed_m_s": float(v), "cause": str(cause), "score": float(score),
             "n_steps": int(n)}
            for v, cause, score, n in zip(sb["speed_m_s"], sb["cause"], sb["score"],
                                          sb.get("n_steps", [0] * len(sb["cause"])))]
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
        if name == "belt":
            rng = s.get("speed_range_m_s") or {}
            lines.append("             speed " + ", ".join(
                f"{b} {r[0]:.2f}-{r[1]:.2f} m/s" if r else f"{b} -"
                for b, r in rng.items()))
        if name == "analog":
            chans = [f"{c} ({u})" for c, u in zip(s.get("channels", []), s.get("units", []))]
            head = f"             {len(chans)} channels"
            if s.get("device"):
                head += f" from {s['device']}"
            lines.append(head + ":")
            for i in range(0, len(chans), 6):
                lines.append("               " + ", ".join(chans[i:i + 6]))
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
    where = f" (in {info['derived_file']})" if info.get("derived_file") else ""
    if d is None:
        lines.append(f"  derived    not processed{where}")
    else:
        da = d.get("attrs", {})
        lines.append(f"  derived    pipeline {da.get('pipeline_version', '?')}  config "
                     f"{str(da.get('config_hash', '?'))[:12]}  at {da.get('processed_utc', '?')}"
                     f"{where}")
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
        by_speed: dict = {}
        for row in d.get("scores_by_speed", []):
            by_speed.setdefault(row["speed_m_s"], []).append(row)
        for v, rows in sorted(by_speed.items()):    # one line per plateau: one screen
            lines.append(f"  at {v:.1f} m/s  " + "  ".join(
                f"{r['cause']} {_fmt_num(r.get('score'), '.0f')}" for r in rows)
                + f"   steps {max(r['n_steps'] for r in rows)}")
        ang = d.get("angles")
        if ang and ang.get("reasons"):
            for k, why in ang["reasons"].items():
                lines.append(f"  angle NaN  {k}: {why}")
    probs = info.get("problems") or []
    lines.append("  valid      yes" if not probs else f"  problems   {len(probs)}")
    lines.extend(f"    - {p}" for p in probs)
    return "\n".join(lines)
