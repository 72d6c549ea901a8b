"""ForcePlateSerial over a real pseudo-terminal: round trip, calibration, tare, faults, reconnect."""
from __future__ import annotations

import time

import numpy as np
import pytest

from treadlab.acquisition.sources.base import SOURCES
from treadlab.acquisition.sources.forceplate_serial import (
    ForceCalibration, ForcePlateSerial, ForcePlateSettings, PlateCalibration)
from treadlab.acquisition.sim.simulated import PtyPort
from treadlab.acquisition.sources.wire import encode_force_frames, frame_size
from treadlab.config.errors import ConfigError, DeviceError
from tests.conftest import collect_blocks

C = 12
F = frame_size(C)
RATE = 1000.0


def plates():
    rng = np.random.default_rng(5)
    cal = [np.diag([500.0, 500.0, 1000.0, 200.0, 200.0, 100.0]) + rng.normal(0, 5, (6, 6))
           for _ in range(2)]
    return [PlateCalibration("left", list(range(6)), cal[0], origin=[0, 250, 0]),
            PlateCalibration("right", list(range(6, 12)), cal[1], origin=[0, -250, 0])]


def settings(port, tare_seconds=0.0):
    return ForcePlateSettings(port=port, baud=1_000_000, rate_hz=RATE, channels=C,
                              sample_type="int16", volts_per_count=10.0 / 32768,
                              tare_seconds=tare_seconds)


def counts(n, start=0, offset=0, seed=0):
    rng = np.random.default_rng(seed + start)
    return (rng.integers(-2000, 2000, (n, C)) + offset).astype(np.int16)


def send(port, seq, values):
    port.write(encode_force_frames(seq, np.asarray(seq) * 1000, values))
    assert port.drain(10.0)


def cat(blocks, attr):
    return np.concatenate([getattr(b, attr) for b in blocks])


