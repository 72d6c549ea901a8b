"""A Qualisys Track Manager emulator: the QTM real-time (RT) protocol over TCP on loopback.

Written from Qualisys' RT protocol documentation (protocol versions 1.8 – 1.25, little-endian
port 22223), the packet layout the official client ``qtm-rt`` parses:

- every packet starts with ``<II`` (size in bytes including this 8-byte header, type);
  types: 0 error, 1 command, 2 XML, 3 data, 4 no more data, 6 event. Command, error and XML
  payloads are NUL-terminated strings;
- on connect the server sends the command string ``QTM RT Interface connected``; the client
  then sends ``version 1.25`` (answer ``Version set to 1.25``) and may ask ``byteorder``
  (``Little endian``), ``qtmversion``, ``getstate`` (an event packet), ``getparameters general
  3d force`` (one XML document ``<QTM_Parameters_Ver_1.25>`` with ``<General><Frequency>``,
  ``<The_3D><Label><Name>`` and ``<Force><Plate>`` entries) and ``streamframes allframes 3d
  force`` / ``streamframes stop``;
- a data packet is ``<qII`` (timestamp in µs, camera frame number, component count), then
  per component ``<II`` (size including this header, type): 3D (type 1) is ``<Ihh`` (marker
  count, 2D drop rate, out-of-sync rate) and ``<3f`` per labelled marker in mm (NaN when not
  seen); force (type 4) is ``<i`` plate count, then per plate ``<iii`` (plate id, force
  count, force number of the first sample) and ``<9f`` per force sample: force (N), moment
  (N·m) and centre of pressure (mm), in the plate's own coordinate system, the force the
  subject applies **to the plate**.
- analog (type 3) is ``<i`` device count, per device ``<iii`` (device id, channel count,
  sample count) and, when samples follow, ``<I`` the first sample number and the samples
  channel by channel (``<f4``); the emulated device (id 1, :data:`ANALOG_CHANNELS`) is
  described in the ``<Analog>`` parameters and sampled by :func:`emulated_analog`.

Force samples are sent with the first camera frame at or after their time, so force chunks
hold a varying number of samples and do not line up with camera frames (1000 Hz force at
150 Hz cameras: 6 or 7 samples per packet), as QTM does.

The emulated plates have their own frame, as real plates do: plate x = lab Y, plate y = lab X,
plate z = lab −Z (Z down), moments about the centre of the plate's top surface
(:func:`plate_frames`). The lab-config table that maps them back to the treadlab lab frame is
:func:`qualisys_table`.

:func:`start_qtm_lab` runs the emulator in its own process, playing the synthetic runner or a
C3D recording (:class:`treadlab.acquisition.sim.replay.ReplaySignal`) in real time, and
returns a :class:`treadlab.acquisition.sim.simulated.SimulatedLab` whose ``qtm_address`` is the
(host, port) to connect to. Fault injection (:class:`QTMFaults`): camera frames QTM skips
(frame-number and force-number gaps) and the server going away and coming back (the client
must reconnect).
"""
from __future__ import annotations

import logging
import math
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from xml.sax.saxutils import escape

import numpy as np

from treadlab.acquisition.sim.emulator_base import plain_table, runner_params, serve_child, spawn
from treadlab.acquisition.sim.replay import ReplaySignal
from treadlab.acquisition.sim.simulated import RunnerSignal, SimulatedLab
from treadlab.acquisition.sources.forceplate_serial import PlateCalibration
from treadlab.config.errors import DeviceError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
DATA_HEADER = struct.Struct("<qII")
COMPONENT = struct.Struct("<II")
PT_ERROR, PT_COMMAND, PT_XML, PT_DATA, PT_NOMOREDATA, PT_EVENT = 0, 1, 2, 3, 4, 6
C_3D, C_ANALOG, C_FORCE = 1, 3, 4
EVENT_CONNECTED = 1
#: the newest RT protocol version the emulator speaks (and the oldest it accepts: 1.8)
PROTOCOL = "1.25"

