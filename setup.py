"""Build treadlab: map the top-level folders into the ``treadlab`` namespace and compile the
Cython kernels.

``acquisition/``, ``kernels/``, ``pipeline/`` and ``config/`` are generic names taken on PyPI by
unrelated projects, so they are only ever importable as ``treadlab.<folder>`` (docs/design.md §2).
``treadlab`` itself is an implicit namespace package; every ``kernels/*.pyx`` becomes the
extension ``treadlab.kernels.<stem>``.
"""
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
FOLDERS = ("acquisition", "kernels", "pipeline", "config")

package_dir = {f"treadlab.{name}": name for name in FOLDERS}
packages = []
for name in FOLDERS:
    packages.append(f"treadlab.{name}")
    for sub in sorted((HERE / name).rglob("__init__.py")):
        rel = sub.parent.relative_to(HERE / name)
        if rel.parts:
            dotted = f"treadlab.{name}." + ".".join(rel.parts)
            packages.append(dotted)
            package_dir[dotted] = str(Path(name, *rel.parts))

extensions = [
    Extension(
        f"treadlab.kernels.{pyx.stem}",
        [f"kernels/{pyx.name}"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted((HERE / "kernels").glob("*.pyx"))
]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"treadlab.config": ["*.toml"]},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False},
    ),
    zip_safe=False,
)
