"""Acquisition: from the lab's devices to one session archive.

The sub-packages follow the data (docs/architecture.md):

``sources``  device drivers behind one :class:`~treadlab.acquisition.sources.base.Source`
             interface, and the wire formats they decode;
``capture``  the session clock, the crash-safe recorder and the live processor;
``sim``      the synthetic runner and the virtual lab (simulated and replayed devices);
``io``       C3D files in and out;
``archive``  the ``treadlab.session`` HDF5 format, the one module that reads and writes it.
"""
