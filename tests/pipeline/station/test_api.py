"""The station's HTTP + WebSocket API against a real ``treadlab station`` process (uvicorn on
127.0.0.1, the simulated lab on a pty and loopback UDP)."""
from __future__ import annotations

import json
import time
import urllib.request

import h5py
import pytest
from websockets.sync.client import connect

from treadlab.acquisition.archive import validate_session
from treadlab.config.errors import ConfigError
from treadlab.pipeline.station.server import run_station

from .conftest import lab_toml, trial_done, wait_healthy

TOKEN = "test-token-1234"


def _ws(st, streams=None):
    uri = st.url.replace("http", "ws") + "/ws" + (f"?streams={streams}" if streams else "")
    return connect(uri, additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=10)


def _recv_until(ws, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if predicate(msg):
            return msg
    raise AssertionError("no such message in time")


def test_non_loopback_needs_a_token():
    with pytest.raises(ConfigError, match="--token"):
        run_station(host="0.0.0.0", port=0, token=None)


def test_visit_over_the_api(tmp_path, station_factory):
    st = station_factory(config=lab_toml(tmp_path), token=TOKEN)
    # the token: refused without, accepted as a header
    status, body = st.call("GET", "/api/state", token=None)
    assert status == 401 and body["error"].startswith("token:")
    # a browser opened at ?token= gets a cookie that carries the token from then on
    with urllib.request.urlopen(f"{st.url}/runner?token={TOKEN}", timeout=10) as resp:
        cookie = resp.headers["set-cookie"].split(";")[0]
    with urllib.request.urlopen(urllib.request.Request(
            st.url + "/api/health", headers={"Cookie": cookie}), timeout=10) as resp:
        assert resp.status == 200
    wait_healthy(st)
    # one-line errors naming the field
    status, body = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 3})
    assert status == 409 and body["error"] == "runner: register a runner first"
    status, body = st.call("POST", "/api/runner", {"id": "R1", "body_mass_kg": -3,
                                                   "leg_length_mm": 900})
    assert status == 400 and body["field"] == "runner.body_mass_kg"
    status, body = st.call("GET", "/api/nothing")
    assert status == 404
    # two consoles see the same state
    with _ws(st) as a, _ws(st, "state") as b:
        first_a, first_b = json.loads(a.recv(timeout=10)), json.loads(b.recv(timeout=10))
        assert first_a["type"] == first_b["type"] == "state"
        status, runner = st.call("POST", "/api/runner", {"id": "R1", "body_mass_kg": 70,
                                                         "leg_length_mm": 920})
        assert status == 200 and runner["id"] == "R1"
        for ws in (a, b):
            msg = _recv_until(ws, lambda m: m["type"] == "state" and m["runner"])
            assert msg["runner"]["body_mass_kg"] == 70.0
    status, body = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 42})
    assert status == 400 and body["field"] == "trial.speed_m_s"
    # no [treadmill] table: no controller to run a speed protocol on
    status, body = st.call("POST", "/api/trials", {"kind": "running", "protocol": "3:10"})
    assert status == 400 and body["field"] == "trial.protocol"
    assert "needs the lab's [treadmill] table" in body["error"]
    assert "belt" not in st.call("GET", "/api/health")[1]
    status, fb = st.call("PUT", "/api/feedback", {"cues": ["pelvic_drop", "cadence"]})
    assert status == 200 and fb["cues"] == ["pelvic_drop", "cadence"]
    # a running trial with live steps pushed to a runner display
    with _ws(st, "step") as runner:
        status, trial = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 3.5,
                                                        "duration_s": 8, "note": "api"})
        assert status == 201, trial
        status, body = st.call("POST", "/api/trials", {"kind": "static"})
        assert status == 409 and "is recording" in body["error"]
        step = _recv_until(runner, lambda m: m["type"] == "step", timeout=20)
        assert [c["name"] for c in step["cues"]] == ["pelvic_drop", "cadence"]
        assert {"value", "lo", "hi", "state"} <= set(step["cues"][0])
        runner.send(json.dumps({"type": "shown", "n": step["n"],
                                "t_ms": time.time() * 1000.0, "trial": step["trial"]}))
    done = trial_done(st, trial["id"])
    assert done["status"] == "complete" and done["processing"] == "done", done
    assert all(isinstance(v, float) for v in done["scores"].values()), done
    assert done["feedback_latency"]["n_sent"] > 5
    with urllib.request.urlopen(urllib.request.Request(
            st.url + done["report"], headers={"Authorization": f"Bearer {TOKEN}"}),
            timeout=10) as resp:
        assert resp.status == 200 and b"<html" in resp.read(2000).lower()
    path = st.data / "R1" / (trial["id"].split("/")[1] + ".h5")
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["subject_id"] == "R1" and f.attrs["belt_speed_m_s"] == 3.5
        assert "derived" in f and "station/feedback" in f
    # SIGTERM mid-trial: the trial is closed complete, the station exits 0
    status, trial2 = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 3.0})
    assert status == 201, trial2
    time.sleep(2.0)
    assert st.terminate() == 0
    side = json.loads((st.data / "R1" / (trial2["id"].split("/")[1] + ".json")).read_text())
    assert side["status"] == "complete" and side["stop_reason"] == "station stopped"
    assert validate_session(side["archive"]) == []


