# cython: language_level=3
"""Compiled contact detection: the per-sample hysteresis state machine.

Trusts its inputs (``contacts.detect_contacts`` validates them); the specification is
``_contacts_ref.py``. State lives in two small arrays updated in place:
``sf = [f_below, f_after, t_unload, f_last, t_strike, peak]`` (float64) and
``si = [n, phase, i_below, i_strike, i_peak, flags]`` (int64), see ``ContactState``.
"""
from libc.math cimport ceil, isfinite, isnan, NAN

cdef enum:
    UNARMED = 0
    ARMED = 1
    CONTACT = 2
    F_SHORT = 1
    F_LOW_PEAK = 2
    F_NO_FLIGHT = 4
    F_DROPOUT = 8


def _detect_contacts_cy(const double[::1] fz, Py_ssize_t start, double rate, double t0,
                        double strike_n, double off_n, double min_contact_s, double min_peak_n,
                        double min_flight_s, double[::1] sf, long long[::1] si,
                        long long[::1] o_strike, long long[::1] o_off, long long[::1] o_peak,
                        double[::1] o_tstrike, double[::1] o_toff, double[::1] o_peakn,
                        int[::1] o_flags):
    """Run the state machine over ``fz[start:]`` until the end or until the output arrays are
    full. Returns ``(number of contacts written, block position where it stopped)``.

    Each phase has a tight inner loop over the samples that cannot change it (loaded samples
    in contact, unloaded samples while armed, anything but an unloaded sample while unarmed);
    the other samples go through the full transition logic.
    """
    cdef Py_ssize_t n = fz.shape[0], cap = o_strike.shape[0], count = 0, j = start, j0
    cdef double x, prev, frac, t_off
    cdef double f_below = sf[0], f_after = sf[1], t_unload = sf[2], f_last0 = sf[3]
    cdef double t_strike = sf[4], peak = sf[5]
    cdef long long g0 = si[0] - start          # global index of block position 0
    cdef long long i_below = si[2], i_strike = si[3], i_peak = si[4]
    cdef int phase = <int>si[1], flags = <int>si[5]
    with nogil:
        while j < n and count < cap:
            if phase == CONTACT:
                while j < n:                   # loaded: track the peak
                    x = fz[j]
                    if not (x >= off_n):
                        break
                    if x > peak:
                        peak = x
                        i_peak = g0 + j
                    j += 1
                if j == n:
                    break
                if isnan(x):
                    flags = flags | F_DROPOUT
                    j += 1
                    continue
                # toe off at j
                prev = fz[j - 1] if j > 0 else f_last0
                if isnan(prev):
                    t_off = t0 + <double>(g0 + j) / rate
                else:
                    frac = (prev - off_n) / (prev - x)
                    t_off = t0 + (<double>(g0 + j - 1) + frac) / rate
                if t_off - t_strike < min_contact_s:
                    flags = flags | F_SHORT
                if peak < min_peak_n:
                    flags = flags | F_LOW_PEAK
                o_strike[count] = i_strike
                o_off[count] = g0 + j
                o_peak[count] = i_peak
                o_tstrike[count] = t_strike
                o_toff[count] = t_off
                o_peakn[count] = peak
                o_flags[count] = flags
                count += 1
                phase = ARMED
                i_below = g0 + j
                f_below = x
                f_after = NAN
                t_unload = t_off
                i_strike = -1
                t_strike = NAN
                peak = NAN
                i_peak = -1
                flags = 0
                j += 1
            elif phase == ARMED:
                j0 = j
                while j < n:                   # unloaded: only the last one matters
                    if not (fz[j] < off_n):
                        break
                    j += 1
                if j > j0:
                    i_below = g0 + j - 1
                    f_below = fz[j - 1]
                    f_after = NAN
                if j == n:
                    break
                x = fz[j]
                if isnan(x):
                    phase = UNARMED
                    i_below = -1
                    f_below = NAN
                    f_after = NAN
                    t_unload = NAN
                else:                          # x >= off_n
                    if isnan(f_after):
                        f_after = x
                    if x >= strike_n:
                        frac = (off_n - f_below) / (f_after - f_below)
                        t_strike = t0 + (<double>i_below + frac) / rate
                        i_strike = i_below + 1
                        peak = x
                        i_peak = g0 + j
                        flags = 0
                        if t_strike - t_unload < min_flight_s:
                            flags = F_NO_FLIGHT
                        phase = CONTACT
                        i_below = -1
                        f_below = NAN
                        f_after = NAN
                        t_unload = NAN
                j += 1
            else:                              # unarmed: wait for a valid unloaded sample
                while j < n:
                    if fz[j] < off_n:
                        break
                    j += 1
                if j == n:
                    break
                t_unload = t0 + <double>(g0 + j) / rate
                phase = ARMED
                i_below = g0 + j
                f_below = fz[j]
                f_after = NAN
                j += 1
    sf[0] = f_below
    sf[1] = f_after
    sf[2] = t_unload
    sf[3] = fz[j - 1] if j > 0 else f_last0
    sf[4] = t_strike
    sf[5] = peak
    si[0] = g0 + j
    si[1] = phase
    si[2] = i_below
    si[3] = i_strike
    si[4] = i_peak
    si[5] = flags
    return count, j


