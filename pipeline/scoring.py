"""Cause scores for running-related low back pain (docs/metrics.md §4) and reference sets.

Each cause summarises one per-contact metric of ``/derived/contacts`` as the median over at least
``min_steps_per_side`` valid steps on each side, turns it into ``z = (x - mu) / sigma`` signed so
that worse is positive, and maps z onto 0-100 with ``score = 100 / (1 + exp(-1.5 (z - 1)))``
(z = 0 → 18, z = 1 → 50, z = 2 → 82). ``mu`` and ``sigma`` come from a *reference set*: a TOML
file (``config/reference_default.toml`` is the shipped one; ``treadlab reference build`` makes a
lab's own) whose id is stored in the archive beside the scores.

A cause that cannot be scored keeps its row: ``score`` is NaN and ``status`` says why
("not scorable: no trunk markers", "not scored: 12 left / 25 right steps (< 20 per side)", ...).
"""
from __future__ import annotations

import hashlib
import logging
import math
from treadlab.config.loader import tomllib  # tomllib, or tomli on Python 3.10
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from treadlab.config.errors import ConfigError

log = logging.getLogger(__name__)

#: The four causes, in table order, with the /derived/contacts metric each one summarises.
CAUSES = ("pelvic_drop", "upright_trunk", "overstride", "limited_hip_extension")
CAUSE_METRIC = {"pelvic_drop": "pelvic_drop", "upright_trunk": "trunk_lean",
                "overstride": "overstride", "limited_hip_extension": "peak_hip_extension"}
#: Columns of the score table (docs/archive.md §4.3 ``/derived/scores``) plus ``z`` and ``status``.
SCORE_COLUMNS = ("cause", "score", "value", "value_left", "value_right", "unit", "normal_low",
                 "normal_high", "n_steps", "z", "status")

_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
_REQUIRED = ("metric", "unit", "worse", "mu", "sigma", "normal_low", "normal_high")


def score_from_z(z: float) -> float:
    """``100 / (1 + exp(-1.5 (z - 1)))``: z = 0 → 18.2, z = 1 → 50, z = 2 → 81.8."""
    return 100.0 / (1.0 + math.exp(-1.5 * (z - 1.0)))


@dataclass
class ReferenceSet:
    """A reference set: per cause, the mean and spread a runner is compared with.

    Attributes
    ----------
    id : str
        Stored in every archive scored with this set (``/derived`` attr ``reference_id``).
    causes : dict
        ``{cause: {"metric", "unit", "worse", "mu", "sigma", "normal_low", "normal_high",
        "bands": [{"speed_min_m_s", "speed_max_m_s", "mu", "sigma", ...}], ...}}``.
    path : Path
        The TOML file read. ``sha256`` is the digest of its bytes (changes force a rescore).
    """

    id: str
    title: str
    kind: str
    causes: dict
    path: Path
    sha256: str
    provenance: dict = field(default_factory=dict)

    def params(self, cause: str, speed_m_s: float | None = None) -> dict:
        """``mu``, ``sigma``, ``normal_low``, ``normal_high`` for a cause at a belt speed.

        A speed band (built sets) overrides the cause's own values when ``speed_m_s`` falls in
        ``[speed_min_m_s, speed_max_m_s)``; with no matching band the cause's values are used.
        """
        entry = dict(self.causes[cause])
        bands = entry.pop("bands", [])
        entry["band"] = None
        if speed_m_s is not None and np.isfinite(speed_m_s):
            for band in bands:
                if band["speed_min_m_s"] <= speed_m_s < band["speed_max_m_s"]:
                    entry.update({k: band[k] for k in ("mu", "sigma", "normal_low", "normal_high")
                                  if k in band})
                    entry["band"] = f"{band['speed_min_m_s']:g}-{band['speed_max_m_s']:g} m/s"
                    break
        return entry


