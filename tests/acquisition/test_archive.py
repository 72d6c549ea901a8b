"""The treadlab.session v1 archive: writer, reader, validation, inspection, atomic derived."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import uuid

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import (
    CHUNK_SECONDS, LIBVER, ForceData, MarkerData, Session, create_raw_layout, format_inspection,
    inspect_session, read_derived, read_session, validate_session, write_derived, write_session,
    derived_path, open_xarray)
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.config.errors import InputError

LABELS = ["LASI", "RASI", "LPSI", "RPSI", "LHEE", "RHEE"]
CAUSES = ["pelvic_drop", "upright_trunk", "overstride", "limited_hip_extension"]
CONTACT_FIELDS = ["side", "t_strike", "t_off", "contact_time", "flight_time", "peak_vgrf",
                  "loading_rate", "peak_braking", "braking_impulse", "propulsive_impulse",
                  "pelvic_drop", "trunk_lean", "overstride", "shank_angle_ic",
                  "peak_hip_extension", "valid"]


def make_session(seconds=2.0, counts=True) -> Session:
    rng = np.random.default_rng(1)
    n, m = int(1000 * seconds), int(200 * seconds)
    pos = rng.normal(0, 100, size=(m, len(LABELS), 3)).astype(np.float32)
    pos[50:70, 1] = np.nan  # RASI occluded for 20 of m frames
    force = ForceData(
        time=np.arange(n) / 1000.0, wrench=rng.normal(0, 50, size=(n, 2, 6)).astype(np.float32),
        rate_hz=1000.0, plates=["left", "right"],
        origin=np.array([[0.0, 250, 0], [0, -250, 0]]),
        corners=rng.normal(size=(2, 4, 3)) * 500,
        counts=rng.integers(-30000, 30000, size=(n, 12)).astype(np.int16) if counts else None,
        calibration={"volts_per_count": 10 / 32768, "zero": np.arange(12.0),
                     "channels": np.arange(12).reshape(2, 6),
                     "matrix": np.tile(np.eye(6) * 500, (2, 1, 1))} if counts else None,
        device_time=np.arange(n) / 1000.0 + 12.5 if counts else None)
    markers = MarkerData(time=np.arange(m) / 200.0 + 0.001, positions=pos, labels=list(LABELS),
                         rate_hz=200.0, device_time=np.arange(m) / 200.0 if counts else None)
    return Session(
        attrs={"subject_id": "S01", "body_mass_kg": 71.5, "lab": "simulated lab",
               "belt_speed_m_s": 3.5},
        force=force, markers=markers,
        log=[(0.25, "force", "drop", "3 frames (seq 250..252)"),
             (1.0, "markers", "reconnect", "socket reopened"),
             (1.5, "force", "drop", "1 frame")],
        subject={"leg_length_left_mm": 910.0, "inter_asis_mm": 245.0},
        truth={"params": {"speed_m_s": 3.5, "belt": "split", "seed": 7},
               "steps": {"t_strike": np.arange(6) * 0.35, "side": np.array([0, 1] * 3)}},
        reference={"events": {"time": np.array([0.1, 0.3]),
                              "side": np.array(["left", "right"], dtype=object),
                              "kind": np.array(["strike", "off"], dtype=object),
                              "source": np.array(["Vicon", "Vicon"], dtype=object)},
                   "points": {"LPelvisAngles": rng.normal(size=(m, 3)).astype(np.float32)}})


def make_derived(m=400) -> dict:
    s = 6
    contacts = {k: np.linspace(0, 1, s) for k in CONTACT_FIELDS}
    contacts["side"] = np.array([0, 1] * 3)
    contacts["valid"] = np.array([True, True, False, True, True, True])
    names = ["pelvis_tilt", "pelvis_obliquity", "trunk_lean"]
    values = np.zeros((m, 3), np.float32)
    values[:, 2] = np.nan
    return {"contacts": contacts,
            "angles": {"time": np.arange(m) / 200.0, "values": values, "names": names,
                       "reasons": {"trunk_lean": "C7, T10, CLAV, STRN absent"}},
            "scores": {"cause": np.array(CAUSES, dtype=object),
                       "score": np.array([10.0, 0, 55, 80]),
                       "value": np.array([4.2, np.nan, 120.0, 8.0]),
                       "value_left": np.array([4.0, np.nan, 118, 7.5]),
                       "value_right": np.array([4.4, np.nan, 122, 8.5]),
                       "unit": np.array(["deg", "deg", "mm", "deg"], dtype=object),
                       "normal_low": np.array([2.0, 5, 50, 10]),
                       "normal_high": np.array([6.0, 15, 100, 20]),
                       "n_steps": np.array([3, 0, 3, 3])}}


@pytest.fixture
def session_file(tmp_path):
    return write_session(tmp_path / "s.h5", make_session())


def test_round_trip_equal(tmp_path):
    s = make_session()
    path = write_session(tmp_path / "a" / "s.h5", s)
    assert validate_session(path) == []
    r = read_session(path)
    assert r.attrs["format"] == "treadlab.session" and r.attrs["format_version"] == 2
    assert r.attrs["status"] == "complete" and r.attrs["software"].startswith("treadlab ")
    uuid.UUID(r.attrs["session_id"])
    assert {k: r.attrs[k] for k in s.attrs} == s.attrs
    assert "format" not in s.attrs  # the caller's dict is not modified
    for name in ("time", "wrench", "origin", "corners", "counts", "device_time"):
        np.testing.assert_array_equal(getattr(r.force, name), getattr(s.force, name))
    assert r.force.wrench.dtype == np.float32 and r.force.counts.dtype == np.int16
    assert r.force.plates == s.force.plates and r.force.rate_hz == 1000.0
    for key, value in s.force.calibration.items():
        np.testing.assert_array_equal(r.force.calibration[key], value)
    np.testing.assert_array_equal(r.markers.positions, s.markers.positions)  # NaN == NaN
    assert np.isnan(r.markers.positions[50:70, 1]).all()
    np.testing.assert_array_equal(r.markers.time, s.markers.time)
    np.testing.assert_array_equal(r.markers.device_time, s.markers.device_time)
    assert r.markers.labels == LABELS
    assert r.log == s.log
    assert r.subject == s.subject
    assert r.truth["params"] == s.truth["params"]
    for key, value in s.truth["steps"].items():
        np.testing.assert_array_equal(r.truth["steps"][key], value)
    for key, value in s.reference["events"].items():
        np.testing.assert_array_equal(r.reference["events"][key], value)
    np.testing.assert_array_equal(r.reference["points"]["LPelvisAngles"],
                                  s.reference["points"]["LPelvisAngles"])
    assert r.derived is None and read_derived(path) is None


def test_layout_units_chunks_filters(session_file):
    with h5py.File(session_file, "r") as f:

        def check(name, obj):
            if isinstance(obj, h5py.Dataset):
                assert "units" in obj.attrs, name
                if obj.shape:
                    assert obj.compression == "gzip" and obj.compression_opts <= 4, name
                    assert set(obj._filters) <= {"gzip", "shuffle"}, name
        f.visititems(check)
        w = f["raw/force/wrench"]
        assert w.maxshape[0] is None and w.chunks[0] <= 1000 * CHUNK_SECONDS
        assert f["raw/markers/positions"].chunks[0] <= 200 * CHUNK_SECONDS
        assert f["raw/markers"].attrs["rate_hz"] == 200.0


def test_plain_h5py_minimum_file(tmp_path):
    """A collaborating lab's file: root attrs + /raw/force + /raw/markers, no treadlab code."""
    path = tmp_path / "plain.h5"
    n, m = 600, 120
    with h5py.File(path, "w") as f:
        f.attrs.update({"format": "treadlab.session", "format_version": 1,
                        "session_id": str(uuid.uuid4()), "subject_id": "P7",
                        "body_mass_kg": 64.0, "created_utc": "2025-03-01T10:00:00Z",
                        "software": "matlab-export 2.1", "lab": "Other lab",
                        "status": "complete", "belt_speed_m_s": 3.0})
        g = f.create_group("raw/force")
        g.create_dataset("time", data=np.arange(n) / 300.0).attrs["units"] = "s"
        g.create_dataset("wrench", data=np.ones((n, 1, 6), np.float32)).attrs["units"] = "N"
        g.attrs["rate_hz"] = 300.0
        g.attrs["plates"] = ["treadmill"]
        g.attrs["origin"] = np.zeros((1, 3))
        g.attrs["corners"] = np.zeros((1, 4, 3))
        mg = f.create_group("raw/markers")
        mg.create_dataset("time", data=np.arange(m) / 60.0).attrs["units"] = "s"
        pos = np.zeros((m, 2, 3), np.float32)
        pos[:30, 0] = np.nan
        mg.create_dataset("positions", data=pos).attrs["units"] = "mm"
        mg.attrs["labels"] = ["LASI", "RASI"]
        mg.attrs["rate_hz"] = 60.0
    assert validate_session(path) == []
    s = read_session(path, derived=True)
    assert s.force.plates == ["treadmill"] and s.force.wrench.shape == (n, 1, 6)
    assert s.force.counts is None and s.force.calibration is None and s.force.device_time is None
    assert s.markers.labels == ["LASI", "RASI"] and s.log == [] and s.subject == {}
    assert s.truth is None and s.reference is None and s.derived is None
    info = inspect_session(path)
    assert info["streams"]["markers"]["nan_fraction"] == {"LASI": 0.25, "RASI": 0.0}
    assert info["streams"]["force"]["samples"] == n and info["derived"] is None
    assert "not processed" in format_inspection(info)


