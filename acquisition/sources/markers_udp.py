"""Marker frames over UDP, one ``TLMK`` datagram per mocap frame (docs/wire.md §3).

:class:`MarkersUDP` binds a UDP socket and reads it in its own thread. UDP may lose, reorder and
duplicate datagrams; frames go through a small reorder window so blocks come out in frame
order:

- a frame arriving after a later one but while its slot is still open is put back in place
  (``reordered``);
- a slot that stays empty once ``reorder_window`` newer frames have arrived, or for longer than
  ``max_wait`` seconds, is declared lost (``drop``, counted per missing frame);
- a frame arriving after its slot was declared lost is counted ``late`` and discarded (its loss
  was already counted); a frame seen twice is counted ``duplicate`` and discarded;
- a datagram that is not a valid packet for the configured labels is ``bad_packet``.

Each incident is an event; nothing disappears without a count.
"""
from __future__ import annotations

import logging
import socket
import time
from collections import deque
from dataclasses import dataclass, fields

import numpy as np

from treadlab.acquisition.sources.base import Block, Source, StreamInfo, table_values
from treadlab.acquisition.sources.wire import decode_marker_packet
from treadlab.config.errors import ConfigError, DeviceError, InputError
from treadlab.config.schema import MarkersConfig, check_table

log = logging.getLogger(__name__)


@dataclass
class MarkerSettings(MarkersConfig):
    """The ``[markers]`` table of the lab config, as the marker drivers take it.

    The fields, their units and defaults are the config schema's
    (:class:`treadlab.config.schema.MarkersConfig`: driver, host, port, rate_hz, labels in wire
    order, stream_name); this adds building from any table-like object and the checks a driver
    needs when it is constructed without the config loader (tests, scripts).
    """

    @classmethod
    def from_table(cls, table) -> "MarkerSettings":
        """From the config's ``markers`` table (dataclass, namespace or dict)."""
        return cls(**table_values(table, [f.name for f in fields(cls)]))

    def __post_init__(self):
        # the schema's declaration is the one check (ConfigError naming markers.<key>)
        self.labels = [str(x) for x in self.labels]
        checked = check_table(self, MarkersConfig, "markers")
        for name in MarkersConfig.__dataclass_fields__:
            setattr(self, name, getattr(checked, name))


def setup_marker_source(source: Source, settings) -> MarkerSettings:
    """Give a marker source its settings, ``labels`` and ``info`` (shared by every marker driver).

    ``settings`` is a :class:`MarkerSettings` or any ``[markers]`` table; no labels is a
    ConfigError, since a marker stream without names cannot be stored or mapped onto CGM.
    """
    if not isinstance(settings, MarkerSettings):
        settings = MarkerSettings.from_table(settings)
    if not settings.labels:
        raise ConfigError(None, "markers.labels", "no marker labels configured")
    source.settings = settings
    source.labels = list(settings.labels)
    source.info = StreamInfo(stream="markers", rate_hz=float(settings.rate_hz),
                             labels=source.labels, channels=len(source.labels))
    return settings


