"""Scores-only reprocessing (docs/reprocess.md, "Scores only"): a new reference set or scoring
table rescoring the stored steps gives exactly what a full run gives, reads no raw data and
leaves steps and angles untouched; a change to the derivation still reprocesses in full."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_file
from treadlab.acquisition.archive import read_derived
from treadlab.acquisition.io.c3d_import import import_c3d
from treadlab.acquisition.sim.synthetic import simulate_session_file
from treadlab.pipeline.graph import load_settings, process_session, run_session
from treadlab.pipeline.reprocess import reprocess

pytestmark = pytest.mark.timeout(240)

LAB = Path(__file__).resolve().parents[2] / "config" / "lab_simulated.toml"


def _lab(tmp_path: Path, name: str, **replace: str) -> Path:
    text = LAB.read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    out = tmp_path / name
    out.write_text(text)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype.kind == y.dtype.kind, key
        if x.dtype.kind in "fc":
            np.testing.assert_array_equal(x, y, err_msg=key)
        else:
            assert x.tolist() == y.tolist(), key


def test_a_new_scoring_table_rescores_the_stored_steps_as_a_full_run_would(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(2):
        simulate_session_file(str(archive / f"s{i}.h5"),
                              params={"duration_s": 20, "seed": 40 + i,
                                      "overstride_mm": 150 + 40 * i})
    assert reprocess(archive, workers=1, progress=False).ok
    raw = {p: _sha(p) for p in sorted(archive.glob("s?.h5"))}
    before = {p: read_derived(p) for p in raw}

    # another reference set and scoring table: the config hash changes, the derivation does not
    lab = _lab(tmp_path, "lab_b.toml", **{'reference = "default"': 'reference = "literature"',
                                          "min_steps_per_side = 20": "min_steps_per_side = 15"})
    full = tmp_path / "full"
    shutil.copytree(archive, full)
    for p in sorted(full.glob("s?.h5")):
        process_session(p, config_path=lab)  # what a full run with the new table gives

    dry = reprocess(archive, config_path=lab, dry_run=True, progress=False)
    assert [why for _, why in dry.due] == [dry.due[0][1]] * 2
    assert "scores only" in dry.due[0][1] and "config" in dry.due[0][1]

    result = reprocess(archive, config_path=lab, workers=1, progress=False)
    assert result.ok and len(result.processed) == 2
    for path, summary in result.processed:
        assert summary["rescored"] and summary["timing"]["read_s"] == 0.0
    for p in raw:
        assert _sha(p) == raw[p]  # the session file (raw data) is untouched
        now, want = read_derived(p), read_derived(full / p.name)
        _assert_same(now["scores"], want["scores"])
        _assert_same(now["contacts"], before[p]["contacts"])
        _assert_same(now["contacts"], want["contacts"])
        np.testing.assert_array_equal(now["angles"]["values"], before[p]["angles"]["values"])
        assert now["attrs"]["reference_id"] == want["attrs"]["reference_id"] != \
            before[p]["attrs"]["reference_id"]
        assert now["attrs"]["config_hash"] == want["attrs"]["config_hash"]
        assert "scores_only_from" in now["attrs"]
    # up to date now: nothing due
    assert reprocess(archive, config_path=lab, dry_run=True, progress=False).due == []

    # a change to the derivation (force low-pass) is a full reprocess again
    lab_c = _lab(tmp_path, "lab_c.toml", **{'reference = "default"': 'reference = "literature"',
                                            "min_steps_per_side = 20": "min_steps_per_side = 15",
                                            "force_lowpass_hz = 50.0": "force_lowpass_hz = 40.0"})
    dry = reprocess(archive, config_path=lab_c, dry_run=True, progress=False)
    assert len(dry.due) == 2 and all("scores only" not in why for _, why in dry.due)
    result = reprocess(archive, config_path=lab_c, workers=1, progress=False)
    assert result.ok and not any(s.get("rescored") for _, s in result.processed)
    assert all(s["timing"]["read_s"] > 0 for _, s in result.processed)


def test_a_real_recording_rescored_equals_its_full_run(tmp_path):
    src = shared_file("running", "RBDS001runT35.c3d")
    path = tmp_path / "r.h5"
    import_c3d(src, path, body_mass_kg=67.9)
    run_session(path, load_settings(None))
    raw = _sha(path)
    lab = _lab(tmp_path, "lab_b.toml", **{'reference = "default"': 'reference = "literature"'})
    other = load_settings(lab)
    full = tmp_path / "full.h5"
    shutil.copyfile(path, full)
    shutil.copyfile(path.with_name("r.derived.h5"), full.with_name("full.derived.h5"))
    run_session(full, other, force=True)  # full: reads and derives again
    summary = run_session(path, other)
    assert summary["rescored"] and _sha(path) == raw
    now, want = read_derived(path), read_derived(full)
    _assert_same(now["scores"], want["scores"])
    _assert_same(now["contacts"], want["contacts"])
