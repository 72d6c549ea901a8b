"""The ``natnet`` source (the ``natnet`` client from PyPI) against the NatNet emulator, as
NatNet 3.1 (Motive 2.x) and 4.1 (Motive 3.x).

Real UDP on 127.0.0.1 between the vendor-protocol client and the emulator process
(:mod:`treadlab.acquisition.sim.natnet_emulator`), bounded in time: unicast here; multicast
(Motive's default, 239.255.42.99:1511) only inside a private network namespace the test makes
(``unshare --net``, root), never on the machine's own network.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.acquisition.test_sources_conformance import check_source, lab_cfg
from tests.conftest import collect_blocks
from treadlab.acquisition.archive import is_derived_file
from treadlab.acquisition.sim.natnet_emulator import (NatNetFaults, natnet_table,
                                                      start_natnet_lab)
from treadlab.acquisition.sources.base import SOURCES
from treadlab.acquisition.sources.natnet import NatNetMarkers, NatNetSettings
from treadlab.config.errors import ConfigError, DeviceError

pytestmark = pytest.mark.timeout(120)


def nn_cfg():
    cfg = lab_cfg("simulated", "natnet")
    cfg.natnet = {"server": "auto"}
    return cfg


@pytest.fixture(scope="module", params=["3.1", "4.1"])
def nn_lab(request):
    cfg = nn_cfg()
    with start_natnet_lab(cfg, natnet_version=request.param) as lab:
        cfg.natnet = natnet_table(lab.natnet_address)
        yield cfg, lab


def test_natnet_source_conforms(nn_lab):
    cfg, lab = nn_lab
    src = SOURCES["natnet"].from_config(cfg, lab=lab)
    assert isinstance(src, NatNetMarkers)
    check_source(src, min_frames=50)


def test_natnet_markers_are_the_runner_in_the_lab_frame(nn_lab):
    """Motive streams metres in its Y-up frame; the source gives mm in the lab frame, equal to
    the runner the emulator plays; the stray reflections are counted as unlabelled."""
    cfg, lab = nn_lab
    src = SOURCES["natnet"].from_config(cfg, lab=lab)
    blocks, seq, pos, on = stream_after_on(src, lab)
    k = seq >= on
    assert k.sum() > 50
    want = runner_markers(cfg, seq[k] - on, src.info.rate_hz)
    np.testing.assert_allclose(pos[k], want, atol=0.01)       # float32 metres → mm
    assert np.nanmax(pos[k][:, :, 2]) > 800                    # Z up (pelvis height)
    np.testing.assert_allclose(np.concatenate([b.device_time for b in blocks]),
                               seq / src.info.rate_hz, atol=1e-9)
    c = src.counters
    assert c["unlabelled"] == 2 * c["frames"]
    events = src.drain_events()
    assert any(k == "unlabelled" for _, _, k, _ in events)
    # the client parsed the frames of the version the server announced
    assert any(k == "natnet" and f"NatNet {lab.natnet_version}.0.0, unicast" in d
               for _, _, k, d in events)


def test_udp_loss_duplicates_reordering_and_an_outage_are_counted():
    """Every injected fault is counted once: lost datagrams as drops, duplicates, reordered
    frames put back; Motive going away is a disconnect, its return a reconnect, and every
    frame number in between is either delivered or counted as a drop."""
    cfg = nn_cfg()
    faults = NatNetFaults(loss_every=23, duplicate_every=29, reorder_every=31,
                          vanish_at_s=1.5, vanish_for_s=1.5)
    with start_natnet_lab(cfg, faults=faults) as lab:
        cfg.natnet = natnet_table(lab.natnet_address)
        cfg.natnet["silence_s"] = 0.5
        src = SOURCES["natnet"].from_config(cfg, lab=lab)
        src.open()
        try:
            blocks = collect_blocks(src, 600, timeout=30)
        finally:
            src.close()
        stats = lab.stop()
    c = src.counters
    seq = np.concatenate([b.seq for b in blocks])
    assert np.all(np.diff(seq) > 0)
    assert len(seq) + c["drops"] == seq[-1] - seq[0] + 1            # nothing lost silently
    assert stats["outages"] == 1 and c["reconnects"] == 1
    # the emulator keeps sending for a moment after the source closed: at most one more
    # injected incident than the source saw
    assert 0 < c["duplicates"] <= stats["duplicated"] <= c["duplicates"] + 1
    assert 0 < c["reordered"] <= stats["reordered"] <= c["reordered"] + 1
    # drops = lost datagrams + the frames Motive made while away
    assert c["drops"] >= stats["lost"] + 100
    kinds = [k for _, _, k, _ in src.drain_events()]
    assert kinds.count("disconnect") == 1 and kinds.count("reconnect") == 1


def test_capture_with_natnet_markers_logs_faults_in_raw_log(tmp_path):
    """``capture --protocol natnet``: force from the simulated treadmill, markers from the
    Motive emulator through the natnet source; the unlabelled markers and counters reach
    /raw/log."""
    from treadlab.pipeline.cli import main

    assert main(["capture", "--protocol", "natnet", "--subject", "N", "--duration", "3",
                 "--out", str(tmp_path), "--no-process"]) == 0
    path = next(p for p in tmp_path.glob("N_*.h5") if not is_derived_file(p))
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        log = list(zip(f["/raw/log/source"].asstr()[()], f["/raw/log/kind"].asstr()[()],
                       f["/raw/log/detail"].asstr()[()]))
        assert f["/raw/markers/positions"].shape[0] > 100
    assert any(k == "natnet" for _, k, _ in log)
    assert any(k == "unlabelled" for _, k, _ in log)
    counters = [d for s, k, d in log if s == "markers" and k == "counters"][-1]
    assert "unlabelled" in counters


def test_udp_faults_through_a_capture_are_counted_in_raw_log(tmp_path):
    """A Motive at a "real" address losing, duplicating and reordering datagrams, with the
    simulated treadmill's force: every incident is a /raw/log line, and every frame number is
    recorded or counted as dropped."""
    from treadlab.acquisition.capture.session import capture_session
    from treadlab.config import load_lab

    base = load_lab(None)
    faults = NatNetFaults(loss_every=23, duplicate_every=29, reorder_every=31)
    with start_natnet_lab(base, faults=faults) as lab:
        import dataclasses

        cfg = dataclasses.replace(base, markers=dataclasses.replace(base.markers,
                                                                    driver="natnet"),
                                  natnet=natnet_table(lab.natnet_address))
        path = capture_session(cfg, subject="nnfaults", body_mass_kg=70.0, duration_s=4.0,
                               out_dir=tmp_path, status_stream=io.StringIO())
        stats = lab.stop()
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        log = list(zip(f["/raw/log/source"].asstr()[()], f["/raw/log/kind"].asstr()[()],
                       f["/raw/log/detail"].asstr()[()]))
        frames = f["/raw/markers/frame"][()]
    mk = [(k, d) for s, k, d in log if s == "markers"]
    # drops logged while recording (the frames read before it, during the tare, are not kept)
    n_drop = sum(int(d.split()[0]) for k, d in mk
                 if k == "drop" and int(d.split("before frame ")[1].split()[0]) > frames[0])
    assert len(frames) + n_drop == frames[-1] - frames[0] + 1
    for kind in ("drop", "duplicate", "reordered"):
        assert any(k == kind for k, _ in mk), kind
    assert stats["lost"] >= 3


def test_natnet_errors_are_one_line():
    cfg = nn_cfg()
    cfg.natnet = {"server": "127.0.0.1", "comand_port": 1}
    with pytest.raises(ConfigError, match="natnet.comand_port: unknown key"):
        NatNetSettings.from_config(cfg)
    cfg.natnet = {"server": "127.0.0.1", "lab_from_motive": [[1, 0, 0], [0, 1, 0]]}
    with pytest.raises(ConfigError, match="natnet.lab_from_motive"):
        NatNetSettings.from_config(cfg)
    cfg.natnet = {"server": "auto"}
    with pytest.raises(ConfigError, match="natnet.server"):
        NatNetMarkers.from_config(cfg)
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # nobody answers there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        cfg.natnet = {"server": "127.0.0.1", "command_port": port, "timeout_s": 0.5}
        src = NatNetMarkers.from_config(cfg)
        with pytest.raises(DeviceError, match=f"natnet://127.0.0.1:{port}: cannot connect"):
            src.open()


def test_cli_simulate_lab_protocol_natnet_prints_the_natnet_table(capsys):
    from treadlab.pipeline.cli import main

    assert main(["simulate", "lab", "--protocol", "natnet", "--duration", "1"]) == 0
    out = capsys.readouterr().out
    assert "NatNet 3.1 server" in out and "[natnet]" in out
    assert main(["simulate", "lab", "--protocol", "natnet", "--natnet-version", "4.1",
                 "--duration", "1"]) == 0
    assert "NatNet 4.1 server" in capsys.readouterr().out


def test_a_lab_toml_with_a_natnet_table_loads(tmp_path):
    from treadlab.config import load_lab
    from treadlab.config.loader import shipped_lab_path

    text = (shipped_lab_path("simulated").read_text()
            .replace('driver = "markers_udp"', 'driver = "natnet"')
            + '\n[natnet]\nserver = "192.0.2.20"\nmarker_set = "Runner"\n')
    p = tmp_path / "lab.toml"
    p.write_text(text)
    cfg = load_lab(p)
    s = NatNetSettings.from_config(cfg)
    assert s.server == "192.0.2.20" and s.command_port == 1510 and not s.multicast
    p.write_text(text.replace('marker_set = "Runner"', 'marker_set = "Runner"\nunits_m = 0'))
    with pytest.raises(ConfigError, match="natnet.units_m"):
        NatNetSettings.from_config(load_lab(p))


#: run inside ``unshare --net``: loopback up with multicast and a route for 239/8 on it, the
#: emulator multicasting, the natnet client joining the group; prints one JSON line
_MULTICAST_CHILD = r"""
import json, subprocess, sys
import numpy as np
for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "set", "lo", "multicast", "on"],
            ["ip", "route", "add", "239.0.0.0/8", "dev", "lo"]):
    subprocess.run(cmd, check=True, timeout=10)
