"""The one atomic file write of treadlab (docs/archive.md §6).

Every file treadlab writes for a user — a session archive, its derived data, an export (HDF5,
C3D, CSV) and a report's figures — goes through :func:`atomic_write`: the new content is
written to a temporary file beside the target, flushed to disk (``fsync`` of the file), moved
over the target with ``os.replace`` and made durable (``fsync`` of the folder). A crash or kill
at any point leaves either the old file or the new one, complete; never a half-written file
under the target's name.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if copy_from is not None:
            shutil.copyfile(copy_from, tmp)
        yield tmp
        fsync_path(tmp)
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        unlink_quiet(tmp)
        raise
