"""The ``qualisys`` source (Qualisys' ``qtm-rt`` client) against the QTM RT emulator.

Real TCP on 127.0.0.1 between the vendor's client library and the emulator process
(:mod:`treadlab.acquisition.sim.qtm_emulator`), bounded in time; no mocks.
"""
from __future__ import annotations

import copy
import io
import socket

import h5py
import numpy as np
import pytest

from tests.acquisition.test_sources_conformance import check_source, lab_cfg
from tests.conftest import collect_blocks
from treadlab.acquisition.sim.qtm_emulator import (ANALOG_CHANNELS, ANALOG_UNITS, QTMFaults,
                                                  emulated_analog, qualisys_table,
                                                  start_qtm_lab)
from treadlab.acquisition.sim.simulated import RunnerSignal
from treadlab.acquisition.sources.base import SOURCES, sources_from_config
from treadlab.acquisition.sources.forceplate_serial import PlateCalibration
from treadlab.acquisition.sources.qualisys import (QualisysAnalog, QualisysForce,
                                                   QualisysMarkers, QualisysSettings)
from treadlab.config.errors import ConfigError, DeviceError
from treadlab.kernels.contacts import centre_of_pressure

pytestmark = pytest.mark.timeout(120)


def qtm_cfg():
    cfg = lab_cfg("qualisys", "qualisys")
    cfg.qualisys = {"host": "auto"}
    return cfg


@pytest.fixture(scope="module")
def qtm_lab():
    cfg = qtm_cfg()
    with start_qtm_lab(cfg) as lab:
        cfg.qualisys = qualisys_table(cfg, lab.qtm_address)
        yield cfg, lab


@pytest.mark.parametrize("stream", ["force", "markers", "analog"])
def test_qualisys_sources_conform(qtm_lab, stream):
    cfg, lab = qtm_lab
    src = SOURCES["qualisys"].from_config(cfg, lab=lab, stream=stream)
    assert src.kind == stream
    blocks = check_source(src, min_frames=50)
    if stream == "force":
        assert all(b.raw is None for b in blocks)


def test_one_connection_gives_the_wrench_and_markers_of_the_signal(qtm_lab):
    """Force mapped from the plates' frame (force on the plate, moments about the plate's
    surface centre) to the ground reaction in the lab frame about each plate origin; markers
    in the lab frame; both equal the runner the emulator plays, sample for sample."""
    from treadlab.acquisition.sim.emulator_base import runner_params
    from treadlab.acquisition.sim.simulated import RunnerSignal
    from treadlab.acquisition.sources.forceplate_serial import PlateCalibration

    cfg, lab = qtm_lab
    force, markers = sources_from_config(cfg, lab=lab)
    assert isinstance(force, QualisysForce) and isinstance(markers, QualisysMarkers)
    assert force.client is markers.client                 # one QTM connection
    force.open()
    markers.open()
    try:
        stats = lab.device_stats()
        on, mon = stats["on_frame"], stats["on_marker_frame"]
        fb = collect_blocks(force, int(on + 1.5 * force.info.rate_hz), timeout=20)
        mb = collect_blocks(markers, int(mon + 1.5 * markers.info.rate_hz), timeout=20)
    finally:
        markers.close()
        force.close()
    plates = [PlateCalibration.from_table(p) for p in cfg.plates]
    sig = RunnerSignal(runner_params(cfg, None), plates, cfg.markers.labels)
    seq = np.concatenate([b.seq for b in fb])
    w = np.concatenate([b.data for b in fb])
    k = seq >= on
    assert k.sum() > 200
    want = sig.force((seq[k] - on) / force.info.rate_hz)
    assert np.abs(want[:, :, 2]).max() > 500                # the runner is on the belt
    np.testing.assert_allclose(w[k], want, atol=0.05, rtol=1e-4)
    assert w[k][:, :, 2].max() > 500 and w[k][:, :, 2].min() > -20   # Fz > 0 in stance
    mseq = np.concatenate([b.seq for b in mb])
    pos = np.concatenate([b.data for b in mb])
    j = mseq >= mon
    want = sig.markers((mseq[j] - mon) / markers.info.rate_hz)
    np.testing.assert_allclose(pos[j], want, atol=1e-3)
    # QTM's own centre of pressure, mapped to the lab frame, agrees with the one derived from
    # the mapped wrench (moments about the plate origin → the plate surface at moment_origin):
    # a check of the moment/frame mapping, not only of the force
    cop = np.concatenate([b.cop for b in fb])
    assert cop.shape == w.shape[:2] + (3,) and cop.dtype == np.float32
    table = {q["name"]: q for q in cfg.qualisys["plates"]}
    worst = 0.0
    for j, p in enumerate(plates):
        q = np.asarray(table[p.name]["moment_origin"], float)
        mine = centre_of_pressure(w[:, j], p.origin, surface_z=q[2])
        loaded = w[:, j, 2] > 50.0
        assert loaded.sum() > 100
        assert np.all(np.isnan(cop[np.abs(w[:, j, 2]) < 10.0, j]))       # unloaded: NaN
        d = np.abs(cop[loaded, j, :2] - mine[loaded])
        worst = max(worst, float(d.max()))
        np.testing.assert_allclose(cop[loaded, j, 2], q[2], atol=1e-3)   # on the surface
    assert worst < 0.05, f"QTM COP vs COP from the wrench: {worst:.4f} mm"
    print(f"COP agreement (|Fz| > 50 N): max {worst:.5f} mm")
    # device clocks: force number / rate and QTM's frame timestamps
    dt = np.concatenate([b.device_time for b in fb])
    np.testing.assert_allclose(dt, seq / force.info.rate_hz)
    mdt = np.concatenate([b.device_time for b in mb])
    np.testing.assert_allclose(mdt, mseq / markers.info.rate_hz, atol=1e-6)


