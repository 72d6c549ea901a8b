"""Export for collaborating labs: anonymised allow-list HDF5 with a schema and named
dimensions, C3D (markers, force channels, events, split into parts), CSV, bad inputs, and a
real imported recording."""
from __future__ import annotations

import csv
import hashlib
import hmac
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.archive import (read_derived, read_session, validate_session,
                                          write_derived, write_session)
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.config.errors import ConfigError
from treadlab.pipeline.cli import main
from treadlab.acquisition.io.c3d_export import C3D_MAX_EVENTS, C3D_MAX_FRAMES, split_parts
from treadlab.pipeline.export import (export_session, export_sessions, pseudonym,
                                      pseudonym_secret)
from treadlab.pipeline.graph import process_session

pytestmark = pytest.mark.timeout(120)

ezc3d = pytest.importorskip("ezc3d")

SECRET = "lab-secret-0123456789abcdef-XYZ"
SUBJECT = "Jane-Doe-1984"
SESSION = "6b0f4f1e-5a6b-4c3e-9d2a-1f2e3d4c5b6a"
CREATED = "2026-03-14T09:26:53+00:00"
NOTE = "told us about her marathon in Berlin"
BIRTH = "1984-03-02"
# strings that must not survive anonymised export, anywhere
IDENTIFIERS = (SUBJECT, SESSION, "09:26:53", "T09:26", "marathon", "Berlin", "Jane", BIRTH)


def _planted_session(path, seconds=16.0, **params):
    s = simulate_session(RunnerParams(duration_s=seconds, seed=5, **params))
    s.attrs.update(subject_id=SUBJECT, session_id=SESSION, created_utc=CREATED, notes=NOTE,
                   operator="Dr Jane Smith")
    s.subject.update(name="Jane Doe", birth_date=BIRTH)
    s.log = [(0.5, "force", "drop", f"3 frames lost while {SUBJECT} warmed up"),
             (1.0, "markers", "late", NOTE)]
    write_session(path, s)
    with h5py.File(path, "r+") as f:  # free text a lab tool might add
        g = f.create_group("notes")
        ds = g.create_dataset("free_text", data=NOTE, dtype=h5py.string_dtype())
        ds.attrs["units"] = ""
        f["raw/markers"].attrs["operator_comment"] = NOTE
    return path


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    path = _planted_session(tmp_path_factory.mktemp("src") / f"{SUBJECT}.h5", seconds=8.0)
    process_session(path)
    return path


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", SECRET)
    return SECRET


def _all_strings(path):
    """Every attribute name and text value, object name and string dataset value."""
    out = []
    with h5py.File(path, "r") as f:
        def attrs(obj):
            for k, v in obj.attrs.items():
                out.append(k)
                if isinstance(v, (bytes, np.bytes_)):
                    out.append(v.decode("utf-8", "replace"))
                elif isinstance(v, str):
                    out.append(v)
                elif isinstance(v, np.ndarray) and v.dtype.kind in "SOU":
                    out.extend(x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel())

        attrs(f)

        def visit(name, obj):
            out.append(name)
            attrs(obj)
            if isinstance(obj, h5py.Dataset) and h5py.check_string_dtype(obj.dtype):
                out.extend(str(x) for x in np.asarray(obj.asstr()[()], dtype=object).ravel())

        f.visititems(visit)
    return out


def _one(folder, pattern):
    files = sorted(folder.glob(pattern))
    assert len(files) == 1, files
    return files[0]


# --- HDF5 ------------------------------------------------------------------------------------

