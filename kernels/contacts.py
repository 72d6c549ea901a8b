"""Ground contacts from force-plate vertical force (docs/metrics.md §2): streaming detection, flight
re-zeroing, left/right assignment.

Arrays in, arrays out: nothing here knows about files, devices or dask. Units: forces N, time
float64 s, sample indices are global (counted from the first sample of the stream), lab frame
X = direction of travel, Y = left, Z = up, centre of pressure in mm.

Flags (``Contacts.flags``, a bitmask; ``flags == 0`` is a valid contact, see ``Contacts.valid``):

=================  =====  ====================================================================
``FLAG_SHORT``       1    contact time < ``min_contact_s``
``FLAG_LOW_PEAK``    2    peak Fz < ``min_peak_n``
``FLAG_NO_FLIGHT``   4    the unloaded period before the strike lasted < ``min_flight_s``
                          (walking, double support: docs/metrics.md §2 says flag, do not score)
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

import math
import warnings
from dataclasses import replace

import numpy as np

from treadlab.kernels._compiled import compiled
from treadlab.kernels._contacts_common import (FLAG_CROSS_STEP, FLAG_DROPOUT, FLAG_LOW_PEAK,
                                              FLAG_NAMES, FLAG_NO_FLIGHT, FLAG_SHORT, FLAG_SIDE,
                                              PHASE_ARMED, PHASE_CONTACT, PHASE_UNARMED,
                                              ContactParams, Contacts, ContactState)

__all__ = ["ContactParams", "Contacts", "ContactState", "PHASE_UNARMED", "PHASE_ARMED",
           "PHASE_CONTACT", "detect_contacts", "rezero_flight",
           "flight_baseline",
           "centre_of_pressure", "assign_sides_split", "assign_sides_single", "FLAG_SHORT",
           "FLAG_LOW_PEAK",
           "FLAG_NO_FLIGHT", "FLAG_DROPOUT", "FLAG_CROSS_STEP", "FLAG_SIDE", "FLAG_NAMES"]


def _as_1d(name, a, dtype=np.float64):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _check_rate(rate_hz):
    rate_hz = float(rate_hz)
    if not math.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
    return rate_hz


def detect_contacts(fz, rate_hz, params: ContactParams, t0=0.0, state: ContactState | None = None):
    """Foot contacts on one plate's vertical force, block by block (docs/metrics.md §2).

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
    cy = compiled("_contacts_cy")
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
        parts.append(Contacts._trusted(i_s[:count], i_o[:count], t_s[:count], t_o[:count],
                                       pk[:count], fl[:count], i_p[:count]))
        if start >= fz.size:
            break
    out = parts[0] if len(parts) == 1 else Contacts.concat(parts)
    return out, state._from_arrays(sf, si)


# ---------------------------------------------------------------------------------------------
# Whole-trace helpers. ``rezero_flight`` runs compiled (``_contacts_cy._rezero_flight_cy``,
# specified by ``_contacts_ref.rezero_flight``): its per-flight means were a Python loop over
# the flights. ``flight_baseline``'s interpolation to every sample is compiled too
# (``_interp_samples_cy``, checked against ``np.interp``). The others are vectorised NumPy
# with one step per contact (not per sample).


def _intervals_check(name_a, a, name_b, b, n):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must be 1-D arrays of one length, got "
                         f"{a.shape} and {b.shape}")
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    if a.size and (a.min() < 0 or b.max() > n or np.any(b < a)):
        raise ValueError(f"contact indices out of range: need 0 <= {name_a} <= {name_b} <= {n}")
    return a, b


