"""Belt speed: the Bertec remote-control driver against the simulated treadmill controller
(loopback TCP), ``/raw/belt`` in the archive and a speed protocol run during a capture."""
from __future__ import annotations

import io
import types

import h5py
import numpy as np
import pytest

from tests.acquisition.test_sources_conformance import check_source
from tests.conftest import collect_blocks
from treadlab.acquisition.sim.treadmill_emulator import SimulatedTreadmill
from treadlab.acquisition.sources.treadmill_bertec import (TreadmillBertec, TreadmillSettings,
                                                           decode_command, decode_feedback,
                                                           encode_command, encode_feedback,
                                                           parse_protocol)
from treadlab.config.errors import ConfigError, DeviceError

pytestmark = pytest.mark.timeout(120)


def test_command_and_feedback_packets():
    pkt = encode_command(3.5, -1.25, 0.5, 1.5)
    assert len(pkt) == 64 and pkt[0] == 0 and pkt[37:] == bytes(27)
    assert pkt[1:3] == (3500).to_bytes(2, "big") and pkt[3:5] == (-1250).to_bytes(2, "big",
                                                                                    signed=True)
    assert all(c == 255 - b for b, c in zip(pkt[1:19], pkt[19:37]))
    assert decode_command(pkt) == (3.5, -1.25, 0.5, 1.5)
    bad = bytearray(pkt)
    bad[20] ^= 1
    with pytest.raises(ValueError, match="check bytes"):
        decode_command(bytes(bad))
    fb = encode_feedback(2.0, 2.5, 3.0) + encode_feedback(1.0, 0.5)
    assert len(fb) == 64
    np.testing.assert_allclose(decode_feedback(fb), [[2.5, 2.0, 3.0], [0.5, 1.0, 0.0]])


def _settings(sim, **kw):
    return TreadmillSettings(host=sim.address[0], port=sim.address[1], **kw)


def test_treadmill_source_conforms():
    with SimulatedTreadmill(initial_m_s=1.0) as sim:
        blocks = check_source(TreadmillBertec(_settings(sim)), min_frames=30)
    v = np.concatenate([b.data for b in blocks])
    np.testing.assert_allclose(v, 1.0)


def test_set_speed_ramps_the_belts_and_limits_are_kept():
    with SimulatedTreadmill() as sim:
        src = TreadmillBertec(_settings(sim, accel_m_s2=5.0, max_speed_m_s=5.0))
        src.open()
        try:
            src.set_speed(2.5, 3.0)
            blocks = collect_blocks(src, 80, timeout=10)
            with pytest.raises(ValueError, match="exceeds treadmill.max_speed_m_s"):
                src.set_speed(5.5)
        finally:
            src.close()
        assert sim.stats["commands"] == 1 and sim.stats["bad_commands"] == 0
    v = np.concatenate([b.data for b in blocks])
    assert np.all(np.diff(v[:, 0]) >= -1e-6)                  # a ramp, no jump back
    np.testing.assert_allclose(v[-1], [2.5, 3.0], atol=1e-3)  # [left, right] m/s
    kinds = [k for _, _, k, _ in src.drain_events()]
    assert "set_speed" in kinds
    with pytest.raises(DeviceError, match="not connected"):
        src.set_speed(1.0)


def test_a_lost_controller_connection_is_logged_and_reconnected():
    with SimulatedTreadmill(initial_m_s=1.0) as sim:
        src = TreadmillBertec(_settings(sim, reconnect_s=0.2))
        src.open()
        try:
            collect_blocks(src, 20, timeout=5)
            sim.vanish(0.5)
            collect_blocks(src, 150, timeout=10)
        finally:
            src.close()
    assert src.counters["reconnects"] == 1
    kinds = [k for _, _, k, _ in src.drain_events()]
    assert kinds.count("disconnect") == 1 and kinds.count("reconnect") == 1
    with pytest.raises(DeviceError, match="cannot connect"):
        TreadmillBertec(TreadmillSettings(host="127.0.0.1", port=sim.address[1])).open()


def test_speed_protocol_parse():
    assert parse_protocol("2.5:60, 3.5:60,4.5:60") == [(2.5, 60.0), (3.5, 60.0), (4.5, 60.0)]
    with pytest.raises(ConfigError, match="--speed-protocol: stage 2"):
        parse_protocol("2.5:60,fast")
    cfg = types.SimpleNamespace(path=None, treadmill={"host": "auto", "drvier": "bertec"})
    with pytest.raises(ConfigError, match="treadmill.drvier: unknown key"):
        TreadmillSettings.from_config(cfg)


def test_capture_runs_a_speed_protocol_and_records_raw_belt(tmp_path):
    """2.5 → 3.5 → 4.5 m/s stages of 1.5 s on the simulated controller (3 m/s²): /raw/belt
    holds the measured speeds over time, each stage reaches its speed, /raw/log the commands."""
    import dataclasses

    from treadlab.acquisition.capture.session import capture_session
    from treadlab.config import load_lab

    cfg = dataclasses.replace(load_lab(None), treadmill={"host": "auto", "accel_m_s2": 3.0})
    path = capture_session(cfg, subject="belt", body_mass_kg=70.0, out_dir=tmp_path,
                           status_stream=io.StringIO(), speed_protocol="2.5:1.5,3.5:1.5,4.5:1.5")
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        g = f["/raw/belt"]
        assert list(g.attrs["belts"]) == ["left", "right"]
        t, v = g["time"][()], g["speed"][()]
        log = list(zip(f["/raw/log/kind"].asstr()[()], f["/raw/log/detail"].asstr()[()]))
        assert f.attrs["belt_speed_source"].startswith("treadmill controller")
    assert g is not None and len(t) > 200 and np.all(np.diff(t) >= 0)
    sets = [d for k, d in log if k == "set_speed"]
    assert len(sets) == 3 and "4.5" in sets[-1]
    # each stage reaches its speed before the next starts (ramps at 3 m/s²)
    for target in (2.5, 3.5, 4.5):
        assert np.any(np.abs(v[:, 0] - target) < 0.01), target
    assert v.max() <= 4.5 + 1e-3


def test_speed_protocol_without_a_treadmill_table_is_a_config_error(tmp_path):
    from treadlab.acquisition.capture.session import capture_session
    from treadlab.config import load_lab

    with pytest.raises(ConfigError, match="treadmill: --speed-protocol needs"):
        capture_session(load_lab(None), out_dir=tmp_path, speed_protocol="2.5:10")
