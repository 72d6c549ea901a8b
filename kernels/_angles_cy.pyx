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


cdef inline void vsub(const double* a, const double* b, double* o) noexcept nogil:
    o[0] = a[0] - b[0]
    o[1] = a[1] - b[1]
    o[2] = a[2] - b[2]


cdef inline void vmid(const double* a, const double* b, double* o) noexcept nogil:
    o[0] = 0.5 * (a[0] + b[0])
    o[1] = 0.5 * (a[1] + b[1])
    o[2] = 0.5 * (a[2] + b[2])


cdef inline double vdot(const double* a, const double* b) noexcept nogil:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


cdef inline void vcross(const double* a, const double* b, double* o) noexcept nogil:
    cdef double x = a[1] * b[2] - a[2] * b[1]
    cdef double y = a[2] * b[0] - a[0] * b[2]
    cdef double z = a[0] * b[1] - a[1] * b[0]
    o[0] = x
    o[1] = y
    o[2] = z


cdef inline void vnorm(double* v) noexcept nogil:
    """v / |v|, as v times 1 / |v| (one division instead of three; it differs from v / |v| by
    rounding only, and is NaN for a zero vector as that is)."""
    cdef double r = 1.0 / sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    v[0] = v[0] * r
    v[1] = v[1] * r
    v[2] = v[2] * r


cdef inline void orthonormal_part(const double* v, const double* z, double* o) noexcept nogil:
    """unit(v - (v.z) z)"""
    cdef double d = vdot(v, z)
    o[0] = v[0] - d * z[0]
    o[1] = v[1] - d * z[1]
    o[2] = v[2] - d * z[2]
    vnorm(o)


cdef inline double cardan_b(double r5) noexcept nogil:
    """Second Y-X-Z Cardan angle from R[1, 2] (radians); the first is atan2(R[0, 2], R[2, 2]),
    the third atan2(R[1, 0], R[1, 1])."""
    cdef double s = -r5
    if s > 1.0:
        s = 1.0
    elif s < -1.0:
        s = -1.0
    return asin(s)


cdef inline void chord(double radius, const double* joint, const double* top,
                       const double* stick, double* o) noexcept nogil:
    """CGM chord function (pyCGM2 VCMJointCentre, offset angle 0).

    With x = top - joint and e = x cross (x cross (stick - joint)), the centre is
    joint + x r^2/|x|^2 + unit(e) r sqrt(1 - r^2/|x|^2) (joint + unit(e) r when |x| <= r); both
    terms are formed from one reciprocal, 1 / (|x|^2 |e|^2), and one square root.
    """
    cdef double x[3]
    cdef double t[3]
    cdef double p[3]
    cdef double e[3]
    cdef double x2, ee, q, a, m, c
    cdef int i
    vsub(top, joint, x)
    vsub(stick, joint, t)
    vcross(x, t, p)
    vcross(x, p, e)
    x2 = vdot(x, x)
    ee = vdot(e, e)
    q = 1.0 / (x2 * ee)
    a = radius * radius * ee * q                  # r^2 / |x|^2
    m = 1.0 - a
    if m > 0:
        c = radius * sqrt(m * x2 * q)             # r sqrt(m) / |e|
        for i in range(3):
            o[i] = joint[i] + x[i] * a + e[i] * c
    else:
        c = radius * sqrt(x2 * q)                 # r / |e|
        for i in range(3):
            o[i] = joint[i] + e[i] * c


