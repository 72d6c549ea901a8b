"""Per-contact force metrics (METRICS §3): peak vertical force, loading rate, peak braking force,
braking and propulsive impulses, all in body weights.

Arrays in, arrays out. The exact definitions (stance samples, NaN handling, trapezoid rule,
impact-peak rule, loading-rate fallback) are specified in ``_forces_ref.py``, the NumPy
reference; ``_forces_cy.pyx`` is the compiled loop the public function calls.
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._compiled import compiled

__all__ = ["force_metrics", "METRIC_NAMES"]

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
