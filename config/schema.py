"""The lab configuration, declared once: one dataclass per TOML table (attribute names = TOML
keys), with types, defaults, units and ranges on the fields (docs/design.md §10).

A lab file holds the tables ``[lab] [[plates]] [forceplate] [markers] [marker_names] [contacts]
[filters] [scoring] [export] [simulator]`` and the vendor tables ``[qualisys]`` (with
``[[qualisys.plates]]``), ``[natnet]``, ``[treadmill]``. :func:`build_lab` validates the parsed TOML with
pydantic (types, unknown and missing keys, ranges, all from the declarations below), then applies
the cross-field rules, which stay explicit functions: plates against the device channels and the
belt, marker labels, the serial link budget (docs/wire.md §2), filter cut-offs below Nyquist,
``strike_n >= off_n``. Anything wrong is one :class:`~treadlab.config.errors.ConfigError` naming
the file and ``table.key``, raised before any device is opened (docs/design.md §9). Units: mm, N,
N·m, s, Hz, V, bits per second.

The tables are plain dataclasses (``dataclasses.replace``, ``fields``, ``asdict`` work as
usual); pydantic validates them when a lab is loaded (:func:`build_lab`) and when a driver checks
the settings it was given (:func:`check_table`).
"""
from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError)

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
#: UDP's payload limit, bytes; a ``TLMK`` packet is 20 + 12 per marker (docs/wire.md §3).
UDP_MAX_PAYLOAD = 65507

#: Every table: unknown keys refused, NaN and infinities refused.
TABLE_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def _nonblank(text: str) -> str:
    if not text.strip():
        raise ValueError("empty")
    return text


def _env_name(text: str) -> str:
    if not text.isidentifier():
        raise ValueError(f"{text!r} is not an environment variable name")
    return text


def _marker_name(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a marker name (string), got {value!r}")
    return value


def _scalar(value):
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"expected a number, string or true/false, got {value!r}")
    return value


#: Field types: TOML values are taken as they are (no string-to-number coercion; an integer is a
#: valid number).
Number = Annotated[float, Strict()]
Integer = Annotated[int, Strict()]
NonBlank = Annotated[str, Strict(), AfterValidator(_nonblank)]
EnvName = Annotated[str, Strict(), AfterValidator(_env_name)]
MarkerName = Annotated[Any, AfterValidator(_marker_name)]
Scalar = Annotated[Any, AfterValidator(_scalar)]


