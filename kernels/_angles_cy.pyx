# cython: language_level=3
"""Compiled per-frame joint-angle geometry; trusts its input (see treadlab.kernels.angles).

Mirrors treadlab.kernels._angles_ref frame by frame: same marker slots (``MARKERS``), model
parameters (``PARAMS``) and output columns (``NAMES``). Matrices are 3x3 row-major double[9]
whose columns are the segment axes expressed in the parent frame.
"""
from libc.math cimport sqrt, atan2, asin, NAN, M_PI

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

cdef double RAD2DEG = 180.0 / M_PI


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
    cdef double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    v[0] = v[0] / n
    v[1] = v[1] / n
    v[2] = v[2] / n


cdef inline void orthonormal_part(const double* v, const double* z, double* o) noexcept nogil:
    """unit(v - (v.z) z)"""
    cdef double d = vdot(v, z)
    o[0] = v[0] - d * z[0]
    o[1] = v[1] - d * z[1]
    o[2] = v[2] - d * z[2]
    vnorm(o)


cdef inline void set_frame(double* r, const double* x, const double* y,
                           const double* z) noexcept nogil:
    cdef int i
    for i in range(3):
        r[3 * i] = x[i]
        r[3 * i + 1] = y[i]
        r[3 * i + 2] = z[i]


cdef inline void relative(const double* p, const double* d, double* o) noexcept nogil:
    """o = p^T d"""
    cdef int i, k
    for i in range(3):
        for k in range(3):
            o[3 * i + k] = p[i] * d[k] + p[3 + i] * d[3 + k] + p[6 + i] * d[6 + k]


cdef inline double cardan_a(const double* r) noexcept nogil:
    return atan2(r[2], r[8])


cdef inline double cardan_b(const double* r) noexcept nogil:
    cdef double s = -r[5]
    if s > 1.0:
        s = 1.0
    elif s < -1.0:
        s = -1.0
    return asin(s)


cdef inline double cardan_c(const double* r) noexcept nogil:
    return atan2(r[3], r[4])


cdef inline void chord(double radius, const double* joint, const double* top,
                       const double* stick, double* o) noexcept nogil:
    """CGM chord function (pyCGM2 VCMJointCentre, offset angle 0)."""
    cdef double x[3]
    cdef double t[3]
    cdef double p[3]
    cdef double e[3]
    cdef double x2, l, m, s
    cdef int i
    vsub(top, joint, x)
    vsub(stick, joint, t)
    vcross(x, t, p)
    vcross(x, p, e)
    vnorm(e)
    x2 = vdot(x, x)
    l = radius / x2
    m = 1.0 - radius * l
    if m > 0:
        s = sqrt(m) * radius
        for i in range(3):
            o[i] = joint[i] + x[i] * (l * radius) + e[i] * s
    else:
        for i in range(3):
            o[i] = joint[i] + e[i] * radius


cdef inline double sagittal(double dx, double dz) noexcept nogil:
    return atan2(dx, dz) * RAD2DEG


