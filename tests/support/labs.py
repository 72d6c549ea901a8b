"""Real lab configurations for tests, built and checked by the config schema.

Every config here goes through :func:`treadlab.config.schema.build_lab`, the same validation a
lab's TOML file gets, so a test lab can never hold a value a real lab could not.
"""
from __future__ import annotations

import numpy as np

from treadlab.config import LabConfig
from treadlab.config.schema import build_lab

#: A diagonal calibration, volts → N (Fx, Fy, Fz) and N·m (Mx, My, Mz).
CAL = np.diag([2000.0, 2000.0, 4000.0, 800.0, 800.0, 400.0])

#: Plate origins (mm, lab frame) of the two-belt test treadmill.
SPLIT_PLATES = (("left", range(0, 6), (-150.0, 135.0, 0.0)),
                ("right", range(6, 12), (-150.0, -135.0, 0.0)))


def plate(name: str, channels, origin=(0.0, 0.0, 0.0), calibration=CAL, corners=None) -> dict:
    """One ``[[plates]]`` table: ``corners`` default to a 500 × 300 mm plate around ``origin``."""
    ox, oy, oz = (float(v) for v in origin)
    if corners is None:
        corners = [[ox + dx, oy + dy, oz] for dx, dy in
                   ((250.0, 150.0), (-250.0, 150.0), (-250.0, -150.0), (250.0, -150.0))]
    return {"name": name, "origin": [ox, oy, oz],
            "corners": [[float(v) for v in c] for c in corners],
            "channels": [int(c) for c in channels],
            "calibration": np.asarray(calibration, dtype=np.float64).tolist()}


def make_lab(*, name: str = "test", belt: str = "split", plates=None,
             force_driver: str = "simulated", port: str = "auto", baud: int = 2_000_000,
             rate_hz: float = 1000.0, channels: int = 12, sample_type: str = "int16",
             volts_per_count: float = 10.0 / 32768, tare_seconds: float = 0.2,
             force_stream: str = "treadlab-test-force", marker_driver: str = "markers_udp",
             host: str = "127.0.0.1", marker_port: int = 0, marker_rate_hz: float = 200.0,
             labels=("LASI",), marker_stream: str = "treadlab-test-markers",
             simulator: dict | None = None, marker_names: dict | None = None,
             contacts: dict | None = None, filters: dict | None = None,
             vendor: dict | None = None) -> LabConfig:
    """A checked :class:`LabConfig` (``source_path`` None). ``plates``: a list of
    :func:`plate` tables; default the split-belt pair of :data:`SPLIT_PLATES`. ``vendor``:
    ``{"qualisys": {...}, "natnet": {...}, "treadmill": {...}}`` tables; a ``qualisys`` or
    ``natnet`` driver without its table gets the emulator's (host/server ``"auto"``; QTM
    plate ids 1, 2, … in ``[[plates]]`` order)."""
    if plates is None:
        plates = [plate(n, ch, origin) for n, ch, origin in SPLIT_PLATES]
    data = {
        "lab": {"name": name, "belt": belt},
        "plates": list(plates),
        "forceplate": {"driver": force_driver, "port": port, "baud": int(baud),
                       "rate_hz": float(rate_hz), "channels": int(channels),
                       "sample_type": sample_type, "volts_per_count": float(volts_per_count),
                       "tare_seconds": float(tare_seconds), "stream_name": force_stream},
        "markers": {"driver": marker_driver, "host": host, "port": int(marker_port),
                    "rate_hz": float(marker_rate_hz), "labels": [str(x) for x in labels],
                    "stream_name": marker_stream},
        "simulator": dict(simulator or {}),
        "marker_names": dict(marker_names or {}),
    }
    data.update(dict(vendor or {}))
    if "qualisys" in (force_driver, marker_driver) and "qualisys" not in data:
        data["qualisys"] = {"host": "auto", "plates": [
            {"qtm_id": i + 1, "name": p["name"]} for i, p in enumerate(data["plates"])]}
    if marker_driver == "natnet" and "natnet" not in data:
        data["natnet"] = {"server": "auto"}
    if contacts:
        data["contacts"] = dict(contacts)
    if filters:
        data["filters"] = dict(filters)
    return build_lab(data)
