"""Markers from a Lab Streaming Layer inlet (:class:`MarkersLSL`; docs/wire.md §4).

The device clock of an LSL stream is the sample timestamp plus the inlet's
``time_correction()`` (the offset of the outlet's clock to this machine's LSL clock, refreshed
every few seconds by the reader thread). LSL carries no frame numbers: ``seq`` counts samples,
and a timestamp gap longer than 1.5 nominal periods is counted as dropped frames (and skips
``seq`` by as many).

- Markers: a stream of type ``Mocap`` with channels ``LABEL_X, LABEL_Y, LABEL_Z`` (mm) per
  marker, as Qualisys' LSL app publishes; configured labels are matched by channel label, a
  label the stream lacks reads NaN (reported once at open).
- Force over LSL: :mod:`treadlab.acquisition.sources.force_lsl`; the inlet both use:
  :mod:`treadlab.acquisition.sources.lsl`.
"""
from __future__ import annotations

import logging

import numpy as np

from treadlab.acquisition.sources.base import Block, Source
from treadlab.acquisition.sources.lsl import InletReader, LSLInlet, channel_labels
from treadlab.acquisition.sources.markers_udp import MarkerSettings, setup_marker_source
from treadlab.config.errors import DeviceError

log = logging.getLogger(__name__)

class MarkersLSL(InletReader, Source):
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
        self._in = LSLInlet(self, settings.stream_name, "Mocap", settings.rate_hz, open_timeout)
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

    def _samples(self, values, device_time, seq, host_time) -> None:
        values = np.asarray(values, dtype=np.float32)
        padded = np.concatenate([values, np.full((values.shape[0], 1), np.nan, np.float32)],
                                axis=1)
        data = padded[:, self._index]                    # (n, k, 3), -1 → the NaN column
        self._push(Block(stream="markers", device_time=device_time, host_time=host_time,
                         data=data, seq=seq))
