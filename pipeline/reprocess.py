"""Overnight reprocessing of a whole archive folder (docs/reprocess.md, ``treadlab reprocess``).

Every session under the folder goes through the same task functions as ``treadlab process``,
as one task per session (:func:`treadlab.pipeline.graph.run_session`: lock, read once, derive,
score, write the derived file), on a ``distributed.LocalCluster`` of process workers by
default, or on an existing cluster given by ``--scheduler tcp://HOST:PORT`` or the
``DASK_SCHEDULER_ADDRESS`` environment variable. Workers receive paths, never open files.

- Writes only derived data: each session's ``<stem>.derived.h5`` is rebuilt and atomically
  replaced; the session file (raw data) is only read (docs/archive.md §11). A session still in
  format 1 is migrated once on its first write.
- Idempotent and resumable: a session whose derived data already carries the same
  ``pipeline_version``, ``config_hash`` and reference set is skipped unless ``force``.
  ``dry_run`` lists what is due and why, and writes nothing.
- One writer per session: a task holds the session lock; a session another live writer (a
  capture, another reprocess) holds is skipped with a message naming it; two runs over one
  folder process every session once (the due-check is repeated under the lock).
- One failing session is reported by name (``BatchResult.failed``; the CLI prints it and exits
  1) and never stops the batch.
- Reports what it does: progress with an ETA while it runs, a per-session timing table at the
  end.
- A ``kill -9`` at any point leaves each session's derived file either as it was or new.
  Leftover temporary files are hidden (``.NAME.XXXX.tmp``), never picked up as sessions, and
  the next run removes those no live process holds
  (:func:`treadlab.acquisition.archive.atomic.remove_stale_temps`).
- A session still being recorded (or left ``status="recording"`` by a killed capture) is
  reported, never processed.
"""
from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from treadlab.acquisition.archive import (SessionLocked, acquire, describe_owner,
                                          is_derived_file, lock_owner, migrate_session,
                                          migration_needed, reading)
from treadlab.acquisition.archive.atomic import remove_stale_temps
from treadlab.acquisition.capture.recorder import check_finished
from treadlab.config.errors import InputError, TreadlabError
from treadlab.pipeline.graph import (derived_stamp, fingerprint_of, load_settings, run_session,
                                     scores_only)

log = logging.getLogger(__name__)


def find_sessions(archive_dir) -> list[Path]:
    """Every session ``*.h5`` under ``archive_dir`` (recursively), skipping hidden files and
    folders (temporary copies of an interrupted write are hidden) and derived files
    (``*.derived.h5``)."""
    root = Path(archive_dir)
    if not root.is_dir():
        raise InputError(root, None, "not a folder")
    out = []
    for p in root.rglob("*.h5"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file() \
                or is_derived_file(p):
            continue
        out.append(p)
    return sorted(out)


def largest_first(sessions: list) -> list:
    """``sessions`` by size, largest first (equal sizes in their order): they are scanned and
    sent to the cluster in this order, so the longest sessions start first and a batch of
    mixed lengths ends with short ones instead of one long session running alone."""
    return sorted(sessions, key=_size, reverse=True)


def _client(scheduler: str | None, workers: int | None):
    """(client, cluster or None, whether this run closes the client).

    ``scheduler`` (else ``DASK_SCHEDULER_ADDRESS``) names an existing scheduler: the client this
    process already has for it (distributed's current client, e.g. a notebook's) is used as it
    is, else a new one connects. Without an address, a LocalCluster of process workers on
    127.0.0.1 (the HDF5 library lock makes threads useless for reading, docs/design.md §13.4)."""
    from distributed import Client, LocalCluster  # lazy: ~1 s to import, only for a batch

    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            current = Client.current(allow_global=True)
        except ValueError:  # none
            current = None
        if current is not None and current.status == "running" \
                and current.scheduler.address == address:
            return current, None, False
        try:
            return Client(address, timeout="30s"), None, True
        except OSError as exc:
            raise InputError(address, None, f"cannot reach dask scheduler ({exc})") from None
    n = workers or os.cpu_count() or 1
    # no dashboard; the scheduler's small HTTP server (health, metrics) on a free port of
    # 127.0.0.1, not on 8787, where a lab's own dask dashboard may be
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           scheduler_kwargs={"dashboard": False})
    return Client(cluster), cluster, True