from tests.acquisition.test_natnet import nn_cfg, runner_markers, stream_after_on
from treadlab.acquisition.sim.natnet_emulator import natnet_table, start_natnet_lab
from treadlab.acquisition.sources.base import SOURCES
version = sys.argv[1]
group = ("239.255.42.99", 1511)
cfg = nn_cfg()
with start_natnet_lab(cfg, natnet_version=version, multicast=group) as lab:
    cfg.natnet = natnet_table(lab.natnet_address, multicast=group)
    src = SOURCES["natnet"].from_config(cfg, lab=lab)
    blocks, seq, pos, on = stream_after_on(src, lab)
k = seq >= on
err = np.nanmax(np.abs(pos[k] - runner_markers(cfg, seq[k] - on, src.info.rate_hz)))
print(json.dumps({"frames": int(len(seq)), "after_on": int(k.sum()), "max_err_mm": float(err),
                  "drops": int(src.counters["drops"]),
                  "events": [d for _, _, kind, d in src.drain_events() if kind == "natnet"]}))
"""


def stream_after_on(src, lab, frames: int = 150):
    """Open ``src``, collect its blocks until ``frames`` marker frames after the emulator's
    "runner on" frame, close it: ``(blocks, seq, positions mm, on frame)``."""
    src.open()
    try:
        on = lab.device_stats()["on_marker_frame"]
        blocks = collect_blocks(src, on + frames, timeout=20)
    finally:
        src.close()
    return (blocks, np.concatenate([b.seq for b in blocks]),
            np.concatenate([b.data for b in blocks]), on)


def runner_markers(cfg, frames, rate_hz):
    """The runner's markers (mm, lab frame) the emulator plays at its frames ``frames``."""
    from treadlab.acquisition.sim.emulator_base import runner_params
    from treadlab.acquisition.sim.simulated import RunnerSignal
    from treadlab.acquisition.sources.forceplate_serial import PlateCalibration

    plates = [PlateCalibration.from_table(p) for p in cfg.plates]
    return RunnerSignal(runner_params(cfg, None), plates,
                        cfg.markers.labels).markers(np.asarray(frames) / rate_hz)


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for unshare --net (a private network namespace)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=20)
    if probe.returncode != 0:
        return f"unshare --net refused here: {probe.stderr.strip()[:120]}"
    return None


