"""The Source contract (docs/architecture.md), checked the same way for every driver.

:func:`check_source` is the conformance check; every registered driver runs it against a real
device: the simulated lab's pty and loopback UDP, and LSL outlets on this machine.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from treadlab.acquisition.sources.base import COUNTERS, SOURCES, Block, Source, StreamInfo
from treadlab.acquisition.sim.simulated import start_lab
from treadlab.acquisition.sim.synthetic import LABELS
from tests.support.labs import make_lab

pytestmark = pytest.mark.timeout(120)



def check_source(src: Source, min_frames: int = 20, timeout: float = 20.0) -> list[Block]:
    """Open ``src``, read until ``min_frames`` arrived, close; assert the Source contract."""
    assert isinstance(src, Source)
    assert isinstance(src.name, str) and src.kind in ("force", "markers", "belt", "analog")
    info = src.info
    # an analog stream learns its rate and channel names from the device when it opens
    assert isinstance(info, StreamInfo) and info.stream == src.kind
    assert info.rate_hz > 0 or src.kind == "analog"
    # a force source delivers ADC counts (channels > 0, raw) or, for a device that sends the
    # plates' wrench itself (QTM), no counts at all (channels 0, raw None)
    assert (info.labels or src.kind == "analog") and \
        (info.channels > 0 or (src.kind in ("force", "belt", "analog")
                               and info.sample_type == "float32"))
    c0 = src.counters
    assert set(COUNTERS) <= set(c0) and all(v == 0 for v in c0.values())
    assert not src.is_open
    src.open()
    src.open()                                          # idempotent
    assert info.rate_hz > 0 and info.labels
    blocks, got = [], 0
    deadline = time.monotonic() + timeout
    try:
        while got < min_frames and time.monotonic() < deadline:
            out = src.read(0.1)
            assert isinstance(out, list)
            blocks += out
            got += sum(len(b) for b in out)
    finally:
        src.close()
    src.close()                                         # idempotent
    blocks += src.read(0.5)                             # what arrived before close; no wait
    assert got >= min_frames, f"{src!r}: only {got} frames in {timeout} s"
    assert src.read(0.0) == []
    n_total = 0
    last_seq = last_dev = -np.inf
    for b in blocks:
        assert isinstance(b, Block) and b.stream == src.kind
        n = len(b)
        assert n > 0
        assert b.device_time.shape == (n,) and b.device_time.dtype == np.float64
        assert b.host_time.shape == (n,) and b.host_time.dtype == np.float64
        assert b.seq is not None and b.seq.shape == (n,) and b.seq.dtype == np.int64
        assert b.data.dtype == np.float32
        if src.kind == "force":
            assert b.data.shape == (n, len(info.plates), 6)
            if info.channels:
                assert b.raw is not None and b.raw.shape == (n, info.channels)
                assert b.raw.dtype == np.dtype(info.sample_type)
            else:
                assert b.raw is None
        elif src.kind in ("belt", "analog"):             # speed per belt, m/s; channels
            assert b.data.shape == (n, len(info.labels))
        else:
            assert b.data.shape == (n, len(info.labels), 3)
        # frames come out in order, on a device clock that never runs backwards; host times
        # are receipt times (a datagram put back in order keeps its later receipt time)
        assert b.seq[0] > last_seq and np.all(np.diff(b.seq) > 0)
        assert b.device_time[0] >= last_dev and np.all(np.diff(b.device_time) >= 0)
        assert np.all(np.isfinite(b.host_time)) and b.host_time.max() <= time.monotonic()
        last_seq, last_dev = b.seq[-1], b.device_time[-1]
        n_total += n
    c = src.counters
    assert c["frames"] == n_total                        # counted = delivered (no overflow)
    assert c["blocks"] == len(blocks)
    for ev in src.drain_events():
        t, name, kind, detail = ev
        assert isinstance(t, float) and name == src.name
        assert isinstance(kind, str) and kind and isinstance(detail, str)
    assert src.drain_events() == []
    return blocks


def lab_cfg(force_driver, marker_driver):
    return make_lab(name="conformance", force_driver=force_driver, rate_hz=500.0,
                    tare_seconds=0.1, force_stream="treadlab-conf-force",
                    marker_driver=marker_driver, marker_rate_hz=100.0, labels=list(LABELS),
                    marker_stream="treadlab-conf-markers", simulator={"seed": "1"})


@pytest.fixture(scope="module")
def serial_lab():
    cfg = lab_cfg("simulated", "markers_udp")
    with start_lab(cfg) as lab:
        yield cfg, lab


@pytest.fixture(scope="module")
def lsl_lab():
    cfg = lab_cfg("forceplate_lsl", "markers_lsl")
    with start_lab(cfg) as lab:
        yield cfg, lab


@pytest.mark.parametrize("driver, table, lab_fixture", [
    ("simulated", "forceplate", "serial_lab"),
    ("forceplate_serial", "forceplate", "serial_lab"),
    ("markers_udp", "markers", "serial_lab"),
    ("forceplate_lsl", "forceplate", "lsl_lab"),
    ("markers_lsl", "markers", "lsl_lab"),
])
def test_every_registered_source_conforms(driver, table, lab_fixture, request):
    """(``qualisys`` and ``natnet`` run this check against their vendor-protocol emulators
    in tests/acquisition/test_qualisys.py and test_natnet.py.)"""
    cfg, lab = request.getfixturevalue(lab_fixture)
    cls = SOURCES[driver]
    src = cls.from_config(cfg, lab=lab)
    check_source(src)


def test_registry_lists_every_driver():
    assert set(SOURCES) == {"forceplate_serial", "simulated", "forceplate_lsl", "markers_udp",
                            "markers_lsl", "qualisys", "natnet"}
    for name in SOURCES:
        assert issubclass(SOURCES[name], Source)


def test_sources_from_config_uses_the_lab_endpoints(serial_lab):
    from treadlab.acquisition.sources.base import sources_from_config
    from treadlab.acquisition.sources.forceplate_serial import ForcePlateSerial
    from treadlab.acquisition.sources.markers_udp import MarkersUDP
    from treadlab.config.errors import ConfigError

    cfg, lab = serial_lab
    force, markers = sources_from_config(cfg, lab=lab)
    assert isinstance(force, ForcePlateSerial) and force.port == lab.force_port
    assert isinstance(markers, MarkersUDP) and markers.address == lab.marker_address
    with pytest.raises(ConfigError, match="forceplate.port"):
        sources_from_config(cfg)                        # "auto" without a simulated lab


@pytest.mark.hardware
def test_real_devices_conform():
    """The configured lab's real devices (``TREADLAB_LAB_CONFIG=lab.toml pytest -m hardware``)."""
    import os

    from treadlab.acquisition.sources.base import sources_from_config
    from treadlab.config import load_lab

    path = os.environ.get("TREADLAB_LAB_CONFIG")
    if not path:
        pytest.skip("set TREADLAB_LAB_CONFIG to a lab TOML with real devices")
    for src in sources_from_config(load_lab(path)):
        check_source(src, min_frames=100, timeout=30.0)