def _one_line(exc: BaseException) -> str:
    """One line for a failed session: a treadlab error's own message; anything else (a worker
    crash) its type and first line, never a worker's traceback text."""
    text = str(exc).split("Traceback (most recent call last)")[0].strip().splitlines()
    line = text[0].strip() if text else ""
    if not isinstance(exc, TreadlabError):
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line[:300]


def due_reason(have: dict | None, want: dict, force: bool = False) -> str | None:
    """Why a session with derived fingerprint ``have`` must be processed to reach ``want``
    (:meth:`RunSettings.fingerprint`), or None when it is up to date.

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


def _name(path, root) -> str:
    """``path`` relative to ``root`` when it is inside it."""
    try:
        return str(Path(path).relative_to(root)) if root is not None else str(path)
    except ValueError:
        return str(path)


def _size(path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


@dataclass
class BatchResult:
    """What :func:`reprocess` did. ``processed``: ``(path, summary)``; ``failed``: ``(path,
    one-line reason)``; ``skipped``: paths not processed (up to date, locked by another writer,
    done by another run), with ``skip_reasons`` {path: why} for those not simply up to date;
    ``due``: ``(path, why)`` of every session found due (all that a dry run reports)."""

    processed: list
    skipped: list
    failed: list
    elapsed_s: float
    due: list = field(default_factory=list)
    skip_reasons: dict = field(default_factory=dict)
    dry_run: bool = False
    root: Path | None = None
    want: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no session failed."""
        return not self.failed

    def failure_lines(self) -> list[str]:
        """One line per failed session, naming it."""
        return [why if str(path) in why else f"{path}: {why}" for path, why in self.failed]

    def skip_lines(self) -> list[str]:
        """One line per session skipped for a reason other than being up to date."""
        return [f"{p}: skipped: {why}" for p, why in self.skip_reasons.items()]

    def table(self) -> str:
        """The final table (:func:`format_batch`)."""
        return format_batch(len(self.processed), len(self.skipped), len(self.failed),
                            self.elapsed_s, sum(_size(p) for p, _ in self.processed),
                            sum(int(r.get("bytes_written", 0)) for _, r in self.processed))

    def due_table(self) -> str:
        """The ``--dry-run`` listing: what this run would write, every due session with its
        reason, the up-to-date count and the unreadable sessions."""
        want = self.want
        lines = [f"would write: {want.get('pipeline_version')}, config "
                 f"{_short(want.get('config_hash'))}, reference {want.get('reference_id')}",
                 f"due: {len(self.due)} sessions, up to date: {len(self.skipped)}, "
                 f"unreadable: {len(self.failed)}"]
        rows = [(_name(p, self.root), why) for p, why in self.due]
        rows += [(_name(p, self.root), f"unreadable: {why}") for p, why in self.failed]
        if rows:
            w = max(len(r[0]) for r in rows)
            lines += [f"  {name.ljust(w)}  {why}" for name, why in rows]
        return "\n".join(lines)

    def timing_table(self) -> str:
        """Per-session table of the processed sessions: wall time on the worker split into
        read, compute (derive and score) and write, contacts, and the bytes written (the
        derived file, MB); then the total and the mean."""
        if not self.processed:
            return ""
        rows = []
        for p, r in self.processed:
            t = r.get("timing", {})
            rows.append((_name(p, self.root), t.get("total_s"), t.get("read_s"),
                         t.get("compute_s"), t.get("write_s"), r.get("contacts"),
                         int(r.get("bytes_written", 0)) / 1e6))
        w = max([len("session")] + [len(r[0]) for r in rows])
        lines = [f"{'session'.ljust(w)}  {'seconds':>8}  {'read':>6}  {'compute':>7}  "
                 f"{'write':>6}  {'contacts':>8}  {'written MB':>10}"]

        def num(v, width, fmt=".2f"):
            return ("?" if v is None else format(v, fmt)).rjust(width)

        for name, sec, rd, cp, wr, n, mb in rows:
            lines.append(f"{name.ljust(w)}  {num(sec, 8)}  {num(rd, 6)}  {num(cp, 7)}  "
                         f"{num(wr, 6)}  {('' if n is None else str(n)):>8}  {mb:>10.3f}")
        secs = [r[1] for r in rows if r[1] is not None]
        if secs:
            lines.append(f"{'total'.ljust(w)}  {sum(secs):>8.2f}  (worker time; mean "
                         f"{sum(secs) / len(secs):.2f} s, slowest {max(secs):.2f} s)")
        return "\n".join(lines)


