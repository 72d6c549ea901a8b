"""Qualisys Track Manager (QTM): markers and force plates from one real-time connection.

The connection is Qualisys' own Python client, ``qtm-rt`` (asyncio), speaking QTM's RT
protocol (TCP port 22223, little-endian, protocol version ≥ 1.8; ``version`` in the table).
One :class:`QTMClient` per QTM host runs the client's event loop in its own thread, reads the
``general``, ``3d`` and ``force`` parameters once connected (marker labels, camera and plate
rates, analog devices) and streams ``allframes`` with the ``3d``, ``force`` and (when
``[qualisys] analog`` names channels) ``analog`` components. Up to three
:class:`~treadlab.acquisition.sources.base.Source` views share it: :class:`QualisysMarkers`
(``[markers] driver = "qualisys"``), :class:`QualisysForce` (``[forceplate] driver =
"qualisys"``) and :class:`QualisysAnalog` (``force.extra``: analog channels in QTM's units,
``/raw/analog``); :func:`qualisys_sources` builds them on one connection. The analog
component is parsed by qtm-rt itself (``packet.get_analog()``).

Frames and units, mapped at this boundary (the originals' metadata is kept as events):

- markers: QTM's 3D labelled trajectories in mm, in QTM's global frame; ``lab_from_qtm``
  (3×3 rotation) and ``qtm_origin`` (mm, where QTM's origin is in the lab frame) map them to
  the treadlab lab frame (X forward, Y left, Z up, mm). Configured ``[markers].labels`` are
  matched to QTM's label names (directly or through the CGM aliases); a configured label QTM
  lacks reads NaN, a QTM label not configured is not recorded — both are logged once at open;
- force: per force sample and plate QTM sends force (N), moment (N·m) and centre of pressure
  (mm) in the plate's own frame. Each ``[[qualisys.plates]]`` entry maps one QTM plate
  (``qtm_id``) to a treadlab plate (``name``): ``rotation`` (plate frame → lab frame),
  ``moment_origin`` (mm, lab frame: the point QTM's moments are about) and ``force``
  (``"on_plate"``: QTM reports the force the subject applies to the plate, negated here;
  ``"on_body"``: already the ground reaction). The archive's convention results: ground
  reaction on the body, Fz > 0 in stance, moments about each ``[[plates]].origin`` in N·m.
  The wrench is computed from force and moment; the centre of pressure QTM sends (plate
  frame, ``Force/Unit_Length``) is mapped to the lab frame in mm and kept as
  ``/raw/force/cop_device`` for provenance (the pipeline derives its own from the wrench).

Clocks and losses: the device clock of markers is QTM's frame timestamp (µs), of force
``force number / force rate`` (QTM's per-measurement force sample counter); frame numbers
and force numbers are the ``seq``. A gap in either is counted as ``drops`` (QTM skipped real-time
frames, or the connection was away). A counter that goes back (a new QTM measurement) is a
``resync``: ``seq`` and the device clock continue from where they were. A lost connection is
a ``disconnect`` event; the client reconnects every ``reconnect_s`` s (``reconnects``
counter) and the frames missed meanwhile are counted from the gaps. Force samples arrive in
chunks that do not line up with camera frames; each chunk is one block.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, fields

import numpy as np
import qtm_rt
from qtm_rt.packet import QRTComponentType

from treadlab.acquisition.sources.base import Block, Source, StreamInfo, match_labels
from treadlab.acquisition.sources.markers_udp import MarkerSettings, setup_marker_source
from treadlab.config.errors import ConfigError, DeviceError
from treadlab.config.schema import (QualisysPlateTable, QualisysTable, check_qualisys,
                                    check_table)

log = logging.getLogger(__name__)

_U32, _I32 = struct.Struct("<I"), struct.Struct("<i")
_PLATE = struct.Struct("<iii")           # plate id, force count, force number
_3D_HEADER = 8                           # marker count (uint32), drop rate, out-of-sync (int16)
#: N: below this |Fz| (lab frame) QTM's centre of pressure is not defined and stored as NaN
COP_MIN_FZ_N = 10.0
#: mm per unit of QTM's ``Force/Unit_Length``
_LENGTH_MM = {"mm": 1.0, "m": 1000.0, "cm": 10.0}


@dataclass
class QualisysPlate(QualisysPlateTable):
    """One ``[[qualisys.plates]]`` entry as the driver takes it: the fields, units and
    defaults of :class:`treadlab.config.schema.QualisysPlateTable` (qtm_id, name, rotation
    plate → lab, moment_origin mm, force ``"on_plate"``/``"on_body"``)."""


@dataclass
class QualisysSettings(QualisysTable):
    """The ``[qualisys]`` table as the driver takes it.

    The fields, their units and defaults are the config schema's
    (:class:`treadlab.config.schema.QualisysTable`: host, port, version, timeout_s,
    reconnect_s, lab_from_qtm, qtm_origin, plates, analog); this adds building from the lab
    config and the checks a driver needs when it is constructed without the config loader
    (tests, scripts, a config built in code). ``analog``: see :class:`QualisysAnalog`.
    """

    def __post_init__(self):
        # the schema's declaration is the one check (ConfigError naming qualisys.<key>)
        check_table(self, QualisysTable, "qualisys")
        self.plates = [p if isinstance(p, QualisysPlate) else QualisysPlate(**vars(p))
                       for p in self.plates]

    @classmethod
    def from_config(cls, cfg) -> "QualisysSettings":
        """From ``cfg.qualisys`` (a dict or table); ConfigError naming ``qualisys.key``."""
        path = getattr(cfg, "path", None)
        table = getattr(cfg, "qualisys", None)
        if table is None:
            raise ConfigError(path, "qualisys", "missing: the qualisys driver needs a "
                              "[qualisys] table (host, plates)")
        table = dict(table) if isinstance(table, dict) else dict(vars(table))
        checked = check_table(table, QualisysTable, "qualisys", path)
        s = cls(**{f.name: getattr(checked, f.name) for f in fields(QualisysTable)})
        names = [p.name if hasattr(p, "name") else p["name"] for p in cfg.plates]
        check_qualisys(s, names, path=path,
                       force_from_qtm=getattr(cfg.forceplate, "driver", "") == "qualisys")
        return s


# --- the connection --------------------------------------------------------------------------

def _text(node, *names, default=None):
    for n in names:
        x = node.find(n)
        if x is not None and x.text is not None:
            return x.text.strip()
    return default


def parse_parameters(xml: str) -> dict:
    """QTM's ``getparameters general 3d force [analog]`` answer → ``{"marker_rate_hz",
    "labels", "plates": {qtm_id: {"name", "rate_hz", "length_unit"}}, "analog": [{"id",
    "name", "rate_hz", "labels", "units"}]}`` (analog devices in QTM's order; a channel's unit
    is its ``Channel/Unit``, else the device's ``Unit``, else ``"V"``)."""
    root = ET.fromstring(xml)
    out = {"marker_rate_hz": None, "labels": [], "plates": {}, "analog": []}
    gen = root.find("General")
    if gen is not None:
        f = _text(gen, "Frequency")
        out["marker_rate_hz"] = float(f) if f else None
    t3d = root.find("The_3D")
    if t3d is not None:
        out["labels"] = [_text(lab, "Name", default="") for lab in t3d.findall("Label")]
    force = root.find("Force")
    if force is not None:
        for p in force.findall("Plate"):
            pid = _text(p, "Plate_ID", "Force_Plate_Index")
            if pid is None:
                continue
            rate = _text(p, "Frequency")
            out["plates"][int(pid)] = {"name": _text(p, "Name", default=""),
                                       "rate_hz": float(rate) if rate else None,
                                       "length_unit": _text(force, "Unit_Length",
                                                            default="mm")}
    analog = root.find("Analog")
    if analog is not None:
        # protocol >= 1.11: Device/Channel/{Label, Unit}; older: Device/Label elements and
        # one Unit for all (Analog/Unit) — the two layouts Qualisys' C++ SDK reads
        old_unit = _text(analog, "Unit", default="V")
        for d in analog.findall("Device"):
            did = _text(d, "Device_ID")
            if did is None:
                continue
            rate = _text(d, "Frequency")
            unit = _text(d, "Unit", default=old_unit)
            chans = d.findall("Channel")
            if chans:
                labels = [_text(c, "Label", default="") for c in chans]
                units = [_text(c, "Unit", default=unit) for c in chans]
            else:
                labels = [(x.text or "").strip() for x in d.findall("Label")]
                units = [unit] * len(labels)
            out["analog"].append({"id": int(did), "name": _text(d, "Device_Name", default=""),
                                  "rate_hz": float(rate) if rate else None,
                                  "labels": labels, "units": units})
    return out


class QTMClient:
    """One ``qtm-rt`` connection to a QTM host, in its own thread, shared by two sources.

    Parameters
    ----------
    settings : :class:`QualisysSettings`.
    """

    def __init__(self, settings: QualisysSettings):
        self.settings = settings
        self.where = f"qtm://{settings.host}:{settings.port}"
        self.params: dict | None = None
        self._users: dict[str, Source] = {}
        self._queues: dict[str, deque] = {"markers": deque(), "force": deque(),
                                          "analog": deque()}
        #: the RT components streamed: analog only when ``[qualisys].analog`` names channels
        self.components = ["3d", "force"] + (["analog"] if settings.analog else [])
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: str | None = None
        self._lost: asyncio.Event | None = None
        self._conn = None
        self._connections = 0

    # --- users -----------------------------------------------------------------------------

    def attach(self, src: Source) -> None:
        """Start (first user) and wait for the connection and parameters; DeviceError names
        the host when QTM does not answer within ``timeout_s``."""
        with self._cond:
            self._users[src.kind] = src
            self._queues[src.kind].clear()
            start = self._thread is None
            if start:
                self._stop.clear()
                self._ready.clear()
                self._error = None
                self._thread = threading.Thread(target=self._main, daemon=True,
                                                name=f"treadlab-qtm-{self.settings.host}")
                self._thread.start()
        if not self._ready.wait(2 * float(self.settings.timeout_s) + 1.0) or self._error:
            why = self._error or f"no answer within {self.settings.timeout_s:g} s"
            self.detach(src)
            raise DeviceError(f"{self.where}: {why}")

    def detach(self, src: Source) -> None:
        """Forget a user; the last one stops the connection."""
        with self._cond:
            if self._users.get(src.kind) is src:
                del self._users[src.kind]
            last = not self._users
            thread = self._thread
            if last:
                self._thread = None
        if last and thread is not None:
            self._stop.set()
            loop = self._loop
            if loop is not None and self._lost is not None:
                loop.call_soon_threadsafe(self._lost.set)
            thread.join(timeout=5.0)

    def take(self, kind: str, timeout: float) -> list:
        """Items queued for ``kind`` since the last call, waiting up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            q = self._queues[kind]
            while not q and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            out = list(q)
            q.clear()
        return out

    def _event(self, kind: str, detail: str, counter: str | None = None,
               level=logging.WARNING, only: str | None = None) -> None:
        with self._cond:
            users = [u for k, u in self._users.items() if only is None or k == only]
        for u in users:
            u._event(kind, detail, counter=counter, level=level)

    # --- the event loop thread ---------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._session())
        except Exception as exc:  # noqa: BLE001 - reported to the sources, never lost
            self._error = f"{type(exc).__name__}: {exc}"
            self._event("error", f"{self.where}: {self._error}")
            self._ready.set()
        finally:
            loop.close()
            self._loop = None

    async def _connect(self):
        s = self.settings
        try:
            conn = await asyncio.wait_for(
                qtm_rt.connect(s.host, port=int(s.port), version=str(s.version),
                               on_disconnect=self._on_disconnect, timeout=float(s.timeout_s)),
                timeout=float(s.timeout_s))
        except (asyncio.TimeoutError, OSError):
            return None
        return conn

    def _on_disconnect(self, exc) -> None:
        if self._lost is not None:
            self._lost.set()

    async def _session(self) -> None:
        first = True
        while not self._stop.is_set():
            self._lost = asyncio.Event()
            conn = await self._connect()
            if conn is None:
                if first:
                    self._error = (f"cannot connect (is QTM running with the real-time "
                                   f"server on port {self.settings.port}?)")
                    self._ready.set()
                    return
                await asyncio.sleep(float(self.settings.reconnect_s))
                continue
            try:
                xml = await conn.get_parameters(parameters=["general"] + self.components)
                params = parse_parameters(xml.decode("utf-8", "replace")
                                          if isinstance(xml, bytes) else xml)
                if first:
                    self.params = params
                await conn.stream_frames(frames="allframes", components=self.components,
                                         on_packet=self._on_packet)
            except Exception as exc:  # noqa: BLE001 - a refused command: report and retry
                if first:
                    self._error = f"{type(exc).__name__}: {exc}"
                    self._ready.set()
                    if conn.has_transport():
                        conn.disconnect()
                    return
                self._event("error", f"{self.where}: {type(exc).__name__}: {exc}")
                if conn.has_transport():
                    conn.disconnect()
                await asyncio.sleep(float(self.settings.reconnect_s))
                continue
            self._connections += 1
            if not first:
                self._event("reconnect", f"{self.where}: connected again; streaming",
                            counter="reconnects", level=logging.INFO)
            first = False
            self._ready.set()
            await self._lost.wait()
            if self._stop.is_set():
                if conn.has_transport():
                    try:
                        await asyncio.wait_for(conn.stream_frames_stop(), 1.0)
                    except Exception:  # noqa: BLE001 - closing a lost stream
                        pass
                    conn.disconnect()
                break
            self._event("disconnect", f"{self.where}: connection lost; reconnecting every "
                        f"{self.settings.reconnect_s:g} s")
            await asyncio.sleep(float(self.settings.reconnect_s))

    def _on_packet(self, packet) -> None:
        host = time.monotonic()
        frame = int(packet.framenumber)
        ts = int(packet.timestamp)
        items = []
        try:
            # qtm-rt frames the packet and indexes its components; the float arrays inside
            # are read as arrays (the layouts of RT3DComponent/RT3DMarkerPosition and
            # RTForceComponent/RTForcePlate/RTForce) instead of one tuple per value
            data = packet.data
            pos3d = packet.components.get(QRTComponentType.Component3d)
            if pos3d is not None:
                (count,) = _U32.unpack_from(data, pos3d)
                xyz = np.frombuffer(data, "<f4", 3 * count, pos3d + _3D_HEADER).reshape(count, 3)
                items.append(("markers", (host, frame, ts, xyz.astype(np.float64))))
            posf = packet.components.get(QRTComponentType.ComponentForce)
            if posf is not None:
                (n_plates,) = _I32.unpack_from(data, posf)
                p = posf + 4
                chunk = {}
                for _ in range(n_plates):
                    pid, n, number = _PLATE.unpack_from(data, p)
                    p += _PLATE.size
                    chunk[int(pid)] = (int(number), np.frombuffer(data, "<f4", 9 * n, p)
                                       .reshape(n, 9).astype(np.float64))
                    p += 36 * n
                items.append(("force", (host, frame, chunk)))
            if "analog" in self._users:
                got = packet.get_analog()        # qtm-rt's own parser of the analog component
                if got is not None:
                    items.append(("analog", (host, frame, analog_chunk(got[1]))))
        except Exception as exc:  # noqa: BLE001 - a malformed packet is counted, not fatal
            self._event("bad_packet", f"{self.where}: frame {frame}: {type(exc).__name__}: "
                        f"{exc}", counter="bad_packets")
            return
        with self._cond:
            for kind, item in items:
                if kind in self._users:
                    self._queues[kind].append(item)
            self._cond.notify_all()


def analog_chunk(channels) -> dict:
    """qtm-rt's ``packet.get_analog()`` list — one ``(RTAnalogDevice, RTSampleNumber,
    RTAnalogChannel)`` per channel of every device that sent samples — → ``{device id:
    (sample number of the first sample, (n, channels) float64 in the device's units)}``."""
    per: dict = {}
    for device, number, channel in channels:
        per.setdefault(int(device.id), (int(number.sample_number), []))[1].append(
            channel.samples)
    return {did: (number, np.asarray(rows, np.float64).T) for did, (number, rows)
            in per.items()}


class _Unwrap:
    """QTM counters (32-bit) → int64 ``seq`` equal to the counter, continuing across resets.

    A forward gap is counted as ``drops``; a run seen again (within 1000) as ``duplicates``
    and dropped; a counter going further back (a new QTM measurement) as a ``resync``, after
    which ``seq`` continues from the last one.
    """

    def __init__(self, src: Source, what: str):
        self.src = src
        self.what = what
        self.last_u: int | None = None     # unwrapped counter of the last sample
        self.offset = 0                    # seq − unwrapped counter (changes at a reset)
        self.resynced = False

    def seq(self, raw: int, n: int = 1) -> int | None:
        """The seq of a run of ``n`` samples whose counter starts at ``raw`` (None: seen)."""
        raw = int(raw) & 0xFFFFFFFF
        self.resynced = False
        if self.last_u is None:
            self.last_u = raw - 1
        d = ((raw - (self.last_u + 1) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        u = self.last_u + 1 + d
        if -1000 <= d < 0:
            self.src._event("duplicate", f"{self.what}s {raw}..{raw + n - 1} received again; "
                            "ignored", counter="duplicates", n=n)
            return None
        if d < -1000:
            self.src._event("resync", f"{self.what} went back from {self.last_u} to {raw} (a "
                            "new QTM measurement?); seq continues", counter="resyncs")
            self.offset -= d
            self.resynced = True
        elif d > 0:
            self.src._event("drop", f"{d} {self.what}s missing before {raw} "
                            f"({self.last_u + 1}..{u - 1})", counter="drops", n=d)
        self.last_u = u + n - 1
        return u + self.offset


def _rotation(table_rows) -> np.ndarray:
    return np.asarray(table_rows, np.float64).reshape(3, 3)


class Qualisys(Source):
    """The ``qualisys`` driver: :class:`QualisysForce` and :class:`QualisysMarkers` on one QTM
    connection (registry name ``"qualisys"`` for both ``[forceplate]`` and ``[markers]``)."""

    @classmethod
    def pair_from_config(cls, cfg, lab=None) -> tuple[Source, Source]:
        """(force, markers) sharing one :class:`QTMClient` (see :func:`qualisys_sources`)."""
        return qualisys_sources(cfg, lab=lab)

    @classmethod
    def from_config(cls, cfg, lab=None, stream: str | None = None, **kw) -> Source:
        """The ``stream`` source (``"force"``/``"markers"``/``"analog"``); by default the one
        whose table names the ``qualisys`` driver (force when both do)."""
        if stream is None:
            if cls is QualisysMarkers:
                stream = "markers"
            elif cls is QualisysForce:
                stream = "force"
            else:
                stream = ("force" if getattr(cfg.forceplate, "driver", "") == "qualisys"
                          else "markers")
        force, markers = qualisys_sources(cfg, lab=lab)
        if stream == "analog":
            if not force.extra:
                raise ConfigError(getattr(cfg, "path", None), "qualisys.analog",
                                  "names no channel: no analog stream")
            return force.extra[0]
        return force if stream == "force" else markers


class QualisysMarkers(Qualisys):
    """Labelled 3D markers from QTM (mm, lab frame; NaN = not seen).

    Parameters
    ----------
    settings : ``[markers]`` table (labels in the order stored, ``rate_hz`` nominal Hz).
    client : the shared :class:`QTMClient`.
    name : source name in events.
    """

    kind = "markers"

    def __init__(self, settings, client: QTMClient, name: str = "markers"):
        super().__init__(name)
        setup_marker_source(self, settings)
        self.client = client
        self.port = client.where               # named in errors by the capture
        self._R = _rotation(client.settings.lab_from_qtm)
        self._t = np.asarray(client.settings.qtm_origin, np.float64)
        self._index: np.ndarray | None = None

    def _open(self) -> None:
        self._unwrap = _Unwrap(self, "camera frame")
        self._dev_offset = 0.0
        self._last_dev = -np.inf
        self.client.attach(self)
        p = self.client.params
        qtm_labels = list(p["labels"])
        self._index = match_labels(self.labels, qtm_labels)
        rate = p.get("marker_rate_hz")
        self._event("qtm", f"{self.client.where}: {len(qtm_labels)} labelled trajectories at "
                    f"{rate:g} Hz (QTM frame, mm); mapped to the lab frame by lab_from_qtm",
                    level=logging.INFO)
        if rate and abs(rate - self.info.rate_hz) > 1e-6:
            self._event("rate", f"{self.client.where}: QTM runs its cameras at {rate:g} Hz, "
                        f"markers.rate_hz says {self.info.rate_hz:g}; using QTM's")
            self.info.rate_hz = float(rate)
        missing = [lab for lab, i in zip(self.labels, self._index) if i < 0]
        if missing:
            self._event("labels", f"{self.client.where}: QTM has no trajectory named "
                        f"{', '.join(missing)}; they read NaN")
        extra = sorted(set(range(len(qtm_labels))) - set(int(i) for i in self._index))
        if extra:
            self._event("labels", f"{self.client.where}: QTM trajectories not in "
                        f"markers.labels, not recorded: "
                        f"{', '.join(qtm_labels[i] for i in extra)}")
        self._n_qtm = len(qtm_labels)

    def _close(self) -> None:
        self.client.detach(self)

    def _acquire(self, timeout: float) -> None:
        items = self.client.take("markers", timeout)
        if not items:
            return
        seqs, dev, host, data = [], [], [], []
        k = len(self.labels)
        for h, frame, ts, pos in items:
            if pos.shape[0] != self._n_qtm:
                self._event("bad_packet", f"{self.client.where}: frame {frame}: "
                            f"{pos.shape[0]} markers, the parameters list {self._n_qtm}",
                            counter="bad_packets")
                continue
            s = self._unwrap.seq(frame)
            if s is None:
                continue
            out = np.full((k, 3), np.nan)
            ok = self._index >= 0
            out[ok] = pos[self._index[ok]] @ self._R.T + self._t
            t = ts * 1e-6 + self._dev_offset
            if self._unwrap.resynced or t < self._last_dev:   # a new QTM measurement
                self._dev_offset += self._last_dev + 1.0 / self.info.rate_hz - t
                t = self._last_dev + 1.0 / self.info.rate_hz
            self._last_dev = t
            seqs.append(s)
            dev.append(t)
            host.append(h)
            data.append(out)
        if seqs:
            self._push(Block(stream="markers", device_time=np.asarray(dev, np.float64),
                             host_time=np.asarray(host, np.float64),
                             data=np.asarray(data, np.float32),
                             seq=np.asarray(seqs, np.int64)))


class QualisysForce(Qualisys):
    """Force plates from QTM: the lab-frame wrench of every ``[[plates]]`` entry.

    ``data`` is (n, p, 6) ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and N·m, ground reaction on the
    body, moments about each plate's ``origin``; QTM sends no ADC counts, so ``raw`` is None
    and ``info.channels`` 0 (the archive then holds no ``/raw/force/counts``). ``cop`` is
    QTM's own centre of pressure, (n, p, 3) mm in the lab frame (``rotation`` @ COP × the
    unit of ``Force/Unit_Length`` + ``moment_origin``: QTM gives it in the plate frame about
    the plate origin), NaN where |Fz| < :data:`COP_MIN_FZ_N`; recorded as
    ``/raw/force/cop_device`` for provenance.

    Parameters
    ----------
    settings : ``[forceplate]`` table (``rate_hz`` nominal Hz).
    plates : the ``[[plates]]`` entries (name, origin mm).
    client : the shared :class:`QTMClient`.
    """

    kind = "force"
    #: blocks carry the device's own centre of pressure (``Block.cop``)
    sends_cop = True

    def __init__(self, settings, plates, client: QTMClient, name: str = "force"):
        super().__init__(name)
        rate = float(getattr(settings, "rate_hz", None) or settings["rate_hz"])
        names = [p.name if hasattr(p, "name") else p["name"] for p in plates]
        origins = [np.asarray(p.origin if hasattr(p, "origin") else p["origin"], float)
                   for p in plates]
        self.info = StreamInfo(stream="force", rate_hz=rate, labels=list(names), channels=0,
                               sample_type="float32", plates=list(names))
        self.client = client
        self.port = client.where               # named in errors by the capture
        by_name = {q.name: q for q in client.settings.plates}
        self._maps = []
        self._sign: list[float] = []
        for name, origin in zip(names, origins):
            q = by_name.get(name)
            if q is None:
                raise ConfigError(None, "qualisys.plates", f"no QTM plate mapped to {name!r}")
            sign = -1.0 if q.force == "on_plate" else 1.0
            self._maps.append((int(q.qtm_id), sign * _rotation(q.rotation),
                               np.asarray(q.moment_origin, float), origin))
            self._sign.append(sign)
        #: mm per QTM length unit of each plate's COP (``Force/Unit_Length``), set at open
        self._cop_scale = [1.0] * len(self._maps)

    def _open(self) -> None:
        self._unwrap = _Unwrap(self, "force sample")
        self.client.attach(self)
        have = self.client.params["plates"]
        missing = [str(pid) for pid, *_ in self._maps if pid not in have]
        if missing:
            self.client.detach(self)
            raise DeviceError(f"{self.client.where}: QTM has no force plate with id "
                              f"{', '.join(missing)} (qualisys.plates[].qtm_id; QTM has "
                              f"{', '.join(str(k) for k in sorted(have)) or 'none'})")
        for j, (pid, *_) in enumerate(self._maps):
            unit = str(have[pid].get("length_unit") or "mm").strip().lower()
            if unit not in _LENGTH_MM:
                self.client.detach(self)
                raise DeviceError(f"{self.client.where}: force plate {pid}: Unit_Length "
                                  f"{unit!r} (known: {', '.join(_LENGTH_MM)})")
            self._cop_scale[j] = _LENGTH_MM[unit]
        rates = {have[pid]["rate_hz"] for pid, *_ in self._maps}
        rate = rates.pop() if len(rates) == 1 else None
        self._event("qtm", f"{self.client.where}: plates "
                    + ", ".join(f"{pid} {have[pid]['name']!r} → {n}" for (pid, *_), n
                                in zip(self._maps, self.info.plates))
                    + f" at {rate or '?'} Hz (force on the plate in the plate frame; mapped "
                    "to the ground reaction in the lab frame)", level=logging.INFO)
        if rate and abs(rate - self.info.rate_hz) > 1e-6:
            self._event("rate", f"{self.client.where}: QTM samples the plates at {rate:g} Hz, "
                        f"forceplate.rate_hz says {self.info.rate_hz:g}; using QTM's")
            self.info.rate_hz = float(rate)

    def _close(self) -> None:
        self.client.detach(self)

    def wrench(self, chunk: dict) -> tuple[int, np.ndarray, np.ndarray] | None:
        """One packet's force chunk → (force number, (n, p, 6) lab wrench, (n, p, 3) QTM's
        centre of pressure in the lab frame, mm, NaN where |Fz| < :data:`COP_MIN_FZ_N`)."""
        numbers = {chunk[pid][0] for pid, *_ in self._maps if pid in chunk}
        counts = {chunk[pid][1].shape[0] for pid, *_ in self._maps if pid in chunk}
        if len(numbers) != 1 or len(counts) != 1 or any(pid not in chunk
                                                        for pid, *_ in self._maps):
            return None
        n = counts.pop()
        out = np.empty((n, len(self._maps), 6))
        cop = np.empty((n, len(self._maps), 3))
        for j, (pid, R, q, origin) in enumerate(self._maps):
            s = chunk[pid][1]
            F = s[:, 0:3] @ R.T
            Mq = s[:, 3:6] @ R.T
            out[:, j, :3] = F
            out[:, j, 3:] = Mq + np.cross((q - origin) * 1e-3, F)
            # the COP is a point of the plate frame (about the plate origin = the moment
            # origin): rotated without the force-direction sign, then placed at q
            Rp = R * self._sign[j]
            c = s[:, 6:9] @ Rp.T * self._cop_scale[j] + q
            c[np.abs(F[:, 2]) < COP_MIN_FZ_N] = np.nan
            cop[:, j] = c
        return numbers.pop(), out, cop

    def _acquire(self, timeout: float) -> None:
        items = self.client.take("force", timeout)
        for h, frame, chunk in items:
            got = self.wrench(chunk)
            if got is None:
                self._event("bad_packet", f"{self.client.where}: frame {frame}: the plates' "
                            "force chunks differ in number or length", counter="bad_packets")
                continue
            number, w, cop = got
            n = w.shape[0]
            if n == 0:
                continue
            s0 = self._unwrap.seq(number, n)
            if s0 is None:
                continue
            seq = s0 + np.arange(n, dtype=np.int64)
            self._push(Block(stream="force", device_time=seq / self.info.rate_hz,
                             host_time=np.full(n, h), data=w.astype(np.float32), raw=None,
                             seq=seq, cop=cop.astype(np.float32)))


class QualisysAnalog(Qualisys):
    """QTM's analog channels (``[qualisys] analog``): ``data`` (n, c) float32 in each channel's
    unit as QTM sends it (V for a plain analog board), ``seq`` = QTM's analog sample number
    (unwrapped), device time = sample number / the device's rate.

    The channels must belong to one QTM analog device (one sample clock). ``info.labels`` are
    the channel names in the order recorded, :attr:`units` their units (from QTM's analog
    parameters, known once open). A channel name QTM does not have is a ConfigError naming
    ``qualisys.analog[i]`` at :meth:`open`, before anything is recorded.

    Parameters
    ----------
    client : the shared :class:`QTMClient` (its settings' ``analog`` names the channels).
    path : the lab file, named in errors.
    """

    kind = "analog"

    def __init__(self, client: QTMClient, path=None, name: str = "analog"):
        super().__init__(name)
        self.client = client
        self.port = client.where
        self.path = path
        wanted = client.settings.analog
        self.info = StreamInfo(stream="analog", rate_hz=0.0,
                               labels=[] if wanted == "all" else list(wanted), channels=0,
                               sample_type="float32")
        self.units: list[str] = []
        self.device: dict | None = None
        self._cols: np.ndarray | None = None

    def resolve(self, devices: list) -> None:
        """Pick the channels from QTM's analog devices (``parse_parameters()["analog"]``);
        ConfigError naming ``qualisys.analog`` when a name is unknown or the names span
        devices."""
        wanted = self.client.settings.analog
        have = ", ".join(f"{d['name'] or d['id']}: {', '.join(d['labels'])}" for d in devices)
        if not devices:
            raise ConfigError(self.path, "qualisys.analog", f"{self.client.where}: QTM has no "
                              "analog device (none in its analog parameters)")
        if wanted == "all":
            if len(devices) > 1:
                raise ConfigError(self.path, "qualisys.analog", f"\"all\": QTM has "
                                  f"{len(devices)} analog devices ({have}); name the channels "
                                  "of one")
            dev, cols = devices[0], list(range(len(devices[0]["labels"])))
        else:
            where = []
            for i, name in enumerate(wanted):
                hits = [(d, d["labels"].index(name)) for d in devices if name in d["labels"]]
                if not hits:
                    raise ConfigError(self.path, f"qualisys.analog[{i}]", f"{name!r} is not "
                                      f"an analog channel of {self.client.where} (QTM has "
                                      f"{have})")
                where.append(hits[0])
            ids = {d["id"] for d, _ in where}
            if len(ids) > 1:
                raise ConfigError(self.path, "qualisys.analog", "the channels belong to "
                                  f"{len(ids)} QTM analog devices; one device per capture")
            dev, cols = where[0][0], [c for _, c in where]
        if not dev.get("rate_hz"):
            raise DeviceError(f"{self.client.where}: analog device {dev['id']} has no "
                              "<Frequency> in QTM's parameters")
        self.device = dev
        self._cols = np.asarray(cols, np.intp)
        self.info.labels = [dev["labels"][c] for c in cols]
        self.info.rate_hz = float(dev["rate_hz"])
        self.units = [dev["units"][c] for c in cols]

    @property
    def description(self) -> str:
        """``qtm://host:port analog device ID 'name'`` (once open)."""
        d = self.device or {}
        return f"{self.client.where} analog device {d.get('id', '?')} {d.get('name', '')!r}"

    def _open(self) -> None:
        self._unwrap = _Unwrap(self, "analog sample")
        self.client.attach(self)
        try:
            self.resolve(self.client.params.get("analog", []))
        except Exception:
            self.client.detach(self)
            raise
        d = self.device
        self._event("qtm", f"{self.client.where}: analog device {d['id']} {d['name']!r} at "
                    f"{self.info.rate_hz:g} Hz: "
                    + ", ".join(f"{n} ({u})" for n, u in zip(self.info.labels, self.units)),
                    level=logging.INFO)

    def _close(self) -> None:
        self.client.detach(self)

    def _acquire(self, timeout: float) -> None:
        items = self.client.take("analog", timeout)
        did, width = self.device["id"], len(self.device["labels"])
        for h, frame, chunk in items:
            got = chunk.get(did)
            if got is None:
                continue                   # no sample of this device with this camera frame
            number, values = got
            if values.shape[1] != width:
                self._event("bad_packet", f"{self.client.where}: frame {frame}: analog device "
                            f"{did} sent {values.shape[1]} channels, its parameters list "
                            f"{width}", counter="bad_packets")
                continue
            n = values.shape[0]
            s0 = self._unwrap.seq(number, n)
            if s0 is None:
                continue
            seq = s0 + np.arange(n, dtype=np.int64)
            self._push(Block(stream="analog", device_time=seq / self.info.rate_hz,
                             host_time=np.full(n, h),
                             data=values[:, self._cols].astype(np.float32), seq=seq))


def _lab_address(cfg, lab):
    if lab is not None and getattr(lab, "qtm_address", None):
        return tuple(lab.qtm_address)
    return None


def qualisys_sources(cfg, lab=None, client: QTMClient | None = None):
    """(force, markers) sources of a lab whose ``[forceplate]`` and/or ``[markers]`` driver is
    ``"qualisys"``, sharing one :class:`QTMClient`. With a simulated ``lab`` (the QTM emulator)
    its address replaces ``qualisys.host = "auto"``."""
    if client is None:
        s = QualisysSettings.from_config(cfg)
        addr = _lab_address(cfg, lab)
        if addr is not None:
            s.host, s.port = addr[0], int(addr[1])
        elif s.host == "auto":
            raise ConfigError(getattr(cfg, "path", None), "qualisys.host",
                              "\"auto\" is the simulated lab's emulator: start it first "
                              "(treadlab simulate lab --protocol qtm)")
        client = QTMClient(s)
    force = QualisysForce(cfg.forceplate, cfg.plates, client)
    markers = QualisysMarkers(MarkerSettings.from_table(cfg.markers), client)
    if client.settings.analog:
        # recorded beside force and markers, on the same connection (Source.companions)
        force.extra = [QualisysAnalog(client, path=getattr(cfg, "path", None))]
    return force, markers
