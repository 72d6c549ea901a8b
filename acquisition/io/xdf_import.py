"""LabRecorder (XDF) recordings → a raw session archive (``treadlab import FILE.xdf``).

The file is read with ``pyxdf`` with clock synchronisation (each stream's ClockOffset
measurements move its timestamps onto the recorder's clock) and dejittering (timestamps of
a regular stream are evened out along a line), so markers and force share one clock.

Streams taken:

- **markers**: a stream of type ``Mocap`` (as Qualisys', OptiTrack's and Vicon's LSL apps
  publish), three channels per marker labelled ``LABEL_X``, ``LABEL_Y``, ``LABEL_Z`` with a
  unit (``millimeters``/``mm``, ``centimeters``/``cm`` or ``meters``/``m``; mm when absent,
  logged), lab frame. Labels are mapped to CGM names (built-in aliases plus the lab's
  ``[marker_names]``) and the virtual SACR/LTOE/RTOE are added as ``treadlab import`` does for
  C3D;
- **force**: a stream of type ``Force`` (or ``ForcePlate``) whose channels are labelled
  ``<plate>_Fx, _Fy, _Fz, _Mx, _My, _Mz`` — the ground reaction on the body in N and N·m, lab
  frame, moments about each plate's origin (``newton_meters``; ``newton_millimeters`` is
  scaled). Plate origins and corners (mm, lab frame) come from the stream's
  ``desc/plates/plate/{name, origin, corners}``, else from the lab config's ``[[plates]]``
  with the same name.

Session time 0 s is the first sample of either stream. Streams of other types are not
imported, and the archive's ``/raw/log`` says so, one line each, as it records the clock
offsets applied to each imported stream.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyxdf

from treadlab.acquisition.archive import ForceData, MarkerData, Session, write_session
from treadlab.config import load_lab
from treadlab.config.constants import G
from treadlab.config.errors import InputError
from treadlab.config.markers import to_cgm, virtual_markers
from treadlab.kernels.forces import estimate_body_weight

log = logging.getLogger(__name__)

MOCAP_TYPES = ("mocap",)
FORCE_TYPES = ("force", "forceplate", "forceplates")
COMPONENTS = ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
LENGTH_UNITS = {"millimeters": 1.0, "millimeter": 1.0, "mm": 1.0, "centimeters": 10.0,
                "centimeter": 10.0, "cm": 10.0, "meters": 1000.0, "meter": 1000.0, "m": 1000.0}
MOMENT_UNITS = {"newton_meters": 1.0, "newton_meter": 1.0, "nm": 1.0, "n*m": 1.0, "n.m": 1.0,
                "newton_millimeters": 1e-3, "nmm": 1e-3, "n*mm": 1e-3}
FORCE_UNITS = {"newtons": 1.0, "newton": 1.0, "n": 1.0}


def _first(d, key, default=None):
    """pyxdf's XML dicts hold lists: ``d[key][0]`` or ``default``."""
    if not isinstance(d, dict):
        return default
    v = d.get(key)
    if not v:
        return default
    return v[0]


def _channels(info) -> list[dict]:
    desc = _first(info, "desc")
    chans = _first(desc, "channels") if isinstance(desc, dict) else None
    out = []
    for c in (chans or {}).get("channel", []) if isinstance(chans, dict) else []:
        out.append({"label": str(_first(c, "label", "") or ""),
                    "unit": str(_first(c, "unit", "") or "").strip().lower()})
    return out


def _describe(stream) -> str:
    info = stream["info"]
    return (f"{_first(info, 'name', '?')!r} (type {_first(info, 'type', '?')}, "
            f"{_first(info, 'channel_count', '?')} channels)")


def _pick(streams, types, what, path, name=None):
    found = [s for s in streams if str(_first(s["info"], "type", "")).lower() in types]
    if name is not None:
        found = [s for s in found if _first(s["info"], "name") == name]
    if not found:
        have = "; ".join(_describe(s) for s in streams) or "none"
        raise InputError(path, f"{what} stream", f"no stream of type "
                         f"{'/'.join(types)}{f' named {name!r}' if name else ''} (streams: "
                         f"{have})")
    if len(found) > 1:
        log.warning("%s: %d %s streams; importing %s", path, len(found), what,
                    _describe(found[0]))
    return found[0]


def _rate(stream) -> float:
    info = stream["info"]
    nominal = float(_first(info, "nominal_srate", 0) or 0)
    if nominal > 0:
        return nominal
    eff = float(info.get("effective_srate", 0) or 0)
    return eff


