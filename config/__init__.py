"""Lab configuration: the TOML schema, its loader, the shipped labs and reference sets.

Every other treadlab package may read this one; it depends on none of them.
"""
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from treadlab.config.errors import ConfigError, DeviceError, InputError, TreadlabError
from treadlab.config.loader import load_lab, shipped_lab_path
from treadlab.config.schema import LabConfig

__all__ = ["ConfigError", "DeviceError", "InputError", "LabConfig", "TreadlabError", "load_lab",
           "shipped_lab_path", "software_version"]


@lru_cache(maxsize=1)
def software_version() -> str:
    """``"treadlab X.Y.Z"`` as installed (stored in every archive's ``software`` attribute).
    Looked up once per process: the package metadata scan costs about 1 ms, and a batch
    worker asks for it twice per session."""
    try:
        return f"treadlab {version('treadlab')}"
    except PackageNotFoundError:  # running from a checkout without an install
        return "treadlab 0+unknown"