def frame_bytes(channels: int, sample_type: str) -> int:
    """Bytes of one force frame on the wire (docs/wire.md §1).

    2 sync + 2 seq + 4 device time + ``channels`` × (2 for int16 | 4 for int32) + 2 CRC:
    34 bytes for 12 int16 channels, 58 for 12 int32 (the 56 of the project's original notes
    forgot the sync bytes, docs/wire.md §2).
    Must equal :func:`treadlab.acquisition.sources.wire.frame_size`
    (tests/acquisition/test_wire.py).
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

    __pydantic_config__ = TABLE_CONFIG

    name: NonBlank = "treadlab lab"
    belt: Literal["split", "single"] = "split"
    belt_speed_m_s: Annotated[float, Strict(), Field(ge=0, le=15)] | None = None


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

    __pydantic_config__ = TABLE_CONFIG

    name: NonBlank
    origin: list[Number]
    corners: list[list[Number]]
    channels: list[Integer] = field(default_factory=list)
    calibration: list[list[Number]] = field(default_factory=list)


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

    __pydantic_config__ = TABLE_CONFIG

    driver: Literal[FORCE_DRIVERS] = "forceplate_serial"
    port: NonBlank = "auto"
    baud: Annotated[int, Strict(), Field(gt=0)] = 2_000_000
    rate_hz: Annotated[float, Strict(), Field(gt=0, le=100_000)] = 1000.0
    channels: Annotated[int, Strict(), Field(ge=6, le=256)] = 12
    sample_type: Literal["int16", "int32"] = "int16"
    volts_per_count: Annotated[float, Strict(), Field(gt=0, lt=1)] = 10.0 / 32768
    tare_seconds: Annotated[float, Strict(), Field(ge=0, le=60)] = 1.0
    stream_name: NonBlank = "treadlab-force"

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

    __pydantic_config__ = TABLE_CONFIG

    driver: Literal[MARKER_DRIVERS] = "markers_udp"
    host: Annotated[str, Strict()] = "127.0.0.1"
    port: Annotated[int, Strict(), Field(ge=0, le=65535)] = 0
    rate_hz: Annotated[float, Strict(), Field(gt=0, le=10_000)] = 200.0
    labels: Annotated[list[NonBlank], Field(min_length=1)] = field(default_factory=list)
    stream_name: NonBlank = "treadlab-markers"


@dataclass
class ContactsConfig:
    """``[contacts]``: ground-contact detection on vertical force (docs/metrics.md §2).

    strike_n : N, a contact starts when Fz reaches this.
    off_n : N, the contact ends when Fz falls below this (and strike is back-dated to the last
        sample below it).
    min_contact_s : s, shorter contacts are rejected.
    min_peak_bw : body weights, contacts whose peak is lower are rejected.
    min_flight_s : s, shortest unloaded gap that counts as a flight phase.
    """

    __pydantic_config__ = TABLE_CONFIG

    strike_n: Number = 50.0
    off_n: Annotated[float, Strict(), Field(gt=0)] = 20.0
    min_contact_s: Annotated[float, Strict(), Field(gt=0, lt=2)] = 0.1
    min_peak_bw: Annotated[float, Strict(), Field(ge=0, lt=10)] = 1.0
    min_flight_s: Annotated[float, Strict(), Field(ge=0, lt=1)] = 0.02


@dataclass
class FiltersConfig:
    """``[filters]``: zero-lag Butterworth low-pass filters and gap filling.

    force_lowpass_hz, marker_lowpass_hz : Hz cut-off (0 = no filter); below Nyquist.
    force_order, marker_order : filter order (1–8).
    max_gap_s : s, longest marker gap that is filled; longer gaps stay NaN.
    """

    __pydantic_config__ = TABLE_CONFIG

    force_lowpass_hz: Annotated[float, Strict(), Field(ge=0)] = 50.0
    force_order: Annotated[int, Strict(), Field(ge=1, le=8)] = 4
    marker_lowpass_hz: Annotated[float, Strict(), Field(ge=0)] = 12.0
    marker_order: Annotated[int, Strict(), Field(ge=1, le=8)] = 4
    max_gap_s: Annotated[float, Strict(), Field(ge=0, le=10)] = 0.1


@dataclass
class ScoringConfig:
    """``[scoring]``: cause scores (docs/metrics.md §4).

    reference : a shipped reference-set id (``"default"``) or a TOML path (relative paths are
        relative to the lab file).
    min_steps_per_side : valid steps a side needs before a cause is scored.
    """

    __pydantic_config__ = TABLE_CONFIG

    reference: NonBlank = "default"
    min_steps_per_side: Annotated[int, Strict(), Field(ge=1)] = 20


@dataclass
class ExportConfig:
    """``[export]``: pseudonymisation for collaborators.

    secret_env : environment variable holding the pseudonym secret.
    secret : the secret itself; used instead of the environment variable when set (better
        kept out of files that are shared).
    """

    __pydantic_config__ = TABLE_CONFIG

    secret_env: EnvName = "TREADLAB_PSEUDONYM_SECRET"
    secret: Annotated[str, Strict()] | None = None


def _identity() -> list:
    return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def _zeros() -> list:
    return [0.0, 0.0, 0.0]


def _rt_version(text: str) -> str:
    try:
        major, minor = (int(x) for x in text.split("."))
    except ValueError:
        raise ValueError(f"{text!r} is not MAJOR.MINOR") from None
    if (major, minor) < (1, 8):
        raise ValueError(f"{text}: qtm-rt needs >= 1.8")
    return text


def _analog_channels(value):
    if value == "all":
        return value
    if not isinstance(value, list):
        raise ValueError(f"{value!r}: expected a list of QTM analog channel names or \"all\"")
    seen = set()
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"item {i}: {name!r} is not a QTM analog channel name")
        if name in seen:
            raise ValueError(f"duplicate channel {name!r} (item {i})")
        seen.add(name)
    return list(value)


Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=60)]
Rotation = list[list[Number]]
Point = list[Number]


@dataclass
class QualisysPlateTable:
    """One ``[[qualisys.plates]]`` entry: a QTM force plate → a treadlab plate.

    qtm_id : QTM's plate id (1-based, ``<Plate_ID>`` of QTM's force parameters).
    name : the ``[[plates]]`` name it feeds.
    rotation : 3×3, plate frame → lab frame (``F_lab = rotation @ F_plate``).
    moment_origin : [x, y, z] mm, lab frame: the point QTM's moments (and its centre of
        pressure) are about — the origin of the plate's coordinate system.
    force : ``"on_plate"`` (QTM's force is the one applied to the plate) or ``"on_body"``.
    """

    __pydantic_config__ = TABLE_CONFIG

    qtm_id: Annotated[int, Strict(), Field(ge=1)]
    name: NonBlank
    rotation: Rotation = field(default_factory=_identity)
    moment_origin: Point = field(default_factory=_zeros)
    force: Literal["on_plate", "on_body"] = "on_plate"


@dataclass
class QualisysTable:
    """``[qualisys]``: the QTM real-time server (docs/devices.md).

    host : QTM computer; ``"auto"`` = the simulated lab's emulator.
    port : RT port (22223: little-endian).
    version : RT protocol version asked for, ``MAJOR.MINOR`` >= 1.8.
    timeout_s : s for connecting and each command. reconnect_s : s between reconnections.
    lab_from_qtm : 3×3 rotation, QTM global frame → lab frame.
    qtm_origin : [x, y, z] mm, QTM's origin in the lab frame.
    plates : ``[[qualisys.plates]]`` entries, one per ``[[plates]]`` when the force plates come
        from QTM.
    analog : QTM analog channel names recorded in ``/raw/analog``, or ``"all"``; ``[]`` = none.
    """

    __pydantic_config__ = TABLE_CONFIG

    host: NonBlank = "auto"
    port: Port = 22223
    version: Annotated[str, Strict(), AfterValidator(_rt_version)] = "1.25"
    timeout_s: Seconds = 5.0
    reconnect_s: Seconds = 0.5
    lab_from_qtm: Rotation = field(default_factory=_identity)
    qtm_origin: Point = field(default_factory=_zeros)
    plates: list[QualisysPlateTable] = field(default_factory=list)
    analog: Annotated[Any, AfterValidator(_analog_channels)] = field(default_factory=list)


@dataclass
class NatNetTable:
    """``[natnet]``: OptiTrack Motive's NatNet server (docs/devices.md).

    server : the Motive PC; ``"auto"`` = the simulated lab's emulator.
    command_port : 1510. data_port : 1511 (multicast data). multicast : join
    ``multicast_address`` (239.255.42.99) instead of unicast keep-alives. local_address : this
    PC on the mocap network. marker_set : the Motive marker set recorded (empty: the only one).
    units_m : mm per Motive unit (1000: metres). lab_from_motive : 3×3 rotation, Motive frame →
    lab frame (default Y-up → Z-up). timeout_s, silence_s, reconnect_s : s.
    """

    __pydantic_config__ = TABLE_CONFIG

    server: NonBlank = "auto"
    command_port: Port = 1510
    data_port: Port = 1511
    multicast: Annotated[bool, Strict()] = False
    multicast_address: NonBlank = "239.255.42.99"
    local_address: NonBlank = "127.0.0.1"
    marker_set: Annotated[str, Strict()] = ""
    units_m: Annotated[float, Strict(), Field(gt=0, le=1e6)] = 1000.0
    lab_from_motive: Rotation = field(default_factory=lambda: [[0.0, 0.0, 1.0],
                                                               [1.0, 0.0, 0.0],
                                                               [0.0, 1.0, 0.0]])
    timeout_s: Seconds = 5.0
    silence_s: Seconds = 1.0
    reconnect_s: Seconds = 0.5


@dataclass
class TreadmillTable:
    """``[treadmill]``: the treadmill controller's remote interface (docs/devices.md).

    driver : ``"bertec"``. host : the Treadmill Control Panel PC; ``"auto"`` = the simulated
    controller. port : remote-control TCP port (4000). accel_m_s2 : m/s² sent with every speed
    command. max_speed_m_s : m/s, commands above it are refused. incline_deg : ° sent with
    speed commands. rate_hz : nominal feedback rate (Hz). reconnect_s : s between
    reconnections.
    """

    __pydantic_config__ = TABLE_CONFIG

    driver: Literal["bertec"] = "bertec"
    host: NonBlank = "auto"
    port: Port = 4000
    accel_m_s2: Annotated[float, Strict(), Field(gt=0, le=10)] = 0.5
    max_speed_m_s: Annotated[float, Strict(), Field(gt=0, le=30)] = 6.0
    incline_deg: Annotated[float, Strict(), Field(ge=-30, le=30)] = 0.0
    rate_hz: Annotated[float, Strict(), Field(gt=0, le=10_000)] = 100.0
    reconnect_s: Seconds = 0.5


#: the vendor tables: TOML name → declaration (kept as plain dicts in :class:`LabConfig`,
#: checked against these by :func:`build_lab` and by the drivers' settings classes)
VENDOR_TABLES = {"qualisys": QualisysTable, "natnet": NatNetTable,
                 "treadmill": TreadmillTable}


@dataclass
class LabConfig:
    """A whole lab: every table of the TOML file, checked.

    ``simulator`` is the synthetic-runner parameter table (names of
    ``treadlab.acquisition.sim.synthetic.RunnerParams``, checked there when the simulated lab
    starts) and ``marker_names`` the lab's own ``{"Lab.Name": "CGM"}`` aliases, both plain
    dicts. ``source_path`` is the file it was read from (``None`` for a config built in code).
    """

    __pydantic_config__ = TABLE_CONFIG

    lab: LabTable
    plates: list[PlateConfig]
    forceplate: ForcePlateConfig
    markers: MarkersConfig
    marker_names: dict[str, MarkerName] = field(default_factory=dict)
    contacts: ContactsConfig = field(default_factory=ContactsConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    simulator: dict[str, Scalar] = field(default_factory=dict)
    #: ``[qualisys]``, ``[natnet]``, ``[treadmill]``: vendor systems, kept as the tables
    #: written; checked key by key against :data:`VENDOR_TABLES` (and
    #: :func:`check_vendor_tables`) when the lab is loaded, and again by the drivers' settings
    #: classes (which extend those declarations) for a config built in code
    qualisys: dict[str, Any] | None = None
    natnet: dict[str, Any] | None = None
    treadmill: dict[str, Any] | None = None
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
          "simulator": dict, "qualisys": dict, "natnet": dict, "treadmill": dict}
REQUIRED_TABLES = ("lab", "plates", "forceplate", "markers")


# --- validation errors as one line naming the key ----------------------------------------------

_TYPE_NAMES = {"int_type": "integer", "float_type": "number", "string_type": "string",
               "bool_type": "true/false", "list_type": "list", "dict_type": "table",
               "dataclass_type": "table"}


def _key(loc) -> str:
    """``("plates", 0, "calibration", 5, 0)`` → ``"plates[0].calibration[5][0]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _owner(cls, loc):
    """The dataclass that declares the last key of ``loc`` (None for a dict entry)."""
    if cls is not LabConfig:
        return cls if len([p for p in loc if isinstance(p, str)]) <= 2 else None
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            continue
        hint = getattr(cls, "__annotations__", {}).get(part)
        nxt = TABLES.get(part) if cls is LabConfig else None
        cls = nxt if isinstance(nxt, type) and nxt is not dict else None
        if hint is None:
            cls = None
    return cls


def _bounds(cls, name) -> dict:
    """The ``gt``/``ge``/``lt``/``le`` constraints declared on field ``name`` of ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict = {}
    stack = [hints.get(name)]
    while stack:
        hint = stack.pop()
        for meta in getattr(hint, "__metadata__", ()):
            for m in getattr(meta, "metadata", ()):
                for k in ("gt", "ge", "lt", "le"):
                    if getattr(m, k, None) is not None:
                        out[k] = getattr(m, k)
        stack.extend(typing.get_args(hint))
    return out


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range_message(value, b: dict) -> str:
    lo = b.get("gt", b.get("ge"))
    hi = b.get("lt", b.get("le"))
    if lo is not None and hi is not None:
        if isinstance(value, int) and "ge" in b and "le" in b:
            return f"{value} is outside {lo}..{hi}"
        return (f"{_num(value)} is outside {'(' if 'gt' in b else '['}{_num(lo)}, {_num(hi)}"
                f"{')' if 'lt' in b else ']'}")
    if lo is not None:
        return f"{_num(value)} must be {'>' if 'gt' in b else '>='} {_num(lo)}"
    return f"{_num(value)} must be {'<' if 'lt' in b else '<='} {_num(hi)}"


def _message(err: dict, root) -> str:
    kind, loc, value = err["type"], err["loc"], err.get("input")
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        owner = root if len(loc) == 1 else _owner(root, loc)
        names = [n for n in getattr(owner, "__dataclass_fields__", {}) if n != "source_path"]
        what = "table" if owner is LabConfig else "key"
        return f"unknown {what}; known: {', '.join(names)}" if names else f"unknown {what}"
    if kind == "missing":
        return "missing (required table)" if root is LabConfig and len(loc) == 1 \
            else "missing (required)"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}, got {type(value).__name__} {value!r}"
    if kind == "finite_number":
        return f"{value!r} is not a finite number"
    if kind == "literal_error":
        known = err.get("ctx", {}).get("expected", "")
        known = known.replace("'", "").replace(" or ", ", ")
        return f"unknown value {value!r}; known: {known}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        owner = _owner(root, loc)
        return _range_message(value, _bounds(owner, loc[-1]) if owner else err.get("ctx", {}))
    if kind == "too_short":
        return "needs at least one value"
    if kind == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    return err["msg"]


def config_error(exc: ValidationError, path, root, prefix: tuple = ()) -> ConfigError:
    """The first problem of a pydantic ``ValidationError`` as one :class:`ConfigError` naming
    ``path`` and the ``table.key`` (``prefix`` is prepended to the error's location)."""
    err = exc.errors(include_url=False)[0]
    err = dict(err, loc=tuple(prefix) + tuple(err["loc"]))
    return ConfigError(path, _key(err["loc"]), _message(err, root))


_ADAPTERS: dict = {}


def _adapter(cls) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def check_table(values, cls, table: str | None, path=None):
    """Validate a table against the declaration of dataclass ``cls``.

    ``values`` is a dict (returns a new ``cls`` instance), or an instance of ``cls`` or of a
    subclass (a driver checking the settings it was given, e.g.
    :class:`treadlab.acquisition.sources.forceplate_serial.ForcePlateSettings`, or the synthetic
    runner's parameters): each declared field is validated in place, coerced values written
    back, and the instance returned. Raises :class:`ConfigError` ``"<path>: <table>.<key>:
    <why>"`` (``"<path>: <key>: <why>"`` when ``table`` is None).
    """
    prefix = () if table is None else (table,)
    if isinstance(values, dict):
        try:
            return _adapter(cls).validate_python(values)
        except ValidationError as exc:
            raise config_error(exc, path, cls, prefix) from None
    for name, adapter in _field_adapters(cls).items():
        try:
            value = adapter.validate_python(getattr(values, name))
        except ValidationError as exc:
            raise config_error(exc, path, cls, prefix + (name,)) from None
        object.__setattr__(values, name, value)  # frozen dataclasses too
    return values


def _field_adapters(cls) -> dict:
    key = ("fields", cls)
    if key not in _ADAPTERS:
        hints = typing.get_type_hints(cls, include_extras=True)
        _ADAPTERS[key] = {name: TypeAdapter(hints[name]) for name in cls.__dataclass_fields__}
    return _ADAPTERS[key]


# --- cross-field rules: explicit ---------------------------------------------------------------

def _rule(ok: bool, path, key, message):
    if not ok:
        raise ConfigError(path, key, message)


def check_link_budget(fp: ForcePlateConfig, path=None) -> None:
    """The serial line must carry ``rate_hz`` frames of ``frame_bytes`` at 10 bits per byte
    (docs/wire.md §2); a pseudo-terminal ignores baud, so only this check shows it."""
    need = fp.line_bits_per_s
    _rule(need <= fp.baud, path, "forceplate.baud",
          f"{fp.rate_hz:g} Hz × {fp.channels} {fp.sample_type} channels = {fp.frame_bytes}-byte "
          f"frames needs {need:,.0f} baud (10 bits per byte) > {fp.baud:,}: lower rate_hz, "
          f"use fewer channels or int16, or raise baud")


def _check_markers(t: MarkersConfig, path) -> None:
    if t.driver == "markers_udp":  # one datagram per frame: 20-byte header + 12 bytes/marker
        size = 20 + 12 * len(t.labels)
        _rule(size <= UDP_MAX_PAYLOAD, path, "markers.labels",
              f"{len(t.labels)} markers make {size}-byte datagrams > {UDP_MAX_PAYLOAD} "
              f"(UDP limit)")
    seen = set()
    for i, label in enumerate(t.labels):
        _rule(label not in seen, path, f"markers.labels[{i}]", f"duplicate label {label!r}")
        seen.add(label)


def check_plates(plates, channels: int, *, belt: str | None = None, path=None,
                 shared_ok: bool = False, wrench_device: bool = False) -> None:
    """The plates against each other and the device (docs/design.md §10): at least one (two on a
    split belt), unique names, origin [x, y, z], 4 corners, 6 channel indices within
    ``channels`` (and not shared between plates unless ``shared_ok``), a 6×6 calibration with no
    zero row. ``plates``: ``[[plates]]`` tables or driver plate objects (lists or arrays).
    ``wrench_device``: the force device sends each plate's wrench (``FORCE_DEVICES``): channels
    and calibration are not used and not checked."""
    _rule(len(plates) >= 1, path, "plates", "at least one [[plates]] entry is needed")
    if belt == "split":
        _rule(len(plates) == 2, path, "plates",
              f"a split-belt lab needs 2 plates (one per belt), got {len(plates)}")
    names, used = set(), {}
    for i, p in enumerate(plates):
        key = f"plates[{i}]"
        _rule(p.name not in names, path, f"{key}.name", f"duplicate plate name {p.name!r}")
        names.add(p.name)
        _rule(len(p.origin) == 3, path, f"{key}.origin",
              f"needs [x, y, z] (mm), got {len(p.origin)} values")
        _rule(len(p.corners) == 4 and all(len(c) == 3 for c in p.corners), path,
              f"{key}.corners", "needs 4 corners of [x, y, z] (mm)")
        if wrench_device:
            continue                # the device sends the wrench: no channels to calibrate
        _rule(len(p.channels) == 6, path, f"{key}.channels",
              f"needs 6 channel indices, got {len(p.channels)}")
        for j, ch in enumerate(p.channels):
            _rule(0 <= ch < channels, path, f"{key}.channels[{j}]",
                  f"channel {ch} out of range 0..{channels - 1} (forceplate.channels = "
                  f"{channels})")
            _rule(shared_ok or ch not in used, path, f"{key}.channels[{j}]",
                  f"channel {ch} is already used by plate {used.get(ch)!r}")
            used[ch] = p.name
        shape = (len(p.calibration), *{len(r) for r in p.calibration})
        _rule(shape == (6, 6), path, f"{key}.calibration",
              f"needs a 6×6 matrix (volts → N, N·m), got "
              f"{len(p.calibration)} rows of {sorted({len(r) for r in p.calibration})} values")
        for r, row in enumerate(p.calibration):
            _rule(any(v != 0 for v in row), path, f"{key}.calibration[{r}]",
                  "row of zeros: that force/moment component would always be 0")


def check_rotation(R, path, key) -> None:
    """ConfigError naming ``key`` unless ``R`` is a 3×3 rotation (orthonormal rows, 1e-6)."""
    ok = len(R) == 3 and all(len(r) == 3 for r in R)
    if ok:
        # R Rᵀ = I within 1e-6 (no numpy in the config package: plain sums)
        ok = all(abs(sum(R[i][k] * R[j][k] for k in range(3)) - (i == j)) <= 1e-6
                 for i in range(3) for j in range(3))
    _rule(ok, path, key, "needs a 3×3 rotation matrix (orthonormal rows)")


def check_qualisys(t: QualisysTable, plate_names=(), *, force_from_qtm: bool = False,
                   path=None) -> None:
    """Cross-field rules of ``[qualisys]``: rotations are 3×3 rotations, points [x, y, z],
    plate names are ``[[plates]]`` names, QTM plate ids unique, and every ``[[plates]]`` entry
    mapped when the force plates come from QTM (``force_from_qtm``)."""
    check_rotation(t.lab_from_qtm, path, "qualisys.lab_from_qtm")
    _rule(len(t.qtm_origin) == 3, path, "qualisys.qtm_origin", "needs [x, y, z] (mm)")
    ids, names = set(), set()
    for i, p in enumerate(t.plates):
        key = f"qualisys.plates[{i}]"
        check_rotation(p.rotation, path, f"{key}.rotation")
        _rule(len(p.moment_origin) == 3, path, f"{key}.moment_origin", "needs [x, y, z] (mm)")
        _rule(p.qtm_id not in ids, path, f"{key}.qtm_id", f"QTM plate {p.qtm_id} mapped twice")
        _rule(p.name not in names, path, f"{key}.name", f"{p.name!r} mapped twice")
        _rule(not plate_names or p.name in plate_names, path, f"{key}.name",
              f"{p.name!r} is not a [[plates]] name (known: {', '.join(plate_names)})")
        ids.add(p.qtm_id)
        names.add(p.name)
    if force_from_qtm:
        missing = [n for n in plate_names if n not in names]
        _rule(not missing, path, "qualisys.plates",
              f"no QTM plate mapped to {', '.join(missing)}")


def check_vendor_tables(cfg: "LabConfig", path=None) -> None:
    """The ``[qualisys]``, ``[natnet]`` and ``[treadmill]`` tables of a lab: each against its
    declaration (:data:`VENDOR_TABLES`, unknown keys refused) and its cross-field rules, and
    present when a driver needs it. ConfigError naming ``table.key``."""
    drivers = (cfg.forceplate.driver, cfg.markers.driver)
    for name, cls in VENDOR_TABLES.items():
        table = getattr(cfg, name)
        if table is None:
            _rule(name not in drivers, path, name, f"missing: the {name} driver needs a "
                                                   f"[{name}] table")
            continue
        t = check_table(dict(table), cls, name, path)
        if name == "qualisys":
            check_qualisys(t, [p.name for p in cfg.plates],
                           force_from_qtm=cfg.forceplate.driver == "qualisys", path=path)
        elif name == "natnet":
            check_rotation(t.lab_from_motive, path, "natnet.lab_from_motive")


def _check_filters(t: FiltersConfig, fp: ForcePlateConfig, mk: MarkersConfig, path) -> None:
    for name, cut, rate in (("force", t.force_lowpass_hz, fp.rate_hz),
                            ("marker", t.marker_lowpass_hz, mk.rate_hz)):
        _rule(cut < rate / 2, path, f"filters.{name}_lowpass_hz",
              f"{cut:g} Hz must be in [0, {rate / 2:g}) (0 = off; below Nyquist of "
              f"{rate:g} Hz)")


def build_lab(data: dict, path=None) -> LabConfig:
    """A checked :class:`LabConfig` from parsed TOML ``data`` (``path`` is named in errors).

    Raises
    ------
    ConfigError
        ``"<path>: <table>.<key>: <why>"`` for an unknown table or key, a missing required
        table or key, a wrong type, an impossible value, plate channels out of range, a
        calibration that is not 6×6, or a serial link that cannot carry the frames.
    """
    if "source_path" in data:
        raise ConfigError(path, "source_path", f"unknown table; known: {', '.join(TABLES)}")
    try:
        cfg = _adapter(LabConfig).validate_python(dict(data))
    except ValidationError as exc:
        raise config_error(exc, path, LabConfig) from None
    cfg.source_path = Path(path) if path is not None else None
    fp = data.get("forceplate")
    # simulation is asked for, never inferred: a force plate needs its port written out
    # (a device, or "auto" for the simulated lab)
    _rule(not isinstance(fp, dict) or "port" in fp or cfg.forceplate.driver != "forceplate_serial",
          path, "forceplate.port", 'missing: the serial device (e.g. "/dev/ttyUSB0"), or '
                                   '"auto" for the simulated lab')
    if cfg.forceplate.driver in ("forceplate_serial", "simulated"):
        check_link_budget(cfg.forceplate, path)
    _check_markers(cfg.markers, path)
    check_plates(cfg.plates, cfg.forceplate.channels, belt=cfg.lab.belt, path=path,
                 wrench_device=cfg.forceplate.driver in FORCE_DEVICES)
    _rule(cfg.contacts.strike_n >= cfg.contacts.off_n, path, "contacts.strike_n",
          f"{cfg.contacts.strike_n:g} N must be >= contacts.off_n ({cfg.contacts.off_n:g} N)")
    _check_filters(cfg.filters, cfg.forceplate, cfg.markers, path)
    check_vendor_tables(cfg, path)
    if "belt" in cfg.simulator:
        _rule(cfg.simulator["belt"] == cfg.lab.belt, path, "simulator.belt",
              f"{cfg.simulator['belt']!r} differs from lab.belt {cfg.lab.belt!r} (leave it "
              f"out: the simulated runner follows lab.belt)")
    return cfg
