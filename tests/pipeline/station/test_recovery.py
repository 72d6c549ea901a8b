"""kill -9 of the station mid-trial, then a restart: the trial is recovered, listed as
interrupted, processed, and its archive is a valid session."""
from __future__ import annotations

import json

import h5py

from treadlab.acquisition.archive import validate_session

from .conftest import lab_toml, trial_done, wait_healthy


def test_kill_9_mid_trial_then_restart(tmp_path, station_factory):
    cfg = lab_toml(tmp_path)
    st = station_factory(config=cfg)
    wait_healthy(st)
    assert st.call("POST", "/api/runner", {"id": "K9", "body_mass_kg": 70,
                                           "leg_length_mm": 920})[0] == 200
    status, trial = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 3.5,
                                                    "note": "killed"})
    assert status == 201, trial
    # let the recorder flush a few times (every 0.5 s), then kill without warning
    st.wait(lambda s: s["trial"] and s["trial"]["elapsed_s"] >= 8.0, 30, "8 s recorded")
    st.proc.kill()
    st.proc.wait(10)
    side = tmp_path / "data" / "K9" / (trial["id"].split("/")[1] + ".json")
    assert json.loads(side.read_text())["status"] == "recording"

    again = station_factory(config=cfg)
    done = trial_done(again, trial["id"])
    assert done["status"] == "interrupted", done
    assert done["processing"] == "done", done
    assert done["recovered"]                     # recover()'s one line
    path = tmp_path / "data" / "K9" / (trial["id"].split("/")[1] + ".h5")
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert f["raw/force/time"].shape[0] > 5 * 1000      # most of the 8 s at 1000 Hz
        assert "derived" in f
    # the restarted station remembers the runner and records again
    state = wait_healthy(again)
    assert state["runner"]["id"] == "K9"
    assert again.terminate() == 0
