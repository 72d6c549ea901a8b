"""Clock alignment: drift + offset + jittery, delayed, block-wise receipts → aligned streams."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.acquisition.capture.clock import ClockFit, SessionClock, fit_clock, theil_sen


def _receipts(rng, t_true, block, base_delay, stall_every):
    """Host receipt times of samples emitted at true host times ``t_true``.

    Samples are delivered in blocks of ``block`` (the whole block arrives after its last sample),
    plus an exponential jitter per block and, every ``stall_every`` blocks, a 20–80 ms stall.
    """
    n = t_true.size
    host = np.empty(n)
    for k, s in enumerate(range(0, n, block)):
        e = min(s + block, n)
        delay = base_delay + rng.exponential(0.4e-3)
        if stall_every and k % stall_every == stall_every - 1:
            delay += rng.uniform(0.02, 0.08)
        host[s:e] = t_true[e - 1] + delay
    return host


def _device(t_true, offset, drift_ppm):
    """A device clock running ``drift_ppm`` slow with an ``offset`` (s)."""
    return (t_true - offset) / (1.0 + drift_ppm * 1e-6)


@pytest.mark.timeout(30)
def test_force_and_markers_align_within_1ms():
    rng = np.random.default_rng(7)
    duration = 60.0
    t_force = 1000.0 + np.arange(0, duration, 1 / 2000.0)       # true host times
    t_mark = 1000.0 + 0.0013 + np.arange(0, duration, 1 / 200.0)
    dev_f = _device(t_force, offset=-12.345, drift_ppm=100.0)
    dev_m = 3.0e5 + _device(t_mark, offset=987.0, drift_ppm=-40.0)
    host_f = _receipts(rng, t_force, block=16, base_delay=2e-4, stall_every=37)
    host_m = _receipts(rng, t_mark, block=1, base_delay=1.5e-4, stall_every=23)

    clock = SessionClock(t0_host=1000.0)
    # feed in the interleaved order a capture would see, block by block
    for s in range(0, t_force.size, 160):
        clock.add("force", dev_f[s:s + 160], host_f[s:s + 160])
        m0, m1 = s // 10, (s + 160) // 10
        clock.add("markers", dev_m[m0:m1], host_m[m0:m1])

    sf = clock.to_session("force", dev_f)
    sm = clock.to_session("markers", dev_m)
    # mapped times equal the true times up to each stream's minimum transport delay
    err_f = sf - (t_force - 1000.0)
    err_m = sm - (t_mark - 1000.0)
    assert np.max(np.abs(err_f - 2e-4)) < 0.5e-3
    assert np.max(np.abs(err_m - 1.5e-4)) < 0.5e-3
    # the same physical instant on both streams agrees to well under 1 ms
    common = np.interp(t_mark, t_force, sf)
    assert np.max(np.abs(common - sm)) < 1e-3
    desc = clock.describe()
    assert abs(desc["force"]["drift_ppm"] - 100.0) < 10.0
    assert abs(desc["markers"]["drift_ppm"] + 40.0) < 10.0


def test_refit_as_data_accrue_and_offline_agrees():
    rng = np.random.default_rng(1)
    t = np.arange(0, 30, 1 / 1000.0)
    dev = _device(t, 5.0, 100.0)
    host = _receipts(rng, t, block=8, base_delay=1e-4, stall_every=11)
    fit = ClockFit()
    errs = []
    for s in range(0, t.size, 500):
        fit.add(dev[s:s + 500], host[s:s + 500])
        errs.append(np.max(np.abs(fit.to_host(dev[:s + 500]) - t[:s + 500] - 1e-4)))
    assert fit.ready
    assert errs[-1] < 0.5e-3
    origin, a, b = fit_clock(dev, host)
    offline = dev + a + b * (dev - origin)
    assert np.max(np.abs(offline - fit.to_host(dev))) < 0.3e-3


def test_short_stream_is_offset_only_and_theil_sen_is_robust():
    fit = ClockFit()
    fit.add(np.array([0.0, 0.001]), np.array([10.5, 10.5]))
    assert not fit.ready
    assert fit.to_host(np.array([0.001]))[0] == pytest.approx(10.5)
    x = np.arange(20.0)
    y = 2.0 + 0.5 * x
    y[[3, 7, 11]] += 100.0  # outliers
    a, b = theil_sen(x, y)
    assert a == pytest.approx(2.0) and b == pytest.approx(0.5)
