"""Clock alignment: every device clock mapped onto one session clock (docs/design.md §4).

Each device stamps its samples with its own clock (``device_time``, s); the host stamps each
received block with ``time.monotonic()`` (``host_time``, s). The host stamp is the device time
plus an offset, a slow drift (crystal error, tens of ppm) and a transport delay that is never
negative: small most of the time, large when the operating system or the network holds a packet
back, and the same for every frame of a block read in one go (the early frames of the block
waited longest). So the *lower envelope* of ``host_time - device_time`` is the clock relation
and everything above it is delay.

:class:`ClockFit` keeps, per window of device time (``window_s``), the receipt with the smallest
``host - device`` (the least-delayed one), and fits a line through those minima with the
Theil–Sen estimator (median of pairwise slopes, then median intercept), which ignores windows
where every packet was late (a stalled host) as long as they are fewer than about a quarter of
the windows. The fit is redone as data accrue (lazily, when asked after new windows closed).
When fewer than ``min_span_s`` seconds of device time have been seen the drift is not yet
measurable and the fit is a pure offset (slope 1).

:class:`SessionClock` holds one fit per stream and maps device times to the session clock:
``session_time = host_fit(device_time) - t0_host``. Both streams map onto the same host clock, so
after the fit they agree to within the difference of their minimum transport delays (well under
a millisecond on a pty and loopback UDP). The recorder keeps the raw device and host times in the
archive, so :func:`fit_clock` can redo the mapping offline (``recover``, reprocessing).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ClockFit", "SessionClock", "fit_clock", "lower_envelope", "theil_sen"]


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Theil–Sen line ``y = a + b x``: median pairwise slope, then median intercept.

    Parameters
    ----------
    x, y : (n,) float64
        Points (any units); ``x`` need not be sorted. With one point the slope is 0.

    Returns
    -------
    (a, b) : float
        Intercept (units of ``y``) and slope (units of ``y`` per unit of ``x``).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        raise ValueError("theil_sen: no points")
    if x.size == 1:
        return float(y[0]), 0.0
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return float(np.median(y)), 0.0
    b = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    a = float(np.median(y - b * x))
    return a, b


def lower_envelope(device_time: np.ndarray, host_time: np.ndarray, window_s: float,
                   origin: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-delayed receipt per window of device time.

    Parameters
    ----------
    device_time : (n,) float64, s, device clock, non-decreasing.
    host_time : (n,) float64, s, host receive time of each sample.
    window_s : float, s, window length on the device clock.
    origin : float, s, device time where window 0 starts.

    Returns
    -------
    bins : (w,) int64, window index of each minimum.
    x : (w,) float64, s, ``device_time - origin`` of the least-delayed sample of each window.
    r : (w,) float64, s, its ``host_time - device_time``.
    """
    d = np.asarray(device_time, dtype=np.float64)
    h = np.asarray(host_time, dtype=np.float64)
    if d.size == 0:
        e = np.empty(0)
        return e.astype(np.int64), e, e
    x = d - origin
    r = h - d
    bins = np.floor(x / window_s).astype(np.int64)
    # device times are non-decreasing within a stream, but be safe with a stable sort
    if np.any(np.diff(bins) < 0):
        order = np.argsort(bins, kind="stable")
        bins, x, r = bins[order], x[order], r[order]
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    ends = np.r_[starts[1:], bins.size]
    # argmin of r within each group
    idx = np.array([s + int(np.argmin(r[s:e])) for s, e in zip(starts, ends)], dtype=np.int64)
    return bins[idx], x[idx], r[idx]


