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


def test_build_reference_lines_sds_and_provenance(healthy, tmp_path):
    out = tmp_path / "ref" / "reference_mylab.toml"
    assert main(["reference", "build", str(healthy), "-o", str(out)]) == 0
    doc = tomllib.loads(out.read_text())
    prov = doc["provenance"]
    assert sorted(prov["sessions"]) == ["h0.h5", "h1.h5", "h2.h5", "h3.h5"]
    assert any("raw_only.h5: not processed" in e for e in prov["excluded"])
    assert any("injured.h5: healthy = false" in e for e in prov["excluded"])
    assert prov["trials"] == 4 and prov["software"]
    ref = load_reference(out)
    assert ref.id.startswith("mylab-")
    pd = ref.causes["pelvic_drop"]
    model = pd["speed_model"]
    assert model["n_sessions"] == 4 and pd["provisional"] is False
    assert model["speed_min_m_s"] == pytest.approx(3.0) and model["speed_max_m_s"] == 3.6
    assert model["sigma"] > 0 and model["left_sigma"] > 0 and model["right_sigma"] > 0
    # the synthetic drops rise 3 -> 6 deg with speed 3.0 -> 3.6 m/s: a steep line
    assert model["mu_slope_per_m_s"] > 2.0
    assert ref.causes["overstride"]["metric"] == "overstride_leg"
    # scoring with it: a runner on the line scores z ~ 0 at any speed in range
    n = 60
    for speed in (3.0, 3.3, 3.6):
        mu = ref.params("pelvic_drop", speed)["mu"]
        c = {"side": np.arange(n) % 2, "valid": np.ones(n, bool),
             "pelvic_drop": np.full(n, mu), "trunk_lean": np.full(n, 9.0),
             "overstride_leg": np.full(n, 13.0), "peak_hip_extension": np.full(n, 12.0)}
        table = score_causes(c, ref, speed_m_s=speed)
        assert table["z"][0] == pytest.approx(0.0, abs=1e-6)
        assert list(table["cause"]) == list(CAUSES)
    # the same sessions give the same bytes (no time stamps, sorted, rounded)
    again = tmp_path / "again" / "reference_mylab.toml"
    assert main(["reference", "build", str(healthy), "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_participants_table_matches_sessions_to_runners(healthy, tmp_path):
    from treadlab.pipeline.reference import build_reference

    csv = tmp_path / "participants.csv"
    csv.write_text("Subject,Age,Height,Mass,Gender\n1,30,180,70,M\n")
    # the synthetic sessions' subject ids carry no number 1: all excluded, named
    with pytest.raises(InputError, match="at least 2"):
        build_reference(healthy, tmp_path / "r.toml", participants=csv)
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Age\nx,3\n")
    with pytest.raises(InputError, match="Subject"):
        build_reference(healthy, tmp_path / "r.toml", participants=bad)


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


def test_archive_scored_with_an_earlier_reference_is_due_for_reprocessing(tmp_path):
    """The reference id is a content hash: an archive scored against another set carries
    another id, so ``reprocess`` takes it up again."""
    from treadlab.config import shipped_lab_path
    from treadlab.pipeline.graph import derived_fingerprint, load_settings

    lab = tmp_path / "lab.toml"
    lab.write_text(shipped_lab_path().read_text().replace('reference = "default"',
                                                          'reference = "literature"'))
    session = tmp_path / "s.h5"
    write_session(session, simulate_session(RunnerParams(duration_s=12.0, seed=7)))
    process_session(session, config_path=lab)
    have = derived_fingerprint(session)
    assert have["reference_id"] == "treadlab-literature-1"
    want = load_settings().fingerprint()
    assert want["reference_id"] == load_reference().id != have["reference_id"]
    assert main(["reprocess", str(tmp_path), "--workers", "1"]) == 0
    assert derived_fingerprint(session)["reference_id"] == load_reference().id


def test_sessions_without_belt_speed_give_a_flat_reference(healthy, tmp_path):
    """No belt speed anywhere (e.g. overground): one mean and SD per cause, scored at any
    speed, and the file says it is not speed-conditioned."""
    import shutil

    from treadlab.acquisition.archive import derived_path
    from treadlab.pipeline.reference import build_reference

    root = tmp_path / "nospeed"
    root.mkdir()
    for name in ("h0.h5", "h1.h5", "h2.h5"):
        shutil.copy(healthy / name, root / name)  # the session and, beside it, its derived file
        shutil.copy(derived_path(healthy / name), derived_path(root / name))
        with h5py.File(root / name, "r+") as f:
            f.attrs["belt_speed_m_s"] = np.nan
    out = build_reference(root, tmp_path / "reference_flat.toml")
    ref = load_reference(out)
    pd = ref.causes["pelvic_drop"]
    assert "speed_model" not in pd and pd["n_sessions"] == 3
    assert "not conditioned on speed" in pd["source"]
    n = 60
    c = {"side": np.arange(n) % 2, "valid": np.ones(n, bool), "pelvic_drop": np.full(n, pd["mu"]),
         "trunk_lean": np.full(n, 9.0), "overstride_leg": np.full(n, 13.0),
         "peak_hip_extension": np.full(n, 12.0)}
    table = score_causes(c, ref, speed_m_s=None)
    assert table["z"][0] == pytest.approx(0.0, abs=1e-6)


def test_build_cohort_bad_input_is_one_line(tmp_path, capsys):
    assert main(["reference", "build-cohort", str(tmp_path), "-o", str(tmp_path / "r.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "participants.csv" in err[0] and "not found" in err[0]
    (tmp_path / "participants.csv").write_text("Subject,Mass\n1,70\n")
    assert main(["reference", "build-cohort", str(tmp_path), "-o", str(tmp_path / "r.toml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no SUBJECTrunTvv.c3d trials found" in err[0]
    assert not (tmp_path / "r.toml").exists()
