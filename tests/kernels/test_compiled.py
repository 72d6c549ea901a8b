"""The compiled kernels load by name; a missing one fails loudly with the build command."""
import importlib.util

import pytest

from treadlab.kernels import _compiled
from treadlab.kernels._compiled import compiled

HAS_AVX2 = "avx2" in _compiled.cpu_flags()
AVX2_BUILT = all(importlib.util.find_spec(f"treadlab.kernels.{name}_avx2") is not None
                 for name in _compiled.AVX2_BUILDS)


@pytest.mark.parametrize("name", ["_contacts_cy", "_forces_cy", "_angles_cy", "_gaps_cy",
                                  "_steps_cy", "_filters_cy"])
def test_every_kernel_extension_is_built(name):
    assert compiled(name).__file__.endswith((".so", ".pyd"))


def test_missing_extension_names_the_build_command():
    with pytest.raises(ImportError, match=r"_nope_cy is not built; run `python setup.py build_ext"):
        compiled("_nope_cy")


def test_a_cpu_without_avx2_gets_the_baseline_build(monkeypatch):
    monkeypatch.setattr(_compiled, "cpu_flags", lambda: frozenset({"sse2"}))
    assert compiled("_filters_cy").__name__ == "treadlab.kernels._filters_cy"


@pytest.mark.skipif(not (HAS_AVX2 and AVX2_BUILT), reason="no AVX2 CPU or no AVX2 build")
def test_a_cpu_with_avx2_gets_the_avx2_build():
    assert compiled("_filters_cy").__name__ == "treadlab.kernels._filters_cy_avx2"
    assert compiled("_angles_cy").__name__ == "treadlab.kernels._angles_cy_avx2"
    assert compiled("_gaps_cy").__name__ == "treadlab.kernels._gaps_cy"  # has no AVX2 build
    assert compiled("_filters_cy", avx2=False).__name__ == "treadlab.kernels._filters_cy"


def test_cpu_flags_reads_proc_cpuinfo():
    flags = _compiled.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:
        assert flags == frozenset()
    else:
        if "flags" in text:
            assert "fpu" in flags or not flags.isdisjoint({"sse2", "avx2", "fp", "asimd"})
