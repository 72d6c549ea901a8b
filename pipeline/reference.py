"""Reference sets built from processed sessions (``treadlab reference build`` / ``build-cohort``).

A reference set says, per cause, what a healthy runner measures *in treadlab's own
conventions* (Plug-in Gait pelvis, treadlab's contact rule and windows) at a given belt speed.
How it is built (``docs/scoring.md`` gives the reasoning):

* every processed session is summarised exactly as scoring does: the median of the cause's
  metric over the valid steps of each side (both sides together, and left and right), with at
  least ``min_steps_per_side`` measured steps on each side;
* per cause, a least-squares line of those session values against belt speed gives
  ``mu(v) = mu_intercept + mu_slope_per_m_s * v``; ``sigma`` is the residual SD (ddof 2) of the
  sessions around it. The same is done for each side. With fewer than three sessions or a
  single speed the line is flat (mean, SD ddof 1);
* the speeds the sessions cover, widened by ``SPEED_MARGIN_M_S`` on each side, are the range a
  session may be scored in; outside it (or with no belt speed) the cause is "not scorable";
* a cause no session measures (trunk lean without trunk markers) keeps the template's entry,
  marked ``literature = true`` or ``provisional = true`` as the template says;
* every number is rounded (``DIGITS`` decimals), sessions are sorted, no time stamp or absolute
  path is written: the same sessions give a byte-identical file. The id is the output's name and
  a hash of the content, so an archive scored with an earlier set carries another id and is due
  for reprocessing.

``build_cohort`` imports a folder of C3D trials in the Fukuchi, Fukuchi & Duarte 2017 layout
(``SUBJECTrunTvv.c3d`` beside ``SUBJECTstatic.c3d``, belt speed vv/10 m/s, ``participants.csv``)
with their static trials, processes them and builds the set: the shipped default is made by one
command (README, ``docs/scoring.md``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from treadlab.acquisition.archive import attr, derived_group, open_archive
from treadlab.acquisition.io.c3d_import import import_c3d
from treadlab.config.errors import InputError, TreadlabError
from treadlab.pipeline.graph import load_settings, process_session
from treadlab.pipeline.reprocess import find_sessions
from treadlab.pipeline.scoring import CAUSES, ReferenceSet, load_reference, score_from_z

log = logging.getLogger(__name__)

#: m/s a session's belt speed may lie beyond the cohort's slowest / fastest speed and still be
#: scored: a quarter of the 1 m/s step between the cohort's speeds, where the line is still an
#: interpolation of nearby data rather than an extrapolation.
SPEED_MARGIN_M_S = 0.25
#: Decimals written for every fitted number (mu lines in the metric's unit, sigma).
DIGITS = 4
#: Metrics a built set scores instead of the template's: over-stride as heel lead in % of leg
#: length (heel lead grows with leg length across the cohort's runners at each speed).
BUILT_METRICS = {"overstride": {"metric": "overstride_leg", "unit": "% leg length"}}
#: The template of the shipped default: literature entries for causes the cohort cannot measure.
COHORT_TEMPLATE = "literature"
#: Fukuchi 2017 citation used by ``build_cohort`` unless another is given.
FUKUCHI_2017 = ("Fukuchi RK, Fukuchi CA, Duarte M (2017) A public dataset of running "
                "biomechanics and the effects of running speed on lower extremity kinematics "
                "and kinetics. PeerJ 5:e3298; data: figshare 10.6084/m9.figshare.4543435; "
                "licence CC BY 4.0")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        r = round(v, DIGITS)
        return repr(0.0 if r == 0 else r)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


# --- reading processed sessions ------------------------------------------------------------------

def _read_processed(path: Path, metrics) -> dict | None:
    """Root attrs, ``/derived`` attrs and the contacts columns needed (None when the session
    has not been processed)."""
    with open_archive(path) as f:
        dg = derived_group(f)  # through the external link to the derived file (format 2)
        if dg is None or "contacts" not in dg:
            return None
        g = dg["contacts"]
        cols = {name: g[name][()] for name in ("side", "valid", *metrics) if name in g}
        return {"attrs": {k: attr(f, k) for k in f.attrs},
                "derived": {k: attr(dg, k) for k in dg.attrs},
                "contacts": cols}


def session_values(contacts: dict, metric: str, min_steps_per_side: int) -> dict | None:
    """Medians of one metric over a session's valid steps: ``{"both", "left", "right",
    "n_left", "n_right"}`` (metric unit), or None with fewer than ``min_steps_per_side``
    measured steps on a side (the rule scoring applies)."""
    side = np.asarray(contacts.get("side", []), dtype=np.int64)
    if metric not in contacts or side.size == 0:
        return None
    valid = np.asarray(contacts.get("valid", np.ones(side.size, bool)), dtype=bool)
    x = np.asarray(contacts[metric], dtype=np.float64)
    use = valid & np.isfinite(x)
    left, right = x[use & (side == 0)], x[use & (side == 1)]
    if min(left.size, right.size) < max(1, min_steps_per_side):
        return None
    return {"both": float(np.median(x[use])), "left": float(np.median(left)),
            "right": float(np.median(right)), "n_left": int(left.size),
            "n_right": int(right.size)}


def read_participants(path) -> dict:
    """``participants.csv`` → ``{subject number: row dict}``.

    The subject column is ``Subject`` (or ``subject``); a session belongs to the row whose
    number equals the digits of its ``subject_id`` (``RBDS010`` → 10).

    Raises
    ------
    InputError
        Unreadable file, no subject column, or a subject value that is not a number (names the
        file and the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, None, f"cannot read participants table: {exc.strerror}") from None
    reader = csv.DictReader(text.splitlines())
    key = next((k for k in (reader.fieldnames or []) if k.strip().lower() == "subject"), None)
    if key is None:
        raise InputError(path, "Subject", "no Subject column in the participants table")
    out = {}
    for line, row in enumerate(reader, start=2):
        try:
            out[int(str(row[key]).strip())] = row
        except ValueError:
            raise InputError(path, f"line {line} Subject",
                             f"{row[key]!r} is not a subject number") from None
    return out


