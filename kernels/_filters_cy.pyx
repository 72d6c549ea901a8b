# cython: language_level=3
"""Compiled zero-phase second-order-section filtering, NaN-aware, along axis 0.

Trusts its inputs (``filters.sosfiltfilt`` validates them and computes the initial
conditions); the specification is ``_filters_ref.py``. Each channel is filtered the way
``scipy.signal.sosfiltfilt`` filters it with its defaults (odd extension of ``padlen`` samples
at both ends, ``sosfilt_zi`` scaled by the first sample of each pass, a forward then a backward
pass), with the same arithmetic in the same order, so the results agree to rounding.

Channels are filtered up to 8 at a time, side by side: the recursions of the channels are
independent, so the inner loop over channels keeps several of them in flight at once (with 8
channels about 9× SciPy's speed, against 2.5× with one). The sections of the cascade run one
after the other over chunks of 256 rows, which gives every sample the same arithmetic as
running them sample by sample, keeps each section's state in registers, and each chunk in
cache while the sections pass over it.

The extended signal of a block of channels is three segments: the left extension, the signal
and the right extension, each rows of up to 8 channels with a row stride. With a float64 output
that is not the input, the signal segment is ``out`` itself (adjacent channels, row stride =
``out``'s) and only the extensions need scratch; otherwise everything is in a float64 scratch
``work`` of ``n + 2 padlen`` rows.
"""
from libc.math cimport isfinite, NAN
from libc.stdlib cimport malloc, free

ctypedef fused src_t:
    float
    double

ctypedef fused dst_t:
    float
    double

cdef enum:
    MAX_LANES = 8  # the most channels filtered side by side
    CHUNK = 256    # rows run through every section while in cache


cdef void _bridge(double* v, Py_ssize_t st, Py_ssize_t n) noexcept nogil:
    """Replace the non-finite samples of ``v[0], v[st], ..., v[(n-1) st]`` by linear
    interpolation between the finite ones (``np.interp`` over the sample index: constant
    before the first and after the last finite sample, same formula). Needs one finite."""
    cdef Py_ssize_t i = 0, a = -1, b, k
    cdef double slope, ya, yb
    while i < n:
        if isfinite(v[i * st]):
            a = i
            i += 1
            continue
        b = i + 1  # the next finite sample after a run of non-finite ones
        while b < n and not isfinite(v[b * st]):
            b += 1
        if a < 0:  # before the first finite sample: its value
            for k in range(i, b):
                v[k * st] = v[b * st]
        elif b >= n:  # after the last finite sample: its value
            for k in range(i, b):
                v[k * st] = v[a * st]
        else:
            ya = v[a * st]
            yb = v[b * st]
            slope = (yb - ya) / <double>(b - a)
            for k in range(i, b):
                v[k * st] = slope * <double>(k - a) + ya
        i = b


# One section over a tile of W lanes (row stride W), in place, forward or backward, carrying
# the state z0, z1 (W values each). W is a constant in each copy (1, 2, 4, 8), so the compiler
# unrolls the lanes and keeps the states in registers; the copies differ only in W.

cdef void _tile_section1(double* tile, Py_ssize_t m, const double* c, double* z0,
                          double* z1, bint backward) noexcept nogil:
    """:func:`_tile_section` for a tile 1 lanes wide."""
    cdef Py_ssize_t t, jj
    cdef double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5]
    cdef double s0[1]
    cdef double s1[1]
    cdef double xc, xn
    cdef double* row
    for jj in range(1):
        s0[jj] = z0[jj]
        s1[jj] = z1[jj]
    for t in range(m):
        row = tile + 1 * ((m - 1 - t) if backward else t)
        for jj in range(1):
            xc = row[jj]
            xn = b0 * xc + s0[jj]
            s0[jj] = b1 * xc - a1 * xn + s1[jj]
            s1[jj] = b2 * xc - a2 * xn
            row[jj] = xn
    for jj in range(1):
        z0[jj] = s0[jj]
        z1[jj] = s1[jj]


cdef void _tile_section2(double* tile, Py_ssize_t m, const double* c, double* z0,
                          double* z1, bint backward) noexcept nogil:
    """:func:`_tile_section` for a tile 2 lanes wide."""
    cdef Py_ssize_t t, jj
    cdef double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5]
    cdef double s0[2]
    cdef double s1[2]
    cdef double xc, xn
    cdef double* row
    for jj in range(2):
        s0[jj] = z0[jj]
        s1[jj] = z1[jj]
    for t in range(m):
        row = tile + 2 * ((m - 1 - t) if backward else t)
        for jj in range(2):
            xc = row[jj]
            xn = b0 * xc + s0[jj]
            s0[jj] = b1 * xc - a1 * xn + s1[jj]
            s1[jj] = b2 * xc - a2 * xn
            row[jj] = xn
    for jj in range(2):
        z0[jj] = s0[jj]
        z1[jj] = s1[jj]


