# cython: language_level=3
"""Compiled contact detection: the per-sample hysteresis state machine.

Trusts its inputs (``contacts.detect_contacts`` validates them); the specification is
``_contacts_ref.py``. State lives in two small arrays updated in place:
``sf = [f_below, f_after, t_unload, f_last, t_strike, peak]`` (float64) and
``si = [n, phase, i_below, i_strike, i_peak, flags]`` (int64), see ``ContactState``.
"""
from libc.math cimport isnan, NAN

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