def test_no_force_plates(tmp_path):
    """A static trial without analog data: a force stream with no plates and no samples."""
    s = make_session(counts=False)
    s.force = ForceData(time=np.zeros(0), wrench=np.zeros((0, 0, 6), np.float32), rate_hz=150.0,
                        plates=[], origin=np.zeros((0, 3)), corners=np.zeros((0, 4, 3)))
    path = write_session(tmp_path / "static.h5", s)
    assert validate_session(path) == []
    r = read_session(path)
    assert r.force.wrench.shape == (0, 0, 6) and r.force.plates == []
    assert "plates (none)" in format_inspection(inspect_session(path))


def test_inspect_reports_gaps_nans_and_log(tmp_path):
    s = make_session()
    keep = np.ones(len(s.force.time), bool)
    keep[500:520] = False  # 20 ms of force missing
    s.force = ForceData(time=s.force.time[keep], wrench=s.force.wrench[keep], rate_hz=1000.0,
                        plates=s.force.plates, origin=s.force.origin, corners=s.force.corners)
    path = write_session(tmp_path / "g.h5", s)
    info = inspect_session(path)
    fs = info["streams"]["force"]
    assert fs["gaps"] == 1 and fs["missing_samples"] == 20
    assert fs["longest_gap_s"] == pytest.approx(0.021)
    ms = info["streams"]["markers"]
    assert ms["nan_fraction"]["RASI"] == pytest.approx(20 / 400) and ms["nan_fraction"]["LASI"] == 0
    assert info["log"] == {"drop": 2, "reconnect": 1}
    text = format_inspection(info)
    assert "RASI 5.0%" in text and "drop 2" in text and "none visible" not in text and "valid      yes" in text


