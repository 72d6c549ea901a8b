# cython: language_level=3
"""Compiled per-contact step windows; trusts its input (see treadlab.kernels.steps).

Mirrors treadlab.kernels._steps_ref contact by contact (window rules, validity fraction,
interpolation). Output rows of ``out`` follow _steps_ref.OUTPUTS without the source flag.
"""
from libc.math cimport isfinite, NAN, INFINITY

# columns, as _steps_ref.COLUMNS
cdef enum:
    OBLIQUITY, TRUNK, TILT, HEEL_L, HEEL_R, SHANK_L, SHANK_R, HIP_L, HIP_R, THIGH_L, THIGH_R

# rows of out, as _steps_ref.OUTPUTS[:-1]
cdef enum:
    PELVIC_DROP, TRUNK_LEAN, TRUNK_MID, TILT_MEAN, OVERSTRIDE, SHANK_IC, PEAK_HIP_EXT


cdef inline Py_ssize_t lower_bound(const double[::1] t, double x) noexcept nogil:
    """first index with t[i] >= x"""
    cdef Py_ssize_t lo = 0, hi = t.shape[0], mid
    while lo < hi:
        mid = (lo + hi) // 2
        if t[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t upper_bound(const double[::1] t, double x) noexcept nogil:
    """first index with t[i] > x"""
    cdef Py_ssize_t lo = 0, hi = t.shape[0], mid
    while lo < hi:
        mid = (lo + hi) // 2
        if t[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef struct Stats:
    Py_ssize_t n
    Py_ssize_t valid
    double total
    double lowest
    double highest


cdef inline Stats window(const double[::1] t, const double[:, ::1] v, long long col, double lo,
                         double hi, double scale, double shift, bint closed) noexcept nogil:
    """Statistics of scale * (v[:, col] - shift) over frames with lo <= t <= hi (closed) or
    lo <= t < hi."""
    cdef Stats st
    cdef Py_ssize_t a, b, i
    cdef double x
    st.n = 0
    st.valid = 0
    st.total = 0.0
    st.lowest = INFINITY
    st.highest = -INFINITY
    if not (isfinite(lo) and isfinite(hi)):
        return st
    a = lower_bound(t, lo)
    b = upper_bound(t, hi) if closed else lower_bound(t, hi)
    if b <= a:
        return st
    st.n = b - a
    if col < 0:
        return st
    for i in range(a, b):
        x = v[i, col]
        if isfinite(x):
            x = scale * (x - shift)
            st.valid += 1
            st.total += x
            if x < st.lowest:
                st.lowest = x
            if x > st.highest:
                st.highest = x
    return st


cdef inline bint enough(Stats st, double frac) noexcept nogil:
    return st.n > 0 and st.valid > 0 and st.valid >= frac * st.n


cdef inline double interp(const double[::1] t, const double[:, ::1] v, long long col,
                          double x) noexcept nogil:
    cdef Py_ssize_t m = t.shape[0], j
    cdef double w
    if col < 0 or m == 0 or not isfinite(x):
        return NAN
    if x == t[m - 1]:
        return v[m - 1, col]
    j = upper_bound(t, x) - 1
    if j < 0 or j >= m - 1:
        return NAN
    w = (x - t[j]) / (t[j + 1] - t[j])
    return v[j, col] + w * (v[j + 1, col] - v[j, col])


def step_metrics_cy(const double[::1] t_strike, const double[::1] t_off,
                    const long long[::1] side, const double[::1] time,
                    const double[:, ::1] values, const long long[::1] columns,
                    const double[::1] stride_lo, const double[::1] stride_hi,
                    double static, double frac, double after, double[:, ::1] out,
                    signed char[::1] source):
    """Fill ``out`` (7, s) float64 (pre-filled with NaN) and ``source`` (s,) int8 (pre-filled
    with -1)."""
    cdef Py_ssize_t s = t_strike.shape[0], i
    cdef long long c[11]
    cdef int j, foot
    cdef double ts, to, tm, zero, sign
    cdef Stats st
    for j in range(11):
        c[j] = columns[j]
    with nogil:
        for i in range(s):
            ts = t_strike[i]
            to = t_off[i]
            foot = <int>side[i]
            tm = 0.5 * (ts + to)
            sign = 1.0 if foot == 0 else -1.0

            if isfinite(static):
                zero = static
            else:
                st = window(time, values, c[OBLIQUITY], stride_lo[i], stride_hi[i], 1.0, 0.0,
                            False)
                zero = st.total / st.valid if enough(st, frac) else NAN
            if isfinite(zero):
                st = window(time, values, c[OBLIQUITY], ts, to, sign, zero, True)
                if enough(st, frac):
                    out[PELVIC_DROP, i] = st.highest

            st = window(time, values, c[TRUNK], ts, to, 1.0, 0.0, True)
            if enough(st, frac):
                out[TRUNK_LEAN, i] = st.total / st.valid
            st = window(time, values, c[TILT], ts, to, 1.0, 0.0, True)
            if enough(st, frac):
                out[TILT_MEAN, i] = st.total / st.valid
            out[TRUNK_MID, i] = interp(time, values, c[TRUNK], tm)
            out[OVERSTRIDE, i] = interp(time, values, c[HEEL_L + foot], ts)
            out[SHANK_IC, i] = interp(time, values, c[SHANK_L + foot], ts)

            st = window(time, values, c[HIP_L + foot], tm, to + after, 1.0, 0.0, True)
            if enough(st, frac):
                out[PEAK_HIP_EXT, i] = -st.lowest
                source[i] = 0
            else:
                st = window(time, values, c[THIGH_L + foot], tm, to + after, 1.0, 0.0, True)
                if enough(st, frac):
                    out[PEAK_HIP_EXT, i] = -st.lowest
                    source[i] = 1