def _subject_number(subject_id: str) -> int | None:
    digits = re.findall(r"\d+", str(subject_id))
    return int(digits[-1]) if digits else None


def collect_sessions(archive_dir, causes: dict, min_steps_per_side: int,
                     participants: dict | None = None) -> tuple[list, list]:
    """Per-session medians of every cause metric (``causes``: ``{cause: {"metric": ...}}``).

    Returns
    -------
    rows : list of dict
        ``file`` (relative path), ``session_id``, ``subject_id``, ``runner`` (participant
        number or subject id), ``speed`` (m/s, NaN unknown), ``pipeline_version``,
        ``config_hash``, ``values`` ``{cause: session_values(...) or None}``.
    excluded : list of (relative path, reason)
    """

    root = Path(archive_dir)
    metrics = {c: causes[c]["metric"] for c in CAUSES}
    rows, excluded = [], []
    for path in find_sessions(root):
        rel = path.relative_to(root).as_posix()
        try:
            data = _read_processed(path, set(metrics.values()))
        except (TreadlabError, OSError) as exc:
            excluded.append((rel, f"unreadable: {str(exc).splitlines()[0]}"))
            continue
        if data is None:
            excluded.append((rel, "not processed"))
            continue
        healthy = data["attrs"].get("healthy")
        if healthy is not None and not bool(healthy):
            excluded.append((rel, "healthy = false"))
            continue
        subject_id = str(data["attrs"].get("subject_id", ""))
        runner = subject_id
        if participants is not None:
            number = _subject_number(subject_id)
            if number not in participants:
                excluded.append((rel, f"subject {subject_id!r} not in the participants table"))
                continue
            runner = number
        try:
            speed = float(data["attrs"].get("belt_speed_m_s"))
        except (TypeError, ValueError):
            speed = math.nan
        values = {c: session_values(data["contacts"], m, min_steps_per_side)
                  for c, m in metrics.items()}
        if not any(v is not None for v in values.values()):
            excluded.append((rel, f"no cause measured on >= {min_steps_per_side} steps per side"))
            continue
        rows.append({"file": rel, "session_id": str(data["attrs"].get("session_id", "")),
                     "subject_id": subject_id, "runner": runner, "speed": speed,
                     "pipeline_version": str(data["derived"].get("pipeline_version", "")),
                     "config_hash": str(data["derived"].get("config_hash", "")),
                     "values": values})
    return rows, excluded


