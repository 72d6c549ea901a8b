"""Issue criterion: replaying ``RBDS001runT35.c3d`` through serial + UDP and capturing it gives
the same contacts as ``treadlab import`` + ``treadlab process`` of the file.

One capture of the whole 30 s recording goes through the real capture path (the simulated
lab's pty treadmill and loopback UDP mocap, the serial and UDP readers, the clock fit, the
crash-safe recorder); the captured session and the imported file are processed by the same
pipeline (``process_session``) and their ``/derived/contacts`` compared.

Tolerances
----------
- Clock alignment: the two sessions have different clocks (import: 0 s at the file's first
  sample; capture: the host-mapped session clock). Recorded sample ``k`` is force frame
  ``replay_force_frame0 + k`` (root attribute written by the capture), so the offset is the
  captured ``/raw/force/time`` at that frame. What remains is the capture's own clock fit
  (a Theil–Sen line through per-window minimum delays, docs/design.md §4): its drift error × the time
  since the first sample. :data:`CLOCK_TOL_S` = 2 ms bounds it (≈ 60 ppm over 30 s; the fit on
  a loopback link is far better, see the numbers printed by the test).
- One force sample (1/300 s = 3.3 ms): the replayed counts equal the recorded wrench to one
  24-bit count, but the low-pass filter and flight baseline see a different record around the
  edges (2 s of empty belt before, 0.5 s after), so a threshold crossing may move by a sample.
- Contact count ±1, only at the very edges: the file starts and ends mid-stride. The import sees
  a truncated first/last contact that the pipeline drops; the capture sees the belt go from
  empty to loaded at the first sample (and back at the last), so a truncated contact can
  become a complete, if short, one there — or the other way round. Measured: the file starts
  in a stance; the capture finds its strike at −8 ms (the zero-lag low-pass spreads the
  empty → loaded step backwards) and keeps it, the import drops it: 86 vs 85 valid contacts.
"""
from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file

pytestmark = pytest.mark.timeout(180)

FORCE_RATE_HZ = 300.0            # RBDS001runT35.c3d analog rate
CLOCK_TOL_S = 0.002              # clock-alignment tolerance (s), see the module docstring
TIME_TOL_S = 1.0 / FORCE_RATE_HZ + CLOCK_TOL_S
CONTACT_TIME_TOL_S = 0.004       # contact time (off − strike) differs by ≤ a sample + rounding
EDGE_S = 0.6                     # "very edges": within this of the first / last recorded sample


