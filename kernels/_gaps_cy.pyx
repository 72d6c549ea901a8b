# cython: language_level=3
"""Compiled gap filling; trusts its input (see treadlab.kernels.gaps).

Works in place on float32 or float64 positions; the interpolation is computed in float64 and
rounded once when stored, so a float32 result equals the float64 one rounded to float32. One
pass over the frames in memory order: a frame whose coordinates are all finite while no marker
is in a gap changes nothing and is only tested (one loop the compiler vectorises); otherwise
each marker's state changes where it is lost or seen again, and a gap is filled when the frame
that ends it is reached (the frames in it are never read again).
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
    cdef Py_ssize_t j, i, c, q, a, b, n, missing, longest = 0, lost = k
    cdef bint after
    cdef double h, s, s2, s3, ma, mb, chord, pa, pb
    cdef real_t* row
    cdef real_t* v
    # per marker: whether it is unseen now (all are before their first seen frame), the first
    # frame of its current seen run, its last seen frame before the current gap (-1: none) and
    # whether the frame before that one was seen
    cdef unsigned char* unseen = <unsigned char*>malloc(max(k, 1))
    cdef Py_ssize_t* start = <Py_ssize_t*>malloc(max(k, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* last = <Py_ssize_t*>malloc(max(k, 1) * sizeof(Py_ssize_t))
    cdef unsigned char* seen_before = <unsigned char*>malloc(max(k, 1))
    if unseen == NULL or start == NULL or last == NULL or seen_before == NULL:
        free(unseen); free(start); free(last); free(seen_before)
        raise MemoryError()
    with nogil:
        for j in range(k):
            unseen[j] = 1
            start[j] = 0
            last[j] = -1
            seen_before[j] = 0
        for b in range(m):
            row = &p[b, 0, 0]
            missing = 0  # x - x is 0 for a finite x, NaN otherwise
            for q in range(3 * k):
                missing += (row[q] - row[q]) != 0
            if missing == 0 and lost == 0:
                continue  # every marker seen, as in the frame before
            for j in range(k):
                v = row + 3 * j
                if (v[0] - v[0]) + (v[1] - v[1]) + (v[2] - v[2]) != 0:
                    v[0] = NAN  # unseen: all three NaN
                    v[1] = NAN
                    v[2] = NAN
                    if not unseen[j]:
                        unseen[j] = 1
                        lost += 1
                        last[j] = b - 1
                        seen_before[j] = start[j] < b - 1
                    continue
                if not unseen[j]:
                    continue
                unseen[j] = 0
                lost -= 1
                start[j] = b
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
                        if seen_before[j]:
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
    free(unseen); free(start); free(last); free(seen_before)
    return longest