def rezero_flight(wrench, i_strike, i_off, rate_hz, *, guard_s=0.01, min_samples=5, out=None,
                  offsets="full"):
    """Remove force-plate zero drift using the flight phases (Sinitski 2015).

    Between consecutive contacts of this plate the plate is unloaded: the mean of each channel
    over that flight (leaving ``guard_s`` after the toe off and before the next strike) is the
    zero offset at the flight's centre. Offsets are linearly interpolated between flights, held
    constant before the first and after the last, and subtracted. The stretches before the first
    and after the last contact are not used (a contact under way there is not in the table).

    Parameters
    ----------
    wrench : (n, k) or (n,) float array, one plate's channels (typically (n, 6)
        ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and N·m); NaN samples are ignored.
    i_strike, i_off : (c,) integer arrays, the plate's contacts (``Contacts`` convention),
        sorted by time.
    rate_hz : float, Hz.
    guard_s : float, s. Margin kept clear of each contact (default 0.01).
    min_samples : int >= 1. Flights with fewer valid samples in the window are not used.
    out : float64 C-contiguous array of ``wrench``'s shape, optional. Where ``corrected`` is
        written; may be ``wrench`` itself (in place: a long recording needs no second copy).
    offsets : ``"full"`` (default) or ``"mean"``. ``"mean"``: return each channel's mean
        offset over the recording instead of the per-sample offsets (no (n, k) array).

    Returns
    -------
    corrected : float64 array, the shape of ``wrench``: ``wrench - offsets``.
    offsets : float64 array, the shape of ``wrench``: the estimated zero offset at every sample
        (all zero when no flight was usable: there is nothing to estimate from); with
        ``offsets="mean"``, (k,) (a scalar for 1-D ``wrench``): their mean over the samples.
    """
    w = np.asarray(wrench, dtype=np.float64)
    squeeze = w.ndim == 1
    if squeeze:
        w = w[:, None]
    if w.ndim != 2:
        raise ValueError(f"wrench: expected shape (n,) or (n, k), got {np.shape(wrench)}")
    w = np.ascontiguousarray(w)
    rate_hz = _check_rate(rate_hz)
    guard_s = float(guard_s)
    if not math.isfinite(guard_s) or guard_s < 0:
        raise ValueError(f"guard_s must be finite and >= 0, got {guard_s!r}")
    if int(min_samples) != min_samples or min_samples < 1:
        raise ValueError(f"min_samples must be an integer >= 1, got {min_samples!r}")
    n = w.shape[0]
    a, b = _intervals_check("i_strike", i_strike, "i_off", i_off, n)
    if np.any(np.diff(a) < 0):
        raise ValueError("i_strike must be sorted (the plate's contacts in time order)")
    guard = int(np.ceil(guard_s * rate_hz))
    lo = np.ascontiguousarray(b[:-1] + guard)   # flight f: after contact f, before contact f+1
    hi = np.ascontiguousarray(a[1:] - guard)
    k = w.shape[1]
    if offsets not in ("full", "mean"):
        raise ValueError(f'offsets must be "full" or "mean", got {offsets!r}')
    if out is None:
        corrected = np.empty_like(w)
    else:
        corrected = out[:, None] if squeeze and out.ndim == 1 else out
        if corrected.shape != w.shape or corrected.dtype != np.float64 \
                or not corrected.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous float64 of shape {np.shape(wrench)}")
        if corrected is not w and np.may_share_memory(corrected, w):
            w = w.copy()  # in place is only safe sample for sample: out is wrench itself
    full = offsets == "full"
    offs = np.empty_like(w) if full else np.empty((0, k))
    sums = np.empty(k)
    compiled("_contacts_cy")._rezero_flight_cy(
        w, lo, hi, int(min_samples), np.empty(lo.size), np.empty((lo.size, k)), sums, corrected,
        offs)
    if not full:
        offs = sums / n if n else np.zeros(k)
        return (corrected[:, 0], float(offs[0])) if squeeze else (corrected, offs)
    if squeeze:
        return corrected[:, 0], offs[:, 0]
    return corrected, offs


