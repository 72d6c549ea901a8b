"""The compiled kernels, loaded by name with a build hint when they are missing.

The public kernel functions never fall back silently to the slow NumPy reference (docs/design.md §11):
an unbuilt extension is an ``ImportError`` that says how to build it.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def compiled(name: str) -> ModuleType:
    """The extension ``treadlab.kernels.<name>`` (e.g. ``"_contacts_cy"``).

    Raises
    ------
    ImportError
        When the extension is not built, with the command that builds it.
    """
    try:
        return importlib.import_module(f"treadlab.kernels.{name}")
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            f"treadlab.kernels.{name} is not built; run `python setup.py build_ext --inplace` "
            f"in the treadlab checkout (or reinstall treadlab): {exc}") from exc
