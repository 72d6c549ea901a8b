"""joint_angles: exact geometry, missing markers, compiled vs reference, Plug-in Gait validation."""
import importlib
import importlib.util

import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.kernels import _angles_common, _angles_ref, _compiled, _gaps_ref, angles
from treadlab.kernels.gaps import fill_gaps

IMPLS = [pytest.param(angles.joint_angles, id="cython"),
         pytest.param(_angles_ref.joint_angles, id="numpy")]
pytestmark = pytest.mark.timeout(60)

SUBJECT = dict(leg_length_left_mm=900.0, leg_length_right_mm=880.0, inter_asis_mm=240.0,
               knee_width_left_mm=100.0, knee_width_right_mm=104.0, ankle_width_left_mm=70.0,
               ankle_width_right_mm=72.0, marker_diameter_mm=14.0)
CGM = ["LASI", "RASI", "LPSI", "RPSI", "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
       "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE", "C7", "T10", "CLAV", "STRN"]


def _rx(b):
    c, s = np.cos(b), np.sin(b)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(g):
    c, s = np.cos(g), np.sin(g)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _yxz(a, b, c):
    return _ry(np.radians(a)) @ _rx(np.radians(b)) @ _rz(np.radians(c))


def _pose(truth, subject=SUBJECT):
    """Markers (m, 20, 3) built from known angles (dict of (m,) arrays, degrees)."""
    _, params, _, _ = _angles_ref.resolve_model(np.zeros((0, 0, 3)), [], subject)
    m = len(truth["pelvis_tilt"])
    half = subject["inter_asis_mm"] / 2
    out = np.zeros((m, len(CGM), 3))
    for i in range(m):
        t = {k: v[i] for k, v in truth.items()}
        origin = np.array([1000.0 + 7 * i, 15.0, 950.0])
        rp = _yxz(t["pelvis_tilt"], t["pelvis_obliquity"], -t["pelvis_rotation"])
        mk = {"LASI": origin + rp @ [0, half, 0], "RASI": origin + rp @ [0, -half, 0],
              "LPSI": origin + rp @ [-150, 45, 0], "RPSI": origin + rp @ [-150, -45, 0]}
        centre = origin + rp @ [-75, 0, 0]
        for k, (s, side, sign) in enumerate((("L", "left", 1), ("R", "right", -1))):
            hjc = origin + rp @ params[3 * k:3 * k + 3]
            rt = rp @ _yxz(-t[f"hip_flexion_{side}"], -sign * t[f"hip_adduction_{side}"], 0)
            kjc = hjc + rt @ [0, 0, -420]
            mk[s + "KNE"] = kjc + rt @ [0, sign * params[6 + k], 0]
            mk[s + "THI"] = hjc + rt @ [0, sign * 80, -200]
            rs = rt @ _yxz(t[f"knee_flexion_{side}"], 0, 0)
            ajc = kjc + rs @ [0, 0, -400]
            mk[s + "ANK"] = ajc + rs @ [0, sign * params[8 + k], 0]
            mk[s + "TIB"] = kjc + rs @ [0, sign * 70, -200]
            rf = rs @ _yxz(-t[f"ankle_dorsiflexion_{side}"], 0, 0)
            mk[s + "HEE"] = ajc + rf @ [-60, 0, -50]
            mk[s + "TOE"] = mk[s + "HEE"] + rf @ [200, 0, 0]
        lean = np.radians(t["trunk_lean"])
        axis = np.array([np.sin(lean), 0.0, np.cos(lean)])
        front = np.array([np.cos(lean), 0.0, -np.sin(lean)])
        top, bottom = centre + 450 * axis, centre + 200 * axis
        mk.update(C7=top - 80 * front, CLAV=top + 80 * front, T10=bottom - 90 * front,
                  STRN=bottom + 90 * front)
        out[i] = [mk[name] for name in CGM]
    return out


def _truth(m=40, seed=0):
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: rng.uniform(lo, hi, m)  # noqa: E731
    return {"pelvis_tilt": u(0, 20), "pelvis_obliquity": u(-8, 8), "pelvis_rotation": u(-12, 12),
            "hip_flexion_left": u(-20, 45), "hip_flexion_right": u(-20, 45),
            "hip_adduction_left": u(-10, 10), "hip_adduction_right": u(-10, 10),
            "knee_flexion_left": u(0, 90), "knee_flexion_right": u(0, 90),
            "ankle_dorsiflexion_left": u(-25, 20), "ankle_dorsiflexion_right": u(-25, 20),
            "trunk_lean": u(-5, 20)}