# --- fitting -------------------------------------------------------------------------------------

def fit_speed_line(speed, value) -> dict:
    """Least-squares ``value = intercept + slope * speed`` and the residual SD.

    Parameters
    ----------
    speed : (n,) m/s. value : (n,) metric unit; pairs with a NaN are dropped.

    Returns
    -------
    dict
        ``mu_intercept``, ``mu_slope_per_m_s``, ``sigma`` (residual SD, ddof 2; with fewer
        than 3 points or one distinct speed: flat line at the mean, SD ddof 1), ``n``.
    """
    v = np.asarray(speed, dtype=np.float64)
    x = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(v) & np.isfinite(x)
    v, x = v[ok], x[ok]
    n = int(x.size)
    if n >= 3 and np.unique(v).size >= 2:
        design = np.stack([np.ones(n), v], axis=1)
        coef, *_ = np.linalg.lstsq(design, x, rcond=None)
        resid = x - design @ coef
        sigma = float(np.sqrt((resid ** 2).sum() / (n - 2)))
        return {"mu_intercept": float(coef[0]), "mu_slope_per_m_s": float(coef[1]),
                "sigma": sigma, "n": n}
    if n >= 2:
        return {"mu_intercept": float(x.mean()), "mu_slope_per_m_s": 0.0,
                "sigma": float(x.std(ddof=1)), "n": n}
    return {"mu_intercept": float(x.mean()) if n else math.nan, "mu_slope_per_m_s": 0.0,
            "sigma": math.nan, "n": n}


def fit_cause(rows: list, cause: str) -> dict | None:
    """The speed model of one cause from session rows (both sides and each side), or None when
    fewer than two sessions measured it."""
    use = [r for r in rows if r["values"].get(cause) is not None and np.isfinite(r["speed"])]
    if len(use) < 2:
        return None
    speed = np.array([r["speed"] for r in use])
    model = {}
    for side in ("", "left", "right"):
        fit = fit_speed_line(speed, [r["values"][cause][side or "both"] for r in use])
        pre = f"{side}_" if side else ""
        model[f"{pre}mu_intercept"] = fit["mu_intercept"]
        model[f"{pre}mu_slope_per_m_s"] = fit["mu_slope_per_m_s"]
        model[f"{pre}sigma"] = fit["sigma"]
    model["speed_min_m_s"] = float(speed.min())
    model["speed_max_m_s"] = float(speed.max())
    model["speed_margin_m_s"] = SPEED_MARGIN_M_S
    model["n_sessions"] = len(use)
    model["n_runners"] = len({r["runner"] for r in use})
    speeds = sorted({round(float(s), 2) for s in speed})
    model["speeds_m_s"] = speeds
    model["sessions_per_speed"] = [int(sum(1 for s in speed if round(float(s), 2) == k))
                                   for k in speeds]
    return model


def _flat_fit(rows: list, cause: str) -> dict | None:
    """Mean and SD (ddof 1, rounded) of a cause over sessions when none has a belt speed (at
    least two sessions, SD > 0); None otherwise."""
    if any(np.isfinite(r["speed"]) for r in rows if r["values"].get(cause) is not None):
        return None
    x = np.array([r["values"][cause]["both"] for r in rows if r["values"].get(cause) is not None])
    if x.size < 2 or not x.std(ddof=1) > 0:
        return None
    return {"mu": round(float(x.mean()), DIGITS), "sigma": round(float(x.std(ddof=1)), DIGITS),
            "n": int(x.size)}


def _rounded(model: dict) -> dict:
    """The model as written to (and read back from) the TOML: numbers rounded to DIGITS."""
    return {k: (round(v, DIGITS) if isinstance(v, float) else v) for k, v in model.items()}


