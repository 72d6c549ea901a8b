"""Build treadlab: map the top-level folders into the ``treadlab`` namespace and compile the
Cython kernels.

``acquisition/``, ``kernels/``, ``pipeline/`` and ``config/`` are generic names taken on PyPI by
unrelated projects, so they are only ever importable as ``treadlab.<folder>`` (docs/design.md §2).
``treadlab`` itself is an implicit namespace package; every ``kernels/*.pyx`` becomes the
extension ``treadlab.kernels.<stem>``. A ``kernels/<name>_avx2.pyx`` (it includes
``<name>.pyx``) is the same kernel compiled for AVX2 (:data:`AVX2`); it is built only on x86-64
with a compiler that accepts the flags, and ``treadlab.kernels._compiled.compiled`` loads it
instead of ``<name>`` on a CPU with AVX2.
"""
import platform
import shlex
import subprocess
import sysconfig
import tempfile
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

#: Flags of the ``*_avx2`` builds: 256-bit vectors, and no fused multiply-add contraction, so
#: that they round every operation as the baseline x86-64 (SSE2) build does: the same bits.
AVX2 = ["-mavx2", "-ffp-contract=off"]


def _compiler_accepts(flags) -> bool:
    """Whether the C compiler Python was built with compiles an empty file with ``flags``."""
    cc = sysconfig.get_config_var("CC")
    if not cc:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            done = subprocess.run([*shlex.split(cc), *flags, "-c", str(src), "-o",
                                   str(Path(tmp, "probe.o"))], capture_output=True)
        except OSError:
            return False
    return done.returncode == 0


BUILD_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and _compiler_accepts(AVX2)
#: Flags of single AVX2 builds. ``-fno-trapping-math`` lets GCC turn the branches of the angle
#: kernel's atan2 and chord into selects, and ``-fno-math-errno`` drops the branch to libm's
#: ``sqrt`` (for ``errno`` on a negative argument), so that its loops over a block's frames
#: vectorise; neither changes a value (only which floating-point exception flags may be raised,
#: and ``errno``).
AVX2_FLAGS = {"_angles_cy_avx2": ["-fno-trapping-math", "-fno-math-errno"]}

extensions = [
    Extension(
        f"treadlab.kernels.{pyx.stem}",
        [f"kernels/{pyx.name}"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"] + (AVX2 + AVX2_FLAGS.get(pyx.stem, [])
                                      if pyx.stem.endswith("_avx2") else []),
    )
    for pyx in sorted((HERE / "kernels").glob("*.pyx"))
    if BUILD_AVX2 or not pyx.stem.endswith("_avx2")
]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"treadlab.config": ["*.toml"],
                  "treadlab.pipeline.station": ["static/*.html", "static/*.js", "static/*.css"]},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False},
    ),
    zip_safe=False,
)
