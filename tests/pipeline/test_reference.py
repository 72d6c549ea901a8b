"""treadlab reference build: a reference set from processed healthy sessions, usable by scoring."""
from __future__ import annotations

from treadlab.config.loader import tomllib  # tomllib, or tomli on Python 3.10

import h5py
import numpy as np
import pytest

from treadlab.acquisition.archive import write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.config.errors import InputError
from treadlab.pipeline.cli import main
from treadlab.pipeline.graph import process_session
from treadlab.pipeline.scoring import CAUSES, load_reference, score_causes


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    root = tmp_path_factory.mktemp("healthy")
    drops = [3.0, 4.0, 5.0, 6.0]
    for i, drop in enumerate(drops):
        path = root / f"h{i}.h5"
        write_session(path, simulate_session(RunnerParams(
            duration_s=24.0, seed=20 + i, speed_m_s=3.0 + 0.2 * i, pelvic_drop_deg=drop,
            trunk_lean_deg=9.0, overstride_mm=120.0, hip_extension_deg=12.0)))
        process_session(path)
    unprocessed = root / "raw_only.h5"
    write_session(unprocessed, simulate_session(RunnerParams(duration_s=5.0, seed=1)))
    injured = root / "injured.h5"
    write_session(injured, simulate_session(RunnerParams(duration_s=24.0, seed=30,
                                                         pelvic_drop_deg=12.0)))
    process_session(injured)
    with h5py.File(injured, "r+") as f:
        f.attrs["healthy"] = np.uint8(0)
    return root


def test_build_reference_means_sds_and_provenance(healthy, tmp_path):
    out = tmp_path / "ref" / "reference_mylab.toml"
    assert main(["reference", "build", str(healthy), "-o", str(out)]) == 0
    doc = tomllib.loads(out.read_text())
    prov = doc["provenance"]
    assert sorted(prov["sessions"]) == ["h0.h5", "h1.h5", "h2.h5", "h3.h5"]
    assert any("raw_only.h5: not processed" in e for e in prov["excluded"])
    assert any("injured.h5: healthy = false" in e for e in prov["excluded"])
    ref = load_reference(out)
    assert ref.id.startswith("built-reference_mylab-")
    pd = ref.causes["pelvic_drop"]
    assert pd["n_sessions"] == 4 and pd["provisional"] is False
    assert 2.5 < pd["mu"] < 6.5 and pd["sigma"] > 0.3
    assert pd["normal_low"] == pytest.approx(pd["mu"] - pd["sigma"])
    # one band holds all four speeds (3.0-3.6 m/s)
    assert [b["n_sessions"] for b in pd["bands"]] == [4]
    # scoring with it: a runner at the mean scores z ~ 0
    n = 60
    c = {"side": np.arange(n) % 2, "valid": np.ones(n, bool),
         "pelvic_drop": np.full(n, pd["mu"]), "trunk_lean": np.full(n, 9.0),
         "overstride": np.full(n, 120.0), "peak_hip_extension": np.full(n, 12.0)}
    table = score_causes(c, ref, speed_m_s=3.3)
    assert table["z"][0] == pytest.approx(0.0, abs=1e-6)
    assert list(table["cause"]) == list(CAUSES)


def test_build_reference_needs_two_sessions(tmp_path):
    with pytest.raises(InputError, match="at least 2"):
        from treadlab.pipeline.reference import build_reference

        build_reference(tmp_path, tmp_path / "r.toml")


def test_lab_config_uses_the_built_reference_set(healthy, tmp_path):
    """``[scoring] reference = "FILE.toml"`` (relative to the lab TOML) scores against it and
    its id goes into the archive."""
    from treadlab.acquisition.archive import read_derived
    from treadlab.config import shipped_lab_path

    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    from treadlab.pipeline.reference import build_reference

    build_reference(healthy, lab_dir / "reference_mylab.toml")
    text = shipped_lab_path().read_text()
    assert 'reference = "default"' in text
    (lab_dir / "lab.toml").write_text(text.replace('reference = "default"',
                                                   'reference = "reference_mylab.toml"'))
    session = tmp_path / "s.h5"
    write_session(session, simulate_session(RunnerParams(duration_s=24.0, seed=41)))
    summary = process_session(session, config_path=lab_dir / "lab.toml")
    ref = load_reference(lab_dir / "reference_mylab.toml")
    assert summary["reference_id"] == ref.id
    assert read_derived(session)["attrs"]["reference_id"] == ref.id
