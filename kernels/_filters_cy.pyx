# cython: language_level=3
"""Compiled zero-phase second-order-section filtering, NaN-aware, along axis 0.

Trusts its inputs (``filters.sosfiltfilt`` validates them and computes the initial
conditions); the specification is ``_filters_ref.py``. Each channel is filtered the way
``scipy.signal.sosfiltfilt`` filters it with its defaults (odd extension of ``padlen`` samples
at both ends, ``sosfilt_zi`` scaled by the first sample of each pass, a forward then a backward
pass), with the same arithmetic in the same order, so the results agree to rounding.

The data are time-major (channels adjacent within a row), so the filter runs row by row over a
run of up to b adjacent channels: each row goes through every section of the cascade, and
each section's loop over the channels is independent from channel to channel, so the
compiler vectorises it; the states (``2 × sections × b`` values) stay in L1 from row to row
(two or four channels through two sections, one or both plates' Fx and Fz of a split belt,
keep them in registers: there the recursion's latency bounds the time). The forward pass filters in place in a float64 signal: ``out`` itself for a float64 output
that is not the input (scratch only for the two extensions), else a ``(n + 2 padlen) × b``
scratch ``work`` that also holds the extensions; complete channels through two sections are
read from ``x`` by the forward pass itself, others are copied first and their gaps bridged.
The backward pass writes each row to ``out`` as soon as it is final.
"""
from libc.math cimport isfinite, NAN
from libc.stdlib cimport malloc, free
from libc.string cimport memset

ctypedef fused src_t:
    float
    double

ctypedef fused dst_t:
    float
    double

cdef enum:
    MAX_RUN = 32  # the most adjacent channels filtered side by side
    CHUNK = 64    # rows of the backward pass written out while in cache
    FLAT = 16     # narrow contiguous x: at least this many samples per step of the count


cdef void _bridge(double* v, Py_ssize_t st, Py_ssize_t n, unsigned char* bad) noexcept nogil:
    """Replace the non-finite samples of ``v[0], v[st], ..., v[(n-1) st]`` by linear
    interpolation between the finite ones (``np.interp`` over the sample index: constant
    before the first and after the last finite sample, same formula). Needs one finite.
    Sets ``bad[i]`` for every sample ``i`` replaced."""
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
        for k in range(i, b):
            bad[k] = 1
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


cdef inline void _row(double* row, Py_ssize_t w, const double[:, ::1] sos, double* z,
                      Py_ssize_t zst) noexcept nogil:
    """The whole cascade over one row of ``w`` adjacent channels, in place: section ``s``
    carries its states in ``z[2 s zst + j]`` and ``z[(2 s + 1) zst + j]``. The channels are
    independent, so the loop over them vectorises; the states stay in L1 from row to row."""
    cdef Py_ssize_t s, j
    cdef double b0, b1, b2, a1, a2, xc, xn
    cdef double* z0
    cdef double* z1
    for s in range(sos.shape[0]):
        b0 = sos[s, 0]
        b1 = sos[s, 1]
        b2 = sos[s, 2]
        a1 = sos[s, 4]
        a2 = sos[s, 5]
        z0 = z + 2 * s * zst
        z1 = z0 + zst
        for j in range(w):
            xc = row[j]
            xn = b0 * xc + z0[j]
            z0[j] = b1 * xc - a1 * xn + z1[j]
            z1[j] = b2 * xc - a2 * xn
            row[j] = xn


cdef void _pass2_two(double* base, Py_ssize_t st, Py_ssize_t m, bint backward, double b00,
                     double b01, double b02, double a01, double a02, double b10, double b11,
                     double b12, double a11, double a12, double* z) noexcept nogil:
    """:func:`_pass2` for two channels, the states in registers."""
    cdef Py_ssize_t t
    cdef double xc, xn, yc, yn
    cdef double* row
    cdef double p0a = z[0], p0b = z[1], p1a = z[2], p1b = z[3]
    cdef double q0a = z[4], q0b = z[5], q1a = z[6], q1b = z[7]
    for t in range(m):
        row = base + st * ((m - 1 - t) if backward else t)
        xc = row[0]
        yc = row[1]
        xn = b00 * xc + p0a
        yn = b00 * yc + p0b
        p0a = b01 * xc - a01 * xn + p1a
        p0b = b01 * yc - a01 * yn + p1b
        p1a = b02 * xc - a02 * xn
        p1b = b02 * yc - a02 * yn
        xc = xn
        yc = yn
        xn = b10 * xc + q0a
        yn = b10 * yc + q0b
        q0a = b11 * xc - a11 * xn + q1a
        q0b = b11 * yc - a11 * yn + q1b
        q1a = b12 * xc - a12 * xn
        q1b = b12 * yc - a12 * yn
        row[0] = xn
        row[1] = yn
    z[0] = p0a
    z[1] = p0b
    z[2] = p1a
    z[3] = p1b
    z[4] = q0a
    z[5] = q0b
    z[6] = q1a
    z[7] = q1b