def wait_reader(port, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not port.has_reader() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert port.has_reader()


@pytest.fixture
def pty():
    with PtyPort() as port:
        yield port


def test_frames_round_trip_with_calibration(pty):
    src = ForcePlateSerial(settings(pty.path), plates())
    with src:
        wait_reader(pty)
        v = counts(600)
        send(pty, np.arange(600), v)
        blocks = collect_blocks(src, 600)
    raw = cat(blocks, "raw")
    assert np.array_equal(raw, v)
    assert np.array_equal(cat(blocks, "seq"), np.arange(600))
    assert np.allclose(cat(blocks, "device_time"), np.arange(600) * 1e-3)
    cal = ForceCalibration(plates(), C, 10.0 / 32768)
    wrench = cat(blocks, "data")
    assert wrench.shape == (600, 2, 6) and wrench.dtype == np.float32
    assert np.allclose(wrench, cal.wrench(v), rtol=1e-6, atol=1e-3)
    # one plate by hand: wrench = C @ volts
    volts = v[7, 6:12] * (10.0 / 32768)
    assert np.allclose(wrench[7, 1], plates()[1].calibration @ volts, rtol=1e-5, atol=1e-3)
    assert all(b.stream == "force" for b in blocks)
    assert src.counters["frames"] == 600 and src.counters["drops"] == 0


def test_inverse_calibration_round_trip():
    cal = ForceCalibration(plates(), C, 10.0 / 32768)
    rng = np.random.default_rng(2)
    wrench = rng.normal(0, 300, (50, 2, 6))
    zero = rng.integers(-300, 300, C)
    c, clipped = cal.counts(wrench, zero=zero)
    assert clipped == 0
    cal.zero = zero.astype(float)
    assert np.allclose(cal.wrench(c), wrench, atol=1.0)      # 1 count ≈ 0.2 N here


def test_automatic_tare_zeroes_the_offset_and_loses_nothing(pty):
    offset = np.arange(C) * 100 - 500
    src = ForcePlateSerial(settings(pty.path, tare_seconds=0.2), plates())
    with src:
        wait_reader(pty)
        rng = np.random.default_rng(1)
        unloaded = (offset + rng.integers(-3, 4, (200, C))).astype(np.int16)
        loaded = counts(300, offset=offset)
        send(pty, np.arange(200), unloaded)
        send(pty, np.arange(200, 500), loaded)
        assert src.wait_tare(10.0)
        blocks = collect_blocks(src, 500)
        zero = src.zero
    assert np.allclose(zero, offset, atol=1.0)
    assert np.array_equal(cat(blocks, "seq"), np.arange(500))
    wrench = cat(blocks, "data")
    assert np.abs(wrench[:200]).max() < 15.0           # unloaded belt reads ~0 N
    assert np.allclose(src.calibration["zero"], zero)
    ev = [e for e in src.drain_events() if e[2] == "tare"]
    assert len(ev) == 1 and "200 frames" in ev[0][3]


def test_tare_after_the_automatic_one_keeps_its_zero(pty):
    """capture calls tare() after open(): it must not re-tare a belt the runner is on."""
    src = ForcePlateSerial(settings(pty.path, tare_seconds=0.05), plates())
    with src:
        wait_reader(pty)
        send(pty, np.arange(50), np.full((50, C), 7, np.int16))
        first = src.tare(timeout=10.0)
        send(pty, np.arange(50, 150), np.full((100, C), 900, np.int16))
        again = src.tare(timeout=10.0)
        collect_blocks(src, 150)
    assert np.allclose(first, 7) and np.allclose(again, 7)


def test_explicit_tare(pty):
    src = ForcePlateSerial(settings(pty.path), plates(), auto_tare=False)
    with src:
        wait_reader(pty)
        send(pty, np.arange(10), counts(10))
        collect_blocks(src, 10)
        import threading
        result = {}
        th = threading.Thread(target=lambda: result.update(zero=src.tare(0.05, timeout=20.0)))
        th.start()
        deadline = time.monotonic() + 10
        while src.wait_tare(0) and time.monotonic() < deadline:   # until the tare runs
            time.sleep(0.005)
        send(pty, np.arange(10, 110), np.full((100, C), 42, np.int16))
        th.join(30)
    assert np.allclose(result["zero"], 42)


def test_garbage_torn_and_bad_crc_are_counted(pty):
    src = ForcePlateSerial(settings(pty.path), plates())
    with src:
        wait_reader(pty)
        v = counts(100)
        data = encode_force_frames(np.arange(100), np.arange(100) * 1000, v)
        bad = bytearray(data[60 * F:61 * F])
        bad[12] ^= 0x55
        stream = (data[:20 * F] + b"\x00\x01\x02\x03" + data[20 * F:40 * F]
                  + data[40 * F:40 * F + 9] + data[41 * F:60 * F] + bytes(bad) + data[61 * F:])
        pty.write(stream)
        assert pty.drain(10.0)
        blocks = collect_blocks(src, 98)
        time.sleep(0.05)
        blocks += src.read(0.1)
    seq = cat(blocks, "seq")
    assert np.array_equal(seq, np.setdiff1d(np.arange(100), [40, 60]))
    c = src.counters
    assert (c["resyncs"], c["crc_errors"], c["drops"]) == (2, 1, 2)
    assert c["discarded_bytes"] == 4 + 9 + F
    kinds = [e[2] for e in src.drain_events()]
    assert kinds.count("resync") == 2 and kinds.count("crc_error") == 1
    assert kinds.count("drop") == 2


def test_port_vanishes_and_returns(pty):
    src = ForcePlateSerial(settings(pty.path), plates(), max_backoff=0.2)
    with src:
        wait_reader(pty)
        send(pty, np.arange(100), counts(100))
        first = collect_blocks(src, 100)
        pty.vanish()
        deadline = time.monotonic() + 10
        while src.counters.get("reconnects", 0) == 0 and time.monotonic() < deadline:
            events = src.drain_events()
            if any(e[2] == "disconnect" for e in events):
                break
            time.sleep(0.02)
        assert src.read(0.05) == []                   # nothing arrives, nothing blocks
        pty.restore()
        wait_reader(pty, timeout=10.0)
        send(pty, np.arange(150, 250), counts(100, start=150))   # frames 100..149 lost
        second = collect_blocks(src, 100)
    seq = cat(first + second, "seq")
    assert np.array_equal(seq, np.r_[np.arange(100), np.arange(150, 250)])
    c = src.counters
    assert c["reconnects"] == 1 and c["drops"] == 50


def test_read_returns_empty_without_data(pty):
    src = ForcePlateSerial(settings(pty.path), plates())
    with src:
        assert src.read(0.01) == []
    assert not src.is_open


def test_open_missing_port_names_it(tmp_path):
    missing = str(tmp_path / "ttyNOPE")
    with pytest.raises(DeviceError, match="ttyNOPE"):
        ForcePlateSerial(settings(missing), plates()).open()


def test_settings_and_registry_errors():
    with pytest.raises(ConfigError, match="sample_type"):
        ForcePlateSettings(sample_type="float")
    with pytest.raises(ConfigError, match="channels"):
        ForcePlateSerial(settings("loop://"), [PlateCalibration("x", [0, 1, 2, 3, 4, 99],
                                                                np.eye(6))])
    slow = settings("loop://")
    slow.baud = 115200                                  # 1000 Hz × 34 bytes needs 340 kbaud
    with pytest.raises(ConfigError, match="forceplate.baud"):
        ForcePlateSerial(slow, plates())
    with pytest.raises(ConfigError, match="forceplate_serial"):
        SOURCES["forceplate_usb"]
    assert SOURCES["forceplate_serial"] is ForcePlateSerial


def test_loop_url_works(tmp_path):
    """serial_for_url: the same driver runs over pyserial's loop:// handler."""
    src = ForcePlateSerial(settings("loop://"), plates())
    with src:
        src._ser.write(encode_force_frames(np.arange(50), np.arange(50) * 1000, counts(50)))
        blocks = collect_blocks(src, 50)
    assert np.array_equal(cat(blocks, "seq"), np.arange(50))
