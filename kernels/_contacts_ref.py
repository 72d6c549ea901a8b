"""NumPy reference for streaming contact detection and flight re-zeroing: the specification of
``_contacts_cy`` (``rezero_flight`` is at the end of this file).

Written for clarity, not speed, but vectorised over the samples of a block (no per-sample Python
loop), so it is a fair NumPy baseline for the benchmark. The compiled kernel is a per-sample
state machine; the two are independent implementations of the same rule and the tests hold them
to the same answers on every block partition.

The rule (docs/metrics.md §2), on one plate's vertical force ``fz`` (N):

Each sample is *unloaded* (valid and ``< off_n``), *loaded* (valid and ``>= strike_n``), *NaN*
(dropout) or in between (``off_n <= fz < strike_n``, it changes nothing by itself).

- A contact starts at a loaded sample whose previous unloaded/loaded/NaN sample is unloaded (the
  in-between samples are skipped). The strike time is the linear crossing of ``off_n`` between
  that last unloaded sample ``i_below`` and the sample after it; ``i_strike = i_below + 1``.
- The contact ends at the first unloaded sample ``i_off`` after it; the toe-off time is the linear
  crossing of ``off_n`` between ``i_off - 1`` and ``i_off`` (no interpolation, ``t0 + i_off/rate``,
  when ``i_off - 1`` is NaN). ``peak_n``/``i_peak``: the largest valid sample in
  ``[i_strike, i_off)`` (first one on ties).
- NaN never creates a contact: after a NaN sample outside a contact, a valid unloaded sample must
  be seen again before a strike counts (a strike hidden in a dropout is not reported). NaN inside
  a contact is skipped and the contact is flagged ``DROPOUT``.
- The unloaded period before a contact starts at the previous toe off, or at the first unloaded
  sample after the last NaN / after the start of the stream; when it lasted less than
  ``min_flight_s`` the contact is flagged ``NO_FLIGHT``.
- A contact already under way at the first sample, or still open at the last, is not reported
  (the open one stays in the state and is reported by a later block).
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._contacts_common import (
    FLAG_DROPOUT, FLAG_LOW_PEAK, FLAG_NO_FLIGHT, FLAG_SHORT, PHASE_ARMED, PHASE_CONTACT,
    PHASE_UNARMED, ContactParams, Contacts, ContactState,
)

_L, _H, _N = 0, 1, 2  # event codes: unloaded, loaded, NaN


def detect_contacts(fz, rate_hz, params: ContactParams, t0=0.0, state: ContactState | None = None):
    """Reference of :func:`treadlab.kernels.contacts.detect_contacts` (same signature)."""
    fz = np.asarray(fz, dtype=np.float64)
    st = ContactState.initial(t0, rate_hz) if state is None else state.copy()
    t0, rate = st.t0, float(rate_hz)
    n0, n = st.n, fz.size
    parts = []

    def t_of(i):
        return t0 + np.asarray(i, dtype=np.float64) / rate

    pos = 0
    if st.phase == PHASE_CONTACT:
        below = np.flatnonzero(fz < params.off_n)
        stop = below[0] if below.size else n
        seg = fz[:stop]
        if seg.size and not np.all(np.isnan(seg)):
            k = int(np.nanargmax(seg))
            if seg[k] > st.peak:
                st.peak, st.i_peak = float(seg[k]), n0 + k
        if np.isnan(seg).any():
            st.flags |= FLAG_DROPOUT
        if not below.size:
            if n:
                st.f_last = float(fz[-1])
            st.n = n0 + n
            return Contacts.empty(), st
        prev = fz[stop - 1] if stop > 0 else st.f_last
        i_off = n0 + stop
        if np.isnan(prev):
            t_off = float(t_of(i_off))
        else:
            frac = (prev - params.off_n) / (prev - fz[stop])
            t_off = float(t0 + ((i_off - 1) + frac) / rate)
        parts.append(_finish(params, [st.i_strike], [i_off], [st.i_peak], [st.t_strike], [t_off],
                             [st.peak], [st.flags]))
        st.phase, st.i_below = PHASE_ARMED, int(i_off)
        st.f_below, st.f_after = float(fz[stop]), np.nan
        st.t_unload = t_off
        st.i_strike, st.t_strike, st.peak, st.i_peak, st.flags = -1, np.nan, np.nan, -1, 0
        pos = stop + 1

    # ---- idle from block position ``pos``: vectorised over the events of the rest ----------
    x = fz[pos:]
    g0 = n0 + pos
    is_l = x < params.off_n
    is_h = x >= params.strike_n
    is_n = np.isnan(x)
    ev = np.flatnonzero(is_l | is_h | is_n)
    code = np.where(is_l[ev], _L, np.where(is_h[ev], _H, _N))
    # a virtual event before the block stands for the state: unloaded when armed, NaN when not
    ev = np.concatenate(([-1], ev))
    code = np.concatenate(([_L if st.phase == PHASE_ARMED else _N], code))

    start_k = np.flatnonzero((code[1:] == _H) & (code[:-1] == _L)) + 1   # index into ev
    l_k = np.flatnonzero(code == _L)
    n_k = np.flatnonzero(code == _N)
    where_end = np.searchsorted(l_k, start_k)
    closed = where_end < l_k.size
    end_k = l_k[where_end[closed]]
    # every start is followed by its end before the next start, so only the last may be open
    n_closed = int(closed.sum())

    # strike crossing
    below_k = start_k - 1
    below_pos = ev[below_k]
    virtual = below_pos < 0
    i_below = np.where(virtual, st.i_below, g0 + below_pos)
    f_below = np.where(virtual, st.f_below, x[np.maximum(below_pos, 0)])
    after_pos = below_pos + 1
    f_after_block = x[np.minimum(after_pos, max(x.size - 1, 0))] if x.size else np.zeros(0)
    f_after = np.where(virtual & ~np.isnan(st.f_after), st.f_after, f_after_block)
    frac = (params.off_n - f_below) / (f_after - f_below)
    t_strike = t0 + (i_below + frac) / rate
    i_strike = i_below + 1

    # unloaded period before each contact
    h_pos = ev[start_k]
    t_unload = np.empty(start_k.size)
    for j in range(start_k.size):          # one step per contact, not per sample
        last_n = n_k[n_k < start_k[j]]
        last_n = last_n[-1] if last_n.size else -1
        prev_end = end_k[j - 1] if j > 0 else -1
        if prev_end > last_n:
            t_unload[j] = np.nan           # filled with the previous toe off below
        elif last_n >= 0:
            first_l = l_k[l_k > last_n][0]
            t_unload[j] = float(t_of(g0 + ev[first_l]))
        else:                              # unloaded since before this block
            t_unload[j] = st.t_unload

    # toe off
    e_pos = ev[end_k[:n_closed]]
    i_off = g0 + e_pos
    prev = x[e_pos - 1]
    frac_off = (prev - params.off_n) / (prev - x[e_pos])
    t_off = np.where(np.isnan(prev), t_of(i_off), t0 + ((i_off - 1) + frac_off) / rate)
    for j in range(1, start_k.size):
        if np.isnan(t_unload[j]):
            t_unload[j] = t_off[j - 1]

    # peaks and dropouts over [loaded sample, end)
    stops = np.append(e_pos, x.size)[: start_k.size]
    peak = np.empty(start_k.size)
    i_peak = np.empty(start_k.size, np.int64)
    drop = np.empty(start_k.size, bool)
    for j in range(start_k.size):
        seg = x[h_pos[j]:stops[j]]
        k = int(np.nanargmax(seg))
        peak[j], i_peak[j] = seg[k], g0 + h_pos[j] + k
        drop[j] = np.isnan(seg).any()
    flags = np.where(t_strike - t_unload < params.min_flight_s, FLAG_NO_FLIGHT, 0)
    flags = flags | np.where(drop, FLAG_DROPOUT, 0)

    parts.append(_finish(params, i_strike[:n_closed], i_off, i_peak[:n_closed],
                         t_strike[:n_closed], t_off, peak[:n_closed], flags[:n_closed]))

    # ---- the state after the block ---------------------------------------------------------
    if start_k.size > n_closed:            # a contact still open
        j = start_k.size - 1
        st.phase = PHASE_CONTACT
        st.i_strike, st.t_strike = int(i_strike[j]), float(t_strike[j])
        st.peak, st.i_peak, st.flags = float(peak[j]), int(i_peak[j]), int(flags[j])
        st.i_below, st.f_below, st.f_after, st.t_unload = -1, np.nan, np.nan, np.nan
    else:
        last_ln = np.flatnonzero(code != _H)[-1]      # the virtual event at least
        if code[last_ln] == _N:
            st.phase = PHASE_UNARMED
            st.i_below, st.f_below, st.f_after, st.t_unload = -1, np.nan, np.nan, np.nan
        else:
            p = ev[last_ln]
            st.phase = PHASE_ARMED
            if p >= 0:
                st.i_below, st.f_below = int(g0 + p), float(x[p])
                st.f_after = float(x[p + 1]) if p + 1 < x.size else np.nan
                if n_closed and end_k[n_closed - 1] == last_ln:
                    st.t_unload = float(t_off[-1])
                else:
                    last_n = n_k[n_k < last_ln]
                    prev_end = end_k[n_closed - 1] if n_closed else -1
                    if last_n.size and last_n[-1] > prev_end:
                        st.t_unload = float(t_of(g0 + ev[l_k[l_k > last_n[-1]][0]]))
                    elif n_closed:
                        st.t_unload = float(t_off[-1])
                    # else: the unloaded period began before this block: keep st.t_unload
            elif np.isnan(st.f_after) and x.size:
                st.f_after = float(x[0])
    if fz.size:
        st.f_last = float(fz[-1])
    st.n = n0 + n
    return Contacts.concat(parts), st


def _finish(params, i_strike, i_off, i_peak, t_strike, t_off, peak, flags) -> Contacts:
    """Contacts from closed-contact columns, with the duration and peak flags added."""
    t_strike = np.asarray(t_strike, np.float64)
    t_off = np.asarray(t_off, np.float64)
    peak = np.asarray(peak, np.float64)
    flags = np.asarray(flags, np.int32)
    flags = flags | np.where(t_off - t_strike < params.min_contact_s, FLAG_SHORT, 0)
    flags = flags | np.where(peak < params.min_peak_n, FLAG_LOW_PEAK, 0)
    return Contacts(i_strike=np.asarray(i_strike, np.int64), i_off=np.asarray(i_off, np.int64),
                    t_strike=t_strike, t_off=t_off, peak_n=peak,
                    flags=flags.astype(np.int32), i_peak=np.asarray(i_peak, np.int64))


def rezero_flight(wrench, i_strike, i_off, rate_hz, *, guard_s=0.01, min_samples=5, out=None,
                  offsets="full"):
    """Reference for :func:`treadlab.kernels.contacts.rezero_flight` (same signature and
    result; the public function validates, this one trusts its input). ``out``: the corrected
    wrench is copied into it; ``offsets="mean"``: the offsets' mean per channel is returned
    instead of the offsets.

    The rule: flight ``f`` is the window from ``guard`` samples after the toe off of contact
    ``f`` to ``guard`` samples before the strike of contact ``f + 1``
    (``guard = ceil(guard_s × rate_hz)``). A flight whose window has fewer than
    ``min_samples`` samples, or in which some channel has fewer than ``min_samples`` non-NaN
    samples, is not used. Each used flight gives, per channel, the mean of the non-NaN samples
    at the window's centre ``(start + end - 1) / 2`` (sample index). The offset of every sample
    is the linear interpolation of these means over the sample index (``np.interp``: constant
    before the first and after the last centre), zero when no flight is used; the corrected
    wrench is the wrench minus the offsets (NaN stays NaN).
    """
    w = np.asarray(wrench, dtype=np.float64)
    squeeze = w.ndim == 1
    if squeeze:
        w = w[:, None]
    n, k = w.shape
    a = np.asarray(i_strike, np.int64)
    b = np.asarray(i_off, np.int64)
    guard = int(np.ceil(guard_s * float(rate_hz)))
    centres, values = [], []
    for start, end in zip(b[:-1] + guard, a[1:] - guard):
        if end - start < min_samples:
            continue
        seg = w[start:end]
        good = ~np.isnan(seg)
        count = good.sum(axis=0)
        if k and count.min() < min_samples:
            continue
        centres.append(0.5 * (start + end - 1))
        values.append(np.where(good, seg, 0.0).sum(axis=0) / count)
    offs = np.zeros_like(w)
    if centres:
        idx = np.arange(n, dtype=np.float64)
        values = np.asarray(values).reshape(len(centres), k)
        for ch in range(k):
            offs[:, ch] = np.interp(idx, np.asarray(centres), values[:, ch])
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in the compiled kernel
        corrected = w - offs
    if out is not None:
        out.reshape(corrected.shape)[...] = corrected
        corrected = out.reshape(corrected.shape)
    if offsets == "mean":
        mean = offs.mean(axis=0) if n else np.zeros(k)
        return (corrected[:, 0], float(mean[0])) if squeeze else (corrected, mean)
    if squeeze:
        return corrected[:, 0], offs[:, 0]
    return corrected, offs