cdef void _pass2_four(double* base, Py_ssize_t st, Py_ssize_t m, bint backward, double b00,
                      double b01, double b02, double a01, double a02, double b10, double b11,
                      double b12, double a11, double a12, double* z) noexcept nogil:
    """:func:`_pass2` for four channels (a split belt's two plates, Fx and Fz each), the states
    in registers (as :func:`_pass2_two`): the four recursions overlap, and with AVX2 they run as
    one four-lane vector, in about the time of two channels."""
    cdef Py_ssize_t t
    cdef double* row
    cdef double xa, xb, xc, xd, ya, yb, yc, yd
    cdef double p0a = z[0], p0b = z[1], p0c = z[2], p0d = z[3]
    cdef double p1a = z[4], p1b = z[5], p1c = z[6], p1d = z[7]
    cdef double q0a = z[8], q0b = z[9], q0c = z[10], q0d = z[11]
    cdef double q1a = z[12], q1b = z[13], q1c = z[14], q1d = z[15]
    for t in range(m):
        row = base + st * ((m - 1 - t) if backward else t)
        xa = row[0]
        xb = row[1]
        xc = row[2]
        xd = row[3]
        ya = b00 * xa + p0a
        yb = b00 * xb + p0b
        yc = b00 * xc + p0c
        yd = b00 * xd + p0d
        p0a = b01 * xa - a01 * ya + p1a
        p0b = b01 * xb - a01 * yb + p1b
        p0c = b01 * xc - a01 * yc + p1c
        p0d = b01 * xd - a01 * yd + p1d
        p1a = b02 * xa - a02 * ya
        p1b = b02 * xb - a02 * yb
        p1c = b02 * xc - a02 * yc
        p1d = b02 * xd - a02 * yd
        xa = ya
        xb = yb
        xc = yc
        xd = yd
        ya = b10 * xa + q0a
        yb = b10 * xb + q0b
        yc = b10 * xc + q0c
        yd = b10 * xd + q0d
        q0a = b11 * xa - a11 * ya + q1a
        q0b = b11 * xb - a11 * yb + q1b
        q0c = b11 * xc - a11 * yc + q1c
        q0d = b11 * xd - a11 * yd + q1d
        q1a = b12 * xa - a12 * ya
        q1b = b12 * xb - a12 * yb
        q1c = b12 * xc - a12 * yc
        q1d = b12 * xd - a12 * yd
        row[0] = ya
        row[1] = yb
        row[2] = yc
        row[3] = yd
    z[0] = p0a
    z[1] = p0b
    z[2] = p0c
    z[3] = p0d
    z[4] = p1a
    z[5] = p1b
    z[6] = p1c
    z[7] = p1d
    z[8] = q0a
    z[9] = q0b
    z[10] = q0c
    z[11] = q0d
    z[12] = q1a
    z[13] = q1b
    z[14] = q1c
    z[15] = q1d


cdef inline void _states(double* z, double* p0, double* p1, double* q0, double* q1,
                         Py_ssize_t w, bint store) noexcept nogil:
    """The two sections' states of ``w`` channels: ``z`` (``[p0, p1, q0, q1]``, ``w`` each)
    into the local arrays, or back when ``store``."""
    cdef Py_ssize_t j
    for j in range(w):
        if store:
            z[j], z[w + j], z[2 * w + j], z[3 * w + j] = p0[j], p1[j], q0[j], q1[j]
        else:
            p0[j], p1[j], q0[j], q1[j] = z[j], z[w + j], z[2 * w + j], z[3 * w + j]


