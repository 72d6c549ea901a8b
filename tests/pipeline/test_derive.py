"""The pure task functions: filters, body weight, contacts and sides, angles, per-step metrics,
checked against the synthetic runner's /truth."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.config.constants import G
from treadlab.kernels.forces import estimate_body_weight
from treadlab.pipeline.derive import (CONTACT_COLUMNS, DeriveSettings,
                                      force_task, lowpass, marker_task, step_task)


@pytest.fixture(scope="module")
def run():
    params = RunnerParams(duration_s=30.0, seed=4, pelvic_drop_deg=6.0, trunk_lean_deg=7.0,
                          overstride_mm=180.0, hip_extension_deg=9.0)
    session = simulate_session(params)
    s = DeriveSettings()
    fo = force_task(session.force, session.attrs["body_mass_kg"], s)
    mo = marker_task(session.markers, session.subject, s)
    steps = step_task(fo, mo, s)
    return session, fo, mo, steps


def test_lowpass_is_zero_lag_and_keeps_nan_gaps():
    rate = 200.0
    t = np.arange(2000) / rate
    slow = np.sin(2 * np.pi * 2.0 * t)
    noisy = slow + 0.3 * np.sin(2 * np.pi * 60.0 * t)
    y = lowpass(noisy, rate, 12.0, 4)
    inner = slice(100, -100)
    assert np.max(np.abs(y[inner] - slow[inner])) < 0.01  # no phase lag, noise gone
    gap = noisy.copy()
    gap[500:540] = np.nan
    z = lowpass(np.stack([gap, noisy], axis=1), rate, 12.0, 4)
    assert np.isnan(z[500:540, 0]).all() and np.isfinite(z[:500, 0]).all()
    assert np.allclose(z[:, 1], y)
    assert np.array_equal(lowpass(noisy, rate, 0, 4), noisy)  # 0 Hz = no filter


def test_body_weight_estimate_over_whole_strides(run):
    session, fo, _, _ = run
    rate = session.force.rate_hz
    fz = session.force.wrench[:, :, 2].sum(axis=1).astype(np.float64)
    c = fo["contacts"]
    t0 = session.force.time[0]
    bw, how = estimate_body_weight(fz, rate, t0=t0)
    assert how["strides"] >= 30
    assert bw == pytest.approx(session.attrs["body_mass_kg"] * G, rel=0.03)
    two_contacts = fz[:int((np.sort(c["t_strike"])[2] - t0) * rate)]
    assert np.isnan(estimate_body_weight(two_contacts, rate, t0=t0)[0])


def test_contacts_match_truth(run):
    session, fo, _, steps = run
    truth = session.truth["steps"]
    c = steps
    assert list(c)[:len(CONTACT_COLUMNS)] == list(CONTACT_COLUMNS)
    ts = np.asarray(truth["t_strike"])
    valid = c["valid"]
    assert valid.sum() >= 0.9 * len(ts) - 2
    # every valid contact (inside the truth's time span) lies within 10 ms of a true strike,
    # on the true side
    valid = valid & (c["t_strike"] <= ts.max() + 0.05)
    j = np.abs(ts[None, :] - c["t_strike"][valid][:, None]).argmin(axis=1)
    assert np.max(np.abs(ts[j] - c["t_strike"][valid])) < 0.010
    assert np.array_equal(np.asarray(truth["side"])[j], c["side"][valid])
    assert np.all(np.diff(c["side"][valid]) != 0) or valid.sum() < 2  # alternation
    ft = c["flight_time"][valid]
    assert np.isfinite(ft[1:]).all() and np.all(ft[np.isfinite(ft)] > 0.05)
    assert np.all((c["peak_vgrf"][valid] > 1.5) & (c["peak_vgrf"][valid] < 4.0))
    assert np.all(c["peak_braking"][valid] < 0)
    assert np.all(c["braking_impulse"][valid] < 0) and np.all(c["propulsive_impulse"][valid] > 0)
    assert fo["attrs"]["body_weight_source"].startswith("body_mass_kg")
    assert fo["attrs"]["force_lowpass_hz"] == DeriveSettings().force_lowpass_hz


def test_step_kinematics_follow_truth(run):
    session, _, _, steps = run
    truth = session.truth["steps"]
    v = steps["valid"]
    for name, tol in (("trunk_lean", 1.0), ("pelvic_drop", 1.0), ("overstride", 20.0),
                      ("peak_hip_extension", 2.0)):
        want = np.median(np.asarray(truth[name]))
        assert np.median(steps[name][v]) == pytest.approx(want, abs=tol), name


def test_angles_for_the_archive(run):
    session, _, mo, _ = run
    a = mo["angles"]
    assert a["values"].shape == (len(session.markers.time), len(a["names"]))
    assert a["values"].dtype == np.float32
    assert "heel_lead_left" not in a["names"]  # mm, not an angle
    assert mo["metric_reasons"] == {}


def test_missing_trunk_markers_give_a_reason(run):
    session = run[0]
    m = session.markers
    keep = [i for i, n in enumerate(m.labels) if n not in ("C7", "T10", "CLAV", "STRN")]
    from treadlab.acquisition.archive import MarkerData

    cut = MarkerData(time=m.time, positions=m.positions[:, keep], labels=[m.labels[i] for i in keep],
                     rate_hz=m.rate_hz)
    mo = marker_task(cut, session.subject, DeriveSettings())
    assert mo["metric_reasons"]["trunk_lean"] == "no trunk markers"
    i = mo["angles"]["names"].index("trunk_lean")
    assert np.isnan(mo["angles"]["values"][:, i]).all()


def test_single_belt_sides_from_centre_of_pressure_and_feet():
    session = simulate_session(RunnerParams(duration_s=20.0, seed=6, belt="single"))
    s = DeriveSettings(belt="single")
    fo = force_task(session.force, None, s)  # body weight estimated too
    assert fo["cop_y"] is not None and (fo["contacts"]["side"] == -1).all()
    steps = step_task(fo, marker_task(session.markers, session.subject, s), s)
    truth = session.truth["steps"]
    v = steps["valid"]
    ts = np.asarray(truth["t_strike"])
    j = np.abs(ts[None, :] - steps["t_strike"][v][:, None]).argmin(axis=1)
    assert v.sum() >= 0.85 * len(ts) - 2
    assert np.mean(np.asarray(truth["side"])[j] == steps["side"][v]) > 0.97
    assert fo["attrs"]["body_weight_n"] == pytest.approx(70.0 * G, rel=0.03)


@pytest.mark.parametrize("belt", ["single", "split"])
def test_force_unfiltered_when_the_lab_sets_no_force_low_pass(belt):
    """``force_lowpass_hz = 0`` (no force filter): the same contacts as a light filter gives,
    on one plate and on two (the unfiltered copy is laid out as the filter's output)."""
    session = simulate_session(RunnerParams(duration_s=10.0, seed=8, belt=belt))
    raw = force_task(session.force, 70.0, DeriveSettings(belt=belt, force_lowpass_hz=0))
    low = force_task(session.force, 70.0, DeriveSettings(belt=belt))
    assert raw["contacts"]["t_strike"].size == low["contacts"]["t_strike"].size > 10
    np.testing.assert_allclose(raw["contacts"]["t_strike"], low["contacts"]["t_strike"],
                               atol=0.005)


def test_zero_drift_is_removed_on_flights():
    session = simulate_session(RunnerParams(duration_s=20.0, seed=8, drift_n_per_s=4.0))
    s = DeriveSettings()
    fo = force_task(session.force, session.attrs["body_mass_kg"], s)
    c = fo["contacts"]
    ts = np.asarray(session.truth["steps"]["t_strike"])
    v = (c["flags"] == 0) & (c["t_strike"] <= ts.max() + 0.05)
    assert v.sum() >= len(ts) - 2
    j = np.abs(ts[None, :] - c["t_strike"][v][:, None]).argmin(axis=1)
    assert np.max(np.abs(ts[j] - c["t_strike"][v])) < 0.010
    assert np.max(np.abs(fo["attrs"]["force_rezero_mean_offset_n"])) > 1.0
