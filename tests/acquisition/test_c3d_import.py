"""C3D import (acquisition/io/c3d_import.py) against the real recordings in ../shared/data.

Every comparison with ezc3d goes through the documented axis mapping ``attrs["c3d_axes"]``
(``lab = A @ file``). Tolerances: markers and force are the same numbers rotated (float32
rounding, 1e-3 mm / 1e-2 N / 1e-4 N·m); event times to 1 µs.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, shared_file
from treadlab.acquisition.io.c3d_import import import_c3d, read_c3d
from treadlab.kernels.contacts import ContactParams, detect_contacts
from treadlab.kernels.forces import estimate_body_weight
from treadlab.config.errors import InputError

pytestmark = pytest.mark.timeout(60)

ezc3d = pytest.importorskip("ezc3d")

RUNNING_PIG = sorted(
    [("running", p.name) for p in (SHARED_DATA / "running").glob("*.c3d")]
    + [("pig", p.name) for p in (SHARED_DATA / "pig").glob("*.c3d")]
) or [("running", "RBDS001runT35.c3d")]  # skips cleanly when the data folder is absent


@functools.lru_cache(maxsize=None)
def _read(folder: str, name: str, **kw):
    return read_c3d(shared_file(folder, name), **kw)


@functools.lru_cache(maxsize=None)
def _ez(folder: str, name: str, forceplat: bool = False):
    return ezc3d.c3d(str(shared_file(folder, name)), extract_forceplat_data=forceplat)


# --- every file imports ----------------------------------------------------------------------

@pytest.mark.parametrize("folder,name", RUNNING_PIG)
def test_every_running_and_pig_file_imports_and_validates(folder, name, tmp_path):
    s = _read(folder, name)
    m, f = s.markers, s.force
    assert m.positions.dtype == np.float32 and m.positions.ndim == 3
    assert m.positions.shape == (m.time.size, len(m.labels), 3)
    assert m.time[0] == 0.0 and np.all(np.diff(m.time) > 0)
    assert len(set(m.labels)) == len(m.labels)
    assert f.wrench.dtype == np.float32 and f.wrench.shape == (f.time.size, len(f.plates), 6)
    if f.time.size:
        assert f.time[0] == 0.0
        # force and markers cover the same span (analog samples = frames × ratio)
        assert f.time.size / f.rate_hz == pytest.approx(m.time.size / m.rate_hz)
    else:  # RBDS001static.c3d has no analog data: an empty force stream with no plates
        assert f.wrench.shape == (0, 0, 6)
    a = s.attrs["c3d_axes"]
    assert np.allclose(a @ a.T, np.eye(3)) and np.linalg.det(a) == pytest.approx(1.0)

    # an archive needs a body mass: static trials without force or PROCESSING get one given
    mass = None if s.attrs["body_mass_kg"] > 0 else 60.0
    out = import_c3d(shared_file(folder, name), tmp_path / "s.h5", body_mass_kg=mass)
    from treadlab.acquisition.archive import validate_session

    assert validate_session(out) == []


# --- markers and force equal ezc3d's reading after the axis mapping ---------------------------

EZ_FILES = [("running", "RBDS001runT35.c3d"), ("running", "JA1Gait21.c3d"),
            ("pig", "PiG_Motion-FlatFoot-Full.c3d"), ("importer", "Qualisys.c3d"),
            ("importer", "MotionAnalysis_Walk1.c3d"), ("importer", "gait-pig-nz.c3d")]


@pytest.mark.parametrize("folder,name", EZ_FILES)
def test_markers_equal_ezc3d_after_axis_mapping(folder, name):
    s = _read(folder, name)
    c = _ez(folder, name)
    a = s.attrs["c3d_axes"]
    pts = c["data"]["points"][:3]
    kept = 0
    for lab, j in zip(s.markers.labels, s.attrs["c3d_marker_index"]):
        if j < 0:  # virtual marker (config.markers.virtual_markers)
            continue
        xyz = pts[:, j, :]
        expect = (a @ xyz).T
        expect[np.all(xyz == 0, axis=0)] = np.nan
        got = s.markers.positions[:, s.markers.labels.index(lab), :]
        np.testing.assert_allclose(got, expect, atol=1e-3, rtol=1e-6, equal_nan=True)
        kept += 1
    assert kept == len(s.markers.labels) - len(s.attrs["c3d_virtual_markers"]) > 0


# JA1Gait21's eight type-2 plates are left out here only for time (ezc3d's extraction is slow);
# the same plate type is compared in the PiG, Qualisys and gait-pig-nz files
@pytest.mark.parametrize("folder,name", [fn for fn in EZ_FILES if fn[1] != "JA1Gait21.c3d"])
def test_force_equals_ezc3d_platform_extraction(folder, name):
    s = _read(folder, name)
    c = _ez(folder, name, forceplat=True)
    a = s.attrs["c3d_axes"]
    for i, pf in enumerate(c["data"]["platform"]):
        assert pf["unit_moment"].lower() in ("nmm", "n.mm")
        w = s.force.wrench[:, i, :].astype(np.float64)
        np.testing.assert_allclose(w[:, :3], (a @ pf["force"]).T, atol=1e-2)
        np.testing.assert_allclose(w[:, 3:], (a @ pf["moment"]).T / 1000.0, atol=1e-4)
        # moments are about the centre of the working surface, as ezc3d's
        np.testing.assert_allclose(s.force.origin[i], a @ np.mean(pf["corners"], axis=1),
                                   atol=1e-6)


def test_fukuchi_axes_y_up_treadmill():
    s = _read("running", "RBDS001runT35.c3d")
    # Y-up file, travel along +X: lab X = +X, lab Y = -Z, lab Z = +Y
    np.testing.assert_array_equal(s.attrs["c3d_axes"], [[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    assert s.attrs["c3d_recording"] == "treadmill"
    assert s.attrs["c3d_axes_check"] > 0.9  # toe ahead of heel while on the ground
    # the left markers are on the left (+Y) of the right ones
    lab = s.markers.labels
    y = np.nanmean(s.markers.positions[:, :, 1], axis=0)
    left = [y[k] for k, n in enumerate(lab) if n.upper().startswith("L")]
    right = [y[k] for k, n in enumerate(lab) if n.upper().startswith("R")]
    assert np.mean(left) > np.mean(right) + 100
    assert s.attrs["belt_speed_m_s"] == pytest.approx(3.5, rel=0.05)


def _stance_slices(fz, rate):
    c, _ = detect_contacts(np.ascontiguousarray(fz, dtype=np.float64), float(rate),
                           ContactParams(min_contact_s=0.0, min_flight_s=0.0))
    return [(int(a), int(b)) for a, b in zip(c.i_strike, c.i_off) if (b - a) / rate > 0.1]


@pytest.mark.parametrize("name", ["RBDS001runT25.c3d", "RBDS001runT35.c3d",
                                  "RBDS001runT45.c3d", "RBDS002runT35.c3d", "JA1Gait21.c3d"])
def test_ground_reaction_signs_in_stance(name):
    s = _read("running", name)
    w = s.force.wrench.astype(np.float64)
    fz, fx = w[:, :, 2].sum(axis=1), w[:, :, 0].sum(axis=1)
    pairs = _stance_slices(fz, s.force.rate_hz)
    assert len(pairs) >= 4
    early = [fx[a:a + (b - a) // 3].mean() for a, b in pairs]
    late = [fx[b - (b - a) // 3:b].mean() for a, b in pairs]
    assert np.median(early) < 0 < np.median(late)  # braking then propulsion
    assert min(fz[a:b].min() for a, b in pairs) > 0
    assert s.attrs["c3d_axes_check"] > 0.9


def test_fukuchi_contact_times_fall_with_speed():
    times = []
    for name in ("RBDS001runT25.c3d", "RBDS001runT35.c3d", "RBDS001runT45.c3d"):
        s = _read("running", name)
        pairs = _stance_slices(s.force.wrench[:, 0, 2].astype(np.float64), s.force.rate_hz)
        times.append(1000 * np.median([(b - a) for a, b in pairs]) / s.force.rate_hz)
    assert times[0] > times[1] > times[2]
    np.testing.assert_allclose(times, [290, 234, 202], atol=12)  # data/README.md


# --- body mass -------------------------------------------------------------------------------

def test_body_mass_agrees_across_speeds_within_2_percent():
    masses = [_read("running", f"RBDS001runT{v}.c3d").attrs["body_mass_kg"] for v in (25, 35, 45)]
    for name, m in zip(("T25", "T35", "T45"), masses):
        assert 40 < m < 100, name
    assert (max(masses) - min(masses)) / np.mean(masses) < 0.02
    s = _read("running", "RBDS001runT35.c3d")
    assert s.attrs["body_mass_source"].startswith("force: mean vertical force over whole strides")
    assert s.attrs["body_mass_strides"] >= 10


def test_body_mass_sources():
    assert _read("pig", "PiG_Motion-FlatFoot-Full.c3d").attrs["body_mass_kg"] == 47.5
    assert "PROCESSING" in _read("pig", "PiG_Motion-FlatFoot-Full.c3d").attrs["body_mass_source"]
    s = read_c3d(shared_file("pig", "PiG_Motion-FlatFoot-Full.c3d"), body_mass_kg=50.5)
    assert s.attrs["body_mass_kg"] == 50.5 and s.attrs["body_mass_source"] == "argument"
    # overground running over a row of plates: whole strides on the plates
    run = _read("running", "JA1Gait21.c3d").attrs
    stand = _read("running", "JA1Static05.c3d").attrs
    assert run["body_mass_source"].startswith("force")
    assert run["body_mass_kg"] == pytest.approx(stand["body_mass_kg"], rel=0.02)
    assert "loaded throughout" in stand["body_mass_source"]
    # a stated mass is checked against the plates when they allow an estimate
    cal = _read("pig", "PiG_Calibration-FlatFoot-Full.c3d").attrs
    assert cal["body_mass_kg"] == 47.5
    assert cal["body_mass_force_estimate_kg"] == pytest.approx(47.5, rel=0.05)


def test_body_mass_estimate_needs_whole_strides():
    s = _read("importer", "Qualisys.c3d")  # walking over two plates
    fz = s.force.wrench[:, :, 2].astype(np.float64).sum(axis=1)
    assert np.isnan(estimate_body_weight(fz, s.force.rate_hz)[0])
    assert s.attrs["body_mass_source"] == "unknown" and np.isnan(s.attrs["body_mass_kg"])


def test_import_without_any_body_mass_is_an_input_error(tmp_path, capsys):
    with pytest.raises(InputError, match="--body-mass"):
        import_c3d(shared_file("importer", "Qualisys.c3d"), tmp_path / "q.h5")
    from treadlab.pipeline.cli import main

    rc = main(["import", str(shared_file("importer", "Qualisys.c3d")), "-o",
               str(tmp_path / "q.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "pass --body-mass" in err[0]


def test_console_script_prints_one_line(tmp_path):
    """The real console script (its own logging set-up, no pytest capture): one line, exit 1."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "treadlab.pipeline.cli", "import",
                           str(shared_file("importer", "Qualisys.c3d")), "-o",
                           str(tmp_path / "q.h5")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("treadlab: ") and "Qualisys.c3d" in lines[0]
    assert not (tmp_path / "q.h5").exists()


