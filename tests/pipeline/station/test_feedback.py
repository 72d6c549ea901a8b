"""Runner-display settings, the fading schedule and the step message (no devices)."""
from __future__ import annotations

import math

import pytest

from treadlab.acquisition.capture.live import LiveStep
from treadlab.pipeline.station.feedback import FeedbackSettings, shown, step_message
from treadlab.pipeline.station.store import RequestError, safe_id


def _step(pelvic_drop, cadence=170.0, valid=True, side=0, seq=100):
    return LiveStep(side=side, plate=side, t_strike=0.0, t_off=0.25, contact_time=0.25,
                    cadence=cadence, pelvic_drop=pelvic_drop, trunk_lean=8.0, heel_lead=150.0,
                    hip_extension=10.0, i_off=seq, seq_off=seq, detected_host=0.0, valid=valid)


@pytest.mark.parametrize("values, field", [
    ({"cues": ["knee"]}, "feedback.cues"),
    ({"cues": []}, "feedback.cues"),
    ({"window": 4}, "feedback.window"),
    ({"window": 7.5}, "feedback.window"),
    ({"fading": "sometimes"}, "feedback.fading"),
    ({"bands": {"pelvic_drop": [5, 1]}}, "feedback.bands.pelvic_drop"),
    ({"bands": {"pelvic_drop": "x"}}, "feedback.bands.pelvic_drop"),
    ({"metronome": "yes"}, "feedback.metronome"),
    ({"metronome_spm": 400}, "feedback.metronome_spm"),
    ({"colour": "red"}, "feedback.colour"),
])
def test_bad_settings_name_the_field(values, field):
    with pytest.raises(RequestError) as err:
        FeedbackSettings().updated(values)
    assert str(err.value).startswith(field + ":")
    assert "\n" not in str(err.value)


def test_settings_update_keeps_the_rest():
    fb = FeedbackSettings().updated({"cues": ["trunk_lean", "cadence"], "window": 5,
                                     "bands": {"trunk_lean": [6, 11]}})
    assert fb.cues == ["trunk_lean", "cadence"] and fb.window == 5
    assert fb.bands["trunk_lean"] == [6.0, 11.0] and fb.bands["pelvic_drop"] == [0.0, 5.0]


def test_fading_schedules():
    assert all(shown("every", n, 0, 30) for n in range(1, 10))
    assert [shown("every_other", n, 0, 30) for n in range(1, 5)] == [True, False, True, False]
    assert not any(shown("none", n, 0, 30) for n in range(1, 10))
    # faded over 30 s: every step, then every other, then none
    assert shown("faded", 2, 5.0, 30.0)
    assert [shown("faded", n, 15.0, 30.0) for n in (1, 2)] == [True, False]
    assert not shown("faded", 1, 25.0, 30.0)
    assert shown("faded", 2, 100.0, None)          # no duration: every step


def test_step_message_median_band_and_state():
    fb = FeedbackSettings().updated({"cues": ["pelvic_drop", "cadence"], "window": 5})
    steps = [_step(v) for v in (9.0, 2.0, 3.0, 4.0, 6.0, 7.0)] + [_step(math.nan, valid=False)]
    msg = step_message(steps, fb, 7, True)
    pd, cad = msg["cues"]
    # the last 5 steps, valid ones only: 3, 4, 6, 7 -> median 5.0, inside [0, 5]
    assert pd["value"] == pytest.approx(5.0) and pd["state"] == "in"
    assert pd["last"] is None                      # the last step had no value
    assert cad["value"] == pytest.approx(170.0) and cad["state"] == "in"
    msg = step_message([_step(v) for v in (6, 7, 8)], fb, 3, False)
    assert msg["cues"][0]["state"] == "high" and msg["show"] is False and msg["side"] == "left"


def test_runner_ids():
    assert safe_id("R-001_a") == "R-001_a"
    for bad in ("", "../x", "a b", ".hidden", "x" * 65):
        with pytest.raises(RequestError, match="^runner.id: "):
            safe_id(bad)
