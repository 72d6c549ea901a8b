"""MarkersUDP on a real loopback socket: loss, reordering, duplicates, late and bad packets."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from treadlab.acquisition.sources.markers_udp import MarkersUDP, MarkerSettings
from treadlab.acquisition.sources.wire import encode_marker_packet
from treadlab.config.errors import ConfigError, DeviceError
from tests.support.labs import make_lab
from tests.conftest import collect_blocks

LABELS = ["LASI", "RASI", "LPSI", "RPSI"]


def positions(f):
    p = np.arange(12, dtype=np.float32).reshape(4, 3) + 1000.0 * f
    if f % 7 == 0:
        p[2] = np.nan                       # occluded
    return p


def packet(f):
    return encode_marker_packet(f, 1_000_000 + f * 5000, positions(f))


@pytest.fixture
def src():
    s = MarkersUDP(MarkerSettings(host="127.0.0.1", port=0, rate_hz=200.0, labels=LABELS),
                   max_wait=30.0)           # only the window decides: deterministic
    s.open()
    yield s
    s.close()


@pytest.fixture
def tx():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


def test_round_trip(src, tx):
    for f in range(100):
        tx.sendto(packet(f), src.address)
    blocks = collect_blocks(src, 100)
    seq = np.concatenate([b.seq for b in blocks])
    assert np.array_equal(seq, np.arange(100))
    data = np.concatenate([b.data for b in blocks])
    assert data.shape == (100, 4, 3) and data.dtype == np.float32
    assert np.array_equal(data[14], positions(14), equal_nan=True)
    t = np.concatenate([b.device_time for b in blocks])
    assert np.allclose(t, 1.0 + np.arange(100) * 0.005)
    assert all(b.stream == "markers" for b in blocks)
    assert src.counters["drops"] == 0


def test_loss_reorder_duplicates_late_and_bad_packets(src, tx):
    order = [f for f in range(100) if f not in (10, 11, 20, 50)]
    order.insert(order.index(21) + 1, 20)      # 21 before 20: reordered
    order.insert(order.index(30) + 1, 30)      # 30 twice: duplicate
    order.insert(order.index(70) + 1, 50)      # 50 after 70: past the window -> late
    for f in order:
        tx.sendto(packet(f), src.address)
    tx.sendto(b"garbage", src.address)
    tx.sendto(encode_marker_packet(100, 0, np.zeros((3, 3))), src.address)   # 3 markers, not 4
    blocks = collect_blocks(src, 96)
    time.sleep(0.1)
    src.close()
    blocks += src.read(0)
    seq = np.concatenate([b.seq for b in blocks])
    assert np.array_equal(seq, np.setdiff1d(np.arange(100), [10, 11, 50]))
    assert np.all(np.diff(seq) > 0)                    # blocks come out in frame order
    c = src.counters
    assert (c["drops"], c["reordered"], c["duplicates"], c["late"], c["bad_packets"]) == \
        (3, 1, 1, 1, 2)
    kinds = [e[2] for e in src.drain_events()]
    for k in ("drop", "reordered", "duplicate", "late", "bad_packet"):
        assert k in kinds
    data = np.concatenate([b.data for b in blocks])
    assert np.array_equal(data[seq == 20][0], positions(20))


def test_frame_counter_wraps(src, tx):
    for f in range(2**32 - 5, 2**32 + 5):
        tx.sendto(encode_marker_packet(f, f, np.zeros((4, 3))), src.address)
    blocks = collect_blocks(src, 10)
    seq = np.concatenate([b.seq for b in blocks])
    assert np.array_equal(seq, np.arange(2**32 - 5, 2**32 + 5))
    assert src.counters["drops"] == 0


def test_bind_conflict_names_the_address(src):
    other = MarkersUDP(MarkerSettings(host="127.0.0.1", port=src.address[1], labels=LABELS))
    with pytest.raises(DeviceError, match=f"127.0.0.1:{src.address[1]}"):
        other.open()


def test_port_zero_needs_the_simulated_lab():
    cfg = make_lab(marker_port=0, labels=LABELS)
    with pytest.raises(ConfigError, match="markers.port"):
        MarkersUDP.from_config(cfg)