def test_hdf5_no_identifier_survives(processed, secret, tmp_path):
    assert export_sessions([processed], tmp_path, fmt="hdf5").ok
    out = _one(tmp_path, "*.h5")
    assert validate_session(out) == []
    strings = _all_strings(out)
    for ident in IDENTIFIERS:
        hits = [s for s in strings if ident in s]
        assert not hits, (ident, hits[:3])
    raw = out.read_bytes()  # attributes are stored uncompressed: nothing hides in there
    for ident in IDENTIFIERS:
        assert ident.encode() not in raw, ident
    with h5py.File(out, "r") as f:
        assert "notes" not in f
        assert set(f["subject"].attrs) <= {"leg_length_left_mm", "leg_length_right_mm",
                                          "inter_asis_mm", "knee_width_left_mm",
                                          "knee_width_right_mm", "ankle_width_left_mm",
                                          "ankle_width_right_mm", "marker_diameter_mm",
                                          "height_mm"}
        assert f.attrs["created_utc"] == "2026-03-14"
        assert f.attrs["subject_id"] == pseudonym(SUBJECT, SECRET.encode())
        assert out.name.startswith(f.attrs["subject_id"] + "_ses-")
        assert "device_time" not in f["raw/force"]
        assert f["derived"].attrs["processed_utc"].count(":") == 0
        # gzip only
        def filters(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.chunks:
                assert obj.compression == "gzip", name
        f.visititems(filters)
    # data are unchanged
    a, b = read_session(processed, derived=True), read_session(out, derived=True)
    np.testing.assert_array_equal(a.force.wrench, b.force.wrench)
    np.testing.assert_array_equal(a.markers.positions, b.markers.positions)
    np.testing.assert_array_equal(a.derived["contacts"]["t_strike"],
                                  b.derived["contacts"]["t_strike"])
    np.testing.assert_array_equal(a.derived["scores"]["score"], b.derived["scores"]["score"])
    assert [e[2] for e in b.log] == ["drop", "late"] and all(e[3] == "" for e in b.log)


def test_pseudonym_stable_and_keyed(processed, monkeypatch, tmp_path):
    expected = "sub-" + hmac.new(SECRET.encode(), SUBJECT.encode(),
                                 hashlib.sha256).hexdigest()[:16]
    names = []
    for run, key in enumerate((SECRET, SECRET, "another-lab-secret-987654321")):
        monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", key)
        out = export_session(processed, tmp_path / str(run), fmt="hdf5",
                             secret=pseudonym_secret())
        with h5py.File(out[0], "r") as f:
            names.append((out[0].name, f.attrs["subject_id"], f.attrs["session_id"]))
    assert names[0] == names[1]
    assert names[0][1] == expected
    assert names[2][1] != names[0][1] and names[2][2] != names[0][2]
    assert names[2][0] != names[0][0]


def test_no_secret_is_refused(processed, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TREADLAB_PSEUDONYM_SECRET", raising=False)
    with pytest.raises(ConfigError, match="TREADLAB_PSEUDONYM_SECRET"):
        export_sessions([processed], tmp_path)
    assert main(["export", str(processed), "--to", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "secret" in err[0]
    monkeypatch.setenv("TREADLAB_PSEUDONYM_SECRET", "short")
    with pytest.raises(ConfigError, match="at least"):
        export_sessions([processed], tmp_path)
    assert not list(tmp_path.glob("*.h5"))
    # with identity kept no secret is needed, and the allow-list still applies
    assert export_sessions([processed], tmp_path, keep_identity=True).ok
    out = _one(tmp_path, "*.h5")
    with h5py.File(out, "r") as f:
        assert f.attrs["subject_id"] == SUBJECT and f.attrs["created_utc"] == CREATED
        assert "notes" not in f.attrs and "notes" not in f


def _lab_toml(tmp_path, export_lines: str):
    """The shipped simulated lab with its [export] table replaced."""
    import treadlab.config

    text = (Path(treadlab.config.__file__).parent / "lab_simulated.toml").read_text()
    text = text.replace('secret_env = "TREADLAB_PSEUDONYM_SECRET"', export_lines)
    assert export_lines in text
    path = tmp_path / "lab.toml"
    path.write_text(text)
    return path


def test_secret_from_the_lab_config(processed, monkeypatch, tmp_path):
    monkeypatch.delenv("TREADLAB_PSEUDONYM_SECRET", raising=False)
    key = "from-the-lab-env-0123456789"
    monkeypatch.setenv("MY_LAB_PSEUDONYM_KEY", key)
    lab = _lab_toml(tmp_path, 'secret_env = "MY_LAB_PSEUDONYM_KEY"')
    assert pseudonym_secret(lab) == key.encode()
    assert export_sessions([processed], tmp_path / "a", config_path=lab).ok
    with h5py.File(_one(tmp_path / "a", "*.h5"), "r") as f:
        assert f.attrs["subject_id"] == pseudonym(SUBJECT, key.encode())
    # a secret written in the config wins over the environment
    lab = _lab_toml(tmp_path, 'secret = "written-in-the-lab-config-42"')
    assert pseudonym_secret(lab) == b"written-in-the-lab-config-42"


def test_hdf5_named_dimensions_and_schema(processed, secret, tmp_path):
    xr = pytest.importorskip("xarray")
    export_sessions([processed], tmp_path)
    out = _one(tmp_path, "*.h5")
    with xr.open_dataset(out, group="derived/contacts", engine="h5netcdf") as ds:
        assert set(ds.sizes) == {"contact"}
        assert ds["t_strike"].dims == ("contact",)
    with xr.open_dataset(out, group="raw/markers", engine="h5netcdf") as ds:
        assert ds["positions"].dims == ("time", "label", "axis")
        assert "LASI" in [str(x) for x in ds["label"].values]
    with xr.open_dataset(out, group="raw/force", engine="h5netcdf") as ds:
        assert ds["wrench"].dims == ("time", "plate", "component")
    with h5py.File(out, "r") as f:
        schema = json.loads(f["schema"][()])
        objects = schema["objects"]
        datasets = []
        f.visititems(lambda n, o: datasets.append("/" + n) if isinstance(o, h5py.Dataset)
                     else None)
    for name in datasets:
        if name == "/schema":
            continue
        assert name in objects, name
        assert "units" in objects[name]
    assert objects["/raw/force/wrench"]["units"].startswith("N")
    assert objects["/derived/contacts/peak_vgrf"]["units"] == "BW"
    assert objects["/raw/markers/positions"]["dimensions"] == ["time", "label", "axis"]
    assert "description" in objects["/derived/scores/score"]


# --- C3D -------------------------------------------------------------------------------------

def test_c3d_markers_force_and_events(processed, secret, tmp_path):
    assert export_sessions([processed], tmp_path, fmt="c3d").ok
    out = _one(tmp_path, "*.c3d")
    s = read_session(processed, derived=True)
    c = ezc3d.c3d(str(out))
    p = c["parameters"]
    assert p["POINT"]["LABELS"]["value"] == s.markers.labels
    assert p["POINT"]["UNITS"]["value"] == ["mm"]
    assert p["POINT"]["RATE"]["value"][0] == s.markers.rate_hz
    pts = c["data"]["points"][:3].transpose(2, 1, 0)
    assert pts.shape == s.markers.positions.shape
    np.testing.assert_array_equal(np.isnan(pts), np.isnan(s.markers.positions))
    np.testing.assert_allclose(pts, s.markers.positions, atol=1e-3, equal_nan=True)
    # analog: 6 channels per plate at the force rate, an integer multiple of the marker rate
    assert p["ANALOG"]["RATE"]["value"][0] == s.force.rate_hz
    assert p["ANALOG"]["LABELS"]["value"][:6] == ["Fx1", "Fy1", "Fz1", "Mx1", "My1", "Mz1"]
    assert p["ANALOG"]["UNITS"]["value"][:6] == ["N", "N", "N", "Nmm", "Nmm", "Nmm"]
    an = c["data"]["analogs"][0]
    assert an.shape == (6 * len(s.force.plates), len(s.markers.time) * 5)
    fz = -s.force.wrench[:, 0, 2]  # the force applied to the plate
    np.testing.assert_allclose(an[2, :len(fz)], fz[:an.shape[1]], atol=1e-3)
    # events: every sided contact's strike and toe off
    ev = p["EVENT"]
    ct = s.derived["contacts"]
    n = int(np.isin(ct["side"], (0, 1)).sum())
    assert ev["USED"]["value"][0] == 2 * n
    labels = list(zip(ev["CONTEXTS"]["value"], ev["LABELS"]["value"]))
    assert labels.count(("Left", "Foot Strike")) == int(np.sum(ct["side"] == 0))
    assert labels.count(("Right", "Foot Off")) == int(np.sum(ct["side"] == 1))
    times = ev["TIMES"]["value"][1]
    strikes = sorted(t for t, (_c, lab) in zip(times, labels) if lab == "Foot Strike")
    np.testing.assert_allclose(strikes, np.sort(ct["t_strike"]) - s.markers.time[0],
                               atol=1e-4)
    # and our own importer reads the ground reaction back from the force-plate parameters
    from treadlab.acquisition.io.c3d_import import read_c3d

    back = read_c3d(out)
    n_f = min(len(back.force.time), len(s.force.time))
    np.testing.assert_allclose(back.force.wrench[:n_f], s.force.wrench[:n_f], atol=0.05)
    # identity
    text = json.dumps({g: {k: str(v.get("value")) for k, v in grp.items()}
                       for g, grp in p.items()})
    for ident in IDENTIFIERS:
        assert ident not in text


def test_c3d_resamples_force_to_a_multiple_of_the_marker_rate(secret, tmp_path):
    src = tmp_path / "odd.h5"
    write_session(src, simulate_session(RunnerParams(duration_s=3.0, seed=2,
                                                     force_rate_hz=1000.0,
                                                     marker_rate_hz=150.0)))
    assert export_sessions([src], tmp_path / "out", fmt="c3d").ok
    c = ezc3d.c3d(str(_one(tmp_path / "out", "*.c3d")))
    assert c["parameters"]["ANALOG"]["RATE"]["value"][0] == 1050.0  # 7 x 150 Hz
    assert "resampled from 1000 Hz" in c["parameters"]["TREADLAB"]["FORCE"]["value"][0]
    s = read_session(src)
    an = c["data"]["analogs"][0][2]
    t = s.markers.time[0] + np.arange(an.size) / 1050.0
    expect = np.interp(t, s.force.time, -s.force.wrench[:, 0, 2], right=0.0)
    np.testing.assert_allclose(an, expect, atol=1e-3)


def test_c3d_splits_a_ten_minute_session(secret, tmp_path):
    src = tmp_path / "long.h5"
    s = simulate_session(RunnerParams(duration_s=600.0, seed=1, force_rate_hz=200.0,
                                      marker_rate_hz=200.0, dropout_rate=0.0))
    # four markers are enough to follow the frames across parts and keep the test quick
    s.markers.positions = np.ascontiguousarray(s.markers.positions[:, :4])
    s.markers.labels = s.markers.labels[:4]
    write_session(src, s)
    steps = s.truth["steps"]  # contacts from the runner's truth stand in for processing
    write_derived(src, {"contacts": {"side": steps["side"], "t_strike": steps["t_strike"],
                                     "t_off": steps["t_off"],
                                     "valid": np.ones(len(steps["side"]), bool)}},
                  {"pipeline_version": "test", "config_hash": "test"})
    assert export_sessions([src], tmp_path / "out", fmt="c3d").ok
    parts = sorted((tmp_path / "out").glob("*.c3d"))
    m, n_ev = len(s.markers.time), 2 * len(steps["side"])
    assert m == 120000 > C3D_MAX_FRAMES and n_ev > C3D_MAX_EVENTS
    assert len(parts) >= max(2, -(-n_ev // C3D_MAX_EVENTS))
    assert [p.name[-11:] for p in parts] == [f"_part{i:02d}.c3d" for i in
                                             range(1, len(parts) + 1)]
    frames, strikes, start = [], [], 0
    for part in parts:
        c = ezc3d.c3d(str(part))
        nf = c["data"]["points"].shape[2]
        assert nf <= C3D_MAX_FRAMES
        t0 = c["parameters"]["TREADLAB"]["PART_START_S"]["value"][0]
        assert t0 == pytest.approx(s.markers.time[start])
        np.testing.assert_allclose(c["data"]["points"][:3, :, 0].T, s.markers.positions[start],
                                   atol=1e-3)
        ev = c["parameters"]["EVENT"]
        assert ev["USED"]["value"][0] <= C3D_MAX_EVENTS
        times = ev["TIMES"]["value"][1]
        assert times.min() >= 0 and times.max() <= nf / 200.0
        strikes += [t0 + t for t, lab in zip(times, ev["LABELS"]["value"])
                    if lab == "Foot Strike"]
        frames.append(nf)
        start += nf
    assert sum(frames) == m
    np.testing.assert_allclose(np.sort(strikes), np.sort(steps["t_strike"]), atol=1e-6)


def test_c3d_parts_by_frames_alone():
    t = np.arange(120000) / 200.0
    bounds, groups = split_parts(t, 200.0, [])
    assert list(bounds) == [0, 60000, 120000] and all(g.size == 0 for g in groups)
    bounds, groups = split_parts(t[:1000], 200.0, [0.1, 4.9])
    assert list(bounds) == [0, 1000] and list(groups[0]) == [0, 1]


# --- CSV -------------------------------------------------------------------------------------

def test_csv_contacts_and_scores(processed, secret, tmp_path):
    assert export_sessions([processed], tmp_path, fmt="csv").ok
    d = read_derived(processed)
    with open(_one(tmp_path, "*_contacts.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(d["contacts"]["side"])
    assert {r["side"] for r in rows} == {"left", "right"}
    np.testing.assert_allclose([float(r["t_strike [s]"]) for r in rows],
                               d["contacts"]["t_strike"])
    np.testing.assert_allclose([float(r["peak_vgrf [BW]"]) for r in rows],
                               d["contacts"]["peak_vgrf"])
    assert {r["subject_id"] for r in rows} == {pseudonym(SUBJECT, SECRET.encode())}
    with open(_one(tmp_path, "*_scores.csv"), newline="") as fh:
        scores = list(csv.DictReader(fh))
    assert [r["cause"] for r in scores] == [str(c) for c in d["scores"]["cause"]]
    for r, s in zip(scores, d["scores"]["score"]):
        assert (r["score"] == "") if not np.isfinite(s) else float(r["score"]) == pytest.approx(s)
    text = "".join(p.read_text() for p in tmp_path.glob("*.csv"))
    for ident in IDENTIFIERS:
        assert ident not in text


def test_csv_needs_a_processed_session(secret, tmp_path, capsys):
    src = tmp_path / "raw.h5"
    write_session(src, simulate_session(RunnerParams(duration_s=2.0, seed=1)))
    result = export_sessions([src], tmp_path / "out", fmt="csv")
    assert not result.ok
    err = result.failed
    assert len(err) == 1 and "raw.h5" in err[0] and "process" in err[0]


# --- bad input -------------------------------------------------------------------------------

def test_bad_file_one_line_others_exported(processed, secret, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"this is not HDF5" * 10)
    missing = tmp_path / "missing.h5"
    out = tmp_path / "out"
    code = main(["export", str(bad), str(processed), str(missing), "--to", str(out)])
    assert code == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2
    assert "bad.h5" in err[0] and "missing.h5" in err[1]
    assert "Traceback" not in captured.err
    assert len(list(out.glob("*.h5"))) == 1


# --- a real recording ------------------------------------------------------------------------

def test_real_recording_export(secret, tmp_path):
    from treadlab.acquisition.io.c3d_import import import_c3d

    c3d = shared_file("running", "RBDS001runT35.c3d")
    src = tmp_path / "RBDS001runT35.h5"
    import_c3d(c3d, src)
    process_session(src)
    assert export_sessions([src], tmp_path / "out", fmt="hdf5").ok
    assert export_sessions([src], tmp_path / "out", fmt="c3d").ok
    h5 = _one(tmp_path / "out", "*.h5")
    assert validate_session(h5) == []
    for s in _all_strings(h5):
        assert "RBDS001" not in s, s
    a, b = read_session(src, derived=True), read_session(h5, derived=True)
    np.testing.assert_array_equal(a.markers.positions, b.markers.positions)
    assert len(b.derived["contacts"]["t_strike"]) == len(a.derived["contacts"]["t_strike"])
    c = ezc3d.c3d(str(_one(tmp_path / "out", "*.c3d")))
    pts = c["data"]["points"][:3].transpose(2, 1, 0)
    np.testing.assert_allclose(pts, a.markers.positions, atol=1e-3, equal_nan=True)
    assert c["parameters"]["ANALOG"]["RATE"]["value"][0] == 300.0  # 2 x 150 Hz markers
    assert c["parameters"]["EVENT"]["USED"]["value"][0] == 2 * int(
        np.isin(a.derived["contacts"]["side"], (0, 1)).sum())
