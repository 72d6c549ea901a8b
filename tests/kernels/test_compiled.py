"""The compiled kernels load by name; a missing one fails loudly with the build command."""
import pytest

from treadlab.kernels._compiled import compiled


@pytest.mark.parametrize("name", ["_contacts_cy", "_forces_cy", "_angles_cy", "_gaps_cy",
                                  "_steps_cy"])
def test_every_kernel_extension_is_built(name):
    assert compiled(name).__file__.endswith((".so", ".pyd"))


def test_missing_extension_names_the_build_command():
    with pytest.raises(ImportError, match=r"_nope_cy is not built; run `python setup.py build_ext"):
        compiled("_nope_cy")
