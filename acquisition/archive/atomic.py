"""The one atomic file write of treadlab (docs/archive.md §6).

Every file treadlab writes for a user — a session archive, its derived data, an export (HDF5,
C3D, CSV) and a report's figures — goes through :func:`atomic_write` (or, for bytes already in
memory, :func:`write_bytes_atomic`, the same steps): the new content is
written to a temporary file beside the target, flushed to disk (``fsync`` of the file), moved
over the target with ``os.replace`` and made durable (``fsync`` of the folder). A crash or kill
at any point leaves either the old file or the new one, complete; never a half-written file
under the target's name.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py

from treadlab.config.errors import InputError

log = logging.getLogger(__name__)

#: Hidden temporary files of :func:`atomic_write` (``.NAME.PID.XXXXXXXX.tmp`` / ``….c3d``) and
#: of ``recover`` (``.NAME.PID.recover.tmp``): the writer's process id is in the name.
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.([a-z0-9_]{8}(\.tmp|\.c3d)|recover\.tmp)$")
#: Temporary files of earlier versions (no process id): stale once older than this, s.
_OLD_TEMP_NAME = re.compile(r"^\..+\.h5\.[a-z0-9_]{8}\.tmp$")
_OLD_TEMP_AGE_S = 3600.0


def default_mode() -> int:
    """The mode a newly created file gets under the current umask (0644 under umask 022).

    ``mkstemp`` creates its files at 0600; without this, archives and exports would be
    unreadable to the rest of the lab.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_path(path) -> None:
    """Flush a file's data to disk (opened read-only: works on files other code wrote)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path) -> None:
    """Make a rename inside folder ``path`` durable; a no-op where folders cannot be fsynced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_quiet(path) -> None:
    """Remove ``path``; a file already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_write(target, *, copy_from=None, suffix: str = ".tmp") -> Iterator[Path]:
    """Write ``target`` atomically: yields a temporary path beside it to write into.

    Parameters
    ----------
    target : str or os.PathLike
        The file to create or replace. Its folder is created when missing.
    copy_from : str or os.PathLike, optional
        Start the temporary file as a byte copy of this file (an update of an existing archive:
        the original is never opened for writing).
    suffix : str
        Ending of the temporary file's name, for writers that insist on one (ezc3d appends
        ``.c3d`` to any other name). The name always starts with a dot, so folder scans skip it.

    On a clean exit of the ``with`` block the temporary file is fsynced, given its mode (the
    replaced file's mode when ``target`` exists, else :func:`default_mode`), moved over
    ``target`` with ``os.replace``, and the folder is fsynced. On any exception the temporary
    file is removed, ``target`` is untouched and the exception propagates.

    Examples
    --------
    >>> with atomic_write("out.h5") as tmp:          # doctest: +SKIP
    ...     with h5py.File(tmp, "w") as f: ...
    """
    target = Path(target)
    fd, tmp = _temp_beside(target, suffix)
    os.close(fd)
    try:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
        yield tmp
        fsync_path(tmp)
        _put_in_place(tmp, target)
    except BaseException:
        unlink_quiet(tmp)
        raise


def write_bytes_atomic(target, data) -> None:
    """:func:`atomic_write` of the bytes ``data`` (any buffer), written and fsynced through the
    temporary file's own descriptor instead of opening it again to write and to fsync (a
    0.55 MB derived file: about 0.05 ms less CPU). Same guarantees: on any exception (e.g.
    OSError errno 28, disk full) the temporary file is removed and ``target`` is untouched."""
    target = Path(target)
    fd, tmp = _temp_beside(target, ".tmp")
    try:
        try:
            view = memoryview(data).cast("B")
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        _put_in_place(tmp, target)
    except BaseException:
        unlink_quiet(tmp)
        raise


def _temp_beside(target: Path, suffix: str) -> tuple[int, Path]:
    """A new, empty temporary file beside ``target`` (its folder created when missing): its
    open descriptor and path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # the process id in the name: remove_stale_temps() never takes a live writer's file
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=suffix,
                                dir=target.parent)
    return fd, Path(name)