# --- events, clock -----------------------------------------------------------------------------

def test_vicon_events_match_force_threshold():
    s = _read("running", "JA1Gait21.c3d")
    ev = s.reference["events"]
    assert len(ev["time"]) == 12
    assert set(ev["kind"]) == {"foot_strike", "foot_off"} and set(ev["side"]) == {0, 1}
    fz = s.force.wrench[:, :, 2].astype(np.float64).sum(axis=1)
    pairs = _stance_slices(fz, s.force.rate_hz)
    t = s.force.time
    for time, kind in zip(ev["time"], ev["kind"]):
        if not 0 < time < t[-1]:
            continue
        marks = [t[a] for a, _ in pairs] if kind == "foot_strike" else [t[b] for _, b in pairs]
        if marks:
            d = np.min(np.abs(np.asarray(marks) - time))
            if d < 0.05:  # events off the plates have no force to compare with
                assert d <= 0.008


def test_flat_event_times_pig():
    s = _read("pig", "PiG_Motion-FlatFoot-Full.c3d")
    ev = s.reference["events"]
    assert len(ev["time"]) == 12
    assert np.all(ev["time"] >= 0)  # a naive reader finds bogus events at t = 0 - offset
    assert ev["time"][0] == pytest.approx(1.53 - 147 / 100, abs=1e-5)
    assert ev["kind"].count("foot_strike") == 7 and ev["kind"].count("foot_off") == 5
    assert ev["source"][0] == "Right:Foot Strike" and ev["side"][0] == 1


