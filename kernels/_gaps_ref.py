"""NumPy reference for :func:`treadlab.kernels.gaps.fill_gaps` (the specification).

Written for clarity, one gap at a time; :mod:`treadlab.kernels._gaps_cy` must give the same
result (to float32 rounding). The rule, per marker: a frame is *seen* when its three coordinates
are finite. A run of unseen frames with a seen frame on both sides and at most
``max_gap_frames`` frames long is filled by a cubic Hermite spline between the bounding frames
``a`` and ``b``, with end tangents ``p[a] - p[a-1]`` and ``p[b+1] - p[b]`` when those frames are
seen, else the chord slope ``(p[b] - p[a]) / (b - a)``. Longer gaps and unseen runs at either end
stay NaN (all three coordinates). Imports nothing from the production code.
"""
from __future__ import annotations

import numpy as np

__all__ = ["fill_gaps"]


def fill_gaps(positions, max_gap_frames, *, out=None):
    """Reference of :func:`treadlab.kernels.gaps.fill_gaps` (same signature, errors and result).

    positions : (m, k, 3) float array, mm. max_gap_frames : int >= 0. out : array to write the
    result into (may be ``positions``).
    Returns (filled (m, k, 3) in the input's float dtype, longest gap filled in frames).
    """
    pos = np.asarray(positions)
    if not (pos.ndim == 3 and pos.shape[-1] == 3):
        raise ValueError(f"positions must have shape (m, k, 3), got {pos.shape}")
    if pos.dtype.kind != "f":
        raise TypeError(f"positions must be floating point (mm), got {pos.dtype}")
    ok = not isinstance(max_gap_frames, bool) and float(max_gap_frames).is_integer() \
        and max_gap_frames >= 0
    if not ok:
        raise ValueError(f"max_gap_frames must be a non-negative integer, got {max_gap_frames!r}")
    max_gap = int(max_gap_frames)
    dtype = pos.dtype if pos.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    work = np.array(pos, dtype=np.float64, copy=True)
    m = work.shape[0]
    longest = 0
    for j in range(work.shape[1]):
        p = work[:, j, :]
        seen = np.isfinite(p).all(axis=1)
        p[~seen] = np.nan
        idx = np.flatnonzero(seen)
        for a, b in zip(idx[:-1], idx[1:]):
            n = b - a - 1
            if n < 1 or n > max_gap:
                continue
            h = float(b - a)
            chord = (p[b] - p[a]) / h
            ma = p[a] - p[a - 1] if a >= 1 and seen[a - 1] else chord
            mb = p[b + 1] - p[b] if b + 1 < m and seen[b + 1] else chord
            s = (np.arange(a + 1, b) - a)[:, None] / h
            s2, s3 = s * s, s * s * s
            p[a + 1:b] = ((2 * s3 - 3 * s2 + 1) * p[a] + (s3 - 2 * s2 + s) * h * ma
                          + (-2 * s3 + 3 * s2) * p[b] + (s3 - s2) * h * mb)
            longest = max(longest, int(n))
    if out is None:
        return work.astype(dtype, copy=False), longest
    if out.shape != pos.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous with shape {pos.shape} and dtype {dtype}")
    out[...] = work
    return out, longest
