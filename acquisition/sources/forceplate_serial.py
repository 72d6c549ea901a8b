"""The force-plate treadmill over a serial port (docs/wire.md §1).

:class:`ForcePlateSerial` reads the port in its own thread (the recorder is never blocked),
decodes frames with :class:`treadlab.acquisition.sources.wire.ForceFrameDecoder`, converts ADC counts →
volts → the lab-frame wrench of each plate with the plate's 6×6 calibration (zero offset
subtracted), and survives the port disappearing: a ``SerialException`` closes the port and it
is reopened with back-off (each loss logged as ``disconnect``, each return as ``reconnect``);
frames lost meanwhile are counted as drops from the sequence gap.

Tare: with ``tare_seconds > 0`` the first ``tare_seconds`` of frames after :meth:`open` (belt
unloaded) are averaged into the zero offset before any block is released; those frames are then
converted with the new zero and released, so nothing is lost. :meth:`ForcePlateSerial.tare`
measures a new zero on demand. The zero is part of :attr:`ForcePlateSerial.calibration`, which the
recorder stores with the raw counts.

Reading (latency vs. CPU): a read takes everything that has arrived, waiting up to the reader's
timeout for the first byte when nothing has (no fixed batch size), and reads are at least
``read_interval_s`` (10 ms) apart, so a frame reaches the queue at most about that long after
it arrived while the reader, the capture loop and the live processor wake about 100 times a
second rather than once per write. POSIX ports are read with one non-blocking ``read(2)`` on the port's
descriptor (``select(2)`` only when it is empty); other URLs through pyserial. A clean stream is
decoded on a fast path (``binascii.crc_hqx`` per frame, one structured view); anything unusual
goes through :class:`~treadlab.acquisition.sources.wire.ForceFrameDecoder`, whose result it always is.

Serial ports are opened through ``serial.serial_for_url``: a device path, a pty, ``loop://`` or
``socket://`` all work. The link budget (rate × frame size vs. baud) is checked by the config.
"""
from __future__ import annotations

import logging
import os
import select
import threading
import time
from binascii import crc_hqx
from dataclasses import dataclass, field, fields

import numpy as np
import serial

try:
    from serial.serialposix import Serial as _PosixSerial
except ImportError:     # not a POSIX system: every port is read through pyserial
    _PosixSerial = None

from treadlab.acquisition.sources.base import Block, Source, StreamInfo, table_values
from treadlab.acquisition.sources.wire import SAMPLE_TYPES, ForceFrameDecoder, ForceFrames
from treadlab.config.errors import ConfigError, DeviceError
from treadlab.config.schema import (ForcePlateConfig, check_link_budget, check_plates,
                                    check_table)

log = logging.getLogger(__name__)


# --- settings -------------------------------------------------------------------------------

@dataclass
class ForcePlateSettings(ForcePlateConfig):
    """The ``[forceplate]`` table of the lab config, as the force drivers take it.

    The fields, their units and defaults are the config schema's
    (:class:`treadlab.config.schema.ForcePlateConfig`: driver, port, baud, rate_hz, channels,
    sample_type, volts_per_count, tare_seconds, stream_name, and the derived ``frame_bytes`` and
    ``line_bits_per_s``); this adds building from any table-like object and the checks a driver
    needs when it is constructed without the config loader (tests, scripts).
    """

    @classmethod
    def from_table(cls, table) -> "ForcePlateSettings":
        """From the config's ``forceplate`` table (dataclass, namespace or dict)."""
        return cls(**table_values(table, [f.name for f in fields(cls)]))

    def __post_init__(self):
        # the schema's declaration is the one check (ConfigError naming forceplate.<key>)
        checked = check_table(self, ForcePlateConfig, "forceplate")
        for name in ForcePlateConfig.__dataclass_fields__:
            setattr(self, name, getattr(checked, name))