#: plate frame → lab frame of every emulated plate (x_p = Y, y_p = X, z_p = −Z), a proper
#: rotation; ``F_lab = R @ F_plate``.
PLATE_ROTATION = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass
class QTMFaults:
    """What the emulated QTM does wrong, for tests (off by default).

    skip_every : a camera frame (and the force samples due with it) is not sent every N-th
        frame — QTM's real-time output skipping frames (frame-number gaps); 0 = never.
    disconnect_at_s, disconnect_for_s : the server closes every connection and stops listening
        ``disconnect_at_s`` s after the first client started streaming, and listens again on
        the same port ``disconnect_for_s`` s later (frames keep being counted meanwhile).
    """

    skip_every: int = 0
    disconnect_at_s: float | None = None
    disconnect_for_s: float = 1.0


#: the emulated analog device (QTM ``Analog/Device`` id 1): a sync pulse train and two
#: EMG-like channels (:func:`emulated_analog`), in these units
ANALOG_CHANNELS = ("Trigger", "EMG_1", "EMG_2")
ANALOG_UNITS = ("V", "mV", "mV")
ANALOG_DEVICE_ID = 1


def emulated_analog(signal, samples, on_sample: int | None, rate_hz: float) -> np.ndarray:
    """The emulated analog device's samples: (n, 3) float32 ``[Trigger (V), EMG_1 (mV),
    EMG_2 (mV)]`` for analog sample numbers ``samples``.

    ``on_sample`` is the analog sample at which the runner steps on (None: not yet). Trigger:
    5 V during the first 10 ms of every second from ``on_sample`` on, else 0 V (a sync pulse
    train). EMG_j: deterministic noise (a hash of the sample number) of amplitude
    0.02 mV + 0.5 mV per kN of the vertical force on plate ``j % plates`` of ``signal``
    (:meth:`RunnerSignal.force`): active in stance. A function of the sample number only, so a
    test recomputes what was played.
    """
    samples = np.asarray(samples, np.int64)
    n = samples.shape[0]
    out = np.zeros((n, len(ANALOG_CHANNELS)))
    fz = None
    if on_sample is not None:
        rel = samples - int(on_sample)
        on = rel >= 0
        per_s = max(1, int(round(rate_hz)))
        out[on, 0] = np.where(rel[on] % per_s < max(1, int(round(0.01 * rate_hz))), 5.0, 0.0)
        if on.any():
            f = np.asarray(signal.force(rel[on] / float(rate_hz)), np.float64)[:, :, 2]
            fz = np.zeros((n, f.shape[1]))
            fz[on] = np.maximum(f, 0.0)
    for j in (1, 2):
        x = np.sin(samples * 12.9898 + j * 78.233) * 43758.5453
        noise = 2.0 * (x - np.floor(x)) - 1.0
        amp = 0.02 + (0.0 if fz is None else 0.5e-3 * fz[:, (j - 1) % fz.shape[1]])
        out[:, j] = amp * noise
    return out.astype(np.float32)


def plate_frames(plates) -> list[dict]:
    """Per configured plate: QTM plate id (1-based), name, rotation (plate → lab) and the point
    its moments are about (mm, lab frame: the centre of its corners, or 20 mm above the
    configured origin when no corners are known)."""
    out = []
    for i, p in enumerate(plates):
        corners = np.asarray(getattr(p, "corners", np.zeros((4, 3))), float).reshape(4, 3)
        origin = np.asarray(p.origin, float).reshape(3)
        q = corners.mean(axis=0) if np.abs(corners).sum() > 0 else origin + [0.0, 0.0, 20.0]
        out.append({"qtm_id": i + 1, "name": p.name, "rotation": PLATE_ROTATION.copy(),
                    "moment_origin": q, "corners": corners})
    return out


def qualisys_table(cfg, address: tuple[str, int], analog="all") -> dict:
    """The ``[qualisys]`` lab-config table for the emulated QTM at ``address`` (``analog``:
    the ``qualisys.analog`` value, every emulated channel by default; ``[]``: none)."""
    plates = [p if isinstance(p, PlateCalibration) else PlateCalibration.from_table(p)
              for p in cfg.plates]
    return {"host": address[0], "port": int(address[1]),
            "analog": analog if isinstance(analog, str) else list(analog),
            "plates": [{"qtm_id": f["qtm_id"], "name": f["name"],
                        "rotation": f["rotation"].tolist(),
                        "moment_origin": f["moment_origin"].tolist(),
                        "force": "on_plate"} for f in plate_frames(plates)]}


