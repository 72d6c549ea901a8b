"""An OptiTrack Motive emulator: NatNet 3.1 or 4.1 over UDP, unicast on loopback (or
multicast inside a private network namespace, :func:`require_private_netns`).

Written from the NatNet SDK's packet definitions (``NatNetTypes.h`` / the SDK's Python
``NatNetClient``), the layout the ``natnet`` client on PyPI parses. Every message is
``<HH`` (message id, payload size in bytes) followed by the payload, little-endian:

- the client sends ``NAT_CONNECT`` (0, payload ``"Ping\\0"``) to the command port (1510 on
  Motive); the server answers ``NAT_SERVERINFO`` (1): application name (256 bytes, NUL
  padded), server version (4 bytes), NatNet version (4 bytes, here 3.1.0.0), high-resolution
  clock frequency (uint64, ticks per s), data port (uint16), multicast flag (uint8) and
  multicast address (4 bytes);
- ``NAT_REQUEST_MODELDEF`` (4) → ``NAT_MODELDEF`` (5): dataset count, then per dataset its
  type (0 = marker set: name, marker count, marker names, NUL-terminated strings);
- ``NAT_KEEPALIVE`` (10): a unicast client keeps its subscription alive with it;
- ``NAT_FRAMEOFDATA`` (7), NatNet 3.1: frame number (uint32); marker sets (count; per set
  name, marker count, x y z float32 each); legacy unlabelled ("other") markers (count, xyz);
  rigid bodies (count); skeletons (count); labelled markers (count; per marker id uint32 =
  model id << 16 | marker id, xyz float32, size float32, params uint16 — bit 0x10 =
  unlabelled — and residual float32); force plates (count); devices (count); then timecode,
  timecode sub-frame (uint32 each), timestamp (float64 s since Motive started), three
  high-resolution timestamps (uint64 ticks), params (uint16) and the end-of-data tag
  (int32 0).

Unicast: the server streams frames to every client that sent ``NAT_CONNECT`` from its command
socket, while that client keeps sending ``NAT_KEEPALIVE``. Multicast (``multicast=(group,
port)``): each frame once to the group (TTL 0), once a client has connected; refused unless
loopback is the only interface (a namespace a test made). NatNet 4.1: see
:func:`frame_of_data` and :func:`model_def`.

Motive's frame is Y up and in metres by default: positions are sent as
``lab_to_motive(p_lab)`` = ``R.T @ p_lab / 1000`` with :data:`MOTIVE_ROTATION` (Motive →
lab), the mapping the ``[natnet]`` table's defaults undo.

The runner's markers are one marker set (``"Runner"``, the configured labels) and labelled
markers; two stray reflections are sent as unlabelled markers in every frame. Faults
(:class:`NatNetFaults`): datagram loss, duplicates and reordering, and Motive going away
(it forgets its clients; they must connect again).
"""
from __future__ import annotations

import logging
import math
import os
import socket
import struct
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from treadlab.acquisition.sim.emulator_base import plain_table, runner_params, serve_child, spawn
from treadlab.acquisition.sim.replay import ReplaySignal
from treadlab.acquisition.sim.simulated import RunnerSignal, SimulatedLab
from treadlab.acquisition.sources.forceplate_serial import PlateCalibration
from treadlab.config.errors import ConfigError, DeviceError


log = logging.getLogger(__name__)

NAT_CONNECT, NAT_SERVERINFO, NAT_REQUEST, NAT_RESPONSE = 0, 1, 2, 3
NAT_REQUEST_MODELDEF, NAT_MODELDEF, NAT_FRAMEOFDATA, NAT_KEEPALIVE = 4, 5, 7, 10
NATNET_VERSION = (3, 1, 0, 0)
#: the NatNet versions the emulator speaks: 3.1 (Motive 2.x) and 4.1 (Motive 3.x)
NATNET_VERSIONS = {"3.1": (3, 1, 0, 0), "4.1": (4, 1, 0, 0)}
SERVER_VERSION = (2, 3, 0, 0)
#: the Motive version announced with NatNet 4.1 (Motive 3.x)
MOTIVE3_VERSION = (3, 0, 3, 0)
TICKS_PER_S = 10_000_000
MARKER_SET = "Runner"
#: Motive frame → lab frame (Motive: Y up; lab: X forward, Y left, Z up):
#: lab X = Motive Z, lab Y = Motive X, lab Z = Motive Y.
MOTIVE_ROTATION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
#: client considered gone after this long without a keep-alive (s)
CLIENT_TIMEOUT_S = 3.0