@pytest.mark.parametrize("content", [b"", b"not hdf5 at all" * 100, "truncated"])
def test_unreadable_files_give_one_problem(tmp_path, session_file, content):
    path = tmp_path / "bad.h5"
    if content == "truncated":
        path.write_bytes(session_file.read_bytes()[:4096])
    else:
        path.write_bytes(content)
    problems = validate_session(path)
    assert len(problems) == 1 and "\n" not in problems[0]
    with pytest.raises(InputError, match="bad.h5"):
        read_session(path)
    with pytest.raises(InputError, match="bad.h5"):
        inspect_session(path)
    assert len(validate_session(tmp_path / "absent.h5")) == 1


def test_missing_attrs_each_listed(session_file):
    with h5py.File(session_file, "r+") as f:
        for key in ("session_id", "body_mass_kg", "status"):
            del f.attrs[key]
        del f["raw/force"].attrs["rate_hz"]
        del f["raw/markers"].attrs["labels"]
        del f["raw/markers/time"].attrs["units"]
        f.attrs["format_version"] = 9
    problems = validate_session(session_file)
    for expected in ("/@session_id", "/@body_mass_kg", "/@status", "/raw/force@rate_hz",
                     "/raw/markers@labels", "/raw/markers/time: missing attribute 'units'",
                     "/@format_version"):
        assert sum(expected in p for p in problems) == 1, (expected, problems)
    assert len(problems) == 7
    with pytest.raises(InputError, match=r"/raw/force@rate_hz"):
        read_session(session_file)


