"""Per-contact force metrics (docs/metrics.md §3): compiled and reference implementations, analytic
cases, NaN gaps, empty input, and real treadmill runs."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.kernels import _forces_ref, forces
from treadlab.kernels.contacts import ContactParams, detect_contacts
from treadlab.config.constants import G

pytestmark = pytest.mark.timeout(60)

IMPLS = {"compiled": forces.force_metrics, "reference": _forces_ref.force_metrics}
BW = 700.0
RATE = 1000.0


@pytest.fixture(params=sorted(IMPLS))
def metrics(request):
    return IMPLS[request.param]


def test_impulses_trapezoid_and_peaks(metrics):
    n = 400
    fx = np.zeros(n)
    fz = np.zeros(n)
    # stance [100, 301): Fx = -140 N for the first 100 samples, then +70 N
    fx[100:200] = -140.0
    fx[200:301] = 70.0
    fz[100:301] = 1400.0
    m = metrics(fx, fz, RATE, np.array([100]), np.array([301]), BW)
    dt = 1 / RATE
    # trapezoid of min(Fx,0): 99 full steps at -140, one half step -140/2 at the switch
    assert m["braking_impulse"][0] == pytest.approx((-140 * 99 - 70) * dt / BW, rel=1e-12)
    assert m["propulsive_impulse"][0] == pytest.approx((70 * 100 + 35) * dt / BW, rel=1e-12)
    assert m["peak_braking"][0] == pytest.approx(-0.2)
    assert m["peak_vgrf"][0] == pytest.approx(2.0)
    assert m["braking_impulse"][0] + m["propulsive_impulse"][0] == pytest.approx(
        np.trapezoid(fx[100:301], dx=dt) / BW, rel=1e-12)


def test_nan_samples_are_bridged_linearly(metrics):
    t = np.arange(300) / RATE
    fx = -1000 * t + 100.0                 # linear: +100 N → -200 N
    fz = np.full(300, 1000.0)
    full = metrics(fx, fz, RATE, np.array([0]), np.array([300]), BW)
    holes = fx.copy()
    holes[[50, 51, 52, 200]] = np.nan
    fzh = fz.copy()
    fzh[7] = np.nan
    got = metrics(holes, fzh, RATE, np.array([0]), np.array([300]), BW)
    # linear bridging of a linear signal is exact except across the zero crossing (t = 0.1 s)
    assert got["braking_impulse"][0] == pytest.approx(full["braking_impulse"][0], rel=1e-9)
    assert got["propulsive_impulse"][0] == pytest.approx(full["propulsive_impulse"][0], rel=1e-9)
    assert got["peak_braking"][0] == full["peak_braking"][0]
    assert got["peak_vgrf"][0] == full["peak_vgrf"][0]


def test_loading_rate_with_impact_peak(metrics):
    # Fz rises at 100 BW/s to an impact peak of 2 BW at 20 ms, dips to 1.5 BW, then 2.6 BW
    bw_s = 100.0
    z = np.concatenate([np.arange(21) * bw_s / RATE, np.linspace(2.0, 1.5, 11)[1:],
                        np.linspace(1.5, 2.6, 60)[1:], np.linspace(2.6, 0.0, 120)[1:]]) * BW
    fx = np.zeros_like(z)
    m = metrics(fx, z, RATE, np.array([1]), np.array([z.size]), BW)
    assert not m["loading_rate_fallback"][0]
    assert m["impact_peak"][0] == pytest.approx(2.0)
    assert m["loading_rate"][0] == pytest.approx(bw_s, rel=1e-9)
    assert m["peak_vgrf"][0] == pytest.approx(2.6)


def test_loading_rate_fallback_without_impact_peak(metrics):
    # a forefoot-like rise with no impact peak: slope 60 BW/s for 40 ms, then a half sine
    z = np.concatenate([np.arange(41) * 60.0 / RATE,
                        2.4 + 0.2 * np.sin(np.linspace(0, np.pi, 150))[1:],
                        np.linspace(2.4, 0, 60)[1:]]) * BW
    m = metrics(np.zeros_like(z), z, RATE, np.array([0]), np.array([z.size]), BW)
    assert m["loading_rate_fallback"][0]
    assert np.isnan(m["impact_peak"][0])
    assert m["loading_rate"][0] == pytest.approx(60.0, rel=1e-9)     # samples 10 → 40
    # the window is a parameter
    m2 = metrics(np.zeros_like(z), z, RATE, np.array([0]), np.array([z.size]), BW,
                 fallback_window_s=(0.0, 0.02))
    assert m2["loading_rate"][0] == pytest.approx(60.0, rel=1e-9)


def test_degenerate_contacts(metrics):
    fx = np.r_[np.nan, np.nan, 5.0, np.zeros(7)]
    fz = np.r_[np.nan, np.nan, 100.0, np.zeros(7)]
    m = metrics(fx, fz, RATE, np.array([0, 2, 4]), np.array([2, 3, 4]), BW)
    for k in ("peak_vgrf", "loading_rate", "peak_braking", "braking_impulse",
              "propulsive_impulse", "impact_peak"):
        assert np.isnan(m[k][0]), k            # all NaN
        assert np.isnan(m[k][2]), k            # empty stance
    assert m["peak_vgrf"][1] == pytest.approx(100 / BW)
    assert m["braking_impulse"][1] == 0 and m["propulsive_impulse"][1] == 0
    assert m["loading_rate_fallback"][1] and np.isnan(m["loading_rate"][1])


def test_empty(metrics):
    m = metrics(np.zeros(0), np.zeros(0), RATE, np.zeros(0, np.int64), np.zeros(0, np.int64), BW)
    assert set(m) == set(forces.METRIC_NAMES)
    assert all(v.shape == (0,) for v in m.values())
    assert m["loading_rate_fallback"].dtype == bool


def test_compiled_matches_reference_random():
    rng = np.random.default_rng(7)
    n = 20000
    t = np.arange(n) / RATE
    phase = (t % 0.36) / 0.25
    on = phase < 1
    fz = np.where(on, 1600 * np.sin(np.pi * np.clip(phase, 0, 1)), 0.0)
    fz += np.where(on & (phase < 0.2), 500 * np.sin(np.pi * phase / 0.2), 0) * rng.uniform(0, 1)
    fz += rng.normal(0, 20, n)
    fx = np.where(on, -250 * np.sin(2 * np.pi * np.clip(phase, 0, 1)), 0) + rng.normal(0, 10, n)
    fx[rng.random(n) < 0.02] = np.nan
    fz[rng.random(n) < 0.02] = np.nan
    i_strike = np.sort(rng.integers(0, n - 400, 300))
    i_off = i_strike + rng.integers(0, 400, 300)
    a = forces.force_metrics(fx, fz, RATE, i_strike, i_off, BW)
    b = _forces_ref.force_metrics(fx, fz, RATE, i_strike, i_off, BW)
    assert 0 < a["loading_rate_fallback"].mean() < 1
    for k in forces.METRIC_NAMES:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_validation():
    z = np.zeros(10)
    i = np.array([0])
    with pytest.raises(ValueError, match="one length"):
        forces.force_metrics(z, np.zeros(9), RATE, i, i, BW)
    with pytest.raises(ValueError, match="out of range"):
        forces.force_metrics(z, z, RATE, np.array([5]), np.array([11]), BW)
    with pytest.raises(ValueError, match="out of range"):
        forces.force_metrics(z, z, RATE, np.array([5]), np.array([4]), BW)
    with pytest.raises(ValueError, match="integer"):
        forces.force_metrics(z, z, RATE, np.array([0.5]), np.array([3.0]), BW)
    with pytest.raises(ValueError, match="body_weight_n"):
        forces.force_metrics(z, z, RATE, i, i, 0.0)
    with pytest.raises(ValueError, match="rate_hz"):
        forces.force_metrics(z, z, -1.0, i, i, BW)
    with pytest.raises(ValueError, match="fallback_window_s"):
        forces.force_metrics(z, z, RATE, i, i, BW, fallback_window_s=(0.04, 0.01))
    # float32 and non-contiguous inputs are accepted
    w = np.zeros((10, 6), np.float32)
    m = forces.force_metrics(w[:, 0], w[:, 2], RATE, [0], [10], BW)
    assert m["peak_vgrf"][0] == 0


@pytest.mark.parametrize("name", ["RBDS001runT25.c3d", "RBDS001runT35.c3d", "RBDS001runT45.c3d",
                                  "RBDS002runT35.c3d"])
def test_fukuchi_impulses_balance_over_a_stride(name):
    c3d_import = pytest.importorskip("treadlab.acquisition.io.c3d_import")
    session = c3d_import.read_c3d(shared_file("running", name))
    force = session.force
    w = np.asarray(force.wrench[:, 0, :], np.float64)
    bw = session.attrs["body_mass_kg"] * G
    c, _ = detect_contacts(w[:, 2], force.rate_hz, ContactParams.from_bw(bw))
    c = c.take(c.valid)
    m = forces.force_metrics(w[:, 0], w[:, 2], force.rate_hz, c.i_strike, c.i_off, bw)
    assert np.all(m["braking_impulse"] < 0) and np.all(m["propulsive_impulse"] > 0)
    assert np.all(m["peak_braking"] < -0.1)                 # measured -0.31 … -0.62 BW mean
    assert np.all((m["peak_vgrf"] > 1.8) & (m["peak_vgrf"] < 3.5))
    net = m["braking_impulse"] + m["propulsive_impulse"]
    k = net.size // 2 * 2
    stride = net[0:k:2] + net[1:k:2]
    braking_stride = -(m["braking_impulse"][0:k:2] + m["braking_impulse"][1:k:2])
    # steady speed: braking + propulsive ≈ 0 per stride (measured: mean 0.0003–0.0023 BW·s,
    # about 5 % of the stride's braking impulse, 0.04–0.06 BW·s)
    assert abs(stride.mean()) < 0.1 * braking_stride.mean()
    assert np.all(np.abs(stride) < 0.3 * braking_stride)


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "noise+drift"])
def test_synthetic_runner_metrics(clean):
    syn = pytest.importorskip("treadlab.acquisition.sim.synthetic")
    make = syn.RunnerParams.clean if clean else syn.RunnerParams
    p = make(duration_s=20.0, belt="split", **({} if clean else {"drift_n_per_s": 1.0}))
    session = syn.simulate_session(p)
    truth = session.truth["steps"]
    force = session.force
    bw = p.body_mass_kg * G
    params = ContactParams.from_bw(bw)
    got = {k: [] for k in ("t_strike", "peak_vgrf", "loading_rate", "peak_braking",
                           "braking_impulse", "propulsive_impulse")}
    from treadlab.kernels.contacts import rezero_flight
    for j in range(2):
        w = np.asarray(force.wrench[:, j], np.float64)
        c, _ = detect_contacts(w[:, 2], force.rate_hz, params)
        w, _ = rezero_flight(w, c.i_strike, c.i_off, force.rate_hz)
        c, _ = detect_contacts(w[:, 2], force.rate_hz, params)
        m = forces.force_metrics(w[:, 0], w[:, 2], force.rate_hz, c.i_strike, c.i_off, bw)
        got["t_strike"].append(c.t_strike)
        for k in got:
            if k != "t_strike":
                got[k].append(m[k])
    order = np.argsort(np.concatenate(got["t_strike"]))
    got = {k: np.concatenate(v)[order] for k, v in got.items()}
    k = np.searchsorted(got["t_strike"], truth["t_strike"] - 0.05)
    # measured, clean: peak_vgrf 0.00 %, loading rate 0.07 %, peak braking 0.01 %, braking
    # impulse 0.03 %, propulsive impulse 0.8 % (truth integrates to the force end, stance ends
    # at 20 N). Noise 2 N + drift 1 N/s, unfiltered: 0.3 %, 1.1 %, 3.2 % (the minimum of noisy
    # samples is biased low by about 2.5 sigma), 0.5 %, 1.2 %.
    tol = {"peak_vgrf": 0.005, "loading_rate": 0.01, "peak_braking": 0.01,
           "braking_impulse": 0.01, "propulsive_impulse": 0.01}
    if not clean:
        tol = {"peak_vgrf": 0.01, "loading_rate": 0.03, "peak_braking": 0.05,
               "braking_impulse": 0.01, "propulsive_impulse": 0.02}
    for name, rel in tol.items():
        np.testing.assert_allclose(got[name][k], truth[name], rtol=rel, err_msg=name)


def test_synthetic_loading_rate_converges():
    """The 1 kHz loading rate against the same definition on the noise-free force sampled at
    100 kHz: the discretisation error of the 20/80 % crossings is small."""
    syn = pytest.importorskip("treadlab.acquisition.sim.synthetic")
    runner = syn.SyntheticRunner(syn.RunnerParams.clean(duration_s=3.0, belt="split"))
    bw = runner.body_weight_n
    out = {}
    for rate in (1000.0, 100000.0):
        t = np.arange(int(1.5 * rate)) / rate
        fz = np.asarray(runner.force_clean(t)[:, 0, 2], np.float64)   # left belt
        c, _ = detect_contacts(fz, rate, ContactParams())
        m = forces.force_metrics(np.zeros_like(fz), fz, rate, c.i_strike, c.i_off, bw)
        assert not m["loading_rate_fallback"].any()
        out[rate] = m["loading_rate"]
    np.testing.assert_allclose(out[1000.0], out[100000.0], rtol=0.02)
    assert 40 < out[1000.0][0] < 150


def test_missing_extension_fails_loudly(monkeypatch):
    import sys
    import treadlab.kernels
    monkeypatch.setitem(sys.modules, "treadlab.kernels._forces_cy", None)
    monkeypatch.delattr(treadlab.kernels, "_forces_cy", raising=False)
    with pytest.raises(ImportError, match="build_ext"):
        forces.force_metrics(np.zeros(3), np.zeros(3), RATE, [0], [3], BW)