def reference_from_rows(rows: list, template, ref_id: str = "loo") -> object:
    """An in-memory :class:`~treadlab.pipeline.scoring.ReferenceSet` fitted to ``rows``
    (leave-one-out checks); causes no row measures keep the template's entry."""

    causes = {}
    for cause in CAUSES:
        base = {k: v for k, v in template.causes[cause].items()
                if k not in ("bands", "speed_model")}
        base.update(BUILT_METRICS.get(cause, {}))
        model = fit_cause(rows, cause)
        if model is not None and model["sigma"] > 0:
            base["speed_model"] = _rounded(model)
            base.pop("provisional", None)
        causes[cause] = base
    return ReferenceSet(id=ref_id, title=ref_id, kind="cohort", causes=causes,
                        path=Path(ref_id), sha256="")


def leave_one_runner_out(rows: list, template, min_steps_per_side: int = 20) -> list:
    """Score every session against a reference fitted to the other runners' sessions.

    Returns
    -------
    list of dict
        One per session and cause: ``runner``, ``file``, ``speed``, ``cause``, ``value``,
        ``z``, ``score`` (NaN when not scorable), ``status``.
    """

    out = []
    for runner in sorted({r["runner"] for r in rows}, key=str):
        ref = reference_from_rows([r for r in rows if r["runner"] != runner], template)
        for r in (r for r in rows if r["runner"] == runner):
            for cause in CAUSES:
                p = ref.params(cause, r["speed"])
                v = r["values"].get(cause)
                z = score = math.nan
                if v is None:
                    status = "not measured"
                elif "unscorable" in p:
                    status = f"not scorable: {p['unscorable']}"
                elif "speed_model" not in ref.causes[cause]:
                    status = "not built from the cohort"
                else:
                    sign = 1.0 if p["worse"] == "higher" else -1.0
                    z = sign * (v["both"] - p["mu"]) / p["sigma"]
                    score = score_from_z(z)
                    status = "scored"
                out.append({"runner": runner, "file": r["file"], "speed": r["speed"],
                            "cause": cause, "value": v["both"] if v else math.nan, "z": z,
                            "score": score, "status": status})
    return out


# --- writing -------------------------------------------------------------------------------------

def _participants_summary(participants: dict | None, runners) -> list[str]:
    if not participants:
        return []
    rows = [participants[r] for r in sorted(runners) if r in participants]

    def col(name):
        key = next((k for k in rows[0] if k.strip().lower() == name), None) if rows else None
        vals = []
        for row in rows:
            try:
                vals.append(float(row[key]))
            except (TypeError, ValueError, KeyError):
                pass
        return vals

    lines = []
    sex_key = next((k for k in (rows[0] if rows else {}) if k.strip().lower() in
                    ("gender", "sex")), None)
    if sex_key:
        sexes = [str(r[sex_key]).strip().upper() for r in rows]
        counts = ", ".join(f"{sexes.count(s)} {s}" for s in sorted(set(sexes)))
        lines.append(f"sex = {_toml_value(counts)}")
    for name, unit in (("age", "years"), ("height", "cm"), ("mass", "kg")):
        vals = col(name)
        if vals:
            lines.append(f"{name}_range_{unit} = {_toml_value([min(vals), max(vals)])}")
    return lines


def template_causes(template) -> dict:
    """The template's cause entries without bands or speed models (callers apply
    :data:`BUILT_METRICS`)."""

    causes = {}
    for cause in CAUSES:
        base = {k: v for k, v in template.causes[cause].items()
                if k not in ("bands", "speed_model")}
        causes[cause] = base
    return causes