def test_damaged_layout_is_one_line(tmp_path, session_file):
    with h5py.File(session_file, "r+") as f:
        del f["raw/force"]
        f["raw"].create_dataset("force", data=np.zeros(3))
    problems = validate_session(session_file)
    assert problems and all("\n" not in p for p in problems)
    assert any(p.startswith("/raw/force") for p in problems)
    with pytest.raises(InputError) as err:
        read_session(session_file)
    assert "\n" not in str(err.value) and str(session_file) in str(err.value)
    info = inspect_session(session_file)  # what can be shown is, plus the problems
    assert "force" not in info["streams"] and "markers" in info["streams"]
    assert info["problems"] == problems


def test_validate_finds_bad_shapes_and_times(session_file):
    with h5py.File(session_file, "r+") as f:
        f["raw/force/time"][10] = 0.0
        del f["raw/markers/positions"]
        f["raw/markers"].create_dataset("positions", data=np.zeros((5, 2, 3), np.float32))
        f["raw/markers/positions"].attrs["units"] = "mm"
        f.attrs["status"] = "recording"
        f["raw/markers/positions"].attrs["units"] = "m"
    problems = validate_session(session_file)
    assert "/raw/markers/positions: units 'm', expected 'mm'" in problems
    assert any(p.startswith("/raw/force/time: not increasing at sample 10") for p in problems)
    assert any(p.startswith("/raw/markers/positions: shape (5, 2, 3)") for p in problems)
    assert any("recover" in p for p in problems)


def test_xarray_named_dimensions(session_file):
    xr = pytest.importorskip("xarray")
    write_derived(session_file, make_derived(), {"pipeline_version": "0.1", "config_hash": "ab"})
    with xr.open_dataset(session_file, group="raw/markers", engine="h5netcdf") as ds:
        assert ds["positions"].dims == ("time", "label", "axis")
        assert list(ds["label"].values) == LABELS
        assert not any(d.startswith("phony") for d in ds.dims)
    with xr.open_dataset(session_file, group="raw/force", engine="h5netcdf") as ds:
        assert ds["wrench"].dims == ("time", "plate", "component")
        assert ds["counts"].dims == ("time", "channel")
    with xr.open_dataset(session_file, group="raw/force", engine="h5netcdf") as ds:
        assert ds["origin"].dims == ("plate", "xyz")
        assert ds["corners"].dims == ("plate", "corner", "xyz")
    # h5netcdf resolves dimension scales in the file it opened, so derived groups are opened
    # in the derived file (open_xarray picks the file for the group)
    derived = derived_path(session_file)
    with xr.open_dataset(derived, group="derived/contacts", engine="h5netcdf") as ds:
        assert ds["t_strike"].dims == ("contact",) and ds.sizes["contact"] == 6
    with open_xarray(session_file, "derived/angles") as ds:
        assert ds["values"].dims == ("time", "angle")
    with open_xarray(session_file, "derived/scores") as ds:
        assert list(ds["cause"].values) == CAUSES
    with open_xarray(session_file, "raw/markers") as ds:
        assert ds["positions"].dims == ("time", "label", "axis")