@pytest.mark.parametrize("version", ["3.1", "4.1"])
def test_multicast_inside_a_private_network_namespace(version):
    """Motive's default transport: frames multicast to 239.255.42.99:1511, the natnet client
    joined to the group (no keep-alives). Emulator and client run in a network namespace of
    their own (loopback only, TTL 0), so no multicast reaches any other network."""
    reason = _netns_reason()
    if reason:
        pytest.skip(reason)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    out = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", _MULTICAST_CHILD,
                          version], capture_output=True, text=True, timeout=90, cwd=root,
                         env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["after_on"] > 50 and got["drops"] == 0
    print(f"multicast NatNet {version}: {got}")
    assert got["max_err_mm"] < 0.01                        # float32 metres → mm
    assert any(f"NatNet {version}.0.0, multicast 239.255.42.99:1511" in d
               for d in got["events"]), got["events"]


def test_the_emulator_refuses_multicast_on_the_machines_own_network():
    """Outside a private namespace the emulator refuses to multicast (nothing is sent)."""
    import socket

    cfg = nn_cfg()
    if [n for _, n in socket.if_nameindex()] == ["lo"]:
        pytest.skip("this test process already runs in a namespace with loopback alone")
    with pytest.raises(DeviceError, match="multicast is emulated only inside a private "
                                          "network namespace"):
        start_natnet_lab(cfg, multicast=("239.255.42.99", 1511))
