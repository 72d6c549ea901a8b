"""treadlab.kernels: compiled array kernels (Cython, typed memoryviews, ``nogil`` loops), each
with a NumPy reference beside it (``_<name>_ref.py``, the specification) that the tests compare
against. Arrays in, arrays out: no files, devices or dask here.

Modules: ``contacts`` (streaming contact detection, flight re-zeroing, left/right),
``forces`` (per-contact force metrics), ``gaps``, ``angles``, ``steps``.
"""
from treadlab.kernels.contacts import (  # noqa: F401
    ContactParams, Contacts, ContactState, detect_contacts,
)
from treadlab.kernels.forces import force_metrics  # noqa: F401
