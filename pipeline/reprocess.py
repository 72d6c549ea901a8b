"""Overnight reprocessing of a whole archive folder (DESIGN §5, ``treadlab reprocess``).

Every ``*.h5`` session under the folder goes through the same task functions as ``treadlab
process``, as one task per session (:func:`treadlab.pipeline.graph.run_session`: read once,
derive, score, one atomic write), on a ``distributed.LocalCluster`` of process workers by
default, or on an existing cluster given by ``--scheduler tcp://HOST:PORT`` or the
``DASK_SCHEDULER_ADDRESS`` environment variable. Workers receive paths, never open files. One
task per session keeps a session's arrays inside one worker process (the eight-task graph let
the scheduler move them between workers) and the scheduler's work per session small.

- Idempotent and resumable: a session whose ``/derived`` already carries the same
  ``pipeline_version``, ``config_hash`` and reference set is skipped unless ``force``.
- One failing session is reported by name on stderr and never stops the batch (exit code 1).
- Every write goes through the atomic ``write_derived``: a ``kill -9`` at any point leaves each
  archive either as it was or fully processed. Leftover temporary copies are hidden files
  (``.NAME.h5.XXXX.tmp``) that are never picked up as sessions.
- It says what it does: ``dry_run`` lists the sessions that are due and why (never processed,
  another pipeline version, another config, another reference set, forced) and touches nothing;
  while it runs, one progress line per finished session with the elapsed time and an ETA; at the
  end, a per-session timing table, then the batch table.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from pathlib import Path

from treadlab.config.errors import InputError, TreadlabError

log = logging.getLogger(__name__)


def find_sessions(archive_dir) -> list[Path]:
    """Every ``*.h5`` under ``archive_dir`` (recursively), skipping hidden files and folders
    (temporary copies of an interrupted write are hidden)."""
    root = Path(archive_dir)
    if not root.is_dir():
        raise InputError(root, None, "not a folder")
    out = []
    for p in root.rglob("*.h5"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out.append(p)
    return sorted(out)


def _client(scheduler: str | None, workers: int | None):
    """(client, cluster or None): an existing scheduler, or a LocalCluster of process workers
    on 127.0.0.1 (the HDF5 library lock makes threads useless for reading, NOTES.md)."""
    from distributed import Client, LocalCluster

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            return Client(address, timeout="30s"), None
        except OSError as exc:
            raise InputError(address, None, f"cannot reach dask scheduler ({exc})") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    return Client(cluster), cluster


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def due_reason(have: dict | None, want: dict, force: bool = False) -> str | None:
    """Why a session with ``/derived`` fingerprint ``have`` must be processed to reach
    ``want`` (:meth:`RunSettings.fingerprint`), or None when it is up to date.

    Parameters
    ----------
    have : dict or None
        ``pipeline_version``, ``config_hash``, ``reference_id``, ``reference_sha256`` as stored
        (:func:`treadlab.pipeline.graph.derived_fingerprint`); None: never processed.
    want : dict
        The same keys, as this run would write them.
    force : bool
        Up-to-date sessions are due too (reason ``"forced"``).

    Returns
    -------
    str or None
        e.g. ``"never processed"``, ``"pipeline treadlab 0.1.0 pipeline 1 -> treadlab 0.1.0
        pipeline 2; config 1a2b3c4d -> 5e6f7a8b"``; several differences are joined by ``"; "``.
    """
    if have is None:
        return "never processed"
    why = []
    if have.get("pipeline_version") != want.get("pipeline_version"):
        why.append(f"pipeline {have.get('pipeline_version') or '?'} -> "
                   f"{want.get('pipeline_version')}")
    if have.get("config_hash") != want.get("config_hash"):
        why.append(f"config {_short(have.get('config_hash'))} -> "
                   f"{_short(want.get('config_hash'))}")
    if have.get("reference_id") != want.get("reference_id"):
        why.append(f"reference {have.get('reference_id') or '?'} -> {want.get('reference_id')}")
    elif have.get("reference_sha256") != want.get("reference_sha256"):
        why.append(f"reference {want.get('reference_id')} changed (sha256 "
                   f"{_short(have.get('reference_sha256'))} -> "
                   f"{_short(want.get('reference_sha256'))})")
    if why:
        return "; ".join(why)
    return "forced" if force else None


def _short(h) -> str:
    return str(h)[:8] if h else "?"


def reprocess(archive_dir, scheduler=None, workers=None, force=False, config_path=None,
              progress: bool = True, out=None, dry_run: bool = False) -> int:
    """Process every session in ``archive_dir`` on a dask cluster.

    Parameters
    ----------
    archive_dir : str or os.PathLike
        Folder searched recursively for ``*.h5`` archives.
    scheduler : str, optional
        ``tcp://HOST:PORT`` of an existing scheduler (else ``DASK_SCHEDULER_ADDRESS``, else a
        ``LocalCluster``).
    workers : int, optional
        Worker processes of the LocalCluster (default: the number of cores).
    force : bool
        Reprocess sessions that are already up to date.
    config_path : str, optional
        Lab TOML (``None`` = the shipped simulated lab).
    progress : bool
        One line on stderr per finished session: ``[k/N] session  seconds  elapsed  ETA``
        (the ETA assumes the remaining sessions take as long as the finished ones on average).
    out : file, optional
        Where the tables go (default stdout); failures go to stderr.
    dry_run : bool
        Only list the sessions that are due and why (:func:`due_reason`), and the unreadable
        ones; start no cluster, write nothing.

    Returns
    -------
    int
        0 when every session was processed or skipped (or, with ``dry_run``, every session
        was readable), 1 when any failed.
    """
    from treadlab.pipeline.graph import derived_fingerprint, load_settings

    out = out or sys.stdout
    t0 = time.perf_counter()
    settings = load_settings(config_path)  # a config error stops here, before any session
    want = settings.fingerprint()
    sessions = find_sessions(archive_dir)
    skipped, failed, todo, reasons = [], [], [], []
    for path in sessions:
        try:
            have = derived_fingerprint(path)
        except (TreadlabError, OSError) as exc:
            failed.append((path, _one_line(exc)))
            continue
        why = due_reason(have, want, force)
        if why is None:
            skipped.append(path)
        else:
            todo.append(path)
            reasons.append(why)
    log.info("%d sessions: %d to process, %d up to date, %d unreadable",
             len(sessions), len(todo), len(skipped), len(failed))
    if dry_run:
        print(format_due(archive_dir, list(zip(todo, reasons)), len(skipped), failed, want),
              file=out)
        return 1 if failed else 0

    processed = []
    if todo:
        client, cluster = _client(scheduler, workers)
        try:
            processed, lost = _run_batch(client, todo, settings, progress, archive_dir)
            failed.extend(lost)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    for path, why in failed:
        msg = why if str(path) in why else f"{path}: {why}"
        print(f"treadlab: failed: {msg}", file=sys.stderr)
    elapsed = time.perf_counter() - t0
    if processed:
        print(format_timings(archive_dir, processed), file=out)
    print(format_batch(len(processed), len(skipped), len(failed), elapsed,
                      sum(p.stat().st_size for p, _ in processed)), file=out)
    return 1 if failed else 0


def _timed_session(path: str, settings) -> dict:
    """:func:`treadlab.pipeline.graph.run_session` on a worker, with its wall time in the
    summary (``"seconds"``: read, derive, score and write of this one session)."""
    from treadlab.pipeline.graph import run_session

    t = time.perf_counter()
    summary = run_session(path, settings)
    summary["seconds"] = time.perf_counter() - t
    return summary


def _run_batch(client, todo: list, settings, progress: bool, root=None):
    """Map :func:`_timed_session` (``graph.run_session``) over ``todo``: one task per session.

    Workers receive the path (and the few-kB settings) and open the archive themselves. Every
    task is submitted in one ``client.map`` message; results are collected as they finish (one
    progress line each on stderr when ``progress``). Returns ``(processed, failed)`` as lists
    of ``(path, summary)`` in ``todo``'s order and ``(path, one-line reason)``.
    """
    from distributed import as_completed

    futures = client.map(_timed_session, [str(p) for p in todo], settings=settings,
                         key=[f"treadlab-session-{p.stem}-{uuid.uuid4().hex[:12]}"
                              for p in todo])
    index = {fut.key: i for i, fut in enumerate(futures)}
    results: dict[int, dict] = {}
    failed = []
    t0 = time.perf_counter()
    done = as_completed(futures, with_results=True, raise_errors=False)
    for k, (fut, result) in enumerate(done, start=1):
        i = index[fut.key]
        seconds = None
        if fut.status == "finished" and isinstance(result, dict):
            results[i] = result
            seconds = result.get("seconds")
        else:  # the task's exception, or a cancelled / lost worker
            try:
                exc = fut.exception()
            except Exception as err:
                exc = err
            failed.append((todo[i], _one_line(exc) if exc else fut.status))
        if progress:
            print(format_progress(k, len(todo), _name(todo[i], root), seconds,
                                  time.perf_counter() - t0), file=sys.stderr, flush=True)
    processed = [(todo[i], results[i]) for i in sorted(results)]
    return processed, failed


def _name(path, root) -> str:
    """``path`` relative to ``root`` when it is inside it."""
    try:
        return str(Path(path).relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def format_progress(done: int, total: int, name: str, seconds: float | None,
                    elapsed_s: float) -> str:
    """One progress line: ``[ 3/20] subject_a/run1.h5  0.41 s  elapsed 0:02  ETA 0:12``
    (``FAILED`` instead of the seconds for a failed session). The ETA is the mean wall time per
    finished session so far times the sessions left."""
    width = len(str(total))
    took = "FAILED" if seconds is None else f"{seconds:.2f} s"
    eta = elapsed_s / done * (total - done) if done else 0.0
    return (f"[{done:>{width}}/{total}] {name}  {took}  elapsed {_clock(elapsed_s)}  "
            f"ETA {_clock(eta)}")


def format_due(root, due: list, n_up_to_date: int, unreadable: list, want: dict) -> str:
    """The ``dry_run`` listing: what this run would write, every due session with its reason,
    the up-to-date count and the unreadable sessions."""
    lines = [f"would write: {want.get('pipeline_version')}, config "
             f"{_short(want.get('config_hash'))}, reference {want.get('reference_id')}",
             f"due: {len(due)} sessions, up to date: {n_up_to_date}, "
             f"unreadable: {len(unreadable)}"]
    rows = [(_name(p, root), why) for p, why in due]
    rows += [(_name(p, root), f"unreadable: {why}") for p, why in unreadable]
    if rows:
        w = max(len(r[0]) for r in rows)
        lines += [f"  {name.ljust(w)}  {why}" for name, why in rows]
    return "\n".join(lines)


def format_timings(root, processed: list) -> str:
    """Per-session table: wall time on its worker (read, derive, score, write), contacts, archive
    size; then the total and the mean. ``processed``: ``(path, summary)`` pairs."""
    rows = []
    for path, summary in processed:
        size = Path(path).stat().st_size / 1e6 if Path(path).exists() else float("nan")
        rows.append((_name(path, root), summary.get("seconds"), summary.get("contacts"), size))
    w = max([len("session")] + [len(r[0]) for r in rows])
    lines = [f"{'session'.ljust(w)}  {'seconds':>8}  {'contacts':>8}  {'MB':>7}"]
    for name, sec, n, mb in rows:
        sec_s = "?" if sec is None else f"{sec:.2f}"
        n_s = "" if n is None else str(n)
        lines.append(f"{name.ljust(w)}  {sec_s:>8}  {n_s:>8}  {mb:>7.1f}")
    secs = [r[1] for r in rows if r[1] is not None]
    if secs:
        lines.append(f"{'total'.ljust(w)}  {sum(secs):>8.2f}  (worker time; mean "
                     f"{sum(secs) / len(secs):.2f} s, slowest {max(secs):.2f} s)")
    return "\n".join(lines)


def format_batch(n_processed: int, n_skipped: int, n_failed: int, elapsed_s: float,
                 bytes_processed: int) -> str:
    """The final table: counts, wall time and throughput (sessions/s, MB/s of archives)."""
    rate = n_processed / elapsed_s if elapsed_s > 0 else 0.0
    mb_s = bytes_processed / 1e6 / elapsed_s if elapsed_s > 0 else 0.0
    rows = [("processed", str(n_processed)), ("skipped (up to date)", str(n_skipped)),
            ("failed", str(n_failed)), ("time", f"{elapsed_s:.1f} s"),
            ("throughput", f"{rate:.2f} sessions/s, {mb_s:.1f} MB/s")]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)