def _runner(cfg):
    from treadlab.acquisition.sim.emulator_base import runner_params   # the emulator's runner

    return RunnerSignal(runner_params(cfg, None),
                        [PlateCalibration.from_table(p) for p in cfg.plates], cfg.markers.labels)


def test_analog_channels_equal_what_the_emulator_played(qtm_lab):
    """QTM's analog component through qtm-rt's own parser (packet.get_analog): the channels
    named in qualisys.analog, in that order, sample for sample equal to the emulated device
    (float32), with QTM's sample numbers as seq and the device's units."""
    cfg, lab = qtm_lab
    cfg = copy.copy(cfg)
    cfg.qualisys = dict(cfg.qualisys, analog=["EMG_2", "Trigger"])
    force, markers = sources_from_config(cfg, lab=lab)
    (analog,) = force.extra
    assert isinstance(analog, QualisysAnalog) and analog.client is force.client
    analog.open()
    try:
        assert analog.info.labels == ["EMG_2", "Trigger"] and analog.units == ["mV", "V"]
        on = lab.device_stats()["on_analog_sample"]
        blocks = collect_blocks(analog, int(on + 1.5 * analog.info.rate_hz), timeout=20)
    finally:
        analog.close()
    seq = np.concatenate([b.seq for b in blocks])
    got = np.concatenate([b.data for b in blocks])
    assert np.all(np.diff(seq) == 1) and seq[-1] > on + 500
    want = emulated_analog(_runner(cfg), seq, on, analog.info.rate_hz)
    cols = [ANALOG_CHANNELS.index(n) for n in analog.info.labels]
    np.testing.assert_array_equal(got, want[:, cols])             # bit for bit (float32)
    assert got[seq >= on, 1].max() == 5.0                         # the sync pulses
    emg = np.abs(got[seq >= on, 0])
    assert emg.max() > 0.2                                         # stance activity (mV)
    np.testing.assert_allclose(np.concatenate([b.device_time for b in blocks]),
                               seq / analog.info.rate_hz)


def test_an_analog_channel_qtm_does_not_have_is_a_config_error(qtm_lab):
    cfg, lab = qtm_lab
    cfg = copy.copy(cfg)
    cfg.qualisys = dict(cfg.qualisys, analog=["EMG_1", "EMG_9"])
    force, markers = sources_from_config(cfg, lab=lab)
    (analog,) = force.extra
    with pytest.raises(ConfigError, match=r"qualisys\.analog\[1\]: 'EMG_9' is not an analog "
                       r"channel of qtm://.*QTM has Emulated analog: Trigger, EMG_1, EMG_2"):
        analog.open()
    assert not analog.is_open
    bad = dict(cfg.qualisys, analog="some")
    cfg.qualisys = bad
    with pytest.raises(ConfigError, match="qualisys.analog: 'some': expected a list"):
        QualisysSettings.from_config(cfg)
    cfg.qualisys = dict(bad, analog=["EMG_1", "EMG_1"])
    with pytest.raises(ConfigError, match=r"qualisys.analog: duplicate channel 'EMG_1' \(item 1\)"):
        QualisysSettings.from_config(cfg)


