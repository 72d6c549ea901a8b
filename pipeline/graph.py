"""Process one session as a dask graph (docs/design.md §7): derive, score, and one atomic write.

The graph for one archive::

    load_meta ──────────────────────────────────────────────────┐
    load_markers ► marker_task (gap fill, filter,             │
                   joint angles) ─────────────┐                 │
                                               ├► step_task ► score_task ► write_task
    load_force ──► force_task (filter, re-zero, contacts,     │  (per-contact kinematics)
                   sides, force metrics) ──────┘

``load_*`` tasks receive the *path* and open the file themselves (docs/design.md §13.4: workers get paths,
never open files). The only task that writes is ``write_task``: it hands everything to
:func:`treadlab.acquisition.archive.write_derived`, which rebuilds only the session's derived
file (``<stem>.derived.h5``, reached from the session by the ``/derived`` external link) and
atomically replaces it: the session file and its raw data are never rewritten
(docs/archive.md §11). Every run holds the session lock while it reads and writes.
:func:`session_graph` builds the graph; :func:`process_session` runs it on the local threaded
scheduler (the two branches in parallel). :func:`run_session` runs the same task
functions one after the other in one call, reading the archive once: that is the single task per
session that :mod:`treadlab.pipeline.reprocess` maps over a cluster.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import dask
import h5py
import numpy as np
from dask import delayed
from dask.base import tokenize

from treadlab.acquisition.archive import (SessionLocked, acquire, attr, derived_group,
                                          derived_path, describe_owner, read_belt,
                                          read_derived_from, read_force, read_markers,
                                          read_meta, reading,
                                          session_lock, target_of, write_derived)
from treadlab.acquisition.capture.recorder import check_status, require_finished
from treadlab.config import load_lab, software_version
from treadlab.config.errors import InputError
from treadlab.config.markers import to_cgm
from treadlab.pipeline import derive
from treadlab.pipeline.derive import DeriveSettings
from treadlab.pipeline.scoring import (by_speed_summary, load_reference, reference_path,
                                      score_by_speed, score_causes)

log = logging.getLogger(__name__)

#: Bumped whenever the pipeline's output for the same input and config changes.
PIPELINE_REVISION = 3


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

    def derive_hash(self) -> str:
        """SHA-256 of the settings the contacts, per-step metrics and angles depend on (the
        derivation's settings and the marker names; not the reference set or the scoring
        table): stored as ``/derived`` attr ``derive_hash``. Two runs with the same pipeline
        version and derive hash derive the same steps, so only their scores can differ
        (:func:`scores_only`)."""
        text = json.dumps({"derive": asdict(self.derive), "marker_names": self.marker_names},
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def scores_only(have: dict | None, settings: RunSettings) -> bool:
    """Whether a session whose ``/derived`` attributes are ``have`` needs only new scores to
    reach ``settings``: same pipeline version and derive hash, another reference set or
    scoring table, and the stored metric reasons a rescore needs (docs/reprocess.md,
    "Scores only")."""
    want = settings.fingerprint()
    return (have is not None and have.get("pipeline_version") == want["pipeline_version"]
            and have.get("derive_hash") == settings.derive_hash()
            and have.get("metric_reasons") is not None
            and any(have.get(k) != want[k] for k in want))


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
    """Root attributes, ``/subject`` and the belt-speed stream of an archive (cheap: of the
    datasets only the small ``/raw/belt`` is read).

    Returns
    -------
    dict
        ``{"attrs": {...}, "subject": {...}, "belt": {...} or None}`` with plain Python values
        (``belt``: :func:`treadlab.acquisition.archive.read_belt`).
    """
    with reading(path) as f:
        return _read_meta(f)


def _read_meta(f) -> dict:
    meta = read_meta(f)
    meta["belt"] = read_belt(f)
    return meta


def load_force(path):
    """``/raw/force`` as :class:`treadlab.acquisition.archive.ForceData` (counts not read)."""
    with reading(path) as f:
        return read_force(f, path)


def load_markers(path, marker_names: tuple = ()):
    """``/raw/markers`` as :class:`treadlab.acquisition.archive.MarkerData`, labels mapped to CGM
    names (built-in aliases plus the lab's ``[marker_names]``)."""
    with reading(path) as f:
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
        out = derive.force_task(force, _body_mass(meta), settings.derive)
    except InputError as exc:  # derive knows arrays, not files: name the file here
        raise InputError(path, exc.where, exc.message) from None
    return derive.flag_saturated(out, force)  # clipped contacts: timed from the foot markers


def marker_task(markers, meta: dict, settings: RunSettings) -> dict:
    """:func:`treadlab.pipeline.derive.marker_task` consuming the loaded positions (the graph
    hands them to this task alone), plus the static-trial offsets."""
    out = derive.marker_task(markers, meta["subject"], settings.derive, overwrite=True)
    out["static"] = derive.static_offsets(meta["attrs"])  # for step_task: obliquity zero, tilt
    return out


def _session_speed(meta: dict | None) -> float | None:
    speed = (meta or {}).get("attrs", {}).get("belt_speed_m_s")
    try:
        return float(speed)
    except (TypeError, ValueError):
        return None


def step_task(force_out: dict, marker_out: dict, settings: RunSettings,
              meta: dict | None = None) -> dict:
    """The contacts table, with each contact's ``belt_speed`` (m/s) and ``belt_steady`` from
    ``/raw/belt`` (or the session's ``belt_speed_m_s`` without one; :func:`derive.belt_columns`)
    when ``meta`` (:func:`load_meta`) is given."""
    contacts = derive.step_task(force_out, marker_out, settings.derive)
    if meta is not None:
        contacts.update(derive.belt_columns(contacts["t_strike"], contacts["t_off"],
                                            contacts["side"], meta.get("belt"),
                                            _session_speed(meta)))
    return contacts


def score_task(contacts: dict, marker_out: dict, meta: dict, settings: RunSettings) -> dict:
    """The score table (:func:`score_causes`, per-step belt speeds); when the steady steps cover
    two or more speed plateaus, the per-plateau table rides along under ``"by_speed"``
    (:func:`score_by_speed`, written as ``/derived/scores_by_speed`` by :func:`write_task`)."""
    reasons = dict(marker_out.get("metric_reasons") or {})
    if "overstride_leg" not in reasons and not np.isfinite(derive.leg_length_mm(marker_out["attrs"])[0]):
        reasons["overstride_leg"] = ("leg length unknown: no static trial or subject leg length, "
                                     "and no ASIS and ankle markers to estimate it")
    kw = dict(min_steps_per_side=settings.min_steps_per_side, speed_m_s=_session_speed(meta),
              reasons=reasons, static_tilt_deg=(marker_out.get("static") or {}).get("tilt_deg"))
    scores = score_causes(contacts, settings.reference, **kw)
    by_speed = score_by_speed(contacts, settings.reference, **kw)
    if by_speed is not None:
        scores["by_speed"] = by_speed
    return scores


def write_task(path, force_out: dict, marker_out: dict, contacts: dict, scores: dict,
               settings: RunSettings, target: tuple | None = None) -> dict:
    """The single write: ``/derived`` via the atomic ``write_derived``; returns the summary.
    ``target``: the session's ``derived_target``, when the caller has read it under the lock."""
    ref = settings.reference
    attrs = dict(settings.fingerprint())
    now = time.time()
    attrs.update({
        "processed_utc": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "processed_unix_s": now,
        "reference_title": ref.title,
        "min_steps_per_side": settings.min_steps_per_side,
    })
    attrs.update(force_out["attrs"])
    attrs.update(marker_out["attrs"])
    attrs.update(derive.step_attrs(marker_out))
    attrs["derive_hash"] = settings.derive_hash()
    # what a rescore needs besides the contacts (score_task's reasons for unmeasured metrics)
    attrs["metric_reasons"] = json.dumps(dict(marker_out.get("metric_reasons") or {}),
                                         sort_keys=True)
    return _store(path, contacts, marker_out["angles"], scores, attrs, settings, target)


def _store(path, contacts: dict, angles: dict, scores: dict, attrs: dict,
           settings: RunSettings, target: tuple | None = None) -> dict:
    """``write_derived`` of one session's derived data, and the run's summary of it."""
    scores = dict(scores)
    by_speed = scores.pop("by_speed", None)
    derived = {"contacts": contacts, "angles": angles, "scores": scores,
               "units": dict(derive.EXTRA_UNITS)}
    if by_speed is not None:
        derived["scores_by_speed"] = by_speed
    written = write_derived(path, derived, attrs, target=target)
    valid = np.asarray(contacts["valid"], bool)
    return {
        "session": str(path),
        "derived_file": str(written),
        "bytes_written": written.stat().st_size,
        "contacts": int(valid.size),
        "valid_contacts": int(valid.sum()),
        "body_weight_n": round(float(attrs["body_weight_n"]), 1),
        "body_weight_source": attrs["body_weight_source"],
        "reference_id": settings.reference.id,
        "config_hash": settings.config_hash,
        "scores": {str(c): (None if not np.isfinite(s) else round(float(s), 1))
                   for c, s in zip(scores["cause"], scores["score"])},
        "status": {str(c): str(s) for c, s in zip(scores["cause"], scores["status"])},
        **({"scores_by_speed": by_speed_summary(by_speed)} if by_speed is not None else {}),
    }


def rescore(path, settings: RunSettings) -> dict:
    """New scores for a session whose steps are already derived with these settings
    (:func:`scores_only`): ``/derived/contacts`` and the angles are read back and written
    again unchanged, the scores (and scores per speed) computed afresh by
    :func:`score_task` with this run's reference set and scoring table. No raw data is read.
    The caller holds the session lock.

    Returns
    -------
    dict
        The summary of :func:`write_task`, plus ``"rescored": True``.
    """
    with reading(path) as f:
        meta = _read_meta(f)
        old = read_derived_from(f)
    attrs = dict(old["attrs"])
    marker_out = {"metric_reasons": json.loads(attrs["metric_reasons"]), "attrs": attrs,
                  "static": derive.static_offsets(meta["attrs"])}
    contacts = old["contacts"]
    scores = score_task(contacts, marker_out, meta, settings)
    now = time.time()
    attrs.update(settings.fingerprint())
    attrs.update({
        "processed_utc": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "processed_unix_s": now,
        "reference_title": settings.reference.title,
        "min_steps_per_side": settings.min_steps_per_side,
        "scores_only_from": f"steps derived at {old['attrs'].get('processed_utc', '?')}",
    })
    summary = _store(path, contacts, old["angles"], scores, attrs, settings)
    summary["rescored"] = True
    return summary


#: glibc ``mallopt`` parameters for batch workers (:func:`tune_malloc`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_TUNED: list = []


def tune_malloc() -> bool:
    """Let a batch worker reuse its large arrays (glibc only; once per process).

    dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also freezes
    glibc's mmap threshold at 128 KiB: every array above it (a session's force, positions,
    filtered channels: tens of MB) is then mapped afresh and its pages faulted in and zeroed
    for every session, and a 2-minute session costs 120 ms instead of 92. Arrays up to 32 MiB
    come from the heap instead, and the heap is trimmed when more than 128 MiB are free at its
    top: measured 86 ms per session, peak RSS unchanged (docs/performance.md). Returns whether
    the settings are in force (False where the C library has no ``mallopt``)."""
    if _MALLOC_TUNED:
        return True
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    if mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, 128 << 20) == 1:
        _MALLOC_TUNED.append(True)
    return bool(_MALLOC_TUNED)


