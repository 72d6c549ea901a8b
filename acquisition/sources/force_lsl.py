"""Force-plate ADC counts from a Lab Streaming Layer inlet (:class:`ForceLSL`; docs/wire.md §4).

A stream carrying the ADC counts of the force-plate amplifier (``channels`` values, int16/int32
or float), converted with the same calibration and tare as the serial driver
(:class:`~treadlab.acquisition.sources.forceplate_serial.ForcePlateSerial`).
"""
from __future__ import annotations

import numpy as np

from treadlab.acquisition.sources.forceplate_serial import ForcePlateSettings, ForceSourceBase
from treadlab.acquisition.sources.lsl import InletReader, LSLInlet
from treadlab.config.errors import DeviceError


class ForceLSL(InletReader, ForceSourceBase):
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
        self._in = LSLInlet(self, settings.stream_name, None, settings.rate_hz, open_timeout)
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

    def _samples(self, values, device_time, seq, host_time) -> None:
        counts = np.rint(np.asarray(values, dtype=np.float64)).astype(self._dtype)
        self._deliver(counts, seq, device_time, host_time)
