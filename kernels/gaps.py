"""Marker gap filling: cubic Hermite interpolation across short occlusions.

:func:`fill_gaps` is the public, validated function and calls the compiled kernel
:mod:`treadlab.kernels._gaps_cy`; :func:`_fill_gaps_ref` is the NumPy reference with the same
signature, written for clarity (the specification the tests hold the kernel to).

The rule, per marker: a frame is *seen* when its three coordinates are finite. A run of unseen
frames with a seen frame on both sides and at most ``max_gap_frames`` frames long is filled by a
cubic Hermite spline between the two bounding frames ``a`` and ``b``. Its end tangents are the
one-frame finite differences just outside the gap (``p[a] - p[a-1]`` and ``p[b+1] - p[b]``) when
those frames are seen, else the chord slope ``(p[b] - p[a]) / (b - a)`` — so a gap bounded by
single seen frames is filled linearly. Longer gaps and unseen runs at either end of the recording
stay NaN (all three coordinates).
"""
from __future__ import annotations

import numpy as np

from treadlab.kernels._compiled import compiled

__all__ = ["fill_gaps"]



def _check(positions, max_gap_frames):
    pos = np.asarray(positions)
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"positions must have shape (m, k, 3), got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.floating):
        raise TypeError(f"positions must be floating point (mm), got {pos.dtype}")
    if isinstance(max_gap_frames, bool) or int(max_gap_frames) != max_gap_frames \
            or max_gap_frames < 0:
        raise ValueError(f"max_gap_frames must be a non-negative integer, got {max_gap_frames!r}")
    out_dtype = pos.dtype if pos.dtype in (np.float32, np.float64) else np.float64
    return pos, int(max_gap_frames), out_dtype


def fill_gaps(positions, max_gap_frames):
    """Fill short marker gaps by cubic Hermite interpolation.

    Parameters
    ----------
    positions : ndarray, shape (m, k, 3), float32 (or float64)
        Marker positions in mm, lab frame, NaN where a marker is occluded. Not modified.
    max_gap_frames : int
        Longest run of missing frames that is filled (>= 0; 0 fills nothing).

    Returns
    -------
    filled : ndarray, shape (m, k, 3), same float dtype as ``positions``
        Positions with gaps of up to ``max_gap_frames`` frames filled; longer gaps and the
        unseen frames before a marker's first / after its last seen frame are NaN in all three
        coordinates.
    longest_filled_frames : int
        Length in frames of the longest gap filled (0 when none).
    """
    pos, max_gap, out_dtype = _check(positions, max_gap_frames)
    cy = compiled("_gaps_cy")
    work = np.array(pos, dtype=np.float64, order="C", copy=True)
    longest = cy.fill_gaps_cy(work, max_gap)
    return work.astype(out_dtype, copy=False), int(longest)


def _fill_gaps_ref(positions, max_gap_frames):
    """NumPy reference for :func:`fill_gaps` (same signature and result)."""
    pos, max_gap, out_dtype = _check(positions, max_gap_frames)
    out = np.array(pos, dtype=np.float64, copy=True)
    m = out.shape[0]
    longest = 0
    for j in range(out.shape[1]):
        p = out[:, j, :]
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
    return out.astype(out_dtype, copy=False), longest
