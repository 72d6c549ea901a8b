"""Issue criterion: replaying ``RBDS001runT35.c3d`` through the QTM emulator and capturing it
with the ``qualisys`` source (Qualisys' ``qtm-rt`` over TCP on loopback) gives the same
contacts as ``treadlab import`` + ``treadlab process`` of the file — the check and tolerances
of tests/acquisition/test_replay_capture.py (serial/UDP replay), applied to this capture.

The emulator sends the recorded wrench as QTM does: per plate, force on the plate, moment
about the plate's surface centre and centre of pressure in the plate's own frame (Z down),
force chunks of 2 samples (300 Hz) per camera frame (150 Hz); the source maps it back to the
ground reaction in the lab frame about the plate origin.
"""
from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from tests.acquisition import test_replay_capture as serial_udp
from tests.conftest import shared_file

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """(captured through QTM, imported), both processed."""
    from treadlab.acquisition.capture.session import run_capture
    from treadlab.acquisition.io.c3d_import import import_c3d
    from treadlab.pipeline.graph import process_session

    c3d = shared_file("running", "RBDS001runT35.c3d")
    out = tmp_path_factory.mktemp("qtm_replay")
    captured = run_capture(None, subject="RBDS001qtm", duration_s=60.0, out_dir=out,
                           status_stream=io.StringIO(), replay=c3d, protocol="qtm")
    imported = import_c3d(c3d, out / "imported.h5")
    return captured, imported, process_session(captured), process_session(imported)


def test_qtm_capture_of_a_replay_is_complete_with_nothing_lost(sessions):
    serial_udp.test_capture_of_a_replay_is_complete_and_stops_at_the_end(sessions)
    captured = sessions[0]
    with h5py.File(captured, "r") as f:
        log = list(zip(f["/raw/log/kind"].asstr()[()], f["/raw/log/detail"].asstr()[()]))
        assert "counts" not in f["/raw/force"]                # QTM sends forces, not counts
        assert np.all(np.diff(f["/raw/markers/frame"][()]) == 1)
    assert any(k == "qtm" and "qtm://127.0.0.1" in d for k, d in log)
    assert not any(k in ("drop", "disconnect", "error", "bad_packet") for k, _ in log)


def test_qtm_replayed_capture_gives_the_contacts_of_the_imported_file(sessions):
    serial_udp.test_replayed_capture_gives_the_contacts_of_the_imported_file(sessions)


def test_qtm_centre_of_pressure_agrees_with_the_wrench_of_the_recording(sessions):
    """QTM's own centre of pressure (``/raw/force/cop_device``, mapped from the plate frame)
    against the one derived from the recorded wrench, on the plate surface the emulated QTM
    takes its moments about, wherever Fz > 50 N."""
    from treadlab.kernels.contacts import centre_of_pressure

    with h5py.File(sessions[0], "r") as f:
        w = f["/raw/force/wrench"][()]
        cop = f["/raw/force/cop_device"][()]
        origin = f["/raw/force/origin"][()]
        corners = f["/raw/force/corners"][()]
    worst = 0.0
    for j in range(w.shape[1]):
        surface = corners[j].mean(axis=0) if np.abs(corners[j]).sum() > 0 else \
            origin[j] + [0.0, 0.0, 20.0]
        mine = centre_of_pressure(w[:, j], origin[j], surface_z=surface[2])
        loaded = w[:, j, 2] > 50.0
        assert loaded.sum() > 1000
        worst = max(worst, float(np.abs(cop[loaded, j, :2] - mine[loaded]).max()))
    print(f"COP agreement on the replay (Fz > 50 N): max {worst:.5f} mm")
    assert worst < 0.05, f"QTM COP vs COP from the wrench: {worst:.4f} mm"