@dataclass
class PlateCalibration:
    """One ``[[plates]]`` entry: which device channels feed the plate and how.

    Attributes
    ----------
    name : plate name.
    channels : 6 indices into the device channel list.
    calibration : (6, 6) float64, volts → ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and N·m, lab frame
        (``wrench = calibration @ volts``).
    origin : (3,) float64 mm, lab frame: the point moments are taken about.
    corners : (4, 3) float64 mm, lab frame.
    """

    name: str
    channels: list[int]
    calibration: np.ndarray
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    corners: np.ndarray = field(default_factory=lambda: np.zeros((4, 3)))

    @classmethod
    def from_table(cls, table) -> "PlateCalibration":
        v = table_values(table, ["name", "channels", "calibration", "origin", "corners"])
        return cls(**v)

    def __post_init__(self):
        self.channels = [int(c) for c in self.channels]
        self.calibration = np.asarray(self.calibration, dtype=np.float64)
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(3)
        self.corners = np.asarray(self.corners, dtype=np.float64).reshape(4, 3)


class ForceCalibration:
    """Counts → volts → lab-frame wrench, and back (for the virtual treadmill).

    Parameters
    ----------
    plates : the plates, each with 6 channel indices and a 6×6 volts → N/N·m matrix.
    channels : ADC channels per frame.
    volts_per_count : V per count.
    zero : (channels,) float64 counts subtracted before scaling (the tare); default 0.
    """

    def __init__(self, plates: list[PlateCalibration], channels: int, volts_per_count: float,
                 zero=None):
        self.plates = list(plates)
        self.n_channels = int(channels)
        self.volts_per_count = float(volts_per_count)
        # the config schema's plate rules; a channel may feed several plates here
        check_plates(self.plates, self.n_channels, shared_ok=True)
        self.index = np.array([p.channels for p in self.plates], dtype=np.intp).reshape(-1, 6)
        self.matrix = np.array([p.calibration for p in self.plates],
                               dtype=np.float64).reshape(-1, 6, 6)
        # counts → all plates' wrenches as one (c, p·6) matrix (a channel may feed several plates)
        flat = np.zeros((self.n_channels, self.matrix.shape[0] * 6))
        for k in range(self.matrix.shape[0]):
            for j in range(6):
                flat[self.index[k, j], 6 * k:6 * k + 6] += self.matrix[k, :, j]
        self._flat = flat * self.volts_per_count
        self.zero = zero

    @property
    def zero(self) -> np.ndarray:
        """(c,) float64 counts subtracted before scaling (the tare)."""
        return self._zero

    @zero.setter
    def zero(self, value) -> None:
        self._zero = (np.zeros(self.n_channels) if value is None
                      else np.asarray(value, dtype=np.float64).reshape(self.n_channels).copy())
        self._offset = self._zero @ self._flat          # the zero's wrench, subtracted once

    @property
    def plate_names(self) -> list[str]:
        return [p.name for p in self.plates]

    def wrench(self, counts: np.ndarray) -> np.ndarray:
        """Lab-frame wrench of every plate.

        Parameters
        ----------
        counts : (n, c) integer ADC counts.

        Returns
        -------
        (n, p, 6) float32 ``[Fx, Fy, Fz, Mx, My, Mz]``, N and N·m.
        """
        counts = np.asarray(counts)
        # one (n, c) @ (c, p·6) product: volts = (counts − zero) · V/count, wrench = C @ volts
        w = counts.astype(np.float64, copy=False) @ self._flat
        w -= self._offset
        return w.astype(np.float32).reshape(counts.shape[0], -1, 6)

    def counts(self, wrench: np.ndarray, zero=None, dtype="int16") -> tuple[np.ndarray, int]:
        """ADC counts that produce ``wrench`` (the inverse calibration, for simulators).

        Parameters
        ----------
        wrench : (n, p, 6) float, N and N·m, lab frame.
        zero : (c,) counts added (the amplifier offset); default the current zero.
        dtype : ``"int16"`` or ``"int32"``.

        Returns
        -------
        counts : (n, c) int16/int32 (rounded, clipped to the type's range).
        clipped : how many values saturated.
        """
        wrench = np.asarray(wrench, dtype=np.float64)
        volts = np.zeros((wrench.shape[0], self.n_channels))
        for k in range(self.matrix.shape[0]):
            volts[:, self.index[k]] = np.linalg.solve(self.matrix[k], wrench[:, k, :].T).T
        z = self.zero if zero is None else np.asarray(zero, dtype=np.float64)
        c = np.rint(volts / self.volts_per_count + z)
        info = np.iinfo(SAMPLE_TYPES[dtype])
        clipped = int(np.count_nonzero((c < info.min) | (c > info.max)))
        return np.clip(c, info.min, info.max).astype(SAMPLE_TYPES[dtype]), clipped

    def as_dict(self) -> dict:
        """The archive's ``ForceData.calibration``: volts_per_count, zero, channels, matrix."""
        return {"volts_per_count": self.volts_per_count, "zero": self.zero.copy(),
                "channels": self.index.copy(), "matrix": self.matrix.copy()}