@pytest.mark.parametrize("impl", IMPLS)
def test_known_pose_is_recovered_exactly(impl):
    truth = _truth()
    pos = _pose(truth)
    result = impl(pos.astype(np.float64), CGM, SUBJECT)
    assert result.names[:12] == list(_angles_ref.NAMES[:12])
    assert result.reasons == {}
    for name, expected in truth.items():
        np.testing.assert_allclose(result[name], expected, atol=1e-8, err_msg=name)
    # 2-D measures, from their definitions on the markers
    p = {n: pos[:, j] for j, n in enumerate(CGM)}
    centre = 0.25 * (p["LASI"] + p["RASI"] + p["LPSI"] + p["RPSI"])
    np.testing.assert_allclose(result["heel_lead_left"], p["LHEE"][:, 0] - centre[:, 0],
                               atol=1e-9)
    d = p["RANK"] - p["RKNE"]
    np.testing.assert_allclose(result["shank_angle_right"],
                               np.degrees(np.arctan2(d[:, 0], -d[:, 2])), atol=1e-9)
    assert result.units["heel_lead_left"] == "mm" and result.units["hip_flexion_left"] == "deg"


@pytest.mark.parametrize("impl", IMPLS)
def test_two_d_signs(impl):
    """Ankle ahead of the knee and knee ahead of the thigh marker at a flexed-hip strike."""
    truth = {k: np.zeros(1) for k in _truth(1)}
    truth["hip_flexion_left"][:] = 30.0
    truth["knee_flexion_left"][:] = 10.0
    result = impl(_pose(truth), CGM, SUBJECT)
    assert result["shank_angle_left"][0] > 0 and result["thigh_angle_left"][0] > 0
    np.testing.assert_allclose(result["shank_angle_left"], 20.0, atol=1e-6)
    np.testing.assert_allclose(result["thigh_angle_left"], 30.0, atol=1e-6)
    assert result["heel_lead_left"][0] > result["heel_lead_right"][0]


