"""The live processor: streaming contacts, per-step values, moving medians, never blocking."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from treadlab.acquisition.capture.live import LiveProcessor, format_status
from treadlab.kernels.contacts import ContactParams

RATE = 1000.0


def _running_force(seconds, cadence_spm=170.0, contact_s=0.25, bw_n=700.0, rate=RATE):
    """Split-belt vertical force: alternating half-sine stances with flight phases.

    Returns time (n,) s, wrench (n, 2, 6) float32 and the true strike times per plate.
    """
    t = np.arange(0, seconds, 1 / rate)
    w = np.zeros((t.size, 2, 6), np.float32)
    step = 60.0 / cadence_spm
    strikes = {0: [], 1: []}
    k = 0
    ts = 0.2
    while ts + contact_s < seconds:
        plate = k % 2
        sel = (t >= ts) & (t < ts + contact_s)
        w[sel, plate, 2] = 2.5 * bw_n * np.sin(np.pi * (t[sel] - ts) / contact_s)
        strikes[plate].append(ts)
        ts += step
        k += 1
    return t, w, strikes


def test_contacts_cadence_and_contact_time_block_by_block():
    t, w, strikes = _running_force(12.0)
    seen = []
    live = LiveProcessor(["left", "right"], RATE, [], 100.0,
                         params=ContactParams.from_bw(700.0), window=7, on_step=seen.append)
    for s in range(0, t.size, 37):   # odd block size: contacts straddle blocks
        live.put_force(t[s:s + 37], w[s:s + 37], np.arange(s, min(s + 37, t.size)))
        live.process_pending()
    st = live.status()
    n_true = len(strikes[0]) + len(strikes[1])
    assert st["n_steps"] == n_true
    assert st["cadence_spm"] == pytest.approx(170.0, rel=0.01)
    # 20 N crossings of a 1750 N half sine lie slightly inside the 0.25 s support
    assert st["contact_time_s"] == pytest.approx(0.25, abs=0.01)
    sides = [s.side for s in seen]
    assert sides[:4] == [0, 1, 0, 1]
    left = [s.t_strike for s in seen if s.side == 0]
    np.testing.assert_allclose(left, strikes[0], atol=3e-3)
    # toe-off sample number maps back to the device frame number
    assert all(s.seq_off == s.i_off for s in seen)
    # no markers: the cause values are unknown, not invented
    assert np.isnan(st["pelvic_drop_deg"]) and np.isnan(st["trunk_lean_deg"])
    line = format_status(65.0, st, drops=3)
    assert line.startswith("01:05") and "cadence 170.0" in line and "drops 3" in line


@pytest.mark.timeout(30)  # a put that waited for processing would hang here, never return
def test_put_never_blocks_and_overflow_is_counted():
    live = LiveProcessor(["left", "right"], RATE, [], 100.0, max_pending=10)
    block = np.zeros((20, 2, 6), np.float32)
    for k in range(100):             # nobody is processing: the queue overflows
        live.put_force(np.arange(20) / RATE + k * 0.02, block)
    assert live.drops == 90
    assert live.status()["live_drops"] == 90


@pytest.mark.timeout(30)
def test_thread_processes_in_background():
    t, w, strikes = _running_force(6.0)
    got = threading.Event()
    live = LiveProcessor(["left", "right"], RATE, [], 100.0,
                         on_step=lambda s: got.set()).start()
    try:
        for s in range(0, t.size, 50):
            live.put_force(t[s:s + 50], w[s:s + 50])
        assert got.wait(20)
    finally:
        live.stop()
    assert live.status()["n_steps"] == len(strikes[0]) + len(strikes[1])


def test_single_belt_sides_from_centre_of_pressure():
    t, w2, strikes = _running_force(8.0)
    # one plate: sum both feet, left foot at y = +100 mm, right at -100 mm (Mx = y * Fz)
    w = np.zeros((t.size, 1, 6), np.float32)
    w[:, 0, 2] = w2[:, 0, 2] + w2[:, 1, 2]
    w[:, 0, 3] = 0.1 * w2[:, 0, 2] - 0.1 * w2[:, 1, 2]
    seen = []
    live = LiveProcessor(["treadmill"], RATE, [], 100.0, belt="single", on_step=seen.append)
    live.put_force(t, w)
    live.process_pending()
    sides = [s.side for s in seen][2:]
    assert sides == [0, 1] * (len(sides) // 2) + [0] * (len(sides) % 2)


@pytest.mark.timeout(60)
def test_cause_values_from_synthetic_runner_markers():
    from treadlab.acquisition.sim.synthetic import RunnerParams, SyntheticRunner
    from treadlab.kernels.angles import joint_angles
    from treadlab.kernels.steps import step_metrics

    p = RunnerParams.clean(pelvic_drop_deg=7.0, trunk_lean_deg=5.0, overstride_mm=180.0,
                           cadence_spm=165.0, contact_time_s=0.26)
    runner = SyntheticRunner(p)
    live = LiveProcessor(runner.plates, p.force_rate_hz, runner.labels, p.marker_rate_hz,
                         params=ContactParams.from_bw(runner.body_weight_n, min_peak_bw=1.0),
                         subject=runner.subject, window=9)
    t_m_all = np.arange(0, 1600) / p.marker_rate_hz
    m_all = runner.markers(t_m_all)
    for k in range(80):               # 8 s in 100 ms blocks, markers arriving with the force
        t_f = np.arange(k * 100, (k + 1) * 100) / p.force_rate_hz
        live.put_markers(t_m_all[k * 20:(k + 1) * 20], m_all[k * 20:(k + 1) * 20])
        live.put_force(t_f, runner.force(t_f))
        live.process_pending()
    st = live.status()
    assert st["n_steps"] >= 18
    assert st["cadence_spm"] == pytest.approx(165.0, rel=0.02)
    assert st["contact_time_s"] == pytest.approx(0.26, abs=0.02)
    # the runner's own cause parameters
    assert st["pelvic_drop_deg"] == pytest.approx(7.0, abs=1.0)
    assert st["trunk_lean_deg"] == pytest.approx(5.0, abs=1.0)
    assert st["heel_lead_mm"] == pytest.approx(180.0, abs=20.0)
    # and the offline step kernel on the same contacts (live uses the same definitions)
    steps = [s for s in live.step_dicts() if s["valid"]][2:]
    ang = joint_angles(m_all, runner.labels, runner.subject)
    ref = step_metrics([s["t_strike"] for s in steps], [s["t_off"] for s in steps],
                       [s["side"] for s in steps], t_m_all, ang.values, ang.names)
    np.testing.assert_allclose([s["hip_extension"] for s in steps], ref["peak_hip_extension"],
                               atol=1.0)
    np.testing.assert_allclose([s["trunk_lean"] for s in steps], ref["trunk_lean"], atol=0.5)
    np.testing.assert_allclose([s["heel_lead"] for s in steps], ref["overstride"], atol=5.0)
    np.testing.assert_allclose([s["pelvic_drop"] for s in steps], ref["pelvic_drop"], atol=1.0)
