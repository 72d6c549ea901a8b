"""The synthetic runner following a changing belt speed (``SyntheticRunner.follow``): its gait
changes with the speed as the cohort's does, the steps keep their times, nothing jumps, and a
profile extended ahead of what was already made leaves that signal unchanged."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from treadlab.acquisition.sim.simulated import RunnerSignal
from treadlab.acquisition.sim.synthetic import RunnerParams, SyntheticRunner

RAMPS = ([0.0, 10.0, 12.0, 20.0, 22.0], [2.5, 2.5, 3.5, 3.5, 4.5])   # s, m/s (0.5 m/s²)


def _stage(truth, lo, hi):
    sel = (truth["t_strike"] > lo) & (truth["t_strike"] < hi)
    return {k: np.asarray(v)[sel] for k, v in truth.items()}


def test_gait_changes_with_the_followed_speed():
    p = RunnerParams.clean(duration_s=30.0)
    r = SyntheticRunner(p)
    lo, hi = r.follow_range()
    assert lo < 2.5 and hi > 4.5                          # the default runner can do 2.5-4.5
    r.follow(*RAMPS)
    truth = r.truth_steps(29.0)
    fixed = SyntheticRunner(p).truth_steps(29.0)
    np.testing.assert_allclose(np.diff(truth["t_strike"])[5:-5].mean(),
                               np.diff(fixed["t_strike"])[5:-5].mean(), rtol=1e-3)  # cadence
    for (a, b), v in (((1.0, 9.6), 2.5), ((12.5, 19.6), 3.5), ((22.5, 29.0), 4.5)):
        s = _stage(truth, a, b)
        assert s["contact_time"] == pytest.approx(0.25 * (3.5 / v) ** 0.6, abs=1e-3)
        assert s["overstride"] == pytest.approx(150.0 + 45.0 * (v - 3.5), abs=0.5)
        assert s["pelvic_drop"] == pytest.approx(4.0 + 0.45 * (v - 3.5), abs=0.2)
        # the thigh's toe-off angle is solved per 0.05 m/s so the measured peak is the dial
        assert s["peak_hip_extension"] == pytest.approx(10.0 + 4.8 * (v - 3.5), abs=0.05)
        assert (s["flight_time"] > 0.02).all()
    bw = r.body_weight_n
    fz = r.force(np.arange(1.0, 29.0, 0.001))[:, :, 2].sum(axis=1)
    assert fz.mean() / bw == pytest.approx(1.0, abs=0.01)  # body weight on average
    with pytest.raises(ValueError):
        r.follow([1.0, 0.0], [3.0, 3.0])


def test_no_jump_and_made_signal_unchanged_when_the_profile_grows_ahead():
    p = RunnerParams(duration_s=20.0, seed=4)
    step = 60.0 / p.cadence_spm
    live = SyntheticRunner(p)
    live.follow([0.0, 5.0, 7.0], [3.5, 3.5, 2.5])
    tm = np.arange(0, 20.0, 1 / 200.0)
    tf = np.arange(0, 20.0, 1 / 1000.0)
    first = (live.markers(tm[tm < 10.0]), live.force(tf[tf < 10.0]))
    # the next ramp announced at t = 10 s for 10 s + two steps + margin: as a live lab does
    start = 10.0 + 2 * step + 0.01
    live.follow([0.0, 5.0, 7.0, start, start + 4.0], [3.5, 3.5, 2.5, 2.5, 4.5])
    second = (live.markers(tm[tm >= 10.0]), live.force(tf[tf >= 10.0]))
    whole = SyntheticRunner(p)
    whole.follow([0.0, 5.0, 7.0, start, start + 4.0], [3.5, 3.5, 2.5, 2.5, 4.5])
    np.testing.assert_array_equal(np.concatenate([first[0], second[0]]), whole.markers(tm))
    np.testing.assert_array_equal(np.concatenate([first[1], second[1]]), whole.force(tf))
    clean = SyntheticRunner(RunnerParams.clean(duration_s=20.0))
    clean.follow([0.0, 5.0, 7.0, start, start + 4.0], [3.5, 3.5, 2.5, 2.5, 4.5])
    pos = clean.markers_clean(tm)
    steady = SyntheticRunner(RunnerParams.clean(duration_s=20.0)).markers_clean(tm)
    jump = np.linalg.norm(np.diff(pos, axis=0), axis=-1).max()
    assert np.isfinite(pos).all()
    # no marker moves further in one frame than the fastest in steady running at 3.5 m/s,
    # plus the extra stride of 4.5 m/s
    assert jump < 1.4 * np.linalg.norm(np.diff(steady, axis=0), axis=-1).max()


def test_a_runner_switched_to_another_speed_runs_with_that_speeds_gait():
    """The station's typed speed (``RunnerSignal.switch``): the configured runner (3.5 m/s,
    150 mm heel lead) at 2.5 m/s has the gait it has when it follows a belt at 2.5 m/s, not
    the 3.5 m/s gait at a slower pace."""
    p = RunnerParams.clean(duration_s=30.0)
    base = SyntheticRunner(p)
    plates = [SimpleNamespace(name=n, origin=np.asarray(o, float)) for n, o in
              zip(base.plates, base.origin)]
    sig = RunnerSignal(p, plates, list(base.labels))
    assert sig.switch(0.0, False, 2.5) == 2.5 and sig.speed_m_s == 2.5
    at = SyntheticRunner(p)
    at.follow([0.0], [2.5])
    t = np.arange(2.0, 8.0, 1 / 200.0)
    np.testing.assert_array_equal(sig.markers(t), at.markers(t))
    s = _stage(at.truth_steps(29.0), 1.0, 29.0)
    assert s["overstride"] == pytest.approx(150.0 - 45.0, abs=0.5)
    assert s["peak_hip_extension"] == pytest.approx(10.0 - 4.8, abs=0.05)
