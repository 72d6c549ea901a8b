"""C3D replay: a real treadmill recording played back through the serial and UDP wire formats."""
from __future__ import annotations

import time

import numpy as np
import pytest

from treadlab.acquisition.sources.forceplate_serial import ForcePlateSerial, PlateCalibration
from treadlab.acquisition.sources.markers_udp import MarkersUDP
from treadlab.acquisition.sim.replay import ReplaySignal, transfer_wrench
from treadlab.acquisition.sim.simulated import start_replay_lab
from tests.conftest import shared_file
from tests.support.labs import make_lab, plate

pytestmark = pytest.mark.timeout(120)

CAL = np.diag([2000.0, 2000.0, 4000.0, 1500.0, 1500.0, 800.0])


@pytest.fixture(scope="module")
def recording():
    from treadlab.acquisition.io.c3d_import import read_c3d

    path = shared_file("running", "RBDS001runT35.c3d")
    return path, read_c3d(path)


def plates_like(session, origin_shift=(0.0, 0.0, 0.0)):
    o = np.asarray(session.force.origin[0], float) + origin_shift
    return [plate(session.force.plates[0], range(6), o, CAL)]


def test_transfer_wrench_moves_the_moment_reference():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 100, (5, 1, 6))
    a, b = np.array([[100.0, -50.0, 0.0]]), np.array([[-200.0, 300.0, 10.0]])
    out = transfer_wrench(w, [(0, 0)], a, b, 1)
    assert np.allclose(out[:, 0, :3], w[:, 0, :3])
    expect = w[:, 0, 3:] + np.cross((a[0] - b[0]) * 1e-3, w[:, 0, :3])
    assert np.allclose(out[:, 0, 3:], expect)
    back = transfer_wrench(out, [(0, 0)], b, a, 1)
    assert np.allclose(back, w)


def test_signal_reproduces_the_recording(recording):
    path, s = recording
    labels = list(s.markers.labels[:6]) + ["NOT_IN_FILE"]
    sig = ReplaySignal(s, plates_like(s), labels, loop=False, source=str(path))
    t_f = s.force.time - s.force.time[0]
    assert np.allclose(sig.force(t_f[100:400])[:, 0], s.force.wrench[100:400, 0], atol=1e-3)
    t_m = s.markers.time - s.markers.time[0]
    got = sig.markers(t_m[50:90])
    assert np.array_equal(got[:, :6], s.markers.positions[50:90, :6], equal_nan=True)
    assert np.isnan(got[:, 6]).all() and sig.missing_labels == ["NOT_IN_FILE"]
    mid = sig.force(np.array([(t_f[10] + t_f[11]) / 2]))[0, 0]
    assert np.allclose(mid, (s.force.wrench[10, 0] + s.force.wrench[11, 0]) / 2, atol=1e-3)
    assert np.all(sig.force(np.array([sig.duration_s + 1.0])) == 0)        # after the end
    looped = ReplaySignal(s, plates_like(s), labels, loop=True)
    assert np.allclose(looped.force(t_f[100:110] + looped.duration_s)[:, 0],
                       s.force.wrench[100:110, 0], atol=1e-2)


def test_split_belt_lab_gets_the_single_plate_on_its_first_plate(recording):
    _, s = recording
    plates = [PlateCalibration("left", list(range(6)), CAL, origin=[0, 135, 0]),
              PlateCalibration("right", list(range(6, 12)), CAL, origin=[0, -135, 0])]
    sig = ReplaySignal(s, plates, list(s.markers.labels[:3]))
    w = sig.force(np.arange(0, 1, 0.01))
    assert np.allclose(w[:, 1], 0) and np.abs(w[:, 0, 2]).max() > 500


def test_replay_through_the_wire(recording):
    path, s = recording
    labels = list(s.markers.labels[:8])
    cfg = make_lab(name="replay", belt="single", plates=plates_like(s), rate_hz=600.0,
                   channels=6, tare_seconds=0.1, marker_rate_hz=150.0, labels=labels)
    markers = MarkersUDP(cfg.markers)
    markers.open()
    lab = start_replay_lab(cfg, path, marker_address=markers.address)
    force = ForcePlateSerial.from_config(cfg, lab=lab)
    fb, mb = [], []
    try:
        force.open()
        force.tare(timeout=20.0)
        deadline = time.monotonic() + 30.0            # bound; normally ~2.5 s
        while time.monotonic() < deadline and (sum(map(len, fb)) < 1500
                                               or sum(map(len, mb)) < 300):
            fb += force.read(0.05)
            mb += markers.read(0)
        stats = lab.stop()
    finally:
        force.close()
        markers.close()
        lab.stop()
    fb += force.read(0)
    mb += markers.read(0)
    sig = ReplaySignal(s, cfg.plates, labels)
    seq = np.concatenate([b.seq for b in fb])
    wrench = np.concatenate([b.data for b in fb])
    on = stats["on_frame"]
    loaded = seq >= on
    assert loaded.sum() > 200
    expect = sig.force((seq[loaded] - on) / 600.0)
    lsb = 10.0 / 32768 * CAL.diagonal()                 # N or N·m per count
    assert np.all(np.abs(wrench[loaded, 0] - expect[:, 0]) < 1.5 * lsb + 1e-3)
    assert np.abs(wrench[~loaded]).max() < 2 * lsb.max()
    mseq = np.concatenate([b.seq for b in mb])
    pos = np.concatenate([b.data for b in mb])
    mon = stats["on_marker_frame"]
    ml = mseq >= mon
    assert ml.sum() > 50
    exp = sig.markers((mseq[ml] - mon) / 150.0)
    assert np.array_equal(pos[ml], exp, equal_nan=True)
    assert force.counters["drops"] == 0 and markers.counters["drops"] == 0


def test_unreadable_recording_is_refused_before_any_device_starts(tmp_path):
    from treadlab.acquisition.sim.simulated import start_lab
    from treadlab.config.errors import InputError

    empty = shared_file("importer", "Empty.c3d")
    cfg = make_lab(belt="single", plates=[plate("treadmill", range(6), calibration=CAL)],
                   channels=6, labels=["LASI"])
    with pytest.raises(InputError, match="Empty.c3d"):
        start_lab(cfg, replay=empty)
