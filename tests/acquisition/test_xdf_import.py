"""``treadlab import FILE.xdf``: LabRecorder files read with pyxdf's synchronisation.

XDF files are written by :mod:`treadlab.acquisition.sim.xdf_writer` (from the XDF
specification) and read back with ``pyxdf``; one is made from the real recording
RBDS001runT35.c3d (markers and force on two device clocks 1555.75 s apart, with ±0.5 ms
timestamp jitter and ClockOffset chunks), whose import must give the contacts of the C3D import.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.io.xdf_import import import_xdf, read_xdf
from treadlab.acquisition.sim.xdf_writer import XDFStream, c3d_to_xdf, write_xdf
from treadlab.config.errors import InputError

pytestmark = pytest.mark.timeout(180)


def _streams(n=600, rate=100.0, offset=50.0):
    t = np.arange(n) / rate
    mocap = XDFStream("mocap", "Mocap", "float32", rate, t + 1000.0,
                      np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (n, 1)) * 0.001,
                      labels=["LASI_X", "LASI_Y", "LASI_Z"], units=["meters"] * 3,
                      clock_offsets=[(1000.0 + offset, offset), (1003.0 + offset, offset)])
    fz = 700.0 * (np.sin(2 * np.pi * 1.4 * t) > 0)
    w = np.zeros((n, 6), np.float32)
    w[:, 2] = fz
    force = XDFStream("plates", "Force", "float32", rate, t + 1000.0 + offset, w,
                      labels=[f"belt_{c}" for c in ("Fx", "Fy", "Fz", "Mx", "My", "Mz")],
                      units=["newtons"] * 3 + ["newton_meters"] * 3,
                      clock_offsets=[(1000.0 + offset, 0.0), (1003.0 + offset, 0.0)])
    eeg = XDFStream("eeg", "EEG", "int16", 250.0, np.arange(10) / 250.0 + 1000.0,
                    np.zeros((10, 2), np.int16), labels=["C3", "C4"])
    return mocap, force, eeg


def test_written_xdf_reads_back_synchronised_with_units_and_log(tmp_path):
    from treadlab.acquisition.sources.forceplate_serial import PlateCalibration

    mocap, force, eeg = _streams()
    p = write_xdf(tmp_path / "a.xdf", [mocap, force, eeg])
    plates = [PlateCalibration("belt", list(range(6)), np.eye(6), origin=[1.0, 2.0, -20.0])]
    s = read_xdf(p, plates=plates)
    # the mocap clock is 50 s behind the recorder's: pyxdf moves it onto the force clock
    np.testing.assert_allclose(s.markers.time, s.force.time, atol=1e-6)
    assert np.allclose(s.markers.positions[:, 0], [1.0, 2.0, 3.0], rtol=1e-6)   # m → mm
    assert s.markers.labels[0] == "LASI" and s.markers.rate_hz == 100.0
    assert s.force.plates == ["belt"] and s.force.wrench[:, 0, 2].max() == 700.0
    np.testing.assert_allclose(s.force.origin[0], [1.0, 2.0, -20.0])   # from [[plates]]
    kinds = [(src, k) for _, src, k, _ in s.log]
    assert ("import", "not_imported") in kinds and ("force", "plates") in kinds
    with pytest.raises(InputError, match="origin unknown"):
        read_xdf(p)                                      # no geometry in the file or config


def test_bad_xdf_files_are_one_line_input_errors(tmp_path):
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"NOPE")
    with pytest.raises(InputError, match="bad.xdf: not a readable XDF file"):
        read_xdf(bad)
    mocap, force, eeg = _streams()
    p = write_xdf(tmp_path / "nomocap.xdf", [force, eeg])
    with pytest.raises(InputError, match=r"Mocap stream: no stream of type mocap"):
        read_xdf(p)
    force.labels[2] = "belt_Fq"
    p = write_xdf(tmp_path / "badlabel.xdf", [mocap, force])
    with pytest.raises(InputError, match="belt_Fq"):
        read_xdf(p)


@pytest.fixture(scope="module")
def rbds(tmp_path_factory):
    from treadlab.acquisition.io.c3d_import import import_c3d
    from treadlab.pipeline.graph import process_session

    c3d = shared_file("running", "RBDS001runT35.c3d")
    out = tmp_path_factory.mktemp("xdf")
    xdf = c3d_to_xdf(c3d, out / "RBDS001runT35.xdf")
    from_xdf = import_xdf(xdf, out / "from_xdf.h5", subject_id="RBDS001")
    from_c3d = import_c3d(c3d, out / "from_c3d.h5")
    process_session(from_xdf)
    process_session(from_c3d)
    return from_xdf, from_c3d


def test_xdf_of_a_real_recording_gives_the_contacts_of_its_c3d(rbds):
    from_xdf, from_c3d = rbds
    with h5py.File(from_xdf, "r") as a, h5py.File(from_c3d, "r") as b:
        assert a.attrs["status"] == "complete" and a.attrs["source_format"] == "xdf"
        ta, tb = a["/raw/markers/time"][()], b["/raw/markers/time"][()]
        assert len(ta) == len(tb) and np.abs(ta - tb).max() < 1e-4    # jitter removed
        ca, cb = a["/derived/contacts"], b["/derived/contacts"]
        va, vb = ca["valid"][()].astype(bool), cb["valid"][()].astype(bool)
        assert va.sum() == vb.sum() > 60
        np.testing.assert_allclose(ca["t_strike"][()][va], cb["t_strike"][()][vb], atol=1e-3)
        np.testing.assert_allclose(ca["t_off"][()][va], cb["t_off"][()][vb], atol=1e-3)
        np.testing.assert_array_equal(ca["side"][()][va], cb["side"][()][vb])


def test_cli_import_xdf_exits_0(rbds, tmp_path, capsys):
    from treadlab.pipeline.cli import main

    xdf = rbds[0].parent / "RBDS001runT35.xdf"
    out = tmp_path / "cli.h5"
    assert main(["import", str(xdf), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("cli.h5")
    with h5py.File(out, "r") as f:
        assert f["/raw/force/wrench"].shape[0] == 9000
