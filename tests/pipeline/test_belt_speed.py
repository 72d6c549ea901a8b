"""Per-step belt speed (``belt_speed``, ``belt_steady`` in /derived/contacts), scoring on
per-step residuals mu(v_i), and scores per speed plateau (/derived/scores_by_speed)."""
from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import read_belt, read_derived, validate_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.cli import main
from treadlab.pipeline.derive import BELT_STEADY_TOL_M_S, belt_columns
from treadlab.pipeline.export import export_sessions
from treadlab.pipeline.scoring import (BY_SPEED_COLUMNS, CAUSES, load_reference, score_by_speed,
                                       score_causes, score_from_z, speed_mu, speed_plateaus)

REF = load_reference("default")


def _protocol_belt(t_end=30.0, rate=100.0):
    """A belt at 2.5, 3.5 and 4.5 m/s with 2-s ramps (0.5 m/s²) at 10 and 20 s."""
    t = np.arange(0.0, t_end, 1.0 / rate)
    v = np.interp(t, [0, 10, 12, 20, 22, t_end], [2.5, 2.5, 3.5, 3.5, 4.5, 4.5])
    return {"time": t, "speed": np.column_stack([v, v]), "belts": ["left", "right"]}


def _steps(t_end=30.0, step=0.35, contact=0.25):
    ts = np.arange(0.3, t_end - 0.5, step)
    return ts, ts + contact, (np.arange(ts.size) % 2).astype(np.int8)


# --- per-step speed ----------------------------------------------------------------------------

def test_stance_mean_of_the_foots_own_belt_and_steady_flag():
    ts, to, side = _steps()
    belt = _protocol_belt()
    belt["speed"][:, 1] += 0.2            # right belt 0.2 m/s faster (split belt)
    out = belt_columns(ts, to, side, belt, 3.5)
    t, v = belt["time"], belt["speed"]
    for i in range(ts.size):             # hand computation: mean over the stance
        q = np.linspace(ts[i], to[i], 201)
        want = np.interp(q, t, v[:, side[i]]).mean()
        assert out["belt_speed"][i] == pytest.approx(want, abs=2e-4)
    mid = 0.5 * (ts + to)
    plateau = ((mid > 1.0) & (mid < 9.5)) | ((mid > 12.5) & (mid < 19.5)) | (mid > 22.5)
    ramp = ((mid > 10.5) & (mid < 11.5)) | ((mid > 20.5) & (mid < 21.5))
    assert out["belt_steady"][plateau].all()
    assert not out["belt_steady"][ramp].any()
    # a ramp at 0.5 m/s² changes the speed by 0.35 m/s over a 0.7-s stride: never steady
    assert out["belt_steady"].dtype == bool and BELT_STEADY_TOL_M_S == 0.05


def test_nan_gap_unknown_no_stream_and_a_belt_that_never_moves():
    ts, to, side = _steps()
    belt = _protocol_belt()
    belt["speed"][500:600] = np.nan       # 1 s without a speed (5 to 6 s): unknown
    out = belt_columns(ts, to, side, belt, 3.5)
    gap = (to > 5.0) & (ts < 6.0)
    assert np.isnan(out["belt_speed"][gap]).all() and not out["belt_steady"][gap].any()
    assert np.isfinite(out["belt_speed"][~gap & (to < 29.9)]).all()
    short = _protocol_belt()
    short["speed"][500:520] = np.nan      # 0.2 s: interpolated across
    assert np.isfinite(belt_columns(ts, to, side, short, 3.5)["belt_speed"]).all()
    none = belt_columns(ts, to, side, None, 3.25)
    assert (none["belt_speed"] == 3.25).all() and none["belt_steady"].all()
    unknown = belt_columns(ts, to, side, None, float("nan"))
    assert np.isnan(unknown["belt_speed"]).all() and unknown["belt_steady"].all()
    still = _protocol_belt()
    still["speed"][:] = 0.0
    out = belt_columns(ts, to, side, still, 0.0)
    assert (out["belt_speed"] == 0.0).all() and out["belt_steady"].all()
    c = _contacts(out["belt_speed"], out["belt_steady"], side)
    t = score_causes(c, REF)
    i = list(t["cause"]).index("pelvic_drop")
    assert math.isnan(t["score"][i])
    assert t["status"][i] == ("not scorable: belt speed 0.00 m/s is outside the reference "
                              "cohort's 2.25-4.75 m/s")


# --- scoring -----------------------------------------------------------------------------------