def reference_path(spec: str | Path | None = None) -> Path:
    """The TOML file of a reference set: a shipped id (``"default"`` →
    ``config/reference_default.toml``) or a path to a TOML file."""
    spec = "default" if spec in (None, "") else spec
    candidate = Path(spec)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    shipped = _CONFIG_DIR / f"reference_{spec}.toml"
    if shipped.exists():
        return shipped
    known = sorted(p.stem.removeprefix("reference_") for p in _CONFIG_DIR.glob("reference_*.toml"))
    raise ConfigError(None, "scoring.reference",
                      f"unknown reference set {spec!r} (shipped: {', '.join(known)}; "
                      f"or a .toml path)")


def load_reference(spec: str | Path | None = None) -> ReferenceSet:
    """Read and check a reference set (a shipped id or a TOML path).

    Raises
    ------
    ConfigError
        Naming the file and the key when the file is missing, not TOML, or a cause lacks a
        field / has sigma <= 0.
    """
    path = reference_path(spec)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "scoring.reference",
                          f"cannot read reference set: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, None, f"not a valid TOML reference set: {exc}") from None
    head = doc.get("reference", {})
    if not isinstance(head.get("id"), str) or not head["id"]:
        raise ConfigError(path, "reference.id", "missing (every reference set needs an id)")
    causes = doc.get("causes", {})
    for cause in CAUSES:
        if cause not in causes:
            raise ConfigError(path, f"causes.{cause}", "missing")
        entry = causes[cause]
        for key in _REQUIRED:
            if key not in entry:
                raise ConfigError(path, f"causes.{cause}.{key}", "missing")
        if entry["worse"] not in ("higher", "lower"):
            raise ConfigError(path, f"causes.{cause}.worse",
                              f"must be 'higher' or 'lower', got {entry['worse']!r}")
        for i, band in enumerate([entry] + list(entry.get("bands", []))):
            sigma = band.get("sigma", entry["sigma"])
            if not isinstance(sigma, (int, float)) or not sigma > 0:
                where = (f"causes.{cause}.sigma" if i == 0
                         else f"causes.{cause}.bands[{i - 1}].sigma")
                raise ConfigError(path, where, f"must be > 0, got {sigma!r}")
    return ReferenceSet(id=head["id"], title=head.get("title", ""), kind=head.get("kind", ""),
                        causes={c: causes[c] for c in CAUSES}, path=path,
                        sha256=hashlib.sha256(raw).hexdigest(),
                        provenance=doc.get("provenance", {}))


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def score_causes(contacts: dict, reference: ReferenceSet, min_steps_per_side: int = 20,
                 speed_m_s: float | None = None, reasons: dict | None = None) -> dict:
    """Score the four causes from per-contact metrics.

    Parameters
    ----------
    contacts : dict
        ``/derived/contacts`` columns, each (s,): ``side`` int (0 left, 1 right), ``valid`` bool,
        and the metrics ``pelvic_drop`` (deg), ``trunk_lean`` (deg), ``overstride`` (mm),
        ``peak_hip_extension`` (deg) as float (NaN = not measured on that step).
    reference : ReferenceSet
    min_steps_per_side : int
        Fewer valid, measured steps on either side → the cause is not scored.
    speed_m_s : float, optional
        Belt speed, to pick a speed band of the reference set.
    reasons : dict, optional
        ``{metric: why it is missing}`` (e.g. ``{"trunk_lean": "no trunk markers"}``) used for
        the status of a cause whose metric is NaN on every step.

    Returns
    -------
    dict
        Parallel (4,) columns of :data:`SCORE_COLUMNS`: ``cause`` and ``unit`` and ``status``
        str, ``score`` 0-100 float64 (NaN when not scored), ``value`` (median over both sides),
        ``value_left``, ``value_right`` (per-side medians), ``normal_low``, ``normal_high`` in
        the metric's unit, ``n_steps`` int64 (steps with the metric measured), ``z`` float64.
    """
    reasons = reasons or {}
    side = np.asarray(contacts.get("side", []), dtype=np.int64)
    n = side.shape[0]
    valid = np.asarray(contacts.get("valid", np.ones(n, bool)), dtype=bool)
    rows = {c: [] for c in SCORE_COLUMNS}
    for cause in CAUSES:
        p = reference.params(cause, speed_m_s)
        metric = p["metric"]
        x = np.asarray(contacts.get(metric, np.full(n, np.nan)), dtype=np.float64)
        use = valid & np.isfinite(x)
        left, right = x[use & (side == 0)], x[use & (side == 1)]
        value = float(np.median(x[use])) if use.any() else math.nan
        vl = float(np.median(left)) if left.size else math.nan
        vr = float(np.median(right)) if right.size else math.nan
        z = score = math.nan
        if not use.any():
            why = reasons.get(metric) or (f"no valid contacts" if not valid.any() else
                                          f"{metric} not measured on any step")
            status = f"not scorable: {why}"
        elif min(left.size, right.size) < min_steps_per_side:
            status = (f"not scored: {left.size} left / {right.size} right steps "
                      f"(< {min_steps_per_side} per side)")
        elif "not_scored_above" in p and value > p["not_scored_above"]:
            status = (f"not scored: {value:.1f} {p['unit']} is above {p['not_scored_above']:g} "
                      f"{p['unit']} (reported only)")
        elif "not_scored_below" in p and value < p["not_scored_below"]:
            status = (f"not scored: {value:.1f} {p['unit']} is below {p['not_scored_below']:g} "
                      f"{p['unit']} (reported only)")
        else:
            sign = 1.0 if p["worse"] == "higher" else -1.0
            z = sign * (value - p["mu"]) / p["sigma"]
            score = score_from_z(z)
            status = "scored" + (" (provisional reference)" if p.get("provisional") else "")
        for key, val in zip(SCORE_COLUMNS, (cause, score, value, vl, vr, p["unit"],
                                            float(p["normal_low"]), float(p["normal_high"]),
                                            int(use.sum()), z, status)):
            rows[key].append(val)
    table = {k: np.asarray(v) for k, v in rows.items()}
    for key in ("score", "value", "value_left", "value_right", "normal_low", "normal_high", "z"):
        table[key] = table[key].astype(np.float64)
    table["n_steps"] = table["n_steps"].astype(np.int64)
    for key in ("cause", "unit", "status"):
        table[key] = np.asarray([str(s) for s in rows[key]], dtype=object)
    return table