def test_static_values_reach_the_running_trial(tmp_path, station_factory):
    """A static trial is a calibration: its standing values, with the static trial's id as
    their source, go into the runner's folder and into every later running trial's archive; a
    running trial at a speed outside the reference is "not scored" with the reason."""
    st = station_factory(config=lab_toml(tmp_path))
    wait_healthy(st)
    status, _ = st.call("POST", "/api/runner", {"id": "S1", "body_mass_kg": 70,
                                                "leg_length_mm": 900})
    assert status == 200
    status, static = st.call("POST", "/api/trials", {"kind": "static", "duration_s": 3})
    assert status == 201, static
    done = trial_done(st, static["id"], timeout=30)
    assert done["processing"] == "done", done
    cal = done["calibration"]
    assert set(cal) == {"pelvic_obliquity_deg", "pelvic_tilt_deg", "leg_length_left_mm",
                        "leg_length_right_mm", "inter_asis_mm"}
    assert 900 < cal["leg_length_left_mm"] < 1000 and not done.get("scores")
    runner = json.loads((st.data / "S1" / "runner.json").read_text())
    assert runner["static"]["source"] == static["id"]
    assert runner["leg_length_mm"] == 900                  # what was typed is kept, not used
    # 2.0 m/s: below the reference's 2.25–4.75 m/s
    status, run = st.call("POST", "/api/trials", {"kind": "running", "speed_m_s": 2.0,
                                                  "duration_s": 6})
    assert status == 201, run
    done = trial_done(st, run["id"])
    assert done["processing"] == "done" and done["static_source"] == static["id"], done
    scores, why = done["scores"], done["score_status"]
    for cause in ("pelvic_drop", "overstride", "limited_hip_extension"):   # speed-conditioned
        assert scores[cause] is None and why[cause].startswith("not scorable: belt speed 2.00"), \
            why
    assert why["upright_trunk"] == "scored (literature reference)" and scores["upright_trunk"]
    assert f"(standing {cal['pelvic_tilt_deg']:.1f} deg)" in why["limited_hip_extension"]
    path = st.data / "S1" / (run["id"].split("/")[1] + ".h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["belt_speed_m_s"] == 2.0 and f.attrs["simulated_runner_speed_m_s"] == 2.0
        assert f.attrs["static_calibration"] == static["id"]
        assert f.attrs["static_pelvic_obliquity_deg"] == cal["pelvic_obliquity_deg"]
        assert f.attrs["static_pelvic_tilt_deg"] == cal["pelvic_tilt_deg"]
        sources = [str(x) for x in f.attrs["subject_value_sources"]]
        assert any(s.startswith("leg_length_left_mm = ") and static["id"] in s for s in sources)
        assert f["subject"].attrs["leg_length_left_mm"] == cal["leg_length_left_mm"]
        assert f["subject"].attrs["inter_asis_mm"] == cal["inter_asis_mm"]
        # processed as `import --static --belt-speed` would be: obliquity zeroed on the
        # standing one, over-stride in % of the static leg length
        d = f["derived"].attrs
        assert str(d["pelvic_obliquity_zero"]).startswith(f"static trial {static['id']}: ")
        assert d["static_pelvic_tilt_deg"] == pytest.approx(cal["pelvic_tilt_deg"])
        assert d["overstride_leg_length_mm"] == pytest.approx(
            0.5 * (cal["leg_length_left_mm"] + cal["leg_length_right_mm"]))
