"""The lab configuration: one dataclass per TOML table (attribute names = TOML keys).

A lab file holds the tables ``[lab] [[plates]] [forceplate] [markers] [marker_names] [contacts]
[filters] [scoring] [export] [simulator]`` (docs/architecture.md). :func:`build_lab` turns the
parsed TOML into a :class:`LabConfig`, checking every key, type and range; anything wrong is a
:class:`~treadlab.config.errors.ConfigError` naming the file and ``table.key``, raised before any
device is opened (DESIGN §8). Units: mm, N, N·m, s, Hz, V, bits per second.
"""
from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from treadlab.config.errors import ConfigError

FORCE_DRIVERS = ("forceplate_serial", "forceplate_lsl", "simulated", "qualisys")
MARKER_DRIVERS = ("markers_udp", "markers_lsl", "qualisys", "natnet")
#: force drivers that receive the plates' wrench (not ADC counts through [[plates]] calibration)
FORCE_DEVICES = ("qualisys",)
SAMPLE_BYTES = {"int16": 2, "int32": 4}
#: Bits on the line per byte of payload: 8 data bits + start + stop (8N1).
BITS_PER_BYTE = 10
#: Bumped when the content hashed by :meth:`LabConfig.hash` changes meaning.
HASH_SCHEMA = 1


def frame_bytes(channels: int, sample_type: str) -> int:
    """Bytes of one force frame on the wire (DESIGN §3).

    2 sync + 2 seq + 4 device time + ``channels`` × (2 for int16 | 4 for int32) + 2 CRC:
    34 bytes for 12 int16 channels, 58 for 12 int32 (NOTES.md says 56: it forgot the sync).
    Must equal :func:`treadlab.acquisition.sources.wire.frame_size` (tests/acquisition/test_wire.py).
    """
    return 2 + 2 + 4 + int(channels) * SAMPLE_BYTES[sample_type] + 2


@dataclass
class LabTable:
    """``[lab]``: who and what.

    name : lab name stored in every archive (``lab`` attribute).
    belt : ``"split"`` (one plate per belt, each belt one foot) or ``"single"`` (one belt, sides
        from the centre of pressure).
    belt_speed_m_s : fixed belt speed (m/s) stored in the archive when the treadmill does not
        report it; absent = unknown (the simulated lab takes the runner's speed).
    """

    name: str = "treadlab lab"
    belt: str = "split"
    belt_speed_m_s: float | None = None


@dataclass
class PlateConfig:
    """One ``[[plates]]`` entry.

    name : plate name (``/raw/force`` attribute ``plates``).
    origin : [x, y, z] mm, lab frame: the point the plate's moments are expressed about.
    corners : 4 × [x, y, z] mm, lab frame, the plate's top surface.
    channels : 6 indices into the device's channel list feeding this plate's calibration.
    calibration : 6 × 6, volts (of those channels) → [Fx, Fy, Fz, Mx, My, Mz] in N and N·m, lab
        frame, ground reaction on the body (rows = outputs, columns = channels).
        ``channels`` and ``calibration`` are left out for a device that sends forces, not
        volts (``[forceplate] driver = "qualisys"``).
    """

    name: str
    origin: list[float]
    corners: list[list[float]]
    channels: list[int] = field(default_factory=list)
    calibration: list[list[float]] = field(default_factory=list)


