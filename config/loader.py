"""Reading lab configuration files (TOML) into a checked
:class:`~treadlab.config.schema.LabConfig`."""
from __future__ import annotations

import logging
import os
import sys
from importlib import resources
from pathlib import Path

from treadlab.config.errors import ConfigError
from treadlab.config.schema import LabConfig, build_lab

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

#: The labs shipped with treadlab, by short name (``load_lab("split_belt")``).
SHIPPED_LABS = {"simulated": "lab_simulated.toml", "split_belt": "lab_split_belt.toml",
                "single_belt": "lab_single_belt.toml"}
DEFAULT_LAB = "simulated"


def shipped_lab_path(name: str = DEFAULT_LAB) -> Path:
    """Path of a shipped lab file (``"simulated"``, ``"split_belt"``, ``"single_belt"``)."""
    try:
        filename = SHIPPED_LABS[name]
    except KeyError:
        raise ConfigError(name, None, "no such file or shipped lab; shipped labs: "
                          + ", ".join(SHIPPED_LABS)) from None
    return Path(str(resources.files("treadlab.config").joinpath(filename)))


def load_lab(path: str | os.PathLike | None = None) -> LabConfig:
    """Read and check a lab configuration.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A TOML file; ``None`` = the shipped simulated lab (``lab_simulated.toml``). A bare name
        of a shipped lab (``"simulated"``, ``"split_belt"``, ``"single_belt"``) that is not a
        file in the working directory also selects that shipped file.

    Returns
    -------
    LabConfig
        With ``source_path`` set to the file read.

    Raises
    ------
    ConfigError
        ``"<file>: <table.key>: <why>"`` — the file is missing or not TOML, or a table/key is
        unknown, mistyped or out of range (see :func:`treadlab.config.schema.build_lab`).
    """
    if path is None:
        path = shipped_lab_path(DEFAULT_LAB)
    else:
        path = Path(path)
        if not path.exists() and str(path) in SHIPPED_LABS:
            path = shipped_lab_path(str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, not a lab TOML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    cfg = build_lab(data, path)
    log.debug("lab config %s (hash %s)", path, cfg.hash()[:12])
    return cfg
