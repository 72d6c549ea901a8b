"""The Lab Streaming Layer plumbing the LSL sources share (docs/wire.md §4): the inlet with its
clock correction and gap counting, and the ``Mocap`` stream description (channels
``LABEL_X, LABEL_Y, LABEL_Z`` in mm) that the marker driver, the simulator and the tests use.

The device clock of an LSL stream is the sample timestamp plus the inlet's ``time_correction()``
(the offset of the outlet's clock to this machine's LSL clock, refreshed every
:data:`CORRECTION_PERIOD` s by the reader thread). LSL carries no frame numbers: ``seq`` counts
samples, and a timestamp gap longer than 1.5 nominal periods is counted as dropped frames.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

import numpy as np
import pylsl
import pylsl.util

from treadlab.acquisition.sources.base import Source
from treadlab.config.errors import DeviceError

log = logging.getLogger(__name__)

#: seconds between time_correction() refreshes
CORRECTION_PERIOD = 5.0


def channel_labels(info: "pylsl.StreamInfo") -> list[str]:
    """Channel labels from an LSL stream's ``desc/channels/channel/label`` (may be empty)."""
    labels = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    return labels


def mocap_stream_info(name: str, labels, rate_hz: float, source_id: str) -> "pylsl.StreamInfo":
    """An LSL ``Mocap`` stream description: 3 float32 channels per marker, labelled
    ``LABEL_X, LABEL_Y, LABEL_Z`` in millimetres (docs/wire.md §4) — what
    :class:`~treadlab.acquisition.sources.markers_lsl.MarkersLSL` reads with
    :func:`channel_labels`."""
    info = pylsl.StreamInfo(name, "Mocap", 3 * len(labels), float(rate_hz), pylsl.cf_float32,
                            source_id)
    chans = info.desc().append_child("channels")
    for lab in labels:
        for ax in "XYZ":
            c = chans.append_child("channel")
            c.append_child_value("label", f"{lab}_{ax}")
            c.append_child_value("unit", "millimeters")
            c.append_child_value("type", f"Position{ax}")
    return info


class LSLInlet:
    """One resolved LSL inlet: pull chunks, keep time_correction fresh, count gaps."""

    def __init__(self, source: Source, stream_name: str, stream_type: str | None,
                 rate_hz: float, open_timeout: float):
        self.source = source
        self.stream_name = stream_name
        self.stream_type = stream_type
        self.rate_hz = float(rate_hz)
        self.open_timeout = float(open_timeout)
        self.where = f"lsl:{stream_name}"
        self.inlet: pylsl.StreamInlet | None = None
        self.full_info = None
        self.correction: float | None = None
        self._estimates: list[float] = []
        self._corrected_at = -np.inf
        self._last_ts: float | None = None
        self._seq = -1

    def open(self) -> pylsl.StreamInfo:
        found = pylsl.resolve_byprop("name", self.stream_name, minimum=1,
                                     timeout=self.open_timeout)
        if self.stream_type:
            found = [s for s in found if s.type() == self.stream_type] or found
        if not found:
            raise DeviceError(f"{self.where}: no LSL stream named {self.stream_name!r} found "
                              f"within {self.open_timeout:.1f} s")
        self.inlet = pylsl.StreamInlet(found[0], max_buflen=60, recover=True)
        try:
            self.full_info = self.inlet.info(timeout=self.open_timeout)
            self.inlet.open_stream(timeout=self.open_timeout)
        except pylsl.util.TimeoutError:
            raise DeviceError(f"{self.where}: the stream did not answer within "
                              f"{self.open_timeout:.1f} s") from None
        return self.full_info

    def close(self) -> None:
        if self.inlet is not None:
            try:
                self.inlet.close_stream()
            except Exception:  # noqa: BLE001 - closing a lost stream must not raise
                pass
            self.inlet = None

    def pull(self, timeout: float):
        """(values (n, ch), device_time (n,) s, seq (n,) int64, host_time (n,) s) or None;
        host_time is ``time.monotonic()`` at receipt."""
        now = time.monotonic()
        if now - self._corrected_at > CORRECTION_PERIOD:
            try:
                self._estimates.append(self.inlet.time_correction(timeout=2.0))
                del self._estimates[:-10]
                # the median of recent estimates: one noisy estimate does not move the clock
                self.correction = float(np.median(self._estimates))
            except pylsl.util.TimeoutError:
                if self.correction is None:
                    self.source._event("error", f"{self.where}: time_correction timed out; "
                                       "using 0", level=logging.WARNING)
                    self.correction = 0.0
            self._corrected_at = now
        try:
            samples, stamps = self.inlet.pull_chunk(timeout=timeout, max_samples=4096)
        except pylsl.util.LostError:
            self.source._event("disconnect", f"{self.where}: stream lost; waiting for it to "
                               "return", level=logging.WARNING)
            self.source._stop.wait(0.2)
            return None
        if not stamps:
            return None
        values = np.asarray(samples)
        ts = np.asarray(stamps, dtype=np.float64)          # the outlet's clock
        # seq: sample counter; timestamp gaps longer than 1.5 periods count as drops
        steps = np.ones(ts.shape[0], dtype=np.int64)
        prev = np.r_[self._last_ts if self._last_ts is not None else ts[0] - 1 / self.rate_hz,
                     ts[:-1]]
        gap = np.rint((ts - prev) * self.rate_hz).astype(np.int64)
        big = (ts - prev) * self.rate_hz > 1.5
        steps[big] = gap[big]
        for i in np.flatnonzero(big):
            n = int(steps[i] - 1)
            self.source._event("drop", f"{self.where}: {n} samples missing before "
                               f"timestamp {ts[i]:.4f} s (gap {ts[i] - prev[i]:.4f} s)",
                               counter="drops", n=n)
        seq = self._seq + np.cumsum(steps)
        self._seq = int(seq[-1])
        self._last_ts = float(ts[-1])
        return values, ts + self.correction, seq, np.full(ts.shape, time.monotonic())


class InletReader(ABC):
    """What an LSL source does with its :class:`LSLInlet` ``self._in``: close it, and pull what
    arrived into :meth:`_samples` (a driver mixin, before its ``Source`` base)."""

    def _close(self) -> None:
        self._in.close()

    def _acquire(self, timeout: float) -> None:
        got = self._in.pull(timeout)
        if got is not None:
            self._samples(*got)

    @abstractmethod
    def _samples(self, values, device_time, seq, host_time) -> None:
        """Turn one pulled chunk into blocks: values (n, ch), times (n,) s, seq (n,) int64."""