cdef void _pass2(double* base, Py_ssize_t st, Py_ssize_t m, bint backward,
                 const double[:, ::1] sos, double* z, Py_ssize_t w) noexcept nogil:
    """:func:`_pass` for a cascade of two sections (orders 3 and 4), fused: each sample goes
    through both in one loop over the channels, whose states are local arrays (the compiler
    knows they do not alias the rows), with the coefficients in registers."""
    cdef Py_ssize_t t, j
    cdef double b00 = sos[0, 0], b01 = sos[0, 1], b02 = sos[0, 2], a01 = sos[0, 4]
    cdef double a02 = sos[0, 5], b10 = sos[1, 0], b11 = sos[1, 1], b12 = sos[1, 2]
    cdef double a11 = sos[1, 4], a12 = sos[1, 5]
    cdef double xc, xn
    cdef double* row
    cdef double p0[MAX_RUN]
    cdef double p1[MAX_RUN]
    cdef double q0[MAX_RUN]
    cdef double q1[MAX_RUN]
    if w == 2:
        _pass2_two(base, st, m, backward, b00, b01, b02, a01, a02, b10, b11, b12, a11, a12, z)
        return
    _states(z, p0, p1, q0, q1, w, False)
    for t in range(m):
        row = base + st * ((m - 1 - t) if backward else t)
        for j in range(w):
            xc = row[j]
            xn = b00 * xc + p0[j]
            p0[j] = b01 * xc - a01 * xn + p1[j]
            p1[j] = b02 * xc - a02 * xn
            xc = xn
            xn = b10 * xc + q0[j]
            q0[j] = b11 * xc - a11 * xn + q1[j]
            q1[j] = b12 * xc - a12 * xn
            row[j] = xn
    _states(z, p0, p1, q0, q1, w, True)


cdef void _pass2_in(const src_t* xin, Py_ssize_t xs0, Py_ssize_t xs1, double* base,
                    Py_ssize_t st, Py_ssize_t m, const double[:, ::1] sos, double* z,
                    Py_ssize_t w) noexcept nogil:
    """:func:`_pass2` forward, reading the rows from ``xin`` (element strides ``xs0``, ``xs1``;
    complete, so nothing to bridge) and writing the results to the rows at ``base``: the signal
    is not copied into ``base`` first."""
    cdef Py_ssize_t t, j
    cdef double b00 = sos[0, 0], b01 = sos[0, 1], b02 = sos[0, 2], a01 = sos[0, 4]
    cdef double a02 = sos[0, 5], b10 = sos[1, 0], b11 = sos[1, 1], b12 = sos[1, 2]
    cdef double a11 = sos[1, 4], a12 = sos[1, 5]
    cdef double xc, xn
    cdef double* row
    cdef const src_t* xr
    cdef double p0[MAX_RUN]
    cdef double p1[MAX_RUN]
    cdef double q0[MAX_RUN]
    cdef double q1[MAX_RUN]
    _states(z, p0, p1, q0, q1, w, False)
    for t in range(m):
        row = base + st * t
        xr = xin + xs0 * t
        for j in range(w):
            xc = xr[j * xs1]
            xn = b00 * xc + p0[j]
            p0[j] = b01 * xc - a01 * xn + p1[j]
            p1[j] = b02 * xc - a02 * xn
            xc = xn
            xn = b10 * xc + q0[j]
            q0[j] = b11 * xc - a11 * xn + q1[j]
            q1[j] = b12 * xc - a12 * xn
            row[j] = xn
    _states(z, p0, p1, q0, q1, w, True)


