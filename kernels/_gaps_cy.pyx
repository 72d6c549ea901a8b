# cython: language_level=3
"""Compiled gap filling; trusts its input (see treadlab.kernels.gaps).

Works in place on float32 or float64 positions; the interpolation is computed in float64 and
rounded once when stored, so a float32 result equals the float64 one rounded to float32. One
pass over the frames in memory order, each marker carrying its last two seen frames: a gap is
filled when the frame that ends it is reached (the frames in it are never read again).
"""
from libc.math cimport isfinite, NAN
from libc.stdlib cimport malloc, free

ctypedef fused real_t:
    float
    double


def fill_gaps_cy(real_t[:, :, ::1] p, Py_ssize_t max_gap):
    """Fill gaps of <= max_gap frames in place (C-contiguous (m, k, 3) mm).

    Returns the longest gap filled, in frames. Unseen frames are set to NaN in all coordinates.
    """
    cdef Py_ssize_t m = p.shape[0], k = p.shape[1]
    cdef Py_ssize_t j, i, c, a, b, n, longest = 0
    cdef bint after
    cdef real_t* q
    cdef double h, s, s2, s3, ma, mb, chord, pa, pb
    # per marker: the last seen frame (-1: none yet) and the seen frame before it (-2: none)
    cdef Py_ssize_t* last = <Py_ssize_t*>malloc(max(k, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* before = <Py_ssize_t*>malloc(max(k, 1) * sizeof(Py_ssize_t))
    if last == NULL or before == NULL:
        free(last); free(before)
        raise MemoryError()
    with nogil:
        for j in range(k):
            last[j] = -1
            before[j] = -2
        for b in range(m):
            for j in range(k):
                q = &p[b, j, 0]
                # x - x is 0 for a finite x, NaN otherwise: one test for the three
                if (q[0] - q[0]) + (q[1] - q[1]) + (q[2] - q[2]) != 0:
                    q[0] = NAN  # unseen: all three NaN
                    q[1] = NAN
                    q[2] = NAN
                    continue
                a = last[j]
                n = b - a - 1
                if a >= 0 and 1 <= n <= max_gap:
                    if n > longest:
                        longest = n
                    h = <double>(b - a)
                    after = b + 1 < m and isfinite(p[b + 1, j, 0]) and \
                        isfinite(p[b + 1, j, 1]) and isfinite(p[b + 1, j, 2])
                    for c in range(3):
                        pa = p[a, j, c]
                        pb = p[b, j, c]
                        chord = (pb - pa) / h
                        if a >= 1 and before[j] == a - 1:
                            ma = pa - <double>p[a - 1, j, c]
                        else:
                            ma = chord
                        if after:
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
                before[j] = a
                last[j] = b
    free(last)
    free(before)
    return longest
