"""Cause scores (docs/metrics.md §4) from per-contact tables, and the shipped reference set."""
import math

import numpy as np
import pytest

from treadlab.config.errors import ConfigError
from treadlab.pipeline.scoring import (CAUSES, SCORE_COLUMNS, format_scores, load_reference,
                                       score_causes, score_from_z)


def _contacts(n=60, **metrics):
    rng = np.random.default_rng(1)
    base = {"pelvic_drop": 5.0, "trunk_lean": 9.0, "overstride": 150.0, "peak_hip_extension": 10.0}
    base.update(metrics)
    out = {"side": np.arange(n) % 2, "valid": np.ones(n, bool)}
    for k, v in base.items():
        out[k] = np.full(n, np.nan) if v is None else v + rng.normal(0, 0.01, n)
    return out


def test_score_curve_matches_metrics_md():
    assert score_from_z(0) == pytest.approx(18.24, abs=0.01)
    assert score_from_z(1) == pytest.approx(50.0)
    assert score_from_z(2) == pytest.approx(81.76, abs=0.01)


def test_default_reference_has_every_cause_with_provenance():
    ref = load_reference()
    assert ref.id == "treadlab-default-1"
    for cause in CAUSES:
        entry = ref.causes[cause]
        assert entry["sigma"] > 0 and entry["source"]
        if entry.get("provisional"):
            assert "PROVISIONAL" in entry["reasoning"]
    assert ref.causes["upright_trunk"]["sigma"] == 2.5  # docs/metrics.md §4.2 default
    assert "Teng & Powers 2015" in ref.causes["upright_trunk"]["source"]
    assert "Souza 2016" in ref.causes["limited_hip_extension"]["source"]
    assert ref.causes["pelvic_drop"]["provisional"] is True


def test_scores_signed_so_worse_is_positive():
    ref = load_reference()
    neutral = score_causes(_contacts(), ref)
    assert list(neutral["cause"]) == list(CAUSES)
    assert set(SCORE_COLUMNS) <= set(neutral)
    assert np.all(neutral["score"] < 25)
    worse = score_causes(_contacts(pelvic_drop=9.0, trunk_lean=4.0, overstride=260.0,
                                   peak_hip_extension=3.0), ref)
    assert np.all(worse["score"] > 75)
    assert np.all(worse["z"] > 1.5)


def test_trunk_lean_above_band_is_reported_not_scored():
    table = score_causes(_contacts(trunk_lean=14.0), load_reference())
    i = list(CAUSES).index("upright_trunk")
    assert math.isnan(table["score"][i])
    assert table["value"][i] == pytest.approx(14.0, abs=0.1)
    assert "above" in table["status"][i]


def test_missing_metric_and_too_few_steps_are_not_scored_with_reason():
    c = _contacts(trunk_lean=None)
    table = score_causes(c, load_reference(), reasons={"trunk_lean": "no trunk markers"})
    assert table["status"][1] == "not scorable: no trunk markers"
    assert math.isnan(table["score"][1]) and table["n_steps"][1] == 0
    few = score_causes(_contacts(n=30), load_reference(), min_steps_per_side=20)
    assert np.all(np.isnan(few["score"]))
    assert "15 left / 15 right" in few["status"][0]


def test_invalid_steps_are_ignored_and_sides_reported():
    c = _contacts(n=80)
    c["pelvic_drop"][c["side"] == 0] = 8.0
    c["valid"][:4] = False
    c["pelvic_drop"][:4] = 100.0
    table = score_causes(c, load_reference())
    assert table["value_left"][0] == pytest.approx(8.0)
    assert table["value_right"][0] == pytest.approx(5.0, abs=0.1)
    assert table["n_steps"][0] == 76


def test_format_scores_is_a_table():
    text = format_scores(score_causes(_contacts(trunk_lean=None), load_reference(),
                                      reasons={"trunk_lean": "no trunk markers"}))
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["cause", "score"]
    assert len(lines) == 2 + 4
    assert "not scorable: no trunk markers" in text


def test_unknown_or_broken_reference_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="scoring.reference"):
        load_reference("no-such-set")
    bad = tmp_path / "ref.toml"
    text = load_reference().path.read_text().replace("sigma = 2.0", "sigma = 0.0")
    bad.write_text(text)
    with pytest.raises(ConfigError, match="causes.pelvic_drop.sigma"):
        load_reference(bad)


def test_speed_band_overrides_the_cause_values(tmp_path):
    text = load_reference().path.read_text()
    text += ('\n[[causes.pelvic_drop.bands]]\nspeed_min_m_s = 3.0\nspeed_max_m_s = 4.0\n'
             'mu = 8.0\nsigma = 1.0\nnormal_low = 7.0\nnormal_high = 9.0\n')
    path = tmp_path / "banded.toml"
    path.write_text(text)
    ref = load_reference(path)
    assert ref.params("pelvic_drop", 3.5)["mu"] == 8.0
    assert ref.params("pelvic_drop", 2.5)["mu"] == 5.0
    t = score_causes(_contacts(pelvic_drop=8.0), ref, speed_m_s=3.5)
    assert t["z"][0] == pytest.approx(0.0, abs=0.05)