def _markers(path, stream, marker_names, events):
    chans = _channels(stream["info"])
    values = np.asarray(stream["time_series"], np.float64)
    where = f"Mocap stream {_first(stream['info'], 'name', '?')!r}"
    if not chans or len(chans) != values.shape[1]:
        raise InputError(path, where, f"{values.shape[1]} channels without one label each "
                         "(desc/channels/channel/label LABEL_X, LABEL_Y, LABEL_Z)")
    names, cols = [], {}
    for i, c in enumerate(chans):
        lab = c["label"]
        base, sep, ax = lab.rpartition("_")
        if not sep or ax.upper() not in "XYZ" or len(ax) != 1:
            raise InputError(path, f"{where}: channel {i}", f"label {lab!r} is not "
                             "LABEL_X/_Y/_Z")
        if base not in cols:
            names.append(base)
            cols[base] = [-1, -1, -1]
        cols[base]["XYZ".index(ax.upper())] = i
    units = {c["unit"] for c in chans}
    if units - set(LENGTH_UNITS) - {""}:
        raise InputError(path, f"{where}: unit", f"{sorted(units - set(LENGTH_UNITS))} is not "
                         "a length unit (millimeters, centimeters, meters)")
    scale = np.array([LENGTH_UNITS.get(c["unit"], 1.0) for c in chans])
    if "" in units:
        events.append(("markers", "units", f"{where}: channels without a unit read as mm"))
    values = values * scale
    k = len(names)
    pos = np.full((values.shape[0], k, 3), np.nan, np.float32)
    for j, name in enumerate(names):
        for a in range(3):
            if cols[name][a] >= 0:
                pos[:, j, a] = values[:, cols[name][a]]
    incomplete = [n for n in names if min(cols[n]) < 0]
    if incomplete:
        events.append(("markers", "labels", f"{where}: {', '.join(incomplete)} lack a "
                       "coordinate channel; that coordinate reads NaN"))
    labels = list(to_cgm(names, marker_names or None))
    pos, labels = virtual_markers(pos, labels)
    return pos, labels


def _vector(text, n, path, key) -> np.ndarray:
    try:
        v = np.array([float(x) for x in str(text).split()], np.float64)
    except ValueError:
        v = np.zeros(0)
    if v.size != n:
        raise InputError(path, key, f"needs {n} numbers (mm), got {text!r}")
    return v


def _force(path, stream, cfg_plates, events):
    chans = _channels(stream["info"])
    values = np.asarray(stream["time_series"], np.float64)
    where = f"Force stream {_first(stream['info'], 'name', '?')!r}"
    if not chans or len(chans) != values.shape[1]:
        raise InputError(path, where, f"{values.shape[1]} channels without one label each "
                         "(<plate>_Fx … <plate>_Mz)")
    plates, cols = [], {}
    for i, c in enumerate(chans):
        base, sep, comp = c["label"].rpartition("_")
        if not sep or comp not in COMPONENTS:
            raise InputError(path, f"{where}: channel {i}", f"label {c['label']!r} is not "
                             "<plate>_Fx/_Fy/_Fz/_Mx/_My/_Mz")
        if base not in cols:
            plates.append(base)
            cols[base] = [-1] * 6
        j = COMPONENTS.index(comp)
        unit = c["unit"]
        table = FORCE_UNITS if j < 3 else MOMENT_UNITS
        if unit and unit not in table:
            raise InputError(path, f"{where}: channel {c['label']}", f"unit {unit!r} is not "
                             f"one of {', '.join(table)}")
        if not unit:
            events.append(("force", "units", f"{where}: {c['label']} has no unit; read as "
                           f"{'N' if j < 3 else 'N·m'}"))
        cols[base][j] = (i, table.get(unit, 1.0))
    missing = [f"{p}_{COMPONENTS[j]}" for p in plates for j in range(6) if cols[p][j] == -1]
    if missing:
        raise InputError(path, where, f"missing channel(s) {', '.join(missing)}")
    n = values.shape[0]
    wrench = np.empty((n, len(plates), 6), np.float32)
    for k, p in enumerate(plates):
        for j, (i, s) in enumerate(cols[p]):
            wrench[:, k, j] = values[:, i] * s
    # geometry: the stream's desc, else the lab config's [[plates]]
    desc = _first(stream["info"], "desc")
    geo = {}
    pl = _first(desc, "plates") if isinstance(desc, dict) else None
    for entry in (pl or {}).get("plate", []) if isinstance(pl, dict) else []:
        name = str(_first(entry, "name", ""))
        geo[name] = (_vector(_first(entry, "origin", ""), 3, path,
                             f"{where}: desc/plates/plate {name!r}/origin"),
                     _vector(_first(entry, "corners", ""), 12, path,
                             f"{where}: desc/plates/plate {name!r}/corners").reshape(4, 3))
    by_cfg = {getattr(p, "name", None): p for p in (cfg_plates or [])}
    origin = np.zeros((len(plates), 3))
    corners = np.zeros((len(plates), 4, 3))
    for k, p in enumerate(plates):
        if p in geo:
            origin[k], corners[k] = geo[p]
        elif p in by_cfg:
            origin[k] = np.asarray(by_cfg[p].origin, float)
            corners[k] = np.asarray(by_cfg[p].corners, float).reshape(4, 3)
            events.append(("force", "plates", f"{where}: plate {p!r} geometry from the lab "
                           "config"))
        else:
            raise InputError(path, f"{where}: plate {p!r}", "origin unknown: neither "
                             "desc/plates/plate nor a [[plates]] entry of that name in --config")
    return wrench, plates, origin, corners


