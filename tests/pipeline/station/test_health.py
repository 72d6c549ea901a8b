"""Device health, tare and the unhealthy-device gate, on a station in this process with the
simulated lab (the treadmill's port is unplugged by the lab's fault injection)."""
from __future__ import annotations

import time

import pytest

from treadlab.pipeline.station.core import Station
from treadlab.pipeline.station.store import RequestError


def _until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_unplugged_treadmill_blocks_trials_until_it_is_back(tmp_path):
    st = Station(None, tmp_path / "data").start()
    try:
        _until(lambda: not st.unhealthy(), 30, "healthy devices")
        h = st.health()
        assert h["force"]["tared"] and h["force"]["rate_hz"] > 900
        assert h["markers"]["clock_drift_ppm"] is not None
        st.set_runner({"id": "H1", "body_mass_kg": 70, "leg_length_mm": 920})
        # a tare asks the simulated runner off the belt, measures the zero, and lets it back on
        out = st.tare(0.5)
        assert len(out["zero_counts"]) == 12
        st.lab.vanish(3.0)
        bad = _until(lambda: [b for b in st.unhealthy() if "no frames" in b], 10,
                     "the force plate silent")
        assert bad[0].startswith("force: no frames for ")
        with pytest.raises(RequestError) as err:
            st.start_trial({"kind": "static", "duration_s": 2})
        assert err.value.status == 409 and "force: " in str(err.value)
        assert st.trials == []
        # the serial reader reopens the port with back-off; the gate opens again
        _until(lambda: st.health()["force"]["reconnects"] >= 1, 30, "the port reopened")
        _until(lambda: not st.unhealthy(), 30, "the force plate healthy again")
        with pytest.raises(RequestError, match="^trial.kind: "):
            st.start_trial({"kind": "sprint"})
    finally:
        st.stop(wait_processing_s=5)
