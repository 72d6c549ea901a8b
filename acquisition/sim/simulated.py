"""Virtual devices: a treadmill on a pseudo-terminal and a mocap system on loopback UDP / LSL.

:func:`start_lab` runs the virtual devices of a lab config in a separate process (so they never
compete with the capture for its GIL) and returns a :class:`SimulatedLab` with the endpoints:
``force_port`` (a stable symlink to a raw-mode pty) or ``force_stream`` (LSL), and
``marker_address`` (UDP host, port) or ``marker_stream`` (LSL). :func:`serve_lab` is
``treadlab simulate lab``.

The devices are driven by a signal: the synthetic runner
(:class:`treadlab.acquisition.sim.synthetic.SyntheticRunner`) or a C3D replay
(:class:`treadlab.acquisition.sim.replay.ReplaySignal`). Both are functions of absolute time; the
devices sample them in real time:

- the **treadmill** sends one frame per sample (docs/wire.md §1) at ``forceplate.rate_hz``: the wrench
  is turned into ADC counts through the inverse of the lab calibration plus a fixed per-channel
  zero offset (the amplifier's, which the reader's tare removes). The belt stays unloaded for
  ``tare_seconds + 1`` s after a reader first opens the port; then the runner steps on. While
  nobody has the port open, frames are counted but not written (a UART talking to nobody);
- the **mocap** sends one TLMK datagram per frame at ``markers.rate_hz`` in the configured
  label order (NaN for a label the signal lacks, and for everything before the runner steps on).

Fault injection (:class:`Faults`, for tests): garbage bytes, torn frames, bad CRCs, the port
vanishing and returning, UDP loss / reordering / duplicates, device clock drift and offset.
Injections are deterministic (every N-th frame, never two within 3 frames of each other) and
counted; :meth:`SimulatedLab.stop` returns the counts so tests can check that the readers
counted every one.

Building block usable in-process: :class:`PtyPort`, a pseudo-terminal in raw mode behind a
stable symlink (like a udev ``/dev/serial/by-id`` name) that can vanish and return.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import numpy as np
import pylsl

from treadlab.acquisition.sim.emulator_base import plain_table, runner_params, spawn
from treadlab.acquisition.sim.replay import (ReplaySignal, label_map, plate_transfer,
                                             transfer_wrench)
from treadlab.acquisition.sim.synthetic import SyntheticRunner, speed_range
from treadlab.acquisition.sources.forceplate_serial import (ForceCalibration, ForcePlateSettings,
                                                            PlateCalibration)
from treadlab.acquisition.sources.lsl import mocap_stream_info
from treadlab.acquisition.sources.markers_udp import MarkerSettings
from treadlab.acquisition.sources.wire import encode_force_frames, encode_marker_packet
from treadlab.config import load_lab
from treadlab.config.errors import ConfigError, DeviceError, TreadlabError

log = logging.getLogger(__name__)


class PtyPort:
    """A raw-mode pseudo-terminal reachable through a stable symlink.

    The device side writes to the pty master; a reader opens :attr:`path` (e.g. with
    ``serial.serial_for_url``). :meth:`vanish` closes the pty and removes the link (the reader
    gets a ``SerialException``); :meth:`restore` creates a new pty behind the same link.

    Parameters
    ----------
    directory : where the link lives (default: a new temporary directory, removed by close()).
    name : file name of the link.
    """

    def __init__(self, directory: str | None = None, name: str = "treadmill"):
        self._own_dir = directory is None
        self.directory = tempfile.mkdtemp(prefix="treadlab-lab-") if directory is None \
            else directory
        self.path = os.path.join(self.directory, name)
        self.master: int | None = None
        self.device: str | None = None
        self._pending = bytearray()
        self.restore()

    def restore(self) -> None:
        """(Re)create the pty and point the link at it."""
        if self.master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)           # binary data: no echo, no CR/LF mangling, no signals
        self.device = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        tmp = self.path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.device, tmp)
        os.replace(tmp, self.path)
        self._pending.clear()

    def vanish(self) -> None:
        """Close the pty and remove the link, as when a USB adapter is unplugged."""
        if self.master is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.master)
        self.master = None
        self._pending.clear()

    @property
    def present(self) -> bool:
        return self.master is not None

    def has_reader(self) -> bool:
        """True while some process has the port open (the master sees no hang-up)."""
        if self.master is None:
            return False
        p = select.poll()
        p.register(self.master, select.POLLHUP)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    @property
    def pending(self) -> int:
        """Bytes accepted by :meth:`write` but not yet taken by the pty."""
        return len(self._pending)

    def write(self, data: bytes = b"") -> int:
        """Queue ``data`` and push what the pty takes now (never blocks); bytes pushed."""
        if self.master is None:
            return 0
        self._pending += data
        done = 0
        while self._pending:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    break
                raise
            if n <= 0:
                break
            del self._pending[:n]
            done += n
        return done

    def drain(self, timeout: float) -> bool:
        """Keep pushing queued bytes until none are left or ``timeout`` s (monotonic) pass."""
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            if not self.write():
                time.sleep(0.002)
        return not self._pending

    def unread(self) -> int:
        """Bytes written to the pty that the reader has not taken yet (−1 if unknown)."""
        if self.master is None:
            return -1
        try:
            fd = os.open(self.device, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return -1
        try:
            buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
            return int.from_bytes(buf, sys.byteorder)
        finally:
            os.close(fd)

    def wait_read(self, timeout: float) -> bool:
        """Push queued bytes and wait until the reader took everything (or ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        self.drain(timeout)
        while time.monotonic() < deadline:
            if not self.has_reader() or self.unread() <= 0:
                return self.unread() == 0
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self.vanish()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- fault injection -------------------------------------------------------------------------

@dataclass
class Faults:
    """What the virtual devices do wrong, for tests (everything off by default).

    ``*_every = N`` injects at every N-th frame (0 = never); two injections are never closer
    than 3 frames (a skipped one is not counted), so each is a separate incident for the reader.

    Attributes
    ----------
    garbage_every, garbage_bytes : insert ``garbage_bytes`` bytes (never 0xA5) before a frame.
    torn_every : send only the first half of a frame.
    bad_crc_every : flip bits in one value byte of a frame (its CRC no longer matches).
    vanish_at_s, vanish_for_s : the port disappears ``vanish_at_s`` s after the first reader
        opened it, and returns ``vanish_for_s`` s later (on a new pty behind the same link).
    udp_loss_every, udp_reorder_every, udp_duplicate_every : drop a datagram; send it after its
        successor; send it twice.
    force_drift_ppm, force_offset_s, marker_drift_ppm, marker_offset_s : device clocks run
        ``(1 + ppm·1e-6)`` × real time, starting at the offset (s ≥ 0).
    """

    garbage_every: int = 0
    garbage_bytes: int = 7
    torn_every: int = 0
    bad_crc_every: int = 0
    vanish_at_s: float | None = None
    vanish_for_s: float = 1.0
    udp_loss_every: int = 0
    udp_reorder_every: int = 0
    udp_duplicate_every: int = 0
    force_drift_ppm: float = 0.0
    force_offset_s: float = 0.0
    marker_drift_ppm: float = 0.0
    marker_offset_s: float = 0.0


# --- signals ---------------------------------------------------------------------------------

class RunnerSignal:
    """The synthetic runner, sampled onto the configured plates and marker labels.

    Parameters
    ----------
    params : ``RunnerParams``.
    plates : configured plates (name, origin). labels : configured marker labels (wire order).
    marker_names : the lab's ``[marker_names]`` table.
    """

    def __init__(self, params, plates, labels, marker_names=None):
        self.runner = SyntheticRunner(params)
        self._runners = {float(self.runner.params.speed_m_s): self.runner}
        # (from runner time s, standing, runner): the posture and speed in force from then on
        self._schedule = [(-math.inf, False, self.runner)]
        self._set_speed: dict[int, float] = {}  # id(runner) -> the speed switch() set (m/s)
        self.subject = dict(getattr(self.runner, "subject", {}) or {})
        self.n_plates = len(plates)
        self._origin = np.array([np.asarray(p.origin, float) for p in plates])
        self._pairs = plate_transfer(self.runner.plates, self.runner.origin,
                                     [p.name for p in plates], self._origin)
        self._index = label_map(list(labels), list(self.runner.labels), marker_names)
        self.duration_s = None

    def switch(self, t_from: float, standing: bool, speed_m_s: float | None = None) -> float:
        """From runner time ``t_from`` (s) on, stand still on the stopped belt (``standing``)
        or run at ``speed_m_s`` (m/s, clipped to the speeds the synthetic runner can run at,
        :func:`~treadlab.acquisition.sim.synthetic.speed_range`: 1.5–4 m/s for the default
        0.25 s contact; None: the speed in force). Returns the running speed in force after the
        switch (m/s)."""
        runner = self._schedule[-1][2]
        if speed_m_s is not None:
            lo, hi = speed_range(self.runner.params)
            v = round(float(min(max(float(speed_m_s), lo), hi)), 6)
            runner = self._runners.get(v)
            if runner is None:
                # the configured runner at another speed: its gait moves with the speed as when
                # it follows a belt (contact time, heel lead, hip extension, pelvic drop;
                # RunnerParams *_per_m_s), not the configured speed's gait at another pace
                runner = self._runners[v] = SyntheticRunner(self.runner.params)
                runner.follow([0.0], [v])
                self._set_speed[id(runner)] = v
        self._schedule = [e for e in self._schedule if e[0] < t_from]
        self._schedule.append((float(t_from), bool(standing), runner))
        return self._speed_of(runner)

    def _speed_of(self, runner) -> float:
        """The running speed (m/s) ``runner`` was set to (not what it follows now)."""
        return float(self._set_speed.get(id(runner), runner.params.speed_m_s))

    def follow(self, times_s, speeds_m_s) -> None:
        """Every running speed of this signal follows a belt: ``speeds_m_s`` (m/s) at runner
        times ``times_s`` (s), linear in between
        (:meth:`~treadlab.acquisition.sim.synthetic.SyntheticRunner.follow`)."""
        for runner in self._runners.values():
            runner.follow(times_s, speeds_m_s)

    @property
    def speed_m_s(self) -> float:
        """The running speed (m/s) of the runner in force now, as set (not followed)."""
        return self._speed_of(self._schedule[-1][2])

    def _pieces(self, t):
        """(mask, standing, runner) for each schedule entry that covers some of ``t``."""
        t = np.asarray(t, float)
        ends = [e[0] for e in self._schedule[1:]] + [math.inf]
        for (t0, standing, runner), t1 in zip(self._schedule, ends):
            m = (t >= t0) & (t < t1)
            if m.any():
                yield m, standing, runner

    def force(self, t) -> np.ndarray:
        """(n, p, 6) float64 N, N·m about the configured plate origins, at runner times ``t``."""
        t = np.asarray(t, float)
        raw = np.zeros((len(t), len(self.runner.plates), 6), np.float32)
        for m, standing, runner in self._pieces(t):
            raw[m] = runner.standing_force(t[m]) if standing else runner.force(t[m])
        return transfer_wrench(raw, self._pairs, self.runner.origin, self._origin,
                               self.n_plates)

    def markers(self, t) -> np.ndarray:
        """(m, k, 3) float32 mm in the configured label order (NaN = absent/occluded)."""
        t = np.asarray(t, float)
        pos = np.full((len(t), len(self.runner.labels), 3), np.nan, np.float32)
        for m, standing, runner in self._pieces(t):
            pos[m] = runner.standing_markers(t[m]) if standing else runner.markers(t[m])
        out = np.full((pos.shape[0], self._index.shape[0], 3), np.nan, np.float32)
        ok = self._index >= 0
        out[:, ok] = pos[:, self._index[ok]]
        return out


# --- the device process ----------------------------------------------------------------------

class _Injector:
    """Every-N-th-frame fault injection with a minimum spacing; counts what it injected."""

    def __init__(self, spacing: int = 3):
        self.spacing = spacing
        self.last = -10**9

    def due(self, i: int, every: int) -> bool:
        if every <= 0 or i <= 0 or i % every or i - self.last < self.spacing:
            return False
        self.last = i
        return True


def _device_main(conn, spec: dict | None = None) -> None:
    """Entry point of the device process: build the signal, serve until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent decides when to stop
    if spec is None:
        spec = conn.recv()
    logging.basicConfig(level=spec.get("log_level", logging.WARNING),
                        format="simulated lab: %(message)s")   # own process, own logging
    try:
        lab = _DeviceLab(spec)
    except BaseException as exc:  # report why the lab cannot start, then exit
        if not isinstance(exc, TreadlabError):
            log.exception("the simulated lab cannot start")
        conn.send({"error": f"{type(exc).__name__}: {exc}"
                   if not isinstance(exc, TreadlabError) else str(exc)})
        return
    conn.send({"endpoints": lab.endpoints()})
    try:
        lab.run(conn)
    finally:
        lab.close()


class _DeviceLab:
    """The virtual treadmill and mocap, paced on the monotonic clock."""

    AHEAD_S = 0.2           # signal generated this far ahead, in one call per device
    PACE_S = 0.002          # frames due are written in bursts at most this often

    def __init__(self, spec: dict):

        self._encode_force = encode_force_frames
        self._encode_marker = encode_marker_packet
        self.spec = spec
        self.fp = spec["forceplate"]
        self.mk = spec["markers"]
        self.faults: Faults = spec["faults"]
        plates = spec["plates"]
        self.cal = ForceCalibration(plates, self.fp.channels, self.fp.volts_per_count)
        rng = np.random.default_rng(spec.get("seed", 0) + 12345)
        self.zero = rng.integers(-400, 400, self.fp.channels).astype(np.float64)
        if spec.get("replay") is not None:
            self.signal = spec["replay"]         # a ReplaySignal built (and checked) by start_lab
        else:
            self.signal = RunnerSignal(spec["params"], plates, self.mk.labels,
                                       spec.get("marker_names"))
        self.stats = {k: 0 for k in (
            "force_frames", "force_written", "force_unheard", "garbage", "torn", "bad_crc",
            "vanished", "clipped", "marker_frames", "marker_sent", "udp_lost",
            "udp_reordered", "udp_duplicated")}
        self.unloaded_s = float(self.fp.tare_seconds or 0.0) + 1.0
        self.on_time: float | None = None        # device time the runner steps on
        self.attached_at: float | None = None
        self._inj_force, self._inj_udp = _Injector(), _Injector()
        self._held: bytes | None = None          # a datagram held back to be reordered
        # force transport
        self.pty = self.force_outlet = None
        if self.fp.driver == "forceplate_lsl":
            fmt = pylsl.cf_int16 if self.fp.sample_type == "int16" else pylsl.cf_int32
            name = spec["force_stream"]
            info = pylsl.StreamInfo(name, "Force", int(self.fp.channels), float(self.fp.rate_hz),
                                    fmt, f"treadlab-sim-force-{os.getpid()}")
            self.force_outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        else:
            self.pty = PtyPort(spec["directory"], name="treadmill")
        # marker transport
        self.sock = self.marker_outlet = None
        if self.mk.driver == "markers_lsl":
            info = mocap_stream_info(spec["marker_stream"], self.mk.labels, self.mk.rate_hz,
                                     f"treadlab-sim-mocap-{os.getpid()}")
            self.marker_outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.dest = tuple(spec["marker_address"])
        self.vanish_until: float | None = None
        self.vanish_plan = self.faults.vanish_at_s
        self._i_next = self._j_next = None
        self._lsl_t0 = 0.0
        self._heard = False              # a reader had the port open at the last write
        self._quiet_until = 0            # no injected faults before this frame
        self._start = time.monotonic()   # device time 0 on time.monotonic() (set by run())
        self._made_until = 0.0           # device time (s) up to which signal was generated
        #: the belt the runner follows: (device time s, speed m/s) knots (follow_belt)
        self.belt_knots: list[tuple[float, float]] = []

    def endpoints(self) -> dict:
        return {"force_port": self.pty.path if self.pty else None,
                "force_stream": self.spec.get("force_stream") if self.force_outlet else None,
                "marker_address": self.dest if self.sock else None,
                "marker_stream": self.spec.get("marker_stream") if self.marker_outlet else None,
                "subject": getattr(self.signal, "subject", {}),
                "pid": os.getpid()}

    def close(self) -> None:
        if self.pty is not None:
            self.pty.close()
        if self.sock is not None:
            self.sock.close()
        self.force_outlet = self.marker_outlet = None

    # --- pacing ---------------------------------------------------------------------------

    def run(self, conn) -> None:
        start = self._start = time.monotonic()
        if self.force_outlet is not None or self.marker_outlet is not None:
            self._lsl_t0 = pylsl.local_clock()   # LSL time of device time 0
        f_rate, m_rate = float(self.fp.rate_hz), float(self.mk.rate_hz)
        i_next = j_next = 0              # next force / marker frame index
        f_buf = m_buf = None             # generated ahead: (first index, array)
        while True:
            self._i_next, self._j_next = i_next, j_next
            try:
                if conn.poll(0):
                    msg = conn.recv()
                    if self._command(msg, conn, time.monotonic() - start):
                        return
            except (EOFError, OSError):
                return                   # the parent went away
            now = time.monotonic() - start
            self._attach_check(now)
            # force frames due
            i_due = int(now * f_rate) + 1
            if i_due > i_next:
                if f_buf is None or f_buf[0] + len(f_buf[1]) < i_due:
                    f_buf = self._gen_force(i_next, max(i_due, i_next + int(self.AHEAD_S
                                                                        * f_rate)), f_rate)
                    self._made_until = max(self._made_until,
                                           (f_buf[0] + len(f_buf[1])) / f_rate)
                lo = i_next - f_buf[0]
                hi = i_due - f_buf[0]
                self._send_force(i_next, f_buf[1][lo:hi], f_buf[2][lo:hi], now)
                i_next = i_due
            j_due = int(now * m_rate) + 1
            if j_due > j_next:
                if m_buf is None or m_buf[0] + len(m_buf[1]) < j_due:
                    m_buf = self._gen_markers(j_next, max(j_due,
                                                          j_next + int(self.AHEAD_S * m_rate)),
                                              m_rate)
                    self._made_until = max(self._made_until,
                                           (m_buf[0] + len(m_buf[1])) / m_rate)
                lo = j_next - m_buf[0]
                hi = j_due - m_buf[0]
                self._send_markers(j_next, m_buf[1][lo:hi], m_buf[2][lo:hi])
                j_next = j_due
            if self.pty is not None and self.pty.pending:
                self.pty.write()
            nxt = min(i_next / f_rate, j_next / m_rate)
            time.sleep(min(0.01, max(self.PACE_S, nxt - (time.monotonic() - start))))

    def _command(self, msg, conn, now) -> bool:
        kind = msg[0]
        if kind == "stop":
            self._finish()
            conn.send({"stats": dict(self.stats)})
            return True
        if kind == "stats":
            conn.send({"stats": dict(self.stats)})
        elif kind == "vanish":
            self._vanish(now, float(msg[1]))
        elif kind == "runner":
            self._runner_on_belt(now, bool(msg[1]))
        elif kind == "posture":
            conn.send({"posture": self._posture(now, bool(msg[1]), msg[2])})
        elif kind == "belt":
            self._follow_belt(float(msg[1]) - self._start, float(msg[2]), float(msg[3]))
        return False

    def _follow_belt(self, t_dev: float, speed_m_s: float, accel_m_s2: float) -> None:
        """The belt starts ramping at device time ``t_dev`` (s) towards ``speed_m_s`` (m/s) at
        ``accel_m_s2`` (m/s²): the synthetic runner's speed follows it (a replay cannot). A
        ramp that would change signal already generated (a step's values are used from two
        steps before its strike) starts later, logged."""
        if not isinstance(self.signal, RunnerSignal):
            return
        period = 60.0 / float(self.signal.runner.params.cadence_spm)
        earliest = self._made_until + 2.0 * period + self.PACE_S
        if t_dev < earliest:
            log.warning("belt ramp at %.3f s followed from %.3f s (the runner's next steps "
                        "are already made)", t_dev, earliest)
            t_dev = earliest
        knots = [k for k in self.belt_knots if k[0] < t_dev]
        if knots:
            times, speeds = zip(*knots)
            v0 = float(np.interp(t_dev, times, speeds))
        else:
            v0 = self.signal.speed_m_s
        ramp = abs(speed_m_s - v0) / max(accel_m_s2, 1e-3)
        self.belt_knots = knots + [(t_dev, v0), (t_dev + ramp, float(speed_m_s))]
        self._apply_belt()

    def _apply_belt(self) -> None:
        """Hand :attr:`belt_knots` to the runner on its own clock (once it is on the belt)."""
        on = self.on_time
        if not self.belt_knots or on is None or not math.isfinite(on):
            return
        times, speeds = zip(*self.belt_knots)
        self.signal.follow(np.asarray(times) - on, np.asarray(speeds))

    def _posture(self, now: float, standing: bool, speed_m_s) -> dict:
        """Switch the synthetic runner to quiet standing or to running at ``speed_m_s`` (m/s)
        from the first frame not generated yet (``AHEAD_S`` + 0.05 s from now, on both sample
        grids). Returns ``{"standing", "speed_m_s", "from_s"}`` (device time s); a replayed
        recording cannot switch (``{"error": …}``)."""
        if not isinstance(self.signal, RunnerSignal):
            return {"error": "a replayed recording has no posture to switch"}
        fr, mr = float(self.fp.rate_hz), float(self.mk.rate_hz)
        grid = math.gcd(int(fr), int(mr)) if fr.is_integer() and mr.is_integer() else 1
        at = math.ceil((now + self.AHEAD_S + 0.05) * grid) / grid
        on = self.on_time if self.on_time is not None and math.isfinite(self.on_time) else None
        v = self.signal.switch(at - on if on is not None else -math.inf, standing, speed_m_s)
        return {"standing": standing, "speed_m_s": v, "from_s": at}

    def _runner_on_belt(self, now: float, on: bool) -> None:
        """Step the runner off the belt (unloaded frames from now on) or back on it (0.5 s
        from now, on the sample grids), as a technician asks a runner to do for a tare."""
        if not on:
            self.on_time = math.inf
            return
        if self.on_time is None or math.isfinite(self.on_time):
            return
        fr, mr = float(self.fp.rate_hz), float(self.mk.rate_hz)
        grid = math.gcd(int(fr), int(mr)) if fr.is_integer() and mr.is_integer() else 1
        self.on_time = math.ceil((now + 0.5 + self.AHEAD_S) * grid) / grid

    def _finish(self) -> None:
        """Send a held datagram, then a few clean frames so every injected fault is followed by
        good data (a reader can only tell a fault from the end of the stream by what follows)."""
        f_rate, m_rate = float(self.fp.rate_hz), float(self.mk.rate_hz)
        saved, self.faults = self.faults, Faults(
            force_drift_ppm=self.faults.force_drift_ppm,
            force_offset_s=self.faults.force_offset_s,
            marker_drift_ppm=self.faults.marker_drift_ppm,
            marker_offset_s=self.faults.marker_offset_s)
        try:
            if self._held is not None:
                self._sendto(self._held)
                self._held = None
            if self._i_next is not None:
                i0, counts, t_dev = self._gen_force(self._i_next, self._i_next + 3, f_rate)
                self._send_force(i0, counts, t_dev, 0.0)
                self._i_next += 3
            if self._j_next is not None:
                j0, pos, t_dev = self._gen_markers(self._j_next, self._j_next + 3, m_rate)
                self._send_markers(j0, pos, t_dev)
                self._j_next += 3
            if self.pty is not None and self.pty.present:
                self.pty.wait_read(2.0)
        finally:
            self.faults = saved

    def _attach_check(self, now: float) -> None:
        if self.vanish_until is not None and now >= self.vanish_until:
            self.pty.restore()
            self.vanish_until = None
            log.warning("treadmill port %s is back", self.pty.path)
        if self.attached_at is None:
            if self.pty is not None:
                attached = self.pty.has_reader()
            else:
                attached = self.force_outlet.have_consumers()
            if attached:
                self.attached_at = now
                # snapped to a time on both devices' sample grids: runner sample k is then
                # exactly frame on_frame + k (force) and on_marker_frame + k (markers)
                fr, mr = float(self.fp.rate_hz), float(self.mk.rate_hz)
                grid = (math.gcd(int(fr), int(mr)) if fr.is_integer() and mr.is_integer()
                        else 1)
                self.on_time = math.ceil((now + self.unloaded_s) * grid) / grid
                self._apply_belt()
                # first loaded frames (runner time 0), for tests comparing with the signal
                self.stats["on_frame"] = int(round(self.on_time * fr))
                self.stats["on_marker_frame"] = int(round(self.on_time * mr))
        elif (self.vanish_plan is not None and self.pty is not None
              and now >= self.attached_at + self.vanish_plan):
            self.vanish_plan = None
            self._vanish(now, self.faults.vanish_for_s)

    def _vanish(self, now: float, seconds: float) -> None:
        if self.pty is None or not self.pty.present:
            return
        self.pty.vanish()
        self.stats["vanished"] += 1
        self.vanish_until = now + seconds
        log.warning("treadmill port %s vanished for %.2f s", self.pty.path, seconds)

    # --- force ----------------------------------------------------------------------------

    def _runner_time(self, t: np.ndarray) -> np.ndarray:
        return t - (self.on_time if self.on_time is not None else np.inf)

    def _gen_force(self, i0: int, i1: int, rate: float):
        idx = np.arange(i0, i1)
        t = idx / rate
        tr = self._runner_time(t)
        wrench = np.zeros((len(idx), self.cal.matrix.shape[0], 6))
        on = np.isfinite(tr) & (tr >= 0)
        if on.any():
            # the signal is sampled on its own grid: runner time in whole samples
            wrench[on] = self.signal.force(np.round(tr[on] * rate) / rate)
        counts, clipped = self.cal.counts(wrench, zero=self.zero, dtype=self.fp.sample_type)
        if clipped and not self.stats["clipped"]:
            log.warning("the force exceeds the %s ADC range with this calibration: counts "
                        "saturate (check plates.calibration and forceplate.volts_per_count)",
                        self.fp.sample_type)
        self.stats["clipped"] += clipped
        fl = self.faults
        t_dev = np.rint((t * (1 + fl.force_drift_ppm * 1e-6) + fl.force_offset_s) * 1e6)
        return (i0, counts, t_dev.astype(np.int64))

    def _send_force(self, i0: int, counts, t_dev_us, now: float) -> None:
        n = len(counts)
        self.stats["force_frames"] += n
        if self.force_outlet is not None:
            if self.force_outlet.have_consumers():
                # stamped on the device clock (the earlier samples are deduced from the rate)
                self.force_outlet.push_chunk(counts.tolist(),
                                             self._lsl_t0 + float(t_dev_us[-1]) * 1e-6)
                self.stats["force_written"] += n
            else:
                self.stats["force_unheard"] += n
            return
        if not self.pty.present or not self.pty.has_reader():
            self.stats["force_unheard"] += n
            self._heard = False
            return
        if not self._heard:              # a reader just (re)attached: no faults while it locks
            self._heard = True
            self._quiet_until = i0 + 50
        data = self._encode_force(np.arange(i0, i0 + n), t_dev_us, counts, self.fp.sample_type)
        fl = self.faults
        if not (fl.garbage_every or fl.torn_every or fl.bad_crc_every):
            self.pty.write(data)
            self.stats["force_written"] += n
            return
        size = len(data) // n
        out = bytearray()
        for k in range(n):
            i = i0 + k
            frame = data[k * size:(k + 1) * size]
            inj = self._inj_force
            quiet = i < self._quiet_until
            if not quiet and inj.due(i, fl.torn_every):
                out += frame[:size // 2]
                self.stats["torn"] += 1
                continue
            if not quiet and inj.due(i, fl.bad_crc_every):
                frame = bytearray(frame)
                frame[8] ^= 0x5C
                self.stats["bad_crc"] += 1
            elif not quiet and inj.due(i, fl.garbage_every):
                g = np.random.default_rng(i).integers(0, 256, fl.garbage_bytes, dtype=np.uint8)
                g[g == 0xA5] = 0x11
                out += g.tobytes()
                self.stats["garbage"] += 1
            out += frame
            self.stats["force_written"] += 1
        self.pty.write(bytes(out))

    # --- markers --------------------------------------------------------------------------

    def _gen_markers(self, j0: int, j1: int, rate: float):
        idx = np.arange(j0, j1)
        t = idx / rate
        tr = self._runner_time(t)
        k = len(self.mk.labels)
        pos = np.full((len(idx), k, 3), np.nan, np.float32)
        on = np.isfinite(tr) & (tr >= 0)
        if on.any():
            pos[on] = self.signal.markers(np.round(tr[on] * rate) / rate)
        fl = self.faults
        t_dev = np.rint((t * (1 + fl.marker_drift_ppm * 1e-6) + fl.marker_offset_s) * 1e6)
        return (j0, pos, np.maximum(t_dev, 0).astype(np.int64))

    def _sendto(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.dest)
            self.stats["marker_sent"] += 1
        except OSError:
            pass                         # nobody listening: a real mocap would not care

    def _send_markers(self, j0: int, pos, t_dev_us) -> None:
        n = len(pos)
        self.stats["marker_frames"] += n
        if self.marker_outlet is not None:
            self.marker_outlet.push_chunk(pos.reshape(n, -1).tolist(),
                                          self._lsl_t0 + float(t_dev_us[-1]) * 1e-6)
            self.stats["marker_sent"] += n
            return
        fl = self.faults
        for k in range(n):
            j = j0 + k
            pkt = self._encode_marker(j, int(t_dev_us[k]), pos[k])
            inj = self._inj_udp
            if inj.due(j, fl.udp_loss_every):
                self.stats["udp_lost"] += 1
                continue
            if inj.due(j, fl.udp_reorder_every):
                self._held = pkt         # sent after the next one
                self.stats["udp_reordered"] += 1
                continue
            self._sendto(pkt)
            if inj.due(j, fl.udp_duplicate_every):
                self._sendto(pkt)
                self.stats["udp_duplicated"] += 1
            if self._held is not None and self._held is not pkt:
                self._sendto(self._held)
                self._held = None


# --- the parent's handle -----------------------------------------------------------------------

@dataclass
class SimulatedLab:
    """A running set of virtual devices (see :func:`start_lab`).

    Attributes
    ----------
    force_port : path of the treadmill's pty link (serial), else None.
    force_stream : LSL stream name of the force counts (``forceplate_lsl``), else None.
    marker_address : (host, port) the mocap sends TLMK datagrams to (``markers_udp``), else None.
    marker_stream : LSL stream name of the markers (``markers_lsl``), else None.
    subject : anthropometrics of the simulated runner (the archive's ``/subject``).
    stats : what the devices sent and injected (filled by :meth:`stop`).
    replay : for a C3D replay: ``source`` (path), ``duration_s`` (s from the first to the last
        recorded sample), ``belt_speed_m_s`` (m/s or None), ``loop``; empty for the runner.
    follow_lead_s : s ahead a belt ramp must be announced to :meth:`follow_belt` for the runner
        to follow it on time (two step times + 0.3 s; 0 for a replay, which cannot follow).
    """

    force_port: str | None
    force_stream: str | None
    marker_address: tuple[str, int] | None
    marker_stream: str | None
    subject: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    replay: dict = field(default_factory=dict)
    follow_lead_s: float = 0.0
    _proc: object = None
    _conn: object = None
    _directory: str | None = None
    _send_lock: object = field(default_factory=threading.Lock)

    def _send(self, msg) -> None:
        with self._send_lock:      # follow_belt is called from the treadmill's thread
            self._conn.send(msg)

    def follow_belt(self, t_start: float, left_m_s: float, right_m_s: float,
                    accel_m_s2: float) -> None:
        """The simulated treadmill's belts start ramping at ``t_start`` (``time.monotonic()``,
        s) towards ``left_m_s`` / ``right_m_s`` (m/s) at ``accel_m_s2`` (m/s²): the synthetic
        runner follows their mean speed (its contact time, heel lead, hip extension and pelvic
        drop change with it: :meth:`~treadlab.acquisition.sim.synthetic.SyntheticRunner.
        follow`). The runner's next steps are made ahead, so ``t_start`` should be at least
        :attr:`follow_lead_s` s from now (the treadmill's ``command_delay_s``); a ramp announced
        later is followed that much late. No effect for a replayed recording."""
        if not self.replay and self._proc is not None:
            self._send(("belt", float(t_start), 0.5 * (float(left_m_s) + float(right_m_s)),
                        float(accel_m_s2)))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def vanish(self, seconds: float) -> None:
        """Unplug the treadmill's port now for ``seconds`` s (it returns on a new pty)."""
        self._send(("vanish", float(seconds)))

    def runner_on_belt(self, on: bool) -> None:
        """Step the simulated runner off the belt (``False``: unloaded frames within
        ``AHEAD_S`` = 0.2 s) or back on (``True``: loaded again about 0.7 s later)."""
        self._send(("runner", bool(on)))

    def posture(self, standing: bool, speed_m_s: float | None = None,
                timeout: float = 5.0) -> dict:
        """Make the synthetic runner stand still on the stopped belt (``standing``, for a
        static trial) or run at ``speed_m_s`` (m/s, clipped to what it can run at; None:
        unchanged) from the first frame not yet generated (about 0.25 s from now).

        Returns
        -------
        dict
            ``standing``, ``speed_m_s`` (the running speed in force, m/s), ``from_s`` (device
            time of the switch, s); ``{"error": …}`` for a replayed recording.
        """
        with self._send_lock:
            self._conn.send(("posture", bool(standing), speed_m_s))
        if self._conn.poll(timeout):
            return self._conn.recv()["posture"]
        return {"error": "the simulated lab did not answer"}

    def device_stats(self, timeout: float = 5.0) -> dict:
        """What the devices sent and injected so far."""
        self._send(("stats",))
        if self._conn.poll(timeout):
            self.stats = self._conn.recv()["stats"]
        return dict(self.stats)

    def stop(self, timeout: float = 5.0) -> dict:
        """Stop the devices (idempotent); returns :attr:`stats`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return dict(self.stats)
        try:
            self._send(("stop",))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._conn.poll(max(0.0, deadline
                                                                      - time.monotonic())):
                msg = self._conn.recv()
                if "stats" in msg:
                    self.stats = msg["stats"]
                    break
        except (EOFError, OSError, BrokenPipeError):
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        self._conn.close()
        if self._directory:
            shutil.rmtree(self._directory, ignore_errors=True)
        return dict(self.stats)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _free_udp_port(host: str, cfg_path=None) -> int:
    """A free UDP port on ``host``; ConfigError naming ``markers.host`` when ``host`` is not an
    address of this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, 0))
        except OSError as exc:
            raise ConfigError(cfg_path, "markers.host",
                              f"{host!r}: cannot bind a UDP socket there "
                              f"({exc.strerror or exc}); use an address of this machine, e.g. "
                              f"127.0.0.1") from None
        return s.getsockname()[1]


