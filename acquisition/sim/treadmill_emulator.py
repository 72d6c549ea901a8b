"""A simulated Bertec treadmill controller on loopback TCP.

It speaks the remote-control packets of :mod:`treadlab.acquisition.sources.treadmill_bertec`
(64-byte speed commands with their 255 − byte check, 32-byte feedback), ramps each belt
towards its commanded speed at the commanded acceleration, and sends feedback at
``rate_hz`` to every connected client. A command whose length or check bytes are wrong is
ignored and counted (``bad_commands``), as the panel rejects it. :meth:`SimulatedTreadmill.
vanish` closes the connections and stops listening for a while (the client must reconnect).

It runs in a thread of the calling process (it only sends ~100 small packets a second).

Paired with the simulated lab's synthetic runner (a capture against the simulated lab with
``[treadmill] host = "auto"``), it starts at the runner's speed and tells the lab about every
accepted command (``on_command``), which makes the runner follow the belt
(:meth:`treadlab.acquisition.sim.simulated.SimulatedLab.follow_belt`). The runner must know
its speed about two steps ahead, so the paired controller starts each commanded ramp
``command_delay_s`` (about 1 s) after the command, as a real belt also lags its command.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time

import numpy as np

from treadlab.acquisition.sources.treadmill_bertec import (COMMAND_SIZE, decode_command,
                                                           encode_feedback)

log = logging.getLogger(__name__)


class SimulatedTreadmill:
    """Belts [left, right] in m/s, commanded over TCP; ``address`` (host, port).

    Parameters
    ----------
    host, port : where to listen (port 0 = a free one).
    rate_hz : feedback packets per second.
    initial_m_s : initial belt speed (m/s).
    command_delay_s : s from an accepted command to the start of its ramp (0: at once).
    on_command : called as ``on_command(t_start, left_m_s, right_m_s, accel_m_s2)`` for every
        accepted command, ``t_start`` on ``time.monotonic()`` (s), from the controller's
        thread; it must not block.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_hz: float = 100.0,
                 initial_m_s: float = 0.0, command_delay_s: float = 0.0, on_command=None):
        self.host = host
        self.rate_hz = float(rate_hz)
        self.speed = np.full(2, float(initial_m_s))         # left, right (m/s)
        self.target = self.speed.copy()
        self.accel = np.full(2, 1.0)
        self.stats = {"commands": 0, "bad_commands": 0, "feedback": 0, "connections": 0,
                      "outages": 0}
        self.commands: list[tuple[float, float, float]] = []   # (time, left, right)
        self.command_delay_s = float(command_delay_s)
        self.on_command = on_command
        self._pending: list[tuple[float, float, float, float]] = []  # (start, l, r, accel)
        self._clients: list[socket.socket] = []
        self._bufs: dict[socket.socket, bytes] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._down_until = None
        self._listener = None
        self.port = int(port)
        self._listen()
        self.address = (self.host, self.port)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="treadlab-sim-treadmill")
        self._thread.start()

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(4)
        s.setblocking(False)
        self.port = s.getsockname()[1]
        self._listener = s

    def vanish(self, seconds: float) -> None:
        """Close every connection and stop listening for ``seconds`` s."""
        with self._lock:
            self._down_until = time.monotonic() + float(seconds)
            self.stats["outages"] += 1

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=5.0)
        return dict(self.stats)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _drop(self, c: socket.socket) -> None:
        try:
            c.close()
        except OSError:
            pass
        if c in self._clients:
            self._clients.remove(c)
        self._bufs.pop(c, None)

    def _run(self) -> None:
        period = 1.0 / self.rate_hz
        last = time.monotonic()
        next_fb = last
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                with self._lock:
                    down = self._down_until
                if down is not None:
                    if self._listener is not None:
                        for c in list(self._clients):
                            self._drop(c)
                        self._listener.close()
                        self._listener = None
                    if now >= down:
                        with self._lock:
                            self._down_until = None
                        self._listen()
                socks = list(self._clients) + ([self._listener] if self._listener else [])
                readable = select.select(socks, [], [], min(period, 0.01))[0] if socks else []
                if not socks:
                    time.sleep(0.01)
                for s in readable:
                    if s is self._listener:
                        try:
                            c, _ = s.accept()
                        except OSError:
                            continue
                        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        c.settimeout(1.0)
                        self._clients.append(c)
                        self._bufs[c] = b""
                        self.stats["connections"] += 1
                        continue
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        self._drop(s)
                        continue
                    buf = self._bufs[s] + data
                    while len(buf) >= COMMAND_SIZE:
                        pkt, buf = buf[:COMMAND_SIZE], buf[COMMAND_SIZE:]
                        try:
                            right, left, acc, _ = decode_command(pkt)
                        except ValueError as exc:
                            self.stats["bad_commands"] += 1
                            log.warning("simulated treadmill: command ignored: %s", exc)
                            continue
                        self.stats["commands"] += 1
                        self._pending.append((now + self.command_delay_s, left, right,
                                              max(acc, 1e-3)))
                        self.commands.append((now, left, right))
                        if self.on_command is not None:
                            try:
                                self.on_command(now + self.command_delay_s, left, right,
                                                max(acc, 1e-3))
                            except Exception:  # the runner not following must not stop the belt
                                log.exception("simulated treadmill: on_command failed")
                    self._bufs[s] = buf
                now = time.monotonic()
                while self._pending and self._pending[0][0] <= now:
                    _, left, right, acc = self._pending.pop(0)
                    self.target[:] = (left, right)
                    self.accel[:] = acc
                dt, last = now - last, now
                step = self.accel * dt
                self.speed += np.clip(self.target - self.speed, -step, step)
                if now >= next_fb:
                    next_fb += period
                    if next_fb < now:
                        next_fb = now + period
                    pkt = encode_feedback(self.speed[1], self.speed[0])
                    for c in list(self._clients):
                        try:
                            c.sendall(pkt)
                            self.stats["feedback"] += 1
                        except OSError:
                            self._drop(c)
        finally:
            for c in list(self._clients):
                self._drop(c)
            if self._listener is not None:
                self._listener.close()