def build_reference(archive_dir, output, config_path=None, participants=None,
                    cohort: str | None = None, name: str | None = None, template=None,
                    folder_label: str | None = None, command: str | None = None) -> str:
    """Build a speed-conditioned reference set from processed healthy sessions.

    Parameters
    ----------
    archive_dir : str or os.PathLike
        Folder of processed sessions (searched recursively for ``*.h5``). A session whose
        root attribute ``healthy`` is false is left out (and listed as excluded).
    output : str or os.PathLike
        Reference-set TOML to write.
    config_path : str, optional
        Lab TOML: its ``min_steps_per_side`` applies and, unless ``template`` is given, its
        reference set is the template (metric, unit, direction, reporting limits, and the
        entries of causes no session measures). Over-stride is built on
        :data:`BUILT_METRICS` whatever the template says.
    participants : str or os.PathLike, optional
        Participants table (CSV with a ``Subject`` column): sessions are matched to runners
        through it (a session of a runner not in it is excluded), leave-one-runner-out groups
        by runner, and age / height / mass ranges and sex counts go into the provenance.
    cohort : str, optional
        Citation of the cohort, written into the provenance (default: the folder's name).
    name : str, optional
        Prefix of the reference id (default: the output's stem without ``reference_``).
    template : str or os.PathLike, optional
        Reference set (shipped id or TOML) used as the template instead of the lab's.
    folder_label : str, optional
        Folder name written into the provenance (default: ``archive_dir``'s name).
    command : str, optional
        The command that made the set, written into the provenance.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        Fewer than two usable processed sessions, or an unreadable participants table.
    """

    settings = load_settings(config_path)
    template = settings.reference if template is None else load_reference(template)
    causes = template_causes(template)
    for cause, over in BUILT_METRICS.items():
        causes[cause] = {**causes[cause], **over}
    root = Path(archive_dir)
    table = read_participants(participants) if participants is not None else None
    rows, excluded = collect_sessions(root, causes, settings.min_steps_per_side, table)
    if len(rows) < 2:
        raise InputError(root, None, f"{len(rows)} usable processed session(s); a reference set "
                                     f"needs at least 2 (run treadlab reprocess first)")
    body = []
    for cause in CAUSES:
        base = causes[cause]
        model = fit_cause(rows, cause)
        body.append(f"\n[causes.{cause}]")
        flat = _flat_fit(rows, cause) if model is None else None
        if flat is not None:
            # no belt speeds known: one mean and SD, scored at any speed (not speed-conditioned)
            entry = {k: base[k] for k in ("metric", "unit", "worse") if k in base}
            entry.update(mu=flat["mu"], sigma=flat["sigma"], normal_low=flat["mu"] - flat["sigma"],
                         normal_high=flat["mu"] + flat["sigma"], provisional=False,
                         n_sessions=flat["n"])
            for key in ("not_scored_above", "not_scored_below"):
                if key in base:
                    entry[key] = base[key]
            entry["source"] = (f"built by treadlab from {flat['n']} sessions with no belt speed: "
                               f"mean and SD (ddof 1) of per-session medians, not conditioned on "
                               f"speed")
            for key, value in entry.items():
                body.append(f"{key} = {_toml_value(value)}")
            continue
        if model is None or not model["sigma"] > 0:
            n = 0 if model is None else model["n_sessions"]
            body.append(f"# measured on {n} session(s): the entry of {template.id} is kept")
            entry = dict(template.causes[cause])
            entry.pop("bands", None)
            entry.pop("speed_model", None)
            entry["from_template"] = template.id
            entry["n_sessions"] = n
            for key, value in entry.items():
                if isinstance(value, (bool, int, float, str)):
                    body.append(f"{key} = {_toml_value(value)}")
            continue
        model = _rounded(model)
        mid = 0.5 * (model["speed_min_m_s"] + model["speed_max_m_s"])
        mu = model["mu_intercept"] + model["mu_slope_per_m_s"] * mid
        entry = {k: base[k] for k in ("metric", "unit", "worse") if k in base}
        entry.update(mu=mu, sigma=model["sigma"], normal_low=mu - model["sigma"],
                     normal_high=mu + model["sigma"], provisional=False)
        for key in ("not_scored_above", "not_scored_below"):
            if key in base:
                entry[key] = base[key]
        entry["source"] = (f"built by treadlab from {model['n_sessions']} sessions of "
                           f"{model['n_runners']} runners (cohort: see [provenance]): "
                           f"per-session medians, least-squares line against belt speed, "
                           f"residual SD")
        entry["note"] = ("mu and normal_low/high are the line at the middle of the cohort's "
                         "speeds; scoring uses speed_model at the session's belt speed")
        for key, value in entry.items():
            body.append(f"{key} = {_toml_value(value)}")
        body.append(f"\n[causes.{cause}.speed_model]")
        for key, value in model.items():
            body.append(f"{key} = {_toml_value(value)}")
    content = "\n".join(body)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    prefix = name or Path(output).stem.removeprefix("reference_")
    ref_id = f"{prefix}-{digest}"
    runners = {r["runner"] for r in rows}
    speeds = sorted({round(r["speed"], 2) for r in rows if np.isfinite(r["speed"])})
    head = [
        "# treadlab reference set, written by `treadlab reference build` (docs/scoring.md).",
        "# Per cause: mu(v) = mu_intercept + mu_slope_per_m_s * v at belt speed v (m/s), sigma =",
        "# residual SD of the sessions around that line; z = (x - mu(v)) / sigma signed so that",
        "# worse is positive; score = 100 / (1 + exp(-1.5 (z - 1))). A session whose belt speed",
        "# lies outside [speed_min_m_s - speed_margin_m_s, speed_max_m_s + speed_margin_m_s] or",
        "# is unknown is not scorable on that cause. left_* / right_*: the same per side.",
        "",
        "[reference]",
        f"id = {_toml_value(ref_id)}",
        f"title = {_toml_value(f'{len(rows)} sessions of {len(runners)} runners ({folder_label or root.name}), speed-conditioned')}",
        'kind = "cohort"',
        f"template = {_toml_value(template.id)}",
        "",
        "[provenance]",
        f"cohort = {_toml_value(cohort or root.name)}",
        f"folder = {_toml_value(folder_label or root.name)}",
        *([f"command = {_toml_value(command)}"] if command else []),
        f"runners = {len(runners)}",
        f"trials = {len(rows)}",
        f"speeds_m_s = {_toml_value(speeds)}",
        f"software = {_toml_value(sorted({r['pipeline_version'] for r in rows}))}",
        f"config_hashes = {_toml_value(sorted({r['config_hash'] for r in rows}))}",
        f"min_steps_per_side = {settings.min_steps_per_side}",
        f"summary = {_toml_value('per session: median of the metric over valid steps (both sides, and each side), at least min_steps_per_side per side')}",
        f"speed_model = {_toml_value('least-squares line of session values against belt speed; sigma = residual SD (ddof 2)')}",
        f"speed_rule = {_toml_value(f'scored only at a known belt speed within the cohort speeds +/- {SPEED_MARGIN_M_S:g} m/s; otherwise not scorable, with the reason')}",
    ]
    if participants is not None:
        ptext = Path(participants).read_bytes()
        head += [f"participants = {_toml_value(Path(participants).name)}",
                 f"participants_sha256 = {_toml_value(hashlib.sha256(ptext).hexdigest())}"]
        head += _participants_summary(table, runners)
    head += [
        f"sessions = {_toml_value([r['file'] for r in rows])}",
        f"belt_speeds_m_s = {_toml_value([r['speed'] for r in rows])}",
        f"excluded = {_toml_value([f'{p}: {why}' for p, why in excluded])}",
    ]
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(head) + "\n" + content + "\n", encoding="utf-8")
    try:
        load_reference(tmp)  # what we wrote must be a valid reference set
    except TreadlabError:
        tmp.unlink()
        raise
    tmp.replace(out)
    log.info("reference set %s from %d sessions of %d runners (%d excluded) -> %s", ref_id,
             len(rows), len(runners), len(excluded), out)
    return str(out)