def _not_due(have: dict | None, settings: RunSettings, force: bool,
             run_started_unix_s: float | None) -> str | None:
    """Why :func:`run_session` skips a session whose derived fingerprint is ``have`` (another
    run has done it), or None to process it."""
    if have is None:
        return None
    done_at = have.get("processed_unix_s")
    want = settings.fingerprint()
    if not force and {k: have.get(k) for k in want} == want:
        return "up to date (processed by another run)"
    if force and run_started_unix_s is not None and done_at is not None \
            and float(done_at) >= run_started_unix_s:
        return "processed by another run since this one started"
    return None


def run_session(path, settings: RunSettings, *, force: bool = False,
                run_started_unix_s: float | None = None, what: str = "reprocess",
                scanned: tuple | None = None) -> dict:
    """The whole session graph as one call in the calling process: one task per session for
    :mod:`treadlab.pipeline.reprocess`.

    The same task functions as :func:`session_graph`, run one after the other under the
    session lock (docs/archive.md §14): the archive is opened once (root attributes, markers and
    force in one pass), the branches run in turn, and the only write is ``write_task``'s
    atomic ``write_derived`` (the derived file alone). On a cluster of single-threaded worker
    processes a session's intermediate arrays then never leave the worker and the scheduler
    handles one task per session instead of eight (docs/design.md §7: workers get paths).

    Under the lock the session is checked again, so two runs over one folder process each
    session once: it is skipped when its derived data already carries this run's fingerprint
    (unless ``force``), or, with ``force``, when it was processed after
    ``run_started_unix_s`` (by another run). A session whose lock another live writer holds is
    skipped, naming the owner; one whose ``status`` says a capture never finished it fails
    (``treadlab recover`` first). ``scanned``: ``(fingerprint, stamp)`` as the caller's scan
    read them (:func:`fingerprint_of` after :func:`derived_stamp`); when the derived file's
    stamp is still the same under the lock, that fingerprint is used instead of reading it
    again (None: no scan, read here).

    Returns
    -------
    dict
        The summary of :func:`write_task` plus ``timing`` {``read_s``, ``compute_s``,
        ``write_s``, ``total_s``} and ``bytes_written``; or, for a skipped session,
        ``{"session": path, "skipped": why}``.

    Raises
    ------
    InputError
        The file is not a readable archive or lacks a required dataset.
    """
    path = str(path)
    tune_malloc()
    t0 = time.perf_counter()
    try:
        lock = acquire(path, what)
    except SessionLocked as exc:
        return {"session": path, "skipped": f"locked by {describe_owner(exc.owner)}"}
    try:
        with reading(path) as f:  # one open: the up-to-date check under the lock, then /raw
            if scanned is not None and derived_stamp(path) == scanned[1]:
                have = scanned[0]  # the derived file the scan read (or none), unchanged since
            else:
                have = fingerprint_of(f, path, with_time=True)
            why = _not_due(have, settings, force, run_started_unix_s)
            if why is not None:
                return {"session": path, "skipped": why}
            rescoring = not force and scores_only(have, settings)
            if not rescoring:
                target = target_of(f, path)  # where write_task writes (read here, once)
                meta = _read_meta(f)
                # a capture never finished (no scan may have checked: reprocess --force)
                check_status(meta["attrs"].get("status"), path)
                markers = _read_markers(f, path, settings.marker_names)
                force_data = read_force(f, path)
        if rescoring:
            t1 = time.perf_counter()
            summary = rescore(path, settings)
            t3 = time.perf_counter()
            summary["timing"] = {"read_s": 0.0, "compute_s": round(t3 - t1, 3), "write_s": 0.0,
                                 "total_s": round(t3 - t0, 3)}
            return summary
        t1 = time.perf_counter()
        fo = force_task(path, force_data, meta, settings)
        del force_data
        mo = marker_task(markers, meta, settings)
        del markers
        steps = step_task(fo, mo, settings, meta)
        scores = score_task(steps, mo, meta, settings)
        t2 = time.perf_counter()
        summary = write_task(path, fo, mo, steps, scores, settings, target)
        t3 = time.perf_counter()
    finally:
        lock.release()
    summary["timing"] = {"read_s": round(t1 - t0, 3), "compute_s": round(t2 - t1, 3),
                         "write_s": round(t3 - t2, 3), "total_s": round(t3 - t0, 3)}
    if lock.stale:
        summary["stale_lock"] = describe_owner(lock.stale)
    return summary


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
    # the two loads run side by side: their chunks are inflated outside HDF5's lock
    # (treadlab.acquisition.archive.chunks)
    force = d(load_force, "load_force")(path, dask_key_name=f"load_force-{tok}")
    fo = delayed(force_task)(path, force, meta, settings, dask_key_name=f"contacts-{tok}")
    mo = delayed(marker_task)(markers, meta, settings, dask_key_name=f"angles-{tok}")
    steps = delayed(step_task)(fo, mo, settings, meta, dask_key_name=f"steps-{tok}")
    scores = delayed(score_task)(steps, mo, meta, settings, dask_key_name=f"scores-{tok}")
    return delayed(write_task)(path, fo, mo, steps, scores, settings,
                               dask_key_name=f"write-{tok}")


