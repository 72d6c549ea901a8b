"""Marker names: the Conventional Gait Model set (docs/metrics.md §1) and aliases onto it.

Labs name the same anatomical landmark differently (Plug-in Gait ``LASI``, the dotted names of
the Fukuchi et al. 2017 treadmill data ``L.ASIS``, Qualisys' ``L_IAS``, …). :func:`to_cgm` maps
known names onto the CGM names the kernels use and keeps every other name unchanged;
:func:`virtual_markers` adds the documented virtual markers a recording lacks.
"""
from __future__ import annotations

import logging
import re

import numpy as np

log = logging.getLogger(__name__)

#: The CGM / Plug-in Gait marker set treadlab measures with (docs/metrics.md §1), by segment.
PELVIS = ("LASI", "RASI", "LPSI", "RPSI")
LEFT_LEG = ("LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE")
RIGHT_LEG = ("RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE")
THORAX = ("C7", "T10", "CLAV", "STRN")
CGM_MARKERS = PELVIS + LEFT_LEG + RIGHT_LEG + THORAX
#: Markers that may stand in for others: SACR replaces the two PSIS; LMT1/LMT5 (first and fifth
#: metatarsal heads) give a virtual toe marker.
OPTIONAL_MARKERS = ("SACR", "LMT1", "LMT5", "RMT1", "RMT5")

# Side-free landmark names → CGM stem. ``{s}`` is "L" or "R". Lookups are case-insensitive.
_SIDED = {
    # Plug-in Gait / CGM names map to themselves
    **{m[1:]: m[1:] for m in LEFT_LEG + PELVIS[::2]},
    "MT1": "MT1", "MT5": "MT5",
    # Fukuchi, Fukuchi & Duarte 2017 (RBDS, dotted names)
    "ASIS": "ASI", "PSIS": "PSI", "Heel.Top": "HEE", "Knee": "KNE", "Ankle": "ANK",
    "MT2": "TOE",  # PiG's toe marker sits on the second metatarsal head
    # Dorn, Schache & Pandy 2012 (Vicon) and other common lab names
    "HEEL": "HEE", "LMAL": "ANK", "LEPI": "KNE", "P1MT": "MT1", "P5MT": "MT5",
    "THIGH": "THI", "TIBIA": "TIB", "SHANK": "TIB", "KNEE": "KNE", "ANKLE": "ANK",
    "TO": "TOE",  # Motion Analysis "L.TO"
    # Qualisys / ISB-style names (IAS = anterior superior iliac spine, …)
    "IAS": "ASI", "IPS": "PSI", "FLE": "KNE", "FAL": "ANK", "FCC": "HEE", "FM2": "TOE",
    "FM1": "MT1", "FM5": "MT5",
}
_UNSIDED = {
    "C7": "C7", "T10": "T10", "CLAV": "CLAV", "STRN": "STRN", "SACR": "SACR",
    "CV7": "C7", "TV10": "T10", "SJN": "CLAV", "SNJ": "CLAV", "IJ": "CLAV", "SXS": "STRN",
    "PX": "STRN", "VSAC": "SACR", "SACRUM": "SACR",
}


def _build_aliases() -> dict[str, str]:
    out = {k.upper(): v for k, v in _UNSIDED.items()}
    for stem, cgm in _SIDED.items():
        for side in ("L", "R"):
            for name in (side + stem, f"{side}.{stem}", f"{side}_{stem}", f"{side}-{stem}"):
                out.setdefault(name.upper(), side + cgm)
    return out


#: Built-in aliases, upper-case name → CGM name (see the module docstring for the sources).
ALIASES: dict[str, str] = _build_aliases()

_PREFIX = re.compile(r"^[^:]*:")  # Vicon Nexus "Subject:LASI"


