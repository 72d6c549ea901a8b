"""The station drives the treadmill: a running trial with a speed protocol against the simulated
lab with ``[treadmill] host = "auto"`` (the simulated Bertec controller on loopback TCP, the
synthetic runner following its belt), through a real ``treadlab station`` process.

One trial of three 15 s stages (2.5 → 3.5 → 4.5 m/s, 1 m/s² ramps): the request errors naming
``trial.protocol``, the stage shown in the state, a ``protocol`` event per stage and the ramp to
0 m/s at the end in ``/raw/log``, ``/raw/belt`` recorded, per-step belt speeds on the stages,
``scores_by_speed`` per stage; a static trial is refused while the belt still ramps down.
"""
from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import read_belt, read_derived, validate_session

from .conftest import lab_toml, trial_done, wait_healthy

pytestmark = pytest.mark.timeout(240)

STAGES = (2.5, 3.5, 4.5)
STAGE_S = 15.0
PROTOCOL = ",".join(f"{v:g}:{STAGE_S:g}" for v in STAGES)
TREADMILL = '\n[treadmill]\nhost = "auto"\naccel_m_s2 = 1.0\nmax_speed_m_s = 5.0\n'


def treadmill_lab(folder):
    path = lab_toml(folder)
    path.write_text(path.read_text(encoding="utf-8") + TREADMILL, encoding="utf-8")
    return path


def _log(path) -> list[tuple[str, str, str]]:
    with h5py.File(path, "r") as f:
        g = f["raw/log"]
        return [(s.decode(), k.decode(), d.decode()) for s, k, d in
                zip(g["source"][()], g["kind"][()], g["detail"][()])]


