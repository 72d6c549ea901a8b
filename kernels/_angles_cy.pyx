# cython: language_level=3
"""Compiled per-frame joint-angle geometry; trusts its input (see treadlab.kernels.angles).

Mirrors treadlab.kernels._angles_ref frame by frame: same marker slots (``MARKERS``), model
parameters (``PARAMS``) and output columns (``NAMES``). A segment frame is held as its three unit
axes (X, Y, Z) in the parent frame (the foot's X and Z are left at their length: see the foot
step); a Cardan angle of a distal frame in a proximal one needs only the entries of
``proximal^T distal`` it reads, so only those dot products are formed.
"""
from cython cimport floating
from libc.math cimport sqrt, atan2, asin, fabs, isnan, M_PI, INFINITY, NAN

# marker slots, as _angles_ref.MARKERS
cdef enum:
    LASI, RASI, LPSI, RPSI, SACR
    LTHI, LKNE, LTIB, LANK, LHEE, LTOE
    RTHI, RKNE, RTIB, RANK, RHEE, RTOE
    C7, T10, CLAV, STRN
    N_MARKERS

# output columns, as _angles_ref.NAMES
cdef enum:
    PELVIS_TILT, PELVIS_OBLIQUITY, PELVIS_ROTATION, TRUNK_LEAN
    HIP_FLEXION_L, HIP_FLEXION_R, HIP_ADDUCTION_L, HIP_ADDUCTION_R
    KNEE_FLEXION_L, KNEE_FLEXION_R, ANKLE_DORSI_L, ANKLE_DORSI_R
    SHANK_L, SHANK_R, THIGH_L, THIGH_R, HEEL_LEAD_L, HEEL_LEAD_R
    N_COLUMNS

# angles taken with atan2 / asin, computed after each block of frames (see joint_angles_cy)
cdef enum:
    A_PELVIS_TILT, A_PELVIS_ROTATION, A_TRUNK_LEAN, A_HIP_FLEXION_L, A_HIP_FLEXION_R
    A_KNEE_FLEXION_L, A_KNEE_FLEXION_R, A_ANKLE_DORSI_L, A_ANKLE_DORSI_R
    A_SHANK_L, A_SHANK_R, A_THIGH_L, A_THIGH_R
    N_ATAN
cdef enum:
    S_PELVIS_OBLIQUITY, S_HIP_ADDUCTION_L, S_HIP_ADDUCTION_R
    N_ASIN
cdef enum:
    BLOCK = 16                            # frames per block (its tables stay in L1)

cdef double RAD2DEG = 180.0 / M_PI


