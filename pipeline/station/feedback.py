"""What the runner display shows: cues, target bands, the fading schedule, the metronome.

:class:`FeedbackSettings` is what the technician sets (``PUT /api/feedback``); :func:`step_message`
turns the live processor's steps into the message the runner page draws at each toe off: for
each chosen cue the moving median of the last ``window`` valid steps (5–10), the band it should
stay in, and whether it is ``low``, ``in`` or ``high`` — a word and an arrow on the page, never a
colour alone.

Cues (units): ``pelvic_drop`` (deg, contralateral pelvic drop), ``trunk_lean`` (deg, + forward),
``heel_lead`` (mm, heel ahead of the pelvis at strike: over-stride), ``hip_extension`` (deg, peak
in late stance), ``cadence`` (steps/min), ``contact_time`` (s).

Fading (Noehren 2011; Willy 2012 faded over the last sessions): ``every`` step, ``every_other``
step, ``none``, or ``faded`` — every step over the first third of the trial's duration, every other
step over the second third, none over the last third (``every`` for a trial without a duration).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from treadlab.pipeline.station.store import RequestError

__all__ = ["CUES", "FADING", "FeedbackSettings", "shown", "step_message"]

#: cue name → (label, unit, LiveStep attribute, default band (lo, hi))
CUES = {
    "pelvic_drop": ("Pelvic drop", "°", "pelvic_drop", (0.0, 5.0)),
    "trunk_lean": ("Trunk lean", "°", "trunk_lean", (7.0, 12.0)),
    "heel_lead": ("Heel ahead of pelvis", "mm", "heel_lead", (0.0, 100.0)),
    "hip_extension": ("Hip extension", "°", "hip_extension", (10.0, 25.0)),
    "cadence": ("Cadence", "steps/min", "cadence", (170.0, 185.0)),
    "contact_time": ("Contact time", "s", "contact_time", (0.18, 0.26)),
}

FADING = ("every", "every_other", "none", "faded")


@dataclass
class FeedbackSettings:
    """The runner display's settings.

    Attributes
    ----------
    cues : list of str
        One or two cue names from :data:`CUES` shown large on the runner page.
    bands : dict
        Cue name → ``[lo, hi]`` target band in the cue's unit (defaults from :data:`CUES`).
    window : int
        Steps in the moving median (5–10).
    fading : str
        One of :data:`FADING`.
    metronome : bool
        Sound one beat per step (WebAudio on the runner page).
    metronome_spm : float
        Metronome rate, steps/min (120–220).
    """

    cues: list = field(default_factory=lambda: ["pelvic_drop"])
    bands: dict = field(default_factory=lambda: {k: list(v[3]) for k, v in CUES.items()})
    window: int = 7
    fading: str = "every"
    metronome: bool = False
    metronome_spm: float = 175.0

    def as_dict(self) -> dict:
        return asdict(self)

    def updated(self, values: dict) -> "FeedbackSettings":
        """A copy with ``values`` applied, each checked.

        Raises
        ------
        RequestError naming ``feedback.<key>`` for an unknown key or a bad value.
        """
        if not isinstance(values, dict):
            raise RequestError("feedback", "expected a JSON object")
        new = FeedbackSettings(**{**asdict(self)})
        for key, value in values.items():
            where = f"feedback.{key}"
            if key == "cues":
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not 1 <= len(value) <= 2:
                    raise RequestError(where, "one or two cue names")
                for c in value:
                    if c not in CUES:
                        raise RequestError(where, f"unknown cue {c!r}; known: {', '.join(CUES)}")
                new.cues = list(value)
            elif key == "bands":
                if not isinstance(value, dict):
                    raise RequestError(where, "expected {cue: [lo, hi]}")
                bands = dict(new.bands)
                for c, band in value.items():
                    if c not in CUES:
                        raise RequestError(f"{where}.{c}", f"unknown cue; known: {', '.join(CUES)}")
                    try:
                        lo, hi = (float(band[0]), float(band[1]))
                    except (TypeError, ValueError, IndexError, KeyError):
                        raise RequestError(f"{where}.{c}", f"expected [lo, hi], got {band!r}") \
                            from None
                    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                        raise RequestError(f"{where}.{c}", f"need finite lo < hi, got [{lo}, {hi}]")
                    bands[c] = [lo, hi]
                new.bands = bands
            elif key == "window":
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or int(value) != value or not 5 <= int(value) <= 10:
                    raise RequestError(where, f"must be a whole number of steps 5-10, got {value!r}")
                new.window = int(value)
            elif key == "fading":
                if value not in FADING:
                    raise RequestError(where, f"must be one of {', '.join(FADING)}, got {value!r}")
                new.fading = value
            elif key == "metronome":
                if not isinstance(value, bool):
                    raise RequestError(where, f"must be true or false, got {value!r}")
                new.metronome = value
            elif key == "metronome_spm":
                try:
                    v = float(value)
                except (TypeError, ValueError):
                    raise RequestError(where, f"must be a number of steps/min, got {value!r}") \
                        from None
                if isinstance(value, bool) or not 120.0 <= v <= 220.0:
                    raise RequestError(where, f"must be 120-220 steps/min, got {value!r}")
                new.metronome_spm = v
            else:
                raise RequestError(where, "unknown setting; known: cues, bands, window, fading, "
                                          "metronome, metronome_spm")
        return new


def shown(fading: str, n_step: int, elapsed_s: float, duration_s: float | None) -> bool:
    """Whether step number ``n_step`` (1, 2, …) shows feedback under ``fading``.

    ``elapsed_s`` (s) since the trial started, ``duration_s`` (s) its planned length or None.
    """
    if fading == "every":
        return True
    if fading == "none":
        return False
    if fading == "every_other":
        return n_step % 2 == 1
    # faded: thirds of the planned duration
    if not duration_s:
        return True
    third = duration_s / 3.0
    if elapsed_s < third:
        return True
    if elapsed_s < 2 * third:
        return n_step % 2 == 1
    return False


def _median(steps, attr: str) -> float:
    vals = np.array([getattr(s, attr) for s in steps if s.valid], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else math.nan


def step_message(steps, settings: FeedbackSettings, n_step: int, show: bool) -> dict:
    """The ``step`` message for the last of ``steps`` (LiveStep objects, oldest first).

    Returns
    -------
    dict: ``type="step"``, ``n`` (step number in the trial), ``side`` (``left``/``right``/
    ``unknown``), ``seq_off`` (device frame of the toe off), ``show`` (fading), ``cadence``
    (moving median, steps/min), ``cues``: list of ``{name, label, unit, value (moving median),
    last (this step), lo, hi, state ("low", "in", "high" or "none" before enough steps)}``.
    NaN values are sent as ``None``.
    """
    last = steps[-1]
    recent = list(steps)[-settings.window:]
    cues = []
    for name in settings.cues:
        label, unit, attr, _ = CUES[name]
        lo, hi = settings.bands.get(name, CUES[name][3])
        value = _median(recent, attr)
        state = "none"
        if math.isfinite(value):
            state = "low" if value < lo else ("high" if value > hi else "in")
        one = getattr(last, attr)
        cues.append({"name": name, "label": label, "unit": unit,
                     "value": value if math.isfinite(value) else None,
                     "last": one if math.isfinite(one) else None,
                     "lo": lo, "hi": hi, "state": state})
    cad = _median(recent, "cadence")
    side = {0: "left", 1: "right"}.get(int(last.side), "unknown")
    return {"type": "step", "n": int(n_step), "side": side, "seq_off": int(last.seq_off),
            "show": bool(show), "cadence": cad if math.isfinite(cad) else None,
            "contact_time": last.contact_time if math.isfinite(last.contact_time) else None,
            "fading": settings.fading, "cues": cues}