# --- the decoder's fast path ---------------------------------------------------------------------


class _FastDecoder(ForceFrameDecoder):
    """:class:`ForceFrameDecoder` with a fast path for a clean, locked stream.

    When the decoder is locked and the bytes at hand are whole frames with good syncs and CRCs,
    consecutive sequence numbers and a forward clock (what a healthy device sends), they are
    checked with a few C-level calls (strided byte slices for the syncs, ``binascii.crc_hqx`` —
    CRC-16/CCITT-FALSE with init 0xFFFF — per frame, list comparisons) and decoded with one
    structured view. Anything else — garbage, a torn frame, a bad CRC, a gap, a duplicate, a
    clock reset, the first frames — goes through the general decoder untouched, so the result
    is always the general decoder's.
    """

    def __init__(self, channels: int, sample_type: str = "int16", rate_hz: float | None = None):
        super().__init__(channels, sample_type, rate_hz)
        # a larger step of the clock could hide a wrap of the u16 sequence (the general path)
        self._dt_max = (1 << 31) if not self.rate_hz else min(
            1 << 31, int(32767.0 / (self.rate_hz * 1e-6)))

    def feed(self, data: bytes | bytearray | memoryview) -> ForceFrames:
        F = self.size
        held = len(self._buf)
        n = (held + len(data)) // F
        if self._hunting or self._last_seq16 is None or n == 0:
            return super().feed(data)
        whole = (bytes(self._buf) + bytes(data)) if held else bytes(data)
        end = n * F
        if whole[0:end:F] != b"\xa5" * n or whole[1:end:F] != b"\x5a" * n:
            return super().feed(data)
        frames = np.frombuffer(whole, dtype=self.dtype, count=n)
        mv = memoryview(whole)
        crcs = [crc_hqx(mv[i:i + F - 4], 0xFFFF) for i in range(2, end, F)]
        if crcs != frames["crc"].tolist():
            return super().feed(data)
        a = (self._last_seq16 + 1) & 0xFFFF
        expect = (list(range(a, a + n)) if a + n <= 0x10000
                  else list(range(a, 0x10000)) + list(range(a + n - 0x10000)))
        if frames["seq"].tolist() != expect:
            return super().feed(data)
        t_prev, t_max, u = self._last_t32, self._dt_max, self._t_us
        t_us = []
        for t in frames["time_us"].tolist():
            d = (t - t_prev) & 0xFFFFFFFF
            if d >= t_max:                  # clock reset or a long gap
                return super().feed(data)
            u += d
            t_us.append(u)
            t_prev = t
        # accepted: the same state changes the general decoder makes for these frames
        del self._buf[:]
        if len(whole) > end:
            self._buf += mv[end:]
        offset = np.arange(self._base, self._base + end, F, dtype=np.int64)
        self._base += end
        seq = np.arange(self._seq + 1, self._seq + n + 1, dtype=np.int64)
        self._last_seq16, self._last_t32 = expect[-1], t_prev
        self._seq, self._t_us = self._seq + n, u
        self.stats["frames"] += n
        return ForceFrames(seq, np.array(t_us, dtype=np.int64), frames["values"].copy(), offset,
                           [])


# --- the force source (shared with the LSL force inlet) ---------------------------------------

