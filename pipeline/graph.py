"""Process one session as a dask graph (docs/design.md §7): derive, score, and one atomic write.

The graph for one archive::

    load_meta ──────────────────────────────────────────────────┐
    load_markers ► marker_task (gap fill, filter,             │
         │         joint angles) ─────────────┐                 │
         ▼ (read after: HDF5 reads serialise)  ├► step_task ► score_task ► write_task
    load_force ──► force_task (filter, re-zero, contacts,     │  (per-contact kinematics)
                   sides, force metrics) ──────┘

``load_*`` tasks receive the *path* and open the file themselves (docs/design.md §13.4:
workers get paths, never open files). The only task that writes is ``write_task``: it hands everything to
:func:`treadlab.acquisition.archive.write_derived`, which copies the archive beside itself,
writes ``/derived`` in the copy and atomically replaces the original, so the archive is never
edited in place. :func:`session_graph` builds the graph; :func:`process_session` runs it on the
local threaded scheduler (the two branches in parallel). :func:`run_session` runs the same task
functions one after the other in one call, reading the archive once: that is the single task per
session that :mod:`treadlab.pipeline.reprocess` maps over a cluster.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dask
import numpy as np
from dask import delayed
from dask.base import tokenize

from treadlab.acquisition.archive import (attr, open_archive, read_force, read_markers, read_meta,
                                          write_derived)
from treadlab.config import load_lab, software_version
from treadlab.config.errors import InputError
from treadlab.config.markers import to_cgm
from treadlab.pipeline import derive
from treadlab.pipeline.derive import DeriveSettings
from treadlab.pipeline.scoring import load_reference, reference_path, score_causes

log = logging.getLogger(__name__)

#: Bumped whenever the pipeline's output for the same input and config changes.
PIPELINE_REVISION = 1


def pipeline_version() -> str:
    """``"treadlab X.Y.Z pipeline N"``: stored as ``/derived`` attr ``pipeline_version``."""
    return f"{software_version()} pipeline {PIPELINE_REVISION}"


# --- settings ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSettings:
    """Everything a session graph needs from the lab config, picklable for workers.

    ``derive`` are the :class:`treadlab.pipeline.derive.DeriveSettings`; ``config_hash`` is
    ``LabConfig.hash()``; ``reference`` the :class:`~treadlab.pipeline.scoring.ReferenceSet`
    itself (read once by the client, shipped inside the graph, so cluster workers need neither
    the lab TOML nor the reference file).
    """

    derive: object
    config_hash: str
    reference: object
    min_steps_per_side: int
    marker_names: tuple = ()

    def fingerprint(self) -> dict:
        """The ``/derived`` attributes that decide whether a session is up to date."""
        return {"pipeline_version": pipeline_version(), "config_hash": self.config_hash,
                "reference_id": self.reference.id, "reference_sha256": self.reference.sha256}


def load_settings(config_path=None) -> RunSettings:
    """Read the lab config (``None`` = the shipped simulated lab) into :class:`RunSettings`.

    Raises
    ------
    ConfigError
        From the config loader or an unknown reference set, before any session is touched.
    """
    cfg = load_lab(config_path)
    scoring = getattr(cfg, "scoring", None)
    ref_spec = getattr(scoring, "reference", "default") if scoring is not None else "default"
    ref_file = reference_path(ref_spec)
    if not ref_file.is_absolute() and config_path is not None and not ref_file.exists():
        ref_file = Path(config_path).resolve().parent / ref_file  # relative to the lab TOML
    reference = load_reference(ref_file)  # fails early (ConfigError) on a bad reference set
    min_steps = int(getattr(scoring, "min_steps_per_side", 20)) if scoring is not None else 20
    names = getattr(cfg, "marker_names", None) or {}
    return RunSettings(derive=DeriveSettings.from_config(cfg), config_hash=str(cfg.hash()),
                       reference=reference, min_steps_per_side=min_steps,
                       marker_names=tuple(sorted(dict(names).items())))


# --- load tasks: paths in, arrays out ------------------------------------------------------------

def load_meta(path) -> dict:
    """Root attributes and ``/subject`` of an archive (cheap: no datasets are read).

    Returns
    -------
    dict
        ``{"attrs": {...}, "subject": {...}}`` with plain Python values.
    """
    with open_archive(path) as f:
        return read_meta(f)


def _loaded(_markers) -> bool:
    return True


def load_force(path, after=None):
    """``/raw/force`` as :class:`treadlab.acquisition.archive.ForceData` (counts not read).
    ``after`` only orders the read in the graph."""
    with open_archive(path) as f:
        return read_force(f, path)


def load_markers(path, marker_names: tuple = ()):
    """``/raw/markers`` as :class:`treadlab.acquisition.archive.MarkerData`, labels mapped to CGM
    names (built-in aliases plus the lab's ``[marker_names]``)."""
    with open_archive(path) as f:
        return _read_markers(f, path, marker_names)


def _read_markers(f, path, marker_names: tuple = ()):
    markers = read_markers(f, path)
    labels = markers.labels
    mapped = list(to_cgm(labels, extra=dict(marker_names) or None))
    seen: set[str] = set()
    for i, name in enumerate(mapped):  # two markers on one CGM name: the second keeps its own
        if name in seen:
            mapped[i] = labels[i]
        seen.add(mapped[i])
    labels = mapped
    markers.labels = labels
    return markers


# --- compute and write tasks --------------------------------------------------------------------

def _body_mass(meta: dict) -> float | None:
    value = meta["attrs"].get("body_mass_kg")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def force_task(path, force, meta: dict, settings: RunSettings) -> dict:
    try:
        return derive.force_task(force, _body_mass(meta), settings.derive)
    except InputError as exc:  # derive knows arrays, not files: name the file here
        raise InputError(path, exc.where, exc.message) from None


def marker_task(markers, meta: dict, settings: RunSettings) -> dict:
    return derive.marker_task(markers, meta["subject"], settings.derive)


def step_task(force_out: dict, marker_out: dict, settings: RunSettings) -> dict:
    return derive.step_task(force_out, marker_out, settings.derive)


def score_task(contacts: dict, marker_out: dict, meta: dict, settings: RunSettings) -> dict:
    speed = meta["attrs"].get("belt_speed_m_s")
    try:
        speed = float(speed)
    except (TypeError, ValueError):
        speed = None
    return score_causes(contacts, settings.reference,
                        min_steps_per_side=settings.min_steps_per_side, speed_m_s=speed,
                        reasons=marker_out.get("metric_reasons"))


def write_task(path, force_out: dict, marker_out: dict, contacts: dict, scores: dict,
               settings: RunSettings) -> dict:
    """The single write: ``/derived`` via the atomic ``write_derived``; returns the summary."""
    ref = settings.reference
    attrs = dict(settings.fingerprint())
    attrs.update({
        "processed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference_title": ref.title,
        "min_steps_per_side": settings.min_steps_per_side,
    })
    attrs.update(force_out["attrs"])
    attrs.update(marker_out["attrs"])
    derived = {"contacts": contacts, "angles": marker_out["angles"], "scores": scores}
    write_derived(path, derived, attrs)
    valid = np.asarray(contacts["valid"], bool)
    return {
        "session": str(path),
        "contacts": int(valid.size),
        "valid_contacts": int(valid.sum()),
        "body_weight_n": round(float(force_out["attrs"]["body_weight_n"]), 1),
        "body_weight_source": force_out["attrs"]["body_weight_source"],
        "reference_id": ref.id,
        "config_hash": settings.config_hash,
        "scores": {str(c): (None if not np.isfinite(s) else round(float(s), 1))
                   for c, s in zip(scores["cause"], scores["score"])},
        "status": {str(c): str(s) for c, s in zip(scores["cause"], scores["status"])},
    }


def run_session(path, settings: RunSettings) -> dict:
    """The whole session graph as one call in the calling process: one task per session for
    :mod:`treadlab.pipeline.reprocess`.

    The same task functions as :func:`session_graph`, run one after the other: the archive is
    opened once (root attributes, markers and force in one pass), the branches run in turn, and
    the only write is ``write_task``'s atomic ``write_derived``. On a cluster of single-threaded
    worker processes a session's intermediate arrays then never leave the worker and the
    scheduler handles one task per session instead of eight (docs/design.md §7: workers get
    paths).

    Returns
    -------
    dict
        The summary of :func:`write_task`.

    Raises
    ------
    InputError
        The file is not a readable archive or lacks a required dataset.
    """
    path = str(path)
    with open_archive(path) as f:
        meta = read_meta(f)
        markers = _read_markers(f, path, settings.marker_names)
        force = read_force(f, path)
    fo = force_task(path, force, meta, settings)
    del force
    mo = marker_task(markers, meta, settings)
    del markers
    steps = step_task(fo, mo, settings)
    scores = score_task(steps, mo, meta, settings)
    return write_task(path, fo, mo, steps, scores, settings)


def session_graph(path, settings: RunSettings, name: str | None = None):
    """The dask graph (``dask.delayed``) processing one archive; computing it returns the
    summary dict and has written ``/derived``.

    Parameters
    ----------
    path : str
        The archive. Only the path enters the graph (workers open the file themselves).
    settings : RunSettings
    name : str, optional
        Key prefix (default: a token of the path), so tasks of many sessions stay apart.
    """
    path = str(path)
    tok = name or tokenize(path, settings)

    def d(fn, label):
        return delayed(fn, pure=False, name=f"{label}-{tok}")

    meta = d(load_meta, "load_meta")(path, dask_key_name=f"load_meta-{tok}")
    markers = d(load_markers, "load_markers")(path, settings.marker_names,
                                              dask_key_name=f"load_markers-{tok}")
    # HDF5 reads hold the library lock, so two loads in one process only interleave: read the
    # markers (the longer branch) first and the force after them (a tiny token, no data moves)
    loaded = delayed(_loaded, pure=False)(markers, dask_key_name=f"markers_loaded-{tok}")
    force = d(load_force, "load_force")(path, after=loaded, dask_key_name=f"load_force-{tok}")
    fo = delayed(force_task)(path, force, meta, settings, dask_key_name=f"contacts-{tok}")
    mo = delayed(marker_task)(markers, meta, settings, dask_key_name=f"angles-{tok}")
    steps = delayed(step_task)(fo, mo, settings, dask_key_name=f"steps-{tok}")
    scores = delayed(score_task)(steps, mo, meta, settings, dask_key_name=f"scores-{tok}")
    return delayed(write_task)(path, fo, mo, steps, scores, settings,
                               dask_key_name=f"write-{tok}")


def process_session(path, config_path=None) -> dict:
    """Derive, score and store one session (``treadlab process``).

    Runs :func:`session_graph` on dask's local threaded scheduler (the force and marker
    branches run in parallel; NumPy, SciPy and the Cython kernels release the GIL).

    Parameters
    ----------
    path : str or os.PathLike
        A ``treadlab.session`` archive (or any file with the minimum contract of
        docs/archive.md §2).
    config_path : str or os.PathLike, optional
        Lab TOML (thresholds, filters, reference set); ``None`` = the shipped simulated lab.

    Returns
    -------
    dict
        Summary: ``session``, ``contacts``, ``valid_contacts``, ``body_weight_n``,
        ``reference_id``, ``scores`` {cause: 0-100 or None}, ``status`` {cause: text},
        ``elapsed_s``.

    Raises
    ------
    InputError
        The file is missing, not HDF5 or lacks a required dataset (one line naming it).
    ConfigError
        The lab config or reference set is invalid.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    settings = load_settings(config_path)
    t0 = time.perf_counter()
    (summary,) = dask.compute(session_graph(str(path), settings), scheduler="threads",
                              num_workers=3)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    log.info("processed %s in %.2f s", path, summary["elapsed_s"])
    return summary


def derived_fingerprint(path) -> dict | None:
    """The ``/derived`` attributes that decide whether ``path`` is up to date (None: never
    processed). Reads attributes only."""
    with open_archive(path) as f:
        if "derived" not in f:
            return None
        g = f["derived"]
        return {k: attr(g, k) for k in ("pipeline_version", "config_hash", "reference_id",
                                         "reference_sha256")}