def start_lab(cfg, params=None, replay=None, *, faults: Faults | None = None,
              marker_address: tuple[str, int] | None = None, unique_names: bool = True,
              loop: bool = True, start_timeout: float = 60.0) -> SimulatedLab:
    """Start the virtual devices of ``cfg`` in a separate process.

    Parameters
    ----------
    cfg : ``LabConfig``: ``[forceplate]`` (serial pty or ``forceplate_lsl``), ``[[plates]]``
        (the calibration the treadmill inverts), ``[markers]`` (``markers_udp`` or
        ``markers_lsl``, labels), ``[simulator]``, ``[marker_names]``.
    params : synthetic-runner parameters ``{"name": "value"}`` (or a ``RunnerParams``)
        overriding ``[simulator]``.
    replay : a C3D file to play back instead of the synthetic runner.
    faults : fault injection (tests).
    marker_address : where to send datagrams; default ``(markers.host, markers.port)``, a free
        loopback port when ``markers.port`` is 0.
    unique_names : suffix LSL stream names with this process id (tests running side by side).
    loop : replay: start over at the end of the recording.
    start_timeout : s to wait for the device process to come up.

    Returns
    -------
    SimulatedLab with the endpoints; call ``stop()`` (or use it as a context manager).

    Raises
    ------
    ConfigError for a config the simulator cannot serve; DeviceError when the process fails.
    """

    fp = ForcePlateSettings.from_table(cfg.forceplate)
    mk = MarkerSettings.from_table(cfg.markers)
    plates = [p if isinstance(p, PlateCalibration) else PlateCalibration.from_table(p)
              for p in cfg.plates]
    for i, p in enumerate(plates):
        # the virtual treadmill inverts the calibration to turn forces into ADC counts
        m = np.asarray(p.calibration, dtype=np.float64)
        if not np.isfinite(m).all() or np.linalg.cond(m) > 1e12:
            raise ConfigError(getattr(cfg, "path", None), f"plates[{i}].calibration",
                              "singular or non-finite 6x6 matrix: it maps no forces onto "
                              "volts uniquely (the simulated treadmill must invert it)")
    if fp.driver not in ("forceplate_serial", "simulated", "forceplate_lsl"):
        raise ConfigError(getattr(cfg, "path", None), "forceplate.driver",
                          f"the simulated lab cannot serve {fp.driver!r}")
    if mk.driver not in ("markers_udp", "markers_lsl"):
        raise ConfigError(getattr(cfg, "path", None), "markers.driver",
                          f"the simulated lab cannot serve {mk.driver!r}")
    marker_names = plain_table(getattr(cfg, "marker_names", None)) or None
    replay_info = {}
    spec = {"forceplate": fp, "markers": mk, "plates": plates,
            "faults": faults or Faults(), "replay": None, "marker_names": marker_names,
            "log_level": logging.getLogger("treadlab").getEffectiveLevel()}
    if replay is not None:
        # read here, so a bad file is an InputError before any device exists
        spec["replay"] = ReplaySignal.from_c3d(replay, plates, mk.labels,
                                               marker_names=marker_names, loop=loop)
        replay_info = {"source": str(replay), "duration_s": spec["replay"].duration_s,
                       "belt_speed_m_s": spec["replay"].belt_speed_m_s, "loop": bool(loop)}
    else:
        spec["params"] = runner_params(cfg, params)
        spec["seed"] = int(getattr(spec["params"], "seed", 0) or 0)
    suffix = f"-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}" if unique_names else ""
    spec["force_stream"] = f"{fp.stream_name}{suffix}"
    spec["marker_stream"] = f"{mk.stream_name}{suffix}"
    if mk.driver == "markers_udp":
        if marker_address is None:
            host = mk.host or "127.0.0.1"
            marker_address = (host, int(mk.port) or _free_udp_port(host, getattr(cfg, "path",
                                                                                 None)))
        spec["marker_address"] = (str(marker_address[0]), int(marker_address[1]))
    directory = tempfile.mkdtemp(prefix="treadlab-lab-")
    spec["directory"] = directory
    # a fresh interpreter (not multiprocessing's spawn, which re-imports the caller's __main__)
    try:
        proc, conn, ep = spawn("treadlab.acquisition.sim.simulated", spec, "simulated lab",
                               start_timeout)
    except DeviceError:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    addr = tuple(ep["marker_address"]) if ep["marker_address"] else None
    # the runner's steps are made AHEAD_S ahead and a step's values used two steps early
    lead = (0.0 if replay is not None else
            2 * 60.0 / float(spec["params"].cadence_spm) + _DeviceLab.AHEAD_S + 0.1)
    return SimulatedLab(force_port=ep["force_port"], force_stream=ep["force_stream"],
                        marker_address=addr, marker_stream=ep["marker_stream"],
                        subject=ep.get("subject") or {}, replay=replay_info,
                        follow_lead_s=lead, _proc=proc, _conn=conn,
                        _directory=directory)


