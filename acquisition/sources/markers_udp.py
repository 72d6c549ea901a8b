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
- a datagram that is not a valid packet for the configured labels is ``bad_packet``;
- a frame number far from the stream (more than :data:`JUMP_FRAMES` ahead of the newest frame
  or behind the next expected one) is held aside, not trusted: a single stray packet is
  discarded (``stray``) once the stream carries on without it, while
  :data:`CONFIRM_FRAMES` consecutive frames of the new numbering mean the sender restarted its
  counter or jumped (``resync``): the frames held are kept and the stream continues with them,
  renumbered after the last frame released, device times shifted by the host time elapsed, so
  frame numbers and device times stay increasing. A forward jump whose device time agrees with
  its frame count is a real gap: its frames are counted as drops.

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

#: frames a packet's number may lie ahead of the newest frame (or behind the next expected one)
#: before it is held aside as a possible stray or restart instead of trusted
JUMP_FRAMES = 64
#: consecutive frames of a new numbering that confirm a restart/jump of the sender's counter
CONFIRM_FRAMES = 3


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
        self._ref_raw = 0                       # its number on the wire (uint32)
        self._dt_ofs_us = 0                     # device-time shift since the last resync, us
        self._last_t_us: int | None = None      # newest (shifted) device time accepted, us
        self._last_host: float | None = None    # host time of the last frame released, s
        self._cand: dict | None = None          # frames held aside (stray or restart)
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
        if self._cand is not None:
            self._drop_stray()
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
        raw, t_us = int(pkt.frame), int(pkt.device_time_us)
        if self._ref is None:
            self._ref_raw, self._ref = raw, raw
            self._next = raw
            self._accept(raw, host, t_us, pkt.positions)
            return
        f = self._ref + _diff32(raw, self._ref_raw)
        if f - self._ref > JUMP_FRAMES or self._next - f > JUMP_FRAMES:
            self._hold(raw, host, t_us, pkt.positions)
            return
        if self._cand is not None:
            self._cand["strikes"] += 1
            if self._cand["strikes"] >= CONFIRM_FRAMES:
                self._drop_stray()
        if f > self._ref:
            self._ref_raw = raw
        self._accept(f, host, t_us + self._dt_ofs_us, pkt.positions)

    def _accept(self, f: int, host: float, t_us: int, positions: np.ndarray) -> None:
        """One frame of the current numbering (``f`` unwrapped, ``t_us`` shifted) into the
        reorder window."""
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
        self._last_t_us = max(self._last_t_us, t_us) if self._last_t_us is not None else t_us
        self._pending[f] = (host, t_us, positions)
        self._release(host)

    def _hold(self, raw: int, host: float, t_us: int, positions: np.ndarray) -> None:
        """A frame far from the stream: a stray, or the first frames of a restarted counter."""
        c = self._cand
        if c is not None and 0 < _diff32(raw, c["last_raw"]) <= self.window:
            c["items"].append((raw, host, t_us, positions))
            c["last_raw"] = raw
            if len(c["items"]) >= CONFIRM_FRAMES:
                self._resync()
            return
        if c is not None:
            self._drop_stray()
        self._cand = {"items": [(raw, host, t_us, positions)], "last_raw": raw, "strikes": 0}

    def _drop_stray(self) -> None:
        c, self._cand = self._cand, None
        raws = [it[0] for it in c["items"]]
        self._event("stray", f"{len(raws)} packet(s) with frame numbers {raws[:4]} far from the "
                    f"stream (near frame {self._ref_raw}), which carried on without them; "
                    f"discarded", counter="stray_packets", n=len(raws), level=logging.WARNING)

    def _resync(self) -> None:
        """The held frames are the stream now: keep them, renumbered to follow what came
        before unless the jump is a plain gap (device time agrees with the frame count)."""
        c, self._cand = self._cand, None
        items = c["items"]
        self._release(items[0][1], final=True)      # the old numbering is over: release it
        raw0, host0, t0_us = items[0][0], items[0][1], items[0][2]
        gap = _diff32(raw0, self._ref_raw)          # frames after the newest old frame
        rate = float(self.settings.rate_hz)
        dt_s = (t0_us + self._dt_ofs_us - (self._last_t_us or 0)) * 1e-6
        plain_gap = (0 < gap <= 600 * rate
                     and abs(dt_s - gap / rate) <= 0.5 + 0.01 * gap / rate)
        if plain_gap:
            first = self._ref + gap
            detail = (f"{gap - 1} frames missing before frame {first} (a gap of "
                      f"{dt_s:.3f} s on the device clock)")
            self._event("drop", detail, counter="drops", n=gap - 1)
        else:
            elapsed = max(0.0, host0 - (self._last_host if self._last_host is not None
                                        else host0))
            first = self._next + max(0, int(round(elapsed * rate)) - 1)
            old_t = self._last_t_us if self._last_t_us is not None else t0_us
            self._dt_ofs_us = old_t + max(int(round(elapsed * 1e6)), 1) - t0_us
            self._event("resync", f"the sender's frame counter jumped from {self._ref_raw} to "
                        f"{raw0} (device time {t0_us} us); {len(items)} frames kept, "
                        f"renumbered from frame {first}", counter="resyncs",
                        level=logging.WARNING)
        self._next = first
        self._ref = first
        self._ref_raw = raw0
        for raw, host, t_us, positions in items:
            self._accept(first + _diff32(raw, raw0), host, t_us + self._dt_ofs_us, positions)
        self._ref_raw = raw0 + (self._ref - first)    # the wire number of the newest frame

    def _release(self, now: float, final: bool = False) -> None:
        """Move frames whose turn has come to the ready list; declare lost slots as drops."""
        self._release_in_order(now, final, self._take)

    def _take(self, frame: int, item) -> None:
        self._ready_frames.append(frame)
        self._last_host = item[0]
        self._ready.append(item)

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


def _diff32(a: int, b: int) -> int:
    """``a - b`` for uint32 frame counters that may wrap: in ``[-2**31, 2**31)``."""
    return ((int(a) - int(b) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
