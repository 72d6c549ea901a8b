"""C3D files: import into a session archive (``c3d_import``, with the cluster technique of
``static_calibration``)."""
