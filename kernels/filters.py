"""Zero-phase Butterworth low-pass filtering of many channels at once, NaN-aware.

The filter is ``scipy.signal.sosfiltfilt`` with its defaults, channel by channel along axis 0
(time): second-order sections applied forward then backward (zero lag, the magnitude response
squared), after an odd extension of ``padlen`` samples at both ends, each pass starting from
the steady state ``sosfilt_zi(sos)`` scaled by its first sample. SciPy designs the coefficients
(:func:`butter_sos`) and computes the initial conditions (a small linear solve per section);
the compiled kernel ``_filters_cy`` filters (its AVX2 build ``_filters_cy_avx2`` on a CPU with
AVX2, the same bits: ``treadlab.kernels._compiled``). ``_filters_ref.py`` is the specification.

Samples that are not finite (NaN, ±inf) are *missing*: inside a channel they are bridged by
linear interpolation over the sample index (held constant before the first and after the last
finite sample) for the filter only, and are NaN in the output. Samples next to a long gap are
therefore smoothed towards the bridge, within about one cut-off period. A channel with at most
:func:`min_finite` finite samples is returned unfiltered (its missing samples NaN).

This is a whole-recording (non-causal) filter: every output sample depends on the samples
after it up to the end of the recording (through the backward pass started at the last
sample), so it cannot be computed block by block. Streaming code needs a causal filter.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter
from scipy.signal import sosfilt_zi as _scipy_sosfilt_zi

from treadlab.kernels._compiled import compiled

__all__ = ["butter_sos", "lowpass", "sosfiltfilt", "sosfilt_zi", "padlen", "min_finite"]

#: Bytes of float64 scratch the kernel may use when the output is float32 or is the input:
#: ``(n + 2 padlen) × b`` for ``b`` channels filtered side by side (at least one channel, at
#: most :data:`_MAX_BLOCK`). A float64 output filters in place and needs no such scratch.
_WORK_BYTES = 48 << 20
#: The most channels filtered side by side (adjacent columns): measured fastest on 60 marker
#: columns (docs/performance.md); their states, ``2 × sections × b`` float64, stay in L1.
_MAX_BLOCK = 32


def butter_sos(rate_hz: float, cutoff_hz: float, order: int) -> np.ndarray:
    """Second-order sections of a digital Butterworth low-pass (``scipy.signal.butter``).

    Parameters
    ----------
    rate_hz : float, Hz. Sampling rate.
    cutoff_hz : float, Hz. The -3 dB frequency of one pass, ``0 < cutoff_hz < rate_hz / 2``
        (the zero-phase filter, two passes, is -6 dB there).
    order : int >= 1. Order of one pass.

    Returns
    -------
    (s, 6) float64: ``[b0, b1, b2, 1, a1, a2]`` per section, ``s = ceil(order / 2)``.
    """
    rate_hz = float(rate_hz)
    cutoff_hz = float(cutoff_hz)
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate_hz must be finite and > 0, got {rate_hz!r}")
    if not 0 < cutoff_hz < 0.5 * rate_hz:
        raise ValueError(f"cutoff_hz must be in (0, {0.5 * rate_hz:g}) (Nyquist), got "
                         f"{cutoff_hz!r}")
    if int(order) != order or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    return _butter(int(order), cutoff_hz / (0.5 * rate_hz)).copy()


@functools.lru_cache(maxsize=64)
def _butter(order: int, wn: float) -> np.ndarray:
    """``scipy.signal.butter`` sections, designed once per (order, normalised cut-off): a
    pipeline run filters every session with the same two or three designs."""
    return np.ascontiguousarray(butter(order, wn, output="sos"), dtype=np.float64)


def _check_sos(sos) -> np.ndarray:
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ValueError(f"sos must have shape (n_sections, 6), got {sos.shape}")
    if not np.all(sos[:, 3] == 1):
        raise ValueError("sos[:, 3] must be all ones (normalised sections)")
    if not np.isfinite(sos).all():
        raise ValueError("sos must be finite")
    return sos


def padlen(sos) -> int:
    """Samples of odd extension at each end: ``sosfiltfilt``'s default,
    ``3 * (2 s + 1 - min(#(b2 == 0), #(a2 == 0)))`` for ``s`` sections (a first-order
    section, as in odd Butterworth orders, has one tap less)."""
    sos = _check_sos(sos)
    ntaps = 2 * sos.shape[0] + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * ntaps


def min_finite(sos) -> int:
    """A channel needs more finite samples than this to be filtered: ``3 (2 s + 1)`` for
    ``s`` sections (at least :func:`padlen`, so the odd extension always fits). Shorter
    channels are returned unfiltered."""
    return 3 * (2 * _check_sos(sos).shape[0] + 1)


def sosfilt_zi(sos) -> np.ndarray:
    """(s, 2) float64: the sections' steady-state initial conditions for a unit step
    (``scipy.signal.sosfilt_zi``); each pass scales them by its first sample."""
    sos = _check_sos(sos)
    return _sosfilt_zi(sos.tobytes(), sos.shape[0]).copy()


@functools.lru_cache(maxsize=64)
def _sosfilt_zi(sos_bytes: bytes, sections: int) -> np.ndarray:
    sos = np.frombuffer(sos_bytes, dtype=np.float64).reshape(sections, 6)
    return np.ascontiguousarray(_scipy_sosfilt_zi(sos), dtype=np.float64)


def sosfiltfilt(sos, x, *, dtype=np.float64, out: np.ndarray | None = None) -> np.ndarray:
    """Zero-phase filter every channel of ``x`` along axis 0 (time), NaN-aware.

    Per channel, the result equals ``scipy.signal.sosfiltfilt(sos, channel)`` (default odd
    padding, default ``padlen``) to rounding, on channels without missing samples.

    Parameters
    ----------
    sos : (s, 6) float array, normalised second-order sections (``sos[:, 3] == 1``), e.g.
        from :func:`butter_sos`.
    x : (n,) or (n, ...) float array, any unit (N, mm, ...). float32 input is filtered in
        float64. Non-finite samples are missing (see the module docstring). Any strides.
    dtype : float64 (default) or float32: the output dtype.
    out : ndarray, optional. C-contiguous array of ``x``'s shape and ``dtype`` to write into;
        may be ``x`` itself (in place).

    Returns
    -------
    ndarray, ``x``'s shape, ``dtype``, same unit: filtered; NaN where ``x`` is not finite;
    channels with at most :func:`min_finite` finite samples unfiltered. Empty ``x`` gives an
    empty result.
    """
    sos = _check_sos(sos)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError("x must have at least one dimension (time along axis 0)")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if out is None:
        out = np.empty(x.shape, dtype=dtype)
    elif out.shape != x.shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous with shape {x.shape} and dtype {dtype}, "
                         f"got {out.shape} {out.dtype}")
    elif out is not x and np.may_share_memory(x, out):
        x = x.copy()  # in place is only safe sample for sample: out itself
    n = x.shape[0]
    if x.size == 0:
        return out
    x2 = x.reshape(n, -1)  # a view when x is contiguous (in place: the same memory as out)
    o2 = out.reshape(n, -1)  # a view: out is C-contiguous
    p = padlen(sos)
    lanes = min(_MAX_BLOCK, x2.shape[1])
    # float64 out that is not x: filtered inside out, scratch only for the extensions
    in_out = dtype == np.float64 and not np.may_share_memory(x2, o2)
    if in_out:
        work = np.empty((2 * p, lanes), dtype=np.float64)
    else:
        lanes = int(min(lanes, max(1, _WORK_BYTES // ((n + 2 * p) * 8))))
        work = np.empty((n + 2 * p, lanes), dtype=np.float64)
    # the AVX2 build where the CPU has it (rows of many channels, 4 per vector: 60 marker
    # columns 3.2 -> 2.0 ms; four channels, a split belt's two plates' Fx and Fz, 0.75 ms for
    # 120 000 samples), except for two channels (one plate's Fx and Fz), whose register-held
    # states the baseline build compiles better (0.7 vs 1.2 ms)
    kernel = compiled("_filters_cy", avx2=x2.shape[1] != 2)
    kernel._sosfiltfilt_cy(sos, sosfilt_zi(sos), x2, o2, p, min_finite(sos), work, in_out)
    return out


def lowpass(x, rate_hz: float, cutoff_hz: float, order: int, *, dtype=np.float64,
            out: np.ndarray | None = None) -> np.ndarray:
    """Zero-phase Butterworth low-pass along axis 0: :func:`sosfiltfilt` with
    :func:`butter_sos` ``(rate_hz, cutoff_hz, order)``.

    Parameters
    ----------
    x : (n,) or (n, ...) float array, any unit; non-finite = missing.
    rate_hz : float, Hz. cutoff_hz : float, Hz, below Nyquist. order : int, order of one pass.
    dtype, out : as :func:`sosfiltfilt`.

    Returns
    -------
    ndarray, ``x``'s shape, ``dtype``: as :func:`sosfiltfilt`.
    """
    return sosfiltfilt(butter_sos(rate_hz, cutoff_hz, order), x, dtype=dtype, out=out)