def joint_angles_cy(const floating[:, :, ::1] pos, const long long[::1] index,
                    const double[::1] params, const unsigned char[::1] enabled,
                    double[:, ::1] out):
    """Fill ``out`` (m, N_COLUMNS) float64 for the enabled columns; others are left untouched.

    ``pos`` (m, k, 3) float32 or float64 mm (read as is, the model markers widened to double);
    ``index`` (N_MARKERS,) int64 column of each model marker or -1; ``params`` as
    _angles_ref.PARAMS; ``enabled`` (N_COLUMNS,) uint8.

    Frames go in blocks of BLOCK, and each step of the model (pelvis, knee centre, thigh, ankle
    centre, shank, foot) runs over the whole block before the next: one frame's steps form a
    chain of square roots and divisions, and a loop over independent frames lets the processor
    overlap them. The steps leave the arguments of the atan2 and asin calls in a table that one
    loop per block then evaluates (the atan2 in a vectorised loop over the flat table in the
    AVX2 build: ``VECTOR_ATAN``).
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
    cdef double mk[BLOCK][N_MARKERS][3]   # the block's model markers, by frame and slot
    cdef double ya[BLOCK][N_ATAN]         # atan2(ya, xa) of each frame of the block
    cdef double xa[BLOCK][N_ATAN]
    cdef double sa[BLOCK][N_ASIN]         # cardan_b(sa)
    cdef double ra[BLOCK][N_ATAN]         # atan2_sel(ya, xa) (VECTOR_ATAN)
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
    cdef int j, side, si, f, nb
    cdef double sign
    cdef bint pelvis_ok, thorax_ok, c7_ok, psis, hip_ok, knee_ok, ankle_ok
    cdef double post[3]
    cdef double origin[3]
    cdef double v[3]
    cdef double top[3]
    cdef double bottom[3]
    cdef double ty[3]
    cdef double fx[3]                     # foot X and Z axes, not unit (Y is not needed)
    cdef double fz[3]
    cdef double px[BLOCK][3]              # pelvis axes in the lab, per frame of the block
    cdef double py[BLOCK][3]
    cdef double pz[BLOCK][3]
    cdef double centre[BLOCK][3]          # pelvis centre
    cdef double hjc[BLOCK][2][3]
    cdef double kjc[BLOCK][3]             # this side's joint centres and axes
    cdef double ajc[BLOCK][3]
    cdef double tx[BLOCK][3]              # thigh X and Z
    cdef double tz[BLOCK][3]
    cdef double sx[BLOCK][3]              # shank axes
    cdef double sy[BLOCK][3]
    cdef double sz[BLOCK][3]
    cdef const double* heel_or_ajc

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
                    mk[f][slot[j]][0] = src[0]
                    mk[f][slot[j]][1] = src[1]
                    mk[f][slot[j]][2] = src[2]
                # an angle a frame does not reach stays NaN
                for j in range(N_ATAN):
                    ya[f][j] = NAN
                    xa[f][j] = NAN
                for j in range(N_ASIN):
                    sa[f][j] = NAN

            if pelvis_ok:
                for f in range(nb):
                    vsub(mk[f][LASI], mk[f][RASI], py[f])
                    vnorm(py[f])
                for f in range(nb):
                    if psis:
                        vmid(mk[f][LPSI], mk[f][RPSI], post)
                    else:
                        post[0] = mk[f][SACR][0]
                        post[1] = mk[f][SACR][1]
                        post[2] = mk[f][SACR][2]
                    vmid(mk[f][LASI], mk[f][RASI], origin)
                    vsub(origin, post, v)
                    orthonormal_part(v, py[f], px[f])
                    vcross(px[f], py[f], pz[f])
                    vmid(origin, post, centre[f])
                    # the pelvis R (axes as columns) in the lab: R[0,2] = pz[0], R[2,2] = pz[2],
                    # R[1,2] = pz[1], R[1,0] = px[1], R[1,1] = py[1]
                    ya[f][A_PELVIS_TILT] = pz[f][0]
                    xa[f][A_PELVIS_TILT] = pz[f][2]
                    sa[f][S_PELVIS_OBLIQUITY] = pz[f][1]
                    ya[f][A_PELVIS_ROTATION] = px[f][1]
                    xa[f][A_PELVIS_ROTATION] = py[f][1]
                    for side in range(2):
                        for j in range(3):
                            hjc[f][side][j] = origin[j] + (px[f][j] * par[3 * side]
                                                           + py[f][j] * par[3 * side + 1]
                                                           + pz[f][j] * par[3 * side + 2])

            # sagittal angles, atan2(dx, dz) of a segment from the vertical, and heel lead
            for f in range(nb):
                if on[TRUNK_LEAN]:
                    if thorax_ok:
                        vmid(mk[f][C7], mk[f][CLAV], top)
                        vmid(mk[f][T10], mk[f][STRN], bottom)
                        ya[f][A_TRUNK_LEAN] = top[0] - bottom[0]
                        xa[f][A_TRUNK_LEAN] = top[2] - bottom[2]
                    elif c7_ok and pelvis_ok:
                        ya[f][A_TRUNK_LEAN] = mk[f][C7][0] - centre[f][0]
                        xa[f][A_TRUNK_LEAN] = mk[f][C7][2] - centre[f][2]
                for side in range(2):
                    si = 6 * side
                    if on[SHANK_L + side]:
                        ya[f][A_SHANK_L + side] = mk[f][LANK + si][0] - mk[f][LKNE + si][0]
                        xa[f][A_SHANK_L + side] = -(mk[f][LANK + si][2] - mk[f][LKNE + si][2])
                    if on[THIGH_L + side]:
                        ya[f][A_THIGH_L + side] = mk[f][LKNE + si][0] - mk[f][LTHI + si][0]
                        xa[f][A_THIGH_L + side] = -(mk[f][LKNE + si][2] - mk[f][LTHI + si][2])
                    if on[HEEL_LEAD_L + side] and pelvis_ok:
                        out[i0 + f, HEEL_LEAD_L + side] = mk[f][LHEE + si][0] - centre[f][0]

            for side in range(2):
                si = 6 * side
                sign = 1.0 if side == 0 else -1.0
                hip_ok = (pelvis_ok and ix[LTHI + si] >= 0 and ix[LKNE + si] >= 0
                          and (on[HIP_FLEXION_L + side] or on[HIP_ADDUCTION_L + side]
                               or on[KNEE_FLEXION_L + side] or on[ANKLE_DORSI_L + side]))
                if not hip_ok:
                    continue
                for f in range(nb):
                    chord(par[6 + side], mk[f][LKNE + si], hjc[f][side], mk[f][LTHI + si],
                          kjc[f])
                for f in range(nb):
                    vsub(hjc[f][side], kjc[f], tz[f])
                    vnorm(tz[f])
                for f in range(nb):
                    vsub(mk[f][LKNE + si], kjc[f], v)
                    for j in range(3):
                        v[j] = sign * v[j]
                    orthonormal_part(v, tz[f], ty)
                    vcross(ty, tz[f], tx[f])
                    # thigh in pelvis, R = P^T T: R[0,2] = px.tz, R[2,2] = pz.tz, R[1,2] = py.tz
                    ya[f][A_HIP_FLEXION_L + side] = vdot(px[f], tz[f])
                    xa[f][A_HIP_FLEXION_L + side] = vdot(pz[f], tz[f])
                    sa[f][S_HIP_ADDUCTION_L + side] = vdot(py[f], tz[f])
                knee_ok = ix[LTIB + si] >= 0 and ix[LANK + si] >= 0
                if not knee_ok:
                    continue
                for f in range(nb):
                    chord(par[8 + side], mk[f][LANK + si], kjc[f], mk[f][LTIB + si], ajc[f])
                ankle_ok = ix[LTOE + si] >= 0 and on[ANKLE_DORSI_L + side]
                for f in range(nb):
                    vsub(kjc[f], ajc[f], sz[f])
                    vnorm(sz[f])
                for f in range(nb):
                    vsub(mk[f][LANK + si], ajc[f], v)
                    for j in range(3):
                        v[j] = sign * v[j]
                    orthonormal_part(v, sz[f], sy[f])
                    ya[f][A_KNEE_FLEXION_L + side] = vdot(tx[f], sz[f])    # shank in thigh
                    xa[f][A_KNEE_FLEXION_L + side] = vdot(tz[f], sz[f])
                if not ankle_ok:
                    continue
                for f in range(nb):
                    vcross(sy[f], sz[f], sx[f])
                    heel_or_ajc = ajc[f]
                    if ix[LHEE + si] >= 0:
                        heel_or_ajc = mk[f][LHEE + si]
                    # foot in shank: the foot's X and Z axes are left at their length, which
                    # scales both atan2 arguments alike; a zero length is NaN, as unit() gives
                    vsub(mk[f][LTOE + si], heel_or_ajc, fx)
                    vcross(fx, sy[f], fz)             # sy: the shank's Y axis
                    if vdot(fz, fz) > 0:
                        ya[f][A_ANKLE_DORSI_L + side] = vdot(sx[f], fz)
                        xa[f][A_ANKLE_DORSI_L + side] = vdot(sz[f], fz)

            if vector_atan:  # the block's tables as flat runs: a loop that vectorises
                yt = &ya[0][0]
                xt = &xa[0][0]
                rt = &ra[0][0]
                for q in range(nb * <int>N_ATAN):
                    rt[q] = atan2_sel(yt[q], xt[q])
            for f in range(nb):
                for j in range(N_ATAN):
                    if on[atan_col[j]]:
                        if not vector_atan:
                            angle = atan2_r(ya[f][j], xa[f][j])
                        else:  # NaN: zeros, infinities or NaN, as libm gives them
                            angle = ra[f][j]
                            if isnan(angle):
                                angle = atan2(ya[f][j], xa[f][j])
                        out[i0 + f, atan_col[j]] = atan_fac[j] * angle
                for j in range(N_ASIN):
                    if on[asin_col[j]]:
                        out[i0 + f, asin_col[j]] = asin_fac[j] * cardan_b(sa[f][j])