cdef void _gather(const src_t* xin, Py_ssize_t xs0, Py_ssize_t xs1, double* mid,
                  Py_ssize_t mid_st, Py_ssize_t nb, Py_ssize_t a, Py_ssize_t e) noexcept nogil:
    """Rows ``a`` to ``e - 1`` of ``nb`` channels from ``xin`` (element strides ``xs0``, ``xs1``)
    into the float64 rows at ``mid`` (stride ``mid_st``); one flat copy when both are
    contiguous, column by column when the columns of ``xin`` are, a loop the compiler
    vectorises when its rows are."""
    cdef Py_ssize_t i, jj, q
    cdef const src_t* xr
    cdef double* mr
    if xs1 == 1 and xs0 == nb and mid_st == nb:
        for q in range(a * nb, e * nb):
            mid[q] = xin[q]
        return
    if xs0 == 1:  # columns contiguous: column by column
        for jj in range(nb):
            xr = xin + jj * xs1
            mr = mid + jj
            for i in range(a, e):
                mr[i * mid_st] = xr[i]
        return
    if xs1 == 1:  # rows contiguous: a loop the compiler vectorises
        for i in range(a, e):
            xr = xin + i * xs0
            mr = mid + i * mid_st
            for jj in range(nb):
                mr[jj] = xr[jj]
        return
    for i in range(a, e):
        xr = xin + i * xs0
        mr = mid + i * mid_st
        for jj in range(nb):
            mr[jj] = xr[jj * xs1]


cdef void _pass(double* base, Py_ssize_t st, Py_ssize_t m, bint backward,
                const double[:, ::1] sos, double* z, Py_ssize_t w) noexcept nogil:
    """The cascade over ``m`` rows of ``w <= MAX_RUN`` adjacent channels at ``base`` (row
    stride ``st``), in place, in time order or reversed when ``backward``, carrying the states
    ``z`` (as :func:`_row`)."""
    cdef Py_ssize_t t
    if sos.shape[0] == 2 and w == 4:
        _pass2_four(base, st, m, backward, sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5],
                    sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5], z)
        return
    if sos.shape[0] == 2:
        _pass2(base, st, m, backward, sos, z, w)
        return
    for t in range(m):
        _row(base + st * ((m - 1 - t) if backward else t), w, sos, z, w)


cdef void _start(const double[:, ::1] zi, double* z, Py_ssize_t zst, const double* v,
                 Py_ssize_t nb) noexcept nogil:
    """States at the start of a pass: ``zi`` scaled by the pass's first row ``v``."""
    cdef Py_ssize_t s, j
    for s in range(zi.shape[0]):
        for j in range(nb):
            z[2 * s * zst + j] = zi[s, 0] * v[j]
            z[(2 * s + 1) * zst + j] = zi[s, 1] * v[j]