cdef inline double _interp_at(double xv, double x0, double x1, double y0, double y1,
                              double slope) noexcept nogil:
    """np.interp's value at ``xv`` in ``[x0, x1)`` given its precomputed slope (the same
    operations, including its fallbacks for non-finite values)."""
    cdef double v
    if xv == x0:
        return y0
    v = slope * (xv - x0) + y0
    if isnan(v):
        v = slope * (xv - x1) + y1
        if isnan(v) and y0 == y1:
            v = y0
    return v


cdef void _offset_samples(const double[:, ::1] w, double[:, ::1] corrected,
                          double[:, ::1] offsets, double[::1] sums, bint store, Py_ssize_t a,
                          Py_ssize_t b, Py_ssize_t ch, bint two, bint flat, double x0, double x1,
                          const double[:, ::1] values, Py_ssize_t j) noexcept nogil:
    """Samples ``[a, b)`` of channel ``ch`` (and ``ch + 1`` when ``two``): the offset is
    ``values[j]`` (``flat``) or interpolated between ``(x0, values[j])`` and ``(x1, values[j +
    1])``; it is stored (``store``) or added to ``sums``, and subtracted into ``corrected``."""
    cdef Py_ssize_t i
    cdef double v, xv, acc0 = sums[ch], acc1 = 0.0
    cdef double y0a = values[j, ch], y0b = 0.0, y1a = y0a, y1b = 0.0, sa = 0.0, sb = 0.0
    if two:
        acc1 = sums[ch + 1]
        y0b = values[j, ch + 1]
        y1b = y0b
    if not flat:
        y1a = values[j + 1, ch]
        sa = (y1a - y0a) / (x1 - x0)
        if two:
            y1b = values[j + 1, ch + 1]
            sb = (y1b - y0b) / (x1 - x0)
    for i in range(a, b):
        xv = <double>i
        v = y0a if flat else _interp_at(xv, x0, x1, y0a, y1a, sa)
        if store:
            offsets[i, ch] = v
        else:
            acc0 += v
        corrected[i, ch] = w[i, ch] - v
        if two:
            v = y0b if flat else _interp_at(xv, x0, x1, y0b, y1b, sb)
            if store:
                offsets[i, ch + 1] = v
            else:
                acc1 += v
            corrected[i, ch + 1] = w[i, ch + 1] - v
    sums[ch] = acc0
    if two:
        sums[ch + 1] = acc1


cdef inline Py_ssize_t _first_at_or_after(double x, Py_ssize_t lo, Py_ssize_t n) noexcept nogil:
    """The first sample index ``i`` in ``[lo, n]`` with ``i >= x`` (``n`` when none)."""
    cdef double c = ceil(x)
    if c <= <double>lo:
        return lo
    if c >= <double>n:
        return n
    return <Py_ssize_t>c