cdef inline double _atan_tail(double u, double hi, double lo, double x, double y) noexcept nogil:
    """atan2(y, x) from the reduced argument ``u`` and the offset ``hi + lo`` of its range
    (see :func:`atan2_r`): Cephes ``atan`` u + u^3 P(u^2) / Q(u^2), peak relative error 2.6e-18
    for |u| <= 0.66, then the quadrant."""
    cdef double z = u * u
    cdef double r = (u * z * ((((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z
                               - 7.500855792314704667340e1) * z - 1.228866684490136173410e2) * z
                             - 6.485021904942025371773e1)
                    / (((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z
                         + 4.328810604912902668951e2) * z + 4.853903996359136964868e2) * z
                       + 1.945506571482613964425e2))
    r = hi + (u + (r + lo))
    r = ((3.141592653589793 - r) + 1.2246467991473532e-16) if x < 0.0 else r
    return -r if y < 0.0 else r


cdef inline double atan2_r(double y, double x) noexcept nogil:
    """atan2(y, x) in radians, inlined: Cephes ``atan`` (range reduction to |u| <= 0.66, then
    :func:`_atan_tail`), with pi/4, pi/2 and pi each added as the nearest double plus its
    remainder. At most 1 ulp from libm's atan2 on 2.3 million random and range-boundary
    arguments (libm's is a call per angle, and was half of this kernel's time). Zeros,
    infinities and NaN go to libm, so signed zeros behave as there.
    """
    cdef double ay = fabs(y), ax = fabs(x)
    cdef double u, hi, lo
    if not (ay > 0.0 and ax > 0.0 and ay < INFINITY and ax < INFINITY):
        return atan2(y, x)
    if ay <= 0.66 * ax:                   # atan(ay/ax), ay/ax <= 0.66
        u = ay / ax
        hi = 0.0
        lo = 0.0
    elif ax <= 0.66 * ay:                 # pi/2 - atan(ax/ay)
        u = -ax / ay
        hi = 1.5707963267948966
        lo = 6.123233995736766e-17
    else:                                 # pi/4 + atan((ay-ax)/(ay+ax)), |u| < 0.21
        u = (ay - ax) / (ay + ax)
        hi = 0.7853981633974483
        lo = 3.061616997868383e-17
    return _atan_tail(u, hi, lo, x, y)


cdef inline double atan2_sel(double y, double x) noexcept nogil:
    """:func:`atan2_r` with every choice made between two computed values, so that a loop
    over a table of arguments vectorises (the compiler turns the choices into selects when it
    may compute both: the AVX2 build, with -fno-trapping-math); the same value for finite
    non-zero ``y`` and ``x``, NaN for the others (zeros, infinities, NaN)."""
    cdef double ay = fabs(y), ax = fabs(x)
    cdef double small = 0.66 * ax         # ay <= small: atan(ay/ax)
    cdef double steep = 0.66 * ay         # else ax <= steep: pi/2 - atan(ax/ay)
    cdef double num, den, hi, lo, r       # else pi/4 + atan((ay-ax)/(ay+ax))
    num = -ax if ax <= steep else ay - ax
    num = ay if ay <= small else num
    den = ay if ax <= steep else ay + ax
    den = ax if ay <= small else den
    hi = 1.5707963267948966 if ax <= steep else 0.7853981633974483
    hi = 0.0 if ay <= small else hi
    lo = 6.123233995736766e-17 if ax <= steep else 3.061616997868383e-17
    lo = 0.0 if ay <= small else lo
    r = _atan_tail(num / den, hi, lo, x, y)
    r = r if ay > 0.0 else NAN
    r = r if ax > 0.0 else NAN
    r = r if ay < INFINITY else NAN
    return r if ax < INFINITY else NAN


#: Whether this build evaluates a block's atan2 in one loop over the table (:func:`atan2_sel`,
#: vectorised: the AVX2 build ``_angles_cy_avx2``) or one by one with branches (:func:`atan2_r`:
#: faster than selects without wide vectors).
cdef bint VECTOR_ATAN = __name__.endswith("_avx2")


cdef inline double cardan_b(double r5) noexcept nogil:
    """Second Y-X-Z Cardan angle from R[1, 2] (radians); the first is atan2(R[0, 2], R[2, 2]),
    the third atan2(R[1, 0], R[1, 1])."""
    cdef double s = -r5
    if s > 1.0:
        s = 1.0
    elif s < -1.0:
        s = -1.0
    return asin(s)


cdef inline double rnorm(double x, double y, double z) noexcept nogil:
    """1 / |(x, y, z)|: a unit vector is v times this (one division instead of three; it
    differs from v / |v| by rounding only, and is inf for a zero vector, whose unit is NaN
    as v / |v| is)."""
    return 1.0 / sqrt(x * x + y * y + z * z)


# A block's per-frame vectors are held by component, frames innermost (``v[c][f]``): every
# step of the model below is a loop over the block's frames whose body is plain arithmetic
# on scalars, which the compiler runs several frames wide (four in the AVX2 build). Each
# frame's operations and their order are those of the reference, so the builds agree bit for
# bit. ``BV`` is the type of such a vector.
ctypedef double BV[3][BLOCK]


cdef inline void chord_block(int nb, double radius, const BV joint, const BV top,
                             const BV stick, BV o) noexcept nogil:
    """CGM chord function (pyCGM2 VCMJointCentre, offset angle 0) for the frames of a block.

    With x = top - joint and e = x cross (x cross (stick - joint)), the centre is
    joint + x r^2/|x|^2 + unit(e) r sqrt(1 - r^2/|x|^2) (joint + unit(e) r when |x| <= r); both
    terms are formed from one reciprocal, 1 / (|x|^2 |e|^2), and one square root. Both
    centres are computed and one is chosen, so the loop has no branch.
    """
    cdef int f
    cdef double x0, x1, x2, t0, t1, t2, p0, p1, p2, e0, e1, e2, xx, ee, q, a, m, s, c
    cdef bint far
    for f in range(nb):
        x0 = top[0][f] - joint[0][f]
        x1 = top[1][f] - joint[1][f]
        x2 = top[2][f] - joint[2][f]
        t0 = stick[0][f] - joint[0][f]
        t1 = stick[1][f] - joint[1][f]
        t2 = stick[2][f] - joint[2][f]
        p0 = x1 * t2 - x2 * t1
        p1 = x2 * t0 - x0 * t2
        p2 = x0 * t1 - x1 * t0
        e0 = x1 * p2 - x2 * p1
        e1 = x2 * p0 - x0 * p2
        e2 = x0 * p1 - x1 * p0
        xx = x0 * x0 + x1 * x1 + x2 * x2
        ee = e0 * e0 + e1 * e1 + e2 * e2
        q = 1.0 / (xx * ee)
        a = radius * radius * ee * q                  # r^2 / |x|^2
        m = 1.0 - a
        far = m > 0
        s = m if far else 1.0
        c = radius * sqrt(s * xx * q)                 # r sqrt(m) / |e|, or r / |e|
        o[0][f] = (joint[0][f] + x0 * a + e0 * c) if far else (joint[0][f] + e0 * c)
        o[1][f] = (joint[1][f] + x1 * a + e1 * c) if far else (joint[1][f] + e1 * c)
        o[2][f] = (joint[2][f] + x2 * a + e2 * c) if far else (joint[2][f] + e2 * c)


cdef inline void unit_block(int nb, const BV a, const BV b, BV o) noexcept nogil:
    """o = unit(a - b) for the frames of a block."""
    cdef int f
    cdef double v0, v1, v2, r
    for f in range(nb):
        v0 = a[0][f] - b[0][f]
        v1 = a[1][f] - b[1][f]
        v2 = a[2][f] - b[2][f]
        r = rnorm(v0, v1, v2)
        o[0][f] = v0 * r
        o[1][f] = v1 * r
        o[2][f] = v2 * r


cdef inline void lateral_block(int nb, double sign, const BV marker, const BV centre,
                               const BV z, BV o) noexcept nogil:
    """o = unit(v - (v.z) z) with v = sign (marker - centre): the axis toward the marker
    orthogonal to the unit axis z (a thigh's or shank's lateral axis, the pelvis's forward
    axis), for the frames of a block."""
    cdef int f
    cdef double v0, v1, v2, d, r
    for f in range(nb):
        v0 = sign * (marker[0][f] - centre[0][f])
        v1 = sign * (marker[1][f] - centre[1][f])
        v2 = sign * (marker[2][f] - centre[2][f])
        d = v0 * z[0][f] + v1 * z[1][f] + v2 * z[2][f]
        v0 = v0 - d * z[0][f]
        v1 = v1 - d * z[1][f]
        v2 = v2 - d * z[2][f]
        r = rnorm(v0, v1, v2)
        o[0][f] = v0 * r
        o[1][f] = v1 * r
        o[2][f] = v2 * r


cdef inline void cross_block(int nb, const BV a, const BV b, BV o) noexcept nogil:
    """o = a cross b for the frames of a block."""
    cdef int f
    cdef double x, y, z
    for f in range(nb):
        x = a[1][f] * b[2][f] - a[2][f] * b[1][f]
        y = a[2][f] * b[0][f] - a[0][f] * b[2][f]
        z = a[0][f] * b[1][f] - a[1][f] * b[0][f]
        o[0][f] = x
        o[1][f] = y
        o[2][f] = z


cdef inline void dot_block(int nb, const BV a, const BV b, double* o) noexcept nogil:
    """o[f] = a . b for the frames of a block."""
    cdef int f
    for f in range(nb):
        o[f] = a[0][f] * b[0][f] + a[1][f] * b[1][f] + a[2][f] * b[2][f]


def joint_angles_cy(const floating[:, :, ::1] pos, const long long[::1] index,
                    const double[::1] params, const unsigned char[::1] enabled,
                    double[:, ::1] out):
    """Fill ``out`` (m, N_COLUMNS) float64 for the enabled columns; others are left untouched.

    ``pos`` (m, k, 3) float32 or float64 mm (read as is, the model markers widened to double);
    ``index`` (N_MARKERS,) int64 column of each model marker or -1; ``params`` as
    _angles_ref.PARAMS; ``enabled`` (N_COLUMNS,) uint8.

    Frames go in blocks of BLOCK, held by component with the frames innermost, and each step
    of the model (pelvis, knee centre, thigh, ankle centre, shank, foot) is one loop over the
    block's frames before the next: a loop over independent frames the compiler runs several
    frames wide, and whose square roots and divisions overlap. The steps leave the arguments
    of the atan2 and asin calls in a table that one loop per block then evaluates (the atan2
    in a vectorised loop over the flat table in the AVX2 build: ``VECTOR_ATAN``).
    """
    cdef Py_ssize_t m = pos.shape[0], k = pos.shape[1], i0, ib
    if m == 0 or k == 0:
        return
    cdef const floating* base = &pos[0, 0, 0]
    cdef const floating* src
    cdef long long ix[N_MARKERS]
    cdef int slot[N_MARKERS]
    cdef int n_slots = 0
    cdef unsigned char on[N_COLUMNS]
    cdef double par[10]
    cdef double mk[N_MARKERS][3][BLOCK]   # the block's model markers: slot, axis, frame
    cdef double ya[N_ATAN][BLOCK]         # atan2(ya, xa) of each frame of the block
    cdef double xa[N_ATAN][BLOCK]
    cdef double sa[N_ASIN][BLOCK]         # cardan_b(sa)
    cdef double ra[N_ATAN][BLOCK]         # atan2_sel(ya, xa) (VECTOR_ATAN)
    cdef double* yt
    cdef double* xt
    cdef double* rt
    cdef double angle
    cdef int q
    cdef bint vector_atan = VECTOR_ATAN
    cdef int atan_col[N_ATAN]
    cdef double atan_fac[N_ATAN]
    cdef int asin_col[N_ASIN]
    cdef double asin_fac[N_ASIN]
    cdef int j, c, side, si, f, nb
    cdef double sign, o0, o1, ff
    cdef bint pelvis_ok, thorax_ok, c7_ok, psis, hip_ok, knee_ok, ankle_ok
    cdef BV px, py, pz                    # pelvis axes in the lab
    cdef BV post                          # posterior pelvis point (mid-PSIS or SACR)
    cdef BV origin                        # pelvis origin (mid-ASIS)
    cdef BV centre                        # pelvis centre
    cdef double hjc[2][3][BLOCK]
    cdef BV kjc, ajc                      # this side's joint centres
    cdef BV tx, ty, tz                    # thigh axes
    cdef BV sx, sy, sz                    # shank axes
    cdef BV fx, fz                        # foot X and Z axes, not unit (Y is not needed)
    cdef int heel

    for j in range(N_MARKERS):
        ix[j] = index[j]
        if ix[j] >= 0:
            slot[n_slots] = j
            n_slots += 1
    for j in range(N_COLUMNS):
        on[j] = enabled[j]
    for j in range(10):
        par[j] = params[j]
    psis = ix[LPSI] >= 0 and ix[RPSI] >= 0
    pelvis_ok = ix[LASI] >= 0 and ix[RASI] >= 0 and (psis or ix[SACR] >= 0)
    thorax_ok = ix[C7] >= 0 and ix[T10] >= 0 and ix[CLAV] >= 0 and ix[STRN] >= 0
    c7_ok = ix[C7] >= 0
    # column and factor of each tabled angle (the signs of _angles_ref)
    for side in range(2):
        sign = 1.0 if side == 0 else -1.0
        atan_col[A_HIP_FLEXION_L + side] = HIP_FLEXION_L + side
        atan_fac[A_HIP_FLEXION_L + side] = -RAD2DEG
        atan_col[A_KNEE_FLEXION_L + side] = KNEE_FLEXION_L + side
        atan_fac[A_KNEE_FLEXION_L + side] = RAD2DEG
        atan_col[A_ANKLE_DORSI_L + side] = ANKLE_DORSI_L + side
        atan_fac[A_ANKLE_DORSI_L + side] = -RAD2DEG
        atan_col[A_SHANK_L + side] = SHANK_L + side
        atan_fac[A_SHANK_L + side] = RAD2DEG
        atan_col[A_THIGH_L + side] = THIGH_L + side
        atan_fac[A_THIGH_L + side] = RAD2DEG
        asin_col[S_HIP_ADDUCTION_L + side] = HIP_ADDUCTION_L + side
        asin_fac[S_HIP_ADDUCTION_L + side] = -sign * RAD2DEG
    atan_col[A_PELVIS_TILT] = PELVIS_TILT
    atan_fac[A_PELVIS_TILT] = RAD2DEG
    atan_col[A_PELVIS_ROTATION] = PELVIS_ROTATION
    atan_fac[A_PELVIS_ROTATION] = -RAD2DEG
    atan_col[A_TRUNK_LEAN] = TRUNK_LEAN
    atan_fac[A_TRUNK_LEAN] = RAD2DEG
    asin_col[S_PELVIS_OBLIQUITY] = PELVIS_OBLIQUITY
    asin_fac[S_PELVIS_OBLIQUITY] = RAD2DEG

    with nogil:
        for ib in range((m + BLOCK - 1) // BLOCK):
            i0 = ib * BLOCK
            nb = <int>min(<Py_ssize_t>BLOCK, m - i0)
            for f in range(nb):
                for j in range(n_slots):
                    src = base + ((i0 + f) * k + ix[slot[j]]) * 3
                    mk[slot[j]][0][f] = src[0]
                    mk[slot[j]][1][f] = src[1]
                    mk[slot[j]][2][f] = src[2]
            # an angle a frame does not reach stays NaN (the whole table: the vectorised
            # atan2 loop reads all of it)
            for j in range(N_ATAN):
                for f in range(BLOCK):
                    ya[j][f] = NAN
                    xa[j][f] = NAN
            for j in range(N_ASIN):
                for f in range(BLOCK):
                    sa[j][f] = NAN

            if pelvis_ok:
                unit_block(nb, mk[LASI], mk[RASI], py)
                for c in range(3):
                    if psis:
                        for f in range(nb):
                            post[c][f] = 0.5 * (mk[LPSI][c][f] + mk[RPSI][c][f])
                    else:
                        for f in range(nb):
                            post[c][f] = mk[SACR][c][f]
                    for f in range(nb):
                        origin[c][f] = 0.5 * (mk[LASI][c][f] + mk[RASI][c][f])   # mid-ASIS
                        centre[c][f] = 0.5 * (origin[c][f] + post[c][f])
                lateral_block(nb, 1.0, origin, post, py, px)  # forward, orthogonal to py
                cross_block(nb, px, py, pz)
                for f in range(nb):
                    # the pelvis R (axes as columns) in the lab: R[0,2] = pz[0], R[2,2] = pz[2],
                    # R[1,2] = pz[1], R[1,0] = px[1], R[1,1] = py[1]
                    ya[A_PELVIS_TILT][f] = pz[0][f]
                    xa[A_PELVIS_TILT][f] = pz[2][f]
                    sa[S_PELVIS_OBLIQUITY][f] = pz[1][f]
                    ya[A_PELVIS_ROTATION][f] = px[1][f]
                    xa[A_PELVIS_ROTATION][f] = py[1][f]
                for side in range(2):
                    for c in range(3):
                        for f in range(nb):
                            hjc[side][c][f] = origin[c][f] + (px[c][f] * par[3 * side]
                                                              + py[c][f] * par[3 * side + 1]
                                                              + pz[c][f] * par[3 * side + 2])

            # sagittal angles, atan2(dx, dz) of a segment from the vertical, and heel lead
            if on[TRUNK_LEAN]:
                if thorax_ok:
                    for f in range(nb):
                        ya[A_TRUNK_LEAN][f] = (0.5 * (mk[C7][0][f] + mk[CLAV][0][f])
                                               - 0.5 * (mk[T10][0][f] + mk[STRN][0][f]))
                        xa[A_TRUNK_LEAN][f] = (0.5 * (mk[C7][2][f] + mk[CLAV][2][f])
                                               - 0.5 * (mk[T10][2][f] + mk[STRN][2][f]))
                elif c7_ok and pelvis_ok:
                    for f in range(nb):
                        ya[A_TRUNK_LEAN][f] = mk[C7][0][f] - centre[0][f]
                        xa[A_TRUNK_LEAN][f] = mk[C7][2][f] - centre[2][f]
            for side in range(2):
                si = 6 * side
                if on[SHANK_L + side]:
                    for f in range(nb):
                        ya[A_SHANK_L + side][f] = mk[LANK + si][0][f] - mk[LKNE + si][0][f]
                        xa[A_SHANK_L + side][f] = -(mk[LANK + si][2][f] - mk[LKNE + si][2][f])
                if on[THIGH_L + side]:
                    for f in range(nb):
                        ya[A_THIGH_L + side][f] = mk[LKNE + si][0][f] - mk[LTHI + si][0][f]
                        xa[A_THIGH_L + side][f] = -(mk[LKNE + si][2][f] - mk[LTHI + si][2][f])
                if on[HEEL_LEAD_L + side] and pelvis_ok:
                    for f in range(nb):
                        out[i0 + f, HEEL_LEAD_L + side] = mk[LHEE + si][0][f] - centre[0][f]

            for side in range(2):
                si = 6 * side
                sign = 1.0 if side == 0 else -1.0
                hip_ok = (pelvis_ok and ix[LTHI + si] >= 0 and ix[LKNE + si] >= 0
                          and (on[HIP_FLEXION_L + side] or on[HIP_ADDUCTION_L + side]
                               or on[KNEE_FLEXION_L + side] or on[ANKLE_DORSI_L + side]))
                if not hip_ok:
                    continue
                chord_block(nb, par[6 + side], mk[LKNE + si], hjc[side], mk[LTHI + si], kjc)
                unit_block(nb, hjc[side], kjc, tz)
                lateral_block(nb, sign, mk[LKNE + si], kjc, tz, ty)
                cross_block(nb, ty, tz, tx)
                # thigh in pelvis, R = P^T T: R[0,2] = px.tz, R[2,2] = pz.tz, R[1,2] = py.tz
                dot_block(nb, px, tz, ya[A_HIP_FLEXION_L + side])
                dot_block(nb, pz, tz, xa[A_HIP_FLEXION_L + side])
                dot_block(nb, py, tz, sa[S_HIP_ADDUCTION_L + side])
                knee_ok = ix[LTIB + si] >= 0 and ix[LANK + si] >= 0
                if not knee_ok:
                    continue
                chord_block(nb, par[8 + side], mk[LANK + si], kjc, mk[LTIB + si], ajc)
                unit_block(nb, kjc, ajc, sz)
                lateral_block(nb, sign, mk[LANK + si], ajc, sz, sy)
                dot_block(nb, tx, sz, ya[A_KNEE_FLEXION_L + side])        # shank in thigh
                dot_block(nb, tz, sz, xa[A_KNEE_FLEXION_L + side])
                ankle_ok = ix[LTOE + si] >= 0 and on[ANKLE_DORSI_L + side]
                if not ankle_ok:
                    continue
                cross_block(nb, sy, sz, sx)
                # foot in shank: the foot's X and Z axes are left at their length, which
                # scales both atan2 arguments alike; a zero length is NaN, as unit() gives
                heel = LHEE + si if ix[LHEE + si] >= 0 else -1
                for c in range(3):
                    if heel >= 0:
                        for f in range(nb):
                            fx[c][f] = mk[LTOE + si][c][f] - mk[heel][c][f]
                    else:
                        for f in range(nb):
                            fx[c][f] = mk[LTOE + si][c][f] - ajc[c][f]
                cross_block(nb, fx, sy, fz)             # sy: the shank's Y axis
                for f in range(nb):
                    ff = fz[0][f] * fz[0][f] + fz[1][f] * fz[1][f] + fz[2][f] * fz[2][f]
                    o0 = sx[0][f] * fz[0][f] + sx[1][f] * fz[1][f] + sx[2][f] * fz[2][f]
                    o1 = sz[0][f] * fz[0][f] + sz[1][f] * fz[1][f] + sz[2][f] * fz[2][f]
                    ya[A_ANKLE_DORSI_L + side][f] = o0 if ff > 0 else NAN
                    xa[A_ANKLE_DORSI_L + side][f] = o1 if ff > 0 else NAN

            if vector_atan:  # the block's tables as flat runs: a loop that vectorises
                yt = &ya[0][0]
                xt = &xa[0][0]
                rt = &ra[0][0]
                for q in range(<int>N_ATAN * BLOCK):
                    rt[q] = atan2_sel(yt[q], xt[q])
            for f in range(nb):
                for j in range(N_ATAN):
                    if on[atan_col[j]]:
                        if not vector_atan:
                            angle = atan2_r(ya[j][f], xa[j][f])
                        else:  # NaN: zeros, infinities or NaN, as libm gives them
                            angle = ra[j][f]
                            if isnan(angle):
                                angle = atan2(ya[j][f], xa[j][f])
                        out[i0 + f, atan_col[j]] = atan_fac[j] * angle
                for j in range(N_ASIN):
                    if on[asin_col[j]]:
                        out[i0 + f, asin_col[j]] = asin_fac[j] * cardan_b(sa[j][f])
