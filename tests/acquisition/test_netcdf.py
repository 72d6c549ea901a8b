"""netCDF-C (Debian's netcdf-bin ``ncdump``) reads every group of every archive treadlab
writes: simulated and imported sessions, a live recording, the derived file on its own and
through the session's external link, an HDF5 export and a migrated format-1 file. Skips when
``ncdump`` is absent (CI installs netcdf-bin)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.archive import derived_path, migrate_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.graph import process_session

NCDUMP = shutil.which("ncdump")
pytestmark = pytest.mark.skipif(NCDUMP is None, reason="ncdump (netcdf-bin) not installed")


def ncdump_all(path: Path) -> str:
    """The full ``ncdump`` of ``path`` (every group, every value); fails on any error."""
    out = subprocess.run([NCDUMP, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip(), f"{path}: {out.stderr.strip()}"
    assert "phony_dim" not in out.stdout, f"{path}: a dataset without named dimensions"
    return out.stdout


def groups(text: str) -> list[str]:
    return [line.split("group:")[1].strip(" {") for line in text.splitlines()
            if "group:" in line]


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nc") / "sim.h5"
    write_session(path, simulate_session(RunnerParams(duration_s=4.0, seed=3)))
    process_session(path)
    return path


def test_session_and_its_derived_file(processed):
    text = ncdump_all(processed)
    g = groups(text)
    for name in ("derived", "angles", "contacts", "scores", "raw", "force", "markers", "truth"):
        assert name in g
    assert "double origin(plate, xyz)" in text and "double corners(plate, corner, xyz)" in text
    assert "float values(time, angle)" in text  # derived data through the external link
    alone = ncdump_all(derived_path(processed))
    assert {"derived", "angles", "contacts", "scores"} <= set(groups(alone))
    assert ':format = "treadlab.derived"' in alone


def test_unprocessed_session_links_an_empty_derived_file(tmp_path):
    from treadlab.acquisition.archive import read_derived, validate_session

    path = tmp_path / "raw.h5"
    write_session(path, simulate_session(RunnerParams(duration_s=2.0, seed=4)))
    text = ncdump_all(path)  # netCDF-C refuses a dangling link: the placeholder is there
    assert "derived" in groups(text) and 'status = "not processed"' in text
    assert read_derived(path) is None and validate_session(path) == []


def test_export(processed, tmp_path):
    from treadlab.pipeline.export import export_sessions

    export_sessions([processed], tmp_path / "out", fmt="hdf5", keep_identity=True)
    (out,) = list((tmp_path / "out").glob("*.h5"))
    assert {"derived", "contacts", "raw", "force"} <= set(groups(ncdump_all(out)))


def test_live_recording(tmp_path):
    from treadlab.acquisition.capture.recorder import Recorder
    from treadlab.acquisition.sources.base import Block

    path = tmp_path / "live.h5"
    rec = Recorder(path, {"subject_id": "S", "lab": "t", "belt_speed_m_s": 3.0},
                   plates=["left", "right"], origin=np.zeros((2, 3)),
                   corners=np.zeros((2, 4, 3)), force_rate_hz=1000.0, labels=["LASI", "RASI"],
                   marker_rate_hz=100.0, n_channels=12, counts_dtype=np.int16,
                   calibration={"volts_per_count": 10 / 32768, "zero": np.zeros(12),
                                "channels": np.arange(12).reshape(2, 6),
                                "matrix": np.tile(np.eye(6), (2, 1, 1))},
                   t0_host=0.0, analog={"channels": ["Trigger", "EMG_1"],
                                        "units": ["V", "mV"], "rate_hz": 1000.0,
                                        "device": "test"},
                   belts=["left", "right"]).start()
    for k in range(10):
        seq = np.arange(k * 100, (k + 1) * 100)
        w = np.zeros((100, 2, 6), np.float32)
        w[:, :, 2] = 400.0
        rec.put(Block("force", seq / 1000.0, np.full(100, (seq[-1] + 1) / 1000.0), w,
                      raw=np.zeros((100, 12), np.int16), seq=seq), seq / 1000.0)
        mseq = np.arange(k * 10, (k + 1) * 10)
        rec.put(Block("markers", mseq / 100.0, np.full(10, (mseq[-1] + 1) / 100.0),
                      np.ones((10, 2, 3), np.float32), seq=mseq), mseq / 100.0)
        rec.put(Block("analog", seq / 1000.0, np.full(100, (seq[-1] + 1) / 1000.0),
                      np.ones((100, 2), np.float32), seq=seq), seq / 1000.0)
        bseq = np.arange(k * 10, (k + 1) * 10)
        rec.put(Block("belt", bseq / 100.0, bseq / 100.0, np.full((10, 2), 3.0, np.float32),
                      seq=bseq), bseq / 100.0)
    rec.close()
    with h5py.File(path, "r") as f:
        assert f.get("derived", getlink=True).filename == "live.derived.h5"
    text = ncdump_all(path)
    assert {"raw", "force", "markers", "log", "analog", "belt"} <= set(groups(text))
    assert "float speed(time, belt)" in text
    assert "float data(time, channel)" in text and "string unit(channel)" in text
    assert "double matrix(plate, component, input)" in text and "zero(channel)" in text


def test_migrated_format_1_file(processed, tmp_path):
    from tests.acquisition.test_migrate import make_v1

    v1 = make_v1(processed, tmp_path / "old.h5")
    migrate_session(v1)
    assert {"derived", "contacts"} <= set(groups(ncdump_all(v1)))
    ncdump_all(derived_path(v1))


def test_real_imported_recording(tmp_path):
    from treadlab.acquisition.io.c3d_import import import_c3d

    h5 = import_c3d(shared_file("running", "RBDS001runT35.c3d"), tmp_path / "real.h5")
    process_session(h5)
    text = ncdump_all(h5)
    assert {"derived", "reference", "raw"} <= set(groups(text))
    ncdump_all(derived_path(h5))