def _contacts(speed, steady, side, seed=0):
    rng = np.random.default_rng(seed)
    n = len(side)
    model = {c: REF.causes[c].get("speed_model") for c in CAUSES}
    v = np.where(np.isfinite(speed), speed, 3.5)

    def line(cause, noise):
        m = model[cause]
        return (float(m["mu_intercept"]) + float(m["mu_slope_per_m_s"]) * v
                + rng.normal(0, noise, n))

    return {"side": np.asarray(side), "valid": np.ones(n, bool), "belt_speed": speed,
            "belt_steady": steady, "pelvic_drop": line("pelvic_drop", 1.0),
            "trunk_lean": rng.normal(8.5, 1.0, n), "overstride_leg": line("overstride", 1.5),
            "peak_hip_extension": line("limited_hip_extension", 2.0)}


def test_varying_speed_scores_the_median_residual_against_numpy():
    ts, to, side = _steps()
    out = belt_columns(ts, to, side, _protocol_belt(), 3.5)
    c = _contacts(out["belt_speed"], out["belt_steady"], side, seed=4)
    c["peak_hip_extension"] -= 6.0                       # 6° less than the cohort at every speed
    table = score_causes(c, REF, min_steps_per_side=20)
    for cause in ("pelvic_drop", "overstride", "limited_hip_extension"):
        i = list(table["cause"]).index(cause)
        m = REF.causes[cause]["speed_model"]
        x = np.asarray(c[REF.causes[cause]["metric"]])
        keep = out["belt_steady"] & np.isfinite(out["belt_speed"])
        r = x[keep] - (m["mu_intercept"] + m["mu_slope_per_m_s"] * out["belt_speed"][keep])
        sign = 1.0 if REF.causes[cause]["worse"] == "higher" else -1.0
        z = sign * np.median(r) / m["sigma"]
        assert table["z"][i] == pytest.approx(z, rel=1e-12)
        assert table["score"][i] == pytest.approx(score_from_z(z), rel=1e-12)
        assert table["value"][i] == np.median(x)         # the value stays the plain median
        assert table["n_steps"][i] == keep.sum()
        excluded = int((~out["belt_steady"]).sum())
        assert f"{excluded} steps excluded: belt speed changing (not steady)" in table["status"][i]
        assert "mu at 2.50-4.50 m/s" in table["status"][i]
    i = list(table["cause"]).index("limited_hip_extension")
    assert 1.0 < table["z"][i] < 1.3                     # 6° / 5.53° ≈ 1.1


def test_steps_outside_the_cohort_speeds_are_excluded_and_counted():
    side = (np.arange(120) % 2).astype(np.int8)
    speed = np.where(np.arange(120) < 80, 3.0, 5.5)
    c = _contacts(speed, np.ones(120, bool), side)
    table = score_causes(c, REF)
    i = list(table["cause"]).index("pelvic_drop")
    assert np.isfinite(table["score"][i]) and table["n_steps"][i] == 80
    assert ("40 steps excluded: belt speed 5.50 m/s outside the reference cohort's "
            "2.25-4.75 m/s") in table["status"][i]
    c["belt_speed"] = np.where(np.arange(120) < 30, 3.0, 5.5)    # 15 per side remain
    table = score_causes(c, REF)
    assert table["status"][i].startswith("not scored: 15 left / 15 right steps (< 20 per side)")
    c["belt_steady"] = np.arange(120) >= 30                     # accelerating, then too fast
    table = score_causes(c, REF)
    assert table["status"][i] == ("not scorable: 30 steps excluded: belt speed changing (not "
                                  "steady); 90 steps excluded: belt speed 5.50 m/s outside "
                                  "the reference cohort's 2.25-4.75 m/s")


@pytest.mark.parametrize("speed", [2.5, 3.5, 4.37, 6.0, float("nan")])
def test_constant_speed_gives_exactly_the_session_speed_scores(speed):
    side = (np.arange(91) % 2).astype(np.int8)
    c = _contacts(np.full(91, speed), np.ones(91, bool), side, seed=7)
    c["pelvic_drop"][::9] = np.nan
    per_step = score_causes(c, REF, speed_m_s=speed)
    session = score_causes({k: v for k, v in c.items() if k not in ("belt_speed", "belt_steady")},
                           REF, speed_m_s=speed)
    for key in per_step:
        np.testing.assert_array_equal(per_step[key], session[key])
    for cause in ("pelvic_drop", "overstride", "limited_hip_extension"):
        i = list(per_step["cause"]).index(cause)
        if not np.isfinite(per_step["score"][i]):
            continue
        m = REF.causes[cause]["speed_model"]
        x = np.asarray(c[REF.causes[cause]["metric"]])
        sign = 1.0 if REF.causes[cause]["worse"] == "higher" else -1.0
        # bit for bit the formula of a single session speed
        assert per_step["z"][i] == sign * (np.median(x[np.isfinite(x)]) - speed_mu(m, speed)) \
            / float(m["sigma"])
        assert per_step["status"][i] == "scored"


