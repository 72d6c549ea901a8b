"""Errors every layer raises and the CLI turns into one line on stderr and exit code 1.

Every message names the file and the field, key or byte offset, so a technician can act on it
without a traceback (docs/design.md §9). Library functions raise these and never print; only
the CLI (:mod:`treadlab.pipeline.cli`) prints and chooses exit codes.
"""
from __future__ import annotations

import os


class TreadlabError(Exception):
    """Base class: a problem with the input, a device or a session, reported in one line."""


class ConfigError(TreadlabError):
    """A lab configuration problem, raised before any device is opened.

    ``ConfigError(path, key, message)`` reads ``"lab.toml: forceplate.baud: ..."``.
    """

    def __init__(self, path: str | os.PathLike | None, key: str | None, message: str):
        self.path, self.key, self.message = path, key, message
        where = ": ".join(str(p) for p in (path, key) if p not in (None, ""))
        super().__init__(f"{where}: {message}" if where else message)

    def __reduce__(self):  # rebuilt from its parts where it is unpickled (a dask client)
        return type(self), (self.path, self.key, self.message)


class InputError(TreadlabError):
    """A file that cannot be read as what it claims to be (archive, C3D, TOML).

    ``InputError(path, "where", "what")`` reads ``"s.h5: /raw/force/time: not monotonic"``.
    """

    def __init__(self, path: str | os.PathLike, where: str | None, message: str):
        self.path, self.where, self.message = path, where, message
        head = f"{path}: {where}" if where else f"{path}"
        super().__init__(f"{head}: {message}")

    def __reduce__(self):  # a session failing on a dask worker reads the same on the client
        return type(self), (self.path, self.where, self.message)


class DeviceError(TreadlabError, IOError):
    """A device (serial port, network stream) that cannot be opened or read."""