@dataclass
class ForcePlateConfig:
    """``[forceplate]``: the force-plate amplifier / ADC.

    driver : ``"forceplate_serial"``, ``"forceplate_lsl"`` or ``"simulated"``.
    port : pyserial URL or device path; ``"auto"`` = the simulated lab's pseudo-terminal.
    baud : line rate, bits per second; checked against ``rate_hz`` × frame size × 10 bits.
    rate_hz : frames per second (Hz).
    channels : ADC values per frame.
    sample_type : ``"int16"`` or ``"int32"`` ADC counts.
    volts_per_count : V per ADC count (e.g. 10 V / 32768 for a ±10 V 16-bit converter).
    tare_seconds : s of unloaded belt averaged into the zero offset at session start.
    stream_name : LSL stream name (``forceplate_lsl``).
    """

    driver: str = "forceplate_serial"
    port: str = "auto"
    baud: int = 2_000_000
    rate_hz: float = 1000.0
    channels: int = 12
    sample_type: str = "int16"
    volts_per_count: float = 10.0 / 32768
    tare_seconds: float = 1.0
    stream_name: str = "treadlab-force"

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame on the wire (:func:`frame_bytes`)."""
        return frame_bytes(self.channels, self.sample_type)

    @property
    def line_bits_per_s(self) -> float:
        """Bits per second the stream needs on a serial line (8N1)."""
        return self.rate_hz * self.frame_bytes * BITS_PER_BYTE


@dataclass
class MarkersConfig:
    """``[markers]``: the motion-capture stream.

    driver : ``"markers_udp"`` or ``"markers_lsl"``.
    host : address to bind (UDP); ``"127.0.0.1"`` for the simulator.
    port : UDP port; 0 = the simulated lab's choice.
    rate_hz : nominal frame rate (Hz).
    labels : marker names in wire order (lab names; mapped to CGM names by ``[marker_names]``
        and the built-in aliases of :mod:`treadlab.config.markers`).
    stream_name : LSL stream name (``markers_lsl``).
    """

    driver: str = "markers_udp"
    host: str = "127.0.0.1"
    port: int = 0
    rate_hz: float = 200.0
    labels: list[str] = field(default_factory=list)
    stream_name: str = "treadlab-markers"


@dataclass
class ContactsConfig:
    """``[contacts]``: ground-contact detection on vertical force (METRICS §2).

    strike_n : N, a contact starts when Fz reaches this.
    off_n : N, the contact ends when Fz falls below this (and strike is back-dated to the last
        sample below it).
    min_contact_s : s, shorter contacts are rejected.
    min_peak_bw : body weights, contacts whose peak is lower are rejected.
    min_flight_s : s, shortest unloaded gap that counts as a flight phase.
    """

    strike_n: float = 50.0
    off_n: float = 20.0
    min_contact_s: float = 0.1
    min_peak_bw: float = 1.0
    min_flight_s: float = 0.02


@dataclass
class FiltersConfig:
    """``[filters]``: zero-lag Butterworth low-pass filters and gap filling.

    force_lowpass_hz, marker_lowpass_hz : Hz cut-off (0 = no filter); below Nyquist.
    force_order, marker_order : filter order (1–8).
    max_gap_s : s, longest marker gap that is filled; longer gaps stay NaN.
    """

    force_lowpass_hz: float = 50.0
    force_order: int = 4
    marker_lowpass_hz: float = 12.0
    marker_order: int = 4
    max_gap_s: float = 0.1


@dataclass
class ScoringConfig:
    """``[scoring]``: cause scores (METRICS §4).

    reference : a shipped reference-set id (``"default"``) or a TOML path (relative paths are
        relative to the lab file).
    min_steps_per_side : valid steps a side needs before a cause is scored.
    """

    reference: str = "default"
    min_steps_per_side: int = 20


@dataclass
class ExportConfig:
    """``[export]``: pseudonymisation for collaborators.

    secret_env : environment variable holding the pseudonym secret.
    secret : the secret itself; used instead of the environment variable when set (better
        kept out of files that are shared).
    """

    secret_env: str = "TREADLAB_PSEUDONYM_SECRET"
    secret: str | None = None


@dataclass
class LabConfig:
    """A whole lab: every table of the TOML file, checked.

    ``simulator`` is the synthetic-runner parameter table (names of
    ``treadlab.acquisition.sim.synthetic.RunnerParams``, checked there when the simulated lab
    starts) and ``marker_names`` the lab's own ``{"Lab.Name": "CGM"}`` aliases, both plain
    dicts. ``source_path`` is the file it was read from (``None`` for a config built in code).
    """

    lab: LabTable
    plates: list[PlateConfig]
    forceplate: ForcePlateConfig
    markers: MarkersConfig
    marker_names: dict[str, str] = field(default_factory=dict)
    contacts: ContactsConfig = field(default_factory=ContactsConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    simulator: dict = field(default_factory=dict)
    #: ``[qualisys]``: QTM host and plate mapping, checked by
    #: ``treadlab.acquisition.sources.qualisys.QualisysSettings`` (README, Supported devices)
    qualisys: dict | None = None
    #: ``[natnet]``: OptiTrack Motive server and frame mapping, checked by
    #: ``treadlab.acquisition.sources.natnet.NatNetSettings``
    natnet: dict | None = None
    #: ``[treadmill]``: the belt-speed controller, checked by
    #: ``treadlab.acquisition.sources.treadmill_bertec.TreadmillSettings``
    treadmill: dict | None = None
    source_path: Path | None = None

    @property
    def path(self) -> Path | None:
        """Alias of ``source_path`` (named in errors by other modules)."""
        return self.source_path

    def hashed_content(self) -> dict:
        """What :meth:`hash` digests: everything that changes derived data.

        The belt layout, the plates (geometry, channels, calibration), the ADC scaling
        (``volts_per_count``, ``sample_type``: counts can be re-applied by reprocessing), the
        marker-name mapping, and the ``[contacts]``, ``[filters]`` and ``[scoring]`` tables.
        Not hashed: names, ports, rates, host addresses, export and simulator settings, which
        do not change what the pipeline computes from an archive.
        """
        return {
            "hash_schema": HASH_SCHEMA,
            "belt": self.lab.belt,
            "plates": [asdict(p) for p in self.plates],
            "volts_per_count": self.forceplate.volts_per_count,
            "sample_type": self.forceplate.sample_type,
            "marker_names": dict(sorted(self.marker_names.items())),
            "contacts": asdict(self.contacts),
            "filters": asdict(self.filters),
            "scoring": asdict(self.scoring),
        }

    def hash(self) -> str:
        """Stable hex digest (SHA-256, 64 characters) of :meth:`hashed_content`.

        Independent of key order, comments, formatting and the file's location; the same on
        every machine and Python version (canonical JSON of floats, ints and strings).
        """
        text = json.dumps(self.hashed_content(), sort_keys=True, separators=(",", ":"),
                          allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


TABLES = {"lab": LabTable, "plates": PlateConfig, "forceplate": ForcePlateConfig,
          "markers": MarkersConfig, "marker_names": dict, "contacts": ContactsConfig,
          "filters": FiltersConfig, "scoring": ScoringConfig, "export": ExportConfig,
          "simulator": dict, "qualisys": dict, "natnet": dict,
          "treadmill": dict}
REQUIRED_TABLES = ("lab", "plates", "forceplate", "markers")


# --- building and checking ---------------------------------------------------------------------

def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint) if a is not type(None))
    return {float: "number", int: "integer", str: "string", bool: "true/false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _coerce(value, hint, path, key):
    """Check ``value`` (parsed TOML) against the annotation ``hint``; return it typed."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, args[0], path, key)
    bad = ConfigError(path, key, f"expected {_type_name(hint)}, got {type(value).__name__} "
                                 f"{value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise bad
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(path, key, f"{value!r} is not a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported annotation {hint!r} for {key}")  # a schema bug, not input


def _build(cls, raw, path, table: str):
    """Dataclass ``cls`` from the TOML table ``raw``; unknown/missing keys and types checked."""
    if not isinstance(raw, dict):
        raise ConfigError(path, table, f"expected a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init and f.name != "source_path"]
    for key in raw:
        if key not in names:
            raise ConfigError(path, f"{table}.{key}",
                              f"unknown key; known: {', '.join(names)}")
    kwargs = {}
    for f in fields(cls):
        if f.name in raw:
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], path, f"{table}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(path, f"{table}.{f.name}", "missing (required)")
    return cls(**kwargs)


def _range(ok: bool, path, key, message):
    if not ok:
        raise ConfigError(path, key, message)


def _check_lab(t: LabTable, path) -> None:
    _range(t.belt in ("split", "single"), path, "lab.belt",
           f"{t.belt!r}: expected \"split\" or \"single\"")
    _range(bool(t.name.strip()), path, "lab.name", "empty")
    if t.belt_speed_m_s is not None:
        _range(0 <= t.belt_speed_m_s <= 15, path, "lab.belt_speed_m_s",
               f"{t.belt_speed_m_s} m/s is outside 0..15")


def _check_forceplate(t: ForcePlateConfig, path) -> None:
    _range(t.driver in FORCE_DRIVERS, path, "forceplate.driver",
           f"unknown driver {t.driver!r}; known: {', '.join(FORCE_DRIVERS)}")
    _range(t.sample_type in SAMPLE_BYTES, path, "forceplate.sample_type",
           f"{t.sample_type!r}: expected \"int16\" or \"int32\"")
    _range(0 < t.rate_hz <= 100_000, path, "forceplate.rate_hz",
           f"{t.rate_hz:g} Hz is outside (0, 100000]")
    _range(6 <= t.channels <= 256, path, "forceplate.channels",
           f"{t.channels} is outside 6..256")
    _range(t.baud > 0, path, "forceplate.baud", f"{t.baud} must be > 0")
    _range(0 < t.volts_per_count < 1, path, "forceplate.volts_per_count",
           f"{t.volts_per_count!r} V/count is outside (0, 1)")
    _range(0 <= t.tare_seconds <= 60, path, "forceplate.tare_seconds",
           f"{t.tare_seconds:g} s is outside 0..60")
    _range(bool(t.port.strip()), path, "forceplate.port", "empty")
    if t.driver in ("forceplate_serial", "simulated"):
        need = t.line_bits_per_s
        _range(need <= t.baud, path, "forceplate.baud",
               f"{t.rate_hz:g} Hz × {t.channels} {t.sample_type} channels = {t.frame_bytes}-byte "
               f"frames needs {need:,.0f} baud (10 bits per byte) > {t.baud:,}: lower rate_hz, "
               f"use fewer channels or int16, or raise baud")


def _check_markers(t: MarkersConfig, path) -> None:
    _range(t.driver in MARKER_DRIVERS, path, "markers.driver",
           f"unknown driver {t.driver!r}; known: {', '.join(MARKER_DRIVERS)}")
    _range(0 < t.rate_hz <= 10_000, path, "markers.rate_hz",
           f"{t.rate_hz:g} Hz is outside (0, 10000]")
    _range(0 <= t.port <= 65535, path, "markers.port", f"{t.port} is outside 0..65535")
    _range(1 <= len(t.labels) <= 65535, path, "markers.labels",
           "needs at least one marker label (in wire order)")
    if t.driver == "markers_udp":  # one datagram per frame: 20-byte header + 12 bytes/marker
        size = 20 + 12 * len(t.labels)
        _range(size <= 65507, path, "markers.labels",
               f"{len(t.labels)} markers make {size}-byte datagrams > 65507 (UDP limit)")
    seen = set()
    for i, label in enumerate(t.labels):
        _range(bool(label.strip()), path, f"markers.labels[{i}]", "empty label")
        _range(label not in seen, path, f"markers.labels[{i}]", f"duplicate label {label!r}")
        seen.add(label)


def _check_plates(plates: list[PlateConfig], fp: ForcePlateConfig, lab: LabTable, path):
    _range(len(plates) >= 1, path, "plates", "at least one [[plates]] entry is needed")
    if lab.belt == "split":
        _range(len(plates) == 2, path, "plates",
               f"a split-belt lab needs 2 plates (one per belt), got {len(plates)}")
    names, used = set(), {}
    for i, p in enumerate(plates):
        key = f"plates[{i}]"
        _range(bool(p.name.strip()), path, f"{key}.name", "empty")
        _range(p.name not in names, path, f"{key}.name", f"duplicate plate name {p.name!r}")
        names.add(p.name)
        _range(len(p.origin) == 3, path, f"{key}.origin",
               f"needs [x, y, z] (mm), got {len(p.origin)} values")
        _range(len(p.corners) == 4 and all(len(c) == 3 for c in p.corners), path,
               f"{key}.corners", "needs 4 corners of [x, y, z] (mm)")
        if fp.driver in FORCE_DEVICES:
            continue                # the device sends the wrench: no channels to calibrate
        _range(len(p.channels) == 6, path, f"{key}.channels",
               f"needs 6 channel indices, got {len(p.channels)}")
        for j, ch in enumerate(p.channels):
            _range(0 <= ch < fp.channels, path, f"{key}.channels[{j}]",
                   f"channel {ch} out of range 0..{fp.channels - 1} (forceplate.channels = "
                   f"{fp.channels})")
            _range(ch not in used, path, f"{key}.channels[{j}]",
                   f"channel {ch} is already used by plate {used.get(ch)!r}")
            used[ch] = p.name
        shape = (len(p.calibration), *{len(r) for r in p.calibration})
        _range(shape == (6, 6), path, f"{key}.calibration",
               f"needs a 6×6 matrix (volts → N, N·m), got "
               f"{len(p.calibration)} rows of {sorted({len(r) for r in p.calibration})} values")
        for r, row in enumerate(p.calibration):
            _range(any(v != 0 for v in row), path, f"{key}.calibration[{r}]",
                   "row of zeros: that force/moment component would always be 0")


def _check_contacts(t: ContactsConfig, path) -> None:
    _range(t.off_n > 0, path, "contacts.off_n", f"{t.off_n:g} N must be > 0")
    _range(t.strike_n >= t.off_n, path, "contacts.strike_n",
           f"{t.strike_n:g} N must be >= contacts.off_n ({t.off_n:g} N)")
    _range(0 < t.min_contact_s < 2, path, "contacts.min_contact_s",
           f"{t.min_contact_s:g} s is outside (0, 2)")
    _range(0 <= t.min_peak_bw < 10, path, "contacts.min_peak_bw",
           f"{t.min_peak_bw:g} BW is outside [0, 10)")
    _range(0 <= t.min_flight_s < 1, path, "contacts.min_flight_s",
           f"{t.min_flight_s:g} s is outside [0, 1)")


def _check_filters(t: FiltersConfig, fp: ForcePlateConfig, mk: MarkersConfig, path) -> None:
    for name, cut, rate in (("force", t.force_lowpass_hz, fp.rate_hz),
                            ("marker", t.marker_lowpass_hz, mk.rate_hz)):
        _range(0 <= cut < rate / 2, path, f"filters.{name}_lowpass_hz",
               f"{cut:g} Hz must be in [0, {rate / 2:g}) (0 = off; below Nyquist of "
               f"{rate:g} Hz)")
    for name in ("force_order", "marker_order"):
        order = getattr(t, name)
        _range(1 <= order <= 8, path, f"filters.{name}", f"{order} is outside 1..8")
    _range(0 <= t.max_gap_s <= 10, path, "filters.max_gap_s",
           f"{t.max_gap_s:g} s is outside 0..10")


def _check_scoring(t: ScoringConfig, path) -> None:
    _range(bool(t.reference.strip()), path, "scoring.reference", "empty")
    _range(1 <= t.min_steps_per_side <= 100_000, path, "scoring.min_steps_per_side",
           f"{t.min_steps_per_side} must be >= 1")


def _check_export(t: ExportConfig, path) -> None:
    _range(t.secret_env.isidentifier(), path, "export.secret_env",
           f"{t.secret_env!r} is not an environment variable name")


def _string_table(raw, path, table: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigError(path, table, f"expected a table, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(path, f"{table}.{key}",
                              f"expected a marker name (string), got {value!r}")
    return dict(raw)


def _scalar_table(raw, path, table: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(path, table, f"expected a table, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(path, f"{table}.{key}",
                              f"expected a number, string or true/false, got {value!r}")
    return dict(raw)


def build_lab(data: dict, path=None) -> LabConfig:
    """A checked :class:`LabConfig` from parsed TOML ``data`` (``path`` is named in errors).

    Raises
    ------
    ConfigError
        ``"<path>: <table>.<key>: <why>"`` for an unknown table or key, a missing required
        table or key, a wrong type, an impossible value, plate channels out of range, a
        calibration that is not 6×6, or a serial link that cannot carry the frames.
    """
    for table in data:
        if table not in TABLES:
            raise ConfigError(path, table, f"unknown table; known: {', '.join(TABLES)}")
    for table in REQUIRED_TABLES:
        if table not in data:
            raise ConfigError(path, table, "missing (required table)")
    lab = _build(LabTable, data["lab"], path, "lab")
    _check_lab(lab, path)
    forceplate = _build(ForcePlateConfig, data["forceplate"], path, "forceplate")
    _check_forceplate(forceplate, path)
    markers = _build(MarkersConfig, data["markers"], path, "markers")
    _check_markers(markers, path)
    raw_plates = data["plates"]
    if not isinstance(raw_plates, list):
        raise ConfigError(path, "plates", "expected [[plates]] entries (an array of tables)")
    plates = [_build(PlateConfig, p, path, f"plates[{i}]") for i, p in enumerate(raw_plates)]
    _check_plates(plates, forceplate, lab, path)
    contacts = _build(ContactsConfig, data.get("contacts", {}), path, "contacts")
    _check_contacts(contacts, path)
    filters = _build(FiltersConfig, data.get("filters", {}), path, "filters")
    _check_filters(filters, forceplate, markers, path)
    scoring = _build(ScoringConfig, data.get("scoring", {}), path, "scoring")
    _check_scoring(scoring, path)
    export = _build(ExportConfig, data.get("export", {}), path, "export")
    _check_export(export, path)
    simulator = _scalar_table(data.get("simulator", {}), path, "simulator")
    qualisys = data.get("qualisys")
    if qualisys is not None and not isinstance(qualisys, dict):
        raise ConfigError(path, "qualisys", f"expected a table, got {type(qualisys).__name__}")
    natnet = data.get("natnet")
    if natnet is not None and not isinstance(natnet, dict):
        raise ConfigError(path, "natnet", f"expected a table, got {type(natnet).__name__}")
    treadmill = data.get("treadmill")
    if treadmill is not None and not isinstance(treadmill, dict):
        raise ConfigError(path, "treadmill", f"expected a table, got "
                                             f"{type(treadmill).__name__}")
    if "belt" in simulator:
        _range(simulator["belt"] == lab.belt, path, "simulator.belt",
               f"{simulator['belt']!r} differs from lab.belt {lab.belt!r} (leave it out: the "
               f"simulated runner follows lab.belt)")
    cfg = LabConfig(
        lab=lab, plates=plates, forceplate=forceplate, markers=markers,
        marker_names=_string_table(data.get("marker_names", {}), path, "marker_names"),
        contacts=contacts, filters=filters, scoring=scoring, export=export,
        simulator=simulator, qualisys=qualisys, natnet=natnet,
        treadmill=treadmill,
        source_path=Path(path) if path is not None else None)
    if "qualisys" in (forceplate.driver, markers.driver):
        from treadlab.acquisition.sources.qualisys import QualisysSettings

        QualisysSettings.from_config(cfg)      # ConfigError naming qualisys.<key>
    if markers.driver == "natnet":
        from treadlab.acquisition.sources.natnet import NatNetSettings

        NatNetSettings.from_config(cfg)        # ConfigError naming natnet.<key>
    if treadmill is not None:
        from treadlab.acquisition.sources.treadmill_bertec import TreadmillSettings

        TreadmillSettings.from_config(cfg)     # ConfigError naming treadmill.<key>
    return cfg