def reprocess(archive_dir, scheduler=None, workers=None, force=False, config_path=None,
              progress: bool = True, dry_run: bool = False, out=None) -> BatchResult:
    """Process every session in ``archive_dir`` on a dask cluster.

    Parameters
    ----------
    archive_dir : str or os.PathLike
        Folder searched recursively for ``*.h5`` sessions.
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
        Report progress with an ETA on ``out`` while the batch runs.
    dry_run : bool
        Only find what is due and why (``BatchResult.due``); start no cluster, write nothing.
    out : file, optional
        Where progress goes (default ``sys.stderr``).

    Returns
    -------
    BatchResult
        One failing session never stops the batch: it is listed in ``failed``.
    """
    t0 = time.perf_counter()
    started_unix = time.time()
    settings = load_settings(config_path)  # a config error stops here, before any session
    want = settings.fingerprint()
    sessions = largest_first(find_sessions(archive_dir))
    if not dry_run:
        for p in remove_stale_temps(archive_dir):
            log.warning("%s: removed, a temporary copy left by an interrupted run", p)
    skipped, failed, due, skip_reasons = [], [], [], {}
    # due sessions go to the cluster while the scan goes on, so the workers start on the first
    # while the rest are checked (the cluster is started for the first one); they go in
    # groups that double (1, 1, 2, 4, ... up to SUBMIT_MAX): one message per group instead of
    # one per session, and the workers never wait for the scan. With ``force`` nothing is
    # scanned: every session is due, and the workers check each under its lock
    client = cluster = None
    own = False
    futures: dict = {}
    pending: list = []
    t_first = 0.0

    def send() -> None:  # the pending sessions to the cluster (started for the first)
        nonlocal client, cluster, own, t_first, pending
        if client is None:
            client, cluster, own = _client(scheduler, workers)
            t_first = time.perf_counter()
        futures.update(_submit(client, pending, settings, force, started_unix))
        pending = []

    def queue(path, why: str, seen) -> None:  # due: sent with the next group
        due.append((path, why))
        if not dry_run:
            pending.append((path, seen))
            if len(pending) >= min(max(1, len(futures)), SUBMIT_MAX):
                send()

    try:
        for path in sessions:
            if force and not dry_run:
                # nothing to decide before the cluster: every session is due, and the worker
                # checks its lock, status and (for a concurrent run) derived data under the
                # lock anyway; reading them here first would only delay the workers
                queue(path, "forced", None)
                continue
            owner = lock_owner(path)
            if owner is not None:  # a capture recording it, another run processing it
                skipped.append(path)
                skip_reasons[path] = f"locked by {describe_owner(owner)}"
                continue
            try:
                stamp = derived_stamp(path)  # before the read: a later change shows
                with reading(path) as f:  # the lock was checked above
                    check_finished(f, path)
                    have = fingerprint_of(f, path, with_time=True)
                why = due_reason(have, want, force)
                if why is not None and not force and scores_only(have, settings):
                    why += " (scores only: the stored steps are rescored, no raw data is read)"
                if why is not None and dry_run:
                    old = migration_needed(path)
                    if old:
                        why += f"; migrated on write ({', '.join(old)})"
            except (TreadlabError, OSError) as exc:
                failed.append((path, _one_line(exc)))
                continue
            if why is None:
                skipped.append(path)
                continue
            queue(path, why, (have, stamp))
        if pending:
            send()
        log.info("%d sessions: %d to process, %d up to date, %d unreadable",
                 len(sessions), len(due), len(skipped), len(failed))
        due.sort()  # reported by name (scanned largest first)
        failed.sort()
        if dry_run:
            return BatchResult([], skipped, failed, time.perf_counter() - t0, due=due,
                               dry_run=True, root=Path(archive_dir), want=want,
                               skip_reasons=skip_reasons)
        done, lost = _collect(futures, progress, t_first, out=out, root=archive_dir)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()
    failed = sorted(failed + lost)
    processed = []
    for path, summary in done:
        if "skipped" in summary:
            skipped.append(path)
            skip_reasons[path] = summary["skipped"]
        else:
            processed.append((path, summary))
    if force:  # sent unscanned: a session the worker found locked was never due
        due = [(p, why) for p, why in due if p not in skip_reasons]
    return BatchResult(processed, skipped, failed, time.perf_counter() - t0, due=due,
                       skip_reasons=skip_reasons, root=Path(archive_dir), want=want)


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def format_progress(done: int, total: int, name: str, seconds: float | None,
                    elapsed_s: float) -> str:
    """One progress line: ``[ 3/20] subject_a/run1.h5  0.41 s  elapsed 0:02  ETA 0:12``
    (``FAILED`` instead of the seconds for a failed session, ``skipped`` for one another
    writer held or had done). The ETA is the mean wall time per finished session so far
    times the sessions left."""
    width = len(str(total))
    took = seconds if isinstance(seconds, str) else (
        "FAILED" if seconds is None else f"{seconds:.2f} s")
    eta = elapsed_s / done * (total - done) if done else 0.0
    return (f"[{done:>{width}}/{total}] {name}  {took}  elapsed {_clock(elapsed_s)}  "
            f"ETA {_clock(eta)}")


