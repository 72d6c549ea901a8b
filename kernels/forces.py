"""Per-contact force metrics (docs/metrics.md §3): peak vertical force, loading rate, peak
braking force, braking and propulsive impulses, all in body weights; and body weight itself
estimated from the vertical force (docs/metrics.md §2), the one estimate capture, import and
processing share.

Arrays in, arrays out. The exact definitions (stance samples, NaN handling, trapezoid rule,
impact-peak rule, loading-rate fallback) are specified in ``_forces_ref.py``, the NumPy
reference; ``_forces_cy.pyx`` is the compiled loop the public function calls.
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._compiled import compiled
from treadlab.kernels.contacts import ContactParams, detect_contacts

__all__ = ["force_metrics", "METRIC_NAMES", "estimate_body_weight"]

METRIC_NAMES = ("peak_vgrf", "loading_rate", "loading_rate_fallback", "peak_braking",
                "braking_impulse", "propulsive_impulse", "impact_peak")


def force_metrics(fx, fz, rate_hz, i_strike, i_off, body_weight_n, *, impact_drop_bw=0.05,
                  fallback_window_s=(0.01, 0.04)) -> dict:
    """Force metrics of each contact, in body weights.

    Stance is the samples ``[i_strike, i_off)`` of each contact (the ``Contacts`` convention).
    NaN samples are skipped by the peaks and bridged linearly by the integrals. Integrals use the
    trapezoid rule over the valid samples (``dt = 1/rate_hz``) of ``min(Fx, 0)`` and
    ``max(Fx, 0)``, so braking + propulsive impulse equals the trapezoid integral of Fx.

    Parameters
    ----------
    fx : (n,) float64 array, N. Anterior-posterior ground reaction on the body, lab X
        (direction of travel): negative while braking.
    fz : (n,) float64 array, N. Vertical ground reaction, > 0 in stance. Loading rates depend
        on the filter applied before (Abolins 2019): the caller stores its filter settings.
    rate_hz : float, Hz. Sample rate of ``fx`` and ``fz``.
    i_strike, i_off : (c,) integer arrays. Sample indices into ``fx``/``fz`` of each contact's
        first stance sample and of the first sample after stance (``0 <= i_strike <= i_off <= n``).
    body_weight_n : float, N. Body weight m·g.
    impact_drop_bw : float, BW. The impact peak is the running maximum of Fz at the first sample
        where Fz has fallen this much below it, before the stance maximum (default 0.05 BW, a
        treadlab choice: it must exceed the force noise; filter first).
    fallback_window_s : (float, float), s. Without an impact peak the loading rate is the mean
        slope of Fz between these times after ``i_strike`` (default 10–40 ms, a treadlab choice:
        the literature gives no number) and ``loading_rate_fallback`` is True.

    Returns
    -------
    dict of (c,) arrays:
        ``peak_vgrf`` float64 BW; ``loading_rate`` float64 BW/s (20–80 % of the impact peak);
        ``loading_rate_fallback`` bool; ``peak_braking`` float64 BW (min Fx, negative when
        braking); ``braking_impulse`` float64 BW·s (≤ 0); ``propulsive_impulse`` float64 BW·s
        (≥ 0); ``impact_peak`` float64 BW (NaN when none). NaN where stance has no valid sample.
    """
    fx = np.asarray(fx)
    fz = np.asarray(fz)
    if fx.ndim != 1 or fz.ndim != 1 or fx.shape != fz.shape:
        raise ValueError(f"fx and fz must be 1-D arrays of one length, got {fx.shape} and "
                         f"{fz.shape}")
    rate_hz = float(rate_hz)
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
    bw = float(body_weight_n)
    if not np.isfinite(bw) or bw <= 0:
        raise ValueError(f"body_weight_n must be a positive number, got {body_weight_n!r}")
    if not (np.isfinite(impact_drop_bw) and impact_drop_bw > 0):
        raise ValueError(f"impact_drop_bw must be > 0, got {impact_drop_bw!r}")
    w0, w1 = (float(v) for v in fallback_window_s)
    if not (0 <= w0 < w1):
        raise ValueError(f"fallback_window_s must satisfy 0 <= start < end, got "
                         f"{fallback_window_s!r}")
    i_strike = np.asarray(i_strike)
    i_off = np.asarray(i_off)
    if i_strike.ndim != 1 or i_strike.shape != i_off.shape:
        raise ValueError(f"i_strike and i_off must be 1-D arrays of one length, got "
                         f"{i_strike.shape} and {i_off.shape}")
    if i_strike.size and not (np.issubdtype(i_strike.dtype, np.integer)
                              and np.issubdtype(i_off.dtype, np.integer)):
        raise ValueError("i_strike and i_off must be integer sample indices")
    i_strike = np.ascontiguousarray(i_strike, np.int64)
    i_off = np.ascontiguousarray(i_off, np.int64)
    if i_strike.size and (i_strike.min() < 0 or i_off.max() > fx.size
                          or np.any(i_off < i_strike)):
        raise ValueError(f"contact indices out of range: need 0 <= i_strike <= i_off <= "
                         f"{fx.size}")
    fx = np.ascontiguousarray(fx, np.float64)
    fz = np.ascontiguousarray(fz, np.float64)
    cy = compiled("_forces_cy")
    c = i_strike.size
    out = {k: np.empty(c) for k in ("peak_vgrf", "loading_rate", "peak_braking",
                                    "braking_impulse", "propulsive_impulse", "impact_peak")}
    fallback = np.empty(c, np.uint8)
    cy._force_metrics_cy(fx, fz, rate_hz, bw, i_strike, i_off, impact_drop_bw * bw,
                         int(round(w0 * rate_hz)), int(round(w1 * rate_hz)),
                         out["peak_vgrf"], out["loading_rate"], out["peak_braking"],
                         out["braking_impulse"], out["propulsive_impulse"], out["impact_peak"],
                         fallback)
    out["loading_rate_fallback"] = fallback.view(bool)
    return {k: out[k] for k in METRIC_NAMES}


def estimate_body_weight(fz_total, rate_hz: float, *, strike_n: float = 50.0,
                         off_n: float = 20.0, t0: float = 0.0,
                         while_loaded: bool = False) -> tuple[float, dict]:
    """Body weight from the mean vertical force over whole strides (docs/metrics.md §2).

    Over whole strides of steady running the mean vertical ground reaction equals body weight.
    Contacts are found with :func:`~treadlab.kernels.contacts.detect_contacts` (``strike_n`` /
    ``off_n`` hysteresis); the longest run of consecutive steps at a regular interval (each
    within 25 % of the median) is cut at whole strides (an even number of steps, strike to
    strike); the zero offset is the median force in the flight phases inside that window and is
    subtracted. A trace that never unloads (standing, or walking on a treadmill's plates: 1st
    percentile above 20 % of the median, median above 200 N) gives its mean.

    Parameters
    ----------
    fz_total : (n,) float array, N. Vertical force summed over the plates (NaN samples ignored
        by the means).
    rate_hz : float, Hz.
    strike_n, off_n : float, N. Contact thresholds (``[contacts]`` of the lab config).
    t0 : float, s. Time of sample 0 (for the window reported in ``info``).
    while_loaded : bool. When no whole strides are found, fall back to the mean force from the
        first to the last loaded sample (a capture too short for strides still gets a mass,
        marked as such in ``info["method"]``) instead of NaN.

    Returns
    -------
    (body_weight_n, info)
        ``body_weight_n`` in N, NaN when no estimate is possible (never loaded, fewer than
        three contacts, no regular run of whole strides). ``info``: ``method`` (one line: how,
        or why not), ``strides`` (int), ``window_s`` ((2,) s, or None), ``zero_offset_n`` (N).
    """
    fz = np.asarray(fz_total, dtype=np.float64).ravel()
    info = {"method": "", "strides": 0, "window_s": None, "zero_offset_n": 0.0}
    finite = fz[np.isfinite(fz)]
    if not (rate_hz > 0) or finite.size == 0 or not (finite >= strike_n).any():
        info["method"] = "not estimated: the plates were never loaded"
        return float("nan"), info
    params = ContactParams(strike_n=strike_n, off_n=off_n, min_contact_s=0.0,
                           min_flight_s=0.0)
    contacts, _ = detect_contacts(np.ascontiguousarray(fz), float(rate_hz), params)
    strikes = np.asarray(contacts.i_strike, dtype=np.int64)
    if strikes.size == 0:
        med = float(np.median(finite))
        if med > 200.0 and np.percentile(finite, 1) > 0.2 * med:
            info["method"] = "mean vertical force, plates loaded throughout (standing or walking)"
            return float(np.mean(finite)), info
        info["method"] = "not estimated: no contact and not loaded throughout"
        return float("nan"), info
    if strikes.size < 3:
        return _no_strides(fz, strike_n, while_loaded, info, "fewer than three contacts")
    steps = np.diff(strikes)
    med = np.median(steps)
    regular = np.abs(steps - med) <= 0.25 * med
    best, run_start = (0, 0), None
    for j, ok in enumerate(np.append(regular, False)):  # the longest run of regular steps
        if ok and run_start is None:
            run_start = j
        elif not ok and run_start is not None:
            if j - run_start > best[1] - best[0]:
                best = (run_start, j)
            run_start = None
    n_steps = best[1] - best[0]
    n_steps -= n_steps % 2
    if n_steps < 2:
        return _no_strides(fz, strike_n, while_loaded, info, "no regular run of whole strides")
    i0, i1 = int(strikes[best[0]]), int(strikes[best[0] + n_steps])
    flight = np.zeros(fz.size, dtype=bool)
    offs = np.asarray(contacts.i_off, dtype=np.int64)
    for off in offs:  # the middle half of each flight phase inside the window
        nxt = strikes[strikes > off]
        if nxt.size:
            a, b = int(off), int(nxt[0])
            pad = (b - a) // 4
            flight[a + pad:b - pad] = True
    flight[:i0] = False
    flight[i1:] = False
    zf = fz[flight]
    zf = zf[np.isfinite(zf)]
    zero = float(np.median(zf)) if zf.size >= 5 else 0.0
    weight = float(np.nanmean(fz[i0:i1])) - zero
    if not weight > 0:
        info["method"] = "not estimated: mean force over whole strides is not positive"
        return float("nan"), info
    info.update(method=f"mean vertical force over {n_steps // 2} whole strides",
                strides=n_steps // 2, zero_offset_n=zero,
                window_s=np.array([t0 + i0 / rate_hz, t0 + i1 / rate_hz]))
    return weight, info


def _no_strides(fz, strike_n, while_loaded, info, why) -> tuple[float, dict]:
    if not while_loaded:
        info["method"] = f"not estimated: {why}"
        return float("nan"), info
    idx = np.flatnonzero(fz >= strike_n)
    info["method"] = f"mean vertical force while loaded ({why})"
    return float(np.nanmean(fz[idx[0]:idx[-1] + 1])), info
