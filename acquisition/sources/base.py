"""One interface for every device source: open, read timestamped blocks, close (docs/design.md §3).

The subclass contract (BrainFlow's split, docs/design.md §3): the :class:`Source` base owns the block
queue, the host timestamps, the counters and the event list, and runs the reader thread; a
driver only opens its device (:meth:`Source._open`), reads and parses what arrived
(:meth:`Source._acquire`), and hands finished blocks to :meth:`Source._push`. It reports what
went wrong with :meth:`Source._event` (one event per incident, with a counter increment), and
closes (:meth:`Source._close`).

Because every driver reads in its own thread into a bounded queue, :meth:`Source.read` never
waits on a device longer than its ``timeout``: the recorder is never blocked by a slow or
vanished device. If the recorder stops reading, the oldest blocks are dropped once the queue is
full — counted as ``overflow`` with an event, never silently.

Drivers are found through the explicit registry :data:`SOURCES`; an unknown name is answered
with the known ones.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from treadlab.config.errors import ConfigError, DeviceError
from treadlab.config.markers import to_cgm

log = logging.getLogger(__name__)

#: ``(host_time, source, kind, detail)``: host_time is ``time.monotonic()`` seconds.
Event = tuple[float, str, str, str]

#: Counters every source reports (others may be added by a driver).
COUNTERS = ("frames", "blocks", "drops", "resyncs", "crc_errors", "discarded_bytes",
            "reconnects", "duplicates", "reordered", "late", "bad_packets", "overflow")


@dataclass
class Block:
    """A run of consecutive frames from one source.

    Attributes
    ----------
    stream : ``"force"``, ``"markers"``, ``"belt"`` or ``"analog"``.
    device_time : (n,) float64, s, the device clock, unwrapped (monotonic while the device runs).
    host_time : (n,) float64, s, ``time.monotonic()`` when the bytes/datagram were received.
    data : force: (n, p, 6) float32 ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and N·m, lab frame;
        markers: (n, k, 3) float32 mm, lab frame, NaN = occluded; belt: (n, b) m/s;
        analog: (n, c) float32 in each channel's unit (V, mV, …) as the device sends it.
    raw : force only: (n, c) int16/int32 ADC counts as received (None for markers).
    seq : (n,) int64 unwrapped frame numbers (gaps = dropped frames).
    cop : force only, optional: (n, p, 3) float32 mm, lab frame — the centre of pressure the
        device itself reports (QTM), NaN while a plate is unloaded; kept for provenance
        (``/raw/force/cop_device``); None when the device sends none.
    """

    stream: str
    device_time: np.ndarray
    host_time: np.ndarray
    data: np.ndarray
    raw: np.ndarray | None = None
    seq: np.ndarray | None = None
    cop: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.device_time.shape[0])


@dataclass
class StreamInfo:
    """What a source delivers.

    Attributes
    ----------
    stream : ``"force"`` or ``"markers"``.
    rate_hz : nominal frame rate, Hz.
    labels : marker labels in wire order (markers) or plate names (force).
    channels : raw channels per frame (force ADC channels; markers: number of markers).
    sample_type : ``"int16"``/``"int32"`` for raw force counts, ``"float32"`` for markers.
    plates : plate names (force), empty for markers.
    """

    stream: str
    rate_hz: float
    labels: list[str] = field(default_factory=list)
    channels: int = 0
    sample_type: str = "float32"
    plates: list[str] = field(default_factory=list)


class Source(ABC):
    """A device stream: ``open()`` → ``read(timeout)`` blocks → ``close()``.

    Subclass contract: set ``name``, ``kind`` and ``info`` in ``__init__`` (after calling
    ``super().__init__(name)``), implement ``_open``, ``_acquire`` and ``_close``. ``_acquire``
    runs in the reader thread, waits at most ``timeout`` seconds for data, and calls
    ``_push(block)`` for each parsed block; a transient device error may be raised as
    :class:`DeviceError` after the driver has handled what it can (the base logs it as an
    ``error`` event and calls ``_acquire`` again after a short pause).

    Parameters
    ----------
    name : the source name used in events (e.g. ``"force"``, ``"markers"``).
    max_blocks : bound of the block queue (oldest dropped and counted as ``overflow``).
    """

    kind: str = "source"
    info: StreamInfo

    def __init__(self, name: str, max_blocks: int = 20000):
        self.name = name
        self._max_blocks = int(max_blocks)
        self._blocks: deque[Block] = deque()
        self._events: list[Event] = []
        self._counters: dict[str, int] = {k: 0 for k in COUNTERS}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._is_open = False
        #: more streams from the same device connection that a capture records beside this
        #: one, opened after it and closed before it (QTM's analog channels: ``/raw/analog``)
        self.extra: list[Source] = []

    # --- public interface --------------------------------------------------------------

    def open(self) -> None:
        """Open the device and start the reader thread.

        Raises
        ------
        DeviceError naming the port/stream when the device cannot be opened.
        """
        if self._is_open:
            return
        self._stop.clear()
        self._open()
        self._is_open = True
        self._thread = threading.Thread(target=self._run, name=f"treadlab-{self.name}",
                                        daemon=True)
        self._thread.start()
        log.debug("%s: opened", self.name)

    def read(self, timeout: float = 0.1) -> list[Block]:
        """Every block received since the last call, waiting at most ``timeout`` s for one.

        Returns an empty list when nothing arrived in time; never blocks longer.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._blocks:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._is_open:
                    break
                self._cond.wait(remaining)
            out = list(self._blocks)
            self._blocks.clear()
        return out

    def close(self) -> None:
        """Stop the reader thread and close the device (idempotent)."""
        if not self._is_open:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                log.warning("%s: reader thread did not stop within 5 s", self.name)
        self._thread = None
        try:
            self._close()
        finally:
            self._is_open = False
            with self._cond:
                self._cond.notify_all()
        log.debug("%s: closed", self.name)

    def drain_events(self) -> list[Event]:
        """The events logged since the last call: ``(host_time, source, kind, detail)``."""
        with self._cond:
            out, self._events = self._events, []
        return out

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters: frames, drops, resyncs, crc_errors, reconnects, …"""
        with self._cond:
            return dict(self._counters)

    @property
    def is_open(self) -> bool:
        return self._is_open

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} open={self._is_open}>"

    # --- what a driver implements ------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Open the device; raise DeviceError naming the port/stream when it cannot."""

    @abstractmethod
    def _acquire(self, timeout: float) -> None:
        """Read what arrived within ``timeout`` s, parse it, ``_push`` the blocks."""

    @abstractmethod
    def _close(self) -> None:
        """Release the device."""

    # --- what the base offers a driver -------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once ``close()`` was called: long waits in a driver should give up."""
        return self._stop.is_set()

    def _push(self, block: Block) -> None:
        """Queue a parsed block (called from the reader thread)."""
        n = len(block)
        if n == 0:
            return
        with self._cond:
            self._blocks.append(block)
            self._counters["frames"] += n
            self._counters["blocks"] += 1
            if len(self._blocks) > self._max_blocks:
                lost = self._blocks.popleft()
                self._counters["overflow"] += len(lost)
                self._events.append((time.monotonic(), self.name, "overflow",
                                     f"reader queue full ({self._max_blocks} blocks): "
                                     f"dropped {len(lost)} oldest frames"))
            self._cond.notify_all()

    def _event(self, kind: str, detail: str, counter: str | None = None, n: int = 1,
               level: int = logging.INFO) -> None:
        """Log one incident as an event and add ``n`` to ``counter`` (if given)."""
        with self._cond:
            self._events.append((time.monotonic(), self.name, kind, detail))
            if counter is not None:
                self._counters[counter] = self._counters.get(counter, 0) + int(n)
        log.log(level, "%s: %s: %s", self.name, kind, detail)

    def _count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter without an event (e.g. discarded bytes)."""
        if n:
            with self._cond:
                self._counters[counter] = self._counters.get(counter, 0) + int(n)

    def _release_in_order(self, now: float, final: bool, take) -> None:
        """Release held network frames in frame-number order (the UDP and NatNet drivers).

        Expects ``self._pending`` ({frame: item whose [0] is the host receive time, s}),
        ``self._next`` (the next frame number due), ``self._ref`` (the highest frame number
        seen), ``self.window`` (frames) and ``self.max_wait`` (s), and the ``self._released``
        deque / ``self._released_set`` of frame numbers already released. ``take(frame,
        item)`` receives each frame whose turn has come. A missing frame is declared lost (one
        ``drop`` event counting the gap) once the window has moved past it, the oldest held
        frame has waited ``max_wait``, or ``final``.
        """
        while self._pending:
            if self._next in self._pending:
                take(self._next, self._pending.pop(self._next))
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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._acquire(0.05)
            except DeviceError as exc:
                self._event("error", str(exc), level=logging.WARNING)
                self._stop.wait(0.2)
            except Exception as exc:  # a driver bug must not kill capture silently
                self._event("error", f"{type(exc).__name__}: {exc}", level=logging.ERROR)
                log.exception("%s: reader failed", self.name)
                self._stop.wait(0.5)


def match_labels(wanted, have, extra: dict | None = None) -> np.ndarray:
    """Index into ``have`` (a device's marker names) of every configured label in ``wanted``:
    by name, else through the CGM aliases (built-in plus ``extra``, the lab's
    ``[marker_names]``); −1 where the device has no such marker."""
    pos = {h: i for i, h in enumerate(have)}
    cgm_h = {c: i for i, c in enumerate(to_cgm(list(have), extra or None))}
    cgm_w = list(to_cgm(list(wanted), extra or None))
    return np.array([pos.get(w, cgm_h.get(c, -1)) for w, c in zip(wanted, cgm_w)],
                    dtype=np.intp)


def table_values(table, names) -> dict:
    """The values of ``names`` present in a config table (dataclass, namespace or dict).

    Drivers build their settings dataclass from the config's table with it, so a settings
    class mirrors its TOML table without depending on how the config module stores it.
    """
    out = {}
    for name in names:
        if isinstance(table, dict):
            if name in table:
                out[name] = table[name]
        elif hasattr(table, name):
            out[name] = getattr(table, name)
    return out


# --- the registry ---------------------------------------------------------------------------

class _Registry(dict):
    """``name -> driver class``, imported on first use; unknown names list the known ones."""

    def __missing__(self, name):
        known = ", ".join(sorted(self))
        raise ConfigError(None, "driver", f"unknown source {name!r} (known: {known})")

    def __getitem__(self, name):
        target = super().__getitem__(name) if name in self else self.__missing__(name)
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            super().__setitem__(name, target)
        return target

    def get(self, name, default=None):
        return self[name] if name in self else default

    def items(self):
        return [(k, self[k]) for k in self]

    def values(self):
        return [self[k] for k in self]


#: Explicit registry of drivers (the ``driver`` key of ``[forceplate]`` / ``[markers]``).
#: ``"simulated"`` is the serial force-plate driver reading the simulator's pty.
SOURCES: dict[str, type[Source]] = _Registry({
    "forceplate_serial": "treadlab.acquisition.sources.forceplate_serial:ForcePlateSerial",
    "simulated": "treadlab.acquisition.sources.forceplate_serial:ForcePlateSerial",
    "forceplate_lsl": "treadlab.acquisition.sources.force_lsl:ForceLSL",
    "markers_udp": "treadlab.acquisition.sources.markers_udp:MarkersUDP",
    "markers_lsl": "treadlab.acquisition.sources.markers_lsl:MarkersLSL",
    "qualisys": "treadlab.acquisition.sources.qualisys:Qualisys",
    "natnet": "treadlab.acquisition.sources.natnet:NatNetMarkers",
})


def sources_from_config(cfg, lab=None) -> tuple[Source, Source]:
    """The force and marker sources a lab config asks for (not yet opened).

    Parameters
    ----------
    cfg : ``treadlab.config.LabConfig``.
    lab : a running :class:`treadlab.acquisition.sim.simulated.SimulatedLab` whose endpoints
        replace ``port = "auto"`` / ``markers.port = 0`` (None for real devices).

    Returns
    -------
    (force_source, marker_source)
    """
    fp_cls = SOURCES[cfg.forceplate.driver]
    mk_cls = SOURCES[cfg.markers.driver]
    if fp_cls is mk_cls and hasattr(fp_cls, "pair_from_config"):
        return fp_cls.pair_from_config(cfg, lab=lab)    # both streams on one connection
    force = fp_cls.from_config(cfg, lab=lab)
    markers = mk_cls.from_config(cfg, lab=lab)
    return force, markers