def test_qualisys_labels_without_contexts():
    s = _read("importer", "Qualisys.c3d")
    ev = s.reference["events"]
    first = 704 / 200.0
    np.testing.assert_allclose(ev["time"],
                               np.array([3.59, 3.685, 4.05, 4.16, 4.535, 4.65, 5.03]) - first,
                               atol=1e-5)
    assert ev["source"] == ["LHS", "RTO", "RHS", "LTO", "LHS", "RTO", "RHS"]
    assert list(ev["side"]) == [0, 1, 1, 0, 0, 1, 1]
    assert ev["kind"] == ["foot_strike", "foot_off", "foot_strike", "foot_off", "foot_strike",
                          "foot_off", "foot_strike"]


def test_motion_analysis_codes_in_contexts():
    s = _read("importer", "MotionAnalysis_Walk1.c3d")
    ev = s.reference["events"]
    assert len(ev["time"]) == 8
    by = {(int(side), kind) for side, kind in zip(ev["side"], ev["kind"])}
    assert by == {(0, "foot_strike"), (1, "foot_strike"), (0, "foot_off"), (1, "foot_off")}
    lhs = [t for t, sd, k in zip(ev["time"], ev["side"], ev["kind"])
           if sd == 0 and k == "foot_strike"]
    np.testing.assert_allclose(lhs, [0.567, 1.75], atol=1e-3)