class ForceSourceBase(Source):
    """A force source: calibration, tare and block building shared by serial and LSL drivers.

    A driver calls :meth:`_deliver` with each run of decoded frames; the base class holds them
    while a tare is being measured and releases them converted with the new zero.
    """

    kind = "force"

    def __init__(self, name: str, settings: ForcePlateSettings, plates, zero=None,
                 auto_tare: bool | None = None):
        super().__init__(name)
        self.settings = settings
        plates = [p if isinstance(p, PlateCalibration) else PlateCalibration.from_table(p)
                  for p in plates]
        if not plates:
            raise ConfigError(None, "plates", "no force plates configured")
        self.cal = ForceCalibration(plates, settings.channels, settings.volts_per_count, zero)
        self.info = StreamInfo(stream="force", rate_hz=float(settings.rate_hz),
                               labels=self.cal.plate_names, channels=int(settings.channels),
                               sample_type=settings.sample_type, plates=self.cal.plate_names)
        self._auto_tare = (settings.tare_seconds > 0) if auto_tare is None else auto_tare
        self._tare_lock = threading.Lock()
        self._tare_need = 0               # frames still to collect (0 = no tare running)
        self._tare_sum: np.ndarray | None = None
        self._tare_n = 0
        self._tare_held: list[tuple] = []
        self._tare_done = threading.Event()
        self._tare_done.set()
        self._tared = False               # a zero was measured since open()

    @property
    def calibration(self) -> dict:
        """The calibration in use, with the tare zero (stored in the archive)."""
        return self.cal.as_dict()

    @property
    def zero(self) -> np.ndarray:
        """(c,) float64 counts: the zero offset subtracted before scaling."""
        return self.cal.zero.copy()

    def _start_tare(self, seconds: float) -> None:
        with self._tare_lock:
            if self._tare_need:
                return
            self._tare_need = max(1, int(round(seconds * self.info.rate_hz)))
            self._tare_sum = np.zeros(self.info.channels)
            self._tare_n = 0
            self._tare_done.clear()

    def open(self) -> None:
        if not self.is_open:
            self._tared = False
            if self._auto_tare:
                self._start_tare(self.settings.tare_seconds)
        super().open()

    def tare(self, seconds: float | None = None, timeout: float | None = None) -> np.ndarray:
        """Measure the zero offset over ``seconds`` of frames (belt unloaded) and keep it.

        If a tare is already running (the automatic one after :meth:`open`), waits for it
        instead of starting another; with ``seconds=None`` a zero already measured since
        :meth:`open` is returned as is (so the capture can call ``tare()`` after an automatic
        tare without re-taring a loaded belt). Frames arriving meanwhile are held and released
        converted with the new zero.

        Returns
        -------
        (c,) float64 counts: the new zero.

        Raises
        ------
        DeviceError when too few frames arrive within ``timeout`` (default 2 × seconds + 5 s).
        """
        if not self.is_open:
            raise DeviceError(f"{self._where()}: tare needs an open source")
        again = seconds is not None or not (self._tared or self._tare_need)
        seconds = self.settings.tare_seconds if seconds is None else float(seconds)
        if again:
            self._start_tare(max(seconds, 1.0 / self.info.rate_hz))
        timeout = 2 * seconds + 5.0 if timeout is None else timeout
        if not self._tare_done.wait(timeout):
            with self._tare_lock:
                n, need = self._tare_n, self._tare_need
            self._finish_tare(force=True)
            raise DeviceError(f"{self.name}: tare got {n} of {n + need} frames in "
                              f"{timeout:.1f} s from {self._where()}")
        return self.zero

    def wait_tare(self, timeout: float) -> bool:
        """Wait for a running tare; True when none is running any more."""
        return self._tare_done.wait(timeout)

    def _where(self) -> str:
        return self.settings.port

    def _finish_tare(self, force: bool = False) -> None:
        """Set the zero from what was collected; release the held frames. Under _tare_lock."""
        with self._tare_lock:
            if self._tare_n and not force:
                self.cal.zero = self._tare_sum / self._tare_n
                self._tared = True
                self._event("tare", f"zero offset from {self._tare_n} frames (belt unloaded): "
                            + " ".join(f"{z:.1f}" for z in self.cal.zero))
            elif force:
                self._event("tare", f"only {self._tare_n} frames during the tare: zero offset "
                            "unchanged", level=logging.WARNING)
            held, self._tare_held = self._tare_held, []
            self._tare_need = 0
            self._tare_sum = None
            for args in held:
                self._push(self._block(*args))
            self._tare_done.set()

    def _block(self, counts, seq, device_time, host_time) -> Block:
        return Block(stream="force", device_time=device_time, host_time=host_time,
                     data=self.cal.wrench(counts), raw=counts, seq=seq)

    def _deliver(self, counts: np.ndarray, seq: np.ndarray, device_time: np.ndarray,
                 host_time: np.ndarray) -> None:
        """Push decoded frames (reader thread): (n, c) counts, (n,) seq, (n,) s, (n,) s."""
        if not len(seq):
            return
        finish = False
        with self._tare_lock:
            if self._tare_need:
                take = min(self._tare_need, len(seq))
                self._tare_sum += counts[:take].sum(axis=0, dtype=np.float64)
                self._tare_n += take
                self._tare_need -= take
                self._tare_held.append((counts, seq, device_time, host_time))
                finish = self._tare_need == 0
                if not finish:
                    return
        if finish:
            self._finish_tare()
            return
        self._push(self._block(counts, seq, device_time, host_time))


