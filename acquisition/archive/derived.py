"""Storing a session's derived data (docs/archive.md §11): the one entry point the pipeline
calls, :func:`write_derived`. It writes the derived file alone when the session already links
it, and migrates the session once (:mod:`.migrate`) when it does not.
"""
from __future__ import annotations

from pathlib import Path

from treadlab.acquisition.archive.format import derived_path
from treadlab.acquisition.archive.migrate import derived_target, migrate_session
from treadlab.acquisition.archive.write import write_derived_file
from treadlab.config.errors import InputError


def write_derived(path, derived: dict, attrs: dict, *, target: tuple | None = None) -> Path:
    """Store ``derived`` as the ``/derived`` of the session at ``path``, atomically, writing
    only derived data.

    Format 2 (docs/archive.md §11): the session's ``/derived`` is an external link to its derived
    file; that file alone is rebuilt (in memory, then temporary file, fsync, ``os.replace``)
    and the session file is only read. A crash or kill at any point leaves the previous derived
    file or the new one, complete. A session without the link (format 1, or a third-party raw
    file) is first migrated once (:func:`treadlab.acquisition.archive.migrate_session`).

    Parameters
    ----------
    path : str or os.PathLike
        An existing archive.
    derived : dict
        ``{"contacts": {name: (s,) array}, "angles": {"time", "values", "names", "reasons"},
        "scores": {name: (4,) array}}`` (docs/archive.md §4 names; extra columns and extra groups of
        parallel columns are kept). An optional ``"units": {column: unit}`` entry gives the
        units of columns :data:`DERIVED_UNITS` does not know; ``"attrs"`` (as returned by
        :func:`read_derived`) is ignored.
    attrs : dict
        ``/derived`` attributes: ``pipeline_version``, ``config_hash`` (``processed_utc`` is
        filled in when missing).
    target : (pathlib.Path or None, str), optional
        :func:`treadlab.acquisition.archive.migrate.derived_target` of the session, from a
        caller that holds the session lock and has read it already (else it is read here).

    Returns
    -------
    pathlib.Path
        The derived file written.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such file")
    target, session_id = derived_target(path) if target is None else target
    if target is None:  # no link yet: write the new derived file, then link it (once)
        migrate_session(path, derived=(derived, attrs))
        return derived_path(path)
    return write_derived_file(path, derived, attrs, session_id=session_id, target=target)