def test_scores_by_speed_one_block_per_plateau():
    ts, to, side = _steps(t_end=60.0, step=0.33)
    belt = _protocol_belt(t_end=60.0)
    belt["speed"][:, :] = np.interp(belt["time"], [0, 20, 22, 40, 42, 60],
                                    [2.5, 2.5, 3.5, 3.5, 4.48, 4.48])[:, None]
    out = belt_columns(ts, to, side, belt, 3.5)
    c = _contacts(out["belt_speed"], out["belt_steady"], side, seed=2)
    assert speed_plateaus(c) == [2.5, 3.5, 4.5]
    by = score_by_speed(c, REF)
    assert set(by) == set(BY_SPEED_COLUMNS)
    assert list(by["speed_m_s"]) == [2.5] * 4 + [3.5] * 4 + [4.5] * 4
    assert list(by["cause"]) == list(CAUSES) * 3
    for k, plateau in enumerate((2.5, 3.5, 4.5)):
        sel = out["belt_steady"] & (np.round(out["belt_speed"], 1) == plateau)
        sub = {key: np.asarray(v)[sel] for key, v in c.items()}
        want = score_causes(sub, REF)
        np.testing.assert_array_equal(by["score"][4 * k:4 * k + 4], want["score"])
    assert np.nanmax(by["score"]) < 50                  # the runner follows the cohort lines
    assert score_by_speed({k: v for k, v in c.items() if k != "belt_speed"}, REF) is None
    one = dict(c, belt_speed=np.full(len(side), 3.5), belt_steady=np.ones(len(side), bool))
    assert score_by_speed(one, REF) is None


# --- through the archive and the pipeline -----------------------------------------------------

