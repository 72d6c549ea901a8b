# cython: language_level=3
"""Compiled kinematic contact detection; trusts its input (see
treadlab.kernels.kinematic_contacts). Mirrors treadlab.kernels._kinematic_contacts_ref frame by
frame."""
from libc.math cimport isfinite, NAN, INFINITY, fmin


cdef inline double fmin_nan(double a, double b) noexcept nogil:
    """NaN only when both are NaN (numpy.fmin)."""
    if not isfinite(a):
        return b
    if not isfinite(b):
        return a
    return a if a < b else b


def kinematic_contacts_cy(const double[::1] time, const double[::1] heel,
                          const double[::1] fore, double level, Py_ssize_t min_frames,
                          double s_mm, double o_mm, double[::1] t_strike, double[::1] t_off):
    """Fill ``t_strike``/``t_off`` (capacity >= number of ground runs); returns the count."""
    cdef Py_ssize_t m = time.shape[0], i, a, b, k = 0, lo, hi, j, jf, prev_end = 0
    cdef Py_ssize_t next_a, next_b
    cdef double lh, lf, best, bestf, r0, r1, s, e, x
    cdef bint on
    with nogil:
        a = 0
        # find the first run
        while a < m and not (isfinite(fmin_nan(heel[a], fore[a])) and
                             fmin_nan(heel[a], fore[a]) < level):
            a += 1
        while a < m:
            b = a
            while b < m and isfinite(fmin_nan(heel[b], fore[b])) and \
                    fmin_nan(heel[b], fore[b]) < level:
                b += 1
            # next run start
            next_a = b
            while next_a < m and not (isfinite(fmin_nan(heel[next_a], fore[next_a])) and
                                      fmin_nan(heel[next_a], fore[next_a]) < level):
                next_a += 1
            if b - a >= min_frames:
                lo = prev_end
                hi = next_a
                lh = INFINITY
                lf = INFINITY
                for i in range(a, b):
                    if isfinite(heel[i]) and heel[i] < lh:
                        lh = heel[i]
                    if isfinite(fore[i]) and fore[i] < lf:
                        lf = fore[i]
                if lh == INFINITY:
                    lh = NAN
                if lf == INFINITY:
                    lf = NAN
                s = NAN
                j = -1
                best = INFINITY
                for i in range(a, b):
                    x = fmin_nan(heel[i] - lh, fore[i] - lf)
                    if isfinite(x) and x < best:
                        best = x
                        j = i
                if j >= 0:
                    i = j
                    while i > lo:
                        r0 = fmin_nan(heel[i - 1] - lh, fore[i - 1] - lf)
                        r1 = fmin_nan(heel[i] - lh, fore[i] - lf)
                        if isfinite(r0) and isfinite(r1) and r0 >= s_mm and s_mm > r1:
                            s = time[i - 1] + (r0 - s_mm) / (r0 - r1) * (time[i] - time[i - 1])
                            break
                        i -= 1
                e = NAN
                if isfinite(lf):
                    jf = -1
                    bestf = INFINITY
                    for i in range(a, b):
                        if isfinite(fore[i]) and fore[i] < bestf:
                            bestf = fore[i]
                            jf = i
                    for i in range(jf + 1, hi):
                        r0 = fore[i - 1] - lf
                        r1 = fore[i] - lf
                        if isfinite(r0) and isfinite(r1) and r0 <= o_mm and o_mm < r1:
                            e = time[i - 1] + (o_mm - r0) / (r1 - r0) * (time[i] - time[i - 1])
                            break
                t_strike[k] = s
                t_off[k] = e
                k += 1
            prev_end = b
            a = next_a
    return k