def start_replay_lab(cfg, path, **kw) -> SimulatedLab:
    """Serve the C3D file ``path`` through the virtual devices of ``cfg`` (see :func:`start_lab`)."""
    return start_lab(cfg, replay=path, **kw)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def serve_lab(config_path=None, replay=None, duration_s=None, params=None,
              on_ready=None) -> dict:
    """``treadlab simulate lab``: serve the virtual devices until Ctrl-C, SIGTERM or
    ``duration_s`` (s).

    ``on_ready(lab)`` is called with the running :class:`SimulatedLab` once its endpoints
    exist (the CLI prints them). Returns the device statistics (``force_written``,
    ``marker_sent`` …). Raises :class:`DeviceError` when the device process stops by itself.
    """
    cfg = load_lab(config_path)
    lab = start_lab(cfg, params=params, replay=replay, unique_names=False)
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)   # stop like Ctrl-C
    deadline = None if duration_s is None else time.monotonic() + float(duration_s)
    failed = False
    try:
        if on_ready is not None:
            on_ready(lab)
        while lab.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1 if deadline is None else
                       max(0.0, min(0.1, deadline - time.monotonic())))
        failed = not lab.running and (deadline is None or time.monotonic() < deadline)
    except KeyboardInterrupt:
        pass
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        stats = lab.stop()
    if failed:
        raise DeviceError("simulated lab: the device process stopped")
    return stats or {}


if __name__ == "__main__":          # the device process started by start_lab()
    _device_main(Connection(int(sys.argv[1])))