def lab_to_qtm(wrench: np.ndarray, origin: np.ndarray, frame: dict) -> np.ndarray:
    """Lab-frame ground reaction (n, 6) N, N·m about ``origin`` (mm) → QTM force samples
    (n, 9): force applied to the plate, moment about the plate's moment origin, centre of
    pressure (mm, plate frame, relative to the moment origin; 0 when Fz < 10 N)."""
    R, q = frame["rotation"], np.asarray(frame["moment_origin"], float)
    F = wrench[:, :3]
    M = wrench[:, 3:] + np.cross((np.asarray(origin, float) - q) * 1e-3, F)   # about q
    # centre of pressure on the plate surface (z = q_z): r × F + Tz·ez = M about q
    fz = F[:, 2]
    loaded = np.abs(fz) > 10.0
    cop = np.zeros_like(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        cop[:, 0] = np.where(loaded, -M[:, 1] / fz, 0.0) * 1e3
        cop[:, 1] = np.where(loaded, M[:, 0] / fz, 0.0) * 1e3
    out = np.empty((wrench.shape[0], 9))
    out[:, 0:3] = -F @ R             # R.T @ (−F) per row: the force on the plate
    out[:, 3:6] = -M @ R
    out[:, 6:9] = cop @ R
    return out


def parameters_xml(labels, marker_rate: float, force_rate: float, frames: list[dict],
                   analog_rate: float | None = None) -> str:
    """The ``getparameters general 3d force analog`` answer (QTM RT XML, protocol 1.25
    names); the ``Analog`` device (:data:`ANALOG_CHANNELS`) when ``analog_rate`` (Hz) is
    given."""
    parts = [f"<QTM_Parameters_Ver_{PROTOCOL}>",
             f"<General><Frequency>{marker_rate:g}</Frequency><Capture_Time>0</Capture_Time>"
             "<Start_On_External_Trigger>False</Start_On_External_Trigger></General>",
             f"<The_3D><AxisUpwards>+Z</AxisUpwards><Labels>{len(labels)}</Labels>"]
    for lab in labels:
        parts.append(f"<Label><Name>{escape(str(lab))}</Name><RGBColor>16711680</RGBColor>"
                     "</Label>")
    parts.append("</The_3D><Force><Unit_Length>mm</Unit_Length><Unit_Force>N</Unit_Force>")
    for f in frames:
        c = f["corners"]
        corners = "".join(f"<Corner{k + 1}><X>{c[k, 0]:g}</X><Y>{c[k, 1]:g}</Y>"
                          f"<Z>{c[k, 2]:g}</Z></Corner{k + 1}>" for k in range(4))
        parts.append(f"<Plate><Plate_ID>{f['qtm_id']}</Plate_ID><Force_Plate_Index>"
                     f"{f['qtm_id']}</Force_Plate_Index><Analog_Device_ID>1</Analog_Device_ID>"
                     f"<Frequency>{force_rate:g}</Frequency><Type>Emulated</Type>"
                     f"<Name>{escape(str(f['name']))}</Name><Location>{corners}</Location>"
                     "</Plate>")
    parts.append("</Force>")
    if analog_rate:
        parts.append(f"<Analog><Device><Device_ID>{ANALOG_DEVICE_ID}</Device_ID>"
                     f"<Device_Name>Emulated analog</Device_Name>"
                     f"<Channels>{len(ANALOG_CHANNELS)}</Channels>"
                     f"<Frequency>{analog_rate:g}</Frequency><Unit>V</Unit>"
                     "<Range><Min>-10</Min><Max>10</Max></Range>")
        for name, unit in zip(ANALOG_CHANNELS, ANALOG_UNITS):
            parts.append(f"<Channel><Label>{name}</Label><Unit>{unit}</Unit></Channel>")
        parts.append("</Device></Analog>")
    parts.append(f"</QTM_Parameters_Ver_{PROTOCOL}>")
    return "".join(parts)


def packet(ptype: int, payload: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(payload), ptype) + payload


def text_packet(ptype: int, text: str) -> bytes:
    return packet(ptype, text.encode() + b"\0")


def data_packet(timestamp_us: int, frame: int, markers: np.ndarray | None,
                force_number: int, forces: np.ndarray | None, plate_ids,
                analog_number: int = 0, analog: np.ndarray | None = None) -> bytes:
    """One QTM data packet: 3D (``markers`` (k, 3) mm, NaN = not seen), analog (``analog``
    (n, c) samples of device :data:`ANALOG_DEVICE_ID` starting at sample ``analog_number``)
    and force (``forces`` (p, n, 9) of QTM force samples starting at ``force_number``).

    The analog component (type 3): ``<i`` device count, per device ``<iii`` (device id,
    channel count, sample count), then — only when the sample count is > 0 — ``<I`` the
    sample number of the first sample and the samples channel by channel (all samples of
    channel 1, then channel 2, …) as ``<f4``."""
    comps = []
    if markers is not None:
        body = struct.pack("<Ihh", markers.shape[0], 0, 0) + \
            np.ascontiguousarray(markers, "<f4").tobytes()
        comps.append(COMPONENT.pack(COMPONENT.size + len(body), C_3D) + body)
    if analog is not None:
        n, c = analog.shape
        body = struct.pack("<iiii", 1, ANALOG_DEVICE_ID, c, n)
        if n:
            body += struct.pack("<I", int(analog_number) & 0xFFFFFFFF)
            body += np.ascontiguousarray(analog.T, "<f4").tobytes()
        comps.append(COMPONENT.pack(COMPONENT.size + len(body), C_ANALOG) + body)
    if forces is not None:
        body = bytearray(struct.pack("<i", forces.shape[0]))
        for pid, fs in zip(plate_ids, forces):
            body += struct.pack("<iii", int(pid), fs.shape[0], int(force_number))
            body += np.ascontiguousarray(fs, "<f4").tobytes()
        comps.append(COMPONENT.pack(COMPONENT.size + len(body), C_FORCE) + bytes(body))
    payload = DATA_HEADER.pack(int(timestamp_us), int(frame) & 0xFFFFFFFF, len(comps)) + \
        b"".join(comps)
    return packet(PT_DATA, payload)


class _Client:
    def __init__(self, sock: socket.socket, addr):
        self.sock = sock
        self.addr = addr
        self.buf = b""
        self.streaming = False
        self.components: set[str] = set()
        self.version = None


class _QTMServer:
    """The emulated QTM: one listening socket, any number of RT clients, paced frames."""

    PACE_S = 0.002

    def __init__(self, spec: dict):
        self.spec = spec
        self.plates = spec["plates"]
        self.labels = list(spec["labels"])
        self.f_rate = float(spec["force_rate_hz"])
        self.m_rate = float(spec["marker_rate_hz"])
        self.a_rate = float(spec.get("analog_rate_hz") or self.f_rate)
        self.faults: QTMFaults = spec.get("faults") or QTMFaults()
        self.frames = plate_frames(self.plates)
        self.origins = [np.asarray(p.origin, float) for p in self.plates]
        if spec.get("replay") is not None:
            self.signal = spec["replay"]
        else:
            self.signal = RunnerSignal(spec["params"], self.plates, self.labels,
                                       spec.get("marker_names"))
        self.host = spec.get("host", "127.0.0.1")
        self.port = int(spec.get("port") or 0)
        self.listener = None
        self._listen()
        self.clients: list[_Client] = []
        self.stats = {k: 0 for k in ("camera_frames", "frames_sent", "frames_skipped",
                                     "force_samples", "connections", "disconnects",
                                     "outages", "commands", "analog_samples")}
        self.unloaded_s = float(spec.get("unloaded_s", 2.0))
        self.on_time: float | None = None
        self.stream_at: float | None = None
        self.down_until: float | None = None
        self.disconnect_plan = self.faults.disconnect_at_s
        self.xml = parameters_xml(self.labels, self.m_rate, self.f_rate, self.frames,
                                  self.a_rate)
        #: with ``send_log``: (first force number, samples, time.monotonic() after the send)
        #: of every packet sent, for latency measurements (benchmarks/live.py)
        self.send_log: list | None = [] if spec.get("send_log") else None

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(8)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        self.listener = s

    def endpoints(self) -> dict:
        return {"qtm_address": (self.host, self.port),
                "subject": getattr(self.signal, "subject", {}), "pid": os.getpid()}

    def close(self) -> None:
        for c in list(self.clients):
            self._drop(c, count=False)
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    # --- connections ----------------------------------------------------------------------

    def _drop(self, c: _Client, count: bool = True) -> None:
        try:
            c.sock.close()
        except OSError:
            pass
        if c in self.clients:
            self.clients.remove(c)
            if count:
                self.stats["disconnects"] += 1

    def _send(self, c: _Client, data: bytes) -> None:
        try:
            c.sock.sendall(data)
        except OSError:
            self._drop(c)

    def _poll_sockets(self, now: float) -> None:
        socks = [c.sock for c in self.clients]
        if self.listener is not None:
            socks.append(self.listener)
        if not socks:
            return
        readable, _, _ = select.select(socks, [], [], 0)
        for s in readable:
            if s is self.listener:
                try:
                    conn, addr = s.accept()
                except OSError:
                    continue
                conn.setblocking(True)
                conn.settimeout(2.0)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c = _Client(conn, addr)
                self.clients.append(c)
                self.stats["connections"] += 1
                self._send(c, text_packet(PT_COMMAND, "QTM RT Interface connected"))
                continue
            c = next(x for x in self.clients if x.sock is s)
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._drop(c)
                continue
            c.buf += data
            while len(c.buf) >= HEADER.size:
                size, ptype = HEADER.unpack_from(c.buf)
                if size < HEADER.size:
                    self._send(c, text_packet(PT_ERROR, f"Bad packet size {size}"))
                    self._drop(c)
                    break
                if len(c.buf) < size:
                    break
                body, c.buf = c.buf[HEADER.size:size], c.buf[size:]
                text = body.rstrip(b"\0").decode("utf-8", "replace").strip()
                self.stats["commands"] += 1
                self._command(c, ptype, text, now)

    def _command(self, c: _Client, ptype: int, text: str, now: float) -> None:
        if ptype == PT_XML:
            self._send(c, text_packet(PT_COMMAND, "Setting parameters succeeded"))
            return
        words = text.split()
        cmd = words[0].lower() if words else ""
        if cmd == "version":
            want = words[1] if len(words) > 1 else ""
            try:
                major, minor = (int(x) for x in want.split("."))
            except ValueError:
                self._send(c, text_packet(PT_ERROR, f"Version NOT supported: {want}"))
                return
            if (major, minor) < (1, 8) or (major, minor) > (1, 25):
                self._send(c, text_packet(PT_ERROR, f"Version NOT supported: {want}"))
                return
            c.version = want
            self._send(c, text_packet(PT_COMMAND, f"Version set to {want}"))
        elif cmd == "byteorder":
            self._send(c, text_packet(PT_COMMAND, "Byte order is little endian"))
        elif cmd == "qtmversion":
            self._send(c, text_packet(PT_COMMAND, "QTM Version is 2024.1 (treadlab emulator)"))
        elif cmd == "getstate":
            self._send(c, packet(PT_EVENT, bytes([EVENT_CONNECTED])))
        elif cmd == "getparameters":
            self._send(c, text_packet(PT_XML, self.xml))
        elif cmd == "streamframes":
            args = [w.lower() for w in words[1:]]
            if args and args[0] == "stop":
                c.streaming = False
                return
            comps = set(args[1:])
            unknown = comps - {"3d", "force", "analog"}
            if unknown:
                self._send(c, text_packet(PT_ERROR, "Unsupported component(s): "
                                          + " ".join(sorted(unknown))))
                return
            c.components = comps
            c.streaming = True
            if self.stream_at is None:
                self.stream_at = now
                # the runner steps on after the unloaded time, on a time on both sample grids
                fr, mr = self.f_rate, self.m_rate
                grid = (math.gcd(int(fr), int(mr)) if fr.is_integer() and mr.is_integer()
                        else 1)
                self.on_time = math.ceil((now + self.unloaded_s) * grid) / grid
                self.stats["on_frame"] = int(round(self.on_time * fr))
                self.stats["on_marker_frame"] = int(round(self.on_time * mr))
                self.stats["on_analog_sample"] = int(round(self.on_time * self.a_rate))
        else:
            self._send(c, text_packet(PT_ERROR, f"Parse error: {text[:60]}"))

    def _outage(self, now: float) -> None:
        if self.down_until is not None and now >= self.down_until:
            self.down_until = None
            self._listen_again()
        if (self.disconnect_plan is not None and self.stream_at is not None
                and now >= self.stream_at + self.disconnect_plan):
            self.disconnect_plan = None
            self.disconnect(now, self.faults.disconnect_for_s)

    def _listen_again(self) -> None:
        for _ in range(50):
            try:
                self._listen()
                log.warning("listening again on %s:%d", self.host, self.port)
                return
            except OSError:
                time.sleep(0.05)
        raise DeviceError(f"qtm://{self.host}:{self.port}: cannot listen again")

    def disconnect(self, now: float, seconds: float) -> None:
        """Close every connection and stop listening for ``seconds`` s."""
        for c in list(self.clients):
            self._drop(c)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.down_until = now + float(seconds)
        self.stats["outages"] += 1
        log.warning("connections closed, away for %.2f s", seconds)

    # --- frames ---------------------------------------------------------------------------

    def _signal_time(self, t: np.ndarray) -> np.ndarray:
        return t - (self.on_time if self.on_time is not None else np.inf)

    def _forces(self, i0: int, i1: int) -> np.ndarray:
        """(p, n, 9) QTM force samples i0..i1-1."""
        t = np.arange(i0, i1) / self.f_rate
        tr = self._signal_time(t)
        wrench = np.zeros((len(t), len(self.plates), 6))
        on = np.isfinite(tr) & (tr >= 0)
        if on.any():
            wrench[on] = self.signal.force(np.round(tr[on] * self.f_rate) / self.f_rate)
        return np.stack([lab_to_qtm(wrench[:, k], self.origins[k], self.frames[k])
                         for k in range(len(self.plates))])

    def _markers(self, j: int) -> np.ndarray:
        tr = self._signal_time(np.array([j / self.m_rate]))
        if not (np.isfinite(tr[0]) and tr[0] >= 0):
            return np.full((len(self.labels), 3), np.nan, np.float32)
        return self.signal.markers(np.round(tr * self.m_rate) / self.m_rate)[0]

    def _analog(self, a0: int, a1: int) -> np.ndarray:
        """(n, 3) analog samples a0..a1-1 (:func:`emulated_analog`)."""
        return emulated_analog(self.signal, np.arange(a0, a1),
                               self.stats.get("on_analog_sample"), self.a_rate)

    def run(self, conn) -> None:
        start = time.monotonic()
        j_next = 0                       # next camera frame
        i_next = 0                       # next force sample
        a_next = 0                       # next analog sample
        plate_ids = [f["qtm_id"] for f in self.frames]
        while True:
            try:
                if conn.poll(0):
                    msg = conn.recv()
                    if msg[0] == "stop":
                        out = dict(self.stats)
                        if self.send_log is not None:
                            out["send_log"] = np.asarray(self.send_log, np.float64)
                        conn.send({"stats": out})
                        return
                    if msg[0] == "stats":
                        conn.send({"stats": dict(self.stats)})
                    elif msg[0] == "vanish":
                        self.disconnect(time.monotonic() - start, float(msg[1]))
            except (EOFError, OSError):
                return
            now = time.monotonic() - start
            self._outage(now)
            self._poll_sockets(now)
            j_due = int(now * self.m_rate) + 1
            while j_next < j_due:
                t_j = j_next / self.m_rate
                i_due = int(math.floor(t_j * self.f_rate + 1e-9)) + 1
                forces = self._forces(i_next, i_due) if i_due > i_next else \
                    np.zeros((len(self.plates), 0, 9))
                markers = self._markers(j_next)
                a_due = int(math.floor(t_j * self.a_rate + 1e-9)) + 1
                analog = self._analog(a_next, a_due) if a_due > a_next else \
                    np.zeros((0, len(ANALOG_CHANNELS)), np.float32)
                self.stats["analog_samples"] += analog.shape[0]
                self.stats["camera_frames"] += 1
                self.stats["force_samples"] += forces.shape[1]
                fl = self.faults
                skip = fl.skip_every and j_next > 0 and j_next % fl.skip_every == 0
                streaming = [c for c in self.clients if c.streaming]
                if skip and streaming:
                    self.stats["frames_skipped"] += 1
                elif streaming:
                    for c in streaming:
                        pkt = data_packet(int(round(t_j * 1e6)), j_next,
                                          markers if "3d" in c.components else None,
                                          i_next,
                                          forces if "force" in c.components else None,
                                          plate_ids, a_next,
                                          analog if "analog" in c.components else None)
                        self._send(c, pkt)
                    self.stats["frames_sent"] += 1
                    if self.send_log is not None and forces.shape[1]:
                        self.send_log.append((i_next, forces.shape[1], time.monotonic()))
                i_next = max(i_next, i_due)
                a_next = max(a_next, a_due)
                j_next += 1
            nxt = j_next / self.m_rate
            time.sleep(min(0.01, max(self.PACE_S, nxt - (time.monotonic() - start))))


def _emulator_main(conn) -> None:
    serve_child(conn, "QTM emulator", _QTMServer)


def start_qtm_lab(cfg, params=None, replay=None, *, faults: QTMFaults | None = None,
                  port: int = 0, host: str = "127.0.0.1", loop: bool = True,
                  start_timeout: float = 60.0, send_log: bool = False):
    """Run the emulated QTM of ``cfg`` (its plates, marker labels and rates) in its own process.

    Parameters
    ----------
    cfg : lab config (``[[plates]]``, ``[forceplate].rate_hz`` Hz, ``[markers]`` labels and
        ``rate_hz`` Hz, ``[simulator]``, ``[marker_names]``, ``[forceplate].tare_seconds``).
    params : synthetic-runner parameters overriding ``[simulator]``.
    replay : a C3D file played instead of the synthetic runner.
    faults : :class:`QTMFaults`.
    port : TCP port to listen on (0 = a free one); host: loopback address.
    loop : replay: start over at the end of the recording.
    send_log : keep the send time of every packet (``stop()`` returns it as ``send_log``).

    Returns
    -------
    :class:`~treadlab.acquisition.sim.simulated.SimulatedLab` with ``qtm_address`` (host,
    port); ``stop()`` it (or use it as a context manager).
    """
    plates = [p if isinstance(p, PlateCalibration) else PlateCalibration.from_table(p)
              for p in cfg.plates]
    labels = [str(x) for x in cfg.markers.labels]
    marker_names = plain_table(getattr(cfg, "marker_names", None)) or None
    spec = {"plates": plates, "labels": labels,
            "force_rate_hz": float(cfg.forceplate.rate_hz),
            "marker_rate_hz": float(cfg.markers.rate_hz), "faults": faults or QTMFaults(),
            "marker_names": marker_names, "host": host, "port": int(port), "replay": None,
            "unloaded_s": float(getattr(cfg.forceplate, "tare_seconds", 1.0) or 0.0) + 1.0,
            "send_log": bool(send_log),
            "log_level": logging.getLogger("treadlab").getEffectiveLevel()}
    replay_info = {}
    if replay is not None:
        spec["replay"] = ReplaySignal.from_c3d(replay, plates, labels,
                                               marker_names=marker_names, loop=loop)
        replay_info = {"source": str(replay), "duration_s": spec["replay"].duration_s,
                       "belt_speed_m_s": spec["replay"].belt_speed_m_s, "loop": bool(loop)}
    else:
        spec["params"] = runner_params(cfg, params)
    proc, conn, ep = spawn("treadlab.acquisition.sim.qtm_emulator", spec, "QTM emulator",
                           start_timeout)
    lab = SimulatedLab(force_port=None, force_stream=None, marker_address=None,
                       marker_stream=None, subject=ep.get("subject") or {}, replay=replay_info,
                       _proc=proc, _conn=conn)
    lab.qtm_address = tuple(ep["qtm_address"])
    lab.protocol = "qtm"
    return lab


if __name__ == "__main__":          # the emulator process started by start_qtm_lab()
    _emulator_main(Connection(int(sys.argv[1])))