def test_first_frame_offset_gait_pig_nz():
    s = _read("importer", "gait-pig-nz.c3d")
    assert s.attrs["c3d_first_frame"] == 300
    assert s.markers.time[0] == 0.0 and s.force.time[0] == 0.0
    ev = s.reference["events"]
    # right foot strike stored at 3.1333 s on the file clock = frame 377 (1-based)
    assert ev["time"][0] == pytest.approx(3.133333 - 299 / 120, abs=1e-5)
    # and the force on the plate it lands on rises within a frame of it
    fz = s.force.wrench[:, :, 2].astype(np.float64)
    k = int(np.argmax(fz.max(axis=0)))
    onset = s.force.time[np.argmax(fz[:, k] > 20.0)]
    assert abs(onset - ev["time"][0]) < 1.0 / 120 + 1e-3


# --- markers ---------------------------------------------------------------------------------

def test_exact_zero_markers_become_nan():
    c = _ez("importer", "gait-pig-nz.c3d")
    pts = c["data"]["points"][:3]
    s = _read("importer", "gait-pig-nz.c3d")
    n_zero = 0
    for k, j in enumerate(s.attrs["c3d_marker_index"]):
        if j < 0:
            continue
        zeros = np.all(pts[:, j, :] == 0, axis=0)
        got = s.markers.positions[:, k, :]
        assert np.all(np.isnan(got[zeros]))
        assert not np.any(np.all(got == 0, axis=1))
        n_zero += int(zeros.sum())
    assert n_zero == 602  # the unlabelled *5 and *10 stored as zeros throughout
    assert np.isnan(s.markers.positions[:, :, 0]).sum() == n_zero


def test_model_outputs_go_to_reference_points():
    s = _read("pig", "PiG_Motion-FlatFoot-Full.c3d")
    pts = s.reference["points"]
    for name in ("LPelvisAngles", "RHipAngles", "LKneeAngles", "PELO", "LFEO", "LThoraxAngles"):
        assert name in pts and name not in s.markers.labels
    for name in ("LASI", "RPSI", "LHEE", "RTOE", "C7"):
        assert name in s.markers.labels and name not in pts
    c = _ez("pig", "PiG_Motion-FlatFoot-Full.c3d")
    labels = c["parameters"]["POINT"]["LABELS"]["value"]
    raw = c["data"]["points"][:3, labels.index("LPelvisAngles"), :].T
    np.testing.assert_allclose(pts["LPelvisAngles"], raw, atol=1e-4)  # not rotated
    assert s.reference["point_units"]["LPelvisAngles"] == "deg"
    pelo = c["data"]["points"][:3, labels.index("PELO"), :]
    np.testing.assert_allclose(pts["PELO"], (s.attrs["c3d_axes"] @ pelo).T, atol=1e-3)


def test_cgm24_outputs():
    s = _read("pig", "CGM24_Walking01.c3d")
    pts = s.reference["points"]
    for name in ("LHipAngles_CGM_2.4", "LHJC_CGM_2.4", "PELVIS_CGM_2.4O", "LHipAngles"):
        assert name in pts
    assert all("_CGM" not in lab for lab in s.markers.labels)


