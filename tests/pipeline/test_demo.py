"""``treadlab demo`` on a short capture: simulated lab → capture → process → scores."""
from __future__ import annotations

import io

import h5py
import pytest

from treadlab.acquisition.archive import validate_session
from treadlab.pipeline.demo import format_demo, run_demo

CAUSES = {"pelvic_drop", "upright_trunk", "overstride", "limited_hip_extension"}


def _text(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@pytest.mark.timeout(120)
def test_demo_short_run_leaves_raw_contacts_and_scores(tmp_path):
    result = run_demo(out_dir=tmp_path / "demo", seconds=8.0, status_stream=io.StringIO())
    files = list((tmp_path / "demo").glob("demo_*.h5"))
    assert len(files) == 1
    path = files[0]
    text = format_demo(result)
    assert result["path"] == path
    assert f"archive: {path}" in text
    for cause in CAUSES:
        assert cause in text
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f["raw/force/wrench"].shape[0] > 0 and f["raw/markers/positions"].shape[0] > 0
        contacts = f["derived/contacts"]
        assert contacts["t_strike"].shape[0] >= 10
        assert set(_text(f["derived/scores/cause"][()])) == CAUSES
