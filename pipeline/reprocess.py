"""Overnight reprocessing of a whole archive folder (docs/design.md §7, ``treadlab reprocess``).

Every ``*.h5`` session under the folder goes through the same task functions as ``treadlab
process``, as one task per session (:func:`treadlab.pipeline.graph.run_session`: read once,
derive, score, one atomic write), on a ``distributed.LocalCluster`` of process workers by
default, or on an existing cluster given by ``--scheduler tcp://HOST:PORT`` or the
``DASK_SCHEDULER_ADDRESS`` environment variable. Workers receive paths, never open files. One
task per session keeps a session's arrays inside one worker process (the eight-task graph let
the scheduler move them between workers) and the scheduler's work per session small.

- Idempotent and resumable: a session whose ``/derived`` already carries the same
  ``pipeline_version``, ``config_hash`` and reference set is skipped unless ``force``.
- One failing session is reported by name (``BatchResult.failed``; the CLI prints it and exits
  1) and never stops the batch.
- Every write goes through the atomic ``write_derived``: a ``kill -9`` at any point leaves each
  archive either as it was or fully processed. Leftover temporary copies are hidden files
  (``.NAME.h5.XXXX.tmp``) that are never picked up as sessions.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from treadlab.config.errors import InputError, TreadlabError
from treadlab.pipeline.graph import derived_fingerprint, load_settings, run_session

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
    on 127.0.0.1 (the HDF5 library lock makes threads useless for reading, docs/design.md §13.4)."""
    from distributed import Client, LocalCluster  # lazy: ~1 s to import, only for a batch

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


@dataclass
class BatchResult:
    """What :func:`reprocess` did. ``processed``: ``(path, summary)``; ``failed``: ``(path,
    one-line reason)``; ``skipped``: paths already up to date."""

    processed: list
    skipped: list
    failed: list
    elapsed_s: float

    @property
    def ok(self) -> bool:
        """True when no session failed."""
        return not self.failed

    def failure_lines(self) -> list[str]:
        """One line per failed session, naming it."""
        return [why if str(path) in why else f"{path}: {why}" for path, why in self.failed]

    def table(self) -> str:
        """The final table (:func:`format_batch`)."""
        return format_batch(len(self.processed), len(self.skipped), len(self.failed),
                            self.elapsed_s, sum(p.stat().st_size for p, _ in self.processed))


def reprocess(archive_dir, scheduler=None, workers=None, force=False, config_path=None,
              progress: bool = True) -> BatchResult:
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
        Show ``distributed.progress`` while the batch runs.

    Returns
    -------
    BatchResult
        One failing session never stops the batch: it is listed in ``failed``.
    """
    t0 = time.perf_counter()
    settings = load_settings(config_path)  # a config error stops here, before any session
    want = settings.fingerprint()
    sessions = find_sessions(archive_dir)
    skipped, failed, todo = [], [], []
    for path in sessions:
        try:
            have = derived_fingerprint(path)
        except (TreadlabError, OSError) as exc:
            failed.append((path, _one_line(exc)))
            continue
        if not force and have == want:
            skipped.append(path)
        else:
            todo.append(path)
    log.info("%d sessions: %d to process, %d up to date, %d unreadable",
             len(sessions), len(todo), len(skipped), len(failed))

    processed = []
    if todo:
        client, cluster = _client(scheduler, workers)
        try:
            processed, lost = _run_batch(client, todo, settings, progress)
            failed.extend(lost)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    return BatchResult(processed, skipped, failed, time.perf_counter() - t0)


def _run_batch(client, todo: list, settings, progress: bool):
    """Map :func:`treadlab.pipeline.graph.run_session` over ``todo``: one task per session.

    Workers receive the path (and the few-kB settings) and open the archive themselves. Every
    task is submitted in one ``client.map`` message and the results come back in one
    ``gather``; only a failed session costs another round trip (its exception). Returns
    ``(processed, failed)`` as lists of ``(path, summary)`` and ``(path, one-line reason)``.
    """
    from distributed import wait  # distributed takes ~1 s to import: only when a batch runs

    futures = client.map(run_session, [str(p) for p in todo], settings=settings,
                         key=[f"treadlab-session-{p.stem}-{uuid.uuid4().hex[:12]}"
                              for p in todo])
    if progress:
        from distributed import progress as progress_bar  # lazy, as above

        progress_bar(futures)
        print(file=sys.stdout, flush=True)
    wait(futures)
    done = [i for i, fut in enumerate(futures) if fut.status == "finished"]
    results = client.gather([futures[i] for i in done]) if done else []
    processed = [(todo[i], r) for i, r in zip(done, results)]
    failed = []
    for path, fut in zip(todo, futures):
        if fut.status == "finished":
            continue
        try:
            exc = fut.exception()
        except Exception as err:  # cancelled, lost worker
            exc = err
        failed.append((path, _one_line(exc) if exc else fut.status))
    return processed, failed


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
