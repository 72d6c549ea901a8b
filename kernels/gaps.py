"""Marker gap filling: cubic Hermite interpolation across short occlusions.

:func:`fill_gaps` is the public, validated function and calls the compiled kernel
:mod:`treadlab.kernels._gaps_cy`; :func:`treadlab.kernels._gaps_ref.fill_gaps` is the NumPy
reference with the same signature, written for clarity (the specification the tests hold the
kernel to).

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


def fill_gaps(positions, max_gap_frames, *, out=None):
    """Fill short marker gaps by cubic Hermite interpolation.

    Parameters
    ----------
    positions : ndarray, shape (m, k, 3), float32 (or float64)
        Marker positions in mm, lab frame, NaN where a marker is occluded. Not modified
        (unless it is ``out``).
    max_gap_frames : int
        Longest run of missing frames that is filled (>= 0; 0 fills nothing).
    out : ndarray, optional
        C-contiguous array of ``positions``' shape and the result's dtype to fill; may be
        ``positions`` itself (filled in place, no copy).

    Returns
    -------
    filled : ndarray, shape (m, k, 3), same float dtype as ``positions`` (``out`` if given)
        Positions with gaps of up to ``max_gap_frames`` frames filled; longer gaps and the
        unseen frames before a marker's first / after its last seen frame are NaN in all three
        coordinates.
    longest_filled_frames : int
        Length in frames of the longest gap filled (0 when none).
    """
    pos, max_gap, out_dtype = _check(positions, max_gap_frames)
    # filled in place in the output dtype (the kernel computes in float64, rounds once)
    if out is None:
        out = np.array(pos, dtype=out_dtype, order="C", copy=True)
    elif out.shape != pos.shape or out.dtype != out_dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous with shape {pos.shape} and dtype "
                         f"{out_dtype}, got {out.shape} {out.dtype}")
    elif out is not pos:
        np.copyto(out, pos)
    longest = compiled("_gaps_cy").fill_gaps_cy(out, max_gap)
    return out, int(longest)