cdef void _tile_section4(double* tile, Py_ssize_t m, const double* c, double* z0,
                          double* z1, bint backward) noexcept nogil:
    """:func:`_tile_section` for a tile 4 lanes wide."""
    cdef Py_ssize_t t, jj
    cdef double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5]
    cdef double s0[4]
    cdef double s1[4]
    cdef double xc, xn
    cdef double* row
    for jj in range(4):
        s0[jj] = z0[jj]
        s1[jj] = z1[jj]
    for t in range(m):
        row = tile + 4 * ((m - 1 - t) if backward else t)
        for jj in range(4):
            xc = row[jj]
            xn = b0 * xc + s0[jj]
            s0[jj] = b1 * xc - a1 * xn + s1[jj]
            s1[jj] = b2 * xc - a2 * xn
            row[jj] = xn
    for jj in range(4):
        z0[jj] = s0[jj]
        z1[jj] = s1[jj]


cdef void _tile_section8(double* tile, Py_ssize_t m, const double* c, double* z0,
                          double* z1, bint backward) noexcept nogil:
    """:func:`_tile_section` for a tile 8 lanes wide."""
    cdef Py_ssize_t t, jj
    cdef double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5]
    cdef double s0[8]
    cdef double s1[8]
    cdef double xc, xn
    cdef double* row
    for jj in range(8):
        s0[jj] = z0[jj]
        s1[jj] = z1[jj]
    for t in range(m):
        row = tile + 8 * ((m - 1 - t) if backward else t)
        for jj in range(8):
            xc = row[jj]
            xn = b0 * xc + s0[jj]
            s0[jj] = b1 * xc - a1 * xn + s1[jj]
            s1[jj] = b2 * xc - a2 * xn
            row[jj] = xn
    for jj in range(8):
        z0[jj] = s0[jj]
        z1[jj] = s1[jj]


cdef inline void _tile_section(Py_ssize_t w, double* tile, Py_ssize_t m, const double* c,
                               double* z0, double* z1, bint backward) noexcept nogil:
    if w == 1:
        _tile_section1(tile, m, c, z0, z1, backward)
    elif w == 2:
        _tile_section2(tile, m, c, z0, z1, backward)
    elif w == 4:
        _tile_section4(tile, m, c, z0, z1, backward)
    else:
        _tile_section8(tile, m, c, z0, z1, backward)


cdef void _chunked(const double[:, ::1] sos, double* base, Py_ssize_t st, Py_ssize_t length,
                   Py_ssize_t nb, double* z, double* tile, bint backward) noexcept nogil:
    """The whole cascade over ``length`` rows of ``nb`` channels at ``base`` (row stride
    ``st``), ``CHUNK`` rows at a time (in time order, or reversed when ``backward``): a chunk
    is copied into ``tile`` (``CHUNK × w`` for the narrowest width ``w`` in 1, 2, 4, 8 that
    holds the ``nb`` channels; unused lanes zero), every section runs over it while it is in
    cache, carrying its state ``z[2 s MAX_LANES + jj]``, ``z[(2 s + 1) MAX_LANES + jj]`` from
    chunk to chunk, and the chunk is copied back."""
    cdef Py_ssize_t s, a, m, t, jj, ns = sos.shape[0], done = 0
    cdef Py_ssize_t w = 1 if nb == 1 else (2 if nb == 2 else (4 if nb <= 4 else 8))
    while done < length:
        m = min(<Py_ssize_t>CHUNK, length - done)
        a = (length - done - m) if backward else done
        for t in range(m):
            for jj in range(nb):
                tile[t * w + jj] = base[(a + t) * st + jj]
            for jj in range(nb, w):
                tile[t * w + jj] = 0.0
        for s in range(ns):
            _tile_section(w, tile, m, &sos[s, 0], z + 2 * s * MAX_LANES,
                          z + (2 * s + 1) * MAX_LANES, backward)
        for t in range(m):
            for jj in range(nb):
                base[(a + t) * st + jj] = tile[t * w + jj]
        done += m