def test_missed_frames_and_a_lost_connection_are_counted_in_raw_log(tmp_path):
    """QTM skips real-time frames and goes away for 0.6 s: the capture reconnects, and every
    frame number between the first and last received is either recorded or counted as a drop
    in /raw/log; the reconnection is logged."""
    from treadlab.acquisition.capture.session import capture_session

    cfg = qtm_cfg()
    faults = QTMFaults(skip_every=37, disconnect_at_s=1.5, disconnect_for_s=0.6)
    with start_qtm_lab(cfg, faults=faults) as lab:
        cfg.qualisys = qualisys_table(cfg, lab.qtm_address)   # a "real" QTM host and port
        path = capture_session(cfg, subject="qtmfaults", body_mass_kg=70.0, duration_s=4.0,
                               out_dir=tmp_path, status_stream=io.StringIO())
        stats = lab.device_stats()
    assert stats["frames_skipped"] >= 3 and stats["outages"] == 1
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        log = list(zip(f["/raw/log/source"].asstr()[()], f["/raw/log/kind"].asstr()[()],
                       f["/raw/log/detail"].asstr()[()]))
        fseq = f["/raw/force/seq"][()]
        mseq = f["/raw/markers/frame"][()]
        aseq = f["/raw/analog/seq"][()]
        assert f["/raw/analog/data"].shape == (len(aseq), len(ANALOG_CHANNELS))
        assert list(f["/raw/analog/unit"].asstr()[()]) == list(ANALOG_UNITS)
    for name, seq in (("force", fseq), ("markers", mseq), ("analog", aseq)):
        # drops logged while recording (what was read before it, in the tare, is not kept)
        drops = [d for s, k, d in log if s == name and k == "drop"
                 and int(d.split("missing before ")[1].split()[0]) > seq[0]]
        n_drop = sum(int(d.split()[0]) for d in drops)
        assert np.all(np.diff(seq) > 0)
        assert len(seq) + n_drop == seq[-1] - seq[0] + 1, name       # nothing lost silently
        assert len(drops) >= 3, name
        assert any(s == name and k == "disconnect" for s, k, _ in log)
        assert any(s == name and k == "reconnect" for s, k, _ in log)
        counters = [d for s, k, d in log if s == name and k == "counters"][-1]
        assert "reconnects 1" in counters


def test_a_qtm_that_is_not_there_is_a_one_line_device_error():
    cfg = qtm_cfg()
    with socket.socket() as s:                              # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg.qualisys = qualisys_table(cfg, ("127.0.0.1", port))
    cfg.qualisys["timeout_s"] = 1.0
    force, markers = sources_from_config(cfg)
    with pytest.raises(DeviceError, match=f"qtm://127.0.0.1:{port}: cannot connect"):
        force.open()
    assert not force.is_open


def test_qualisys_table_errors_name_the_key():
    cfg = qtm_cfg()
    cfg.qualisys = {"host": "qtm-pc", "plates": [{"qtm_id": 1, "name": "left"}]}
    with pytest.raises(ConfigError, match="qualisys.plates: no QTM plate mapped to right"):
        QualisysSettings.from_config(cfg)
    cfg.qualisys = {"host": "qtm-pc", "hots": 1}
    with pytest.raises(ConfigError, match="qualisys.hots: unknown key"):
        QualisysSettings.from_config(cfg)
    cfg.qualisys = {"host": "qtm-pc", "version": "1.7", "plates": []}
    with pytest.raises(ConfigError, match="qualisys.version"):
        QualisysSettings.from_config(cfg)
    cfg.qualisys = {"host": "auto", "plates": [{"qtm_id": 1, "name": "left", "force": "up"},
                                               {"qtm_id": 2, "name": "right"}]}
    with pytest.raises(ConfigError, match=r"qualisys.plates\[0\].force"):
        QualisysSettings.from_config(cfg)
    cfg.qualisys = {"host": "auto", "plates": [{"qtm_id": 1, "name": "left"},
                                               {"qtm_id": 2, "name": "right"}]}
    with pytest.raises(ConfigError, match="qualisys.host"):
        sources_from_config(cfg)                            # "auto" without the emulator


