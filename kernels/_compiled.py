"""The compiled kernels, loaded by name with a build hint when they are missing.

The public kernel functions never fall back silently to the slow NumPy reference (docs/design.md §11):
an unbuilt extension is an ``ImportError`` that says how to build it.

A kernel may also have a build for AVX2 (``<name>_avx2``, built by setup.py on x86-64 only):
:func:`compiled` loads it instead of ``<name>`` when the CPU has AVX2 (:func:`cpu_flags`).
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType

#: Kernels with an AVX2 build ``<name>_avx2`` (the same source, the same results).
AVX2_BUILDS = frozenset({"_filters_cy", "_angles_cy"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU feature flags of ``/proc/cpuinfo`` (Linux; empty elsewhere or unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def compiled(name: str, avx2: bool = True) -> ModuleType:
    """The extension ``treadlab.kernels.<name>`` (e.g. ``"_contacts_cy"``), or its AVX2 build
    when ``avx2``, it has one (:data:`AVX2_BUILDS`), that build is installed and the CPU has
    AVX2.

    Raises
    ------
    ImportError
        When the extension is not built, with the command that builds it.
    """
    if avx2 and name in AVX2_BUILDS and "avx2" in cpu_flags():
        try:
            return importlib.import_module(f"treadlab.kernels.{name}_avx2")
        except ImportError:  # not built (compiler without -mavx2): the baseline build
            pass
    try:
        return importlib.import_module(f"treadlab.kernels.{name}")
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise ImportError(
            f"treadlab.kernels.{name} is not built; run `python setup.py build_ext --inplace` "
            f"in the treadlab checkout (or reinstall treadlab): {exc}") from exc