def _contacts(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        g = f["/derived/contacts"]
        return {k: np.asarray(g[k][()]) for k in ("t_strike", "t_off", "contact_time", "side",
                                                  "valid")}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """(captured archive, imported archive), both processed, plus the capture's attributes."""
    from treadlab.acquisition.io.c3d_import import import_c3d
    from treadlab.acquisition.capture.session import run_capture
    from treadlab.pipeline.graph import process_session

    c3d = shared_file("running", "RBDS001runT35.c3d")
    out = tmp_path_factory.mktemp("replay_capture")
    status = io.StringIO()
    # the whole recording: the capture stops by itself 0.5 s after the last sample; 60 s is a
    # bound only
    captured = run_capture(None, subject="RBDS001replay", duration_s=60.0, out_dir=out,
                           status_stream=status, replay=c3d)
    imported = import_c3d(c3d, out / "imported.h5")
    s_cap = process_session(captured)
    s_imp = process_session(imported)
    return captured, imported, s_cap, s_imp


def test_capture_of_a_replay_is_complete_and_stops_at_the_end(sessions):
    captured, _, _, _ = sessions
    with h5py.File(captured, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["belt"] == "single"
        frame0 = int(f.attrs["replay_force_frame0"])
        seq = f["/raw/force/seq"][()]
        wrench = f["/raw/force/wrench"][()]
        log = list(zip(f["/raw/log/kind"].asstr()[()], f["/raw/log/detail"].asstr()[()]))
    # every recorded sample arrived once, in order, then the 0.5 s tail: no drops, no loop
    assert np.all(np.diff(seq) == 1)
    k = seq - frame0
    assert k[0] < 0 and k[-1] >= 9000 - 1
    assert k[-1] < 9000 + int(1.0 * FORCE_RATE_HZ)          # stopped, not looped
    assert np.abs(wrench[k >= 9000 + 1, 0, 2]).max() < 1.0   # empty belt after the end
    assert any(kind == "stop" and "end of the replayed recording" in d for kind, d in log)
    assert any(kind == "replay" for kind, _ in log)


def test_replayed_capture_gives_the_contacts_of_the_imported_file(sessions):
    captured, imported, s_cap, s_imp = sessions
    with h5py.File(captured, "r") as f:
        frame0 = int(f.attrs["replay_force_frame0"])
        t_cap0 = float(np.interp(frame0, f["/raw/force/seq"][()], f["/raw/force/time"][()]))
        drift = float(f["/raw/force"].attrs.get("clock_drift", np.nan))
    with h5py.File(imported, "r") as f:
        t_imp = f["/raw/force/time"][()]
    offset = t_cap0 - float(t_imp[0])
    end = float(t_imp[-1])
    cap, imp = _contacts(captured), _contacts(imported)
    cv = {k: v[cap["valid"].astype(bool)] for k, v in cap.items()}
    iv = {k: v[imp["valid"].astype(bool)] for k, v in imp.items()}
    cv["t_strike"] = cv["t_strike"] - offset
    cv["t_off"] = cv["t_off"] - offset
    n_c, n_i = len(cv["t_strike"]), len(iv["t_strike"])
    print(f"\nvalid contacts: capture {n_c} (of {s_cap['contacts']}), import {n_i} "
          f"(of {s_imp['contacts']}); clock offset {offset:.4f} s, drift {drift:.3g}")
    assert n_i > 60
    assert abs(n_c - n_i) <= 1

    # pair every contact with the nearest strike of the other session
    j = np.abs(cv["t_strike"][:, None] - iv["t_strike"][None, :]).argmin(axis=1)
    d_strike = cv["t_strike"] - iv["t_strike"][j]
    paired = np.abs(d_strike) < 0.1
    unpaired_c = cv["t_strike"][~paired]
    unpaired_i = np.setdiff1d(np.arange(n_i), j[paired])
    edge = lambda t: (t < EDGE_S) | (t > end - EDGE_S)  # noqa: E731
    print(f"edge contacts only in the capture: strikes at {np.round(unpaired_c, 3)} s; only in "
          f"the import: {np.round(iv['t_strike'][unpaired_i], 3)} s (recording 0–{end:.3f} s)")
    assert edge(unpaired_c).all(), unpaired_c
    assert edge(iv["t_strike"][unpaired_i]).all(), iv["t_strike"][unpaired_i]
    assert len(unpaired_c) + len(unpaired_i) <= 1
    assert len(np.unique(j[paired])) == paired.sum()                # one-to-one

    jj = j[paired]
    d_strike = d_strike[paired]
    d_off = cv["t_off"][paired] - iv["t_off"][jj]
    d_ct = cv["contact_time"][paired] - iv["contact_time"][jj]
    print(f"paired {paired.sum()}: |Δ strike| max {np.abs(d_strike).max() * 1e3:.2f} ms, "
          f"|Δ off| max {np.abs(d_off).max() * 1e3:.2f} ms, |Δ contact time| max "
          f"{np.abs(d_ct).max() * 1e3:.2f} ms (tolerance {TIME_TOL_S * 1e3:.1f} ms / "
          f"{CONTACT_TIME_TOL_S * 1e3:.1f} ms)")
    assert np.array_equal(cv["side"][paired], iv["side"][jj])
    assert np.abs(d_strike).max() <= TIME_TOL_S
    assert np.abs(d_off).max() <= TIME_TOL_S
    assert np.abs(d_ct).max() <= CONTACT_TIME_TOL_S


def test_cli_capture_of_a_replay_exits_0(tmp_path, capsys):
    from treadlab.pipeline.cli import main

    c3d = shared_file("running", "RBDS001runT35.c3d")
    code = main(["capture", "--replay", str(c3d), "--subject", "X", "--duration", "5",
                 "--out", str(tmp_path), "--no-process"])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed and printed[0].endswith(".h5")
    with h5py.File(printed[0], "r") as f:
        assert f.attrs["status"] == "complete" and f.attrs["lab"].startswith("C3D replay")