def _put_in_place(tmp: Path, target: Path) -> None:
    """Give the written and fsynced ``tmp`` its mode (the replaced file's when ``target``
    exists, else :func:`default_mode`), move it over ``target`` and fsync the folder."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = default_mode()
    os.chmod(tmp, mode)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def remove_stale_temps(folder, min_age_s: float = 10.0) -> list[Path]:
    """Remove the temporary files a killed writer left under ``folder`` (recursively).

    A temporary file of :func:`atomic_write` or ``recover`` carries its writer's process id in
    its name; one whose process is gone, older than ``min_age_s`` seconds, was left by a
    process that died (``kill -9``, power loss) and is removed. Returns the files removed.
    """
    removed = []
    now = time.time()
    for p in Path(folder).rglob(".*"):
        m = _TEMP_NAME.match(p.name)
        old = m is None and _OLD_TEMP_NAME.match(p.name) is not None
        if (m is None and not old) or not p.is_file():
            continue
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        if age < (_OLD_TEMP_AGE_S if old else min_age_s):
            continue
        if m is not None and _alive(int(m.group(1))):
            continue
        unlink_quiet(p)
        removed.append(p)
        log.info("removed %s, left by an interrupted write", p)
    return removed


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: ``(file access, file creation)`` property lists of an in-memory file by ``libver``.
_IN_MEMORY_PLISTS: dict = {}


def _in_memory_plists(libver) -> tuple:
    """The property lists ``h5py.File(name, "w", driver="core", backing_store=False,
    libver=libver)`` creates a file with, taken once from such a file: h5py builds them anew
    for every file (a derived file made with them directly: 0.07 ms less CPU)."""
    plists = _IN_MEMORY_PLISTS.get(libver)
    if plists is None:
        with h5py.File(f"treadlab-plists.{uuid.uuid4().hex}.in-memory", "w", driver="core",
                       backing_store=False, libver=libver) as f:
            plists = _IN_MEMORY_PLISTS[libver] = (f.id.get_access_plist(),
                                                  f.id.get_create_plist())
    return plists


@contextlib.contextmanager
def atomic_h5(target, *, copy_from=None, libver=None, small: bool = False
              ) -> Iterator["h5py.File"]:
    """Write an HDF5 file atomically, building it in memory: yields an open ``h5py.File``.

    HDF5 left with metadata it cannot write (a full disk) fails to close and crashes the
    process at exit. So the file is built in memory, and only the finished image is written to
    disk, by plain Python I/O through :func:`write_bytes_atomic`: a full disk is then an ordinary
    ``OSError`` (errno 28), the temporary file is removed and ``target`` is untouched.

    Parameters
    ----------
    target : str or os.PathLike
        The ``.h5`` file to create or replace.
    copy_from : str or os.PathLike, optional
        Start from this file's bytes (opened ``r+`` in memory; the file itself is only read).
    libver : h5py ``libver`` for a new file.
    small : bool
        A new file of many small objects (a derived file): built by HDF5's in-memory
        (``core``) driver, without a backing file, and its image taken with
        ``H5Fget_file_image`` (which clears the superblock's "open for writing" flags, as
        closing does). Faster than h5py over a ``BytesIO``, whose every HDF5 read and write
        is a Python call (a 2-minute derived file: 7.9-8.2 ms -> 7.5 ms), but the image is a
        copy: memory about twice the file's size instead of about its size. Otherwise (and
        with ``copy_from``) h5py over a ``BytesIO``.

    Raises
    ------
    InputError naming ``copy_from`` when it is not HDF5; OSError (e.g. errno 28) when the
    image cannot be written.
    """
    if copy_from is None and small:
        # the name only identifies the file inside HDF5 (nothing is read or written there):
        # unique, so two files built at once in threads are never taken for one
        fapl, fcpl = _in_memory_plists(libver)
        f = h5py.File(h5py.h5f.create(f"{target}.{uuid.uuid4().hex}.in-memory".encode(),
                                      h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl))
        try:
            yield f
            f.flush()
            image = f.id.get_file_image()
        finally:
            f.close()
    else:
        buf = io.BytesIO(Path(copy_from).read_bytes() if copy_from is not None else b"")
        if copy_from is not None:
            try:
                f = h5py.File(buf, "r+")
            except OSError as exc:
                raise InputError(copy_from, None, f"not a writable HDF5 file ({exc})") from None
        else:
            f = h5py.File(buf, "w", libver=libver)
        try:
            yield f
        finally:
            f.close()
        image = buf.getbuffer()
    write_bytes_atomic(target, image)