cdef void _filtfilt(const double[:, ::1] sos, const double[:, ::1] zi, const src_t[:, :] x,
                    dst_t[:, ::1] out, Py_ssize_t j0, Py_ssize_t nb, double* left, double* mid,
                    Py_ssize_t mid_st, double* right, Py_ssize_t pad_st, Py_ssize_t p,
                    double* z, bint in_out, const unsigned char* bad, bint direct) noexcept nogil:
    """Odd-extend and filter forward then backward the ``nb`` adjacent channels ``j0, ...`` of
    ``x``: the signal is ``n`` rows at ``mid`` (stride ``mid_st``, bridged already), the
    extensions ``p`` rows at ``left`` and ``right`` (stride ``pad_st``); ``z``: the states
    (``2 n_sections nb``). The backward pass writes each row to ``out`` as soon as it is final
    (with ``in_out``, ``mid`` is inside ``out`` already), and NaN where ``x`` is not finite:
    only in the rows ``i`` with ``bad[i]`` (``bad`` NULL: no sample is missing). With ``direct``
    (two sections, complete channels) only the first and last ``p + 1`` rows are at ``mid``
    before the forward pass, which reads the signal from ``x``."""
    cdef Py_ssize_t n = x.shape[0], i, j, k, a, e
    cdef double x0, xe, v
    cdef double* row
    cdef dst_t* orow
    for j in range(nb):  # 2 x[0] - x[k] before, 2 x[n-1] - x[n-1-k] after, k = 1..p
        x0 = mid[j]
        xe = mid[(n - 1) * mid_st + j]
        for k in range(1, p + 1):
            left[(p - k) * pad_st + j] = 2 * x0 - mid[k * mid_st + j]
            right[(k - 1) * pad_st + j] = 2 * xe - mid[(n - 1 - k) * mid_st + j]
    # forward, from zi scaled by the first sample of the extended signal
    _start(zi, z, nb, left if p > 0 else mid, nb)
    _pass(left, pad_st, p, False, sos, z, nb)
    if direct:
        _pass2_in(&x[0, j0], x.strides[0] // <Py_ssize_t>sizeof(src_t),
                  x.strides[1] // <Py_ssize_t>sizeof(src_t), mid, mid_st, n, sos, z, nb)
    else:
        _pass(mid, mid_st, n, False, sos, z, nb)
    _pass(right, pad_st, p, False, sos, z, nb)
    # backward, from zi scaled by the last sample of the forward pass
    _start(zi, z, nb, right + (p - 1) * pad_st if p > 0 else mid + (n - 1) * mid_st, nb)
    _pass(right, pad_st, p, True, sos, z, nb)
    e = n  # rows e.. are final and written; CHUNK rows at a time while they are in cache
    while e > 0:
        a = max(e - <Py_ssize_t>CHUNK, 0)
        _pass(mid + a * mid_st, mid_st, e - a, True, sos, z, nb)
        for i in range(a, e if bad != NULL or not in_out else a):  # in_out, no gaps: done
            row = mid + i * mid_st
            orow = &out[i, j0]
            if bad != NULL and bad[i]:
                for j in range(nb):
                    v = x[i, j0 + j]  # read before writing: out may be x (not in_out)
                    if not isfinite(v):
                        orow[j] = <dst_t>NAN
                    elif not in_out:
                        orow[j] = <dst_t>row[j]
            elif not in_out:
                for j in range(nb):
                    orow[j] = <dst_t>row[j]
        e = a
    _pass(left, pad_st, p, True, sos, z, nb)


def _sosfiltfilt_cy(const double[:, ::1] sos, const double[:, ::1] zi,
                    const src_t[:, :] x, dst_t[:, ::1] out, Py_ssize_t padlen,
                    Py_ssize_t min_finite, double[:, ::1] work, bint in_out):
    """Zero-phase filter every column of ``x`` (n, c) into ``out`` (n, c).

    ``sos`` (s, 6) with ``sos[:, 3] == 1``; ``zi`` (s, 2): ``sosfilt_zi(sos)``; ``padlen``:
    samples of odd extension at each end (``n > padlen``); ``min_finite``: a column with at
    most this many finite samples is copied unfiltered. Non-finite samples of ``x`` are bridged
    by linear interpolation for the filter only and are NaN in ``out``. Filtered columns go
    through in runs of up to b adjacent columns.

    ``in_out`` False: ``work`` is (n + 2 padlen, b) float64 scratch, b >= 1; ``out`` may be
    ``x`` itself. ``in_out`` True (only with a float64 ``out`` that does not overlap ``x``):
    the signal is filtered inside ``out`` and ``work`` is (2 padlen, b) scratch for the
    extensions. ``x`` may have any strides (read through its element strides; a few
    C-ordered columns, or Fortran-ordered ones, are counted and copied as flat runs, contiguous
    rows with loops the compiler vectorises).
    Returns the number of columns filtered.
    """
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1], p = padlen
    cdef Py_ssize_t B = min(work.shape[1], <Py_ssize_t>MAX_RUN), W = work.shape[1]
    cdef Py_ssize_t i, j, jj, nb, j0, q, r, L, c0 = 0, nf = 0, nu = 0
    cdef double run[FLAT]
    cdef double v
    cdef unsigned char* gaps
    cdef bint direct
    cdef double* mid
    cdef double* left
    cdef double* right
    cdef double* mr
    cdef const src_t* xr
    cdef const src_t* x0 = &x[0, 0] if n > 0 and c > 0 else NULL
    cdef Py_ssize_t xs0 = x.strides[0] // <Py_ssize_t>sizeof(src_t)
    cdef Py_ssize_t xs1 = x.strides[1] // <Py_ssize_t>sizeof(src_t)
    cdef Py_ssize_t mid_st
    cdef Py_ssize_t* cnt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* filt = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t* unf = <Py_ssize_t*>malloc(max(c, 1) * sizeof(Py_ssize_t))
    cdef double* z = <double*>malloc(2 * sos.shape[0] * B * sizeof(double))
    cdef double* acc = <double*>malloc(max(c, 1) * sizeof(double))
    cdef unsigned char* bad = <unsigned char*>malloc(max(n, 1))
    if cnt == NULL or filt == NULL or unf == NULL or z == NULL or acc == NULL or bad == NULL:
        free(cnt); free(filt); free(unf); free(z); free(acc); free(bad)
        raise MemoryError()
    if dst_t is float:
        in_out = False
    try:
        with nogil:
            # x - x is 0 where x is finite, NaN elsewhere: a column whose sum of it is 0 is
            # complete (a loop the compiler vectorises); the others are counted
            for j in range(c):
                acc[j] = 0
            if xs1 == 1 and xs0 == c and c <= FLAT:
                # few contiguous columns: x as one flat run, FLAT // c rows per step, so that
                # the loop is long enough to vectorise; element q of a step is column q % c
                L = c * (FLAT // c)
                for q in range(L):
                    run[q] = 0
                r = 0
                while r + L <= n * c:
                    for q in range(L):
                        run[q] += x0[r + q] - x0[r + q]
                    r += L
                for q in range(L):
                    acc[q % c] += run[q]
                for q in range(r, n * c):
                    acc[q % c] += x0[q] - x0[q]
            elif xs0 == 1:  # columns contiguous (Fortran order): each one as a flat run
                for j in range(c):
                    xr = x0 + j * xs1
                    for q in range(FLAT):
                        run[q] = 0
                    r = 0
                    while r + FLAT <= n:
                        for q in range(FLAT):
                            run[q] += xr[r + q] - xr[r + q]
                        r += FLAT
                    for q in range(FLAT):
                        acc[j] += run[q]
                    for q in range(r, n):
                        acc[j] += xr[q] - xr[q]
            elif xs1 == 1:  # rows contiguous: a loop the compiler vectorises
                for i in range(n):
                    xr = x0 + i * xs0
                    for j in range(c):
                        acc[j] += xr[j] - xr[j]
            else:
                for i in range(n):
                    xr = x0 + i * xs0
                    for j in range(c):
                        acc[j] += xr[j * xs1] - xr[j * xs1]
            for j in range(c):
                cnt[j] = n
                if acc[j] != 0:
                    for i in range(n):
                        cnt[j] -= not isfinite(x[i, j])
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
                    for jj in range(nu):
                        j = unf[jj]
                        v = x[i, j]
                        out[i, j] = <dst_t>v if isfinite(v) else <dst_t>NAN
            while c0 < nf:
                nb = 1  # a run of adjacent columns
                while nb < B and c0 + nb < nf and filt[c0 + nb] == filt[c0 + nb - 1] + 1:
                    nb += 1
                j0 = filt[c0]
                if in_out:
                    if dst_t is double:
                        mid = &out[0, j0]
                        mid_st = c
                        left = &work[0, 0]
                        right = &work[p, 0] if p > 0 else &work[0, 0]
                else:
                    mid = &work[p, 0]
                    mid_st = W
                    left = &work[0, 0]
                    right = &work[p + n, 0] if p > 0 else &work[0, 0]
                # complete channels through two sections are filtered straight from x (the
                # extensions need its first and last p + 1 rows); else (and for two or four
                # channels, whose passes hold the states in registers) the signal is copied,
                # its gaps bridged (rows with a missing sample marked in bad)
                direct = sos.shape[0] == 2 and nb > 2 and nb != 4
                for jj in range(nb):
                    if cnt[j0 + jj] < n:
                        direct = False
                gaps = NULL
                if direct:
                    _gather(x0 + j0 * xs1, xs0, xs1, mid, mid_st, nb, 0, p + 1)
                    _gather(x0 + j0 * xs1, xs0, xs1, mid, mid_st, nb, n - 1 - p, n)
                else:
                    _gather(x0 + j0 * xs1, xs0, xs1, mid, mid_st, nb, 0, n)
                    for jj in range(nb):
                        if cnt[j0 + jj] < n:
                            if gaps == NULL:
                                gaps = bad
                                memset(bad, 0, n)
                            _bridge(mid + jj, mid_st, n, bad)
                _filtfilt(sos, zi, x, out, j0, nb, left, mid, mid_st, right, W, p, z, in_out,
                          gaps, direct)
                c0 += nb
    finally:
        free(cnt); free(filt); free(unf); free(z); free(acc); free(bad)
    return nf