@pytest.mark.parametrize("impl", IMPLS)
def test_missing_markers_give_nan_and_reasons(impl):
    pos = _pose(_truth(10))
    keep = [j for j, n in enumerate(CGM) if n not in ("T10", "CLAV", "STRN", "RTIB")]
    labels = [CGM[j] for j in keep]
    result = impl(pos[:, keep], labels, SUBJECT)
    assert "trunk_lean" not in result.reasons          # C7 over the pelvis centre
    assert result.attrs["trunk_lean_method"] == "C7 over the pelvis centre"
    assert np.isfinite(result["trunk_lean"]).all()
    for name in ("knee_flexion_right", "ankle_dorsiflexion_right"):
        assert "RTIB" in result.reasons[name] and np.isnan(result[name]).all()
    assert np.isfinite(result["knee_flexion_left"]).all()
    assert np.isfinite(result["hip_flexion_right"]).all()

    no_trunk = [j for j, n in enumerate(CGM) if n not in ("C7", "T10", "CLAV", "STRN")]
    result = impl(pos[:, no_trunk], [CGM[j] for j in no_trunk], SUBJECT)
    assert np.isnan(result["trunk_lean"]).all() and "trunk" in result.reasons["trunk_lean"]

    no_pelvis = [j for j, n in enumerate(CGM) if n not in ("LPSI", "RPSI")]
    result = impl(pos[:, no_pelvis], [CGM[j] for j in no_pelvis], SUBJECT)
    for name in ("pelvis_tilt", "hip_flexion_left", "knee_flexion_right", "heel_lead_left"):
        assert name in result.reasons and np.isnan(result[name]).all()
    for name in ("thigh_angle_left", "shank_angle_right"):   # no hip centre needed
        assert name not in result.reasons and np.isfinite(result[name]).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_sacrum_replaces_psis(impl):
    pos = _pose(_truth(12))
    full = impl(pos, CGM, SUBJECT)
    sacr = 0.5 * (pos[:, CGM.index("LPSI")] + pos[:, CGM.index("RPSI")])
    keep = [j for j, n in enumerate(CGM) if n not in ("LPSI", "RPSI")]
    alt = impl(np.concatenate([pos[:, keep], sacr[:, None]], axis=1),
               [CGM[j] for j in keep] + ["SACR"], SUBJECT)
    assert alt.attrs["pelvis_posterior"] == "SACR"
    np.testing.assert_allclose(alt.values, full.values, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_frames_only_touch_dependent_angles(impl):
    pos = _pose(_truth(20))
    pos[5, CGM.index("LTHI")] = np.nan
    pos[9, CGM.index("RASI")] = np.nan
    result = impl(pos.astype(np.float32), CGM, SUBJECT)
    for name in ("hip_flexion_left", "knee_flexion_left", "ankle_dorsiflexion_left",
                 "thigh_angle_left"):
        assert np.isnan(result[name][5]), name
    assert np.isfinite(result["hip_flexion_right"][5]) and np.isfinite(result["pelvis_tilt"][5])
    pelvic = [j for j in range(12) if result.names[j] != "trunk_lean"]  # thorax: no pelvis
    assert np.isnan(result.values[9, pelvic]).all()
    assert np.isfinite(result["trunk_lean"][9])
    assert np.isfinite(result["shank_angle_left"][9])
    assert np.isfinite(np.delete(result.values, [5, 9], axis=0)).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_recording_and_defaults(impl):
    result = impl(np.zeros((0, len(CGM), 3), np.float32), CGM, None)
    assert result.values.shape == (0, len(_angles_ref.NAMES))
    assert result.attrs["leg_length_left_mm_source"] == "default"
    assert result.attrs["leg_length_left_mm"] == _angles_common.DEFAULT_LEG_LENGTH_MM
    result = impl(_pose(_truth(5)), CGM, {})
    assert result.attrs["leg_length_left_mm_source"] == "markers"
    assert result.attrs["inter_asis_mm_source"] == "markers"
    assert result.attrs["knee_width_left_mm_source"] == "default"
    np.testing.assert_allclose(result.attrs["inter_asis_mm"], 240.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_bad_arguments(impl):
    with pytest.raises(ValueError):
        impl(np.zeros((4, 3)), CGM, None)
    with pytest.raises(ValueError):
        impl(np.zeros((4, 3, 3)), CGM, None)


@pytest.mark.parametrize("seed", range(3))
def test_compiled_matches_reference_with_noise_and_gaps(seed):
    rng = np.random.default_rng(seed)
    pos = _pose(_truth(60, seed)) + rng.normal(scale=3.0, size=(60, len(CGM), 3))
    pos[rng.random((60, len(CGM))) < 0.1] = np.nan
    pos = pos.astype(np.float32)
    a = angles.joint_angles(pos, CGM, {})
    b = _angles_ref.joint_angles(pos, CGM, {})
    assert a.reasons == b.reasons and a.attrs == b.attrs
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-9)


# ---------------------------------------------------------------- Plug-in Gait validation

def _read_pig(path):
    """Markers in the progression frame, PiG outputs and PROCESSING measurements (ezc3d)."""
    ezc3d = pytest.importorskip("ezc3d")
    c3d = ezc3d.c3d(str(path))
    params = c3d["parameters"]
    labels = [s.strip() for s in params["POINT"]["LABELS"]["value"]]
    pts = c3d["data"]["points"][:3].transpose(2, 1, 0).astype(np.float64)
    pts[c3d["data"]["meta_points"]["residuals"][0].T < 0] = np.nan
    proc = {k: float(v["value"][0]) for k, v in params.get("PROCESSING", {}).items()
            if isinstance(v, dict) and len(v.get("value", [])) > 0}
    # Plug-in Gait expresses the pelvis against the progression frame: the lab axis (+-X or +-Y)
    # the pelvis travelled along most becomes +X, Z stays up.
    mid = 0.5 * (pts[:, labels.index("LASI")] + pts[:, labels.index("RASI")])
    mid = mid[np.isfinite(mid).all(axis=1)]
    travel = mid[-1] - mid[0]
    axis = int(np.argmax(np.abs(travel[:2])))
    sign = np.sign(travel[axis])
    rot = (np.diag([sign, sign, 1.0]) if axis == 0
           else np.array([[0, sign, 0], [-sign, 0, 0], [0, 0, 1.0]]))
    subject = {"leg_length_left_mm": proc.get("LLegLength"),
               "leg_length_right_mm": proc.get("RLegLength"),
               "inter_asis_mm": proc.get("InterAsisDistance"),
               "asis_trochanter_left_mm": proc.get("LAsisTrocanterDistance"),
               "asis_trochanter_right_mm": proc.get("RAsisTrocanterDistance"),
               "knee_width_left_mm": proc.get("LKneeWidth"),
               "knee_width_right_mm": proc.get("RKneeWidth"),
               "ankle_width_left_mm": proc.get("LAnkleWidth"),
               "ankle_width_right_mm": proc.get("RAnkleWidth"),
               "marker_diameter_mm": proc.get("MarkerDiameter")}
    return labels, pts @ rot.T, pts, subject


def _rms(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    assert ok.sum() > 100
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


PIG_FILES = ["PiG_Motion-FlatFoot-Full.c3d", "PiG_Motion-FlatFoot-Hole.c3d",
             "CGM24_Walking01.c3d"]
PIG_COLUMNS = {"pelvis_tilt": ("LPelvisAngles", 0, 0.5),
               "pelvis_obliquity": ("LPelvisAngles", 1, 0.5),
               "pelvis_rotation": ("LPelvisAngles", 2, 0.5),
               "hip_flexion_left": ("LHipAngles", 0, 3.0),
               "hip_flexion_right": ("RHipAngles", 0, 3.0),
               "hip_adduction_left": ("LHipAngles", 1, 3.0),
               "hip_adduction_right": ("RHipAngles", 1, 3.0),
               # knee/ankle: regression guards (PiG's static thigh-rotation, tibial-torsion and
               # foot offsets are not modelled; measured 0.04-2.4 and 0.8-2.6 deg RMS)
               "knee_flexion_left": ("LKneeAngles", 0, 3.5),
               "knee_flexion_right": ("RKneeAngles", 0, 3.5),
               "ankle_dorsiflexion_left": ("LAnkleAngles", 0, 4.0),
               "ankle_dorsiflexion_right": ("RAnkleAngles", 0, 4.0)}


@pytest.mark.parametrize("name", PIG_FILES)
def test_plug_in_gait_angles(name):
    labels, pos, raw, subject = _read_pig(shared_file("pig", name))
    result = angles.joint_angles(pos.astype(np.float32), labels, subject)
    assert result.attrs["leg_length_left_mm_source"] == "subject"
    for column, (label, k, tolerance) in PIG_COLUMNS.items():
        rms = _rms(result[column], raw[:, labels.index(label), k])
        assert rms < tolerance, f"{name} {column}: {rms:.3f} deg RMS vs {label}"
    if "LThoraxAngles" in labels:
        assert _rms(result["trunk_lean"], raw[:, labels.index("LThoraxAngles"), 0]) < 0.5
    else:
        assert "trunk_lean" in result.reasons


def test_plug_in_gait_without_subject_measurements():
    """Defaults (leg length from the markers, default widths) keep the hips within 3 deg."""
    labels, pos, raw, _ = _read_pig(shared_file("pig", "PiG_Motion-FlatFoot-Full.c3d"))
    result = angles.joint_angles(pos, labels, {})
    assert result.attrs["leg_length_left_mm_source"] == "markers"
    for column in ("hip_flexion_left", "hip_flexion_right"):
        label, k, _ = PIG_COLUMNS[column]
        assert _rms(result[column], raw[:, labels.index(label), k]) < 3.0


def test_hole_variant_with_marker_gaps():
    """Occlusions give NaN exactly where the angle needs the missing marker; short ones fill."""
    labels, pos, raw, subject = _read_pig(shared_file("pig", "PiG_Motion-FlatFoot-Hole.c3d"))
    full = angles.joint_angles(pos, labels, subject)
    holed = pos.astype(np.float32)
    holed[100:108, labels.index("LASI")] = np.nan
    holed[200:205, labels.index("RKNE")] = np.nan
    holed[250:290, labels.index("LTOE")] = np.nan       # too long to fill
    result = angles.joint_angles(holed, labels, subject)
    pelvic = [j for j in range(12) if result.names[j] != "trunk_lean"]  # thorax: no pelvis
    assert np.isnan(result.values[100:108][:, pelvic]).all()
    assert np.isfinite(result["trunk_lean"][100:108]).all()
    assert np.isfinite(result["shank_angle_left"][100:108]).all()
    assert np.isnan(result["hip_flexion_right"][200:205]).all()
    assert np.isfinite(result["hip_flexion_left"][200:205]).all()
    assert np.isnan(result["ankle_dorsiflexion_left"][250:290]).all()
    assert np.isfinite(result["knee_flexion_left"][250:290]).all()

    filled, longest = fill_gaps(holed, 10)
    assert longest == 8
    again = angles.joint_angles(filled, labels, subject)
    assert np.isnan(again["ankle_dorsiflexion_left"][250:290]).all()
    for column, rows, tolerance in (("pelvis_tilt", slice(100, 108), 0.5),
                                    ("hip_flexion_left", slice(100, 108), 1.0),
                                    ("hip_flexion_right", slice(200, 205), 1.0)):
        err = np.abs(again[column][rows] - full[column][rows]).max()
        assert err < tolerance, (column, err)


def test_through_the_c3d_importer():
    """The same validation through acquisition.c3d_import.read_c3d (lab frame, CGM names)."""
    path = shared_file("pig", "PiG_Motion-FlatFoot-Full.c3d")
    try:
        from treadlab.acquisition.io.c3d_import import read_c3d
    except ImportError:
        pytest.skip("treadlab.acquisition.io.c3d_import not available")
    session = read_c3d(path)
    result = angles.joint_angles(session.markers.positions, session.markers.labels,
                                 session.subject)
    points = session.reference["points"]
    assert _rms(result["pelvis_tilt"], np.asarray(points["LPelvisAngles"])[:, 0]) < 0.5
    assert _rms(result["hip_flexion_left"], np.asarray(points["LHipAngles"])[:, 0]) < 3.0


@pytest.mark.parametrize("impl", IMPLS)
def test_frozen_model_makes_blocks_equal_whole(impl):
    """With a previous result's attrs as the subject, block-by-block equals whole-array."""
    pos = _pose(_truth(30)).astype(np.float32)
    model = impl(pos[:10], CGM, {}).attrs          # estimated from the first block
    whole = impl(pos, CGM, model)
    blocks = np.concatenate([impl(pos[a:a + 7], CGM, model).values for a in range(0, 30, 7)])
    np.testing.assert_array_equal(blocks, whole.values)
    assert whole.attrs["leg_length_left_mm"] == model["leg_length_left_mm"]


def test_compiled_matches_reference_on_real_markers_with_gaps():
    """docs/design.md §11: compiled and reference agree on real input with NaN gaps."""
    labels, pos, _, subject = _read_pig(shared_file("pig", "CGM24_Walking01.c3d"))
    rng = np.random.default_rng(7)
    holed = pos.astype(np.float32)
    for _ in range(30):
        j, a = rng.integers(len(labels)), rng.integers(len(pos) - 20)
        holed[a:a + rng.integers(1, 20), j] = np.nan
    for subj in (subject, {}):
        a = angles.joint_angles(holed, labels, subj)
        b = _angles_ref.joint_angles(holed, labels, subj)
        np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-9)
    filled, longest = fill_gaps(holed, 12)
    ref, ref_longest = _gaps_ref.fill_gaps(holed, 12)
    assert longest == ref_longest
    np.testing.assert_array_equal(np.isnan(filled), np.isnan(ref))
    np.testing.assert_allclose(filled, ref, rtol=0, atol=1e-3)


def _shank_sweep(n: int):
    """One standing pose per shank direction (mm): the ankle 400 mm from the knee at ``n``
    angles over the circle plus the range-reduction boundaries of the kernel's inlined atan2.
    Returns ``(positions, knee index, ankle index)``."""
    theta = np.concatenate([np.linspace(-np.pi, np.pi, n),
                            np.arctan([0.66, 1 / 0.66, 0.4375, 1 / 0.4375, 1.0]),
                            -np.arctan([0.66, 1 / 0.66, 0.4375])])
    pos = _pose(_truth(1))[[0] * theta.size]
    kne, ank = CGM.index("LKNE"), CGM.index("LANK")
    pos[:, ank] = pos[:, kne] + 400.0 * np.stack([np.sin(theta), np.zeros_like(theta),
                                                  -np.cos(theta)], axis=1)
    return pos, kne, ank


@pytest.mark.parametrize("impl", IMPLS)
def test_sagittal_angles_in_every_direction(impl):
    """The 2-D angles are atan2 of marker differences: every quadrant, the range-reduction
    boundaries of the kernel's inlined atan2 and exact zeros (signed, as libm gives them)."""
    pos, kne, ank = _shank_sweep(4001)
    special = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -400.0], [0.0, 0.0, 400.0],
                        [400.0, 0.0, 0.0], [-400.0, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    extra = pos[:len(special)].copy()
    extra[:, ank] = extra[:, kne] + special
    pos = np.concatenate([pos, extra])
    result = impl(pos, CGM, SUBJECT)
    d = pos[:, ank] - pos[:, kne]
    expected = np.degrees(np.arctan2(d[:, 0], -d[:, 2]))
    np.testing.assert_array_equal(np.isnan(result["shank_angle_left"]), np.isnan(expected))
    np.testing.assert_allclose(result["shank_angle_left"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [1, 15, 16, 17, 33, 47])
def test_compiled_matches_reference_across_block_edges(m):
    """The kernel works through the frames in blocks: counts around a block's size, with
    NaN frames at the edges, agree with the reference."""
    rng = np.random.default_rng(m)
    pos = _pose(_truth(m, m)) + rng.normal(scale=2.0, size=(m, len(CGM), 3))
    for i in (0, 15, 16, m - 1):
        if i < m:
            pos[i, rng.integers(len(CGM))] = np.nan
    a = angles.joint_angles(pos, CGM, SUBJECT)
    b = _angles_ref.joint_angles(pos, CGM, SUBJECT)
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-9)


@pytest.mark.skipif("avx2" not in _compiled.cpu_flags() or
                    importlib.util.find_spec("treadlab.kernels._angles_cy_avx2") is None,
                    reason="no AVX2 CPU or no AVX2 build")
def test_avx2_build_gives_the_baseline_bits(monkeypatch):
    """The AVX2 build evaluates a block's atan2 in a vectorised loop (selects, NaN for zeros,
    infinities and NaN, then libm for those), the baseline one by one with branches: the same
    bits, in every quadrant, at the range boundaries, at signed zeros and across block edges."""
    pos, kne, ank = _shank_sweep(2001)
    pos[:6, ank] = pos[:6, kne] + np.array([[0.0, 0.0, 0.0], [-0.0, 0.0, -400.0],
                                            [0.0, 0.0, 400.0], [400.0, 0.0, 0.0],
                                            [-400.0, 0.0, -0.0], [np.inf, 0.0, 0.0]])
    rng = np.random.default_rng(5)
    noisy = _pose(_truth(37, 37)) + rng.normal(scale=2.0, size=(37, len(CGM), 3))
    noisy[[0, 15, 16, 36], rng.integers(len(CGM), size=4)] = np.nan
    got = {}
    for name in ("_angles_cy_avx2", "_angles_cy"):
        monkeypatch.setattr(angles, "compiled", lambda _, m=name, **__: importlib.import_module(
            f"treadlab.kernels.{m}"))
        got[name] = [angles.joint_angles(p, CGM, SUBJECT).values for p in (pos, noisy)]
        got[name].append(angles.joint_angles(noisy.astype(np.float32), CGM, {}).values)
    for a, b in zip(*got.values()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def test_float32_is_read_as_is():
    """float32 positions are read without a float64 copy and give what their float64 copy
    gives, model estimates included."""
    pos = (_pose(_truth(40)) + np.random.default_rng(3).normal(size=(40, len(CGM), 3))
           ).astype(np.float32)
    a = angles.joint_angles(pos, CGM, {})
    b = angles.joint_angles(pos.astype(np.float64), CGM, {})
    assert a.attrs == b.attrs
    np.testing.assert_array_equal(a.values, b.values)