def _rezero_flight_cy(const double[:, ::1] w, const long long[::1] lo, const long long[::1] hi,
                      Py_ssize_t min_samples, double[::1] centres, double[:, ::1] values,
                      double[::1] sums, double[:, ::1] corrected, double[:, ::1] offsets):
    """Flight-phase re-zeroing of ``w`` (n, k): returns the number of flights used.

    Flight ``f`` is the window ``[lo[f], hi[f])``; it is used when it holds at least
    ``min_samples`` samples and every channel has at least ``min_samples`` non-NaN ones there
    (``hi - lo >= min_samples`` implies ``0 <= lo < hi <= n``). Its per-channel mean goes to
    ``values``, its centre ``(lo + hi - 1) / 2`` to ``centres``. The offsets are
    ``np.interp(sample index, centres, values[:, ch])`` per channel (same cases and formula,
    constant beyond the first and last centre; zero when no flight is used) and ``corrected
    = w - offsets``. ``corrected`` may be ``w`` itself (each sample is read before it is
    written). ``offsets`` of zero rows: the offsets are not stored; ``sums`` then ends holding
    each channel's sum of offsets over the ``n`` samples. Scratch: ``centres`` (F,), ``values``
    (F, k), ``sums`` (k,) for F = len(lo) flights.

    Channels are processed in pairs, each with its sums in local variables: every sum is still
    accumulated sample by sample in index order (the same bits as one channel at a time), but
    two independent additions overlap instead of waiting on each other.
    """
    cdef Py_ssize_t n = w.shape[0], k = w.shape[1], nf = lo.shape[0]
    cdef Py_ssize_t f, i, ch, s, e, used = 0, j, a, b
    cdef Py_ssize_t c0, c1
    cdef double v, acc0, acc1
    cdef bint store = offsets.shape[0] > 0, two, ok
    with nogil:
        for f in range(nf):
            s = <Py_ssize_t>lo[f]
            e = <Py_ssize_t>hi[f]
            if e - s < min_samples:
                continue
            ok = True
            for ch in range(0, k, 2):       # each channel's mean over the flight
                two = ch + 1 < k
                acc0 = 0.0
                acc1 = 0.0
                c0 = 0
                c1 = 0
                for i in range(s, e):
                    v = w[i, ch]
                    if not isnan(v):
                        acc0 += v
                        c0 += 1
                    if two:
                        v = w[i, ch + 1]
                        if not isnan(v):
                            acc1 += v
                            c1 += 1
                if c0 < min_samples or (two and c1 < min_samples):
                    ok = False
                    break
                values[used, ch] = acc0 / <double>c0
                if two:
                    values[used, ch + 1] = acc1 / <double>c1
            if not ok:
                continue
            centres[used] = 0.5 * <double>(s + e - 1)
            used += 1
        for ch in range(k):
            sums[ch] = 0.0
        if used == 0:
            for i in range(n):
                for ch in range(k):
                    if store:
                        offsets[i, ch] = 0.0
                    corrected[i, ch] = w[i, ch] - 0.0
        else:
            # before the first centre: the first flight's means; centres[j] <= i < centres[j +
            # 1]: interpolated; from the last centre on: the last flight's means. A segment at
            # a time, all its channels (a pair at a time) while its rows are in cache.
            b = 0
            for j in range(-1, used):
                a = b
                b = _first_at_or_after(centres[j + 1], a, n) if j + 1 < used else n
                for ch in range(0, k, 2):
                    _offset_samples(w, corrected, offsets, sums, store, a, b, ch, ch + 1 < k,
                                    j < 0 or j == used - 1,
                                    centres[j] if j >= 0 else 0.0,
                                    centres[j + 1] if j + 1 < used else 0.0,
                                    values, j if j >= 0 else 0)
    return used


def _interp_samples_cy(const double[::1] xp, const double[::1] fp, double[::1] out):
    """``out[i] = np.interp(i, xp, fp)`` for every sample index ``i`` (``xp`` strictly
    increasing, at least one point): a segment at a time, each slope computed once, the
    value np.interp computes (the same operations, the same bits)."""
    cdef Py_ssize_t n = out.shape[0], m = xp.shape[0], i, j, a, b
    cdef double x0, x1, y0, y1, slope
    with nogil:
        b = _first_at_or_after(xp[0], 0, n)
        for i in range(b):
            out[i] = fp[0]
        for j in range(m - 1):
            a = b
            b = _first_at_or_after(xp[j + 1], a, n)
            x0 = xp[j]
            x1 = xp[j + 1]
            y0 = fp[j]
            y1 = fp[j + 1]
            slope = (y1 - y0) / (x1 - x0)
            if a < b and <double>a == x0:
                out[a] = y0
                a += 1
            if isfinite(slope) and isfinite(y0):  # no NaN can arise: no fallback to check
                for i in range(a, b):
                    out[i] = slope * (<double>i - x0) + y0
            else:
                for i in range(a, b):
                    out[i] = _interp_at(<double>i, x0, x1, y0, y1, slope)
        for i in range(b, n):
            out[i] = fp[m - 1]


def _interval_counts_cy(const double[::1] x, const long long[::1] a, const long long[::1] b,
                        double level, long long[::1] at_least, long long[::1] valid):
    """Per interval ``[a[i], b[i])`` of ``x`` (``0 <= a <= b <= len(x)``): the number of
    samples ``>= level`` (``at_least``) and of non-NaN samples (``valid``)."""
    cdef Py_ssize_t c = a.shape[0], i, s
    cdef long long hits, good
    cdef double v
    with nogil:
        for i in range(c):
            hits = 0
            good = 0
            for s in range(<Py_ssize_t>a[i], <Py_ssize_t>b[i]):
                v = x[s]
                hits += v >= level
                good += not isnan(v)
            at_least[i] = hits
            valid[i] = good