def _fit_points(x: np.ndarray, r: np.ndarray, span_min: float, max_points: int
                ) -> tuple[float, float]:
    """Fit ``r = a + b x`` through window minima; pure offset when the span is short."""
    if x.size == 0:
        raise ValueError("no clock points")
    span = float(x[-1] - x[0]) if x.size > 1 else 0.0
    if x.size > max_points:
        # coarsen: keep the least-delayed point of each group of consecutive windows
        k = int(np.ceil(x.size / max_points))
        n = (x.size // k) * k
        xs = x[:n].reshape(-1, k)
        rs = r[:n].reshape(-1, k)
        j = np.argmin(rs, axis=1)
        rows = np.arange(xs.shape[0])
        x2, r2 = xs[rows, j], rs[rows, j]
        if n < x.size:
            jj = n + int(np.argmin(r[n:]))
            x2, r2 = np.r_[x2, x[jj]], np.r_[r2, r[jj]]
        x, r = x2, r2
    if span < span_min or x.size < 4:
        # drift unmeasurable yet: offset only, from the typical window minimum
        return float(np.median(r)) if x.size >= 3 else float(np.min(r)), 0.0
    return theil_sen(x, r)


def fit_clock(device_time: np.ndarray, host_time: np.ndarray, window_s: float = 0.25,
              min_span_s: float = 2.0, max_points: int = 256) -> tuple[float, float, float]:
    """Offline fit of a device clock onto the host clock.

    Parameters
    ----------
    device_time : (n,) float64, s, device clock (unwrapped), non-decreasing.
    host_time : (n,) float64, s, host receive time of each sample (``time.monotonic()``).
    window_s : float, s, lower-envelope window on the device clock.
    min_span_s : float, s, shortest device-time span over which drift is fitted.
    max_points : int, most windows fed to Theil–Sen (more are coarsened).

    Returns
    -------
    (origin, a, b) : float
        ``host = device + a + b * (device - origin)`` (origin and a in s, b dimensionless drift,
        e.g. 1e-4 for a device clock 100 ppm slow).
    """
    d = np.asarray(device_time, dtype=np.float64)
    if d.size == 0:
        raise ValueError("fit_clock: no samples")
    origin = float(d[0])
    _, x, r = lower_envelope(d, host_time, window_s, origin)
    a, b = _fit_points(x, r, min_span_s, max_points)
    return origin, a, b


class ClockFit:
    """Streaming robust fit of one device clock onto the host clock.

    Parameters
    ----------
    window_s : float, s
        Window of device time per lower-envelope point (default 0.25 s).
    min_span_s : float, s
        Device-time span needed before drift is fitted (default 2 s).
    max_points : int
        Most points given to Theil–Sen; older windows are coarsened (cost stays bounded for
        hours-long sessions).
    refit_every_s : float, s
        Refit at most once per this much new device time (default 1 s).
    """

    def __init__(self, window_s: float = 0.25, min_span_s: float = 2.0, max_points: int = 256,
                 refit_every_s: float = 1.0):
        self.window_s = float(window_s)
        self.min_span_s = float(min_span_s)
        self.max_points = int(max_points)
        self.refit_every_s = float(refit_every_s)
        self.origin: float | None = None
        self._bins: list[int] = []
        self._x: list[float] = []
        self._r: list[float] = []
        self._params: tuple[float, float] | None = None
        self._fitted_at = -np.inf
        self.n = 0

    def add(self, device_time: np.ndarray, host_time: np.ndarray) -> None:
        """Add received samples.

        Parameters
        ----------
        device_time : (n,) float64, s, device clock, continuing the previous blocks.
        host_time : (n,) float64, s, host receive time of each sample.
        """
        d = np.asarray(device_time, dtype=np.float64).ravel()
        h = np.asarray(host_time, dtype=np.float64)
        if h.shape != d.shape:
            h = np.broadcast_to(h, d.shape)
        if d.size == 0:
            return
        r = h - d
        j = int(np.argmin(r))           # NaN wins argmin: check it
        rj = float(r[j])
        if rj != rj or not np.isfinite(r).all():
            ok = np.isfinite(r)
            d, h, r = d[ok], h[ok], r[ok]
            if d.size == 0:
                return
            j = int(np.argmin(r))
            rj = float(r[j])
        if self.origin is None:
            self.origin = float(d[0])
        w = self.window_s
        d0, d1 = float(d[0]), float(d[-1])
        b0 = int((d0 - self.origin) // w)
        if b0 == int((d1 - self.origin) // w) and d1 >= d0:
            # fast path (the usual block): one window, one minimum
            self._merge(b0, float(d[j]) - self.origin, rj)
            xmin = float(d[j]) - self.origin
        else:
            bins, x, rr = lower_envelope(d, h, w, self.origin)
            for b, xi, ri in zip(bins.tolist(), x.tolist(), rr.tolist()):
                self._merge(b, xi, ri)
            k = int(np.argmin(rr))
            xmin, rj = float(x[k]), float(rr[k])
        self.n += int(d.size)
        if self._params is None:
            self._refit()
        elif rj < self._params[0] + self._params[1] * xmin - 5e-3:
            # a much earlier receipt than the fit allows: the fit is stale, redo it now
            self._refit()

    def _merge(self, b: int, xi: float, ri: float) -> None:
        """Keep the least-delayed point of window ``b``."""
        if self._bins and b == self._bins[-1]:
            if ri < self._r[-1]:
                self._x[-1], self._r[-1] = xi, ri
        elif self._bins and b < self._bins[-1]:
            # out-of-order window (device clock reset): merge into its slot if present
            try:
                k = self._bins.index(b)
            except ValueError:
                return
            if ri < self._r[k]:
                self._x[k], self._r[k] = xi, ri
        else:
            self._bins.append(b)
            self._x.append(xi)
            self._r.append(ri)

    @property
    def ready(self) -> bool:
        """True once drift is being fitted (``min_span_s`` of device time seen)."""
        return bool(self._x) and (self._x[-1] - self._x[0]) >= self.min_span_s

    def _refit(self) -> None:
        x = np.asarray(self._x)
        r = np.asarray(self._r)
        self._params = _fit_points(x, r, self.min_span_s, self.max_points)
        self._fitted_at = float(x[-1])

    def params(self) -> tuple[float, float, float]:
        """The current fit ``(origin, a, b)``: ``host = device + a + b (device - origin)``."""
        if self.origin is None:
            raise ValueError("ClockFit: no samples yet")
        if self._x and self._x[-1] - self._fitted_at >= self.refit_every_s:
            self._refit()
        a, b = self._params
        return self.origin, a, b

    def to_host(self, device_time: np.ndarray) -> np.ndarray:
        """Map device times to host time.

        Parameters
        ----------
        device_time : (n,) float64, s, device clock.

        Returns
        -------
        (n,) float64, s, host clock (``time.monotonic()`` base).
        """
        origin, a, b = self.params()
        d = np.asarray(device_time, dtype=np.float64)
        return d * (1.0 + b) + (a - b * origin)


class SessionClock:
    """One session clock for every stream.

    Parameters
    ----------
    t0_host : float, s
        Host time (``time.monotonic()``) that is session time 0.
    **fit_kw
        Passed to each stream's :class:`ClockFit`.
    """

    def __init__(self, t0_host: float, **fit_kw):
        self.t0_host = float(t0_host)
        self._fit_kw = fit_kw
        self.fits: dict[str, ClockFit] = {}

    def add(self, stream: str, device_time: np.ndarray, host_time: np.ndarray) -> None:
        """Add received samples of ``stream`` (see :meth:`ClockFit.add`)."""
        fit = self.fits.get(stream)
        if fit is None:
            fit = self.fits[stream] = ClockFit(**self._fit_kw)
        fit.add(device_time, host_time)

    def to_session(self, stream: str, device_time: np.ndarray) -> np.ndarray:
        """Device times of ``stream`` → (n,) float64 s on the session clock."""
        return self.fits[stream].to_host(device_time) - self.t0_host

    def host_to_session(self, host_time: np.ndarray | float) -> np.ndarray | float:
        """Host times (``time.monotonic()``, s) → session clock (s)."""
        return np.asarray(host_time, dtype=np.float64) - self.t0_host

    def describe(self) -> dict[str, dict[str, float]]:
        """Per stream: ``origin`` (s), ``offset`` (s), ``drift_ppm``, ``windows`` — for the log."""
        out = {}
        for name, fit in self.fits.items():
            if fit.origin is None:
                continue
            origin, a, b = fit.params()
            out[name] = {"origin": origin, "offset": a, "drift_ppm": b * 1e6,
                         "windows": len(fit._x)}
        return out
