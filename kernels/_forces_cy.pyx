# cython: language_level=3
"""Compiled per-contact force metrics. Trusts its inputs (``forces.force_metrics`` validates
them); the specification is ``_forces_ref.py``."""
from libc.math cimport isnan, NAN


def _force_metrics_cy(const double[::1] fx, const double[::1] fz, double rate, double bw,
                      const long long[::1] i_strike, const long long[::1] i_off,
                      double impact_drop_n, Py_ssize_t w0, Py_ssize_t w1,
                      double[::1] peak_vgrf, double[::1] loading_rate,
                      double[::1] peak_braking, double[::1] braking_impulse,
                      double[::1] propulsive_impulse, double[::1] impact_peak,
                      unsigned char[::1] fallback):
    """Fill the per-contact output arrays (length = number of contacts)."""
    cdef Py_ssize_t c = i_strike.shape[0], j, k, a, b, k_max, last, lo, hi
    cdef double dt = 1.0 / rate, x, xmin, neg, pos, prev_neg, prev_pos, bi, pi
    cdef double zmax, z, m, impact, t20, t80
    cdef bint found
    with nogil:
        for j in range(c):
            a = <Py_ssize_t>i_strike[j]
            b = <Py_ssize_t>i_off[j]
            peak_vgrf[j] = NAN
            loading_rate[j] = NAN
            peak_braking[j] = NAN
            braking_impulse[j] = NAN
            propulsive_impulse[j] = NAN
            impact_peak[j] = NAN
            fallback[j] = 0
            # one pass over stance: peak braking, trapezoid sums (dt/2 applied after), Fz max
            last = -1
            k_max = -1
            xmin = NAN
            zmax = NAN
            bi = 0.0
            pi = 0.0
            prev_neg = 0.0
            prev_pos = 0.0
            for k in range(a, b):
                z = fz[k]
                if not isnan(z) and (k_max < 0 or z > zmax):
                    zmax = z
                    k_max = k
                x = fx[k]
                if isnan(x):
                    continue
                neg = x if x < 0.0 else 0.0
                pos = x - neg
                if last < 0:
                    xmin = x
                else:
                    if x < xmin:
                        xmin = x
                    if k - last == 1:
                        bi += prev_neg + neg
                        pi += prev_pos + pos
                    else:                      # bridge a NaN gap linearly
                        bi += (k - last) * (prev_neg + neg)
                        pi += (k - last) * (prev_pos + pos)
                prev_neg = neg
                prev_pos = pos
                last = k
            if last >= 0:
                peak_braking[j] = xmin / bw
                braking_impulse[j] = bi * (0.5 * dt) / bw
                propulsive_impulse[j] = pi * (0.5 * dt) / bw
            if k_max < 0:
                continue
            peak_vgrf[j] = zmax / bw
            # impact peak: running maximum, then a fall of impact_drop_n before the maximum
            found = False
            m = NAN
            impact = NAN
            for k in range(a, k_max):
                if isnan(fz[k]):
                    continue
                if isnan(m) or fz[k] > m:
                    m = fz[k]
                if fz[k] <= m - impact_drop_n:
                    impact = m
                    found = True
                    break
            if found:
                impact_peak[j] = impact / bw
                t20 = _crossing(fz, a, b, 0.2 * impact)
                t80 = _crossing(fz, a, b, 0.8 * impact)
                if t80 > t20:
                    loading_rate[j] = 0.6 * impact / ((t80 - t20) * dt) / bw
            else:
                fallback[j] = 1
                lo = w0
                hi = w1
                if hi > b - a - 1:
                    hi = b - a - 1
                if hi > lo:
                    loading_rate[j] = (fz[a + hi] - fz[a + lo]) / ((hi - lo) * dt) / bw


cdef inline double _crossing(const double[::1] z, Py_ssize_t a, Py_ssize_t b,
                             double level) noexcept nogil:
    """Fractional position (from ``a``) where ``z`` first reaches ``level``."""
    cdef Py_ssize_t k
    for k in range(a, b):
        if z[k] >= level:
            if k == a or isnan(z[k - 1]):
                return <double>(k - a)
            return (k - 1 - a) + (level - z[k - 1]) / (z[k] - z[k - 1])
    return NAN