def test_write_derived_round_trip_and_replace(session_file):
    d = make_derived()
    write_derived(session_file, d, {"pipeline_version": "0.1", "config_hash": "abc123"})
    assert validate_session(session_file) == []
    r = read_derived(session_file)
    assert r["attrs"]["config_hash"] == "abc123" and "processed_utc" in r["attrs"]
    for key, value in d["contacts"].items():
        np.testing.assert_array_equal(r["contacts"][key], value)
    assert r["contacts"]["valid"].dtype == bool and set(r["contacts"]) == set(CONTACT_FIELDS)
    assert r["angles"]["names"] == d["angles"]["names"]
    assert r["angles"]["reasons"] == d["angles"]["reasons"]
    np.testing.assert_allclose(r["angles"]["values"], d["angles"]["values"], rtol=2.0 ** -11)  # BitRound, docs/archive.md §4.2
    assert list(r["scores"]["cause"]) == CAUSES
    np.testing.assert_array_equal(r["scores"]["value"], d["scores"]["value"])
    # a second write replaces /derived; the raw data are untouched; extra columns keep units
    d["scores"]["score"] = np.array([1.0, 2, 3, 4])
    d["contacts"]["heel_speed"] = np.ones(6)
    d["units"] = {"heel_speed": "mm/s"}
    write_derived(session_file, d, {"pipeline_version": "0.2", "config_hash": "x"})
    s = read_session(session_file, derived=True)
    assert s.derived["attrs"]["pipeline_version"] == "0.2"
    np.testing.assert_array_equal(s.derived["scores"]["score"], [1, 2, 3, 4])
    with h5py.File(session_file, "r") as f:
        assert f["derived/contacts/heel_speed"].attrs["units"] == "mm/s"
        assert f["derived/contacts/peak_vgrf"].attrs["units"] == "BW"
    np.testing.assert_array_equal(s.force.counts, make_session().force.counts)
    info = inspect_session(session_file)
    assert info["derived"]["contacts"]["valid"] == 5
    assert [row["cause"] for row in info["derived"]["scores"]] == CAUSES
    assert "limited_hip_extension" in format_inspection(info)


def test_write_derived_failure_leaves_original(session_file):
    write_derived(session_file, make_derived(), {"pipeline_version": "0.1", "config_hash": "x"})
    before = session_file.read_bytes(), derived_path(session_file).read_bytes()
    bad = make_derived()
    bad["contacts"]["t_off"] = np.zeros(3)  # columns of different lengths
    with pytest.raises(ValueError):
        write_derived(session_file, bad, {"pipeline_version": "0.2", "config_hash": "y"})
    assert (session_file.read_bytes(), derived_path(session_file).read_bytes()) == before
    assert sorted(p.name for p in session_file.parent.iterdir()) == ["s.derived.h5", "s.h5"]


_KILLED_WRITER = """
import sys, time, numpy as np
from treadlab.acquisition.archive import write_derived
class Slow:
    def __array__(self, dtype=None, copy=None):
        print("writing", flush=True)
        time.sleep(60)
        return np.zeros(3)
write_derived(sys.argv[1], {"contacts": {"side": Slow()}}, {"pipeline_version": "k"})
"""


def test_write_derived_killed_leaves_original(session_file):
    before = session_file.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(session_file)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"  # blocked inside /derived
        # the new file is built in memory (atomic_h5): the archive is never opened for writing
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert session_file.read_bytes() == before  # the session file is never written
    assert read_derived(session_file) is None  # still the placeholder written with it
    assert validate_session(session_file) == []
    assert sorted(p.name for p in session_file.parent.iterdir()) == ["s.derived.h5", "s.h5"]


def test_create_raw_layout_swmr_append(tmp_path):
    """The recorder's path: layout, SWMR, append + flush, read concurrently."""
    path = tmp_path / "live.h5"
    f = h5py.File(path, "w", libver=LIBVER)
    try:
        f.attrs.update({"format": "treadlab.session", "status": "recording"})
        ds = create_raw_layout(f, plates=["left", "right"], origin=np.zeros((2, 3)),
                               corners=np.zeros((2, 4, 3)), force_rate_hz=1000, labels=LABELS,
                               marker_rate_hz=200, n_channels=12, counts_dtype=np.int16,
                               calibration={"volts_per_count": 1e-3, "zero": np.zeros(12),
                                            "channels": np.arange(12).reshape(2, 6),
                                            "matrix": np.tile(np.eye(6), (2, 1, 1))},
                               device_time=True)
        f.swmr_mode = True
        for block in range(3):
            t = block * 0.1 + np.arange(100) / 1000
            for key, value in (("force/time", t), ("force/device_time", t + 5),
                               ("force/wrench", np.full((100, 2, 6), block, np.float32)),
                               ("force/counts", np.zeros((100, 12), np.int16))):
                n = ds[key].shape[0]
                ds[key].resize(n + 100, axis=0)
                ds[key][n:] = value
            n = ds["log/time"].shape[0]
            for key, value in (("log/time", block * 0.1), ("log/source", "force"),
                               ("log/kind", "drop"), ("log/detail", f"block {block}")):
                ds[key].resize(n + 1, axis=0)
                ds[key][n] = value
            f["raw/force/calibration/zero"][...] = np.arange(12)  # tare measured late
            f.flush()
        with h5py.File(path, "r", swmr=True) as r:
            assert r["raw/force/wrench"].shape == (300, 2, 6)
            assert r["raw/log/detail"].asstr()[-1] == "block 2"
    finally:
        f.close()
    assert ds["force/wrench"].chunks[0] <= 1000 * CHUNK_SECONDS
    s = read_session(path)
    assert len(s.force.time) == 300 and len(s.markers.time) == 0
    assert s.markers.positions.shape == (0, len(LABELS), 3)
    assert [e[3] for e in s.log] == ["block 0", "block 1", "block 2"]
    np.testing.assert_array_equal(s.force.calibration["zero"], np.arange(12))


