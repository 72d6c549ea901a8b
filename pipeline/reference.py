"""Build a lab's own reference set from processed healthy sessions (``treadlab reference build``).

For every processed session in a folder, each cause's metric is summarised exactly as scoring
does (median over valid steps, at least ``min_steps_per_side`` per side). Across sessions the
mean and the standard deviation (ddof = 1) of those session values become ``mu`` and ``sigma``,
overall and per belt-speed band. The result is a reference-set TOML that
:func:`treadlab.pipeline.scoring.load_reference` reads, with its provenance: which sessions,
which pipeline version and config produced them.

Which sessions count as healthy is the lab's choice of folder. A session whose root attribute
``healthy`` is present and false is left out (and listed as excluded).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from treadlab.acquisition.archive import attr, open_archive
from treadlab.config.errors import InputError, TreadlabError
from treadlab.pipeline.graph import load_settings
from treadlab.pipeline.reprocess import find_sessions
from treadlab.pipeline.scoring import CAUSES, load_reference, score_causes, CAUSE_METRIC

log = logging.getLogger(__name__)

#: Default belt-speed band edges (m/s): < 3.0, 3.0-4.0, >= 4.0 (slow / moderate / fast running).
SPEED_EDGES = (3.0, 4.0)
#: Fewest sessions a band needs before it gets its own mu/sigma.
MIN_SESSIONS_PER_BAND = 3


def _read_processed(path: Path) -> dict | None:
    """Root attrs, ``/derived`` attrs and the contacts columns the causes need (None when the
    session has not been processed)."""

    with open_archive(path) as f:
        if "derived/contacts" not in f:
            return None
        g = f["derived/contacts"]
        cols = {}
        for name in ("side", "valid", *CAUSE_METRIC.values()):
            if name in g:
                cols[name] = g[name][()]
        return {"attrs": {k: attr(f, k) for k in f.attrs},
                "derived": {k: attr(f["derived"], k) for k in f["derived"].attrs},
                "contacts": cols}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
        return repr(round(v, 6))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def build_reference(archive_dir, output, config_path=None, speed_edges=SPEED_EDGES) -> str:
    """Reference means and SDs per cause metric from processed healthy sessions.

    Parameters
    ----------
    archive_dir : str or os.PathLike
        Folder of processed sessions (searched recursively for ``*.h5``).
    output : str or os.PathLike
        Reference-set TOML to write.
    config_path : str, optional
        Lab TOML: its reference set is the template (metric, unit, direction, reporting limits)
        and its ``min_steps_per_side`` applies.
    speed_edges : sequence of float
        Belt-speed band edges (m/s).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        Fewer than two usable processed sessions in the folder.
    """

    settings = load_settings(config_path)
    template = settings.reference
    root = Path(archive_dir)
    used, excluded = [], []
    values = {c: [] for c in CAUSES}
    for path in find_sessions(root):
        try:
            data = _read_processed(path)
        except (TreadlabError, OSError) as exc:
            excluded.append((path, f"unreadable: {str(exc).splitlines()[0]}"))
            continue
        if data is None:
            excluded.append((path, "not processed"))
            continue
        healthy = data["attrs"].get("healthy")
        if healthy is not None and not bool(healthy):
            excluded.append((path, "healthy = false"))
            continue
        speed = data["attrs"].get("belt_speed_m_s")
        try:
            speed = float(speed)
        except (TypeError, ValueError):
            speed = math.nan
        table = score_causes(data["contacts"], template,
                             min_steps_per_side=settings.min_steps_per_side)
        row = {"file": str(path.relative_to(root)),
               "session_id": str(data["attrs"].get("session_id", "")),
               "belt_speed_m_s": speed,
               "pipeline_version": str(data["derived"].get("pipeline_version", "")),
               "config_hash": str(data["derived"].get("config_hash", ""))}
        any_value = False
        for i, cause in enumerate(CAUSES):
            ok = not table["status"][i].startswith("not")
            # a value reported above a "not scored" limit still belongs to a healthy runner
            if ok or "reported only" in table["status"][i]:
                values[cause].append((speed, float(table["value"][i])))
                any_value = True
        if any_value:
            used.append(row)
        else:
            excluded.append((path, "no cause measurable on enough steps"))
    if len(used) < 2:
        raise InputError(root, None, f"{len(used)} usable processed session(s); a reference set "
                                     f"needs at least 2 (run treadlab reprocess first)")

    edges = [0.0, *sorted(float(e) for e in speed_edges), math.inf]
    lines = []
    now = datetime.now(timezone.utc)
    body = []
    for cause in CAUSES:
        base = {k: v for k, v in template.causes[cause].items() if k != "bands"}
        pairs = values[cause]
        x = np.array([v for _, v in pairs], dtype=np.float64)
        s = np.array([sp for sp, _ in pairs], dtype=np.float64)
        body.append(f"\n[causes.{cause}]")
        if x.size < 2:
            body.append(f"# {x.size} session(s) measured {base['metric']}: template values kept")
            entry = dict(base)
            entry["provisional"] = bool(base.get("provisional", False))
            entry["source"] = f"template {template.id}: {base.get('source', '')}"
            entry["n_sessions"] = int(x.size)
        else:
            mu, sigma = float(x.mean()), float(x.std(ddof=1))
            note = None
            if not sigma > 0:
                sigma = float(base["sigma"])
                note = f"SD across sessions was 0: sigma of {template.id} kept"
            entry = {k: base[k] for k in ("metric", "unit", "worse") if k in base}
            entry.update(mu=mu, sigma=sigma, normal_low=mu - sigma, normal_high=mu + sigma,
                         n_sessions=int(x.size), provisional=False,
                         source=f"built from {x.size} processed sessions in {root} "
                                f"(mean and SD of per-session medians)")
            if note:
                entry["sigma_note"] = note
            for key in ("not_scored_above", "not_scored_below"):
                if key in base:
                    entry[key] = base[key]
        for key, value in entry.items():
            if isinstance(value, (bool, int, float, str)):
                body.append(f"{key} = {_toml_value(value)}")
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (s >= lo) & (s < hi)
            if sel.sum() >= MIN_SESSIONS_PER_BAND:
                mu, sd = float(x[sel].mean()), float(x[sel].std(ddof=1))
                if not sd > 0:
                    continue
                body += [f"\n[[causes.{cause}.bands]]", f"speed_min_m_s = {_toml_value(lo)}",
                         f"speed_max_m_s = {_toml_value(hi)}", f"mu = {_toml_value(mu)}",
                         f"sigma = {_toml_value(sd)}", f"normal_low = {_toml_value(mu - sd)}",
                         f"normal_high = {_toml_value(mu + sd)}",
                         f"n_sessions = {int(sel.sum())}"]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:10]
    ref_id = f"built-{Path(output).stem}-{digest}"
    lines += [
        "# treadlab reference set built by `treadlab reference build` from processed sessions.",
        "# mu / sigma: mean and SD (ddof 1) across sessions of each session's median metric.",
        "",
        "[reference]",
        f"id = {_toml_value(ref_id)}",
        f"title = {_toml_value(f'built from {len(used)} sessions in {root.name}')}",
        'kind = "built"',
        f"created = {_toml_value(now.isoformat(timespec='seconds'))}",
        f"template = {_toml_value(template.id)}",
        f"speed_edges_m_s = {_toml_value([float(e) for e in speed_edges])}",
        "",
        "[provenance]",
        f"archive = {_toml_value(str(root.resolve()))}",
        f"min_steps_per_side = {settings.min_steps_per_side}",
        f"sessions = {_toml_value([u['file'] for u in used])}",
        f"session_ids = {_toml_value([u['session_id'] for u in used])}",
        f"belt_speeds_m_s = {_toml_value([u['belt_speed_m_s'] for u in used])}",
        f"pipeline_versions = {_toml_value(sorted({u['pipeline_version'] for u in used}))}",
        f"config_hashes = {_toml_value(sorted({u['config_hash'] for u in used}))}",
        f"excluded = {_toml_value([f'{p.relative_to(root)}: {why}' for p, why in excluded])}",
    ]
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines + body) + "\n", encoding="utf-8")
    tmp.replace(out)
    load_reference(out)  # what we wrote must be a valid reference set
    log.info("reference set %s from %d sessions (%d excluded) -> %s", ref_id, len(used),
             len(excluded), out)
    return str(out)