def format_scores(table: dict) -> str:
    """A score table for the terminal.

    ``table`` is what :func:`score_causes` returns (or ``/derived/scores`` as read back: bytes
    and missing ``status``/``z`` columns are accepted).
    """
    def text(v) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    def num(v, fmt="{:.1f}") -> str:
        return "-" if v is None or not np.isfinite(v) else fmt.format(v)

    n = len(table["cause"])
    status = table.get("status", [""] * n)
    head = ("cause", "score", "value", "left", "right", "unit", "normal", "steps", "status")
    lines = []
    for i in range(n):
        score = float(table["score"][i])
        lines.append((
            text(table["cause"][i]),
            num(score, "{:.0f}"),
            num(float(table["value"][i])),
            num(float(table["value_left"][i])),
            num(float(table["value_right"][i])),
            text(table["unit"][i]),
            f"{num(float(table['normal_low'][i]))}..{num(float(table['normal_high'][i]))}",
            str(int(table["n_steps"][i])),
            text(status[i]),
        ))
    widths = [max(len(h), *(len(r[j]) for r in lines)) if lines else len(h)
              for j, h in enumerate(head)]
    right = {1, 2, 3, 4, 7}

    def fmt(row):
        return "  ".join(c.rjust(w) if j in right else c.ljust(w)
                         for j, (c, w) in enumerate(zip(row, widths))).rstrip()

    bar = [fmt(head), "  ".join("-" * w for w in widths)]
    return "\n".join(bar + [fmt(r) for r in lines])
