"""Simulators: the synthetic runner (``synthetic``), the virtual lab serving it or a real
recording over the real wire formats (``simulated``, ``replay``)."""