_KILLED_RECORDER = """
import sys, time, h5py, numpy as np
from treadlab.acquisition.archive import LIBVER, create_raw_layout
f = h5py.File(sys.argv[1], "w", libver=LIBVER)
f.attrs.update({"format": "treadlab.session", "format_version": 1, "status": "recording",
                "session_id": "0b6f4a58-3d5c-4a5e-9a53-1f1d9b2f3c11", "subject_id": "S",
                "body_mass_kg": 70.0, "created_utc": "2026-01-01T00:00:00+00:00",
                "software": "treadlab test", "lab": "test", "belt_speed_m_s": float("nan")})
ds = create_raw_layout(f, plates=["treadmill"], origin=np.zeros((1, 3)),
                       corners=np.zeros((1, 4, 3)), force_rate_hz=1000, labels=["LASI"],
                       marker_rate_hz=200)
f.swmr_mode = True
for key, rows in (("force/time", np.arange(2000) / 1000),
                  ("force/wrench", np.ones((2000, 1, 6), np.float32)),
                  ("markers/time", np.arange(400) / 200),
                  ("markers/positions", np.zeros((400, 1, 3), np.float32))):
    ds[key].resize(len(rows), axis=0)
    ds[key][:] = rows
f.flush()
print("flushed", flush=True)
time.sleep(60)
"""


def test_killed_swmr_capture_still_reads(tmp_path):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RECORDER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    s = read_session(path)
    assert s.attrs["status"] == "recording" and len(s.force.time) == 2000
    assert len(s.markers.time) == 400 and math.isnan(s.attrs["belt_speed_m_s"])
    problems = validate_session(path)
    assert len(problems) == 1 and "recover" in problems[0]
    info = inspect_session(path)
    assert info["status"] == "recording" and info["streams"]["force"]["samples"] == 2000


# --- the one atomic write -------------------------------------------------------------------

def test_atomic_write_mode_follows_the_umask_and_failure_leaves_the_target(tmp_path):
    from treadlab.acquisition.archive import atomic_write

    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"new")
        assert target.read_bytes() == b"new"
        assert target.stat().st_mode & 0o777 == 0o644
        with pytest.raises(RuntimeError):
            with atomic_write(target) as tmp:
                tmp.write_bytes(b"half")
                raise RuntimeError("killed mid-write")
        assert target.read_bytes() == b"new"
        assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
        os.chmod(target, 0o640)  # a replaced file keeps the mode it was given
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"newer")
        assert target.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)



def test_write_bytes_atomic_mode_and_a_failed_write_leaves_the_target(tmp_path, monkeypatch):
    from treadlab.acquisition.archive import atomic

    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        atomic.write_bytes_atomic(target, memoryview(b"new"))
        assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o644
        os.chmod(target, 0o640)  # a replaced file keeps the mode it was given
        atomic.write_bytes_atomic(target, b"x" * 300_000)
        assert target.read_bytes() == b"x" * 300_000
        assert target.stat().st_mode & 0o777 == 0o640

        def full(fd, data):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(atomic.os, "write", full)
        with pytest.raises(OSError, match="No space"):
            atomic.write_bytes_atomic(target, b"newer")
        assert target.read_bytes() == b"x" * 300_000
        assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    finally:
        os.umask(old)

def test_write_session_leaves_a_readable_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_session(tmp_path / "s.h5", simulate_session(RunnerParams(duration_s=1.0)))
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
