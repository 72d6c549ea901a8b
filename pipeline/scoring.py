"""Cause scores for running-related low back pain (docs/metrics.md §4) and reference sets.

Each cause summarises one per-contact metric of ``/derived/contacts`` as the median over at least
``min_steps_per_side`` valid steps on each side, turns it into ``z = (x - mu) / sigma`` signed so
that worse is positive, and maps z onto 0-100 with ``score = 100 / (1 + exp(-1.5 (z - 1)))``
(z = 0 → 18, z = 1 → 50, z = 2 → 82). ``mu`` and ``sigma`` come from a *reference set*: a TOML
file (``config/reference_default.toml`` is the shipped one; ``treadlab reference build`` makes a
lab's own) whose id is stored in the archive beside the scores.

A cause that cannot be scored keeps its row: ``score`` is NaN and ``status`` says why
("not scorable: no trunk markers", "not scored: 12 left / 25 right steps (< 20 per side)", ...).

Speed-conditioned causes (``docs/scoring.md``): a cause with a ``speed_model`` table has
``mu(v) = mu_intercept + mu_slope_per_m_s * v`` at belt speed ``v`` (m/s) and a constant
``sigma`` (the residual SD of the cohort around the line). It is scored only for a known belt
speed inside ``[speed_min_m_s - speed_margin_m_s, speed_max_m_s + speed_margin_m_s]`` (the
cohort's measured speeds widened by the margin); outside, the cause is "not scorable" with the
speed and the range in the status.
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
from treadlab.kernels.stats import median

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
        model = entry.pop("speed_model", None)
        entry["band"] = None
        if model is not None:
            return _speed_params(entry, model, speed_m_s)
        if speed_m_s is not None and np.isfinite(speed_m_s):
            for band in bands:
                if band["speed_min_m_s"] <= speed_m_s < band["speed_max_m_s"]:
                    entry.update({k: band[k] for k in ("mu", "sigma", "normal_low", "normal_high")
                                  if k in band})
                    entry["band"] = f"{band['speed_min_m_s']:g}-{band['speed_max_m_s']:g} m/s"
                    break
        return entry


def speed_mu(model: dict, speed_m_s: float, side: str = "") -> float:
    """``mu`` of a speed model at a belt speed (m/s); ``side`` "left"/"right" uses that side's
    line (``left_mu_intercept`` ...), "" the line of both sides together."""
    pre = f"{side}_" if side else ""
    return float(model[f"{pre}mu_intercept"]) + float(model[f"{pre}mu_slope_per_m_s"]) * speed_m_s


def _speed_params(entry: dict, model: dict, speed_m_s) -> dict:
    """Cause parameters at a belt speed from a ``speed_model`` (see the module docstring)."""
    lo = float(model["speed_min_m_s"]) - float(model.get("speed_margin_m_s", 0.0))
    hi = float(model["speed_max_m_s"]) + float(model.get("speed_margin_m_s", 0.0))
    sigma = float(model["sigma"])
    entry["sigma"] = sigma
    if speed_m_s is None or not np.isfinite(speed_m_s):
        entry["unscorable"] = ("belt speed unknown (this reference is conditioned on speed, "
                               f"{lo:g}-{hi:g} m/s)")
        speed_m_s = 0.5 * (float(model["speed_min_m_s"]) + float(model["speed_max_m_s"]))
    elif not lo <= speed_m_s <= hi:
        entry["unscorable"] = (f"belt speed {speed_m_s:.2f} m/s is outside the reference "
                               f"cohort's {lo:g}-{hi:g} m/s")
    mu = speed_mu(model, speed_m_s)
    entry.update(mu=mu, normal_low=mu - sigma, normal_high=mu + sigma,
                 band=f"mu at {speed_m_s:.2f} m/s")
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
        model = entry.get("speed_model")
        if model is not None:
            for key in ("mu_intercept", "mu_slope_per_m_s", "sigma", "speed_min_m_s",
                        "speed_max_m_s"):
                if not isinstance(model.get(key), (int, float)) or isinstance(model.get(key),
                                                                                bool):
                    raise ConfigError(path, f"causes.{cause}.speed_model.{key}",
                                      "missing or not a number")
            if not model["sigma"] > 0:
                raise ConfigError(path, f"causes.{cause}.speed_model.sigma",
                                  f"must be > 0, got {model['sigma']!r}")
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


def _speed_exclusions(n_unknown: int, n_unsteady: int, outside, lo: float, hi: float) -> list:
    """Status phrases for the steps a speed-conditioned cause leaves out (see score_causes)."""
    parts = []
    if n_unsteady:
        parts.append(f"{n_unsteady} steps excluded: belt speed changing (not steady)")
    if len(outside):
        a, b = float(np.min(outside)), float(np.max(outside))
        speeds = f"{a:.2f} m/s" if f"{a:.2f}" == f"{b:.2f}" else f"{a:.2f}-{b:.2f} m/s"
        parts.append(f"{len(outside)} steps excluded: belt speed {speeds} outside the "
                     f"reference cohort's {lo:g}-{hi:g} m/s")
    if n_unknown:
        parts.append(f"{n_unknown} steps excluded: belt speed unknown")
    return parts


def score_causes(contacts: dict, reference: ReferenceSet, min_steps_per_side: int = 20,
                 speed_m_s: float | None = None, reasons: dict | None = None,
                 static_tilt_deg: float | None = None) -> dict:
    """Score the four causes from per-contact metrics.

    A speed-conditioned cause (a ``speed_model`` in the reference set) is scored on the
    residuals of its steps: ``r_i = x_i - mu(v_i)`` at each step's belt speed ``v_i``,
    ``z = sign * median(r) / sigma``. Steps whose belt speed is unknown, not steady
    (``belt_steady`` false: the belt was accelerating) or outside the reference cohort's speeds
    (with the margin) are left out and counted in the status; the cause is "not scorable" when
    no step remains and "not scored" when fewer than ``min_steps_per_side`` remain on a side.
    With one belt speed for every step this is exactly ``z = sign * (median(x) - mu(v)) /
    sigma``, computed that way. ``value`` (and the per-side values) stay the medians over every
    valid, measured step. Causes without a speed model use every valid step.

    Parameters
    ----------
    contacts : dict
        ``/derived/contacts`` columns, each (s,): ``side`` int (0 left, 1 right), ``valid`` bool,
        and the metrics ``pelvic_drop`` (deg), ``trunk_lean`` (deg), ``overstride`` (mm),
        ``peak_hip_extension`` (deg) as float (NaN = not measured on that step); optionally
        ``belt_speed`` (m/s, NaN = unknown) and ``belt_steady`` (bool) per step
        (:func:`treadlab.pipeline.derive.belt_columns`).
    reference : ReferenceSet
    min_steps_per_side : int
        Fewer valid, measured (and, for a speed-conditioned cause, kept) steps on either side
        → the cause is not scored.
    speed_m_s : float, optional
        The session's belt speed (m/s): every step's speed when ``contacts`` has no
        ``belt_speed`` column (then all steps are steady).
    reasons : dict, optional
        ``{metric: why it is missing}`` (e.g. ``{"trunk_lean": "no trunk markers"}``) used for
        the status of a cause whose metric is NaN on every step.
    static_tilt_deg : float, optional
        Pelvic tilt of the static trial (deg, + anterior), quoted beside the running tilt in the
        status of limited hip extension.

    Returns
    -------
    dict
        Parallel (4,) columns of :data:`SCORE_COLUMNS`: ``cause`` and ``unit`` and ``status``
        str, ``score`` 0-100 float64 (NaN when not scored), ``value`` (median over both sides),
        ``value_left``, ``value_right`` (per-side medians), ``normal_low``, ``normal_high`` in
        the metric's unit (``mu ± sigma`` at the median belt speed of the steps used),
        ``n_steps`` int64 (steps the score rests on: measured, and for a speed-conditioned
        cause kept by the speed rule; all measured steps when none is kept), ``z`` float64.
    """
    reasons = reasons or {}
    side = np.asarray(contacts.get("side", []), dtype=np.int64)
    n = side.shape[0]
    valid = np.asarray(contacts.get("valid", np.ones(n, bool)), dtype=bool)
    if "belt_speed" in contacts:
        v = np.asarray(contacts["belt_speed"], dtype=np.float64)
        steady = np.asarray(contacts.get("belt_steady", np.ones(n, bool)), dtype=bool)
    else:
        v = np.full(n, math.nan if speed_m_s is None else float(speed_m_s))
        steady = np.ones(n, bool)
    rows = {c: [] for c in SCORE_COLUMNS}
    for cause in CAUSES:
        model = reference.causes[cause].get("speed_model")
        metric = reference.causes[cause]["metric"]
        x = np.asarray(contacts.get(metric, np.full(n, np.nan)), dtype=np.float64)
        use = valid & np.isfinite(x)
        left, right = x[use & (side == 0)], x[use & (side == 1)]
        value = median(x[use]) if use.any() else math.nan
        vl = median(left) if left.size else math.nan
        vr = median(right) if right.size else math.nan
        kept, excluded = use, []
        if model is None:
            p = reference.params(cause, speed_m_s)
        else:
            lo = float(model["speed_min_m_s"]) - float(model.get("speed_margin_m_s", 0.0))
            hi = float(model["speed_max_m_s"]) + float(model.get("speed_margin_m_s", 0.0))
            known = np.isfinite(v)
            inside = known & (v >= lo) & (v <= hi)
            unknown, unsteady = use & ~known, use & known & ~steady
            outside = use & known & steady & ~inside
            kept = use & inside & steady
            excluded = _speed_exclusions(int(unknown.sum()), int(unsteady.sum()), v[outside],
                                         lo, hi)
            if kept.any():
                band_v = median(v[kept])
            elif (use & known).any():
                band_v = median(v[use & known])
            elif speed_m_s is not None and np.isfinite(speed_m_s):
                band_v = float(speed_m_s)
            else:
                band_v = median(v[known]) if known.any() else None
            p = reference.params(cause, band_v)
            if kept.any():
                p.pop("unscorable", None)
            elif use.any():
                # no step left: the session-wide message when one reason covers every step
                # (speed unknown; one speed outside the range), else the count per reason
                one_unknown = band_v is None and unknown.sum() == use.sum()
                one_outside = outside.sum() == use.sum() and np.ptp(v[use]) == 0
                if not (one_unknown or one_outside) or "unscorable" not in p:
                    p["unscorable"] = "; ".join(excluded)
        kl, kr = int((kept & (side == 0)).sum()), int((kept & (side == 1)).sum())
        note = "; " + "; ".join(excluded) if excluded and kept.any() else ""
        z = score = math.nan
        if not use.any():
            why = reasons.get(metric) or ("no valid contacts" if not valid.any() else
                                          f"{metric} not measured on any step")
            status = f"not scorable: {why}"
        elif "unscorable" in p:
            status = f"not scorable: {p['unscorable']}"
        elif min(kl, kr) < min_steps_per_side:
            status = (f"not scored: {kl} left / {kr} right steps "
                      f"(< {min_steps_per_side} per side)" + note)
        elif "not_scored_above" in p and value > p["not_scored_above"]:
            status = (f"not scored: {value:.1f} {p['unit']} is above {p['not_scored_above']:g} "
                      f"{p['unit']} (reported only)")
        elif "not_scored_below" in p and value < p["not_scored_below"]:
            status = (f"not scored: {value:.1f} {p['unit']} is below {p['not_scored_below']:g} "
                      f"{p['unit']} (reported only)")
        else:
            sign = 1.0 if p["worse"] == "higher" else -1.0
            vk = v[kept]
            if model is None or np.all(vk == vk[0]):
                # one speed: median(x) - mu(v), as the residual median equals it
                centre = value if kept is use else median(x[kept])
                z = sign * (centre - p["mu"]) / p["sigma"]
            else:
                mu_i = float(model["mu_intercept"]) + float(model["mu_slope_per_m_s"]) * vk
                z = sign * median(x[kept] - mu_i) / p["sigma"]
            score = score_from_z(z)
            status = "scored" + (" (provisional reference)" if p.get("provisional") else
                                 " (literature reference)" if p.get("literature") else "")
            if model is not None and not np.all(vk == vk[0]):
                a, b = f"{float(vk.min()):.2f}", f"{float(vk.max()):.2f}"
                status += f"; mu at {a} m/s" if a == b else f"; mu at {a}-{b} m/s"
            status += note
        if cause == "limited_hip_extension" and "pelvis_tilt_mean" in contacts:
            tilt = np.asarray(contacts["pelvis_tilt_mean"], dtype=np.float64)[valid]
            tilt = tilt[np.isfinite(tilt)]
            if tilt.size:  # anterior tilt compensates for limited hip extension (Schache 2000)
                status += f"; mean pelvis tilt over stance {median(tilt):.1f} deg"
                if static_tilt_deg is not None and np.isfinite(static_tilt_deg):
                    status += f" (standing {float(static_tilt_deg):.1f} deg)"
        n_used = int(kept.sum()) if kept.any() else int(use.sum())
        for key, val in zip(SCORE_COLUMNS, (cause, score, value, vl, vr, p["unit"],
                                            float(p["normal_low"]), float(p["normal_high"]),
                                            n_used, z, status)):
            rows[key].append(val)
    table = {k: np.asarray(v) for k, v in rows.items()}
    for key in ("score", "value", "value_left", "value_right", "normal_low", "normal_high", "z"):
        table[key] = table[key].astype(np.float64)
    table["n_steps"] = table["n_steps"].astype(np.int64)
    for key in ("cause", "unit", "status"):
        table[key] = np.asarray([str(s) for s in rows[key]], dtype=object)
    return table


#: Speed plateaus of ``/derived/scores_by_speed``: valid steady steps are grouped by their belt
#: speed rounded to this step (m/s): 2.46 and 2.54 m/s are both the 2.5 m/s plateau.
PLATEAU_STEP_M_S = 0.1
#: Columns of ``/derived/scores_by_speed``: the score table's plus the plateau speed (m/s).
BY_SPEED_COLUMNS = SCORE_COLUMNS + ("speed_m_s",)


def speed_plateaus(contacts: dict, min_steps_per_side: int = 20) -> list[float]:
    """Belt-speed plateaus (m/s, ascending) with enough steps to be scored on their own: the
    valid steps on a steady belt (``belt_steady``) of known ``belt_speed``, grouped by the speed
    rounded to :data:`PLATEAU_STEP_M_S`, keeping the groups with at least
    ``min_steps_per_side`` steps on each side. [] without a ``belt_speed`` column."""
    if "belt_speed" not in contacts:
        return []
    side, ok, key = _steady_plateaus(contacts)
    out = []
    for k in np.unique(key[ok]):
        sel = ok & (key == k)
        if min((sel & (side == 0)).sum(), (sel & (side == 1)).sum()) >= min_steps_per_side:
            out.append(float(k))
    return out


def _steady_plateaus(contacts: dict):
    """(side (n,) int, ``ok`` (n,) bool: valid steps on a steady belt of known speed, the
    plateau (m/s) of every step) of a contacts table with a ``belt_speed`` column."""
    side = np.asarray(contacts.get("side", []), dtype=np.int64)
    n = side.shape[0]
    v = np.asarray(contacts["belt_speed"], np.float64)
    ok = (np.asarray(contacts.get("valid", np.ones(n, bool)), bool)
          & np.asarray(contacts.get("belt_steady", np.ones(n, bool)), bool) & np.isfinite(v))
    return side, ok, plateau_of(v)


def plateau_of(speed_m_s) -> np.ndarray:
    """The plateau (m/s) a belt speed belongs to: rounded to :data:`PLATEAU_STEP_M_S`."""
    step = PLATEAU_STEP_M_S
    return np.round(np.round(np.asarray(speed_m_s, np.float64) / step) * step, 6)


def score_by_speed(contacts: dict, reference: ReferenceSet, min_steps_per_side: int = 20,
                   speed_m_s: float | None = None, reasons: dict | None = None,
                   static_tilt_deg: float | None = None) -> dict | None:
    """Scores per belt-speed plateau (``/derived/scores_by_speed``), or None when fewer than
    two plateaus (:func:`speed_plateaus`) have enough steps.

    Each plateau's valid steady steps are scored by :func:`score_causes` with the same rules
    (per-step residuals, the same minimum per side). Returns parallel columns of
    :data:`BY_SPEED_COLUMNS`: one block of the four causes per plateau, ascending speed, with
    ``speed_m_s`` the plateau (m/s). ``speed_m_s`` (the argument) is not used: the steps carry
    their own speeds, and the plateau's speed stands for the session's (it picks the speed band
    of a reference set that has bands instead of a speed model)."""
    plateaus = speed_plateaus(contacts, min_steps_per_side)
    if len(plateaus) < 2:
        return None
    side, ok, key = _steady_plateaus(contacts)
    n = side.shape[0]
    blocks = []
    for plateau in plateaus:
        sel = ok & (key == plateau)
        sub = {k: np.asarray(c)[sel] for k, c in contacts.items()
               if np.ndim(c) == 1 and len(c) == n}
        table = score_causes(sub, reference, min_steps_per_side=min_steps_per_side,
                             speed_m_s=plateau, reasons=reasons,
                             static_tilt_deg=static_tilt_deg)
        table["speed_m_s"] = np.full(len(table["cause"]), plateau)
        blocks.append(table)
    out = {k: np.concatenate([b[k] for b in blocks]) for k in BY_SPEED_COLUMNS}
    for key in ("cause", "unit", "status"):
        out[key] = np.asarray([str(s) for s in out[key]], dtype=object)
    return out


def by_speed_summary(table: dict) -> dict:
    """``/derived/scores_by_speed`` as ``{"2.5": {cause: score 0-100 or None}, ...}`` (plateau
    speeds in m/s as text keys, ascending), for the JSON summary of ``treadlab process``."""
    out: dict = {}
    for speed, cause, score in zip(table["speed_m_s"], table["cause"], table["score"]):
        key = f"{float(speed):.1f}"
        out.setdefault(key, {})[str(cause.decode() if isinstance(cause, bytes) else cause)] = (
            None if not np.isfinite(score) else round(float(score), 1))
    return out


def format_scores_by_speed(table: dict) -> str:
    """``/derived/scores_by_speed`` for the terminal: one :func:`format_scores` table per
    belt-speed plateau, each under a line naming the plateau (m/s)."""
    speeds = np.asarray(table["speed_m_s"], np.float64)
    parts = []
    for speed in sorted(set(speeds.tolist())):
        sel = speeds == speed
        sub = {k: np.asarray(v)[sel] for k, v in table.items() if k != "speed_m_s"}
        parts.append(f"belt speed {speed:.1f} m/s\n" + format_scores(sub))
    return "\n\n".join(parts)


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