def _add_belt(path, belt):
    """/raw/belt as the recorder writes it (docs/archive.md §3.5)."""
    with h5py.File(path, "a") as f:
        g = f["raw"].create_group("belt")
        g.attrs["belts"] = np.array(belt["belts"], dtype=h5py.string_dtype())
        ds = {}
        for name, data, units in (("time", belt["time"], "s"),
                                  ("host_time", belt["time"] + 100.0, "s"),
                                  ("speed", belt["speed"].astype(np.float32), "m/s"),
                                  ("belt", np.array(belt["belts"], dtype=object), "")):
            ds[name] = g.create_dataset(name, data=data, chunks=True, compression="gzip")
            ds[name].attrs["units"] = units
        ds["time"].make_scale("time")
        ds["belt"].make_scale("belt")
        ds["host_time"].dims[0].attach_scale(ds["time"])
        ds["speed"].dims[0].attach_scale(ds["time"])
        ds["speed"].dims[1].attach_scale(ds["belt"])


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A 44-s synthetic session with a two-plateau belt stream (the runner itself keeps
    3.5 m/s: this checks the pipeline's bookkeeping, not the runner)."""
    path = tmp_path_factory.mktemp("belt") / "belt.h5"
    write_session(path, simulate_session(RunnerParams(duration_s=44.0, seed=5)))
    t = np.arange(0.0, 44.0, 0.01)
    v = np.interp(t, [0, 20, 22, 44], [3.0, 3.0, 4.0, 4.0])
    _add_belt(path, {"time": t, "speed": np.column_stack([v, v]), "belts": ["left", "right"]})
    assert main(["process", str(path)]) == 0
    return path


def test_process_writes_belt_columns_and_scores_by_speed(processed, capsys):
    with h5py.File(processed) as f:
        belt = read_belt(f)
        assert f["derived/contacts/belt_speed"].attrs["units"] == "m/s"
        assert f["derived/scores_by_speed/speed_m_s"].attrs["units"] == "m/s"
    assert belt["belts"] == ["left", "right"] and belt["speed"].shape[1] == 2
    assert validate_session(processed) == []
    d = read_derived(processed)
    c = d["contacts"]
    assert c["belt_steady"].dtype == bool
    steady = c["belt_steady"] & c["valid"]
    assert set(np.round(c["belt_speed"][steady], 3)) == {3.0, 4.0}
    mid = 0.5 * (c["t_strike"] + c["t_off"])
    assert not c["belt_steady"][(mid > 20.5) & (mid < 21.5)].any()
    by = d["scores_by_speed"]
    assert list(by["speed_m_s"]) == [3.0] * 4 + [4.0] * 4
    assert main(["inspect", str(processed)]) == 0
    summary = json.loads(_process_json(processed, capsys))
    assert set(summary["scores_by_speed"]) == {"3.0", "4.0"}


def _process_json(path, capsys):
    capsys.readouterr()
    assert main(["process", str(path)]) == 0
    return capsys.readouterr().out


def test_report_and_ncdump_read_scores_by_speed(processed, tmp_path):
    assert main(["report", str(processed), "-o", str(tmp_path / "r")]) == 0
    html = (tmp_path / "r" / "index.html").read_text()
    assert "Scores per belt-speed plateau" in html and "3.0 m/s" in html
    ncdump = shutil.which("ncdump")
    if ncdump is None:
        pytest.skip("ncdump (netcdf-bin) not installed")
    derived = processed.with_name(processed.stem + ".derived.h5")
    for path, flags in ((processed, []), (derived, [])):       # every value of both files
        out = subprocess.run([ncdump, *flags, str(path)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr
        assert "group: scores_by_speed" in out.stdout and "belt_speed(contact)" in out.stdout
        assert "phony_dim" not in out.stdout
    assert "speed_m_s = 3, 3, 3, 3, 4, 4, 4, 4" in out.stdout


def test_session_without_belt_stream_gets_the_session_speed(tmp_path):
    path = tmp_path / "plain.h5"
    write_session(path, simulate_session(RunnerParams(duration_s=8.0, seed=1)))
    assert main(["process", str(path)]) == 0
    c = read_derived(path)["contacts"]
    assert (c["belt_speed"] == 3.5).all() and c["belt_steady"].all()
    assert "scores_by_speed" not in read_derived(path)


def test_exports_keep_belt_columns_and_scores_by_speed(processed, tmp_path, monkeypatch):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "a-test-secret-of-32-characters!!")
    assert export_sessions([processed], tmp_path / "h5", fmt="hdf5").ok
    (out,) = sorted((tmp_path / "h5").glob("*.h5"))
    d = read_derived(out)
    np.testing.assert_array_equal(d["contacts"]["belt_speed"],
                                  read_derived(processed)["contacts"]["belt_speed"])
    assert list(d["scores_by_speed"]["speed_m_s"]) == [3.0] * 4 + [4.0] * 4
    with h5py.File(out) as f:
        schema = json.loads(f["schema"][()])
    text = json.dumps(schema)
    assert "scores_by_speed" in text and "belt_steady" in text
    assert export_sessions([processed], tmp_path / "csv", fmt="csv").ok
    (by,) = sorted((tmp_path / "csv").glob("*_scores_by_speed.csv"))
    with open(by, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["speed_m_s [m/s]"] for r in rows] == ["3.0"] * 4 + ["4.0"] * 4
    (contacts,) = sorted((tmp_path / "csv").glob("*_contacts.csv"))
    assert "belt_speed [m/s]" in contacts.read_text().splitlines()[0]


def test_a_torn_belt_stream_is_read_to_its_common_length_and_recovered(tmp_path):
    from treadlab.acquisition.capture.recorder import Recorder, recover
    from treadlab.acquisition.sources.base import Block

    path = tmp_path / "torn.h5"
    rec = Recorder(path, {"subject_id": "S", "lab": "t", "belt_speed_m_s": 3.0,
                          "body_mass_kg": 70.0},
                   plates=["left", "right"], origin=np.zeros((2, 3)),
                   corners=np.zeros((2, 4, 3)), force_rate_hz=1000.0, labels=["LASI"],
                   marker_rate_hz=100.0, t0_host=0.0, belts=["left", "right"]).start()
    for k in range(5):
        seq = np.arange(k * 100, (k + 1) * 100)
        rec.put(Block("force", seq / 1000.0, seq / 1000.0 + 0.001,
                      np.full((100, 2, 6), 300.0, np.float32), seq=seq), seq / 1000.0)
        bseq = np.arange(k * 10, (k + 1) * 10)
        rec.put(Block("belt", bseq / 100.0, bseq / 100.0 + 0.001,
                      np.full((10, 2), 3.0, np.float32), seq=bseq), bseq / 100.0)
    rec.close()
    with h5py.File(path, "a") as f:      # as a capture killed between the belt appends
        f["raw/belt/speed"].resize(45, axis=0)
        f.attrs["status"] = "recording"
    with h5py.File(path) as f:
        belt = read_belt(f)
    assert len(belt["time"]) == len(belt["speed"]) == 45
    recover(path)
    with h5py.File(path) as f:
        assert {f["raw/belt"][k].shape[0] for k in ("time", "host_time", "speed")} == {45}
        assert f["raw/belt/belt"].shape == (2,)
