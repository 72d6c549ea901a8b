"""Converting older archives to the current layout (``treadlab migrate``, docs/archive.md §12).

Format 1 → 2, per session:

1. the session's ``/derived`` (when it has one) is written to its own derived file
   ``<stem>.derived.h5`` beside it (atomically: temporary file, fsync, ``os.replace``);
2. the session is rewritten once, atomically (built in memory from its own bytes, then
   temporary file, fsync, ``os.replace``): the ``/derived`` group is replaced by an external
   link to the derived file, force-plate ``origin``/``corners`` attributes become datasets with
   named dimensions (netCDF cannot read multi-dimensional attributes), ``format_version``
   becomes 2. Every raw dataset keeps its bytes (the HDF5 image is edited, not re-encoded).

A kill between or during the steps leaves the session as it was (step 2 not done) or done;
running it again finishes the job. A session already in the current layout is not touched
(idempotent). The space the old in-file ``/derived`` used stays in the file as free space
(about 2 % of a session); ``h5repack`` reclaims it when that matters.
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.archive.atomic import atomic_h5
from treadlab.acquisition.archive.format import (FORMAT_VERSION, derived_path, from_attr,
                                                 one_line)
from treadlab.acquisition.archive.read import attr, open_archive, read_derived_from
from treadlab.acquisition.archive.write import (link_derived, write_derived_file,
                                                write_plate_geometry)
from treadlab.config.errors import InputError

log = logging.getLogger(__name__)


def derived_target(path) -> tuple[Path | None, str]:
    """``(derived file, session_id)`` of session ``path``: the file its ``/derived`` external
    link names (resolved beside the session), or ``None`` when the session has no such link
    (format 1, or a raw file another program wrote)."""
    path = Path(path)
    with open_archive(path) as f:
        return target_of(f, path)


def target_of(f, path) -> tuple[Path | None, str]:
    """:func:`derived_target` of the session ``path`` open as ``f``."""
    path = Path(path)
    link = f.get("derived", getlink=True)
    sid = str(attr(f, "session_id", "") or "")
    if _link_ok(link, path):
        return path.parent / link.filename, sid
    return None, sid


def _link_ok(link, path) -> bool:
    """The link a session at ``path`` should have: to ``<stem>.derived.h5:/derived``. A session
    renamed or copied keeps the link to the old name: relinked by :func:`migrate_session`."""
    return (isinstance(link, h5py.ExternalLink) and link.path == "/derived"
            and link.filename == derived_path(path).name)


def migration_needed(path) -> list[str]:
    """What :func:`migrate_session` would change in ``path`` (empty: current layout)."""
    with open_archive(path) as f:
        return _needed(f, path)


def _needed(f, path) -> list[str]:
    why = []
    link = f.get("derived", getlink=True)
    if isinstance(link, h5py.ExternalLink):
        if not _link_ok(link, path):
            why.append(f"/derived links {link.filename}, not {derived_path(path).name} "
                       "(session renamed or copied)")
    else:
        why.append("/derived inside the session file" if link is not None
                   else "no /derived link")
    fg = f.get("raw/force")
    if isinstance(fg, h5py.Group):
        for name in ("origin", "corners"):
            if name in fg.attrs and not isinstance(fg.get(name), h5py.Dataset):
                why.append(f"/raw/force@{name} is an attribute")
    v = attr(f, "format_version")
    if v is None or (isinstance(v, (int, float)) and v < FORMAT_VERSION):
        why.append(f"format_version {v}")
    return why


def _units_of(g) -> dict:
    units = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "units" in obj.attrs:
            units.setdefault(name.rsplit("/", 1)[-1], str(from_attr(obj.attrs["units"])))
    g.visititems(visit)
    return units


def migrate_session(path, *, derived: tuple | None = None) -> list[str]:
    """Bring session ``path`` to the current layout, crash-safely and idempotently.

    Parameters
    ----------
    path : str or os.PathLike
        A session archive (format 1 or 2, or a third-party raw file).
    derived : (dict, dict), optional
        ``(derived, attrs)`` as for :func:`~.write.write_derived`: the derived data to store
        (used by ``write_derived`` on a session that has no link yet) instead of the file's
        own ``/derived``.

    Returns
    -------
    list of str
        What was changed (empty: already current, nothing written).

    Raises
    ------
    InputError
        The file cannot be read, is still being recorded (``status="recording"``: run
        ``treadlab recover`` first) or holds a ``/derived`` that cannot be read.
    """
    path = Path(path)
    with open_archive(path) as f:
        why = _needed(f, path)
        if not why and derived is None:
            return []
        if attr(f, "status") == "recording":
            raise InputError(path, "/@status", "'recording': run `treadlab recover` first")
        sid = str(attr(f, "session_id", "") or "")
        if derived is None:
            # the derived data the session has now: in the file (format 1) or in the derived
            # file its link names (a renamed or copied session)
            try:
                data = read_derived_from(f)
                if data is not None:
                    data["units"] = _units_of(f["derived"])
            except InputError:
                data = None  # a derived file of another session: not carried over
            except (KeyError, ValueError, TypeError, OSError) as exc:
                raise InputError(path, "/derived", f"unreadable: {one_line(exc)}") from None
            if data is not None:
                derived = (data, dict(data.get("attrs") or {}))
    if derived is not None:
        data, attrs = derived
        write_derived_file(path, data, attrs, session_id=sid)
    elif not derived_path(path).exists():  # the placeholder, so the new link never dangles
        write_derived_file(path, None, {}, session_id=sid)
    if not why:
        return ["derived file written"]
    with atomic_h5(path, copy_from=path) as f:
        link_derived(f, derived_path(path).name)
        fg = f.get("raw/force")
        if isinstance(fg, h5py.Group) and ("origin" in fg.attrs or "corners" in fg.attrs):
            plates = from_attr(fg.attrs.get("plates", []))
            p = 1 if isinstance(plates, str) else len(plates)
            origin = np.asarray(from_attr(fg.attrs.get("origin", np.zeros((p, 3)))),
                                dtype=np.float64).reshape(-1, 3)
            p = origin.shape[0]
            corners = np.asarray(from_attr(fg.attrs.get("corners", np.zeros((p, 4, 3)))),
                                 dtype=np.float64).reshape(p, 4, 3)
            for name in ("origin", "corners"):
                if name in fg.attrs:
                    del fg.attrs[name]
            if "origin" not in fg and "corners" not in fg:
                write_plate_geometry(fg, origin, corners)
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    log.info("%s: migrated (%s)", path, "; ".join(why))
    return why