@dataclass
class NatNetFaults:
    """What the emulated Motive does wrong (every N-th frame; 0 = never).

    loss_every, duplicate_every, reorder_every : drop a frame's datagram; send it twice; send
        it after the next one.
    vanish_at_s, vanish_for_s : Motive goes away ``vanish_at_s`` s after the first client
        connected (no answers, no frames, clients forgotten) and is back ``vanish_for_s`` s
        later.
    """

    loss_every: int = 0
    duplicate_every: int = 0
    reorder_every: int = 0
    vanish_at_s: float | None = None
    vanish_for_s: float = 1.0


def lab_to_motive(p_lab: np.ndarray) -> np.ndarray:
    """(..., 3) mm, lab frame → metres in Motive's default Y-up frame."""
    return np.asarray(p_lab, np.float64) @ MOTIVE_ROTATION * 1e-3


def natnet_table(address: tuple[str, int], multicast: tuple[str, int] | None = None) -> dict:
    """The ``[natnet]`` lab-config table reading the emulator at ``address``; ``multicast``
    (group, data port): the emulator multicasts its frames there (on loopback)."""
    out = {"server": address[0], "command_port": int(address[1]), "multicast": False,
           "marker_set": MARKER_SET, "units_m": 1000.0,
           "lab_from_motive": MOTIVE_ROTATION.tolist()}
    if multicast is not None:
        out.update(multicast=True, multicast_address=str(multicast[0]),
                   data_port=int(multicast[1]), local_address=address[0])
    return out


def _v41(version) -> bool:
    return tuple(version[:2]) >= (4, 1)


def _msg(mid: int, payload: bytes) -> bytes:
    return struct.pack("<HH", mid, len(payload)) + payload


def _cstr(s: str) -> bytes:
    return s.encode("utf-8") + b"\0"


def server_info(data_port: int, version=NATNET_VERSION, multicast: bool = False,
                group: str = "239.255.42.99") -> bytes:
    motive = SERVER_VERSION if not _v41(version) else MOTIVE3_VERSION
    payload = (b"Motive (treadlab emulator)".ljust(256, b"\0") + bytes(motive)
               + bytes(version) + struct.pack("<QHB", TICKS_PER_S, data_port, int(multicast))
               + socket.inet_aton(group))
    return _msg(NAT_SERVERINFO, payload)


def model_def(labels, version=NATNET_VERSION) -> bytes:
    """``NAT_MODELDEF``: one marker-set description; NatNet ≥ 4.1 puts each description's
    size in bytes after its type."""
    body = _cstr(MARKER_SET) + struct.pack("<I", len(labels)) + \
        b"".join(_cstr(str(x)) for x in labels)
    head = struct.pack("<II", 1, 0) + (struct.pack("<I", len(body)) if _v41(version) else b"")
    return _msg(NAT_MODELDEF, head + body)