class ForcePlateSerial(ForceSourceBase):
    """The force-plate treadmill on a serial port.

    Parameters
    ----------
    settings : :class:`ForcePlateSettings` (the ``[forceplate]`` table).
    plates : the ``[[plates]]`` entries (:class:`PlateCalibration` or config tables).
    name : source name in events.
    zero : (c,) counts, a known zero offset (default 0 until the tare).
    auto_tare : tare over ``settings.tare_seconds`` at open (default: when tare_seconds > 0).
    max_backoff : s, longest wait between attempts to reopen a vanished port.
    read_interval_s : s, shortest time between two reads of the port. A read blocks until the
        first byte arrives and then takes everything waiting (no fixed batch size), so a frame
        is received at most ``read_interval_s`` after it arrived; the interval only bounds how
        often the reader (and everything downstream) wakes. 0 = read as soon as bytes arrive.
    """

    def __init__(self, settings: ForcePlateSettings, plates, name: str = "force", zero=None,
                 auto_tare: bool | None = None, max_backoff: float = 1.0,
                 read_interval_s: float = 0.010):
        if not isinstance(settings, ForcePlateSettings):
            settings = ForcePlateSettings.from_table(settings)
        super().__init__(name, settings, plates, zero=zero, auto_tare=auto_tare)
        if settings.port in (None, "", "auto"):
            raise ConfigError(None, "forceplate.port",
                              "'auto' needs the simulated lab's pty (start_lab) or a real port")
        check_link_budget(settings)                                # 8N1: 10 bits per byte
        self.port = str(settings.port)
        self.decoder = _FastDecoder(settings.channels, settings.sample_type, settings.rate_hz)
        self._ser: serial.SerialBase | None = None
        self._max_backoff = float(max_backoff)
        self._backoff = 0.05
        self._retry_at = 0.0
        self._lost_at: float | None = None
        self.read_interval_s = float(read_interval_s)
        self._next_read = 0.0
        self._fd: int | None = None         # the port's file descriptor (POSIX ports)

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "ForcePlateSerial":
        """From a ``LabConfig``; with a simulated ``lab`` its pty replaces the port."""
        settings = ForcePlateSettings.from_table(cfg.forceplate)
        if lab is not None and getattr(lab, "force_port", None):
            settings.port = lab.force_port
        elif settings.port in (None, "", "auto"):
            raise ConfigError(getattr(cfg, "path", None), "forceplate.port",
                              "'auto' is the simulated lab's pty: start it first")
        return cls(settings, cfg.plates, **kw)

    def _open_port(self):
        ser = serial.serial_for_url(self.port, baudrate=int(self.settings.baud),
                                    timeout=0.05, write_timeout=0.5)
        self._fd = None
        if _PosixSerial is not None and isinstance(ser, _PosixSerial):
            self._fd = ser.fileno()
            os.set_blocking(self._fd, False)
        return ser

    def _open(self) -> None:
        try:
            self._ser = self._open_port()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"{self.port}: cannot open the force-plate port: {exc}") from None
        self._backoff = 0.05

    def _close(self) -> None:
        ser, self._ser = self._ser, None
        self._fd = None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass
        self._wire_events(self.decoder.flush())

    def _where(self) -> str:
        return self.port

    def _lost(self, exc: Exception) -> None:
        ser, self._ser = self._ser, None
        self._fd = None
        try:
            ser.close()
        except (serial.SerialException, OSError, AttributeError):
            pass
        self._lost_at = time.monotonic()
        self._retry_at = self._lost_at + self._backoff
        self._event("disconnect", f"{self.port}: {exc}; reopening with back-off",
                    level=logging.WARNING)
        self._wire_events(self.decoder.reset())

    def _reconnect(self, timeout: float) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            self._stop.wait(min(timeout, self._retry_at - now))
            return
        try:
            self._ser = self._open_port()
        except (serial.SerialException, OSError, ValueError):
            self._backoff = min(self._backoff * 2, self._max_backoff)
            self._retry_at = time.monotonic() + self._backoff
            return
        gone = time.monotonic() - (self._lost_at or now)
        self._backoff = 0.05
        self._event("reconnect", f"{self.port} reopened after {gone:.2f} s",
                    counter="reconnects", level=logging.WARNING)

    def _acquire(self, timeout: float) -> None:
        if self._ser is None:
            self._reconnect(timeout)
            return
        # pace the reads: at most one per read_interval_s, so a device writing every frame does
        # not wake this thread (and the capture loop and live processor after it) 2000 times/s
        wait = self._next_read - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))      # a few ms: close() still joins promptly
        try:
            data = self._read_available(self._ser, timeout)
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return
        if not data:
            return
        host = time.monotonic()
        self._next_read = host + self.read_interval_s
        frames = self.decoder.feed(data)
        if frames.events:
            self._wire_events(frames.events)
        n = len(frames)
        if n:
            self._deliver(frames.values, frames.seq, frames.device_time, np.full(n, host))

    def _read_available(self, ser, timeout: float) -> bytes:
        """Everything that has arrived; if nothing has, wait up to ``timeout`` s for the first
        byte and take what is there then. No fixed batch size.

        Raises SerialException/OSError when the device is gone.
        """
        fd = self._fd
        if fd is not None:
            # a POSIX port (device or pty): one non-blocking read(2) (pyserial sets VMIN = 0, so
            # an empty port reads as b""), select(2) only when nothing is there
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                data = b""
            if data:
                return data
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b""
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                return b""
            if not data:        # readable but empty: pyserial's sign of a vanished device
                raise serial.SerialException("device reports readiness to read but returned "
                                             "no data (device disconnected?)")
            return data
        # any other pyserial URL (loop://, socket://, …): through pyserial's read
        n = ser.in_waiting
        if n:
            return ser.read(n)
        if ser.timeout != timeout:
            ser.timeout = timeout
        data = ser.read(1)
        if data:
            n = ser.in_waiting
            if n:
                data += ser.read(n)
        return data

    _COUNTER = {"resync": "resyncs", "crc_error": "crc_errors", "drop": "drops",
                "duplicate": "duplicates"}

    def _wire_events(self, events) -> None:
        for ev in events:
            if ev.kind in ("sync", "resync", "crc_error", "truncated"):
                self._count("discarded_bytes", ev.count)
            counter = self._COUNTER.get(ev.kind)
            n = ev.count if ev.kind == "drop" else 1
            level = logging.DEBUG if ev.kind == "sync" else logging.INFO
            self._event(ev.kind, f"{self.port}: {ev.detail}", counter=counter, n=n, level=level)