def read_xdf(path, *, marker_names: dict | None = None, subject_id: str | None = None,
             body_mass_kg: float | None = None, plates=None, lab_name: str | None = None,
             mocap_stream: str | None = None, force_stream: str | None = None) -> Session:
    """Read a LabRecorder XDF file into a :class:`Session` (see the module docstring).

    Parameters
    ----------
    path : the ``.xdf`` (or ``.xdfz``) file.
    marker_names : extra ``{"Lab.Name": "CGM"}`` aliases.
    subject_id : default: the file's stem.
    body_mass_kg : kg; default: estimated from the mean vertical force over whole steps.
    plates : the lab config's ``[[plates]]`` (geometry for plates the file does not describe).
    lab_name : the archive's ``lab`` attribute.
    mocap_stream, force_stream : stream names when the file has several of a type.

    Raises
    ------
    InputError naming the file and the stream/channel that cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    try:
        streams, header = pyxdf.load_xdf(str(path), synchronize_clocks=True,
                                         dejitter_timestamps=True)
    except Exception as exc:  # noqa: BLE001 - pyxdf raises bare Exception/IOError
        raise InputError(path, None, f"not a readable XDF file: {exc}") from None
    events: list[tuple[str, str, str]] = []
    mk = _pick(streams, MOCAP_TYPES, "Mocap", path, mocap_stream)
    fs = _pick(streams, FORCE_TYPES, "Force", path, force_stream)
    for s in streams:
        if s is not mk and s is not fs:
            events.append(("import", "not_imported", f"stream {_describe(s)} is not imported "
                           f"(treadlab imports one Mocap and one Force stream)"))
    for s in (mk, fs):
        if len(s["time_stamps"]) < 2:
            raise InputError(path, f"stream {_describe(s)}", "fewer than 2 samples")
        offsets = s.get("clock_values") or []
        n_off = len(offsets)
        events.append(("import", "clock", f"stream {_describe(s)}: {len(s['time_stamps'])} "
                       f"samples; {n_off} clock offsets applied"
                       + (f" (median {np.median(offsets):+.6f} s)" if n_off else
                          " (none in the file: the stream's own clock)")
                       + "; timestamps dejittered"))
    pos, labels = _markers(path, mk, marker_names, events)
    wrench, plate_names, origin, corners = _force(path, fs, plates, events)
    mt = np.asarray(mk["time_stamps"], np.float64)
    ft = np.asarray(fs["time_stamps"], np.float64)
    t0 = min(mt[0], ft[0])
    force = ForceData(time=ft - t0, wrench=wrench, rate_hz=_rate(fs), plates=plate_names,
                      origin=origin, corners=corners, device_time=ft)
    markers = MarkerData(time=mt - t0, positions=pos, labels=labels, rate_hz=_rate(mk),
                         device_time=mt)
    fz = np.nansum(wrench[:, :, 2].astype(np.float64), axis=1)
    if body_mass_kg:
        mass, how = float(body_mass_kg), "given"
    else:
        weight, info = estimate_body_weight(fz, _rate(fs))
        mass, how = weight / G, info["method"]
    attrs = {"subject_id": subject_id or path.stem, "status": "complete",
             "lab": lab_name or "XDF import (LabRecorder)", "source_file": path.name,
             "source_format": "xdf", "belt_speed_m_s": float("nan"),
             "belt_speed_source": "unknown (not in the XDF file)",
             "body_mass_kg": mass, "body_mass_source": how,
             "xdf_mocap_stream": str(_first(mk["info"], "name", "")),
             "xdf_force_stream": str(_first(fs["info"], "name", "")),
             "xdf_time0_s": float(t0)}
    session_log = [(0.0, src, kind, detail) for src, kind, detail in events]
    log.info("%s: %d markers × %d frames at %g Hz, %d plates × %d samples at %g Hz, body "
             "mass %.1f kg (%s)", path.name, len(labels), len(mt), markers.rate_hz,
             len(plate_names), len(ft), force.rate_hz, mass, how)
    return Session(attrs=attrs, force=force, markers=markers, log=session_log)


def import_xdf(xdf_path, out_path, config_path=None, subject_id: str | None = None,
               body_mass_kg: float | None = None) -> Path:
    """``treadlab import FILE.xdf``: read with :func:`read_xdf` and write the archive.

    ``config_path``: a lab TOML whose ``[marker_names]``, ``[[plates]]`` (geometry of plates
    the file does not describe) and ``[lab] name`` are used. Returns ``out_path``.
    """
    marker_names = plates = lab_name = None
    if config_path is not None:
        cfg = load_lab(config_path)
        marker_names = dict(getattr(cfg, "marker_names", None) or {}) or None
        plates = list(cfg.plates)
        lab_name = getattr(cfg.lab, "name", None)
    session = read_xdf(xdf_path, marker_names=marker_names, subject_id=subject_id,
                       body_mass_kg=body_mass_kg, plates=plates, lab_name=lab_name)
    if not session.attrs["body_mass_kg"] > 0:
        raise InputError(xdf_path, "body mass", "not measurable from the force (no whole "
                         "steps); pass --body-mass KG")
    return Path(write_session(out_path, session))
