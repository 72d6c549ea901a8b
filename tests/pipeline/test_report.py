"""Clinician report: PNG figures and an index.html that embeds them, on a synthetic session,
on a real recording without trunk markers, and one-line errors on unusable files."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.conftest import shared_file  # noqa: E402
from treadlab.acquisition.archive import write_session  # noqa: E402
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session  # noqa: E402
from treadlab.config.errors import InputError  # noqa: E402
from treadlab.pipeline.cli import main  # noqa: E402
from treadlab.pipeline.graph import process_session  # noqa: E402
from treadlab.pipeline.report import FIGURES, make_report  # noqa: E402

pytestmark = pytest.mark.timeout(120)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / "runner.h5"
    s = simulate_session(RunnerParams(duration_s=16.0, seed=4, trunk_lean_deg=4.0))
    s.attrs["subject_id"] = "RUNNER-42"
    write_session(path, s)
    process_session(path)
    return path


def _check_report(page: str, out_dir):
    from matplotlib.image import imread

    assert page.endswith("index.html")
    text = open(page, encoding="utf-8").read()
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert sorted(srcs) == sorted(FIGURES)
    for name in srcs:
        assert "/" not in name  # relative links, beside the page
        png = out_dir / name
        assert png.read_bytes()[:8] == PNG_MAGIC
        img = imread(png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
        assert img[..., :3].std() > 0.05  # not a blank canvas
    return text


def test_synthetic_report(synthetic, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(synthetic), "-o", str(out)]) == 0  # prints the page's path
    page = capsys.readouterr().out.strip()
    assert page == str(out / "index.html")
    text = _check_report(page, out)
    assert "RUNNER-42" in text
    for title in ("Pelvic drop", "Upright trunk", "Over-stride", "Limited hip extension"):
        assert title in text
    # the score table shows values, units and bands; a low-lean runner scores high on trunk
    row = re.search(r"<tr><td>Upright trunk</td><td class=\"num\">(\d+)</td>", text)
    assert row and int(row.group(1)) > 50
    assert "deg" in text and "8–10" in text
    assert "not available" not in text  # every angle panel has curves


def test_report_without_trunk_markers(tmp_path):
    """A real treadmill recording (Fukuchi): no C7/thorax markers, so no trunk lean."""
    from treadlab.acquisition.io.c3d_import import import_c3d

    src = tmp_path / "RBDS001runT35.h5"
    import_c3d(shared_file("running", "RBDS001runT35.c3d"), src)
    process_session(src)
    out = tmp_path / "report"
    text = _check_report(make_report(src, out), out)
    assert "not scor" in text  # upright trunk: not scorable, and says why
    assert re.search(r"Trunk forward lean: not available \([^)]*trunk", text)


def test_report_on_unprocessed_session_is_one_line(tmp_path, capsys):
    src = tmp_path / "raw.h5"
    write_session(src, simulate_session(RunnerParams(duration_s=2.0, seed=1)))
    with pytest.raises(InputError, match="not processed"):
        make_report(src, tmp_path / "r")
    assert main(["report", str(src), "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "raw.h5" in err[0] and "process" in err[0]


def test_report_on_invalid_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x00garbage" * 50)
    assert main(["report", str(bad), "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.h5" in err and "Traceback" not in err
    assert main(["report", str(tmp_path / "missing.h5"), "-o", str(tmp_path / "r")]) == 1
    assert "missing.h5" in capsys.readouterr().err


def test_report_helpers_cycle_normalisation():
    from treadlab.pipeline.report import _cycles, _normalise

    t = np.linspace(0, 2, 201)
    y = t.copy()
    np.testing.assert_allclose(_normalise(t, y, 0.5, 1.5), np.linspace(0.5, 1.5, 101))
    assert np.isnan(_normalise(t, y, 1.5, 2.5)).all()  # not covered
    contacts = {"side": np.array([0, 1, 0, 1, 0]), "t_strike": np.array([0.0, 0.35, 0.7, 1.05,
                                                                         1.4]),
                "t_off": np.array([0.25, 0.6, 0.95, 1.3, 1.65]), "valid": np.ones(5, bool)}
    cyc = _cycles(contacts)
    assert [(a, b) for a, b, _ in cyc[0]] == [(0.0, 0.7), (0.7, 1.4)]
    assert cyc[0][0][2] == pytest.approx(100 * 0.25 / 0.7)
    assert len(cyc[1]) == 1