def frame_of_data(frame: int, t_s: float, pos_m: np.ndarray, stray_m: np.ndarray,
                  version=NATNET_VERSION) -> bytes:
    """One NatNet frame (3.1, or 4.1 with ``version`` (4, 1, …)): the runner's marker set
    (``pos_m`` (k, 3) m, NaN → 0 as Motive sends occluded markers), its labelled markers
    (occluded ones flagged and left out) and ``stray_m`` unlabelled markers.

    NatNet 4.1 changes, as the ``natnet`` client parses them (``DataFrame.read_from_buffer``):
    every list section (marker sets, unlabelled markers, rigid bodies, skeletons, assets,
    labelled markers, force plates, devices) is its count followed by the section's size in
    bytes (uint32), and an *assets* list (count 0 here) comes between the skeletons and the
    labelled markers. Record layouts are those of 3.1; the frame suffix gains the precision
    timestamp (two int32 before the params) that the NatNet SDK's own Python client reads for
    NatNet ≥ 4 — the ``natnet`` 0.3.0 parser does not read it (its ``param`` flags are then
    wrong; treadlab uses only the float64 timestamp before it)."""
    v41 = _v41(version)

    def section(count: int, body: bytes = b"") -> bytes:
        return struct.pack("<II", count, len(body)) + body if v41 else \
            struct.pack("<I", count) + body

    k = pos_m.shape[0]
    seen = np.all(np.isfinite(pos_m), axis=1)
    p = np.where(np.isfinite(pos_m), pos_m, 0.0).astype("<f4")
    out = bytearray(struct.pack("<I", frame & 0xFFFFFFFF))
    out += section(1, _cstr(MARKER_SET) + struct.pack("<I", k) + p.tobytes())
    out += section(stray_m.shape[0], stray_m.astype("<f4").tobytes())
    out += section(0)                                         # rigid bodies
    out += section(0)                                         # skeletons
    if v41:
        out += section(0)                                     # assets (NatNet 4.1)
    labelled = [(j, p[j]) for j in range(k) if seen[j]]
    body = bytearray()
    for j, xyz in labelled:
        body += struct.pack("<I3ffHf", (1 << 16) | (j + 1), *map(float, xyz), 0.014, 0x04,
                            0.0002)
    for i, xyz in enumerate(stray_m):
        body += struct.pack("<I3ffHf", 50000 + i, *map(float, xyz), 0.01, 0x10 | 0x02, 0.0004)
    out += section(len(labelled) + stray_m.shape[0], bytes(body))
    out += section(0)                                         # force plates
    out += section(0)                                         # devices
    ticks = int(t_s * TICKS_PER_S)
    out += struct.pack("<IIdQQQ", 0, 0, float(t_s), ticks, ticks + 20000, ticks + 30000)
    if v41:       # the SDK's precision timestamp (NatNet >= 4): whole s, fraction (here ns)
        whole = math.floor(t_s)
        out += struct.pack("<ii", int(whole), int(round((t_s - whole) * 1e9)) % 1_000_000_000)
    out += struct.pack("<Hi", 0, 0)                           # params, end-of-data tag
    return _msg(NAT_FRAMEOFDATA, bytes(out))


