# cython: language_level=3
"""``_angles_cy`` compiled for x86-64 with AVX2 (setup.py adds the flags on x86-64 only): the
atan2 of a block's angles run four lanes wide. ``treadlab.kernels.angles`` picks this build when
the CPU has AVX2, else ``_angles_cy``. Same source, same results."""
include "_angles_cy.pyx"