def to_cgm(labels, extra: dict[str, str] | None = None) -> list[str]:
    """Map marker labels onto CGM names.

    Each label is looked up, in order, in ``extra`` (exact name), then in the built-in
    aliases (case-insensitive; a Vicon ``"Subject:"`` prefix is ignored). Plug-in Gait names
    map to themselves, dotted names as in the Fukuchi et al. files map to CGM
    (``L.ASIS`` → ``LASI``, ``R.PSIS`` → ``RPSI``, ``L.Heel.Top`` → ``LHEE``, ``L.Knee`` →
    ``LKNE``, ``L.Ankle`` → ``LANK``, ``L.MT2`` → ``LTOE``; ``L.MT1``/``L.MT5`` → ``LMT1``/
    ``LMT5``, which :func:`virtual_markers` turns into ``LTOE``), and so do common Qualisys
    and Vicon lab names (``L_IAS``, ``CV7``, ``LHEEL`` …). Unknown names are kept unchanged.
    A name whose CGM target is already taken (by an earlier label or a label that is already
    that CGM name) is kept unchanged, so the result has no new duplicates.

    Parameters
    ----------
    labels : sequence of str
        Marker names as recorded.
    extra : dict of str to str, optional
        The lab's own ``{"Lab.Name": "CGM"}`` aliases (``[marker_names]``), which win.

    Returns
    -------
    list of str
        Same length and order as ``labels``.
    """
    labels = [str(x) for x in labels]
    extra = dict(extra or {})
    mapped = []
    for label in labels:
        if label in extra:
            mapped.append(str(extra[label]))
            continue
        key = label.strip()
        hit = ALIASES.get(key.upper())
        if hit is None and ":" in key:
            hit = ALIASES.get(_PREFIX.sub("", key).upper())
        mapped.append(hit if hit is not None else label)
    # never create a duplicate: the label that already is the CGM name (or the first one
    # mapped onto it) keeps it, later ones keep their original name
    out = list(labels)
    taken = {lb for lb, m in zip(labels, mapped) if lb == m}
    for i, (label, name) in enumerate(zip(labels, mapped)):
        if name == label:
            continue
        if name in taken:
            log.warning("marker %r would also be %r: kept as %r", label, name, label)
            continue
        taken.add(name)
        out[i] = name
    return out


def virtual_markers(positions, labels) -> tuple[np.ndarray, list[str]]:
    """Add the virtual markers a recording lacks.

    Rules (each applied only when the target is absent and its sources are present; a frame
    where any source is NaN gives NaN):

    - ``SACR`` = mean of ``LPSI`` and ``RPSI`` (CGM: the sacrum marker may replace the two
      PSIS markers, docs/metrics.md §1).
    - ``LTOE`` = midpoint of ``LMT1`` and ``LMT5`` (first and fifth metatarsal heads), and the
      same for ``RTOE``; PiG's toe marker sits on the second metatarsal head, between them.
      Swapped MT1/MT5 labels (as in ``RBDS001runT25``) give the same midpoint.

    Parameters
    ----------
    positions : array_like, (m, k, 3) float, mm, lab frame
        NaN = occluded.
    labels : sequence of str
        k CGM names (:func:`to_cgm`).

    Returns
    -------
    positions : (m, k + v, 3) ndarray, float32 (float64 if the input is float64), mm
        The input followed by the v virtual markers added.
    labels : list of str
        ``labels`` followed by the names added.
    """
    pos = np.asarray(positions)
    if pos.dtype != np.float64:
        pos = pos.astype(np.float32)
    labels = [str(x) for x in labels]
    if pos.ndim != 3 or pos.shape[1] != len(labels) or pos.shape[2] != 3:
        raise ValueError(f"positions shape {pos.shape} does not match {len(labels)} labels × 3")
    index = {lb: i for i, lb in enumerate(labels)}
    rules = [("SACR", ("LPSI", "RPSI")), ("LTOE", ("LMT1", "LMT5")), ("RTOE", ("RMT1", "RMT5"))]
    added, names = [], []
    for target, sources in rules:
        if target in index or not all(s in index for s in sources):
            continue
        added.append(np.mean([pos[:, index[s]] for s in sources], axis=0))
        names.append(target)
    if not added:
        return pos, labels
    return (np.concatenate([pos, np.stack(added, axis=1).astype(pos.dtype)], axis=1),
            labels + names)