def test_a_speed_protocol_trial(tmp_path, station_factory):
    t_start = time.monotonic()
    st = station_factory(config=treadmill_lab(tmp_path))
    state = wait_healthy(st, 40)
    belt = state["health"]["belt"]
    assert belt["speed_m_s"] == [0.0, 0.0] and belt["max_speed_m_s"] == 5.0
    assert st.call("POST", "/api/runner", {"id": "P01", "body_mass_kg": 70,
                                           "leg_length_mm": 900})[0] == 200

    # bad requests: one line naming the field, 400, nothing started
    for body, field, text in [
        ({"kind": "running", "protocol": "2.5:10,fast:10"}, "trial.protocol",
         "stage 2 'fast:10' is not SPEED:SECONDS"),
        ({"kind": "running", "protocol": "2.5:10,5.5:10"}, "trial.protocol",
         "stage 2: 5.5 m/s exceeds the treadmill's max_speed_m_s = 5 m/s"),
        ({"kind": "running", "protocol": "2.5:0"}, "trial.protocol", "a duration > 0 s"),
        ({"kind": "running", "protocol": 25}, "trial.protocol", "must be text"),
        ({"kind": "static", "protocol": "2.5:10"}, "trial.protocol",
         "only a running trial"),
        ({"kind": "running", "protocol": "2.5:10", "speed_m_s": 3.0}, "trial.speed_m_s",
         "the protocol starts at 2.5 m/s"),
        ({"kind": "running", "speed_m_s": 5.5}, "trial.speed_m_s",
         "exceeds the treadmill's max_speed_m_s = 5 m/s"),
    ]:
        code, out = st.call("POST", "/api/trials", body)
        assert code == 400 and out["field"] == field and text in out["error"], (body, out)
        assert "\n" not in out["error"]
    assert st.call("GET", "/api/state")[1]["trial"] is None

    code, meta = st.call("POST", "/api/trials", {"kind": "running", "protocol": PROTOCOL})
    assert code == 201, meta
    assert meta["protocol"] == PROTOCOL and meta["speed_m_s"] == 2.5
    assert meta["duration_s"] == 3 * STAGE_S
    # the runner display's stage: speed and time left, then the next stage
    s = st.wait(lambda s: s["trial"] and s["trial"]["stage"], 10, "stage 1")
    assert s["trial"]["stage"]["n"] == 1 and s["trial"]["stage"]["speed_m_s"] == 2.5
    assert s["trial"]["stage"]["of"] == 3 and 0 < s["trial"]["stage"]["left_s"] <= STAGE_S
    s = st.wait(lambda s: s["trial"] and (s["trial"]["stage"] or {}).get("n") == 2,
                STAGE_S + 5, "stage 2")
    assert s["trial"]["stage"]["speed_m_s"] == 3.5 and s["trial"]["stage"]["next_m_s"] == 4.5
    st.wait(lambda s: s["trial"] is None, 2 * STAGE_S + 10, "the end of the protocol")

    # the belt ramps down at 1 m/s²: a static trial is refused until it has stopped
    code, out = st.call("POST", "/api/trials", {"kind": "static"})
    assert code == 409 and out["field"] == "treadmill" and "the belt is moving" in out["error"]
    st.wait(lambda s: max(s["health"]["belt"]["speed_m_s"]) < 0.05, 15, "the belt stopped")

    t = trial_done(st, meta["id"], timeout=150)
    assert t["processing"] == "done", t
    assert set(t["scores_by_speed"]) == {"2.5", "3.5", "4.5"}, t["scores_by_speed"]
    for v, scores in t["scores_by_speed"].items():
        assert all(x is not None and 0 <= x <= 100 for x in scores.values()), (v, scores)

    path = tmp_path / "data" / "P01" / (meta["id"].split("/")[1] + ".h5")
    assert validate_session(path) == []
    log = _log(path)
    stages = [d for s, k, d in log if k == "protocol"]
    assert stages == [f"stage {i + 1}/3: {v:g} m/s for {STAGE_S:g} s"
                      for i, v in enumerate(STAGES)]
    assert sum(k == "set_speed" for _, k, _ in log) == 3
    stop = [d for s, k, d in log if s == "belt" and k == "stop"]
    assert len(stop) == 1 and "belts ramped to 0 m/s at 1 m/s² from 4.50 m/s" in stop[0]
    with h5py.File(path, "r") as f:
        assert f.attrs["speed_protocol"] == PROTOCOL
        assert str(f.attrs["belt_speed_source"]).startswith("treadmill controller")
        assert f.attrs["belt_speed_commanded_m_s"] == 2.5
        raw = read_belt(f)
    assert raw["speed"].shape[1] == 2 and len(raw["time"]) > 0.9 * 100 * 3 * STAGE_S
    assert abs(raw["speed"].max() - 4.5) < 0.01 and raw["speed"][:5].max() < 1.0

    c = read_derived(path)["contacts"]
    # the synthetic runner starts running when the trial starts, the belt ``follow_lead_s``
    # (about 1 s) later: its first step or two fall on the still stopped belt (0 m/s)
    steady = c["belt_steady"] & c["valid"] & (c["belt_speed"] > 0.1)
    assert (c["belt_steady"] & c["valid"] & (c["t_strike"] > 2.0) & ~steady).sum() == 0
    v = c["belt_speed"][steady]
    for stage in STAGES:          # the steady steps run at the stage speeds, ≥ 10 per stage
        assert (np.abs(v - stage) < 0.02).sum() >= 10, (stage, np.round(v, 2))
    assert np.all(np.min(np.abs(v[:, None] - np.asarray(STAGES)), axis=1) < 0.02)
    by = read_derived(path)["scores_by_speed"]
    assert sorted(set(np.round(by["speed_m_s"], 1).tolist())) == list(STAGES)

    # the station stopped (SIGTERM) mid-trial: the trial closes and the belt ramps down first
    code, run = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 3.0})
    assert code == 201, run
    st.wait(lambda s: s["trial"] and (s["trial"].get("belt_m_s") or 0) >= 2.999, 10, "3 m/s")
    assert st.terminate() == 0
    path = tmp_path / "data" / "P01" / (run["id"].split("/")[1] + ".h5")
    stop = [d for s, k, d in _log(path) if s == "belt" and k == "stop"]
    assert stop == ["end of trial (station stopped): belts ramped to 0 m/s at 1 m/s² from "
                    "3.00 m/s (about 3 s)"], stop
    print(f"per-stage scores {t['scores_by_speed']}; test {time.monotonic() - t_start:.0f} s")
