"""Device sources: one interface (``base.Source``), the wire formats (``wire``) and the
drivers (``forceplate_serial``, ``markers_udp``, ``markers_lsl``)."""