cdef void _filtfilt(const double[:, ::1] sos, const double[:, ::1] zi, Py_ssize_t nb,
                    double* left, double* mid, Py_ssize_t mid_st, double* right,
                    Py_ssize_t pad_st, Py_ssize_t p, Py_ssize_t n, double* z,
                    double* tile) noexcept nogil:
    """Odd-extend and filter forward then backward ``nb`` channels: the signal is ``n`` rows at
    ``mid`` (stride ``mid_st``, bridged already), the extensions ``p`` rows at ``left`` and
    ``right`` (stride ``pad_st``). Scratch: ``z`` for the states (``2 n_sections MAX_LANES``),
    ``tile`` (``CHUNK MAX_LANES``)."""
    cdef Py_ssize_t jj, k, s, ns = sos.shape[0]
    cdef double x0, xe
    cdef double v0[MAX_LANES]
    for jj in range(nb):  # 2 x[0] - x[k] before, 2 x[n-1] - x[n-1-k] after, k = 1..p
        x0 = mid[jj]
        xe = mid[(n - 1) * mid_st + jj]
        for k in range(1, p + 1):
            left[(p - k) * pad_st + jj] = 2 * x0 - mid[k * mid_st + jj]
            right[(k - 1) * pad_st + jj] = 2 * xe - mid[(n - 1 - k) * mid_st + jj]
    # forward, from zi scaled by the first sample of the extended signal (unused lanes: 0)
    for jj in range(MAX_LANES):
        v0[jj] = 0.0
    for jj in range(nb):
        v0[jj] = left[jj] if p > 0 else mid[jj]
    for s in range(ns):
        for jj in range(MAX_LANES):
            z[2 * s * MAX_LANES + jj] = zi[s, 0] * v0[jj]
            z[(2 * s + 1) * MAX_LANES + jj] = zi[s, 1] * v0[jj]
    _chunked(sos, left, pad_st, p, nb, z, tile, False)
    _chunked(sos, mid, mid_st, n, nb, z, tile, False)
    _chunked(sos, right, pad_st, p, nb, z, tile, False)
    # backward, from zi scaled by the last sample of the forward pass
    for jj in range(nb):
        v0[jj] = right[(p - 1) * pad_st + jj] if p > 0 else mid[(n - 1) * mid_st + jj]
    for s in range(ns):
        for jj in range(MAX_LANES):
            z[2 * s * MAX_LANES + jj] = zi[s, 0] * v0[jj]
            z[(2 * s + 1) * MAX_LANES + jj] = zi[s, 1] * v0[jj]
    _chunked(sos, right, pad_st, p, nb, z, tile, True)
    _chunked(sos, mid, mid_st, n, nb, z, tile, True)
    _chunked(sos, left, pad_st, p, nb, z, tile, True)


def _sosfiltfilt_cy(const double[:, ::1] sos, const double[:, ::1] zi, const src_t[:, :] x,
                    dst_t[:, :] out, Py_ssize_t padlen, Py_ssize_t min_finite,
                    double[:, ::1] work, bint in_out):
    """Zero-phase filter every column of ``x`` (n, c) into ``out`` (n, c).

    ``sos`` (s, 6) with ``sos[:, 3] == 1``; ``zi`` (s, 2): ``sosfilt_zi(sos)``; ``padlen``:
    samples of odd extension at each end (``n > padlen``); ``min_finite``: a column with at
    most this many finite samples is copied unfiltered. Non-finite samples of ``x`` are bridged
    by linear interpolation for the filter only and are NaN in ``out``.

    ``in_out`` False: ``work`` is (n + 2 padlen, b) float64 scratch, 1 <= b <= 8 columns
    filtered at a time; ``out`` may be ``x`` itself. ``in_out`` True (only with a float64,
    C-contiguous ``out`` that does not overlap ``x``): the signal is filtered inside ``out``,
    runs of up to b adjacent columns at a time, and ``work`` is (2 padlen, b) scratch for the
    extensions. Returns the number of columns filtered.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], B = work.shape[1], p = padlen
    cdef Py_ssize_t i, j, jj, k, nb, c0 = 0, nf = 0, nu = 0
    cdef double v
    cdef double* mid
    cdef double* left
    cdef double* right
    cdef Py_ssize_t mid_st
    cdef Py_ssize_t* cnt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* filt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* unf = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef double* z = <double*>malloc(2 * sos.shape[0] * MAX_LANES * sizeof(double))
    cdef double* tile = <double*>malloc(CHUNK * MAX_LANES * sizeof(double))
    if cnt == NULL or filt == NULL or unf == NULL or z == NULL or tile == NULL:
        free(cnt); free(filt); free(unf); free(z); free(tile)
        raise MemoryError()
    if dst_t is float:
        in_out = False
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
            while c0 < nf:
                nb = 1
                if in_out:  # a run of adjacent columns of out
                    while nb < B and c0 + nb < nf and filt[c0 + nb] == filt[c0 + nb - 1] + 1:
                        nb += 1
                else:
                    nb = min(B, nf - c0)
                if in_out:
                    if dst_t is double:
                        mid = &out[0, filt[c0]]
                        mid_st = out.strides[0] // sizeof(double)
                        left = &work[0, 0]
                        right = &work[p, 0] if p > 0 else &work[0, 0]
                else:
                    mid = &work[p, 0]
                    mid_st = B
                    left = &work[0, 0]
                    right = &work[p + n, 0] if p > 0 else &work[0, 0]
                for i in range(n):
                    for jj in range(nb):
                        mid[i * mid_st + jj] = x[i, filt[c0 + jj]]
                for jj in range(nb):
                    if cnt[filt[c0 + jj]] < n:
                        _bridge(mid + jj, mid_st, n)
                _filtfilt(sos, zi, nb, left, mid, mid_st, right, B, p, n, z, tile)
                for i in range(n):
                    for jj in range(nb):
                        j = filt[c0 + jj]
                        v = x[i, j]  # read before writing: out may be x (not in_out)
                        if not isfinite(v):
                            out[i, j] = <dst_t>NAN
                        elif not in_out:
                            out[i, j] = <dst_t>mid[i * mid_st + jj]
                c0 += nb
    finally:
        free(cnt); free(filt); free(unf); free(z); free(tile)
    return nf