def joint_angles_cy(double[:, :, ::1] pos, const long long[::1] index, const double[::1] params,
                    const unsigned char[::1] enabled, double[:, ::1] out):
    """Fill ``out`` (m, N_COLUMNS) float64 for the enabled columns; others are left untouched.

    ``pos`` (m, k, 3) float64 mm; ``index`` (N_MARKERS,) int64 column of each model marker or -1;
    ``params`` as _angles_ref.PARAMS; ``enabled`` (N_COLUMNS,) uint8.
    """
    cdef Py_ssize_t m = pos.shape[0], k = pos.shape[1], i
    if m == 0 or k == 0:
        return
    cdef const double* base = &pos[0, 0, 0]
    cdef const double* fr
    cdef long long ix[N_MARKERS]
    cdef unsigned char on[N_COLUMNS]
    cdef double par[10]
    cdef int j, side, si
    cdef double sign
    cdef bint pelvis_ok, thorax_ok, c7_ok
    cdef double post[3]
    cdef double origin[3]
    cdef double centre[3]
    cdef double x[3]
    cdef double y[3]
    cdef double z[3]
    cdef double v[3]
    cdef double top[3]
    cdef double bottom[3]
    cdef double hjc[2][3]
    cdef double kjc[3]
    cdef double ajc[3]
    cdef double rp[9]
    cdef double rt[9]
    cdef double rs[9]
    cdef double rf[9]
    cdef double rel[9]
    cdef const double* thi
    cdef const double* kne
    cdef const double* tib
    cdef const double* ank
    cdef const double* hee
    cdef const double* toe
    cdef const double* heel_or_ajc
    cdef int s_thi, s_kne, s_tib, s_ank, s_hee, s_toe

    for j in range(N_MARKERS):
        ix[j] = index[j]
    for j in range(N_COLUMNS):
        on[j] = enabled[j]
    for j in range(10):
        par[j] = params[j]
    pelvis_ok = ix[LASI] >= 0 and ix[RASI] >= 0 and ((ix[LPSI] >= 0 and ix[RPSI] >= 0)
                                                     or ix[SACR] >= 0)
    thorax_ok = ix[C7] >= 0 and ix[T10] >= 0 and ix[CLAV] >= 0 and ix[STRN] >= 0
    c7_ok = ix[C7] >= 0

    with nogil:
        for i in range(m):
            fr = base + i * k * 3
            if pelvis_ok:
                if ix[LPSI] >= 0:
                    vmid(fr + 3 * ix[LPSI], fr + 3 * ix[RPSI], post)
                else:
                    post[0] = fr[3 * ix[SACR]]
                    post[1] = fr[3 * ix[SACR] + 1]
                    post[2] = fr[3 * ix[SACR] + 2]
                vmid(fr + 3 * ix[LASI], fr + 3 * ix[RASI], origin)
                vsub(fr + 3 * ix[LASI], fr + 3 * ix[RASI], y)
                vnorm(y)
                vsub(origin, post, v)
                orthonormal_part(v, y, x)
                vcross(x, y, z)
                set_frame(rp, x, y, z)
                vmid(origin, post, centre)
                if on[PELVIS_TILT]:
                    out[i, PELVIS_TILT] = cardan_a(rp) * RAD2DEG
                if on[PELVIS_OBLIQUITY]:
                    out[i, PELVIS_OBLIQUITY] = cardan_b(rp) * RAD2DEG
                if on[PELVIS_ROTATION]:
                    out[i, PELVIS_ROTATION] = -cardan_c(rp) * RAD2DEG
                for side in range(2):
                    for j in range(3):
                        hjc[side][j] = origin[j] + (rp[3 * j] * par[3 * side]
                                                    + rp[3 * j + 1] * par[3 * side + 1]
                                                    + rp[3 * j + 2] * par[3 * side + 2])

            if on[TRUNK_LEAN]:
                if thorax_ok:
                    vmid(fr + 3 * ix[C7], fr + 3 * ix[CLAV], top)
                    vmid(fr + 3 * ix[T10], fr + 3 * ix[STRN], bottom)
                    out[i, TRUNK_LEAN] = sagittal(top[0] - bottom[0], top[2] - bottom[2])
                elif c7_ok and pelvis_ok:
                    out[i, TRUNK_LEAN] = sagittal(fr[3 * ix[C7]] - centre[0],
                                                  fr[3 * ix[C7] + 2] - centre[2])

            for side in range(2):
                si = 6 * side
                sign = 1.0 if side == 0 else -1.0
                s_thi = ix[LTHI + si]
                s_kne = ix[LKNE + si]
                s_tib = ix[LTIB + si]
                s_ank = ix[LANK + si]
                s_hee = ix[LHEE + si]
                s_toe = ix[LTOE + si]
                if on[SHANK_L + side]:
                    kne = fr + 3 * s_kne
                    ank = fr + 3 * s_ank
                    out[i, SHANK_L + side] = sagittal(ank[0] - kne[0], -(ank[2] - kne[2]))
                if on[THIGH_L + side]:
                    thi = fr + 3 * s_thi
                    kne = fr + 3 * s_kne
                    out[i, THIGH_L + side] = sagittal(kne[0] - thi[0], -(kne[2] - thi[2]))
                if on[HEEL_LEAD_L + side]:
                    out[i, HEEL_LEAD_L + side] = fr[3 * s_hee] - centre[0]
                if not (pelvis_ok and s_thi >= 0 and s_kne >= 0):
                    continue
                if not (on[HIP_FLEXION_L + side] or on[HIP_ADDUCTION_L + side]
                        or on[KNEE_FLEXION_L + side] or on[ANKLE_DORSI_L + side]):
                    continue
                thi = fr + 3 * s_thi
                kne = fr + 3 * s_kne
                chord(par[6 + side], kne, hjc[side], thi, kjc)
                vsub(hjc[side], kjc, z)
                vnorm(z)
                vsub(kne, kjc, v)
                for j in range(3):
                    v[j] = sign * v[j]
                orthonormal_part(v, z, y)
                vcross(y, z, x)
                set_frame(rt, x, y, z)
                relative(rp, rt, rel)
                if on[HIP_FLEXION_L + side]:
                    out[i, HIP_FLEXION_L + side] = -cardan_a(rel) * RAD2DEG
                if on[HIP_ADDUCTION_L + side]:
                    out[i, HIP_ADDUCTION_L + side] = -sign * cardan_b(rel) * RAD2DEG
                if s_tib < 0 or s_ank < 0:
                    continue
                tib = fr + 3 * s_tib
                ank = fr + 3 * s_ank
                chord(par[8 + side], ank, kjc, tib, ajc)
                vsub(kjc, ajc, z)
                vnorm(z)
                vsub(ank, ajc, v)
                for j in range(3):
                    v[j] = sign * v[j]
                orthonormal_part(v, z, y)
                vcross(y, z, x)
                set_frame(rs, x, y, z)
                if on[KNEE_FLEXION_L + side]:
                    relative(rt, rs, rel)
                    out[i, KNEE_FLEXION_L + side] = cardan_a(rel) * RAD2DEG
                if s_toe < 0 or not on[ANKLE_DORSI_L + side]:
                    continue
                toe = fr + 3 * s_toe
                heel_or_ajc = (fr + 3 * s_hee) if s_hee >= 0 else ajc
                vsub(toe, heel_or_ajc, x)
                vnorm(x)
                vcross(x, y, z)           # y is still the shank's Y axis
                vnorm(z)
                vcross(z, x, v)
                set_frame(rf, x, v, z)
                relative(rs, rf, rel)
                out[i, ANKLE_DORSI_L + side] = -cardan_a(rel) * RAD2DEG
