"""Lab Streaming Layer inlets: markers (:class:`MarkersLSL`) and force (:class:`ForceLSL`).

The device clock of an LSL stream is the sample timestamp plus the inlet's
``time_correction()`` (the offset of the outlet's clock to this machine's LSL clock, refreshed
every few seconds by the reader thread). LSL carries no frame numbers: ``seq`` counts samples,
and a timestamp gap longer than 1.5 nominal periods is counted as dropped frames (and skips
``seq`` by as many).

- Markers: a stream of type ``Mocap`` with channels ``LABEL_X, LABEL_Y, LABEL_Z`` (mm) per
  marker, as Qualisys' LSL app publishes; configured labels are matched by channel label, a
  label the stream lacks reads NaN (reported once at open).
- Force: a stream carrying the ADC counts of the force-plate amplifier (``channels`` values,
  int16/int32 or float), converted with the same calibration and tare as the serial driver.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pylsl
import pylsl.util

from treadlab.acquisition.sources.base import Block, Source
from treadlab.acquisition.sources.forceplate_serial import ForcePlateSettings, ForceSourceBase
from treadlab.acquisition.sources.markers_udp import MarkerSettings, setup_marker_source
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
    ``LABEL_X, LABEL_Y, LABEL_Z`` in millimetres (DESIGN §3) — what :class:`MarkersLSL` reads
    with :func:`channel_labels`."""
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


class _Inlet:
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
        """(values (n, ch), device_time (n,) s, seq (n,) int64) or None."""
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
        return values, ts + self.correction, seq


class MarkersLSL(Source):
    """Mocap frames from an LSL stream (type ``Mocap``, channels ``LABEL_X/_Y/_Z``, mm).

    Parameters
    ----------
    settings : :class:`MarkerSettings` (``stream_name``, ``rate_hz``, ``labels``).
    name : source name in events.
    open_timeout : s to wait for the stream to be found.
    """

    kind = "markers"

    def __init__(self, settings: MarkerSettings, name: str = "markers",
                 open_timeout: float = 10.0):
        super().__init__(name)
        settings = setup_marker_source(self, settings)
        self._in = _Inlet(self, settings.stream_name, "Mocap", settings.rate_hz, open_timeout)
        self._index: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "MarkersLSL":
        s = MarkerSettings.from_table(cfg.markers)
        if lab is not None and getattr(lab, "marker_stream", None):
            s.stream_name = lab.marker_stream
        return cls(s, **kw)

    def _open(self) -> None:
        info = self._in.open()
        chans = channel_labels(info)
        k, n_ch = len(self.labels), info.channel_count()
        index = np.full((k, 3), -1, dtype=np.intp)
        if chans:
            pos = {c: i for i, c in enumerate(chans)}
            for j, lab in enumerate(self.labels):
                for a, ax in enumerate("XYZ"):
                    index[j, a] = pos.get(f"{lab}_{ax}", pos.get(f"{lab}_{ax.lower()}", -1))
        elif n_ch == 3 * k:
            index = np.arange(3 * k).reshape(k, 3)
            self._event("labels", f"{self._in.where}: no channel labels; assuming the "
                        "configured label order")
        else:
            self._in.close()
            raise DeviceError(f"{self._in.where}: {n_ch} unlabelled channels, the config has "
                              f"{k} markers ({3 * k} channels)")
        missing = [lab for j, lab in enumerate(self.labels) if (index[j] < 0).any()]
        if missing:
            self._event("labels", f"{self._in.where}: stream lacks {', '.join(missing)}; "
                        "they read NaN", level=logging.WARNING)
        self._index = index

    def _close(self) -> None:
        self._in.close()

    def _acquire(self, timeout: float) -> None:
        got = self._in.pull(timeout)
        if got is None:
            return
        values, t, seq = got
        host = time.monotonic()
        values = np.asarray(values, dtype=np.float32)
        padded = np.concatenate([values, np.full((values.shape[0], 1), np.nan, np.float32)],
                                axis=1)
        data = padded[:, self._index]                    # (n, k, 3), -1 → the NaN column
        self._push(Block(stream="markers", device_time=t, host_time=np.full(t.shape, host),
                         data=data, seq=seq))


class ForceLSL(ForceSourceBase):
    """Force-plate ADC counts from an LSL stream, converted like :class:`ForcePlateSerial`.

    Parameters
    ----------
    settings : :class:`ForcePlateSettings` (``stream_name``, ``rate_hz``, ``channels``,
        ``sample_type``, ``volts_per_count``, ``tare_seconds``).
    plates : the ``[[plates]]`` entries.
    name, zero, auto_tare : as for :class:`ForcePlateSerial`.
    open_timeout : s to wait for the stream to be found.
    """

    def __init__(self, settings: ForcePlateSettings, plates, name: str = "force", zero=None,
                 auto_tare: bool | None = None, open_timeout: float = 10.0):
        if not isinstance(settings, ForcePlateSettings):
            settings = ForcePlateSettings.from_table(settings)
        super().__init__(name, settings, plates, zero=zero, auto_tare=auto_tare)
        self._in = _Inlet(self, settings.stream_name, None, settings.rate_hz, open_timeout)
        self._dtype = np.dtype(settings.sample_type)

    @classmethod
    def from_config(cls, cfg, lab=None, **kw) -> "ForceLSL":
        s = ForcePlateSettings.from_table(cfg.forceplate)
        if lab is not None and getattr(lab, "force_stream", None):
            s.stream_name = lab.force_stream
        return cls(s, cfg.plates, **kw)

    def _where(self) -> str:
        return self._in.where

    def _open(self) -> None:
        info = self._in.open()
        if info.channel_count() != self.info.channels:
            self._in.close()
            raise DeviceError(f"{self._in.where}: {info.channel_count()} channels, the config "
                              f"has forceplate.channels = {self.info.channels}")

    def _close(self) -> None:
        self._in.close()

    def _acquire(self, timeout: float) -> None:
        got = self._in.pull(timeout)
        if got is None:
            return
        values, t, seq = got
        host = time.monotonic()
        counts = np.rint(np.asarray(values, dtype=np.float64)).astype(self._dtype)
        self._deliver(counts, seq, t, np.full(t.shape, host))