def flight_baseline(fz, rate_hz, *, window_s=1.0, quantile=0.05, step=1):
    """A first, contact-free estimate of the vertical zero offset, for traces whose drift is
    large enough to hide the flight phases from the 20 N threshold.

    In running every window longer than a stride holds unloaded samples (flight on a single
    belt, swing on a split belt: at least about 20 % of the time), so a low quantile of Fz in
    each window sits on the unloaded level. The quantiles are placed at the window centres and
    linearly interpolated (constant beyond the first and last centre). Subtract it before a
    first :func:`detect_contacts`, then refine every channel with :func:`rezero_flight`.

    Parameters
    ----------
    fz : (n,) float array, N. Vertical force of one plate; NaN ignored.
    rate_hz : float, Hz.
    window_s : float, s. Window length: longer than one stride (default 1.0).
    quantile : float in (0, 1). Default 0.05 (with ≥ 20 % unloaded samples per window it is the
        unloaded level's lower quartile, about -0.7 sigma of the force noise).
    step : int >= 1. Estimate on every ``step``-th sample (``fz[::step]`` at ``rate_hz /
        step``) and interpolate linearly back to every sample, as ``np.interp(np.arange(n),
        np.arange(0, n, step), coarse)`` gives it (default 1: every sample).

    Returns
    -------
    (n,) float64, N: the estimated offset at every sample (zeros when fz is empty; NaN only
    if every window is all NaN).
    """
    rate_hz = _check_rate(rate_hz)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be an integer >= 1, got {step!r}")
    step = int(step)
    if step > 1:  # only the decimated samples are copied
        fz = np.asarray(fz)
        if fz.ndim != 1:
            raise ValueError(f"fz: expected a 1-D array, got shape {fz.shape}")
        if fz.size == 0:
            return np.zeros(0)
        coarse = flight_baseline(fz[::step], rate_hz / step, window_s=window_s,
                                 quantile=quantile)
        return _interp_samples(np.arange(0, fz.size, step, dtype=np.float64), coarse, fz.size)
    fz = _as_1d("fz", fz)
    n = fz.size
    if n == 0:
        return np.zeros(0)
    w = max(1, int(round(window_s * rate_hz)))
    k = n // w
    centres, levels = [], []
    if k:
        blocks = fz[: k * w].reshape(k, w)
        if np.isnan(blocks).any():
            with warnings.catch_warnings():          # all-NaN windows give NaN, skipped below
                warnings.simplefilter("ignore", RuntimeWarning)
                q = np.nanquantile(blocks, quantile, axis=1)
        else:  # the same values; nanquantile costs a Python call per window
            q = np.quantile(blocks, quantile, axis=1)
        centres.append(np.arange(k) * w + 0.5 * (w - 1))
        levels.append(q)
    if n - k * w >= max(1, w // 2) or k == 0:      # a last partial window, if long enough
        tail = fz[k * w:]
        if np.isfinite(tail).any():
            centres.append(np.array([k * w + 0.5 * (tail.size - 1)]))
            levels.append(np.array([np.nanquantile(tail, quantile)]))
    centres = np.concatenate(centres) if centres else np.zeros(0)
    levels = np.concatenate(levels) if levels else np.zeros(0)
    good = np.isfinite(levels)
    if not good.any():
        return np.full(n, np.nan)
    return _interp_samples(centres[good], levels[good], n)


def _interp_samples(xp, fp, n):
    """``np.interp(np.arange(n), xp, fp)`` (``xp`` strictly increasing, not empty), compiled:
    the same values, without a binary search per sample."""
    out = np.empty(n)
    compiled("_contacts_cy")._interp_samples_cy(np.ascontiguousarray(xp, np.float64),
                                               np.ascontiguousarray(fp, np.float64), out)
    return out


def centre_of_pressure(wrench, origin, surface_z=None):
    """Centre of pressure of one plate in the lab frame.

    Parameters
    ----------
    wrench : (n, 6) float array ``[Fx, Fy, Fz, Mx, My, Mz]``, N and N·m, lab frame, moments
        about ``origin``.
    origin : (3,) float, mm, lab frame: the point the moments are taken about.
    surface_z : float, mm, height of the plate surface (default: ``origin[2]``, i.e. moments
        about a point on the surface).

    Returns
    -------
    (n, 2) float64, mm: COP x and y in the lab frame; NaN where Fz <= 0 or a channel is NaN.
    """
    w = np.asarray(wrench, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != 6:
        raise ValueError(f"wrench: expected shape (n, 6), got {w.shape}")
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    dz = 0.0 if surface_z is None else float(surface_z) - o[2]   # mm
    fx, fy, fz, mx, my = (w[:, i] for i in range(5))
    with np.errstate(invalid="ignore", divide="ignore"):
        fzs = np.where(fz > 0, fz, np.nan)
        # M = (p - o) x F with p on the surface: Mx = dy Fz - dz Fy, My = dz Fx - dx Fz
        x = o[0] + (dz * fx - 1000.0 * my) / fzs
        y = o[1] + (1000.0 * mx + dz * fy) / fzs
    return np.stack([x, y], axis=1)


def assign_sides_split(left: Contacts, right: Contacts, fz_left, fz_right, params: ContactParams,
                       *, cross_fraction=0.25) -> Contacts:
    """One contact table from the two belts of a split-belt treadmill (each belt = one foot).

    Parameters
    ----------
    left, right : Contacts detected on the left and right belts (one sample clock).
    fz_left, fz_right : (n,) float arrays, N: the two belts' vertical force over the same
        samples the contacts index.
    params : ContactParams: ``strike_n`` is the load that counts on the other belt and
        ``min_flight_s`` the shortest flight between consecutive contacts of either foot.
    cross_fraction : float. A contact during which the *other* belt carries at least
        ``strike_n`` for more than this fraction of its valid samples is a cross-step (one foot
        on both belts) and gets ``FLAG_CROSS_STEP`` (default 0.25, a treadlab choice).

    Returns
    -------
    Contacts sorted by ``t_strike`` with ``side`` 0 (left belt) / 1 (right belt). A contact
    starting less than ``min_flight_s`` after the previous toe off of either foot (double
    support, walking) gets ``FLAG_NO_FLIGHT``.
    """
    fl = _as_1d("fz_left", fz_left)
    fr = _as_1d("fz_right", fz_right)
    if fl.shape != fr.shape:
        raise ValueError(f"fz_left and fz_right differ in length: {fl.size} vs {fr.size}")
    out = []
    cy = compiled("_contacts_cy")
    for side, tab, other in ((0, left, fr), (1, right, fl)):
        a, b = _intervals_check("i_strike", tab.i_strike, "i_off", tab.i_off, fl.size)
        flags = tab.flags.copy()
        # per contact, the other belt's samples >= strike_n and its non-NaN samples: a pass
        # over the stance samples only
        loaded = np.empty(a.size, np.int64)
        valid = np.empty(a.size, np.int64)
        cy._interval_counts_cy(other, np.ascontiguousarray(a),
                               np.ascontiguousarray(b), float(params.strike_n), loaded, valid)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = loaded / valid
        flags[frac > cross_fraction] |= FLAG_CROSS_STEP
        out.append(replace(tab, flags=flags, side=np.full(len(tab), side, np.int8)))
    merged = Contacts.concat(out)
    merged = merged.take(np.argsort(merged.t_strike, kind="stable"))
    if len(merged) > 1:
        prev_off = np.maximum.accumulate(merged.t_off)[:-1]
        short = np.concatenate(([False], merged.t_strike[1:] - prev_off < params.min_flight_s))
        merged.flags[short] |= FLAG_NO_FLIGHT
    return merged


def assign_sides_single(contacts: Contacts, cop_y, *, foot_marker_z=None, window=10,
                        gap_factor=1.5, stance_window=(0.05, 0.3)) -> Contacts:
    """Left/right on a single-belt treadmill from the medio-lateral centre of pressure.

    Each contact's COP y (mean over the early stance ``stance_window``, where the heel or
    forefoot lands and the two feet are furthest apart medio-laterally; over mid-stance they
    overlapped on the Fukuchi treadmill runs) is compared with the running median of its
    neighbours' (``window`` steps, centred): left of it (Y > median) is the left foot. When
    ``foot_marker_z`` is given, the foot whose lowest marker is lower adds its
    vote. Sides are then made to alternate within each run of consecutive steps: the
    alternating pattern that agrees best with the evidence wins. A new run starts where a step
    is missing (strike-to-strike interval > ``gap_factor`` × the median interval). Contacts
    flagged ``FLAG_SHORT`` or ``FLAG_LOW_PEAK`` are not steps: they keep their own evidence's
    side and do not take part in alternation.

    ``FLAG_SIDE`` marks contacts whose assigned side is contradicted by their own evidence (COP,
    plus markers when given) by more than its median magnitude, or contradicted by the markers,
    or that have no evidence at all.

    Parameters
    ----------
    contacts : Contacts of the single plate.
    cop_y : (n,) float array, mm: COP y in the lab frame (Y left) per force sample, NaN when
        unknown (see :func:`centre_of_pressure`).
    foot_marker_z : (c, 2) float array, mm, optional: height of the lowest left-foot and the
        lowest right-foot marker at each contact's mid-stance (NaN when occluded).
    window : int, steps in the running median (default 10: even, so that it holds as many left
        as right feet and the median falls between them).
    gap_factor : float (default 1.5).
    stance_window : (float, float), fractions of stance over which COP y is averaged
        (default 5–30 %, a treadlab choice checked on the Fukuchi runs).

    Returns
    -------
    Contacts with ``side`` 0 left / 1 right and ``FLAG_SIDE`` where doubtful.
    """
    cop = _as_1d("cop_y", cop_y)
    a, b = _intervals_check("i_strike", contacts.i_strike, "i_off", contacts.i_off, cop.size)
    c = len(contacts)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if c == 0:
        return replace(contacts, side=np.zeros(0, np.int8))
    # per-contact COP y over the early stance
    f0, f1 = (float(v) for v in stance_window)
    if not 0 <= f0 < f1 <= 1:
        raise ValueError(f"stance_window must satisfy 0 <= start < end <= 1, got {stance_window!r}")
    lo = a + np.floor(f0 * (b - a)).astype(np.int64)
    hi = np.minimum(np.maximum(a + np.ceil(f1 * (b - a)).astype(np.int64), lo + 1), cop.size)
    lo = np.minimum(lo, hi)
    good = ~np.isnan(cop)
    csum = np.concatenate(([0.0], np.cumsum(np.where(good, cop, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(good)))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = (csum[hi] - csum[lo]) / (ccnt[hi] - ccnt[lo])
    # running median over `window` steps (an even count holds as many left as right feet, so
    # the median falls between the two feet); the window is shifted, not shrunk, at the ends
    is_step = (contacts.flags & (FLAG_SHORT | FLAG_LOW_PEAK)) == 0
    steps = np.flatnonzero(is_step)
    ref = steps if steps.size else np.arange(c)
    y_ref = y[ref]
    w = min(window, ref.size)
    starts = np.clip(np.arange(ref.size) - w // 2, 0, ref.size - w)
    med_ref = np.array([np.nanmedian(y_ref[s0:s0 + w]) if np.isfinite(y_ref[s0:s0 + w]).any()
                        else np.nan for s0 in starts])
    nearest = np.clip(np.searchsorted(ref, np.arange(c)), 0, ref.size - 1)
    med = med_ref[nearest]
    e = y - med                                      # > 0: left of the median: left foot
    votes = _normalised(e)
    m = None
    if foot_marker_z is not None:
        fm = np.asarray(foot_marker_z, dtype=np.float64)
        if fm.shape != (c, 2):
            raise ValueError(f"foot_marker_z: expected shape ({c}, 2), got {fm.shape}")
        m = fm[:, 1] - fm[:, 0]                       # > 0: left foot lower: left foot
        votes = votes + _normalised(m)
    side = np.where(votes >= 0, 0, 1).astype(np.int8)
    if steps.size:
        ts = contacts.t_strike[steps]
        dt = np.diff(ts)
        typical = np.median(dt) if dt.size else np.inf
        run_id = np.concatenate(([0], np.cumsum(dt > gap_factor * typical)))
        for r in np.unique(run_id):
            idx = steps[run_id == r]
            alt = np.arange(idx.size) % 2                        # 0, 1, 0, 1, ...
            score = np.sum(np.where(alt == 0, 1.0, -1.0) * votes[idx])   # even = left
            side[idx] = np.where(score >= 0, alt, 1 - alt)
    sign = np.where(side == 0, 1.0, -1.0)
    doubtful = (votes * sign <= -1.0) | (votes == 0)             # contradicted or no evidence
    if m is not None:
        doubtful |= m * sign < 0
    flags = contacts.flags.copy()
    flags[doubtful] |= FLAG_SIDE
    return replace(contacts, side=side, flags=flags)


def _normalised(v):
    """``v`` divided by its median magnitude and clipped to ±3; NaN → 0 (no vote)."""
    scale = np.nanmedian(np.abs(v)) if np.isfinite(v).any() else np.nan
    if not np.isfinite(scale) or scale == 0:
        scale = 1.0
    return np.nan_to_num(np.clip(v / scale, -3, 3), nan=0.0)