def test_subject_measurements():
    s = _read("pig", "PiG_Motion-FlatFoot-Full.c3d")
    assert s.subject["leg_length_left_mm"] == 800.0
    assert s.subject["inter_asis_mm"] == pytest.approx(199.902, abs=1e-3)
    assert s.subject["knee_width_right_mm"] == 105.0
    assert s.subject["ankle_width_left_mm"] == 55.0
    assert s.subject["height_mm"] == 1505.0
    # zeros in PROCESSING mean "not measured"
    assert "inter_asis_mm" not in _read("pig", "PiG_Calibration-FlatFoot-Hole.c3d").subject


def test_dec_and_intel_files_read_the_same():
    a = _read("importer", "Eb015pr.c3d")
    b = _read("importer", "Eb015vi.c3d")
    np.testing.assert_allclose(a.markers.positions, b.markers.positions, atol=0.2,
                               equal_nan=True)
    np.testing.assert_allclose(a.force.wrench, b.force.wrench, atol=1.0)


# --- malformed files -------------------------------------------------------------------------

@pytest.mark.parametrize("name,what", [("Empty.c3d", "empty"),
                                       ("bad_parameter_section.c3d", "parameter section"),
                                       ("Eb015si.c3d", "MIPS")])
def test_malformed_files_fail_cleanly(name, what):
    path = shared_file("importer", name)
    with pytest.raises(InputError, match=what) as exc:
        read_c3d(path)
    assert str(exc.value).startswith(str(path))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["Empty.c3d", "bad_parameter_section.c3d", "Eb015si.c3d"])
