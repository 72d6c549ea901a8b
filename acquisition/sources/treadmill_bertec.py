"""Belt speed of an instrumented treadmill: read it as a stream, set it for speed protocols.

Protocol: the remote-control interface of Bertec's Treadmill Control Panel (TCP, port 4000
by default; "Remote Control" enabled in the panel's settings). Bertec describes it in the
manual that ships with the Control Panel, which is not public; the layout implemented here is
exactly the one used by public lab code that drives Bertec treadmills — the University of
Michigan Locomotor Control Lab's ``SelfPacedTMVicon`` (MATLAB) and its Python port in the
exoboot controller — and nothing beyond it:

- command (client → treadmill), 64 bytes: format byte 0; nine big-endian int16: right belt
  speed, left belt speed, two unused belt speeds (mm/s), right and left acceleration, two
  unused accelerations (mm/s²), incline (0.01°); the 18 bytes of those nine values again,
  each as 255 − byte (the treadmill's integrity check); 27 zero bytes;
- feedback (treadmill → client), 32-byte packets: format byte; big-endian int16 right and
  left belt speed (mm/s, signed), two more belt speeds, incline (0.01°); only bytes 0–10 are
  read.

The feedback carries no counter and no clock: ``seq`` counts packets and the device time is
the host receipt time, so losses cannot be detected from the stream itself (TCP does not lose
packets; a lost connection is a ``disconnect`` event and the reader reconnects every
``reconnect_s`` s). A feedback packet that is not 32 bytes long at the end of a read is kept
until the rest arrives.

:class:`TreadmillBertec` is a :class:`~treadlab.acquisition.sources.base.Source` of kind
``"belt"``: blocks of (n, 2) belt speeds in m/s, ``[left, right]`` (lab names; Bertec sends
right first), recorded in ``/raw/belt``. :meth:`TreadmillBertec.set_speed` sends a command;
:class:`SpeedProtocol` runs stages (``2.5:60,3.5:60,4.5:60`` = 2.5 m/s for 60 s, …).
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, fields

import numpy as np

from treadlab.acquisition.sources.base import Block, Source, StreamInfo
from treadlab.config.errors import ConfigError, DeviceError
from treadlab.config.schema import TreadmillTable, check_table

log = logging.getLogger(__name__)

COMMAND_SIZE = 64
FEEDBACK_SIZE = 32
BELTS = ["left", "right"]


def encode_command(right_m_s: float, left_m_s: float, accel_m_s2: float,
                   incline_deg: float = 0.0) -> bytes:
    """The 64-byte speed command (speeds m/s, acceleration m/s², incline degrees)."""
    vals = [round(right_m_s * 1000), round(left_m_s * 1000), 0, 0,
            round(accel_m_s2 * 1000), round(accel_m_s2 * 1000), 0, 0, round(incline_deg * 100)]
    body = struct.pack(">9h", *vals)
    check = bytes(255 - b for b in body)
    return bytes([0]) + body + check + bytes(27)


def decode_command(packet: bytes) -> tuple[float, float, float, float]:
    """(right m/s, left m/s, acceleration m/s² (right belt's), incline °); ValueError when the
    packet is not 64 bytes or its check bytes do not match."""
    if len(packet) != COMMAND_SIZE:
        raise ValueError(f"{len(packet)} bytes, expected {COMMAND_SIZE}")
    body, check = packet[1:19], packet[19:37]
    if any(c != 255 - b for b, c in zip(body, check)):
        raise ValueError("check bytes (255 − byte) do not match")
    v = struct.unpack(">9h", body)
    return v[0] / 1000.0, v[1] / 1000.0, v[4] / 1000.0, v[8] / 100.0


def encode_feedback(right_m_s: float, left_m_s: float, incline_deg: float = 0.0) -> bytes:
    body = struct.pack(">5h", round(right_m_s * 1000), round(left_m_s * 1000), 0, 0,
                       round(incline_deg * 100))
    return bytes([0]) + body + bytes(FEEDBACK_SIZE - 1 - len(body))


def decode_feedback(packets: bytes) -> np.ndarray:
    """(n, 3) float64: left, right (m/s), incline (°) of ``n`` concatenated 32-byte packets."""
    n = len(packets) // FEEDBACK_SIZE
    a = np.frombuffer(packets[:n * FEEDBACK_SIZE], np.uint8).reshape(n, FEEDBACK_SIZE)
    v = a[:, 1:11].copy().view(">i2").astype(np.float64)       # (n, 5)
    return np.column_stack([v[:, 1] / 1000.0, v[:, 0] / 1000.0, v[:, 4] / 100.0])


@dataclass
class TreadmillSettings(TreadmillTable):
    """The ``[treadmill]`` table as the driver takes it: the fields, units and defaults of
    :class:`treadlab.config.schema.TreadmillTable` (driver ``"bertec"``, host, port 4000,
    accel_m_s2 m/s², max_speed_m_s m/s, incline_deg °, rate_hz Hz, reconnect_s s), checked by
    that declaration when built (ConfigError naming ``treadmill.<key>``)."""

    def __post_init__(self):
        check_table(self, TreadmillTable, "treadmill")

    @classmethod
    def from_config(cls, cfg) -> "TreadmillSettings":
        path = getattr(cfg, "path", None)
        table = getattr(cfg, "treadmill", None)
        if table is None:
            raise ConfigError(path, "treadmill", "missing")
        table = dict(table) if isinstance(table, dict) else dict(vars(table))
        checked = check_table(table, TreadmillTable, "treadmill", path)
        return cls(**{f.name: getattr(checked, f.name) for f in fields(TreadmillTable)})


class TreadmillBertec(Source):
    """Belt speeds from a Bertec treadmill's remote-control port; speed commands to it.

    Parameters
    ----------
    settings : :class:`TreadmillSettings` (host, port, …).
    name : source name in events.
    """

    kind = "belt"

    def __init__(self, settings: TreadmillSettings, name: str = "belt"):
        super().__init__(name)
        self.settings = settings
        self.where = f"bertec://{settings.host}:{settings.port}"
        self.port = self.where
        self.info = StreamInfo(stream="belt", rate_hz=float(settings.rate_hz),
                               labels=list(BELTS), channels=0, sample_type="float32")
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._buf = b""
        self._seq = 0
        self._lost_at: float | None = None
        self._next_try = 0.0
        #: last measured [left, right] m/s and incline °
        self.last = np.full(3, np.nan)

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "TreadmillBertec":
        s = TreadmillSettings.from_config(cfg)
        if lab is not None and getattr(lab, "treadmill_address", None):
            s.host, s.port = lab.treadmill_address[0], int(lab.treadmill_address[1])
        elif s.host == "auto":
            raise ConfigError(getattr(cfg, "path", None), "treadmill.host",
                              "\"auto\" is the simulated treadmill: start it first")
        return cls(s, **kw)

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.settings.host, int(self.settings.port)), timeout=2.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def _open(self) -> None:
        try:
            self._sock = self._connect()
        except OSError as exc:
            raise DeviceError(f"{self.where}: cannot connect ({exc.strerror or exc}; is "
                              "\"Remote Control\" enabled in the Treadmill Control "
                              "Panel?)") from None
        self._buf = b""

    def _close(self) -> None:
        with self._send_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _acquire(self, timeout: float) -> None:
        sock = self._sock
        if sock is None:
            self._reconnect()
            self._stop.wait(min(timeout, 0.05))
            return
        sock.settimeout(timeout)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        host = time.monotonic()
        self._buf += data
        n = len(self._buf) // FEEDBACK_SIZE
        if n == 0:
            return
        vals = decode_feedback(self._buf[:n * FEEDBACK_SIZE])
        self._buf = self._buf[n * FEEDBACK_SIZE:]
        self.last = vals[-1].copy()
        seq = self._seq + np.arange(n, dtype=np.int64)
        self._seq += n
        t = np.full(n, host)
        self._push(Block(stream="belt", device_time=t, host_time=t.copy(),
                         data=vals[:, :2].astype(np.float32), seq=seq))

    def _lost(self) -> None:
        with self._send_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        self._lost_at = time.monotonic()
        self._buf = b""
        self._event("disconnect", f"{self.where}: connection lost; reconnecting every "
                    f"{self.settings.reconnect_s:g} s", level=logging.WARNING)

    def _reconnect(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        self._next_try = now + float(self.settings.reconnect_s)
        try:
            sock = self._connect()
        except OSError:
            return
        with self._send_lock:
            self._sock = sock
        self._event("reconnect", f"{self.where}: connected again after "
                    f"{now - (self._lost_at or now):.2f} s", counter="reconnects")

    def set_speed(self, left_m_s: float, right_m_s: float | None = None,
                  accel_m_s2: float | None = None) -> None:
        """Command the belt speeds (m/s; ``right`` = ``left`` when not given) at
        ``accel_m_s2`` (default: the table's). ValueError above ``max_speed_m_s``;
        DeviceError when the treadmill is not connected."""
        right_m_s = left_m_s if right_m_s is None else right_m_s
        limit = float(self.settings.max_speed_m_s)
        for v in (left_m_s, right_m_s):
            if not abs(v) <= limit:
                raise ValueError(f"{self.where}: {v:g} m/s exceeds treadmill.max_speed_m_s "
                                 f"= {limit:g}")
        acc = float(accel_m_s2 if accel_m_s2 is not None else self.settings.accel_m_s2)
        pkt = encode_command(right_m_s, left_m_s, acc, float(self.settings.incline_deg))
        with self._send_lock:
            if self._sock is None:
                raise DeviceError(f"{self.where}: not connected; speed {left_m_s:g}/"
                                  f"{right_m_s:g} m/s not sent")
            try:
                self._sock.sendall(pkt)
            except OSError as exc:
                raise DeviceError(f"{self.where}: speed command not sent: {exc}") from None
        self._event("set_speed", f"{self.where}: belts set to left {left_m_s:g}, right "
                    f"{right_m_s:g} m/s at {acc:g} m/s²", level=logging.INFO)


def parse_protocol(text: str) -> list[tuple[float, float]]:
    """``"2.5:60,3.5:60,4.5:60"`` → [(2.5 m/s, 60 s), …]; ConfigError naming
    ``--speed-protocol`` for anything else."""
    stages = []
    for i, part in enumerate(str(text).split(",")):
        speed, sep, dur = part.strip().partition(":")
        try:
            v, d = float(speed), float(dur)
        except ValueError:
            raise ConfigError(None, "--speed-protocol", f"stage {i + 1} {part.strip()!r} is "
                              "not SPEED:SECONDS (m/s:s)") from None
        if not sep or not (0 <= v <= 30) or not d > 0:
            raise ConfigError(None, "--speed-protocol", f"stage {i + 1} {part.strip()!r}: "
                              "speed 0..30 m/s and a duration > 0 s")
        stages.append((v, d))
    if not stages:
        raise ConfigError(None, "--speed-protocol", "no stages")
    return stages


class SpeedProtocol:
    """Runs speed stages on a :class:`TreadmillBertec` in its own thread: at each stage start
    both belts are commanded to its speed; the stage lasts its duration (s) from then."""

    def __init__(self, treadmill: TreadmillBertec, stages: list[tuple[float, float]]):
        self.treadmill = treadmill
        self.stages = list(stages)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        self.error: BaseException | None = None

    @property
    def duration_s(self) -> float:
        return float(sum(d for _, d in self.stages))

    def start(self) -> "SpeedProtocol":
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="treadlab-speed-protocol")
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i, (speed, dur) in enumerate(self.stages):
                if self._stop.is_set():
                    return
                self.treadmill._event("protocol", f"stage {i + 1}/{len(self.stages)}: "
                                      f"{speed:g} m/s for {dur:g} s", level=logging.INFO)
                self.treadmill.set_speed(speed)
                if self._stop.wait(dur):
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the capture
            self.error = exc
            self.treadmill._event("error", f"speed protocol stopped: {exc}",
                                  level=logging.ERROR)
        finally:
            self.done.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
