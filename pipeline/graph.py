"""Process one session as a dask graph (DESIGN §5): derive, score, and one atomic write.

The graph for one archive::

    load_meta ──────────────────────────────────────────────────┐
    load_markers ► marker_task (gap fill, filter,             │
         │         joint angles) ─────────────┐                 │
         ▼ (read after: HDF5 reads serialise)  ├► step_task ► score_task ► write_task
    load_force ──► force_task (filter, re-zero, contacts,     │  (per-contact kinematics)
                   sides, force metrics) ──────┘

``load_*`` tasks receive the *path* and open the file themselves (NOTES.md: workers get paths,
never open files). The only task that writes is ``write_task``: it hands everything to
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
from pathlib import Path

import h5py
import numpy as np
from dask import delayed

from treadlab.config.errors import InputError

log = logging.getLogger(__name__)

#: Bumped whenever the pipeline's output for the same input and config changes.
PIPELINE_REVISION = 2


def pipeline_version() -> str:
    """``"treadlab X.Y.Z pipeline N"``: stored as ``/derived`` attr ``pipeline_version``."""
    from treadlab.config import software_version

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
    from treadlab.config import load_lab
    from treadlab.pipeline.derive import DeriveSettings
    from treadlab.pipeline.scoring import load_reference, reference_path

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

def _open(path) -> h5py.File:
    """Open an archive read-only (SWMR-aware); any failure is a one-line InputError."""
    from treadlab.acquisition.archive import _open as open_archive
    from treadlab.config.errors import TreadlabError

    try:
        return open_archive(path)
    except TreadlabError:
        raise
    except Exception as exc:  # h5py raises RuntimeError for some corrupt superblocks
        msg = str(exc).strip().splitlines()
        why = msg[0] if msg else type(exc).__name__
        raise InputError(path, None, f"not a readable HDF5 file ({why})") from None


def _attr(obj, name, default=None):
    if name not in obj.attrs:
        return default
    return _plain(obj.attrs[name])


def _plain(value):
    """An HDF5 attribute value as a plain Python value (str, list of str, number, array)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "SOU":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for v in value.ravel()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dataset(f, path, name) -> np.ndarray:
    if name not in f:
        raise InputError(path, "/" + name, "missing")
    return f[name][()]


def _read_meta(f) -> dict:
    attrs = {k: _plain(v) for k, v in f.attrs.items()}
    subject = {k: _plain(v) for k, v in f["subject"].attrs.items()} if "subject" in f else {}
    return {"attrs": attrs, "subject": subject}


def load_meta(path) -> dict:
    """Root attributes and ``/subject`` of an archive (cheap: no datasets are read).

    Returns
    -------
    dict
        ``{"attrs": {...}, "subject": {...}}`` with plain Python values.
    """
    with _open(path) as f:
        return _read_meta(f)


def _loaded(_markers) -> bool:
    return True


def load_force(path, after=None):
    """``/raw/force`` as :class:`treadlab.acquisition.archive.ForceData` (counts not read).
    ``after`` only orders the read in the graph."""
    with _open(path) as f:
        return _read_force(f, path)


def _read_force(f, path):
    from treadlab.acquisition.archive import ForceData

    t = np.asarray(_dataset(f, path, "raw/force/time"), dtype=np.float64)
    w = np.asarray(_dataset(f, path, "raw/force/wrench"), dtype=np.float32)
    g = f["raw/force"]
    if w.ndim == 2 and w.shape[1] == 6:  # a single plate written as (n, 6)
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[2] != 6 or w.shape[0] != t.shape[0]:
        raise InputError(path, "/raw/force/wrench",
                         f"shape {w.shape} is not (n, plates, 6) with n = {t.shape[0]}")
    rate = _attr(g, "rate_hz")
    if rate is None:
        rate = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else 0.0
    p = w.shape[1]
    plates = _attr(g, "plates") or [f"plate{i + 1}" for i in range(p)]
    plates = [plates] if isinstance(plates, str) else list(plates)
    origin = np.asarray(_attr(g, "origin", np.zeros((p, 3))), dtype=np.float64).reshape(p, 3)
    corners = np.asarray(_attr(g, "corners", np.zeros((p, 4, 3))),
                         dtype=np.float64).reshape(p, 4, 3)
    if not float(rate) > 0:
        raise InputError(path, "/raw/force@rate_hz", f"must be > 0, got {rate!r}")
    return ForceData(time=t, wrench=w, rate_hz=float(rate), plates=plates, origin=origin,
                     corners=corners)


def load_markers(path, marker_names: tuple = ()):
    """``/raw/markers`` as :class:`treadlab.acquisition.archive.MarkerData`, labels mapped to CGM
    names (built-in aliases plus the lab's ``[marker_names]``)."""
    with _open(path) as f:
        return _read_markers(f, path, marker_names)