class _MotiveServer:
    PACE_S = 0.002

    def __init__(self, spec: dict):
        self.labels = list(spec["labels"])
        self.rate = float(spec["marker_rate_hz"])
        self.faults: NatNetFaults = spec.get("faults") or NatNetFaults()
        if spec.get("replay") is not None:
            self.signal = spec["replay"]
        else:
            self.signal = RunnerSignal(spec["params"], spec["plates"], self.labels,
                                       spec.get("marker_names"))
        self.version = NATNET_VERSIONS[str(spec.get("natnet_version") or "3.1")]
        self.host = spec.get("host", "127.0.0.1")
        #: (group, data port): frames multicast there instead of unicast to each client
        self.multicast = tuple(spec["multicast"]) if spec.get("multicast") else None
        self.msock = None
        if self.multicast is not None:
            require_private_netns()
            self.msock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            self.msock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                  socket.inet_aton(self.host))
            self.msock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            # TTL 0: never routed off this host, whatever the namespace's routes
            self.msock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, int(spec.get("port") or 0)))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.clients: dict[tuple, float] = {}
        self.unloaded_s = float(spec.get("unloaded_s", 2.0))
        self.on_time = None
        self.first_client_at = None
        self.away_until = None
        self.vanish_plan = self.faults.vanish_at_s
        self._held = None
        self.stats = {k: 0 for k in ("frames", "datagrams", "lost", "duplicated", "reordered",
                                     "outages", "connects", "unlabelled")}

    def endpoints(self) -> dict:
        return {"natnet_address": (self.host, self.port),
                "subject": getattr(self.signal, "subject", {}), "pid": os.getpid()}

    def _send(self, data: bytes, addr) -> None:
        try:
            if self.multicast is not None and tuple(addr) == self.multicast:
                self.msock.sendto(data, addr)
            else:
                self.sock.sendto(data, addr)
            self.stats["datagrams"] += 1
        except OSError:
            pass

    def _poll(self, now: float) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.away_until is not None or len(data) < 4:
                continue                         # Motive is not there
            mid, size = struct.unpack_from("<HH", data)
            if mid == NAT_CONNECT:
                self.clients[addr] = now
                self.stats["connects"] += 1
                data_port, group = ((self.multicast[1], self.multicast[0]) if self.multicast
                                     else (self.port, "239.255.42.99"))
                self._send(server_info(data_port, self.version, self.multicast is not None,
                                       group), addr)
                if self.first_client_at is None:
                    self.first_client_at = now
                    self.on_time = math.ceil((now + self.unloaded_s) * self.rate) / self.rate
                    self.stats["on_marker_frame"] = int(round(self.on_time * self.rate))
            elif mid == NAT_KEEPALIVE:
                if addr in self.clients:
                    self.clients[addr] = now
            elif mid == NAT_REQUEST_MODELDEF:
                self._send(model_def(self.labels, self.version), addr)
            elif mid == NAT_REQUEST:
                self._send(_msg(NAT_RESPONSE, struct.pack("<i", 0)), addr)

    def _markers(self, j: int) -> np.ndarray:
        tr = j / self.rate - (self.on_time if self.on_time is not None else np.inf)
        if not (math.isfinite(tr) and tr >= 0):
            return np.full((len(self.labels), 3), np.nan)
        return self.signal.markers(np.array([round(tr * self.rate) / self.rate]))[0]

    def run(self, conn) -> None:
        start = time.monotonic()
        j_next = 0
        rng = np.random.default_rng(7)
        while True:
            try:
                if conn.poll(0):
                    msg = conn.recv()
                    if msg[0] == "stop":
                        conn.send({"stats": dict(self.stats)})
                        return
                    if msg[0] == "stats":
                        conn.send({"stats": dict(self.stats)})
                    elif msg[0] == "vanish":
                        self._vanish(time.monotonic() - start, float(msg[1]))
            except (EOFError, OSError):
                return
            now = time.monotonic() - start
            if self.away_until is not None and now >= self.away_until:
                self.away_until = None
                log.warning("back")
            if (self.vanish_plan is not None and self.first_client_at is not None
                    and now >= self.first_client_at + self.vanish_plan):
                self.vanish_plan = None
                self._vanish(now, self.faults.vanish_for_s)
            self._poll(now)
            for addr, seen in list(self.clients.items()):
                if now - seen > CLIENT_TIMEOUT_S:
                    del self.clients[addr]
            j_due = int(now * self.rate) + 1
            while j_next < j_due:
                j = j_next
                j_next += 1
                self.stats["frames"] += 1
                if self.multicast is not None:      # Motive multicasts once anyone connected
                    targets = [self.multicast] if self.first_client_at is not None else []
                else:
                    targets = list(self.clients)
                if self.away_until is not None or not targets:
                    continue
                pos = lab_to_motive(self._markers(j))
                stray = lab_to_motive(np.array([[1500.0, 900.0, 5.0], [-1200.0, -800.0, 2000.0]])
                                      + rng.normal(0, 2.0, (2, 3)))
                self.stats["unlabelled"] += 2
                pkt = frame_of_data(j, j / self.rate, pos, stray, self.version)
                fl = self.faults
                for addr in targets:
                    if fl.loss_every and j % fl.loss_every == 0:
                        self.stats["lost"] += 1
                        continue
                    if fl.reorder_every and j % fl.reorder_every == 0 and self._held is None:
                        self._held = (pkt, addr)
                        self.stats["reordered"] += 1
                        continue
                    self._send(pkt, addr)
                    if fl.duplicate_every and j % fl.duplicate_every == 0:
                        self._send(pkt, addr)
                        self.stats["duplicated"] += 1
                    if self._held is not None and self._held[0] is not pkt:
                        self._send(*self._held)
                        self._held = None
            time.sleep(min(0.01, max(self.PACE_S, j_next / self.rate
                                     - (time.monotonic() - start))))

    def _vanish(self, now: float, seconds: float) -> None:
        self.away_until = now + seconds
        self.clients.clear()
        if self._held is not None:           # held for reordering, now never sent: lost
            self.stats["reordered"] -= 1
            self.stats["lost"] += 1
            self._held = None
        self.stats["outages"] += 1
        log.warning("Motive away for %.2f s", seconds)

    def close(self) -> None:
        self.sock.close()
        if self.msock is not None:
            self.msock.close()