# --- a cohort of C3D trials ----------------------------------------------------------------------

_TRIAL = re.compile(r"^(?P<subject>.+?)run(?:T)?(?P<speed>\d\d)$")


def find_cohort_trials(folders) -> list[dict]:
    """C3D trials in the Fukuchi 2017 layout under ``folders`` (recursively).

    A trial is ``SUBJECTrunTvv.c3d`` (belt speed vv/10 m/s) with ``SUBJECTstatic.c3d`` in the
    same folder or in any of ``folders``. Returns sorted ``{"subject", "speed", "c3d",
    "static"}`` dicts; a trial without a static file has ``static`` None.
    """
    trials, statics = {}, {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(folder, None, "not a folder")
        for p in sorted(folder.rglob("*.c3d")):
            if p.stem.endswith("static"):
                statics.setdefault(p.stem[:-len("static")], p)
                continue
            m = _TRIAL.match(p.stem)
            if m:
                key = (m["subject"], int(m["speed"]))
                trials.setdefault(key, p)
    return [{"subject": s, "speed": v / 10.0, "c3d": trials[(s, v)], "static": statics.get(s)}
            for s, v in sorted(trials)]


def prepare_cohort(folders, work, participants) -> list[Path]:
    """Import (with the static trial, the body mass of ``participants`` and the belt speed of
    the file name) and process every cohort trial into ``work``; archives already there are
    processed again only when out of date. Returns the archives."""

    table = read_participants(participants)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    fingerprint = load_settings(None).fingerprint()
    done = []
    for trial in find_cohort_trials(folders):
        number = _subject_number(trial["subject"])
        row = table.get(number)
        if row is None:
            log.warning("%s: subject %s not in %s, skipped", trial["c3d"].name, trial["subject"],
                        Path(participants).name)
            continue
        mass = next((row[k] for k in row if k.strip().lower() == "mass"), None)
        try:
            mass = float(mass)
        except (TypeError, ValueError):
            raise InputError(participants, f"Subject {number} Mass",
                             f"{mass!r} is not a body mass in kg") from None
        dst = work / f"{trial['subject']}_T{int(round(trial['speed'] * 10)):02d}.h5"
        if not dst.exists():  # import_c3d writes atomically and links dst's derived file
            import_c3d(trial["c3d"], dst, subject_id=trial["subject"], body_mass_kg=mass,
                       static_path=trial["static"], belt_speed_m_s=trial["speed"])
        with open_archive(dst) as f:
            dg = derived_group(f)
            current = dg is not None and all(
                str(attr(dg, k, "")) == str(v) for k, v in fingerprint.items()
                if k != "reference_sha256" and k != "reference_id")
        if not current:
            process_session(dst)
        done.append(dst)
    return done


def build_cohort(folders, output, participants=None, work=None, cohort: str | None = None,
                 name: str | None = None) -> str:
    """``treadlab reference build-cohort``: import, process and build in one command.

    Parameters
    ----------
    folders : sequence of str or os.PathLike
        Folders holding the trials (``find_cohort_trials``); the first one holds
        ``participants.csv`` unless ``participants`` is given.
    output : str or os.PathLike
        Reference-set TOML to write.
    participants : str or os.PathLike, optional
    work : str or os.PathLike, optional
        Folder for the processed archives (kept, re-used when up to date); default: a
        temporary folder removed afterwards.
    cohort : str, optional
        Citation written into the set (default: Fukuchi, Fukuchi & Duarte 2017).
    """
    folders = [Path(f) for f in folders]
    if not folders:
        raise InputError("build-cohort", None, "no cohort folder given")
    participants = Path(participants) if participants else folders[0] / "participants.csv"
    if not participants.exists():
        raise InputError(participants, None, "participants table not found (--participants)")
    if not find_cohort_trials(folders):
        raise InputError(folders[0], None, "no SUBJECTrunTvv.c3d trials found")
    tmp = None
    if work is None:
        tmp = tempfile.mkdtemp(prefix="treadlab-cohort-")
        work = Path(tmp) / "cohort"
    try:
        prepare_cohort(folders, work, participants)
        return build_reference(work, output, participants=participants,
                               cohort=cohort or FUKUCHI_2017, name=name,
                               template=COHORT_TEMPLATE, folder_label=folders[0].name,
                               command=("treadlab reference build-cohort "
                                        + " ".join(f.name for f in folders)
                                        + f" -o {Path(output).name}"))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
