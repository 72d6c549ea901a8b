# cython: language_level=3
"""Compiled zero-phase second-order-section filtering, NaN-aware, along axis 0.

Trusts its inputs (``filters.sosfiltfilt`` validates them and computes the initial
conditions); the specification is ``_filters_ref.py``. Each channel is filtered the way
``scipy.signal.sosfiltfilt`` filters it with its defaults (odd extension of ``padlen`` samples
at both ends, ``sosfilt_zi`` scaled by the first sample of each pass, a forward then a backward
pass), with the same arithmetic in the same order, so the results agree to rounding.

The channels to filter are processed ``work.shape[1]`` (at most 8) at a time, interleaved in
``work`` (time along axis 0, channels along axis 1): the recursions of the channels are
independent, so the inner loop over channels keeps several of them in flight at once (about
9× SciPy's speed with 8 channels against 4× with 4 and 2.5× with one), and every row of ``x``
is read once per block of channels.
"""
from libc.math cimport isfinite, NAN
from libc.stdlib cimport malloc, free

ctypedef fused src_t:
    float
    double

ctypedef fused dst_t:
    float
    double


cdef inline void _bridge(double[:, ::1] work, Py_ssize_t jj, Py_ssize_t p,
                         Py_ssize_t n) noexcept nogil:
    """Replace the non-finite samples of column ``jj`` of ``work[p:p + n]`` by linear
    interpolation between the finite ones (``np.interp`` over the sample index: constant
    before the first and after the last finite sample, same formula)."""
    cdef Py_ssize_t i, a = -1, b, k
    cdef double slope, ya, yb
    i = 0
    while i < n:
        if isfinite(work[p + i, jj]):
            a = i
            i += 1
            continue
        b = i + 1  # the next finite sample after a run of non-finite ones
        while b < n and not isfinite(work[p + b, jj]):
            b += 1
        if a < 0:  # before the first finite sample: its value
            for k in range(i, b):
                work[p + k, jj] = work[p + b, jj]
        elif b >= n:  # after the last finite sample: its value
            for k in range(i, b):
                work[p + k, jj] = work[p + a, jj]
        else:
            ya = work[p + a, jj]
            yb = work[p + b, jj]
            slope = (yb - ya) / <double>(b - a)
            for k in range(i, b):
                work[p + k, jj] = slope * <double>(k - a) + ya
        i = b


cdef enum:
    MAX_LANES = 8  # the most columns filtered side by side (``work.shape[1]``)


cdef void _section_pass(double[:, ::1] work, Py_ssize_t nb, const double[:, ::1] sos,
                        const double[:, ::1] zi, Py_ssize_t s, const double* v0,
                        bint backward) noexcept nogil:
    """Run section ``s`` over the first ``nb`` columns of ``work`` in place, forward or
    backward in time, from state ``zi[s] * v0`` (``v0``: per column, the first sample of the
    pass's input to the whole cascade). The state lives in small local arrays, one lane per
    column; the sections of the cascade run one after the other over the whole signal, which
    gives every sample the same arithmetic as running them sample by sample."""
    cdef Py_ssize_t L = work.shape[0], t, jj, B = work.shape[1]
    cdef double b0 = sos[s, 0], b1 = sos[s, 1], b2 = sos[s, 2], a1 = sos[s, 4], a2 = sos[s, 5]
    cdef double z0[MAX_LANES]
    cdef double z1[MAX_LANES]
    cdef double xc, xn
    cdef double* row
    cdef double* base = &work[0, 0]
    for jj in range(nb):
        z0[jj] = zi[s, 0] * v0[jj]
        z1[jj] = zi[s, 1] * v0[jj]
    for t in range(L):
        row = base + B * ((L - 1 - t) if backward else t)
        for jj in range(nb):
            xc = row[jj]
            xn = b0 * xc + z0[jj]
            z0[jj] = b1 * xc - a1 * xn + z1[jj]
            z1[jj] = b2 * xc - a2 * xn
            row[jj] = xn


def _sosfiltfilt_cy(const double[:, ::1] sos, const double[:, ::1] zi, const src_t[:, :] x,
                    dst_t[:, :] out, Py_ssize_t padlen, Py_ssize_t min_finite,
                    double[:, ::1] work):
    """Zero-phase filter every column of ``x`` (n, c) into ``out`` (n, c), which may be ``x``.

    ``sos`` (s, 6) with ``sos[:, 3] == 1``; ``zi`` (s, 2): ``sosfilt_zi(sos)``; ``padlen``:
    samples of odd extension at each end (``n > padlen``); ``min_finite``: a column with at
    most this many finite samples is copied unfiltered; ``work`` (n + 2 padlen, b) float64
    scratch, 1 <= b <= MAX_LANES (8) columns filtered at a time. Non-finite samples of ``x``
    are bridged by linear interpolation for the filter only and are NaN in ``out``. Returns
    the number of columns filtered.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], B = work.shape[1], p = padlen
    cdef Py_ssize_t i, j, jj, k, nb, c0, nf = 0, nu = 0, ns = sos.shape[0]
    cdef double v, x0, xe
    cdef Py_ssize_t* cnt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* filt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* unf = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef double v0[MAX_LANES]
    cdef Py_ssize_t s, L = n + 2 * padlen
    if cnt == NULL or filt == NULL or unf == NULL:
        free(cnt); free(filt); free(unf)
        raise MemoryError()
    try:
        with nogil:
            for j in range(c):
                cnt[j] = 0
            for i in range(n):
                for j in range(c):
                    if isfinite(x[i, j]):
                        cnt[j] += 1
            for j in range(c):
                if cnt[j] > min_finite:
                    filt[nf] = j
                    nf += 1
                else:
                    unf[nu] = j
                    nu += 1
            # columns too short to filter: copied, non-finite samples set to NaN
            if nu:
                for i in range(n):
                    for k in range(nu):
                        j = unf[k]
                        v = x[i, j]
                        out[i, j] = <dst_t>v if isfinite(v) else <dst_t>NAN
            c0 = 0
            while c0 < nf:
                nb = min(B, nf - c0)
                for i in range(n):
                    for jj in range(nb):
                        work[p + i, jj] = x[i, filt[c0 + jj]]
                for jj in range(nb):
                    if cnt[filt[c0 + jj]] < n:
                        _bridge(work, jj, p, n)
                    # odd extension: 2 x[0] - x[k] before, 2 x[n-1] - x[n-1-k] after
                    x0 = work[p, jj]
                    xe = work[p + n - 1, jj]
                    for k in range(1, p + 1):
                        work[p - k, jj] = 2 * x0 - work[p + k, jj]
                        work[p + n - 1 + k, jj] = 2 * xe - work[p + n - 1 - k, jj]
                for jj in range(nb):
                    v0[jj] = work[0, jj]
                for s in range(ns):
                    _section_pass(work, nb, sos, zi, s, v0, False)
                for jj in range(nb):
                    v0[jj] = work[L - 1, jj]
                for s in range(ns):
                    _section_pass(work, nb, sos, zi, s, v0, True)
                for i in range(n):
                    for jj in range(nb):
                        j = filt[c0 + jj]
                        v = x[i, j]  # read before writing: out may be x
                        out[i, j] = <dst_t>work[p + i, jj] if isfinite(v) else <dst_t>NAN
                c0 += nb
    finally:
        free(cnt); free(filt); free(unf)
    return nf