def _read_markers(f, path, marker_names: tuple = ()):
    from treadlab.acquisition.archive import MarkerData
    from treadlab.config.markers import to_cgm

    if "raw/markers" not in f:
        raise InputError(path, "/raw/markers", "missing")
    t = np.asarray(_dataset(f, path, "raw/markers/time"), dtype=np.float64)
    pos = np.asarray(_dataset(f, path, "raw/markers/positions"), dtype=np.float32)
    g = f["raw/markers"]
    labels = _attr(g, "labels") or []
    labels = [labels] if isinstance(labels, str) else list(labels)
    rate = _attr(g, "rate_hz")
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[:2] != (t.shape[0], len(labels)):
        raise InputError(path, "/raw/markers/positions",
                         f"shape {pos.shape} is not (m, k, 3) with m = {t.shape[0]}, "
                         f"k = {len(labels)} labels")
    if rate is None:
        rate = 1.0 / float(np.median(np.diff(t))) if t.size > 1 else 0.0
    mapped = list(to_cgm(labels, extra=dict(marker_names) or None))
    seen: set[str] = set()
    for i, name in enumerate(mapped):  # two markers on one CGM name: the second keeps its own
        if name in seen:
            mapped[i] = labels[i]
        seen.add(mapped[i])
    labels = mapped
    return MarkerData(time=t, positions=pos, labels=labels, rate_hz=float(rate))


# --- compute and write tasks --------------------------------------------------------------------

def _body_mass(meta: dict) -> float | None:
    value = meta["attrs"].get("body_mass_kg")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def force_task(path, force, meta: dict, settings: RunSettings) -> dict:
    from treadlab.pipeline.derive import flag_saturated, force_task as run

    try:
        out = run(force, _body_mass(meta), settings.derive)
    except InputError as exc:  # derive knows arrays, not files: name the file here
        raise InputError(path, exc.where, exc.message) from None
    return flag_saturated(out, force)  # clipped contacts: timed from the foot markers


def marker_task(markers, meta: dict, settings: RunSettings) -> dict:
    from treadlab.pipeline.derive import marker_task as run, static_offsets

    out = run(markers, meta["subject"], settings.derive)
    out["static"] = static_offsets(meta["attrs"])  # for step_task: obliquity zero, tilt
    return out


def step_task(force_out: dict, marker_out: dict, settings: RunSettings) -> dict:
    from treadlab.pipeline.derive import step_task as run

    return run(force_out, marker_out, settings.derive)


def score_task(contacts: dict, marker_out: dict, meta: dict, settings: RunSettings) -> dict:
    from treadlab.pipeline.derive import leg_length_mm
    from treadlab.pipeline.scoring import score_causes

    reasons = dict(marker_out.get("metric_reasons") or {})
    if "overstride_leg" not in reasons and not np.isfinite(leg_length_mm(marker_out["attrs"])[0]):
        reasons["overstride_leg"] = ("leg length unknown: no static trial or subject leg length, "
                                     "and no ASIS and ankle markers to estimate it")
    speed = meta["attrs"].get("belt_speed_m_s")
    try:
        speed = float(speed)
    except (TypeError, ValueError):
        speed = None
    return score_causes(contacts, settings.reference,
                        min_steps_per_side=settings.min_steps_per_side, speed_m_s=speed,
                        reasons=reasons,
                        static_tilt_deg=(marker_out.get("static") or {}).get("tilt_deg"))


def write_task(path, force_out: dict, marker_out: dict, contacts: dict, scores: dict,
               settings: RunSettings) -> dict:
    """The single write: ``/derived`` via the atomic ``write_derived``; returns the summary."""
    from datetime import datetime, timezone

    from treadlab.acquisition.archive import write_derived
    from treadlab.pipeline.derive import EXTRA_UNITS, step_attrs
    ref = settings.reference
    attrs = dict(settings.fingerprint())
    attrs.update({
        "processed_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference_title": ref.title,
        "min_steps_per_side": settings.min_steps_per_side,
    })
    attrs.update(force_out["attrs"])
    attrs.update(marker_out["attrs"])
    attrs.update(step_attrs(marker_out))
    derived = {"contacts": contacts, "angles": marker_out["angles"], "scores": scores,
               "units": dict(EXTRA_UNITS)}
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
    scheduler handles one task per session instead of eight (DESIGN §5: workers get paths).

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
    with _open(path) as f:
        meta = _read_meta(f)
        markers = _read_markers(f, path, settings.marker_names)
        force = _read_force(f, path)
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
    from dask.base import tokenize

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
        A ``treadlab.session`` archive (or any file with the minimum contract of DESIGN §4).
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
    import dask

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
    with _open(path) as f:
        if "derived" not in f:
            return None
        g = f["derived"]
        return {k: _attr(g, k) for k in ("pipeline_version", "config_hash", "reference_id",
                                         "reference_sha256")}