def require_private_netns() -> None:
    """DeviceError unless loopback is the only network interface this process sees — a
    network namespace a test made (``unshare --net``): multicast is emulated there only, never
    on a machine's shared network (and sent with TTL 0 besides)."""
    names = [name for _, name in socket.if_nameindex()]
    others = [n for n in names if n != "lo"]
    if others:
        raise DeviceError("NatNet emulator: multicast is emulated only inside a private "
                          "network namespace with loopback alone (unshare --net); this one "
                          f"has {', '.join(others)}: refused")


def _emulator_main(conn) -> None:
    serve_child(conn, "NatNet emulator", _MotiveServer)


def start_natnet_lab(cfg, params=None, replay=None, *, faults: NatNetFaults | None = None,
                     port: int = 0, host: str = "127.0.0.1", loop: bool = True,
                     start_timeout: float = 60.0, natnet_version: str = "3.1",
                     multicast: tuple[str, int] | None = None):
    """Run the emulated Motive of ``cfg`` (marker labels and rate) in its own process.

    ``natnet_version``: ``"3.1"`` (Motive 2.x) or ``"4.1"`` (Motive 3.x). ``multicast``:
    (group, data port) the frames are multicast to on ``host`` (TTL 0) instead of unicast —
    refused (DeviceError) outside a private network namespace.

    Returns a :class:`~treadlab.acquisition.sim.simulated.SimulatedLab` whose
    ``natnet_address`` is the (host, command port) to connect to.
    """
    if str(natnet_version) not in NATNET_VERSIONS:
        raise ConfigError(None, "--natnet-version", f"{natnet_version!r}: the emulator speaks "
                          f"{', '.join(NATNET_VERSIONS)}")
    plates = [p if isinstance(p, PlateCalibration) else PlateCalibration.from_table(p)
              for p in cfg.plates]
    labels = [str(x) for x in cfg.markers.labels]
    marker_names = plain_table(getattr(cfg, "marker_names", None)) or None
    spec = {"plates": plates, "labels": labels, "marker_rate_hz": float(cfg.markers.rate_hz),
            "faults": faults or NatNetFaults(), "marker_names": marker_names, "host": host,
            "port": int(port), "replay": None,
            "unloaded_s": float(getattr(cfg.forceplate, "tare_seconds", 1.0) or 0.0) + 1.0,
            "natnet_version": str(natnet_version),
            "multicast": tuple(multicast) if multicast else None,
            "log_level": logging.getLogger("treadlab").getEffectiveLevel()}
    replay_info = {}
    if replay is not None:
        spec["replay"] = ReplaySignal.from_c3d(replay, plates, labels,
                                               marker_names=marker_names, loop=loop)
        replay_info = {"source": str(replay), "duration_s": spec["replay"].duration_s,
                       "belt_speed_m_s": spec["replay"].belt_speed_m_s, "loop": bool(loop)}
    else:
        spec["params"] = runner_params(cfg, params)
    proc, conn, ep = spawn("treadlab.acquisition.sim.natnet_emulator", spec,
                           "NatNet emulator", start_timeout)
    lab = SimulatedLab(force_port=None, force_stream=None, marker_address=None,
                       marker_stream=None, subject=ep.get("subject") or {}, replay=replay_info,
                       _proc=proc, _conn=conn)
    lab.natnet_address = tuple(ep["natnet_address"])
    lab.natnet_version = str(natnet_version)
    lab.natnet_multicast = tuple(multicast) if multicast else None
    lab.protocol = "natnet"
    return lab


if __name__ == "__main__":          # the emulator process started by start_natnet_lab()
    _emulator_main(Connection(int(sys.argv[1])))
