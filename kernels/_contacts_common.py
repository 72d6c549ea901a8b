"""Definitions the contact kernel's public module and its NumPy reference share: the flags, the
detector's phases, the parameter, table and state types (docs/design.md §11). Plain data, no
detection logic: the reference stays an independent implementation of the rule.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

FLAG_SHORT = 1
FLAG_LOW_PEAK = 2
FLAG_NO_FLIGHT = 4
FLAG_DROPOUT = 8
FLAG_CROSS_STEP = 16
FLAG_SIDE = 32
FLAG_NAMES = {FLAG_SHORT: "short", FLAG_LOW_PEAK: "low_peak", FLAG_NO_FLIGHT: "no_flight",
              FLAG_DROPOUT: "dropout", FLAG_CROSS_STEP: "cross_step", FLAG_SIDE: "side"}

PHASE_UNARMED = 0   # idle, waiting for a valid unloaded sample (stream start, after a NaN)
PHASE_ARMED = 1     # idle, an unloaded sample seen: the next loaded sample is a strike
PHASE_CONTACT = 2   # in contact, waiting for an unloaded sample


@dataclass(frozen=True)
class ContactParams:
    """Thresholds of the contact rule (config table ``[contacts]``, docs/metrics.md §2).

    strike_n : float, N. A contact starts when Fz reaches it (default 50).
    off_n : float, N. Strike and toe-off times are the crossings of this level (default 20);
        must not exceed ``strike_n``.
    min_contact_s : float, s. Shorter contacts get ``FLAG_SHORT`` (default 0.1).
    min_peak_n : float, N. Contacts whose peak is lower get ``FLAG_LOW_PEAK``. The kernel knows
        no body weight: build it with :meth:`from_bw` (docs/metrics.md §2: 1.0 BW). Default 0 =
        no check.
    min_flight_s : float, s. A shorter unloaded period before a strike gets ``FLAG_NO_FLIGHT``
        (default 0.02).
    """

    strike_n: float = 50.0
    off_n: float = 20.0
    min_contact_s: float = 0.1
    min_peak_n: float = 0.0
    min_flight_s: float = 0.02

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"ContactParams.{f.name} must be finite and >= 0, got {v!r}")
        if self.off_n > self.strike_n:
            raise ValueError(f"ContactParams.off_n ({self.off_n}) must not exceed "
                             f"strike_n ({self.strike_n})")

    @classmethod
    def from_bw(cls, body_weight_n: float, *, strike_n=50.0, off_n=20.0, min_contact_s=0.1,
                min_peak_bw=1.0, min_flight_s=0.02) -> "ContactParams":
        """Parameters with the peak threshold given in body weights (``min_peak_bw`` × BW N)."""
        return cls(strike_n=strike_n, off_n=off_n, min_contact_s=min_contact_s,
                   min_peak_n=float(min_peak_bw) * float(body_weight_n), min_flight_s=min_flight_s)


_INT_FIELDS = ("i_strike", "i_off", "i_peak")


@dataclass
class Contacts:
    """A table of foot contacts: parallel 1-D arrays, one row per contact, sorted by strike.

    i_strike : (c,) int64. Global index of the first sample at or above ``off_n`` (the strike
        crossing lies between ``i_strike - 1`` and ``i_strike``).
    i_off : (c,) int64. Global index of the first sample below ``off_n`` after the peak (the
        toe-off crossing lies between ``i_off - 1`` and ``i_off``). The stance samples are
        ``[i_strike, i_off)``.
    t_strike, t_off : (c,) float64 s, ``t0 + i / rate_hz`` at the interpolated ``off_n``
        crossings.
    peak_n : (c,) float64 N, largest Fz in stance.
    flags : (c,) int32 bitmask (module docstring).
    i_peak : (c,) int64, global index of the peak (-1 when not given).
    side : (c,) int8, 0 left, 1 right, -1 not assigned yet (``assign_sides_*``).
    """

    i_strike: np.ndarray
    i_off: np.ndarray
    t_strike: np.ndarray
    t_off: np.ndarray
    peak_n: np.ndarray
    flags: np.ndarray
    i_peak: np.ndarray = None
    side: np.ndarray = None

    def __post_init__(self):
        for name in _INT_FIELDS:
            v = getattr(self, name)
            v = np.full(len(self.i_strike), -1, np.int64) if v is None else v
            setattr(self, name, np.asarray(v, np.int64))
        for name in ("t_strike", "t_off", "peak_n"):
            setattr(self, name, np.asarray(getattr(self, name), np.float64))
        self.flags = np.asarray(self.flags, np.int32)
        side = np.full(len(self.i_strike), -1, np.int8) if self.side is None else self.side
        self.side = np.asarray(side, np.int8)
        n = len(self.i_strike)
        for f in fields(self):
            v = getattr(self, f.name)
            if v.ndim != 1 or len(v) != n:
                raise ValueError(f"Contacts.{f.name}: expected shape ({n},), got {v.shape}")

    def __len__(self) -> int:
        return len(self.i_strike)

    @classmethod
    def _trusted(cls, i_strike, i_off, t_strike, t_off, peak_n, flags, i_peak) -> "Contacts":
        """Build from arrays already of the right dtypes and length (kernel output)."""
        obj = cls.__new__(cls)
        obj.__dict__.update(i_strike=i_strike, i_off=i_off, t_strike=t_strike, t_off=t_off,
                            peak_n=peak_n, flags=flags, i_peak=i_peak,
                            side=np.full(len(i_strike), -1, np.int8))
        return obj

    @classmethod
    def empty(cls) -> "Contacts":
        z = np.zeros(0)
        return cls(z, z, z, z, z, z)

    @classmethod
    def concat(cls, parts) -> "Contacts":
        """One table from several (e.g. the blocks of a stream), in the given order."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})

    def take(self, index) -> "Contacts":
        """Rows selected by an integer index or a boolean mask."""
        return Contacts(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def valid(self) -> np.ndarray:
        """(c,) bool: no flag set."""
        return self.flags == 0

    @property
    def contact_time(self) -> np.ndarray:
        """(c,) float64 s: ``t_off - t_strike``."""
        return self.t_off - self.t_strike

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class ContactState:
    """Everything :func:`detect_contacts` carries from one block to the next.

    t0, rate_hz : time of global sample 0 (s) and the sample rate (Hz) of the stream.
    n : samples consumed so far (the global index of the next sample).
    phase : ``PHASE_UNARMED`` / ``PHASE_ARMED`` / ``PHASE_CONTACT``.
    i_below, f_below : armed: index and value (N) of the last unloaded sample.
    f_after : armed: value of sample ``i_below + 1`` when it has been seen, else NaN.
    t_unload : s, when the current unloaded period began (previous toe off, or the first
        unloaded sample after a NaN / the stream start).
    f_last : value of the last sample consumed (NaN before any).
    i_strike, t_strike, peak, i_peak, flags : the open contact so far (phase contact).
    """

    t0: float
    rate_hz: float
    n: int = 0
    phase: int = PHASE_UNARMED
    i_below: int = -1
    f_below: float = np.nan
    f_after: float = np.nan
    t_unload: float = np.nan
    f_last: float = np.nan
    i_strike: int = -1
    t_strike: float = np.nan
    peak: float = np.nan
    i_peak: int = -1
    flags: int = 0

    @classmethod
    def initial(cls, t0: float = 0.0, rate_hz: float = 1.0) -> "ContactState":
        return cls(t0=float(t0), rate_hz=float(rate_hz))

    def copy(self) -> "ContactState":
        return replace(self)

    # the compiled kernel keeps the state in two small arrays
    _F = ("f_below", "f_after", "t_unload", "f_last", "t_strike", "peak")
    _I = ("n", "phase", "i_below", "i_strike", "i_peak", "flags")

    def _to_arrays(self):
        return (np.array([getattr(self, k) for k in self._F], np.float64),
                np.array([getattr(self, k) for k in self._I], np.int64))

    def _from_arrays(self, sf, si) -> "ContactState":
        new = ContactState(self.t0, self.rate_hz)
        new.__dict__.update(zip(self._F, sf.tolist()))
        new.__dict__.update(zip(self._I, si.tolist()))
        return new
