# cython: language_level=3
"""Compiled gap filling; trusts its input (see treadlab.kernels.gaps).

Works in place on float32 or float64 positions; the interpolation is computed in float64 and
rounded once when stored, so a float32 result equals the float64 one rounded to float32.
"""
from libc.math cimport isfinite, NAN

ctypedef fused real_t:
    float
    double


def fill_gaps_cy(real_t[:, :, ::1] p, Py_ssize_t max_gap):
    """Fill gaps of <= max_gap frames in place (C-contiguous (m, k, 3) mm).

    Returns the longest gap filled, in frames. Unseen frames are set to NaN in all coordinates.
    """
    cdef Py_ssize_t m = p.shape[0], k = p.shape[1]
    cdef Py_ssize_t j, i, c, a, b, n, before, longest = 0, unseen = 0
    cdef double h, s, s2, s3, ma, mb, chord, pa, pb
    with nogil:
        # one pass in memory order: a frame with a non-finite coordinate is unseen (all NaN)
        for i in range(m):
            for j in range(k):
                if not (isfinite(p[i, j, 0]) and isfinite(p[i, j, 1]) and isfinite(p[i, j, 2])):
                    p[i, j, 0] = NAN
                    p[i, j, 1] = NAN
                    p[i, j, 2] = NAN
                    unseen += 1
        for j in range(k if unseen and max_gap else 0):
            a = -1
            before = -2        # the seen frame before a (a-1 is seen iff before == a-1)
            for b in range(m):
                if p[b, j, 0] != p[b, j, 0]:
                    continue
                if a >= 0:
                    n = b - a - 1
                    if 1 <= n <= max_gap:
                        if n > longest:
                            longest = n
                        h = <double>(b - a)
                        for c in range(3):
                            pa = p[a, j, c]
                            pb = p[b, j, c]
                            chord = (pb - pa) / h
                            if a >= 1 and before == a - 1:
                                ma = pa - <double>p[a - 1, j, c]
                            else:
                                ma = chord
                            if b + 1 < m and p[b + 1, j, 0] == p[b + 1, j, 0]:
                                mb = <double>p[b + 1, j, c] - pb
                            else:
                                mb = chord
                            for i in range(a + 1, b):
                                s = (i - a) / h
                                s2 = s * s
                                s3 = s2 * s
                                p[i, j, c] = <real_t>((2 * s3 - 3 * s2 + 1) * pa
                                                      + (s3 - 2 * s2 + s) * h * ma
                                                      + (-2 * s3 + 3 * s2) * pb
                                                      + (s3 - s2) * h * mb)
                before = a
                a = b
    return longest
