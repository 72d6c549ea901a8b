"""The simulated lab in its own process, read by the real drivers over a pty, UDP and LSL.

Every fault the devices inject is counted by the readers, one for one.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from treadlab.acquisition.sources.forceplate_serial import ForcePlateSerial
from treadlab.acquisition.sources.force_lsl import ForceLSL
from treadlab.acquisition.sources.markers_lsl import MarkersLSL
from treadlab.acquisition.sources.markers_udp import MarkersUDP
from treadlab.acquisition.sim.simulated import Faults, RunnerSignal, start_lab
from treadlab.acquisition.sim.synthetic import LABELS, parse_params
from tests.support.labs import make_lab

pytestmark = pytest.mark.timeout(120)

SIM = {"preset": "realistic", "seed": "3", "cadence_spm": "180"}


def lab_cfg(force_driver="simulated", marker_driver="markers_udp", rate=1000.0, tare=0.2):
    """A small split-belt lab (the shipped config is exercised by the capture tests)."""
    return make_lab(name="test", force_driver=force_driver, baud=1_000_000, rate_hz=rate,
                    tare_seconds=tare, force_stream="treadlab-test-force",
                    marker_driver=marker_driver, labels=list(LABELS) + ["EXTRA"],
                    marker_stream="treadlab-test-markers", simulator=SIM)


def read_until(sources, frames, limit=30.0):
    """Read until each source delivered ``frames[name]`` frames (bounded by ``limit`` s)."""
    out = {s.name: [] for s in sources}
    n = {s.name: 0 for s in sources}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(n[k] < frames.get(k, 0) for k in n):
        for s in sources:
            got = s.read(0.02)
            out[s.name] += got
            n[s.name] += sum(len(b) for b in got)
    return out


def drain(sources, quiet=0.3, limit=10.0):
    """Read until no source delivered anything for ``quiet`` s (bounded by ``limit``)."""
    out = {s.name: [] for s in sources}
    last = time.monotonic()
    deadline = last + limit
    while time.monotonic() - last < quiet and time.monotonic() < deadline:
        for s in sources:
            got = s.read(0.02)
            if got:
                out[s.name] += got
                last = time.monotonic()
    return out


def cat(blocks, attr):
    return np.concatenate([getattr(b, attr) for b in blocks])


def test_serial_and_udp_faults_counted_one_for_one():
    cfg = lab_cfg()
    faults = Faults(garbage_every=173, torn_every=251, bad_crc_every=337,
                    udp_loss_every=41, udp_reorder_every=53, udp_duplicate_every=67)
    # the receiver is bound before the mocap starts sending, so it sees every datagram
    markers = MarkersUDP(cfg.markers, max_wait=0.5)
    markers.open()
    lab = start_lab(cfg, faults=faults, marker_address=markers.address)
    force = ForcePlateSerial.from_config(cfg, lab=lab)
    try:
        force.open()
        zero = force.tare(timeout=20.0)
        got = read_until([force, markers], {"force": 2500, "markers": 450})
        stats = lab.stop()
        more = drain([force, markers])
    finally:
        force.close()
        markers.close()
        lab.stop()
    fb = got["force"] + more["force"] + force.read(0)
    mb = got["markers"] + more["markers"] + markers.read(0)
    fc, mc = force.counters, markers.counters
    assert stats["garbage"] > 0 and stats["torn"] > 0 and stats["bad_crc"] > 0
    assert fc["resyncs"] == stats["garbage"] + stats["torn"]
    assert fc["crc_errors"] == stats["bad_crc"]
    assert fc["drops"] == stats["torn"] + stats["bad_crc"]
    assert fc["reconnects"] == 0
    seq = cat(fb, "seq")
    assert np.all(np.diff(seq) > 0)
    assert len(seq) + fc["drops"] == seq[-1] - seq[0] + 1        # every frame accounted for
    assert stats["udp_lost"] > 0 and stats["udp_reordered"] > 0 and stats["udp_duplicated"] > 0
    assert (mc["drops"], mc["reordered"], mc["duplicates"], mc["late"]) == \
        (stats["udp_lost"], stats["udp_reordered"], stats["udp_duplicated"], 0)
    mseq = cat(mb, "seq")
    assert np.all(np.diff(mseq) > 0)
    assert len(mseq) + mc["drops"] == mseq[-1] - mseq[0] + 1

    # the values are the runner's, through the inverse calibration, zero offset and tare
    assert np.abs(zero).max() > 10                              # the amplifier's offset
    sig = RunnerSignal(parse_params(SIM), cfg.plates, cfg.markers.labels)
    wrench = cat(fb, "data")
    on = stats["on_frame"]
    assert np.abs(wrench[seq < on]).max() < 5.0                  # unloaded belt ≈ 0 N
    loaded = seq >= on
    assert loaded.sum() > 500
    expect = sig.force((seq[loaded] - on) / cfg.forceplate.rate_hz)
    lsb = 10.0 / 32768 * 4000.0                                 # N per count on Fz
    assert np.abs(wrench[loaded] - expect).max() < 2 * lsb
    assert wrench[loaded][:, :, 2].max() > 1000                  # running: peaks > 1.4 BW
    pos = cat(mb, "data")
    mon = stats["on_marker_frame"]
    assert np.isnan(pos[mseq < mon]).all()                       # nobody on the treadmill yet
    mloaded = mseq >= mon
    exp_pos = sig.markers((mseq[mloaded] - mon) / cfg.markers.rate_hz)
    assert np.array_equal(pos[mloaded], exp_pos, equal_nan=True)
    assert np.isnan(pos[:, -1]).all()                            # "EXTRA": no such marker


def test_port_vanishes_and_returns_nothing_silently_lost():
    cfg = lab_cfg(tare=0.1)
    lab = start_lab(cfg)
    force = ForcePlateSerial.from_config(cfg, lab=lab, max_backoff=0.2)
    try:
        force.open()
        force.tare(timeout=20.0)
        got = read_until([force], {"force": 300})
        lab.vanish(0.4)
        deadline = time.monotonic() + 20
        while force.counters["reconnects"] == 0 and time.monotonic() < deadline:
            got["force"] += force.read(0.05)
        got["force"] += read_until([force], {"force": 300})["force"]
        stats = lab.stop()
        got["force"] += drain([force])["force"]
    finally:
        force.close()
        lab.stop()
    c = force.counters
    assert stats["vanished"] == 1 and c["reconnects"] == 1
    kinds = [e[2] for e in force.drain_events()]
    assert "disconnect" in kinds and "reconnect" in kinds
    seq = cat(got["force"], "seq")
    assert np.all(np.diff(seq) > 0)
    assert c["drops"] > 0
    assert len(seq) + c["drops"] == seq[-1] - seq[0] + 1


def test_device_clock_drift_and_offset():
    cfg = lab_cfg(tare=0.0)
    lab = start_lab(cfg, faults=Faults(force_drift_ppm=800.0, force_offset_s=12.5,
                                       marker_drift_ppm=-300.0, marker_offset_s=3.0))
    force = ForcePlateSerial.from_config(cfg, lab=lab)
    markers = MarkersUDP.from_config(cfg, lab=lab)
    try:
        force.open()
        markers.open()
        got = read_until([force, markers], {"force": 1000, "markers": 200})
    finally:
        force.close()
        markers.close()
        lab.stop()
    seq, t = cat(got["force"], "seq"), cat(got["force"], "device_time")
    slope, icpt = np.polyfit(seq / 1000.0, t, 1)
    assert slope == pytest.approx(1 + 800e-6, abs=2e-6)
    assert icpt == pytest.approx(12.5, abs=1e-5)
    mseq, mt = cat(got["markers"], "seq"), cat(got["markers"], "device_time")
    slope, icpt = np.polyfit(mseq / 200.0, mt, 1)
    assert slope == pytest.approx(1 - 300e-6, abs=2e-6)
    assert icpt == pytest.approx(3.0, abs=1e-5)


def test_lsl_lab_force_and_markers():
    cfg = lab_cfg(force_driver="forceplate_lsl", marker_driver="markers_lsl", tare=0.2)
    lab = start_lab(cfg)
    assert lab.force_port is None and lab.marker_address is None
    force = ForceLSL.from_config(cfg, lab=lab)
    markers = MarkersLSL.from_config(cfg, lab=lab)
    try:
        force.open()
        markers.open()
        force.tare(timeout=20.0)
        got = read_until([force, markers], {"force": 2000, "markers": 300})
    finally:
        force.close()
        markers.close()
        lab.stop()
    wrench = cat(got["force"], "data")
    assert wrench.shape[1:] == (2, 6) and len(wrench) > 500
    assert np.nanmax(wrench[:, :, 2]) > 1000                     # the runner stepped on
    pos = cat(got["markers"], "data")
    assert pos.shape[1:] == (len(cfg.markers.labels), 3)
    assert np.isfinite(pos[:, :20]).any() and np.isnan(pos[:, 20]).all()
    assert force.counters["drops"] == 0


def test_bad_runner_parameter_is_a_config_error():
    from treadlab.config.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_param"):
        start_lab(lab_cfg(), params={"no_such_param": "1"})


def test_treadlab_simulate_lab_serves_the_printed_endpoints():
    """``treadlab simulate lab``: the printed pty carries frames with the shipped calibration."""
    import subprocess
    import sys

    from treadlab.config import load_lab

    cfg = load_lab()
    proc = subprocess.Popen([sys.executable, "-m", "treadlab.pipeline.cli", "simulate", "lab",
                             "--duration", "3", "--param", "seed=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("serving"):
                break
        port = [x.split(": ", 1)[1] for x in lines if x.startswith("force plate (serial)")]
        udp = [x.split(": ", 1)[1] for x in lines if x.startswith("markers (UDP)")]
        assert port and udp, lines
        assert udp[0].startswith("127.0.0.1:")
        served = dataclasses.replace(cfg, forceplate=dataclasses.replace(
            cfg.forceplate, driver="forceplate_serial", port=port[0]))   # the pty it printed
        force = ForcePlateSerial.from_config(served)
        with force:
            force.tare(timeout=20.0)
            got = read_until([force], {"force": 200})
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "sent" in out
    assert sum(len(b) for b in got["force"]) >= 200
    assert force.counters["crc_errors"] == 0 and force.counters["resyncs"] == 0


def test_treadlab_simulate_lab_stops_on_ctrl_c():
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "treadlab.pipeline.cli", "simulate", "lab"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and not line.startswith("serving"):
            line = proc.stdout.readline()
            if not line:
                break
        assert line.startswith("serving")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "marker frames" in out


def test_runner_signal_switches_to_standing_and_to_the_belt_speed():
    """The simulated lab's posture command acts on the signal from the switch time on: quiet
    standing (body weight, feet still), then running at another speed (clipped to what the
    runner can run at)."""
    cfg = lab_cfg()
    sig = RunnerSignal(parse_params(SIM), cfg.plates, cfg.markers.labels)
    fr = cfg.forceplate.rate_hz
    t = np.arange(0, int(4 * fr)) / fr
    before = sig.force(t)
    assert sig.switch(2.0, True) == 3.5                     # standing from t = 2 s
    w = sig.force(t)
    assert np.array_equal(w[t < 2.0], before[t < 2.0])
    bw = sig.runner.body_weight_n
    assert abs(w[t >= 2.0][:, :, 2].sum(axis=1).mean() / bw - 1) < 0.01
    assert w[t >= 2.0][:, :, 2].min() > 0.4 * bw
    assert sig.switch(3.0, False, 9.0) == 4.0               # the fastest a 0.25 s contact allows
    assert sig.switch(3.0, False, 3.2) == 3.2               # a later command replaces it
    w = sig.force(t)
    assert w[t >= 3.0][:, :, 2].min() < 20.0                # flight phases: running
    ran = w[t >= 3.0]
    # the configured runner at 3.2 m/s: its gait moves with the speed as on a belt at 3.2 m/s
    at = RunnerSignal(parse_params(SIM), cfg.plates, cfg.markers.labels)
    at.follow([0.0], [3.2])
    assert np.array_equal(ran, at.force(t[t >= 3.0]))
    mt = np.arange(0, int(2.5 * cfg.markers.rate_hz)) / cfg.markers.rate_hz
    pos = sig.markers(mt)
    assert pos.shape == (len(mt), len(cfg.markers.labels), 3)
    assert np.isnan(pos[:, -1]).all()                       # "EXTRA": no such marker