#: Most due sessions :func:`reprocess` sends to the cluster in one message.
SUBMIT_MAX = 256


def _submit(client, due: list, settings, force: bool, started_unix: float | None) -> dict:
    """One task per session of ``due`` (``(path, (fingerprint, stamp))`` as the scan read
    them, or ``(path, None)`` unscanned: ``force``) on the cluster, sent together:
    :func:`_run_one` of each. Workers receive the path
    (and the few-kB settings) and open the archive themselves. Returns {future: path}."""
    paths = [p for p, _ in due]
    keys = [f"treadlab-session-{Path(p).stem}-{uuid.uuid4().hex[:12]}" for p in paths]
    futures = client.map(_run_one, [str(p) for p in paths], [seen for _, seen in due], key=keys,
                         settings=settings, force=force, run_started_unix_s=started_unix,
                         pure=False)
    return dict(zip(futures, paths))


def _run_one(path: str, scanned: tuple | None, settings, force: bool,
             run_started_unix_s: float | None) -> dict:
    """:func:`treadlab.pipeline.graph.run_session` of one session with what the scan read of
    it, None when it was not scanned (``client.map`` varies positional arguments only)."""
    return run_session(path, settings, force=force, run_started_unix_s=run_started_unix_s,
                       scanned=scanned)


#: Seconds between fetches of finished sessions' summaries in :func:`_collect` (each fetch is
#: a request to the workers; a session finishing later than this after the last fetch is
#: fetched and reported at once).
FETCH_EVERY_S = 0.25