class MarkersUDP(Source):
    """Mocap frames from ``TLMK`` UDP datagrams.

    Parameters
    ----------
    settings : :class:`MarkerSettings` (``host``, ``port``, ``rate_hz``, ``labels``).
    name : source name in events.
    reorder_window : frames a missing frame may be overtaken by before it is declared lost.
    max_wait : s a missing frame is waited for before it is declared lost.
    """

    kind = "markers"

    def __init__(self, settings: MarkerSettings, name: str = "markers", reorder_window: int = 8,
                 max_wait: float = 0.05):
        super().__init__(name)
        settings = setup_marker_source(self, settings)
        self.window = int(reorder_window)
        self.max_wait = float(max_wait)
        self._sock: socket.socket | None = None
        self.address: tuple[str, int] = (settings.host, int(settings.port))
        self._origin = f"udp://{settings.host}:{settings.port}"
        self._reset_state()

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "MarkersUDP":
        """From a ``LabConfig``; with a simulated ``lab`` its address replaces host/port."""
        s = MarkerSettings.from_table(cfg.markers)
        if lab is not None and getattr(lab, "marker_address", None):
            s.host, s.port = lab.marker_address
        elif not s.port:
            raise ConfigError(getattr(cfg, "path", None), "markers.port",
                              "0 is the simulated lab's choice: start it first")
        return cls(s, **kw)

    def _reset_state(self) -> None:
        self._ref: int | None = None            # highest unwrapped frame seen
        self._next: int | None = None           # next frame to release
        self._pending: dict[int, tuple[float, int, np.ndarray]] = {}
        self._released: deque[int] = deque()
        self._released_set: set[int] = set()
        self._ready_frames: list[int] = []
        self._ready: list[tuple[float, int, np.ndarray]] = []

    # --- Source ---------------------------------------------------------------------------

    def _open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((self.settings.host, int(self.settings.port)))
        except OSError as exc:
            sock.close()
            raise DeviceError(f"udp://{self.settings.host}:{self.settings.port}: cannot bind "
                              f"the marker socket: {exc}") from None
        self._sock = sock
        self.address = sock.getsockname()[:2]
        self._origin = f"udp://{self.address[0]}:{self.address[1]}"
        self._reset_state()

    def _close(self) -> None:
        self._release(time.monotonic(), final=True)
        self._flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _acquire(self, timeout: float) -> None:
        sock = self._sock
        sock.settimeout(timeout)
        try:
            data = sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            self._release(time.monotonic())
            self._flush()
            return
        except OSError as exc:
            raise DeviceError(f"{self._origin}: {exc}") from None
        host = time.monotonic()
        self._handle(data, host)
        sock.settimeout(0.0)
        for _ in range(4096):           # whatever else is already queued
            try:
                data = sock.recv(65536)
            except (BlockingIOError, socket.timeout):
                break
            self._handle(data, time.monotonic())
        self._release(time.monotonic())
        self._flush()

    # --- parsing --------------------------------------------------------------------------

    def _handle(self, data: bytes, host: float) -> None:
        try:
            pkt = decode_marker_packet(data, origin=self._origin)
        except InputError as exc:
            self._event("bad_packet", str(exc), counter="bad_packets", level=logging.WARNING)
            return
        k = pkt.positions.shape[0]
        if k != len(self.labels):
            self._event("bad_packet", f"{self._origin}: byte 6: n_markers={k} but the config "
                        f"has {len(self.labels)} labels (frame {pkt.frame})",
                        counter="bad_packets", level=logging.WARNING)
            return
        if self._ref is None:
            f = int(pkt.frame)
            self._ref = f
            self._next = f
        else:
            d = ((int(pkt.frame) - self._ref + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            f = self._ref + d
        if f < self._next:
            if f in self._released_set:
                self._event("duplicate", f"frame {f} received again; ignored",
                            counter="duplicates")
            else:
                self._event("late", f"frame {f} arrived after it was counted lost; ignored",
                            counter="late")
            return
        if f in self._pending:
            self._event("duplicate", f"frame {f} received again; ignored", counter="duplicates")
            return
        if f < self._ref:
            self._event("reordered", f"frame {f} arrived after frame {self._ref}; put back "
                        "in order", counter="reordered")
        self._ref = max(self._ref, f)
        self._pending[f] = (host, int(pkt.device_time_us), pkt.positions)
        self._release(host)

    def _release(self, now: float, final: bool = False) -> None:
        """Move frames whose turn has come to the ready list; declare lost slots as drops."""
        while self._pending:
            if self._next in self._pending:
                self._ready_frames.append(self._next)
                self._ready.append(self._pending.pop(self._next))
                self._released.append(self._next)
                self._released_set.add(self._next)
                self._next += 1
                continue
            lo = min(self._pending)
            oldest = min(v[0] for v in self._pending.values())
            if final or self._ref - self._next >= self.window or now - oldest > self.max_wait:
                n = lo - self._next
                self._event("drop", f"{n} frames missing before frame {lo} "
                            f"(frames {self._next}..{lo - 1})", counter="drops", n=n)
                self._next = lo
            else:
                break

    def _flush(self) -> None:
        """Push the ready frames as one block."""
        if not self._ready:
            return
        frames, items = self._ready_frames, self._ready
        self._ready_frames, self._ready = [], []
        while len(self._released) > 4096:
            self._released_set.discard(self._released.popleft())
        self._push(Block(stream="markers",
                         device_time=np.array([v[1] for v in items], np.float64) * 1e-6,
                         host_time=np.array([v[0] for v in items], np.float64),
                         data=np.stack([v[2] for v in items]).astype(np.float32),
                         seq=np.array(frames, np.int64)))
