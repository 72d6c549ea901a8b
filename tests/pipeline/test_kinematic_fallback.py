"""Contacts the force cannot time are timed from the foot markers and marked as such."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.archive import read_derived, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.graph import process_session


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fallback")
    session = simulate_session(RunnerParams(duration_s=24.0, seed=5))
    full = root / "full.h5"
    write_session(full, session)
    process_session(full)
    w = np.array(session.force.wrench, copy=True)
    t = np.asarray(session.force.time)
    w[(t > 8.0) & (t < 14.0)] = np.nan  # 6 s of force lost (cable, amplifier)
    session.force.wrench = w
    holed = root / "holed.h5"
    write_session(holed, session)
    process_session(holed)
    return read_derived(full)["contacts"], read_derived(holed)["contacts"]


def test_every_force_contact_has_its_kinematic_events(runs):
    full, _ = runs
    assert np.all(full["contact_source"] == 0)
    ds = full["kinematic_t_strike"] - full["t_strike"]
    do = full["kinematic_t_off"] - full["t_off"]
    assert np.isfinite(ds).mean() > 0.95
    assert np.nanmax(np.abs(ds)) < 0.05 and np.nanmax(np.abs(do)) < 0.05


def test_force_gap_is_filled_by_kinematic_contacts(runs):
    full, holed = runs
    kin = holed["contact_source"] == 1
    assert kin.any()
    ts = holed["t_strike"][kin]
    assert np.all((ts > 7.5) & (ts < 14.5))  # the contacts cut by the gap included
    # as many contacts as with force, alternating sides, valid and measured
    inside = (full["t_strike"] > 8.1) & (full["t_strike"] < 13.9)
    assert abs(int(kin.sum()) - int(inside.sum())) <= 2
    v = holed["valid"] & kin
    assert v.sum() >= 0.8 * kin.sum()
    assert np.all(np.diff(holed["side"][kin]) != 0)
    assert np.isnan(holed["peak_vgrf"][kin]).all()  # no force metric without force
    assert np.isfinite(holed["pelvic_drop"][v]).all()
    assert np.all(np.diff(holed["t_strike"]) > 0)


def test_clipped_force_is_flagged_and_timed_from_the_markers(tmp_path):
    """An amplifier that clips just below the highest peaks: the clipped contacts are flagged
    saturated and replaced by kinematic contacts; the others keep their force timing."""
    from treadlab.pipeline.derive import FLAG_SATURATED

    session = simulate_session(RunnerParams(duration_s=24.0, seed=6))
    plain = tmp_path / "plain.h5"
    write_session(plain, session)
    n_force = process_session(plain)["contacts"]
    w = np.array(session.force.wrench, copy=True)
    for j in range(w.shape[1]):
        w[:, j, 2] = np.minimum(w[:, j, 2], 0.97 * np.nanmax(w[:, j, 2]))
    session.force.wrench = w
    path = tmp_path / "clipped.h5"
    write_session(path, session)
    process_session(path)
    d = read_derived(path)
    c = d["contacts"]
    n_sat = int(d["attrs"]["saturated_contacts"])
    assert n_sat >= 1
    kin = c["contact_source"] == 1
    assert kin.sum() >= n_sat - 2  # a clipped contact at either end may have no markers
    assert abs(c["t_strike"].size - n_force) <= 2  # no contact counted twice
    assert not np.any(c["flags"] & FLAG_SATURATED)  # replaced, not kept
    assert c["valid"][kin].all()
    assert np.isnan(c["peak_vgrf"][kin]).all()
    assert np.all(np.diff(c["t_strike"]) > 0)