def _collect(futures: dict, progress: bool, t0: float, *, out=None, root=None):
    """The results of ``futures`` ({future: path}) as they complete, with the progress line and
    its ETA (measured from ``t0``, the first submission). Returns ``(done, failed)``: lists of
    ``(path, summary)`` (a summary holding ``"skipped"`` for a session another writer held or
    had done) and of ``(path, one-line reason)``.

    The summaries of the sessions finished since the last fetch are fetched together, at most
    every :data:`FETCH_EVERY_S` (one request per worker, not one per session).
    """
    if not futures:
        return [], []
    from distributed import as_completed  # distributed takes ~1 s to import: only for a batch

    done, failed, waiting = [], [], []
    k, last = 0, time.perf_counter()
    finished = as_completed(list(futures))
    for batch in finished.batches():
        waiting.extend(batch)
        if finished.count() and time.perf_counter() - last < FETCH_EVERY_S:
            continue
        last = time.perf_counter()
        ok = [fut for fut in waiting if fut.status == "finished"]
        try:
            results = dict(zip(ok, ok[0].client.gather(ok))) if ok else {}
        except Exception:  # a worker lost since: each one on its own, below
            results = {}
        for fut in waiting:
            k += 1
            path = futures[fut]
            took = None
            try:
                summary = results[fut] if fut in results else fut.result()
            except Exception as err:  # failed, cancelled, lost worker
                failed.append((path, _one_line(err)))
            else:
                done.append((path, summary))
                took = "skipped" if "skipped" in summary else summary["timing"]["total_s"]
            if progress:
                print(format_progress(k, len(futures), _name(path, root), took,
                                      time.perf_counter() - t0), file=out or sys.stderr,
                      flush=True)
            fut.release()
        waiting = []
    return done, failed


def format_batch(n_processed: int, n_skipped: int, n_failed: int, elapsed_s: float,
                 bytes_processed: int, bytes_written: int = 0) -> str:
    """The final table: counts, wall time, throughput (sessions/s, MB/s of sessions read) and
    the bytes written (derived files only)."""
    rate = n_processed / elapsed_s if elapsed_s > 0 else 0.0
    mb_s = bytes_processed / 1e6 / elapsed_s if elapsed_s > 0 else 0.0
    share = (f" ({100 * bytes_written / bytes_processed:.1f} % of the sessions' bytes)"
             if bytes_processed else "")
    rows = [("processed", str(n_processed)), ("skipped (up to date)", str(n_skipped)),
            ("failed", str(n_failed)), ("time", f"{elapsed_s:.1f} s"),
            ("throughput", f"{rate:.2f} sessions/s, {mb_s:.1f} MB/s"),
            ("written", f"{bytes_written / 1e6:.1f} MB{share}")]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)


@dataclass
class MigrateResult:
    """What :func:`migrate_archive` did: ``migrated`` ``(path, [changes])``, ``current``
    paths already in the current layout, ``skipped`` ``(path, why)`` (locked by another
    writer), ``failed`` ``(path, one-line reason)``."""

    migrated: list
    current: list
    skipped: list
    failed: list

    @property
    def ok(self) -> bool:
        """True when no session failed."""
        return not self.failed

    @property
    def lines(self) -> list[str]:
        """One line per session changed or skipped."""
        return ([f"{p}: {'; '.join(why)}" for p, why in self.migrated] +
                [f"{p}: skipped: {why}" for p, why in self.skipped])

    def failure_lines(self) -> list[str]:
        """One line per failed session, naming it."""
        return [why if str(path) in why else f"{path}: {why}" for path, why in self.failed]


def migrate_archive(archive_dir, dry_run: bool = False) -> MigrateResult:
    """``treadlab migrate DIR``: :func:`treadlab.acquisition.archive.migrate_session` on every
    session under ``archive_dir``, each under its session lock (a session another writer holds
    is skipped with a message). Idempotent and crash-safe (docs/archive.md §12)."""
    out = MigrateResult([], [], [], [])
    for path in find_sessions(archive_dir):
        try:
            why = migration_needed(path)
            if not why:
                out.current.append(path)
                continue
            if dry_run:
                out.migrated.append((path, why))
                continue
            try:
                lock = acquire(path, "migrate")
            except SessionLocked as exc:
                out.skipped.append((path, exc.message))
                continue
            try:
                out.migrated.append((path, migrate_session(path)))
            finally:
                lock.release()
        except (TreadlabError, OSError) as exc:
            out.failed.append((path, _one_line(exc)))
    return out