def test_a_lab_toml_with_a_qualisys_table_loads(tmp_path):
    from treadlab.config import load_lab

    toml = """
[lab]
name = "QTM lab"
belt = "split"
[[plates]]
name = "left"
origin = [0.0, 250.0, 0.0]
corners = [[900.0, 500.0, 0.0], [-900.0, 500.0, 0.0], [-900.0, 0.0, 0.0], [900.0, 0.0, 0.0]]
[[plates]]
name = "right"
origin = [0.0, -250.0, 0.0]
corners = [[900.0, 0.0, 0.0], [-900.0, 0.0, 0.0], [-900.0, -500.0, 0.0], [900.0, -500.0, 0.0]]
[forceplate]
driver = "qualisys"
rate_hz = 1000.0
[markers]
driver = "qualisys"
rate_hz = 200.0
labels = ["LASI", "RASI"]
[qualisys]
host = "192.0.2.10"
[[qualisys.plates]]
qtm_id = 1
name = "left"
rotation = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]
moment_origin = [0.0, 250.0, 0.0]
force = "on_plate"
[[qualisys.plates]]
qtm_id = 2
name = "right"
rotation = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]
moment_origin = [0.0, -250.0, 0.0]
"""
    p = tmp_path / "lab.toml"
    p.write_text(toml)
    cfg = load_lab(p)
    s = QualisysSettings.from_config(cfg)
    assert s.host == "192.0.2.10" and s.port == 22223 and len(s.plates) == 2
    p.write_text(toml.replace('qtm_id = 2\nname = "right"', 'qtm_id = 2\nname = "rihgt"'))
    with pytest.raises(ConfigError, match=r"qualisys.plates\[1\].name"):
        QualisysSettings.from_config(load_lab(p))      # what the capture does before opening


def test_cli_capture_through_the_qtm_emulator_exits_0(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    code = main(["capture", "--protocol", "qtm", "--subject", "Q", "--duration", "3",
                 "--out", str(tmp_path), "--no-process"])
    assert code == 0
    path = capsys.readouterr().out.strip().splitlines()[0]
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        kinds = f["/raw/log/kind"].asstr()[()]
        assert "qtm" in kinds and "drop" not in kinds
        assert f["/raw/force/wrench"].shape[0] > 1000
        assert list(f["/raw/analog/channel"].asstr()[()]) == list(ANALOG_CHANNELS)
        cop = f["/raw/force/cop_device"]
        assert cop.shape == f["/raw/force/wrench"].shape[:2] + (3,) and cop.attrs["units"] == "mm"
        assert abs(f["/raw/analog/data"].shape[0] - f["/raw/force/wrench"].shape[0]) < 50


def test_cli_simulate_lab_protocol_qtm_prints_the_qualisys_table(capsys):
    from treadlab.pipeline.cli import main

    assert main(["simulate", "lab", "--protocol", "qtm", "--duration", "1"]) == 0
    out = capsys.readouterr().out
    assert "QTM real-time server" in out and "[[qualisys.plates]]" in out
    assert "[treadmill]" in out and "Bertec remote control" in out


def test_analog_parameters_of_both_protocol_layouts():
    """QTM's analog parameters as Qualisys' C++ SDK reads them: protocol >= 1.11 names each
    channel (Channel/Label, Channel/Unit); older versions list Label elements and one Unit."""
    from treadlab.acquisition.sources.qualisys import parse_parameters

    new = ("<QTM_Parameters_Ver_1.25><Analog><Device><Device_ID>2</Device_ID>"
           "<Device_Name>USB-2533</Device_Name><Channels>2</Channels><Frequency>2000"
           "</Frequency><Range><Min>-10</Min><Max>10</Max></Range><Channel><Label>EMG_1"
           "</Label><Unit>mV</Unit></Channel><Channel><Label>Sync</Label><Unit>V</Unit>"
           "</Channel></Device></Analog></QTM_Parameters_Ver_1.25>")
    old = ("<QTM_Parameters_Ver_1.10><Analog><Unit>V</Unit><Device><Device_ID>1</Device_ID>"
           "<Device_Name>Board</Device_Name><Channels>2</Channels><Frequency>1000</Frequency>"
           "<Range><Min>-5</Min><Max>5</Max></Range><Label>A1</Label><Label>A2</Label>"
           "</Device></Analog></QTM_Parameters_Ver_1.10>")
    (d,) = parse_parameters(new)["analog"]
    assert d == {"id": 2, "name": "USB-2533", "rate_hz": 2000.0, "labels": ["EMG_1", "Sync"],
                 "units": ["mV", "V"]}
    (d,) = parse_parameters(old)["analog"]
    assert d["labels"] == ["A1", "A2"] and d["units"] == ["V", "V"] and d["rate_hz"] == 1000.0
