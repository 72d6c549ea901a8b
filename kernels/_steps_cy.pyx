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

# angle tables: float32 (as the pipeline stores them) or float64, read as float64
ctypedef fused value_t:
    float
    double

# frames a search walks from its guess before it falls back to a binary search
cdef enum:
    _WALK = 8


cdef struct Clock:
    # the frame times, and what guesses a frame from a time: frames are about evenly spaced,
    # so a search starts at the guess and walks a few frames (exact: it stops only where a
    # binary search would end); a far guess, or a clock with non-finite times, falls back to
    # the binary search
    const double *t
    Py_ssize_t m
    double t0
    double per_s          # frames per second, 0 when guesses are not used


cdef inline Py_ssize_t _guess(Clock ck, double x) noexcept nogil:
    cdef double g = (x - ck.t0) * ck.per_s
    if not (g > 0.0):
        return 0
    if g >= <double>ck.m:
        return ck.m
    return <Py_ssize_t>g


cdef inline Py_ssize_t lower_bound(Clock ck, double x) noexcept nogil:
    """first index with t[i] >= x"""
    cdef Py_ssize_t lo = 0, hi = ck.m, mid, g, walked = 0
    if ck.per_s > 0.0:
        g = _guess(ck, x)
        while walked < _WALK:
            if g > 0 and ck.t[g - 1] >= x:
                g -= 1
            elif g < ck.m and ck.t[g] < x:
                g += 1
            else:
                return g
            walked += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ck.t[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline Py_ssize_t upper_bound(Clock ck, double x) noexcept nogil:
    """first index with t[i] > x"""
    cdef Py_ssize_t lo = 0, hi = ck.m, mid, g, walked = 0
    if ck.per_s > 0.0:
        g = _guess(ck, x)
        while walked < _WALK:
            if g > 0 and ck.t[g - 1] > x:
                g -= 1
            elif g < ck.m and ck.t[g] <= x:
                g += 1
            else:
                return g
            walked += 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ck.t[mid] <= x:
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


cdef inline Stats window(Clock t, const value_t[:, ::1] v, long long col, double lo,
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


cdef inline double interp(Clock ck, const value_t[:, ::1] v, long long col,
                          double x) noexcept nogil:
    cdef const double *t = ck.t
    cdef Py_ssize_t m = ck.m, j
    cdef double w, y0, y1
    if col < 0 or m == 0 or not isfinite(x):
        return NAN
    if x == t[m - 1]:
        return v[m - 1, col]
    j = upper_bound(ck, x) - 1
    if j < 0 or j >= m - 1:
        return NAN
    w = (x - t[j]) / (t[j + 1] - t[j])
    y0 = v[j, col]  # float64 arithmetic for float32 tables too
    y1 = v[j + 1, col]
    return y0 + w * (y1 - y0)


def step_metrics_cy(const double[::1] t_strike, const double[::1] t_off,
                    const long long[::1] side, const double[::1] time,
                    const value_t[:, ::1] values, const long long[::1] columns,
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
    cdef Clock ck
    cdef Py_ssize_t f
    for j in range(11):
        c[j] = columns[j]
    ck.m = time.shape[0]
    ck.t = &time[0] if ck.m > 0 else NULL
    ck.t0 = time[0] if ck.m > 0 else 0.0
    ck.per_s = 0.0
    with nogil:
        if ck.m > 1 and time[ck.m - 1] > time[0]:
            ck.per_s = <double>(ck.m - 1) / (time[ck.m - 1] - time[0])
            for f in range(ck.m):
                if not isfinite(time[f]):
                    ck.per_s = 0.0
                    break
            if not isfinite(ck.per_s):
                ck.per_s = 0.0
        for i in range(s):
            ts = t_strike[i]
            to = t_off[i]
            foot = <int>side[i]
            tm = 0.5 * (ts + to)
            sign = 1.0 if foot == 0 else -1.0

            if isfinite(static):
                zero = static
            else:
                st = window(ck, values, c[OBLIQUITY], stride_lo[i], stride_hi[i], 1.0, 0.0,
                            False)
                zero = st.total / st.valid if enough(st, frac) else NAN
            if isfinite(zero):
                st = window(ck, values, c[OBLIQUITY], ts, to, sign, zero, True)
                if enough(st, frac):
                    out[PELVIC_DROP, i] = st.highest

            st = window(ck, values, c[TRUNK], ts, to, 1.0, 0.0, True)
            if enough(st, frac):
                out[TRUNK_LEAN, i] = st.total / st.valid
            st = window(ck, values, c[TILT], ts, to, 1.0, 0.0, True)
            if enough(st, frac):
                out[TILT_MEAN, i] = st.total / st.valid
            out[TRUNK_MID, i] = interp(ck, values, c[TRUNK], tm)
            out[OVERSTRIDE, i] = interp(ck, values, c[HEEL_L + foot], ts)
            out[SHANK_IC, i] = interp(ck, values, c[SHANK_L + foot], ts)

            st = window(ck, values, c[HIP_L + foot], tm, to + after, 1.0, 0.0, True)
            if enough(st, frac):
                out[PEAK_HIP_EXT, i] = -st.lowest
                source[i] = 0
            else:
                st = window(ck, values, c[THIGH_L + foot], tm, to + after, 1.0, 0.0, True)
                if enough(st, frac):
                    out[PEAK_HIP_EXT, i] = -st.lowest
                    source[i] = 1