def process_session(path, config_path=None, lock_wait_s: float = 10.0) -> dict:
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
    lock_wait_s : float
        Seconds to wait for another writer of the session (a capture, a reprocess) to finish;
        after that the session is not processed (InputError naming the owner).

    Returns
    -------
    dict
        Summary: ``session``, ``derived_file``, ``bytes_written``, ``contacts``, ``valid_contacts``, ``body_weight_n``,
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
    require_finished(path)
    settings = load_settings(config_path)
    t0 = time.perf_counter()
    try:
        with session_lock(path, "process", wait_s=lock_wait_s):
            (summary,) = dask.compute(session_graph(str(path), settings), scheduler="threads",
                                      num_workers=3)
    except SessionLocked as exc:
        raise InputError(path, None, f"not processed: locked by {describe_owner(exc.owner)} "
                                     f"(waited {lock_wait_s:g} s)") from None
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    log.info("processed %s in %.2f s", path, summary["elapsed_s"])
    return summary


def derived_fingerprint(path, with_time: bool = False) -> dict | None:
    """The ``/derived`` attributes that decide whether ``path`` is up to date (None: never
    processed). Reads attributes only (of the derived file, through the session's link).
    ``with_time`` adds ``processed_unix_s`` (s since 1970, None when absent)."""
    with reading(path) as f:
        return fingerprint_of(f, path, with_time)