def test_malformed_files_through_the_cli(name, tmp_path, capsys):
    from treadlab.pipeline.cli import main

    path = shared_file("importer", name)
    rc = main(["import", str(path), "-o", str(tmp_path / "x.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("treadlab: ") and name in err[0]
    assert "Traceback" not in err[0]
    assert not (tmp_path / "x.h5").exists()


def test_missing_and_non_c3d_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_c3d(tmp_path / "nope.c3d")
    bad = tmp_path / "bad.c3d"
    bad.write_bytes(b"\x02\x51" + bytes(1022))
    with pytest.raises(InputError, match="not a C3D file"):
        read_c3d(bad)


def test_cli_import_treadmill_run(tmp_path, capsys):
    from treadlab.acquisition.archive import read_session, validate_session
    from treadlab.pipeline.cli import main

    out = tmp_path / "s.h5"
    rc = main(["import", str(shared_file("running", "RBDS001runT35.c3d")), "-o", str(out),
               "--subject", "RBDS001"])
    assert rc == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == str(out)
    assert validate_session(out) == []
    s = read_session(out)
    assert s.attrs["subject_id"] == "RBDS001"
    assert s.attrs["body_mass_kg"] == pytest.approx(60.4, abs=1.0)
    assert s.force.wrench.shape == (9000, 1, 6) and s.markers.positions.shape[0] == 4500
    mem = _read("running", "RBDS001runT35.c3d")  # what was written is what was read
    np.testing.assert_array_equal(s.markers.positions, mem.markers.positions)
    np.testing.assert_array_equal(s.force.wrench, mem.force.wrench)
    assert s.markers.labels == mem.markers.labels


# --- plate types 1, 3, 4 and polarity: the Qualisys type-2 plates rewritten ---------------------

@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    """``rewritten(kind)``: the path of a :func:`_rewrite_plates` file, written once."""
    folder = tmp_path_factory.mktemp("plates")
    return functools.lru_cache(maxsize=None)(lambda kind: _rewrite_plates(folder, kind))


def _rewrite_plates(tmp_path, kind: str):
    """Qualisys.c3d with its two type-2 plates re-encoded as ``kind`` (same physical wrench)."""
    src = shared_file("importer", "Qualisys.c3d")
    c = ezc3d.c3d(str(src))
    fp = c["parameters"]["FORCE_PLATFORM"]
    an = np.array(c["data"]["analogs"], dtype=np.float64)
    ch = np.asarray(fp["CHANNEL"]["value"]) - 1
    origin = np.asarray(fp["ORIGIN"]["value"], dtype=np.float64)
    f_all = [an[0, ch[:3, i]] for i in range(2)]
    m_all = [an[0, ch[3:6, i]] for i in range(2)]
    if kind == "type4":
        cal = np.diag([500.0, 500.0, 1000.0, 800.0, 250.0, 400.0])
        cal = cal + 0.02 * np.arange(36).reshape(6, 6) % 7  # some cross-talk, invertible
        inv = np.linalg.inv(cal)
        for i in range(2):
            an[0, ch[:, i]] = inv @ np.vstack([f_all[i], m_all[i]])
        fp["TYPE"]["value"] = np.array([4, 4])
        fp["CAL_MATRIX"]["value"] = np.stack([cal, cal], axis=2)
    elif kind == "type1":
        for i in range(2):
            f, m = f_all[i], m_all[i]
            o = -origin[:, i] if origin[2, i] > 0 else origin[:, i]
            mc = m + np.cross(f.T, o).T
            loaded = np.abs(f[2]) > 1.0
            px = np.where(loaded, -mc[1] / np.where(loaded, f[2], 1), 0.0)
            py = np.where(loaded, mc[0] / np.where(loaded, f[2], 1), 0.0)
            tz = np.where(loaded, mc[2] - (px * f[1] - py * f[0]), 0.0)
            an[0, ch[:, i]] = np.vstack([f, px, py, tz])
        fp["TYPE"]["value"] = np.array([1, 1])
    elif kind == "type3":
        a, b, az0 = 210.0, 160.0, -45.0
        new_ch = np.arange(16).reshape(2, 8).T  # 0-based analog channels 0..15
        for i in range(2):
            f, m = f_all[i], m_all[i]
            o = -origin[:, i] if origin[2, i] > 0 else origin[:, i]
            mk = m + np.cross(f.T, o).T - np.cross(f.T, np.array([0, 0, az0])).T
            d = mk[2] / (2 * b)
            lhs = np.array([[1, 1, 1, 1], [b, b, -b, -b], [-a, a, a, -a], [1, -1, 1, -1]])
            fz = np.linalg.solve(lhs, np.vstack([f[2], mk[0], mk[1], np.zeros_like(f[2])]))
            an[0, new_ch[:, i]] = np.vstack([f[0] / 2 - d, f[0] / 2 + d, f[1] / 2, f[1] / 2, fz])
        fp["TYPE"]["value"] = np.array([3, 3])
        fp["CHANNEL"]["value"] = new_ch + 1
        fp["ORIGIN"]["value"] = np.array([[a, a], [b, b], [az0, az0]])
    elif kind == "inverted":
        for i in range(2):
            an[0, ch[:, i]] = -an[0, ch[:, i]]
    else:
        raise ValueError(kind)
    c["data"]["analogs"] = an
    out = tmp_path / f"qualisys_{kind}.c3d"
    c.write(str(out))
    return out


@pytest.mark.parametrize("kind", ["type4", "type3", "type1", "inverted"])
def test_plate_types_give_the_same_wrench(kind, rewritten):
    base = _read("importer", "Qualisys.c3d")
    s = read_c3d(rewritten(kind))
    w0 = base.force.wrench.astype(np.float64)
    w = s.force.wrench.astype(np.float64)
    np.testing.assert_allclose(w[..., :3], w0[..., :3], atol=2e-2)
    loaded = np.abs(w0[..., 2]) > 50.0 if kind == "type1" else np.ones(w0.shape[:2], bool)
    np.testing.assert_allclose(w[..., 3:][loaded], w0[..., 3:][loaded], atol=2e-3)
    np.testing.assert_allclose(s.force.origin, base.force.origin)
    expect_type = 2 if kind == "inverted" else int(kind[-1])
    assert list(s.attrs["force_plate_types"]) == [expect_type] * 2
    assert loaded.sum() > 500
    assert list(s.attrs["force_polarity_flipped"]) == ([1, 2] if kind == "inverted" else [])


@pytest.mark.parametrize("kind", ["type4", "type3"])
def test_plate_types_3_and_4_agree_with_ezc3d(kind, rewritten):
    path = rewritten(kind)
    s = read_c3d(path)
    c = ezc3d.c3d(str(path), extract_forceplat_data=True)
    a = s.attrs["c3d_axes"]
    for i, pf in enumerate(c["data"]["platform"]):
        w = s.force.wrench[:, i, :].astype(np.float64)
        np.testing.assert_allclose(w[:, :3], (a @ pf["force"]).T, atol=2e-2)
        np.testing.assert_allclose(w[:, 3:], (a @ pf["moment"]).T / 1000.0, atol=2e-3)


def test_plate_type1_centre_of_pressure_agrees_with_ezc3d(rewritten):
    # ezc3d's type-1 moment has the opposite sign to its type-2 moment; its centre of pressure
    # is the unambiguous check.
    path = rewritten("type1")
    s = read_c3d(path)
    c = ezc3d.c3d(str(path), extract_forceplat_data=True)
    a = s.attrs["c3d_axes"]
    for i, pf in enumerate(c["data"]["platform"]):
        w = s.force.wrench[:, i, :].astype(np.float64)
        ok = w[:, 2] > 50.0
        cop_x = s.force.origin[i, 0] - 1000.0 * w[ok, 4] / w[ok, 2]
        cop_y = s.force.origin[i, 1] + 1000.0 * w[ok, 3] / w[ok, 2]
        expect = (a @ pf["center_of_pressure"])[:, ok]
        np.testing.assert_allclose(cop_x, expect[0], atol=0.05)
        np.testing.assert_allclose(cop_y, expect[1], atol=0.05)


def test_metre_files_are_converted_to_mm(tmp_path):
    src = shared_file("importer", "Qualisys.c3d")
    base = _read("importer", "Qualisys.c3d")
    c = ezc3d.c3d(str(src))
    c["parameters"]["POINT"]["UNITS"]["value"] = ["m"]
    pts = np.array(c["data"]["points"])
    pts[:3] /= 1000.0
    c["data"]["points"] = pts
    fp = c["parameters"]["FORCE_PLATFORM"]
    fp["CORNERS"]["value"] = np.asarray(fp["CORNERS"]["value"]) / 1000.0
    fp["ORIGIN"]["value"] = np.asarray(fp["ORIGIN"]["value"]) / 1000.0
    an = np.array(c["data"]["analogs"], dtype=np.float64)
    ch = np.asarray(fp["CHANNEL"]["value"]) - 1
    units = list(c["parameters"]["ANALOG"]["UNITS"]["value"])
    for i in range(ch.shape[1]):
        an[0, ch[3:6, i]] /= 1000.0  # N·mm → N·m, the C3D convention N × POINT:UNITS
        for j in ch[3:6, i]:
            units[j] = "Nm"
    c["parameters"]["ANALOG"]["UNITS"]["value"] = units
    c["data"]["analogs"] = an
    out = tmp_path / "metres.c3d"
    c.write(str(out))
    s = read_c3d(out)
    np.testing.assert_allclose(s.markers.positions, base.markers.positions, atol=0.05,
                               equal_nan=True)
    np.testing.assert_allclose(s.force.origin, base.force.origin, atol=1e-3)
    np.testing.assert_allclose(s.force.corners, base.force.corners, atol=1e-3)
    np.testing.assert_allclose(s.force.wrench, base.force.wrench, atol=2e-3)


def test_moment_units_mislabelled_nm_are_caught():
    # gait-pig-nz labels its N·mm moment channels "Nm": read as N·m the centre of pressure
    # would lie metres off the plate
    s = _read("importer", "gait-pig-nz.c3d")
    assert "centre-of-pressure check" in s.attrs["force_moment_units"]
    w = s.force.wrench.astype(np.float64)
    k = int(np.argmax(w[:, :, 2].max(axis=0)))
    ok = w[:, k, 2] > 200
    cop = s.force.origin[k, :2] + 1000 * np.column_stack([-w[ok, k, 4], w[ok, k, 3]]) \
        / w[ok, k, 2:3]
    lo, hi = s.force.corners[k, :, :2].min(axis=0), s.force.corners[k, :, :2].max(axis=0)
    assert np.all((cop > lo - 10) & (cop < hi + 10))


@pytest.mark.parametrize("context,label,side,kind", [
    ("Left", "Foot Strike", 0, "foot_strike"),
    ("Right", "Foot Off", 1, "foot_off"),
    ("", "LHS", 0, "foot_strike"),       # Qualisys: code in LABELS, no CONTEXTS
    ("RTO", "", 1, "foot_off"),          # Motion Analysis: code in CONTEXTS, empty LABELS
    ("", "Right Foot Strike", 1, "foot_strike"),
    ("", "L_FS", 0, "foot_strike"),
    ("General", "Event", -1, "event"),
])
def test_event_decoding(context, label, side, kind):
    from treadlab.acquisition.io.c3d_import import _decode_event

    assert _decode_event(context, label) == (side, kind)


def test_bad_body_mass_argument():
    with pytest.raises(InputError, match="positive"):
        read_c3d(shared_file("running", "RBDS001static.c3d"), body_mass_kg=-3.0)


def test_cgm_names_and_virtual_markers():
    s = _read("running", "RBDS001runT35.c3d")
    lab = s.markers.labels
    for name in ("LASI", "RASI", "LPSI", "RPSI", "LHEE", "RHEE", "LMT1", "RMT5"):
        assert name in lab
    assert "L.Heel.Bottom" in lab  # unknown names are kept
    assert s.attrs["c3d_virtual_markers"] == ["SACR", "LTOE", "RTOE"]
    p = s.markers.positions
    np.testing.assert_allclose(p[:, lab.index("LTOE")],
                               (p[:, lab.index("LMT1")] + p[:, lab.index("LMT5")]) / 2,
                               atol=1e-3, equal_nan=True)
    assert list(s.attrs["c3d_marker_index"][-3:]) == [-1, -1, -1]


def test_import_with_lab_config_marker_names(tmp_path):
    from treadlab.acquisition.archive import read_session
    from treadlab.config.loader import shipped_lab_path
    from treadlab.pipeline.cli import main

    cfg = tmp_path / "lab.toml"
    cfg.write_text(shipped_lab_path("single_belt").read_text()
                   + '\n[marker_names]\n"L.Heel.Bottom" = "LHEB"\n')
    out = tmp_path / "s.h5"
    rc = main(["import", str(shared_file("running", "RBDS001static.c3d")), "-o", str(out),
               "--config", str(cfg), "--body-mass", "61.5"])
    assert rc == 0
    s = read_session(out)
    assert "LHEB" in s.markers.labels and "L.Heel.Bottom" not in s.markers.labels
    assert s.attrs["body_mass_kg"] == 61.5 and s.attrs["body_mass_source"] == "argument"
    assert not s.attrs["lab"].startswith("C3D import")


def test_truncated_file_is_an_input_error(tmp_path):
    # ezc3d reads a cut file silently (and rewrites its header); the importer compares with
    # the frames the original header declared
    cut = tmp_path / "cut.c3d"
    cut.write_bytes(shared_file("running", "RBDS001runT35.c3d").read_bytes()[:100_000])
    with pytest.raises(InputError, match="truncated: the header declares 4500 frames"):
        read_c3d(cut)
    head = tmp_path / "head.c3d"
    head.write_bytes(shared_file("running", "RBDS001runT35.c3d").read_bytes()[:4000])
    with pytest.raises(InputError, match="parameter section"):
        read_c3d(head)


def test_bad_force_platform_parameters(tmp_path):
    src = shared_file("importer", "Qualisys.c3d")
    c = ezc3d.c3d(str(src))
    c["parameters"]["FORCE_PLATFORM"]["CHANNEL"]["value"] = np.array([[1, 2, 3, 4, 5, 6],
                                                                      [7, 8, 9, 10, 11, 99]]).T
    bad = tmp_path / "channel.c3d"
    c.write(str(bad))
    with pytest.raises(InputError, match=r"FORCE_PLATFORM:CHANNEL.*outside 1\.\.69"):
        read_c3d(bad)
    c = ezc3d.c3d(str(src))
    c["parameters"]["FORCE_PLATFORM"]["TYPE"]["value"] = np.array([2, 7])
    bad = tmp_path / "type.c3d"
    c.write(str(bad))
    with pytest.raises(InputError, match=r"FORCE_PLATFORM:TYPE\[2\].*type 7 is not supported"):
        read_c3d(bad)


def test_contact_hysteresis_matches_a_plain_loop():
    """The importer finds contacts with the kernel (docs/metrics.md §2): its toe offs and the
    first sample reaching ``strike_n`` in each stance are the plain hysteresis loop's."""
    def loop(fz, strike_n, off_n):
        strikes, offs, loaded, armed = [], [], False, False
        for i, v in enumerate(fz):
            if not loaded and v < off_n:
                armed = True
            elif not loaded and armed and v >= strike_n:
                strikes.append(i)
                loaded = True
            elif loaded and v < off_n:
                offs.append(i)
                loaded, armed = False, True
        return strikes, offs

    rng = np.random.default_rng(7)
    for _ in range(200):
        fz = rng.choice([0.0, 10.0, 30.0, 60.0, 100.0], size=rng.integers(0, 50))
        c, _ = detect_contacts(fz, 1000.0, ContactParams(min_contact_s=0.0, min_flight_s=0.0))
        strikes = [int(a + np.argmax(fz[a:b] >= 50.0)) for a, b in zip(c.i_strike, c.i_off)]
        want_strikes, want_offs = loop(fz, 50.0, 20.0)
        assert list(c.i_off) == want_offs
        assert strikes == want_strikes[:len(want_offs)]
