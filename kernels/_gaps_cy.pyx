# cython: language_level=3
"""Compiled gap filling; trusts its input (see treadlab.kernels.gaps)."""
from libc.math cimport isfinite, NAN


def fill_gaps_cy(double[:, :, ::1] p, Py_ssize_t max_gap):
    """Fill gaps of <= max_gap frames in place (C-contiguous float64 (m, k, 3) mm).

    Returns the longest gap filled, in frames. Unseen frames are set to NaN in all coordinates.
    """
    cdef Py_ssize_t m = p.shape[0], k = p.shape[1]
    cdef Py_ssize_t j, i, c, a, b, n, before, longest = 0
    cdef double h, s, s2, s3, ma, mb, chord
    with nogil:
        for j in range(k):
            for i in range(m):
                if not (isfinite(p[i, j, 0]) and isfinite(p[i, j, 1]) and isfinite(p[i, j, 2])):
                    p[i, j, 0] = NAN
                    p[i, j, 1] = NAN
                    p[i, j, 2] = NAN
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
                            chord = (p[b, j, c] - p[a, j, c]) / h
                            if a >= 1 and before == a - 1:
                                ma = p[a, j, c] - p[a - 1, j, c]
                            else:
                                ma = chord
                            if b + 1 < m and p[b + 1, j, 0] == p[b + 1, j, 0]:
                                mb = p[b + 1, j, c] - p[b, j, c]
                            else:
                                mb = chord
                            for i in range(a + 1, b):
                                s = (i - a) / h
                                s2 = s * s
                                s3 = s2 * s
                                p[i, j, c] = ((2 * s3 - 3 * s2 + 1) * p[a, j, c]
                                              + (s3 - 2 * s2 + s) * h * ma
                                              + (-2 * s3 + 3 * s2) * p[b, j, c]
                                              + (s3 - s2) * h * mb)
                before = a
                a = b
    return longest
