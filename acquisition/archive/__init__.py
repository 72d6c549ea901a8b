"""The ``treadlab.session`` archive (format 2): the one place that reads and writes it (docs/archive.md).

Every other module goes through the public names below; none opens an archive with h5py
on its own, and none reaches into the modules' private helpers.

==================  =========================================================================
open / read         :func:`open_archive`, :func:`read_session`, :func:`read_derived`
                    (:func:`read_derived_from` an open file),
                    :func:`read_meta`, :func:`read_force`, :func:`read_markers`, :func:`read_belt`,
                    :func:`attr`,
                    :func:`open_xarray` (one group as an ``xarray.Dataset``)
write               :func:`write_session`, :func:`write_derived`, :func:`create_raw_layout`,
                    :func:`append_rows`; into an open file: :func:`write_session_into`,
                    :func:`write_derived_into`
atomic replace      :func:`atomic_write` (temp file beside the target, fsync, ``os.replace``,
                    fsync of the folder, mode 0644 under the umask)
validate / inspect  :func:`validate_session`, :func:`inspect_session`, :func:`format_inspection`
recover             :func:`clear_status_flags` here; the whole ``treadlab recover`` (which also
                    refits the session clock) is
                    :func:`treadlab.acquisition.capture.recorder.recover`
attributes          :func:`to_attr`, :func:`from_attr`, :func:`attrs_of`
derived file        :func:`derived_path`, :func:`derived_group`, :func:`write_derived_file`,
                    :func:`link_derived`
migrate             :func:`migrate_session`, :func:`migration_needed`
one writer          :func:`acquire` / :func:`session_lock` (:class:`SessionLocked`),
                    :func:`lock_owner`, :func:`lock_path`
==================  =========================================================================

Modules: ``format`` (constants, dataclasses, dataset helpers), ``read``, ``chunks`` (whole
datasets read by inflating their chunks outside HDF5), ``write``, ``atomic``, ``check``
(validate, inspect), ``flags`` (HDF5 superblock status flags), ``migrate``, ``lock``,
``derived`` (:func:`write_derived`).

Lab frame: X = direction of travel, Y = left, Z = up; positions in mm, forces in N, moments in
N·m, times in float64 seconds on the session clock.
"""
from treadlab.acquisition.archive.atomic import atomic_write, default_mode
from treadlab.acquisition.archive.check import (format_inspection, inspect_session,
                                                validate_session)
from treadlab.acquisition.archive.flags import clear_status_flags
from treadlab.acquisition.archive.format import (
    ANGLE_SIGNIFICANT_BITS, CHUNK_SECONDS, COMPONENTS, CONTACT_FIELDS, DERIVED_ANGLES_GZIP_LEVEL,
    DERIVED_FORMAT, bitround,
    DERIVED_SUFFIX, DERIVED_UNITS, FORMAT, FORMAT_VERSION, GZIP_LEVEL, LIBVER,
    REQUIRED_ROOT_ATTRS, SCORE_FIELDS, STATUSES, derived_path, is_derived_file,
    WRENCH_UNITS, ForceData, MarkerData, Session, attrs_of, from_attr, to_attr)
from treadlab.acquisition.archive.lock import (SessionLock, SessionLocked, acquire,
                                               describe_owner, lock_owner, lock_path,
                                               session_lock)
from treadlab.acquisition.archive.read import (attr, derived_group, open_archive, open_xarray,
                                               read_belt, read_derived, read_derived_from,
                                               read_force,
                                               read_markers, read_meta, read_session, reading)
from treadlab.acquisition.archive.write import (append_rows, create_raw_layout, link_derived,
                                                write_derived_file,
                                                write_plate_geometry,
                                                write_derived_into, write_session,
                                                write_session_into)

__all__ = [
    "atomic_write", "default_mode", "format_inspection", "inspect_session", "validate_session",
    "clear_status_flags", "CHUNK_SECONDS", "COMPONENTS", "CONTACT_FIELDS",
    "DERIVED_ANGLES_GZIP_LEVEL", "DERIVED_UNITS", "FORMAT", "FORMAT_VERSION", "GZIP_LEVEL",
    "LIBVER", "REQUIRED_ROOT_ATTRS", "SCORE_FIELDS", "STATUSES", "WRENCH_UNITS", "ForceData",
    "MarkerData", "Session", "attrs_of", "from_attr", "to_attr", "attr", "open_archive", "reading",
    "read_belt", "read_derived", "read_derived_from", "read_force", "read_markers", "read_meta", "read_session", "append_rows",
    "create_raw_layout", "write_derived", "write_derived_into", "write_session",
    "write_session_into", "DERIVED_FORMAT", "DERIVED_SUFFIX", "derived_path", "is_derived_file",
    "SessionLock", "SessionLocked", "acquire", "describe_owner", "lock_owner", "lock_path",
    "session_lock", "derived_group", "open_xarray", "link_derived", "write_derived_file",
    "write_plate_geometry", "ANGLE_SIGNIFICANT_BITS", "bitround", "migrate_session", "migration_needed", "derived_target",
    "target_of",
]
from treadlab.acquisition.archive.migrate import (derived_target, migrate_session,  # noqa: E402
                                                  migration_needed, target_of)
from treadlab.acquisition.archive.derived import write_derived  # noqa: E402
