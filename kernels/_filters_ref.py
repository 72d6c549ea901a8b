"""NumPy reference for zero-phase low-pass filtering: the specification of ``_filters_cy``.

Written for clarity, not speed: one Python step per sample, vectorised over the channels. It
implements what ``scipy.signal.sosfiltfilt(sos, x, axis=0)`` does with its defaults, from the
definitions, without calling it:

1. **Sections.** ``sos`` holds ``s`` second-order sections ``[b0, b1, b2, 1, a1, a2]``, applied
   in cascade. One section in transposed direct form II, input ``x``, output ``y``, state
   ``(z0, z1)``::

       y  = b0 x + z0
       z0 = b1 x - a1 y + z1
       z1 = b2 x - a2 y

2. **Initial conditions.** ``zi`` is the state of every section after an infinitely long unit
   step (the section's steady state ``(I - A) z = B - A b0`` in companion form, solved per
   section, scaled by the DC gain of the sections before it). A pass over a signal starting at
   ``v`` starts from ``zi × v``, so a constant signal passes through without a transient.
3. **Odd extension.** ``padlen = 3 × (2 s + 1 - min(#(b2 == 0), #(a2 == 0)))`` samples are
   added at both ends, point-reflected about the end samples: ``2 x[0] - x[k]`` before and
   ``2 x[n-1] - x[n-1-k]`` after, ``k = 1 … padlen``.
4. **Two passes.** Filter the extended signal forward (state ``zi × first sample``), then the
   result backward (state ``zi × its last sample``), and drop the extension.

Missing samples (NaN, ±inf) are bridged by ``np.interp`` over the sample index before filtering
and set to NaN afterwards. A channel with at most ``3 (2 s + 1)`` finite samples is not filtered
(its missing samples are still NaN). See ``filters.py`` for the public contract.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter


def sosfilt_zi(sos) -> np.ndarray:
    """(s, 2) float64: steady-state state of each section for a unit step at the input."""
    sos = np.asarray(sos, dtype=np.float64)
    zi = np.zeros((sos.shape[0], 2))
    gain = 1.0  # DC gain of the sections before this one: its input level
    for k, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        # state equations at steady state for a unit input u = 1, output y:
        #   z0 = b1 - a1 y + z1,  z1 = b2 - a2 y,  y = b0 + z0
        # => [[1 + a1, -1], [a2, 1]] @ [z0, z1] = [b1 - a1 b0, b2 - a2 b0]
        m = np.array([[1.0 + a1, -1.0], [a2, 1.0]])
        zi[k] = gain * np.linalg.solve(m, [b1 - a1 * b0, b2 - a2 * b0])
        gain *= (b0 + b1 + b2) / (1.0 + a1 + a2)
    return zi


def padlen(sos) -> int:
    """Samples of odd extension at each end (``sosfiltfilt``'s default)."""
    sos = np.asarray(sos)
    ntaps = 2 * len(sos) + 1 - min(np.sum(sos[:, 2] == 0), np.sum(sos[:, 5] == 0))
    return int(3 * ntaps)


def min_finite(sos) -> int:
    """Channels with at most this many finite samples are returned unfiltered."""
    return 3 * (2 * len(sos) + 1)


def _one_pass(sos, x, zi):
    """Filter (L, c) ``x`` along axis 0 through the cascade, starting from state ``zi × x[0]``."""
    y = np.array(x, dtype=np.float64)
    state = zi[:, :, None] * y[0][None, None, :]  # (s, 2, c)
    for t in range(y.shape[0]):
        v = y[t].copy()
        for k, (b0, b1, b2, _, a1, a2) in enumerate(sos):
            out = b0 * v + state[k, 0]
            state[k, 0] = b1 * v - a1 * out + state[k, 1]
            state[k, 1] = b2 * v - a2 * out
            v = out
        y[t] = v
    return y


def _filtfilt(sos, x):
    """Zero-phase filter of finite (n, c) ``x`` along axis 0, as ``sosfiltfilt``."""
    p = padlen(sos)
    zi = sosfilt_zi(sos)
    ext = np.concatenate([2 * x[0] - x[p:0:-1], x, 2 * x[-1] - x[-2:-p - 2:-1]], axis=0)
    forward = _one_pass(sos, ext, zi)
    backward = _one_pass(sos, forward[::-1], zi)[::-1]
    return backward[p:p + x.shape[0]]


def sosfiltfilt(sos, x, *, dtype=np.float64, out=None) -> np.ndarray:
    """Same signature and result as :func:`treadlab.kernels.filters.sosfiltfilt`."""
    sos = np.asarray(sos, dtype=np.float64)
    x = np.asarray(x)
    n = x.shape[0]
    cols = np.array(x, dtype=np.float64).reshape(n, x.size // n if n else 0)
    if cols.size:
        finite = np.isfinite(cols)
        idx = np.arange(n)
        todo = [j for j in range(cols.shape[1]) if finite[:, j].sum() > min_finite(sos)]
        for j in todo:
            good = finite[:, j]
            cols[~good, j] = np.interp(idx[~good], idx[good], cols[good, j])
        if todo:
            cols[:, todo] = _filtfilt(sos, cols[:, todo])
        cols[~finite] = np.nan
    result = cols.reshape(x.shape).astype(dtype)
    if out is None:
        return result
    out[...] = result
    return out


def lowpass(x, rate_hz, cutoff_hz, order, *, dtype=np.float64, out=None) -> np.ndarray:
    """Same signature and result as :func:`treadlab.kernels.filters.lowpass`."""
    sos = butter(int(order), cutoff_hz / (0.5 * rate_hz), output="sos")
    return sosfiltfilt(sos, x, dtype=dtype, out=out)
