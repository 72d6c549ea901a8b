"""Contacts the force cannot time are timed from the foot markers and marked as such."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from treadlab.acquisition.archive import read_derived, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.derive import FLAG_SATURATED, SATURATION_SAMPLES, flag_saturated
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


def _flag_saturated_former(force_out, force):
    """``derive.flag_saturated`` as it was before the blockwise comparison (float64 copy,
    ``np.convolve`` run search): the reference for the rewrites (blockwise, then a comparison
    in the wrench's dtype against the least value within the tolerance)."""
    c = force_out["contacts"]
    flags = np.asarray(c["flags"]).copy()
    w = force.wrench
    for j in range(w.shape[1]):
        fz = np.asarray(w[:, j, 2], np.float64)
        top = np.nanmax(fz) if np.isfinite(fz).any() else np.nan
        if not np.isfinite(top) or top <= 0:
            continue
        at_top = np.abs(fz - top) <= max(1e-6 * abs(top), 1e-3)
        k = SATURATION_SAMPLES
        run = np.convolve(at_top.astype(np.int32), np.ones(k, np.int32), "valid") == k
        if not run.any():
            continue
        starts = np.flatnonzero(run)
        rows = np.flatnonzero(np.asarray(c["plate"]) == j)
        a = np.asarray(c["i_strike"])[rows]
        b = np.asarray(c["i_off"])[rows]
        lo = np.searchsorted(starts, a, "left")
        hi = np.searchsorted(starts, b - k + 1, "right")
        flags[rows[hi > lo]] |= FLAG_SATURATED
    return flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flag_saturated_matches_the_former_implementation(dtype):
    rng = np.random.default_rng(5)
    n = 200_003  # several comparison blocks and a partial last one
    w = (rng.random((n, 2, 6)) * 900).astype(dtype)
    top = dtype(2000.0)
    for s0, length in ((100, 3), (1000, 2), (65_535, 4), (131_070, 5), (n - 3, 3)):
        w[s0:s0 + length, 0, 2] = top  # runs at the clip level, some across block edges
    w[50_000:50_010, 1, 2] = np.nan
    w[60_000:60_004, 1, 2] = 1500.0
    # runs one value of the dtype either side of the tolerance's edge (2000 - 0.002 N)
    edge = dtype(2000.0 - 0.002)
    for s0, steps in ((70_000, -3), (70_100, -1), (70_200, 0), (70_300, 1), (70_400, 3)):
        v = edge
        for _ in range(abs(steps)):
            v = np.nextafter(v, dtype(np.inf) if steps > 0 else dtype(-np.inf))
        w[s0:s0 + 3, 0, 2] = v
    strikes = np.arange(0, n - 600, 500)
    contacts = {"t_strike": strikes / 1000.0, "i_strike": np.concatenate([strikes, strikes]),
                "i_off": np.concatenate([strikes + 400, strikes + 400]),
                "plate": np.repeat(np.array([0, 1], np.int16), strikes.size),
                "flags": np.zeros(2 * strikes.size, np.int32)}
    contacts["t_strike"] = np.concatenate([contacts["t_strike"], contacts["t_strike"]])
    force_out = {"contacts": contacts, "attrs": {}}
    force = SimpleNamespace(wrench=w)
    got = flag_saturated(force_out, force)["contacts"]["flags"]
    want = _flag_saturated_former(force_out, force)
    assert np.array_equal(got, want) and got.dtype == want.dtype
    assert (got != 0).sum() >= 3
