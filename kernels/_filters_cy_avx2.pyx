# cython: language_level=3
"""``_filters_cy`` compiled for x86-64 with AVX2 (setup.py adds the flags on x86-64 only):
the loops over the channels run four float64 lanes wide. ``treadlab.kernels.filters`` picks
this build when the CPU has AVX2, else ``_filters_cy``. Same source, same results."""
include "_filters_cy.pyx"
