"""What a session's values may physically be (``validate``, and every reader of raw data).

Layout checks say a dataset exists with the right shape; these say its values can be a
running session: rates a force plate or a mocap system can have, a human body mass, forces
and positions that are finite and of lab size, times that advance. Each function returns
``(field, problem)`` pairs, empty when plausible; the readers raise the first as an
:class:`~treadlab.config.errors.InputError`, ``validate`` lists them all.
"""
from __future__ import annotations

import math

import numpy as np

#: Force-plate sample rate, Hz.
FORCE_RATE_HZ = (1.0, 100_000.0)
#: Marker frame rate, Hz.
MARKER_RATE_HZ = (1.0, 10_000.0)
#: Body mass, kg (NaN = unknown is allowed where the reader can estimate it).
BODY_MASS_KG = (1.0, 500.0)
#: Largest force (N) or moment (N·m) component a treadmill plate can report.
MAX_WRENCH = 1.0e5
#: Largest marker coordinate, mm (1 km).
MAX_POSITION_MM = 1.0e6
#: Belt speed, m/s.
MAX_BELT_SPEED_M_S = 20.0


def _number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def root_problems(attrs: dict) -> list[tuple[str, str]]:
    """Root attributes: ``subject_id`` text, ``body_mass_kg`` and ``belt_speed_m_s`` ranges."""
    out = []
    if "subject_id" in attrs and not isinstance(attrs["subject_id"], str):
        out.append(("/@subject_id", f"{attrs['subject_id']!r} is not text"))
    m = attrs.get("body_mass_kg")
    if m is not None and _number(m) and not math.isnan(float(m)):
        lo, hi = BODY_MASS_KG
        if not lo <= float(m) <= hi:
            out.append(("/@body_mass_kg", f"{float(m):g} kg is not a human body mass "
                                          f"({lo:g}-{hi:g} kg)"))
    v = attrs.get("belt_speed_m_s")
    if v is not None and _number(v) and not math.isnan(float(v)) \
            and not 0 <= float(v) <= MAX_BELT_SPEED_M_S:
        out.append(("/@belt_speed_m_s", f"{float(v):g} m/s is not a treadmill belt speed "
                                        f"(0-{MAX_BELT_SPEED_M_S:g} m/s)"))
    return out


def rate_problems(group: str, rate) -> list[tuple[str, str]]:
    """``rate_hz`` of ``raw/force`` or ``raw/markers``."""
    lo, hi = FORCE_RATE_HZ if group.endswith("force") else MARKER_RATE_HZ
    if not _number(rate) or not math.isfinite(float(rate)) or not lo <= float(rate) <= hi:
        return [(f"/{group}@rate_hz", f"{rate!r} Hz is outside {lo:g}-{hi:g} Hz")]
    return []


def time_problems(name: str, t: np.ndarray) -> list[tuple[str, str]]:
    """A time base: finite seconds, strictly increasing."""
    t = np.asarray(t)
    if t.dtype.kind not in "fiu":
        return [(name, f"dtype {t.dtype}, expected float seconds")]
    if t.size and np.isfinite(t[0]) and np.isfinite(t[-1]):
        # the common case in one pass: increasing between finite ends, so all finite
        with np.errstate(invalid="ignore"):  # (inf - inf: the search below describes it)
            d = np.diff(t)
        if not d.size or d.min() > 0:
            return []
    bad = ~np.isfinite(t)
    if bad.any():
        return [(name, f"{int(bad.sum())} non-finite time(s), first at sample "
                       f"{int(np.argmax(bad))}")]
    d = np.diff(t)
    if d.size and (d <= 0).any():
        i = int(np.argmax(d <= 0)) + 1
        return [(name, f"not increasing at sample {i} (t = {float(t[i]):.6f} s)")]
    return []


def value_problems(name: str, data: np.ndarray, limit: float, unit: str) -> list[tuple[str, str]]:
    """No ±inf and nothing beyond ``limit`` (NaN = missing is allowed)."""
    data = np.asarray(data)
    if data.dtype.kind not in "fiu":
        return [(name, f"dtype {data.dtype}, expected numbers")]
    if data.size and data.dtype.kind == "f" and _within(data, limit):
        return []
    with np.errstate(invalid="ignore"):
        bad = np.isinf(data) | (np.abs(data) > limit)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), data.shape)
        return [(name, f"{int(bad.sum())} value(s) infinite or beyond {limit:g} {unit}, first "
                       f"{data[i]!r} at index {tuple(int(x) for x in i)}")]
    return []


#: Elements per block of :func:`_within` (512 KiB of float32: the block stays in the L2
#: cache between its two passes).
BLOCK = 1 << 17


def _within(data: np.ndarray, limit: float) -> bool:
    """True when the NaN-ignoring extremes of float ``data`` are finite and within ±``limit``,
    so no value is infinite or beyond it (False also when a block is all NaN: the caller's
    exact search then decides). Without a temporary (a 60-minute session's wrench and
    positions are 170-350 MB): two reductions over each block of :data:`BLOCK` elements, the
    second reading it from cache."""
    flat = data.reshape(-1) if data.flags.c_contiguous else None
    if flat is None:  # (not contiguous: reshape would copy)
        return bool(np.fmax.reduce(data, axis=None) <= limit
                    and np.fmin.reduce(data, axis=None) >= -limit)
    for i in range(0, flat.size, BLOCK):
        block = flat[i:i + BLOCK]
        if not (np.fmax.reduce(block) <= limit and np.fmin.reduce(block) >= -limit):
            return False
    return True


def label_problems(name: str, labels) -> list[tuple[str, str]]:
    """Marker labels / plate names: a list of distinct text."""
    if labels is None:
        return []
    labels = [labels] if isinstance(labels, str) else labels
    try:
        labels = list(labels)
    except TypeError:
        return [(name, "expected a list of text")]
    if not all(isinstance(x, str) for x in labels):
        bad = next(x for x in labels if not isinstance(x, str))
        return [(name, f"{bad!r} is not text")]
    return []
