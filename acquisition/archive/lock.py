"""One writer per session: the session lock (docs/archive.md §14).

A capture, ``treadlab process``, every ``treadlab reprocess`` task and ``treadlab migrate``
hold the lock of a session while they write anything belonging to it. The lock is an
``flock`` on ``<name>.h5.lock`` beside the session, holding one line of JSON about its owner
(``pid``, ``host``, ``what``, ``since_utc``) so a second writer can say who holds it.

Why ``flock`` plus metadata, and not a PID file alone or a lock library: the kernel releases
an ``flock`` when its owner dies (SIGKILL included) and, on NFS v4, when the owner's host stops
renewing its lease; so a lock whose owner is gone is free without any guess about PIDs being
reused or clocks agreeing. The JSON line is only for the messages: a lock file that is free but
still names an owner was left by a process that died holding it (a *stale* lock), which is
reported when it is taken over. ``filelock`` would give the same ``flock`` without the owner
line or the stale report, so it is not used.

The lock file exists only while held (removed by its owner before unlocking; a taker checks
it locked the file that is still at the path), or after its owner died.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

from treadlab.config.errors import InputError

log = logging.getLogger(__name__)


class SessionLocked(InputError):
    """Another live writer holds the session's lock; ``owner`` is its metadata (dict)."""

    def __init__(self, path, owner: dict):
        self.owner = owner
        super().__init__(path, None, f"locked by {describe_owner(owner)}")

    def __reduce__(self):  # picklable, so it can cross a dask worker boundary
        return (SessionLocked, (self.path, self.owner))


def lock_path(path) -> Path:
    """The lock file of the session ``path`` (``<name>.h5.lock`` beside it)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def describe_owner(owner: dict) -> str:
    """``"reprocess (pid 123 on host lab1, since 2026-01-01T02:00:00+00:00)"``."""
    if not owner:
        return "another process"
    return (f"{owner.get('what', 'a writer')} (pid {owner.get('pid', '?')} on host "
            f"{owner.get('host', '?')}, since {owner.get('since_utc', '?')})")


def _read_owner(fd) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return {}
    if not text:
        return {}
    try:
        value = json.loads(text.splitlines()[0])
        return value if isinstance(value, dict) else {"pid": text.splitlines()[0]}
    except ValueError:  # a lock written by an older recorder: the PID only
        return {"pid": text.splitlines()[0]}


def lock_owner(path) -> dict | None:
    """Metadata of the live owner of ``path``'s lock, or ``None`` when nobody holds it."""
    lp = lock_path(path)
    try:
        fd = os.open(lp, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_owner(fd) or {"what": "another process"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class SessionLock:
    """The held lock of one session; release with :meth:`release` (or use :func:`session_lock`).

    Attributes: ``path`` (the session), ``stale`` (metadata of a dead owner whose lock was
    taken over, else ``None``), ``waited_s`` (seconds spent waiting).
    """

    def __init__(self, path, fd: int, stale: dict | None, waited_s: float):
        self.path, self._fd, self.stale, self.waited_s = Path(path), fd, stale, waited_s

    def release(self) -> None:
        """Remove the lock file and unlock (idempotent)."""
        if self._fd is None:
            return
        try:
            lock_path(self.path).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def acquire(path, what: str, *, wait_s: float = 0.0, poll_s: float = 0.05) -> SessionLock:
    """Take the lock of session ``path`` for ``what`` (e.g. ``"reprocess"``).

    Parameters
    ----------
    path : str or os.PathLike
        The session archive (need not exist yet: a capture locks before it creates the file).
    what : str
        Who is writing, for the other writers' messages.
    wait_s : float
        Seconds to wait for a live owner to finish (0: do not wait).
    poll_s : float
        Seconds between attempts while waiting.

    Raises
    ------
    SessionLocked
        A live owner still holds the lock after ``wait_s`` (the message names it).
    """
    path = Path(path)
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise InputError(lp, None, f"cannot lock: {exc.strerror or exc}") from None
            owner = _read_owner(fd)
            os.close(fd)
            if time.monotonic() - t0 >= wait_s:
                raise SessionLocked(path, owner) from None
            time.sleep(poll_s)
            continue
        # locked; but the file may have been removed (released) and recreated meanwhile
        try:
            same = os.fstat(fd).st_ino == os.stat(lp).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        previous = _read_owner(fd)
        stale = previous or None
        if stale:
            log.warning("%s: stale lock of %s taken over (its owner is gone)", path,
                        describe_owner(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": str(what),
              "since_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me, sort_keys=True) + "\n").encode())
        return SessionLock(path, fd, stale, time.monotonic() - t0)


@contextlib.contextmanager
def session_lock(path, what: str, *, wait_s: float = 0.0):
    """``with session_lock(path, "process"):`` — :func:`acquire` and release."""
    lock = acquire(path, what, wait_s=wait_s)
    try:
        yield lock
    finally:
        lock.release()