def derived_stamp(path) -> tuple | None:
    """What identifies the derived file of session ``path`` as it is now: (inode, size,
    modification and change times in ns), or None when there is none. The derived file is
    only ever replaced by a rename (a new inode), so an unchanged stamp means the same file:
    :func:`run_session` trusts a fingerprint the scan read under this stamp. The file is
    opened to take it (on NFS an open revalidates cached attributes, a bare ``stat`` may not);
    the device is left out (an NFS mount's differs from one machine to the next)."""
    try:
        fd = os.open(derived_path(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def fingerprint_of(f, path, with_time: bool = False) -> dict | None:
    """:func:`derived_fingerprint` of the session ``path`` open as ``f``."""
    link = f.get("derived", getlink=True)
    if isinstance(link, h5py.ExternalLink) and link.filename != derived_path(path).name:
        return None  # renamed or copied: its derived file is another name's (relinked on write)
    g = derived_group(f)
    if g is None:
        return None
    keys = ("pipeline_version", "config_hash", "reference_id", "reference_sha256")
    out = {k: attr(g, k) for k in keys}
    if with_time:  # and what decides a scores-only run (scores_only)
        out["processed_unix_s"] = attr(g, "processed_unix_s")
        out["derive_hash"] = attr(g, "derive_hash")
        out["metric_reasons"] = attr(g, "metric_reasons")
    return out
