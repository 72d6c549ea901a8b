"""CGM marker names, aliases and virtual markers."""
from __future__ import annotations

import numpy as np
import pytest

from treadlab.config import load_lab
from treadlab.config.markers import CGM_MARKERS, to_cgm, virtual_markers
from tests.conftest import shared_file


def test_cgm_set_and_identity():
    assert len(CGM_MARKERS) == 20 and len(set(CGM_MARKERS)) == 20
    assert to_cgm(list(CGM_MARKERS)) == list(CGM_MARKERS)
    assert to_cgm(["SACR", "LFHD", "Subject:LASI"]) == ["SACR", "LFHD", "LASI"]


def test_dotted_and_lab_names():
    names = ["L.ASIS", "R.PSIS", "L.Heel.Top", "R.Knee", "L.Ankle", "L.MT2", "R.MT1",
             "L.Shank.Top.Lateral", "R_IAS", "CV7", "RHEEL", "SXS", "l.asis2"]
    assert to_cgm(names) == ["LASI", "RPSI", "LHEE", "RKNE", "LANK", "LTOE", "RMT1",
                             "L.Shank.Top.Lateral", "RASI", "C7", "RHEE", "STRN", "l.asis2"]


def test_no_new_duplicates_and_extra_wins():
    assert to_cgm(["L.ASIS", "LASI"]) == ["L.ASIS", "LASI"]       # LASI already there
    assert to_cgm(["L.Heel.Top", "LHEEL"]) == ["LHEE", "LHEEL"]    # first one wins
    assert to_cgm(["L.ASIS", "Foo"], {"Foo": "T10", "L.ASIS": "RASI"}) == ["RASI", "T10"]
    assert to_cgm(["Unknown.Marker", "*52"]) == ["Unknown.Marker", "*52"]


def test_lab_files_map_to_the_cgm_set():
    cfg = load_lab("split_belt")
    assert sorted(to_cgm(cfg.markers.labels, cfg.marker_names)) == sorted(CGM_MARKERS)


def test_fukuchi_labels():
    ezc3d = pytest.importorskip("ezc3d")
    run = ezc3d.c3d(str(shared_file("running", "RBDS001runT35.c3d")),
                    extract_forceplat_data=False)
    labels = run["parameters"]["POINT"]["LABELS"]["value"]
    cgm = to_cgm(labels)
    for name in ("LASI", "RASI", "LPSI", "RPSI", "LHEE", "RHEE", "LMT1", "LMT5", "RMT1", "RMT5"):
        assert name in cgm
    assert "L.Shank.Top.Lateral" in cgm and len(set(cgm)) == len(cgm)
    static = ezc3d.c3d(str(shared_file("running", "RBDS001static.c3d")),
                       extract_forceplat_data=False)
    s = to_cgm(static["parameters"]["POINT"]["LABELS"]["value"])
    for name in ("LKNE", "RKNE", "LANK", "RANK", "LTOE", "RTOE"):
        assert name in s
    # the running trial: SACR from the PSIS, toes from the metatarsal heads
    pos = np.moveaxis(run["data"]["points"][:3, :, :50], [0, 1, 2], [2, 1, 0])
    out, names = virtual_markers(pos, cgm)
    assert names[len(cgm):] == ["SACR", "LTOE", "RTOE"]
    i = {n: k for k, n in enumerate(names)}
    np.testing.assert_allclose(out[:, i["LTOE"]], (pos[:, i["LMT1"]] + pos[:, i["LMT5"]]) / 2,
                               rtol=1e-6)


def test_virtual_markers_rules():
    m = 4
    labels = ["LPSI", "RPSI", "LMT1", "LMT5", "RTOE", "RMT1", "RMT5"]
    pos = np.arange(m * len(labels) * 3, dtype=np.float32).reshape(m, len(labels), 3)
    pos[2, 0] = np.nan
    out, names = virtual_markers(pos, labels)
    assert names == labels + ["SACR", "LTOE"]        # RTOE present: not replaced
    assert out.dtype == np.float32 and out.shape == (m, 9, 3)
    np.testing.assert_array_equal(out[:, :7], pos)
    np.testing.assert_allclose(out[[0, 1, 3], 7], (pos[[0, 1, 3], 0] + pos[[0, 1, 3], 1]) / 2)
    assert np.isnan(out[2, 7]).all()                  # a source NaN gives NaN
    np.testing.assert_allclose(out[:, 8], (pos[:, 2] + pos[:, 3]) / 2)
    same, same_names = virtual_markers(pos[:, :1], labels[:1])
    assert same_names == ["LPSI"] and same.shape == (m, 1, 3)
    with pytest.raises(ValueError):
        virtual_markers(pos, labels[:3])
