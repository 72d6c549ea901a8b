"""Ground contacts from force-plate vertical force (METRICS §2): streaming detection, flight
re-zeroing, left/right assignment.

Arrays in, arrays out: nothing here knows about files, devices or dask. Units: forces N, time
float64 s, sample indices are global (counted from the first sample of the stream), lab frame
X = direction of travel, Y = left, Z = up, centre of pressure in mm.

Flags (``Contacts.flags``, a bitmask; ``flags == 0`` is a valid contact, see ``Contacts.valid``):

=================  =====  ====================================================================
``FLAG_SHORT``       1    contact time < ``min_contact_s``
``FLAG_LOW_PEAK``    2    peak Fz < ``min_peak_n``
``FLAG_NO_FLIGHT``   4    the unloaded period before the strike lasted < ``min_flight_s``
                          (walking, double support: METRICS §2 says flag, do not score)
``FLAG_DROPOUT``     8    NaN samples (dropouts) inside the contact
``FLAG_CROSS_STEP`` 16    split belt: load on both belts during the contact
``FLAG_SIDE``       32    single belt: the side disagrees with the centre of pressure, the
                          foot markers, or alternation
=================  =====  ====================================================================

The detection rule, NaN handling and the streaming contract are specified in
``_contacts_ref.py`` (the NumPy reference, which is the specification); ``_contacts_cy.pyx`` is
the compiled per-sample state machine that the public functions call.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

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

__all__ = ["ContactParams", "Contacts", "ContactState", "detect_contacts", "rezero_flight",
           "assign_sides_split", "assign_sides_single", "FLAG_SHORT", "FLAG_LOW_PEAK",
           "FLAG_NO_FLIGHT", "FLAG_DROPOUT", "FLAG_CROSS_STEP", "FLAG_SIDE", "FLAG_NAMES"]


@dataclass(frozen=True)
class ContactParams:
    """Thresholds of the contact rule (config table ``[contacts]``, METRICS §2).

    strike_n : float, N. A contact starts when Fz reaches it (default 50).
    off_n : float, N. Strike and toe-off times are the crossings of this level (default 20);
        must not exceed ``strike_n``.
    min_contact_s : float, s. Shorter contacts get ``FLAG_SHORT`` (default 0.1).
    min_peak_n : float, N. Contacts whose peak is lower get ``FLAG_LOW_PEAK``. The kernel knows
        no body weight: build it with :meth:`from_bw` (METRICS: 1.0 BW). Default 0 = no check.
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
    i_peak : (c,) int64, global index of the peak.
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
            v = np.zeros(len(self.i_strike), np.int64) if v is None else v
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
        return replace(self, **{k: float(v) for k, v in zip(self._F, sf)},
                       **{k: int(v) for k, v in zip(self._I, si)})


def _load_cy():
    try:
        from treadlab.kernels import _contacts_cy
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            "treadlab.kernels._contacts_cy is not built; run "
            "`python setup.py build_ext --inplace` in the treadlab checkout "
            f"(or reinstall treadlab): {exc}") from exc
    return _contacts_cy


def _as_1d(name, a, dtype=np.float64):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _check_rate(rate_hz):
    rate_hz = float(rate_hz)
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
    return rate_hz


def detect_contacts(fz, rate_hz, params: ContactParams, t0=0.0, state: ContactState | None = None):
    """Foot contacts on one plate's vertical force, block by block (METRICS §2).

    Hysteresis: a contact starts when Fz reaches ``params.strike_n``; its strike time is the
    interpolated crossing of ``params.off_n`` just before (after the last sample below it); it
    ends at the first sample below ``off_n`` after the peak, the toe-off time interpolated the
    same way. Contacts that are short, low, have no flight before them or hold dropouts are kept
    and flagged (module docstring); filter with ``contacts.valid``.

    NaN samples (dropouts) never create a contact: outside a contact, a NaN disarms the detector
    until a valid sample below ``off_n`` is seen again, so a strike hidden in a dropout is not
    reported; inside a contact NaNs are skipped and the contact gets ``FLAG_DROPOUT``.

    Parameters
    ----------
    fz : (n,) float64 array, N. Vertical ground reaction of one plate (> 0 in stance).
    rate_hz : float, Hz. Sample rate.
    params : ContactParams.
    t0 : float, s. Time of global sample 0 of the stream; only used when ``state`` is None
        (the state keeps it).
    state : ContactState or None. The state returned by the previous block; None starts a
        stream at global sample 0.

    Returns
    -------
    contacts : Contacts. The contacts whose toe off falls in this block (a contact still open
        at the end of the block is reported by the block that closes it).
    state : ContactState. Pass it with the next block. Feeding any partition of a trace gives
        exactly the whole-trace result (``Contacts.concat`` joins the blocks' tables).
    """
    rate_hz = _check_rate(rate_hz)
    fz = _as_1d("fz", fz)
    if not isinstance(params, ContactParams):
        raise TypeError(f"params must be a ContactParams, got {type(params).__name__}")
    if state is None:
        state = ContactState.initial(t0, rate_hz)
    elif state.rate_hz != rate_hz:
        raise ValueError(f"rate_hz {rate_hz} differs from the stream's {state.rate_hz}")
    cy = _load_cy()
    sf, si = state._to_arrays()
    parts = []
    start = 0
    cap = min(fz.size // 2 + 2, 4096)
    while True:
        i_s = np.empty(cap, np.int64)
        i_o = np.empty(cap, np.int64)
        i_p = np.empty(cap, np.int64)
        t_s = np.empty(cap)
        t_o = np.empty(cap)
        pk = np.empty(cap)
        fl = np.empty(cap, np.int32)
        count, start = cy._detect_contacts_cy(
            fz, start, rate_hz, state.t0, params.strike_n, params.off_n, params.min_contact_s,
            params.min_peak_n, params.min_flight_s, sf, si, i_s, i_o, i_p, t_s, t_o, pk, fl)
        parts.append(Contacts(i_s[:count], i_o[:count], t_s[:count], t_o[:count], pk[:count],
                              fl[:count], i_p[:count]))
        if start >= fz.size:
            break
    out = parts[0] if len(parts) == 1 else Contacts.concat(parts)
    return out, state._from_arrays(sf, si)
