"""The synthetic runner (docs/design.md §6): treadmill running with known causes, as force and
markers.

A :class:`SyntheticRunner` turns :class:`RunnerParams` into

* a force-plate wrench ``force(t) -> (n, p, 6) float32`` ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and
  N·m, lab frame, the ground reaction acting on the body, moments about each plate's origin;
* marker trajectories ``markers(t) -> (m, 20, 3) float32`` mm in the lab frame for the
  Conventional Gait Model / Plug-in Gait marker set (:data:`LABELS`), NaN where a marker drops
  out;
* the true per-step values (:meth:`SyntheticRunner.truth_steps`) computed from the noise-free
  signals with the definitions of docs/metrics.md.

Every quantity is a deterministic function of absolute time: each noise value is looked up in
a fixed pool of normals at a position hashed from ``(seed, stream, sample index, element)``,
marker dropout runs start at frames chosen by a hash of ``(seed, frame)``, and the per-step
timing jitter and cause variability are drawn in fixed blocks of steps, so any window is
reproduced sample for sample however a caller cuts the stream (a live virtual treadmill asks
for it block by block).

Model (lab frame X = direction of travel, Y = left, Z = up, mm; the pelvis centre stays near
X = 0, the belt moves towards -X at ``speed_m_s``):

* steps alternate left, right; step ``k`` (side ``k % 2``, 0 = left) starts at
  ``t_first + k·60/cadence + jitter_k``; its vertical force stays at or above 20 N for
  ``contact_time_s``; a flight phase separates consecutive contacts;
* vertical force: an impact transient (peak near 7–10 % of stance, rising linearly from the
  onset so the 20 N crossing is ~0.3 ms after it) on top of an active ``u^1.1 (1-u)^1.5``
  hump (``u`` = fraction of stance), scaled so that each step's impulse is body weight × the
  step period: the mean vertical force over any stride is body weight;
* anterior-posterior force: braking half-sine (first 45 % of stance, peak growing with
  ``overstride_mm``) then a propulsive half-sine with the same impulse, so the net impulse of
  each step is zero; a small medially directed medio-lateral force; a small free moment;
* centre of pressure under the foot: from just ahead of the heel towards the metatarsal heads
  while the foot travels backwards with the belt; moments follow from ``M = r × F + [0,0,Tz]``;
* kinematics: pelvis pose from tilt / obliquity / rotation (Plug-in Gait YXZ order), hip joint
  centres from the Davis et al. 1991 regression as in pyCGM2, feet that ride the belt during
  stance (heel rocker, foot flat, then a toe rocker about the toe tip) and swing forward during
  flight, knees from two-link inverse kinematics, knee and ankle markers placed so the CGM
  chord function recovers the joint centres, a thorax leaning forward by ``trunk_lean_deg``.
  Free constants are solved at construction so the causes hold as docs/metrics.md measures
  them: the pelvis height (knee flexed 20° at foot strike) and the thigh angle at toe off
  (the 3-D CGM hip flexion reaches ``-hip_extension_deg`` between midstance and toe off,
  moving heel off earlier when needed);
* ``step_variability`` gives each step its own pelvic drop, trunk lean, heel lead (and the
  braking that goes with it) and hip extension.

Quiet standing (a static trial; :meth:`SyntheticRunner.standing_force`,
:meth:`~SyntheticRunner.standing_markers`): the runner stands still on the stopped belt, feet
flat under the hips (fixed), knees nearly straight, pelvis at ``STANDING_TILT_DEG`` tilt and
``STANDING_OBLIQUITY_DEG`` obliquity, swaying a few mm; body weight shared by the two feet; the
same markers, noise and dropouts as running (:meth:`~SyntheticRunner.standing_truth` gives what a
static trial should measure). The simulated lab switches between the two at run time.

Known simplifications: the vertical force is not derived from the pelvis trajectory (the two
are each plausible, not mutually consistent); the foot has no progression angle; the toe
rocker pivot may slide or lift when the cause dials ask for a geometry the legs cannot reach
(logged at debug level; an unreachable hip extension is a warning and
``SyntheticRunner.geometry_note``); ``truth_steps`` always reports what the markers show.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, Strict

from treadlab.acquisition.archive import ForceData, MarkerData, Session, write_session
from treadlab.config.constants import G
from treadlab.config.errors import ConfigError
from treadlab.config.schema import check_table

log = logging.getLogger(__name__)


LABELS = ["LASI", "RASI", "LPSI", "RPSI",
          "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
          "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE",
          "C7", "T10", "CLAV", "STRN"]
"""The CGM / Plug-in Gait markers the runner wears, in the order of ``markers()``."""

_IDX = {name: i for i, name in enumerate(LABELS)}

# Stream identifiers for the chunk seeds (never change them: they define the reproducible noise).
_S_FORCE_NOISE, _S_MARKER_NOISE, _S_DROPOUT, _S_JITTER, _S_VARIABILITY = 1, 2, 3, 4, 5
_CHUNK_OFFSET = 1 << 40          # keeps seed entries non-negative for negative chunk indices
_JITTER_BLOCK = 256              # steps per jitter block

# Vertical force template (fractions of stance).
# impact: g·x·exp((1 - x²)/2), x = u/_IMPACT_U (peak g at u = _IMPACT_U, linear start);
# active: u^a (1-u)^b scaled to peak 1.
_IMPACT_U, _IMPACT_GAIN, _ACTIVE_A, _ACTIVE_B = 0.07, 0.45, 1.1, 1.5
_ACTIVE_NORM = 1.0 / ((_ACTIVE_A / (_ACTIVE_A + _ACTIVE_B)) ** _ACTIVE_A
                      * (_ACTIVE_B / (_ACTIVE_A + _ACTIVE_B)) ** _ACTIVE_B)
# AP force: braking occupies the first _BRAKE_U of stance.
_BRAKE_U = 0.45
_BRAKE_PER_MM = 0.0008           # peak braking force grows 0.08 BW per 100 mm of heel lead

# Foot geometry in the foot frame (x forward along the sole, z up; mm, relative to the ankle
# joint centre AJC).
_HEEL_CONTACT = np.array([-55.0, -70.0])     # heel rocker pivot
_TOE_PIVOT = np.array([175.0, -70.0])        # toe rocker pivot (toe tip region)
_HEE_LOCAL = np.array([-75.0, -40.0])        # heel marker
_TOE_LOCAL = np.array([135.0, -38.0])        # toe marker (second metatarsal head, dorsum)
_HEEL_ROCKER_END = 0.15                      # foot flat from 15 % of stance
_HEEL_OFFS = (0.60, 0.50, 0.40)              # heel off (fraction of stance), tried in order
_STRIKE_PITCH_DEG = 12.0                     # foot pitch at foot strike (toe up)
_KNEE_STRIKE_DEG = 20.0                      # knee flexion at foot strike
_PELVIS_LOW_AT, _PELVIS_AMP_MM = 0.6, 35.0   # pelvis lowest at 60 % of stance, ±35 mm
_PELVIC_TILT_DEG = 14.0                      # mean anterior pelvic tilt
# Swing keyframes (fraction of swing, value): knee flexion peak, hip flexion beyond strike,
# foot pitch.
_SWING_KNEE = (0.40, 100.0)
_SWING_HIP = (0.80, 8.0)
_SWING_PITCH = (0.50, -10.0)

# Thorax markers in the thorax frame (origin midBottom, X forward, Z along the long axis).
SPEED_RANGE_M_S = (1.5, 7.0)
"""The running speeds the synthetic runner supports (m/s, ``RunnerParams.speed_m_s``); a
runner's own range is narrower: :func:`speed_range`."""


def speed_range(params) -> tuple[float, float]:
    """The belt speeds (m/s) a runner with these parameters can run at: within
    :data:`SPEED_RANGE_M_S` and with a stance of 0.3–1.0 m at its contact time (s)."""
    ct = float(params.contact_time_s)
    return max(SPEED_RANGE_M_S[0], 0.3 / ct), min(SPEED_RANGE_M_S[1], 1.0 / ct)

#: Speeds (m/s) at which a following runner's thigh angle at toe off is solved (interpolated
#: in between): :meth:`SyntheticRunner._theta_shift`.
_FOLLOW_GRID_M_S = 0.05

# Quiet standing (static trial): pelvis pose and sway amplitude.
STANDING_TILT_DEG = 12.0         # anterior pelvic tilt standing (deg)
STANDING_OBLIQUITY_DEG = 0.5     # pelvic obliquity standing (deg, + left side higher)
STANDING_SWAY_MM = 4.0           # antero-posterior sway amplitude of the pelvis (mm)

_THORAX_LOCAL = {"T10": (-95.0, 0.0, -10.0), "STRN": (95.0, 0.0, 10.0),
                 "C7": (-60.0, 0.0, 300.0), "CLAV": (60.0, 0.0, 260.0)}


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------

def _Num(**bounds):
    """A finite number field (int or float in, float out) with pydantic bounds."""
    return Annotated[float, Strict(), Field(allow_inf_nan=False, **bounds)]


@dataclass(frozen=True)
class RunnerParams:
    """Inputs of the synthetic runner.  Defaults are a realistic runner with small noise;
    :meth:`clean` gives the same runner with no noise, dropouts, drift or timing jitter.

    Attributes
    ----------
    duration_s : float
        Session length (s) used by :func:`simulate_session`.
    speed_m_s : float
        Belt speed (m/s); the feet travel backwards at this speed during stance.
    cadence_spm : float
        Step rate (steps/min); one step = one foot contact.
    body_mass_kg : float
        Body mass (kg); body weight BW = m·g N (g = 9.80665 m/s²).
    contact_time_s : float
        Contact time (s): how long the vertical force stays at or above 20 N (docs/metrics.md §2);
        the force itself starts about 0.3 ms before and ends a few ms after.
    pelvic_drop_deg : float
        Contralateral pelvic drop per stance (degrees): the largest rise of the stance side
        over the swing side (Plug-in Gait obliquity about its stride mean).
    trunk_lean_deg : float
        Forward lean of the CGM thorax long axis from the vertical in the sagittal plane,
        mean over stance (degrees, + forward).
    overstride_mm : float
        Heel lead at foot strike: heel marker X minus pelvis centre X (mm, + heel ahead).
    hip_extension_deg : float
        Peak hip extension in late stance (degrees): the CGM hip flexion reaches
        ``-hip_extension_deg`` between midstance and toe off.
    force_noise_n : float
        Standard deviation of white noise on each force channel (N); the moments get
        ``force_noise_n × 0.05 m`` (N·m).
    marker_noise_mm : float
        Standard deviation of white noise on each marker coordinate (mm).
    dropout_rate : float
        Fraction of marker samples lost, in short runs of 3–17 frames (0–0.5).
    drift_n_per_s : float
        Force-plate zero drift of Fz on every plate (N/s): the offset rises at this rate from
        0 at t = 0 for 300 s, then falls back for 300 s (a 10-minute triangle), so it stays
        within ``[0, 300 s × drift]`` however long the session.
    belt : str
        ``"split"`` (plates ``left`` (Y > 0) and ``right``, one per foot) or ``"single"``
        (one plate ``treadmill``).
    force_rate_hz : float
        Force sample rate (Hz, integer valued).
    marker_rate_hz : float
        Marker frame rate (Hz, integer valued).
    leg_length_mm : float
        Leg length ASIS to medial malleolus (mm), both sides; drives the Davis hip regression.
    inter_asis_mm : float
        Distance between the ASIS markers (mm).
    step_time_sd_s : float
        Standard deviation of the step-to-step jitter of foot-strike times (s), clipped at 3 SD.
    step_variability : float
        Step-to-step variability of the cause dials (fraction): each step's pelvic drop,
        trunk lean, heel lead and peak hip extension deviate from the dial by a normal factor
        of this SD (clipped at 3 SD); ``/truth`` reports each step's actual value.
    contact_time_speed_exponent, overstride_mm_per_m_s, hip_extension_deg_per_m_s,
    pelvic_drop_deg_per_m_s : float
        How the gait changes when the runner follows a changing belt speed
        (:meth:`SyntheticRunner.follow`); at ``speed_m_s`` every dial holds as set. At speed
        ``v`` the contact time is ``contact_time_s · (speed_m_s / v) ** exponent`` (0.6: the
        cohort's 290 / 234 / 202 ms at 2.5 / 3.5 / 4.5 m/s, Fukuchi 2017, RBDS001), the heel lead
        grows by ``overstride_mm_per_m_s`` mm (45: the cohort's 112 / 171 / 208 mm), the peak
        hip extension by ``hip_extension_deg_per_m_s`` degrees (4.8) and the pelvic drop by
        ``pelvic_drop_deg_per_m_s`` degrees (0.45) per m/s (the slopes of the reference lines
        of ``config/reference_default.toml``, docs/scoring.md): a healthy runner stays healthy
        at every speed. The cadence stays ``cadence_spm``.
    seed : int
        Seed of every random draw (noise, dropouts, jitter).
    """

    duration_s: _Num(gt=0) = 60.0
    speed_m_s: _Num(ge=1.5, le=7) = 3.5
    cadence_spm: _Num(gt=0) = 170.0
    body_mass_kg: _Num(gt=0) = 70.0
    contact_time_s: _Num(ge=0.1, le=0.6) = 0.25
    pelvic_drop_deg: _Num(ge=0, le=20) = 4.0
    trunk_lean_deg: _Num(ge=-10, le=45) = 8.0
    overstride_mm: _Num(ge=0, le=450) = 150.0
    hip_extension_deg: _Num(ge=0, le=30) = 10.0
    force_noise_n: _Num(ge=0) = 2.0
    marker_noise_mm: _Num(ge=0) = 0.5
    dropout_rate: _Num(ge=0, le=0.5) = 0.005
    drift_n_per_s: _Num() = 0.02
    belt: Literal["split", "single"] = "split"
    force_rate_hz: _Num(gt=0, le=100_000) = 1000.0
    marker_rate_hz: _Num(gt=0, le=100_000) = 200.0
    leg_length_mm: _Num(ge=700, le=1100) = 920.0
    inter_asis_mm: _Num(ge=150, le=400) = 250.0
    step_time_sd_s: _Num(ge=0) = 0.003
    step_variability: _Num(ge=0, le=0.3) = 0.05
    seed: Annotated[int, Strict(), Field(ge=0)] = 0
    contact_time_speed_exponent: _Num(ge=0, le=2) = 0.6
    overstride_mm_per_m_s: _Num(ge=-200, le=200) = 45.0
    hip_extension_deg_per_m_s: _Num(ge=-20, le=20) = 4.8
    pelvic_drop_deg_per_m_s: _Num(ge=-5, le=5) = 0.45

    @classmethod
    def clean(cls, **changes) -> "RunnerParams":
        """The noise-free preset: no noise, dropouts, drift or timing jitter."""
        return cls(**{**PRESETS["clean"], **changes})

    def replace(self, **changes) -> "RunnerParams":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        _validate(self)

    def as_dict(self) -> dict:
        """The fields as a plain ``{name: value}`` dict (stored as ``/truth`` attributes)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, dict] = {
    "realistic": {},
    "clean": {"force_noise_n": 0.0, "marker_noise_mm": 0.0, "dropout_rate": 0.0,
              "drift_n_per_s": 0.0, "step_time_sd_s": 0.0, "step_variability": 0.0},
}
"""Named parameter sets; ``parse_params({"preset": "clean", ...})`` starts from one."""

_FIELDS = {f.name: f for f in dataclasses.fields(RunnerParams)}
#: The Python type each parameter's text is parsed as (``--param k=v``): float, int or str.
_KINDS = {name: (str if typing.get_origin(hint) is Literal else
                 typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint)
          for name, hint in typing.get_type_hints(RunnerParams, include_extras=True).items()}


def _validate(p: RunnerParams, source=None) -> None:
    """The declared types and ranges (pydantic, :func:`treadlab.config.schema.check_table`),
    then the rules that relate several parameters."""
    check_table(p, RunnerParams, None, source)

    def bad(key, msg):
        raise ConfigError(source, key, msg)

    for key in ("force_rate_hz", "marker_rate_hz"):
        v = getattr(p, key)
        if abs(v - round(v)) > 1e-9:
            bad(key, f"must be a whole number of Hz up to 100000, got {v!r}")
    if p.overstride_mm > 0.4 * p.leg_length_mm:
        bad("overstride_mm", f"{p.overstride_mm} mm is more than 40 % of the leg length "
            f"({p.leg_length_mm} mm)")
    stance = p.speed_m_s * p.contact_time_s
    if not (0.3 <= stance <= 1.0):
        bad("contact_time_s", f"the foot would travel {stance:.2f} m with the belt during "
            f"a contact of {p.contact_time_s} s at {p.speed_m_s} m/s; a runner's stance covers "
            "0.3..1.0 m")
    step = 60.0 / p.cadence_spm
    flight = step - p.contact_time_s - 6 * p.step_time_sd_s
    if flight < 0.02:
        bad("contact_time_s", f"{p.contact_time_s} s leaves no flight phase at "
            f"{p.cadence_spm} steps/min (step {step:.3f} s, jitter "
            f"±{3 * p.step_time_sd_s:.3f} s); running needs >= 20 ms of flight")


def parse_params(values: dict[str, str] | None, source=None) -> RunnerParams:
    """Build :class:`RunnerParams` from ``{"name": "text"}`` pairs (CLI ``--param``, TOML).

    Parameters
    ----------
    values : dict of str to str (or already typed values)
        Field names of :class:`RunnerParams`, plus ``preset`` (``"realistic"`` (default) or
        ``"clean"``), applied first.
    source : str or path, optional
        Named in errors (e.g. the lab TOML file).

    Raises
    ------
    ConfigError
        Naming the unknown key or the bad value.
    """
    values = dict(values or {})
    preset = str(values.pop("preset", "realistic")).strip()
    if preset not in PRESETS:
        raise ConfigError(source, "preset", f"unknown preset {preset!r}; "
                          f"known: {', '.join(PRESETS)}")
    kwargs = dict(PRESETS[preset])
    for key, text in values.items():
        f = _FIELDS.get(key)
        if f is None:
            raise ConfigError(source, key, "unknown synthetic-runner parameter; known: "
                              + ", ".join(_FIELDS))
        kwargs[key] = _convert(source, key, _KINDS[key], text)
    p = object.__new__(RunnerParams)
    for name, fld in _FIELDS.items():
        object.__setattr__(p, name, kwargs.get(name, fld.default))
    _validate(p, source)
    return p


def _convert(source, key, typ, text):
    if not isinstance(text, str):
        return text
    s = text.strip()
    if typ in ("str", str):
        return s
    try:
        if typ in ("int", int):
            return int(s)
        return float(s)
    except ValueError:
        kind = "an integer" if typ in ("int", int) else "a number"
        raise ConfigError(source, key, f"must be {kind}, got {text!r}") from None


# --------------------------------------------------------------------------------------------
# Small geometry helpers (vectorised over the leading axis)
# --------------------------------------------------------------------------------------------

def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _apply(R, v):
    """R (n,3,3) @ v (3,) -> (n,3)."""
    return R[:, :, 0] * v[0] + R[:, :, 1] * v[1] + R[:, :, 2] * v[2]


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def davis_hjc(leg_length_mm: float, inter_asis_mm: float, marker_diameter_mm: float = 14.0):
    """Hip joint centres in the CGM pelvis frame (Davis et al. 1991, as pyCGM2 computes them).

    Returns
    -------
    (left, right) : two (3,) float64 arrays, mm, pelvis frame (origin mid-ASIS, X forward,
        Y left, Z up).
    """
    c = leg_length_mm * 0.115 - 15.3
    atd = 0.1288 * leg_length_mm - 48.56 + marker_diameter_mm / 2.0
    x = c * math.cos(0.5) * math.sin(0.314) - atd * math.cos(0.314)
    y = -(c * math.sin(0.5) - inter_asis_mm / 2.0)
    z = -c * math.cos(0.5) * math.cos(0.314) - atd * math.sin(0.314)
    return np.array([x, y, z]), np.array([x, -y, z])


def _euler_yxz(R):
    """Angles (a, b, c) of R = Ry(a) Rx(b) Rz(c), radians, vectorised over R (..., 3, 3)."""
    a = np.arctan2(R[..., 0, 2], R[..., 2, 2])
    b = np.arcsin(np.clip(-R[..., 1, 2], -1.0, 1.0))
    c = np.arctan2(R[..., 1, 0], R[..., 1, 1])
    return a, b, c


def pelvis_angles_from_markers(pos, labels=LABELS):
    """Plug-in Gait pelvis angles against the lab (YXZ order) from marker positions.

    Parameters
    ----------
    pos : (m, k, 3) float array, mm, lab frame.

    Returns
    -------
    (tilt, obliquity, rotation) : three (m,) float64 arrays, degrees; tilt + anterior,
        obliquity + left side up, rotation + left side forward.
    """
    ix = {n: i for i, n in enumerate(labels)}
    lasi, rasi = pos[:, ix["LASI"]].astype(float), pos[:, ix["RASI"]].astype(float)
    sacr = 0.5 * (pos[:, ix["LPSI"]] + pos[:, ix["RPSI"]]).astype(float)
    R = _frame_from_markers(lasi, rasi, sacr)
    a, b, c = _euler_yxz(R)
    return np.degrees(a), np.degrees(b), -np.degrees(c)


def _frame_from_markers(lasi, rasi, sacr):
    y = _unit(lasi - rasi)
    z = _unit(np.cross(y, sacr - rasi))
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=-1)


def trunk_lean_from_markers(pos, labels=LABELS):
    """CGM thorax long-axis lean from the vertical in the sagittal plane (degrees, + forward).

    pos : (m, k, 3) float array, mm, lab frame.  Returns (m,) float64 degrees.
    """
    ix = {n: i for i, n in enumerate(labels)}
    top = 0.5 * (pos[:, ix["C7"]] + pos[:, ix["CLAV"]]).astype(float)
    bottom = 0.5 * (pos[:, ix["T10"]] + pos[:, ix["STRN"]]).astype(float)
    a = top - bottom
    return np.degrees(np.arctan2(a[:, 0], a[:, 2]))


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------
DRIFT_HALF_PERIOD_S = 300.0
"""The force-plate zero drift rises for this long, then falls back (s)."""

_POOL = 1 << 16                  # noise pool size (fits in L2: random gathers stay fast)
_MAX_RUN = 17                    # longest marker dropout run (frames)
_BLOCK = 1 << 15                 # samples per vectorised block (keeps temporaries in cache)


def _splitmix64(x):
    """The splitmix64 finaliser, vectorised over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _fz_template(u):
    """Vertical force shape over a contact, u in [0, 1] (fraction of the contact): impact
    transient plus active hump, 0 at both ends."""
    x = u * (1.0 / _IMPACT_U)
    return (_IMPACT_GAIN * x * np.exp(0.5 * (1.0 - x * x))
            + _ACTIVE_NORM * u ** _ACTIVE_A * (1.0 - u) ** _ACTIVE_B)


def _runs(sorted_keys):
    """(start, stop) of the runs of equal values in a sorted 1-D array."""
    n = len(sorted_keys)
    if n == 0:
        return []
    cuts = np.flatnonzero(np.diff(sorted_keys)) + 1
    return zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [n]]).tolist())


def _keys(s, v0, s1, v1, v2):
    """Piecewise quintic 'smootherstep' through (0, v0), (s1, v1), (1, v2), at rest at each key."""
    first = s < s1
    x = np.where(first, s / s1, (s - s1) / (1 - s1))
    x = np.clip(x, 0.0, 1.0)
    w = x * x * x * (x * (6 * x - 15) + 10)
    return np.where(first, v0 + (v1 - v0) * w, v1 + (v2 - v1) * w)


def _standing_sway(t):
    """(n, 2) float64 mm: antero-posterior and medio-lateral sway of quiet standing at times
    ``t`` (s): slow sines (0.13 and 0.21 Hz) of ``STANDING_SWAY_MM`` and 0.6 of it."""
    t = np.asarray(t, float)
    return np.stack([STANDING_SWAY_MM * np.sin(2 * np.pi * 0.13 * t + 0.4),
                     0.6 * STANDING_SWAY_MM * np.sin(2 * np.pi * 0.21 * t + 1.1)], -1)


def _pelvis_matrix(a, b, c):
    """R = Ry(a) Rx(b) Rz(c), vectorised: (n, 3, 3)."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    R = np.empty(np.shape(a) + (3, 3))
    R[..., 0, 0] = ca * cc + sa * sb * sc
    R[..., 0, 1] = -ca * sc + sa * sb * cc
    R[..., 0, 2] = sa * cb
    R[..., 1, 0] = cb * sc
    R[..., 1, 1] = cb * cc
    R[..., 1, 2] = -sb
    R[..., 2, 0] = -sa * cc + ca * sb * sc
    R[..., 2, 1] = sa * sc + ca * sb * cc
    R[..., 2, 2] = ca * cb
    return R



class SyntheticRunner:
    """Deterministic synthetic treadmill runner (docs/design.md §6).

    Parameters
    ----------
    params : RunnerParams, optional (default: the realistic runner).

    Attributes
    ----------
    params : RunnerParams
    plates : list of str
        ``["left", "right"]`` (split belt; the left plate at Y > 0) or ``["treadmill"]``.
    origin : (p, 3) float64, mm, lab frame
        Each plate's moment reference point: the centre of its top (belt) surface.
    corners : (p, 4, 3) float64, mm, lab frame
        Plate corners counter-clockwise seen from above, starting at +X +Y.
    labels : list of str
        Marker names (:data:`LABELS`).
    subject : dict
        Anthropometrics for the archive's ``/subject`` (mm): leg lengths, inter-ASIS
        distance, knee and ankle widths, marker diameter, height.
    body_weight_n : float
        Body weight (N).
    step_period_s : float
        Nominal step period (s).
    force_rate_hz, marker_rate_hz : float
        Sample rates (Hz).
    """

    def __init__(self, params: RunnerParams | None = None):
        self.params = p = params if params is not None else RunnerParams()
        self.body_weight_n = p.body_mass_kg * G
        self.step_period_s = 60.0 / p.cadence_spm
        self.force_rate_hz = float(round(p.force_rate_hz))
        self.marker_rate_hz = float(round(p.marker_rate_hz))
        self.labels = list(LABELS)
        self._pools: dict[int, np.ndarray] = {}
        self._t_first = 0.1
        self._v = p.speed_m_s * 1000.0          # belt speed, mm/s
        #: speed profile followed (:meth:`follow`): knot times (s) and speeds (m/s), or None
        self._profile: tuple[np.ndarray, np.ndarray] | None = None
        #: thigh angle at toe off (rad) beyond the linear dial, per grid speed (_theta_shift)
        self._shift: dict[int, float] = {}
        self._trial_shift: float | None = None       # set while _solve_shift runs

        # Plates: the feet land near X = overstride and leave near X = -600.
        if p.belt == "split":
            self.plates = ["left", "right"]
            self.origin = np.array([[-150.0, 135.0, 0.0], [-150.0, -135.0, 0.0]])
            half = (900.0, 125.0)
        else:
            self.plates = ["treadmill"]
            self.origin = np.array([[-150.0, 0.0, 0.0]])
            half = (900.0, 260.0)
        sx = np.array([1.0, -1.0, -1.0, 1.0]) * half[0]
        sy = np.array([1.0, 1.0, -1.0, -1.0]) * half[1]
        self.corners = np.stack([np.stack([o[0] + sx, o[1] + sy, np.full(4, o[2])], -1)
                                 for o in self.origin])

        # Anthropometrics.
        L = float(p.leg_length_mm)
        self.marker_diameter_mm = 14.0
        self.knee_width_mm = round(0.114 * L, 1)
        self.ankle_width_mm = round(0.076 * L, 1)
        self.subject = {
            "leg_length_left_mm": L, "leg_length_right_mm": L,
            "inter_asis_mm": float(p.inter_asis_mm),
            "knee_width_left_mm": self.knee_width_mm, "knee_width_right_mm": self.knee_width_mm,
            "ankle_width_left_mm": self.ankle_width_mm,
            "ankle_width_right_mm": self.ankle_width_mm,
            "marker_diameter_mm": self.marker_diameter_mm,
            "height_mm": round(L / 0.52, 1),
        }
        self._lt = 0.475 * L                    # thigh: HJC to KJC
        self._ls = 0.475 * L                    # shank: KJC to AJC
        self._psis_depth = 0.64 * p.inter_asis_mm
        self._psis_half = 45.0
        self._hjc = davis_hjc(L, p.inter_asis_mm, self.marker_diameter_mm)
        self._foot_y = abs(self._hjc[0][1]) - 10.0

        # Vertical force template and the force-onset-to-end duration whose 20 N contact time
        # is contact_time_s.
        u = np.linspace(0.0, 1.0, 20001)
        f = self._fz_shape(u)
        self._fz_integral = float(np.trapezoid(f, u))
        self._tpl_u, self._tpl_f = u, f
        d = np.diff(f)
        self._tpl_i_imp = int(np.nonzero((d[:-1] > 0) & (d[1:] <= 0))[0][0] + 1)
        self._tpl_i_max = int(np.argmax(f))
        self._tc = p.contact_time_s
        for _ in range(30):
            d_on, d_off = self._crossings_u(self._fz_scale(self.step_period_s))
            self._tc = p.contact_time_s / (d_off - d_on)
        self._d_on = float(d_on * self._tc)        # onset to the 20 N crossing (s)
        self._t_off = self._d_on + p.contact_time_s  # onset to the 20 N toe off (s)

        # AP force: braking peak (BW) grows with the heel lead (Wille 2014: heel-COM distance
        # predicts braking impulse).
        self._brake_bw = 0.18 + _BRAKE_PER_MM * p.overstride_mm

        # Kinematic constants, solved so the causes hold as measured.
        self._tilt0 = math.radians(_PELVIC_TILT_DEG)
        self._pelvis_z0 = 0.0
        self._theta_to = -math.radians(p.hip_extension_deg + _PELVIC_TILT_DEG)
        self._heel_off = _HEEL_OFFS[0]
        self.geometry_note = ""
        self._solve_geometry()

    # ---------------------------------------------------------------- steps and timing
    def _step_normals(self, k: np.ndarray, stream: int, width: int) -> np.ndarray:
        """(len(k), width) standard normals clipped at ±3 for steps k (sorted), drawn in
        fixed blocks of steps seeded by (seed, stream, block index)."""
        out = np.empty((len(k), width))
        blocks = np.floor_divide(k, _JITTER_BLOCK)
        for a, b in _runs(blocks):
            blk = int(blocks[a])
            rng = np.random.default_rng([self.params.seed, stream, blk + _CHUNK_OFFSET])
            draws = np.clip(rng.standard_normal((_JITTER_BLOCK, width)), -3, 3)
            out[a:b] = draws[k[a:b] - blk * _JITTER_BLOCK]
        return out

    def _jitter(self, k: np.ndarray) -> np.ndarray:
        """Foot-strike time jitter (s) of steps k (sorted)."""
        sd = self.params.step_time_sd_s
        if sd <= 0:
            return np.zeros(k.shape)
        return self._step_normals(k, _S_JITTER, 1)[:, 0] * sd

    def _step_table(self, t_lo: float, t_hi: float, jitter: bool = True) -> dict:
        """Steps around [t_lo, t_hi]: index k, side, onset (s), period to the next onset (s)."""
        T = self.step_period_s
        k0 = int(math.floor((t_lo - self._t_first) / T)) - 4
        k1 = int(math.ceil((t_hi - self._t_first) / T)) + 5
        k = np.arange(k0, k1 + 1, dtype=np.int64)
        on = self._t_first + k * T + (self._jitter(k) if jitter else 0.0)
        p = self.params
        f = p.step_variability if jitter else 0.0
        z = self._step_normals(k, _S_VARIABILITY, 4) * f if f > 0 else np.zeros((len(k), 4))
        tab = {"k": k[:-1], "side": (k[:-1] % 2).astype(np.int8), "on": on[:-1],
               "period": np.diff(on),
               # per-step cause values: pelvic drop (rad), trunk lean (rad), heel lead
               # offset (mm), thigh angle at toe off (rad)
               "drop": math.radians(p.pelvic_drop_deg) * (1 + z[:-1, 0]),
               "lean": math.radians(p.trunk_lean_deg) * (1 + z[:-1, 1]),
               "dover": p.overstride_mm * z[:-1, 2],
               "theta_to": self._theta_to - math.radians(p.hip_extension_deg) * z[:-1, 3]}
        m = len(tab["on"])
        if self._profile is None:
            tab["v"] = np.full(m, self._v)                 # belt speed during stance, mm/s
            tab["tc"] = np.full(m, self._tc)               # force onset to end, s
            tab["d_on"] = np.full(m, self._d_on)           # onset to the 20 N strike, s
            tab["t_off"] = np.full(m, self._t_off)         # onset to the 20 N toe off, s
            tab["x0"] = self._heel_contact_x0(tab["on"]) + tab["dover"]
            tab["brake"] = self._brake_bw + _BRAKE_PER_MM * tab["dover"]   # BW
            return tab
        # following a belt (:meth:`follow`): each step runs at the belt speed of its midstance
        v = self.speed_at(tab["on"] + 0.5 * p.contact_time_s)         # m/s
        dv = v - p.speed_m_s
        ct = p.contact_time_s * (p.speed_m_s / v) ** p.contact_time_speed_exponent
        tc, d_on = self._force_duration(ct)
        tab["v"], tab["tc"], tab["d_on"], tab["t_off"] = v * 1000.0, tc, d_on, d_on + ct
        tab["drop"] = (np.radians(p.pelvic_drop_deg + p.pelvic_drop_deg_per_m_s * dv)
                       * (1 + z[:-1, 0]))
        shift = (self._theta_shift(v) if self._trial_shift is None
                 else np.full(len(v), self._trial_shift))
        tab["theta_to"] = (tab["theta_to"] - np.radians(p.hip_extension_deg_per_m_s * dv)
                           + shift)
        over = p.overstride_mm_per_m_s * dv                             # mm beyond the dial
        tab["x0"] = (self._heel_contact_x0(tab["on"], d_on, tc, v * 1000.0,
                                           p.overstride_mm + over) + tab["dover"])
        tab["brake"] = self._brake_bw + _BRAKE_PER_MM * (over + tab["dover"])   # BW
        return tab

    # ---------------------------------------------------------------- following a belt
    def follow(self, times_s, speeds_m_s) -> None:
        """Run at a changing belt speed from now on: ``speeds_m_s`` (m/s) at runner times
        ``times_s`` (s, increasing), linear in between, the first speed before the first time
        and the last after the last (``None``: back to ``speed_m_s``).

        Each step runs at the profile's speed at its midstance (its feet ride the belt at that
        speed), with the contact time, heel lead, hip extension and pelvic drop that go with
        it (:class:`RunnerParams`, ``*_per_m_s``; the thigh angle at toe off that gives the hip
        extension is solved every 0.05 m/s and interpolated); the cadence is unchanged, so the steps keep
        their times and the markers stay continuous (each step's pose is set at its strike
        and the swing in between joins two strikes). Speeds are clipped to
        :meth:`follow_range`. A step's values are used from two steps before its strike on
        (the swing towards it): change the profile only for times later than that, or the
        signal already produced changes.
        """
        if times_s is None:
            self._profile = None
            return
        t = np.asarray(times_s, np.float64).reshape(-1)
        v = np.asarray(speeds_m_s, np.float64).reshape(-1)
        if t.size == 0 or t.size != v.size or not np.all(np.isfinite(t)) \
                or not np.all(np.isfinite(v)) or np.any(np.diff(t) < 0):
            raise ValueError("follow: times (s, increasing) and speeds (m/s) of one length")
        lo, hi = self.follow_range()
        self._profile = (t.copy(), np.clip(v, lo, hi))

    def speed_at(self, t) -> np.ndarray:
        """The running speed (m/s) at runner times ``t`` (s): the followed profile, else
        ``speed_m_s``."""
        t = np.asarray(t, np.float64)
        if self._profile is None:
            return np.full(t.shape, float(self.params.speed_m_s))
        return np.interp(t, *self._profile)

    def follow_range(self) -> tuple[float, float]:
        """The speeds (m/s) this runner can follow: a stance of 0.3–1.0 m at the contact time
        of that speed, at least 20 ms of flight (plus 6 step-time SDs) at ``cadence_spm``, and
        within :data:`SPEED_RANGE_M_S`."""
        p = self.params
        a, ct0, v0 = p.contact_time_speed_exponent, p.contact_time_s, p.speed_m_s
        k = ct0 * v0 ** a                      # stance(v) = k · v^(1 - a), contact(v) = k / v^a
        lo, hi = SPEED_RANGE_M_S
        if a < 1:
            lo, hi = max(lo, (0.3 / k) ** (1 / (1 - a))), min(hi, (1.0 / k) ** (1 / (1 - a)))
        max_ct = self.step_period_s - 0.02 - 6 * p.step_time_sd_s
        if a > 0:
            lo = max(lo, (k / max_ct) ** (1 / a))
        lo, hi = min(max(lo, SPEED_RANGE_M_S[0]), v0), max(min(hi, SPEED_RANGE_M_S[1]), v0)
        return float(lo), float(hi)

    def _theta_shift(self, v) -> np.ndarray:
        """Correction (rad) of the thigh angle at toe off at speeds ``v`` (m/s) so that the
        peak hip extension is the speed's dial: solved once per :data:`_FOLLOW_GRID_M_S` grid
        speed (:meth:`_solve_shift`, cached) and interpolated linearly in between, so it is a
        continuous function of the speed alone (whatever order steps are made in)."""
        g = np.asarray(v, np.float64) / _FOLLOW_GRID_M_S
        i0 = np.floor(g).astype(np.int64)
        for i in set(i0.tolist()) | set((i0 + 1).tolist()):
            if i not in self._shift:
                self._shift[i] = self._solve_shift(i * _FOLLOW_GRID_M_S)
        s0 = np.array([self._shift[i] for i in i0.tolist()])
        s1 = np.array([self._shift[i] for i in (i0 + 1).tolist()])
        w = g - i0
        return s0 * (1 - w) + s1 * w

    def _solve_shift(self, v: float) -> float:
        """The correction of :meth:`_theta_shift` at one speed ``v`` (m/s): secant steps on the
        measured 3-D hip angle of a jitter-free left stance at that speed, as
        :meth:`_solve_geometry` does at ``speed_m_s``; the best found when the geometry
        cannot reach the dial."""
        p = self.params
        saved = self._profile
        self._profile = (np.zeros(1), np.full(1, float(v)))
        target = p.hip_extension_deg + p.hip_extension_deg_per_m_s * (v - p.speed_m_s)
        T = self.step_period_s
        ct = p.contact_time_s * (p.speed_m_s / v) ** p.contact_time_speed_exponent
        tc, d_on = self._force_duration(np.array([ct]))
        t_on = self._t_first + 2 * T           # a left onset of the jitter-free schedule
        ts = np.arange(t_on + d_on[0] + ct / 2, t_on + d_on[0] + ct, 5e-4)
        best = (math.inf, 0.0)
        try:
            self._trial_shift = 0.0
            for _ in range(8):
                kin = self._kinematics(ts, jitter=False)
                e = float(np.max(-self.hip_flexion(kin["R_pelvis"],
                                                   kin["legs"][0]["R_thigh"]))) - target
                best = min(best, (abs(e), self._trial_shift))
                if abs(e) < 1e-3:
                    break
                self._trial_shift += math.radians(e)
        finally:
            self._profile, self._trial_shift = saved, None
        return best[1]

    def _force_duration(self, ct):
        """Force onset-to-end durations (s) whose 20 N contact time is ``ct`` (s, array) at
        the nominal step period, and the onset-to-strike delays (s), as ``__init__`` solves
        them for ``contact_time_s``."""
        ct = np.asarray(ct, np.float64)
        tc = ct.copy()
        for _ in range(30):
            d_on, d_off = self._crossings_u(self._fz_scale(self.step_period_s, tc))
            tc = ct / (d_off - d_on)
        return tc, d_on * tc

    @staticmethod
    def _locate(tab, t):
        """Index into the step table of the last onset <= t."""
        return np.searchsorted(tab["on"], t, side="right") - 1

    # ---------------------------------------------------------------- force
    @staticmethod
    def _fz_shape(u):
        u = np.asarray(u, dtype=float)
        inside = (u >= 0) & (u <= 1)
        uc = np.clip(u, 0.0, 1.0)
        return np.where(inside, _fz_template(uc), 0.0)

    def _fz_scale(self, period, tc=None):
        """Per-step amplitude (N) so that the step impulse is BW × the step period (force
        duration ``tc`` s, default the runner's)."""
        tc = self._tc if tc is None else tc
        return self.body_weight_n * period / (tc * self._fz_integral)

    def _crossings_u(self, scale):
        """Fractions of the contact at which the vertical force crosses 20 N (rise, fall)."""
        u, f = self._tpl_u, self._tpl_f
        i_imp, i_max = self._tpl_i_imp, self._tpl_i_max
        return (np.interp(20.0 / scale, f[: i_imp + 1], u[: i_imp + 1]),
                np.interp(20.0 / scale, f[i_max:][::-1], u[i_max:][::-1]))

    def _heel_contact_x0(self, t_on, d_on=None, tc=None, v=None, overstride=None):
        """Lab X (mm) of the heel contact point at onset, placed so that the heel marker leads
        the pelvis centre by ``overstride`` mm (default ``overstride_mm``) at foot strike;
        ``d_on`` (s), ``tc`` (s) and ``v`` (mm/s) per step, default the runner's."""
        if d_on is None:
            d_on = self._d_on
            u = d_on / self._tc
            phi = math.radians(_STRIKE_PITCH_DEG) * (1 - float(_smoothstep(u / _HEEL_ROCKER_END)))
            d = _HEE_LOCAL - _HEEL_CONTACT
            dx = d[0] * math.cos(phi) - d[1] * math.sin(phi)
            return (self._pelvis_x(t_on + d_on) + self.params.overstride_mm - dx
                    + self._v * d_on)
        phi = math.radians(_STRIKE_PITCH_DEG) * (1 - _smoothstep(d_on / tc / _HEEL_ROCKER_END))
        d = _HEE_LOCAL - _HEEL_CONTACT
        dx = d[0] * np.cos(phi) - d[1] * np.sin(phi)
        return self._pelvis_x(t_on + d_on) + overstride - dx + v * d_on

    def _pelvis_x(self, t):
        """Pelvis centre X (mm): near 0, with a small speed fluctuation at step frequency."""
        return 4.0 * np.sin(2 * np.pi * (np.asarray(t, float) - self._t_first)
                            / self.step_period_s)

    def force_clean(self, t) -> np.ndarray:
        """Noise- and drift-free wrench at absolute times ``t``.

        Parameters
        ----------
        t : (n,) float64, s.

        Returns
        -------
        (n, p, 6) float64 ``[Fx, Fy, Fz, Mx, My, Mz]``, N and N·m, lab frame, ground reaction
        on the body, moments about each plate's origin.
        """
        t = np.asarray(t, dtype=float)
        if len(t) > _BLOCK:
            return np.concatenate([self.force_clean(t[i:i + _BLOCK])
                                   for i in range(0, len(t), _BLOCK)])
        n = t.shape[0]
        out = np.zeros((n, len(self.plates), 6))
        if n == 0:
            return out
        tab = self._step_table(float(t.min()), float(t.max()))
        j = self._locate(tab, t)
        tau = t - tab["on"][j]
        ii = np.flatnonzero((tau >= 0) & (tau < tab["tc"][j]))
        if len(ii) == 0:
            return out
        j, tau = j[ii], tau[ii]
        tc = tab["tc"][j]
        u = tau * (1.0 / tc)
        side = tab["side"][j]
        sigma = 1.0 - 2.0 * side
        bw = self.body_weight_n
        sin_u = np.sin(np.pi * u)
        cos_u = np.cos(np.pi * u)
        scale = self._fz_scale(tab["period"], tab["tc"])[j]
        ub = _BRAKE_U
        early = u < ub
        ap = np.sin(np.pi * np.where(early, u * (1.0 / ub), (u - ub) * (1.0 / (1 - ub))))
        w = np.empty((len(ii), 6))
        fx, fy, fz = w[:, 0], w[:, 1], w[:, 2]
        brake = tab["brake"][j]
        np.multiply(bw * np.where(early, -brake, brake * (ub / (1 - ub))), ap, out=fx)
        np.multiply((-0.05 * bw) * sigma, sin_u, out=fy)      # medially directed on the body
        np.multiply(scale, _fz_template(u), out=fz)
        tz = (0.008 * bw) * sigma * sin_u * cos_u             # free moment (N·m)
        x0 = tab["x0"][j]
        cop_x = x0 - tab["v"][j] * tau + 115.0 - 100.0 * cos_u   # heel + 15 -> +215 mm
        cop_y = sigma * (self._foot_y + 8.0 - 16.0 * u)
        plate = side.astype(np.intp) if len(self.plates) == 2 else np.zeros(len(ii), np.intp)
        o = self.origin[plate]
        rx = (cop_x - o[:, 0]) * 1e-3
        ry = (cop_y - o[:, 1]) * 1e-3
        rz = -o[:, 2] * 1e-3
        w[:, 3] = ry * fz - rz * fy
        w[:, 4] = rz * fx - rx * fz
        w[:, 5] = rx * fy - ry * fx + tz
        out.reshape(-1, 6)[ii * len(self.plates) + plate] = w
        return out

    def force(self, t) -> np.ndarray:
        """Measured wrench at absolute times ``t``: the clean signal, Fz drift and noise.

        Parameters
        ----------
        t : (n,) float64, s, on the sample grid ``i / force_rate_hz`` (noise belongs to the
            nearest sample index, so a sample always gets the same noise).

        Returns
        -------
        (n, p, 6) float32 ``[Fx, Fy, Fz, Mx, My, Mz]`` in N and N·m, lab frame, the ground
        reaction on the body, moments about each plate's ``origin``.
        """
        t = np.asarray(t, dtype=float)
        if len(t) > _BLOCK:
            out = np.empty((len(t), len(self.plates), 6), np.float32)
            for i in range(0, len(t), _BLOCK):
                out[i:i + _BLOCK] = self.force(t[i:i + _BLOCK])
            return out
        w = self.force_clean(t)
        p = self.params
        if p.drift_n_per_s:
            w[:, :, 2] += self.drift_offset(t)[:, None]
        if p.force_noise_n > 0 and len(t):
            noise = self._sample_noise(t, self.force_rate_hz, _S_FORCE_NOISE,
                                      (len(self.plates), 6))
            w += noise * (np.array([1.0, 1.0, 1.0, 0.05, 0.05, 0.05], np.float32)
                          * np.float32(p.force_noise_n))
        return w.astype(np.float32)

    def drift_offset(self, t) -> np.ndarray:
        """Fz zero offset (N) at times ``t`` ((n,) s): a triangle of slope ±drift_n_per_s and
        half-period ``DRIFT_HALF_PERIOD_S``, starting at 0 at t = 0."""
        x = np.mod(np.asarray(t, float), 2 * DRIFT_HALF_PERIOD_S)
        return self.params.drift_n_per_s * np.minimum(x, 2 * DRIFT_HALF_PERIOD_S - x)

    def _sample_noise(self, t, rate, stream, shape):
        """Standard normal noise, a deterministic function of (seed, stream, sample index).

        Element ``e`` of sample ``i = round(t · rate)`` is the entry of a fixed pool of 2**16
        normals (drawn from ``(seed, stream)``) at a position taken from 16 bits of a
        splitmix64 hash of ``(i, e // 4)``.  Any window of samples therefore gets the same
        noise however the stream is cut.  Returns (n,) + shape float32.
        """
        pool = self._pools.get(stream)
        if pool is None:
            rng = np.random.default_rng([self.params.seed, stream, 0x5EED])
            pool = self._pools[stream] = rng.standard_normal(_POOL, dtype=np.float32)
        idx = np.rint(np.asarray(t, float) * rate).astype(np.int64)
        size = int(np.prod(shape))
        nh = -(-size // 4)                      # 64-bit hashes per sample: 4 indices each
        salt = _splitmix64(np.array([self.params.seed * 1000003 + stream], np.uint64))
        out = np.empty((len(idx), size), np.float32)
        lanes = np.arange(nh, dtype=np.int64)
        shifts = np.array([0, 16, 32, 48], np.uint64)
        step = max(1, _BLOCK * 4 // size)
        for a in range(0, len(idx), step):
            key = _splitmix64((idx[a:a + step, None] * nh + lanes).view(np.uint64) ^ salt)
            pos = ((key[:, :, None] >> shifts) & np.uint64(_POOL - 1)).view(np.int64)
            np.take(pool, pos.reshape(len(key), nh * 4)[:, :size], out=out[a:a + step])
        return out.reshape((len(idx),) + tuple(shape))

    # ---------------------------------------------------------------- pelvis and thorax
    def _pelvis_state(self, t, tab, j):
        """Pelvis pose at times t (step table rows j).

        Returns R (n,3,3) lab-from-pelvis, centre (n,3) mm (mean of ASIS and PSIS), and the
        angles (tilt, obliquity, rotation) in radians (Plug-in Gait signs)."""
        per = tab["period"][j]
        ph = (t - tab["on"][j]) / per                 # step phase 0..1
        sgn = np.where(tab["side"][j] == 0, 1.0, -1.0)
        tc = tab["tc"][j]
        mid = 0.5 * tc / per
        # Obliquity +D at left mid-stance, -D at right mid-stance: one cosine per stride,
        # written per step (the sign flips with the side, so it is continuous).
        blend = _smoothstep((ph - 2 * mid) / (1 - 2 * mid))     # during the flight only
        j1 = np.minimum(j + 1, len(tab["on"]) - 1)
        drop = tab["drop"][j] + (tab["drop"][j1] - tab["drop"][j]) * blend
        obl = drop * sgn * np.cos(np.pi * (ph - mid))
        rot = math.radians(5.0) * sgn * np.cos(np.pi * ph)    # left forward at left strike
        tilt = self._tilt0 + math.radians(2.0) * np.cos(2 * np.pi * (ph - 0.9))
        R = _pelvis_matrix(tilt, obl, -rot)
        low = _PELVIS_LOW_AT * tc / per
        centre = np.stack([self._pelvis_x(t),
                           12.0 * sgn * np.cos(np.pi * (ph - mid)),
                           self._pelvis_z0 - _PELVIS_AMP_MM * np.cos(2 * np.pi * (ph - low))],
                          -1)
        return R, centre, (tilt, obl, rot)

    def _pelvis_origin(self, R, centre):
        """Mid-ASIS (pelvis frame origin) from the pelvis centre (mean of ASIS and PSIS)."""
        return centre + R[:, :, 0] * (self._psis_depth / 2)

    def _hjc_at(self, t, tab, side):
        j = self._locate(tab, t)
        R, centre, _ = self._pelvis_state(t, tab, j)
        return self._pelvis_origin(R, centre) + _apply(R, self._hjc[side])

    def _lean(self, t, tab, j):
        """Thorax lean (rad): mean over each stance = that step's lean, ±1° at step
        frequency; the next step's lean is blended in during the flight."""
        per = tab["period"][j]
        ph = (t - tab["on"][j]) / per
        amp = math.radians(1.0)
        c = tab["tc"][j] / per
        w = 2 * np.pi * c
        mean_cos = (np.sin(w - 2 * np.pi * 0.3) - np.sin(-2 * np.pi * 0.3)) / w
        blend = _smoothstep((ph - c) / (1 - c))
        j1 = np.minimum(j + 1, len(tab["on"]) - 1)
        lean = tab["lean"][j] + (tab["lean"][j1] - tab["lean"][j]) * blend
        return lean - amp * mean_cos + amp * np.cos(2 * np.pi * (ph - 0.3))

    # ---------------------------------------------------------------- legs
    def _ik(self, hx, hz, ax, az):
        """Two-link inverse kinematics in the X–Z plane: knee ahead of the hip–ankle line.
        Returns knee (kx, kz), the (possibly pulled-in) ankle (ax, az) and the clamp mask."""
        lt, ls = self._lt, self._ls
        dx, dz = ax - hx, az - hz
        d = np.hypot(dx, dz)
        dc = np.clip(d, abs(lt - ls) + 1.0, (lt + ls) * 0.9999)
        ex, ez = dx / d, dz / d
        a = (lt * lt - ls * ls + dc * dc) / (2 * dc)
        h = np.sqrt(np.maximum(lt * lt - a * a, 0.0))
        return (hx + a * ex - h * ez, hz + a * ez + h * ex, hx + ex * dc, hz + ez * dc,
                dc != d)

    def _foot_early(self, tau, heel_x0, tc=None, v=None):
        """Stance before heel off: AJC x, z (mm) and pitch (rad, toe up +); the heel contact
        point rides the belt (force duration ``tc`` s and belt speed ``v`` mm/s per sample,
        default the runner's)."""
        u = tau / (self._tc if tc is None else tc)
        phi0 = math.radians(_STRIKE_PITCH_DEG)
        pitch = phi0 * (1 - _smoothstep(u / _HEEL_ROCKER_END))
        hx = heel_x0 - (self._v if v is None else v) * tau
        c, s = np.cos(pitch), np.sin(pitch)
        hc = _HEEL_CONTACT
        return hx - (c * hc[0] - s * hc[1]), -(s * hc[0] + c * hc[1]), pitch

    def _thigh_early(self, t, tau, heel_x0, tab, side, tc=None, v=None):
        """Thigh angle (rad, knee forward +) in the heel/flat phase, from IK."""
        h = self._hjc_at(t, tab, side)
        ax, az, _ = self._foot_early(tau, heel_x0, tc, v)
        kx, kz, _, _, _ = self._ik(h[:, 0], h[:, 2], ax, az)
        return np.arctan2(kx - h[:, 0], h[:, 2] - kz)

    def _step_states(self, tab, side):
        """Per-step constants of one leg for every row of the step table (NaN for the other
        side's rows): thigh angle and rate at heel off, the toe-off pose and the strike pose."""
        cache = tab.setdefault("_legs", {})
        if side in cache:
            return cache[side]
        tc, v = tab["tc"], tab["v"]
        tb = self._heel_off * tc
        dt = 1e-3
        on = tab["on"]
        m = len(on)
        x0 = tab["x0"]
        th_to = tab["theta_to"]
        st = {"x0": x0, "theta_to": th_to}
        # Heel off: thigh angle and its rate from the heel/flat-phase IK.
        th_b = self._thigh_early(on + tb, tb, x0, tab, side, tc, v)
        th_b0 = self._thigh_early(on + tb - dt, tb - dt, x0, tab, side, tc, v)
        st["th_b"], st["w_b"] = th_b, (th_b - th_b0) / dt
        # Toe off pose.
        h = self._hjc_at(on + tc, tab, side)
        kx, kz, ax, az, p0, _ = self._late_stance(tc, x0, th_b, st["w_b"], th_to,
                                                  h[:, 0], h[:, 2], tc, v, tab["t_off"])
        st["kn_to"] = th_to - np.arctan2(ax - kx, kz - az)
        st["p_to"] = p0
        # Strike pose.
        h = self._hjc_at(on, tab, side)
        ax, az, p1 = self._foot_early(np.zeros(m), x0, tc, v)
        kx, kz, _, _, _ = self._ik(h[:, 0], h[:, 2], ax, az)
        th1 = np.arctan2(kx - h[:, 0], h[:, 2] - kz)
        st["th_ic"], st["kn_ic"], st["p_ic"] = th1, th1 - np.arctan2(ax - kx, kz - az), p1
        cache[side] = st
        return st

    def _leg(self, t, tab, side, hjc):
        """Knee and ankle joint centres (n,3) mm, foot pitch (n,) rad, clamped count."""
        n = len(t)
        j = self._locate(tab, t)
        j = np.where(tab["side"][j] == side, j, j - 1)     # last onset of this side
        on = tab["on"][j]
        tau = t - on
        st = self._step_states(tab, side)
        kx, kz, ax, az, pitch = (np.empty(n) for _ in range(5))
        clamped = np.zeros(n, bool)
        hx, hz = hjc[:, 0], hjc[:, 2]
        tc = tab["tc"][j]
        tb = self._heel_off * tc

        ea = np.nonzero(tau < tb)[0]                      # heel rocker and foot flat
        if len(ea):
            x, z, ph = self._foot_early(tau[ea], st["x0"][j[ea]], tc[ea], tab["v"][j[ea]])
            kx[ea], kz[ea], ax[ea], az[ea], clamped[ea] = self._ik(hx[ea], hz[ea], x, z)
            pitch[ea] = ph
        la = np.nonzero((tau >= tb) & (tau < tc))[0]       # toe rocker
        if len(la):
            jl = j[la]
            r = self._late_stance(tau[la], st["x0"][jl], st["th_b"][jl], st["w_b"][jl],
                                  st["theta_to"][jl], hx[la], hz[la], tc[la], tab["v"][jl],
                                  tab["t_off"][jl])
            kx[la], kz[la], ax[la], az[la], pitch[la], clamped[la] = r
        sw = np.nonzero(tau >= tc)[0]                      # swing
        if len(sw):
            js, j2 = j[sw], j[sw] + 2
            s = (tau[sw] - tc[sw]) / (tab["on"][j2] - on[sw] - tc[sw])
            th1 = st["th_ic"][j2]
            th = _keys(s, st["theta_to"][js], _SWING_HIP[0],
                       th1 + math.radians(_SWING_HIP[1]), th1)
            kn = _keys(s, st["kn_to"][js], _SWING_KNEE[0],
                       np.full(len(sw), math.radians(_SWING_KNEE[1])), st["kn_ic"][j2])
            pitch[sw] = _keys(s, st["p_to"][js], _SWING_PITCH[0],
                              np.full(len(sw), math.radians(_SWING_PITCH[1])), st["p_ic"][j2])
            kx[sw] = hx[sw] + self._lt * np.sin(th)
            kz[sw] = hz[sw] - self._lt * np.cos(th)
            psi = th - kn
            ax[sw] = kx[sw] + self._ls * np.sin(psi)
            az[sw] = kz[sw] - self._ls * np.cos(psi)
        sigma = 1.0 if side == 0 else -1.0
        ay = np.full(n, sigma * self._foot_y)
        hy = hjc[:, 1]
        # The knee lies in the plane through hip and ankle containing the lab X axis.
        ky = hy + (ay - hy) * (kz - hz) / (az - hz)
        return (np.stack([kx, ky, kz], -1), np.stack([ax, ay, az], -1), pitch,
                int(clamped.sum()))

    def _late_stance(self, tau, heel_x0, th_b, w_b, th_to, hx, hz, tc=None, v=None,
                     t_off=None):
        """Toe rocker: the thigh angle follows a cubic from its heel-off value and rate
        (th_b, w_b) to ``th_to``, at rest from the 20 N toe off on (so the peak hip
        extension is a plateau, not an edge); the foot pivots about the toe,
        which rides the belt; the ankle closes the loop (circle–circle intersection)."""
        tc = self._tc if tc is None else tc     # per sample: force duration (s),
        v = self._v if v is None else v         # belt speed (mm/s),
        t_off = self._t_off if t_off is None else t_off   # onset to the 20 N toe off (s)
        tb = self._heel_off * tc
        dur = t_off - tb                        # the thigh comes to rest at the 20 N toe off
        s = np.minimum((tau - tb) / dur, 1.0)
        s2, s3 = s * s, s * s * s
        th = (2 * s3 - 3 * s2 + 1) * th_b + (s3 - 2 * s2 + s) * w_b * dur \
            + (-2 * s3 + 3 * s2) * th_to
        kx = hx + self._lt * np.sin(th)
        kz = hz - self._lt * np.cos(th)
        px = heel_x0 - v * tau + (_TOE_PIVOT[0] - _HEEL_CONTACT[0])
        rf = float(np.hypot(*_TOE_PIVOT))
        ls = self._ls
        dx, dz = px - kx, -kz
        d = np.hypot(dx, dz)
        dc = np.clip(d, abs(ls - rf) + 1e-6, (ls + rf) * 0.9999)
        ux, uz = dx / d, dz / d
        a = (ls * ls - rf * rf + dc * dc) / (2 * dc)
        h = np.sqrt(np.maximum(ls * ls - a * a, 0.0))
        # the solution behind the knee-toe line (heel up)
        ax = kx + a * ux + h * uz
        az = kz + a * uz - h * ux
        pitch = np.arctan2(-az, px - ax) - math.atan2(_TOE_PIVOT[1], _TOE_PIVOT[0])
        clamped = dc != d
        up = pitch > 0                        # the heel would go under the belt: keep it flat
        if np.any(up):
            pitch = np.where(up, 0.0, pitch)
            ax = np.where(up, px - _TOE_PIVOT[0], ax)
            az = np.where(up, -_TOE_PIVOT[1], az)
            kx2, kz2, ax2, az2, _ = self._ik(hx, hz, ax, az)
            kx, kz = np.where(up, kx2, kx), np.where(up, kz2, kz)
            ax, az = np.where(up, ax2, ax), np.where(up, az2, az)
            clamped = clamped | up
        return kx, kz, ax, az, pitch, clamped

    # ---------------------------------------------------------------- quiet standing
    def _standing_pose(self, t):
        """Noise-free quiet standing at times ``t`` ((n,) s): the runner stands still on the
        stopped belt, feet flat under the hips, knees nearly straight, pelvis at
        :data:`STANDING_TILT_DEG` tilt and :data:`STANDING_OBLIQUITY_DEG` obliquity, swaying by
        a few mm (slow sines, 0.1–0.3 Hz). Returns a dict: ``pos`` (n, 20, 3) mm, ``feet``
        (2, 3) mm (ankle joint centres, fixed) and ``sway`` (n, 2) mm (X, Y of the pelvis)."""
        t = np.asarray(t, dtype=float)
        n = len(t)
        sway = _standing_sway(t)
        tilt = np.full(n, math.radians(STANDING_TILT_DEG))
        obl = np.full(n, math.radians(STANDING_OBLIQUITY_DEG)) \
            + math.radians(0.3) * np.sin(2 * np.pi * 0.17 * t)
        R = _pelvis_matrix(tilt, obl, np.zeros(n))
        R0 = _pelvis_matrix(tilt[:1], np.full(1, math.radians(STANDING_OBLIQUITY_DEG)),
                            np.zeros(1))                  # the pose without sway
        # pelvis height: the hip centres sit 0.995 leg (HJC-AJC) above the ankles
        ajc_z = -_HEEL_CONTACT[1]
        hip_rel = (_apply(R0, np.array([self._psis_depth / 2, 0.0, 0.0]))
                   + 0.5 * (_apply(R0, self._hjc[0]) + _apply(R0, self._hjc[1])))[0]
        z0 = ajc_z + 0.995 * (self._lt + self._ls) - hip_rel[2]
        centre = np.stack([-150.0 + sway[:, 0], sway[:, 1], np.full(n, z0)], -1)
        origin = self._pelvis_origin(R, centre)
        pos = np.empty((n, len(LABELS), 3))
        half = self.params.inter_asis_mm / 2
        for name, v in {"LASI": (0.0, half, 0.0), "RASI": (0.0, -half, 0.0),
                        "LPSI": (-self._psis_depth, self._psis_half, 0.0),
                        "RPSI": (-self._psis_depth, -self._psis_half, 0.0)}.items():
            pos[:, _IDX[name]] = origin + _apply(R, np.array(v))
        feet = np.empty((2, 3))
        for side, pre in ((0, "L"), (1, "R")):
            sigma = 1.0 if side == 0 else -1.0
            hjc = origin + _apply(R, self._hjc[side])
            hjc0 = (self._pelvis_origin(R0, np.array([[-150.0, 0.0, z0]]))
                    + _apply(R0, self._hjc[side]))[0]
            ajc = np.tile([hjc0[0], sigma * self._foot_y, ajc_z], (n, 1))
            feet[side] = ajc[0]
            kx, kz, ax, az, _ = self._ik(hjc[:, 0], hjc[:, 2], ajc[:, 0], ajc[:, 2])
            ky = hjc[:, 1] + (ajc[:, 1] - hjc[:, 1]) * (kz - hjc[:, 2]) / (az - hjc[:, 2])
            kjc = np.stack([kx, ky, kz], -1)
            ajc = np.stack([ax, ajc[:, 1], az], -1)
            self._place_leg(pos, pre, sigma, hjc, kjc, ajc, np.zeros(n))
        Rt = _pelvis_matrix(np.full(n, math.radians(2.0)), np.zeros(n), np.zeros(n))
        bottom = centre + np.array([0.0, 0.0, 60.0]) + Rt[:, :, 2] * 250.0
        for name, v in _THORAX_LOCAL.items():
            pos[:, _IDX[name]] = bottom + _apply(Rt, np.array(v))
        return {"pos": pos, "feet": feet, "sway": sway}

    def standing_markers(self, t) -> np.ndarray:
        """Measured markers of quiet standing at times ``t`` ((m,) s on the frame grid): the
        same markers as :meth:`markers` (noise, dropouts), (m, 20, 3) float32 mm, lab frame."""
        t = np.asarray(t, dtype=float)
        if len(t) == 0:
            return np.zeros((0, len(LABELS), 3), np.float32)
        return self._measure_markers(t, self._standing_pose(t)["pos"])

    def standing_force(self, t) -> np.ndarray:
        """Measured wrench of quiet standing at times ``t`` ((n,) s on the sample grid):
        body weight shared by the two feet (each foot's share follows the medio-lateral sway),
        the centre of pressure under each foot following the sway, no horizontal force but
        noise; drift and noise as :meth:`force`. (n, p, 6) float32 N, N·m about each plate's
        origin (split belt: each foot on its own plate; single belt: both on one)."""
        t = np.asarray(t, dtype=float)
        n = len(t)
        pose = self._standing_pose(t[:1] if n else np.zeros(1))
        feet = pose["feet"]
        sway = _standing_sway(t)
        w = np.zeros((n, len(self.plates), 6))
        width = feet[0, 1] - feet[1, 1]
        for side in (0, 1):
            share = 0.5 + (1.0 if side == 0 else -1.0) * sway[:, 1] / width
            fz = self.body_weight_n * share
            plate = side if len(self.plates) == 2 else 0
            o = self.origin[plate]
            rx = (feet[side, 0] + 40.0 + sway[:, 0] - o[0]) * 1e-3
            ry = (feet[side, 1] - o[1]) * 1e-3
            w[:, plate, 2] += fz
            w[:, plate, 3] += ry * fz
            w[:, plate, 4] += -rx * fz
        p = self.params
        if p.drift_n_per_s:
            w[:, :, 2] += self.drift_offset(t)[:, None]
        if p.force_noise_n > 0 and n:
            noise = self._sample_noise(t, self.force_rate_hz, _S_FORCE_NOISE,
                                      (len(self.plates), 6))
            w += noise * (np.array([1.0, 1.0, 1.0, 0.05, 0.05, 0.05], np.float32)
                          * np.float32(p.force_noise_n))
        return w.astype(np.float32)

    def standing_truth(self) -> dict:
        """What a static trial of the standing runner should measure: ``pelvic_obliquity_deg``
        and ``pelvic_tilt_deg`` (deg, the standing pose), ``leg_length_mm`` (mm, the
        parameter: ASIS to medial malleolus), ``asis_to_lateral_malleolus_mm`` (mm, mean over
        both sides of the noise-free standing markers) and ``inter_asis_mm`` (mm)."""
        pos = self._standing_pose(np.arange(0.0, 10.0, 0.05))["pos"]
        d = [np.linalg.norm(pos[:, _IDX[a]] - pos[:, _IDX[b]], axis=-1).mean()
             for a, b in (("LASI", "LANK"), ("RASI", "RANK"))]
        return {"pelvic_obliquity_deg": STANDING_OBLIQUITY_DEG,
                "pelvic_tilt_deg": STANDING_TILT_DEG,
                "leg_length_mm": float(self.params.leg_length_mm),
                "asis_to_lateral_malleolus_mm": float(np.mean(d)),
                "inter_asis_mm": float(self.params.inter_asis_mm)}

    def _place_leg(self, pos, pre, sigma, hjc, kjc, ajc, pitch):
        """Thigh, knee, shank, ankle, heel and toe markers of one leg into ``pos`` (n, 20, 3)
        mm from the joint centres (n, 3) mm and the foot pitch (n,) rad; returns the knee
        axis (n, 3) and the thigh long axis (n, 3)."""
        mr = self.marker_diameter_mm / 2
        fwd = np.array([1.0, 0.0, 0.0])
        yleg = _unit(np.cross(fwd, ajc - hjc))          # knee axis, pointing left
        zt = _unit(hjc - kjc)
        zs = _unit(kjc - ajc)
        pos[:, _IDX[pre + "KNE"]] = kjc + sigma * (self.knee_width_mm / 2 + mr) * yleg
        pos[:, _IDX[pre + "THI"]] = kjc + 0.45 * self._lt * zt + sigma * 75.0 * yleg
        pos[:, _IDX[pre + "ANK"]] = ajc + sigma * (self.ankle_width_mm / 2 + mr) * yleg
        pos[:, _IDX[pre + "TIB"]] = ajc + 0.45 * self._ls * zs + sigma * 55.0 * yleg
        c, s = np.cos(pitch), np.sin(pitch)
        for name, loc in (("HEE", _HEE_LOCAL), ("TOE", _TOE_LOCAL)):
            q = pos[:, _IDX[pre + name]]
            q[:, 0] = ajc[:, 0] + c * loc[0] - s * loc[1]
            q[:, 1] = ajc[:, 1]
            q[:, 2] = ajc[:, 2] + s * loc[0] + c * loc[1]
        return yleg, zt

    def _kinematics(self, t, jitter: bool = True):
        """Noise-free poses and markers at times ``t`` ((n,) s): a dict with ``pos``
        (n, 20, 3) mm, ``R_pelvis``, ``centre``, ``tilt``/``obliquity``/``rotation``/``lean``
        (rad) and per side ``legs[s]`` = hjc, kjc, ajc (n,3) mm, ``R_thigh`` (n,3,3)."""
        t = np.asarray(t, dtype=float)
        n = len(t)
        tab = self._step_table(float(t.min()), float(t.max()), jitter)
        j = self._locate(tab, t)
        R, centre, (tilt, obl, rot) = self._pelvis_state(t, tab, j)
        origin = self._pelvis_origin(R, centre)
        pos = np.empty((n, len(LABELS), 3))
        half = self.params.inter_asis_mm / 2
        pelvis_local = {"LASI": (0.0, half, 0.0), "RASI": (0.0, -half, 0.0),
                        "LPSI": (-self._psis_depth, self._psis_half, 0.0),
                        "RPSI": (-self._psis_depth, -self._psis_half, 0.0)}
        for name, v in pelvis_local.items():
            pos[:, _IDX[name]] = origin + _apply(R, np.array(v))
        legs = {}
        clamped = 0
        for side, pre in ((0, "L"), (1, "R")):
            sigma = 1.0 if side == 0 else -1.0
            hjc = origin + _apply(R, self._hjc[side])
            kjc, ajc, pitch, nc = self._leg(t, tab, side, hjc)
            clamped += nc
            yleg, zt = self._place_leg(pos, pre, sigma, hjc, kjc, ajc, pitch)
            R_thigh = np.stack([np.cross(yleg, zt), yleg, zt], axis=-1)
            legs[side] = {"hjc": hjc, "kjc": kjc, "ajc": ajc, "pitch": pitch,
                          "R_thigh": R_thigh}
        if clamped:
            log.debug("synthetic runner: leg geometry clamped on %d samples", clamped)
        lean = self._lean(t, tab, j)
        Rt = _pelvis_matrix(lean, np.zeros(n), 0.6 * rot)   # thorax counter-rotates
        bottom = centre + np.array([0.0, 0.0, 60.0]) + Rt[:, :, 2] * 250.0
        for name, v in _THORAX_LOCAL.items():
            pos[:, _IDX[name]] = bottom + _apply(Rt, np.array(v))
        return {"pos": pos, "R_pelvis": R, "centre": centre, "tilt": tilt, "obliquity": obl,
                "rotation": rot, "lean": lean, "legs": legs, "clamped": clamped}

    @staticmethod
    def hip_flexion(R_pelvis, R_thigh):
        """CGM hip flexion (degrees, + flexion) from pelvis and thigh frames.

        R_pelvis, R_thigh : (n, 3, 3) float, columns = segment X, Y, Z axes in the lab.
        Returns (n,) float64 degrees (YXZ Euler sequence of the thigh in the pelvis frame).
        """
        rel = np.einsum("nji,njk->nik", R_pelvis, R_thigh)
        a, _, _ = _euler_yxz(rel)
        return -np.degrees(a)

    def markers_clean(self, t) -> np.ndarray:
        """Noise-free marker positions at times ``t`` ((n,) s): (n, 20, 3) float64 mm."""
        t = np.asarray(t, dtype=float)
        if len(t) == 0:
            return np.zeros((0, len(LABELS), 3))
        if len(t) > _BLOCK // 4:
            return np.concatenate([self._kinematics(t[i:i + _BLOCK // 4])["pos"]
                                   for i in range(0, len(t), _BLOCK // 4)])
        return self._kinematics(t)["pos"]

    def _series(self, t, n_measured: int = 0) -> dict:
        """The angle series the truth needs, computed block by block on times ``t``:
        ``obliquity``, ``lean``, ``ext0``, ``ext1`` (n,) degrees; and ``measured`` = the
        measured markers (``n_measured``, 20, 3) float32 of the first ``n_measured`` times."""
        keys = ("obliquity", "lean", "ext0", "ext1")
        parts = {k: [] for k in keys}
        measured = np.empty((n_measured, len(LABELS), 3), np.float32)
        step = _BLOCK // 4
        for i in range(0, len(t), step):
            tb = t[i:i + step]
            kin = self._kinematics(tb)
            if i < n_measured:
                m = min(n_measured - i, len(tb))
                measured[i:i + m] = self._measure_markers(tb[:m], kin["pos"][:m])
            parts["obliquity"].append(np.degrees(kin["obliquity"]))
            parts["lean"].append(np.degrees(kin["lean"]))
            for s in (0, 1):
                parts[f"ext{s}"].append(-self.hip_flexion(kin["R_pelvis"],
                                                          kin["legs"][s]["R_thigh"]))
        out = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
        out["t"] = np.asarray(t, float)
        out["measured"] = measured
        return out

    def markers(self, t) -> np.ndarray:
        """Measured marker positions at times ``t``: clean + noise, NaN in dropout runs.

        Parameters
        ----------
        t : (m,) float64 s, on the frame grid ``i / marker_rate_hz``.

        Returns
        -------
        (m, 20, 3) float32 mm, lab frame, markers in the order of :attr:`labels`.
        """
        t = np.asarray(t, dtype=float)
        return self._measure_markers(t, self.markers_clean(t))

    def _measure_markers(self, t, pos):
        p = self.params
        pos = np.array(pos, dtype=float, copy=True)
        if len(t) == 0:
            return pos.astype(np.float32)
        if p.marker_noise_mm > 0:
            pos += p.marker_noise_mm * self._sample_noise(t, self.marker_rate_hz,
                                                         _S_MARKER_NOISE, (len(LABELS), 3))
        if p.dropout_rate > 0:
            pos[self._dropouts(t)] = np.nan
        return pos.astype(np.float32)

    def _dropouts(self, t) -> np.ndarray:
        """(m, k) bool: frames lost, in runs of 3..17 frames.

        At each frame ``i`` a run starts with probability ``k × dropout_rate / 10`` (k
        markers), on one marker and for 3..17 frames, all decided by hashes of
        ``(seed, i)``; so the lost fraction is about ``dropout_rate`` and every frame's fate
        is fixed however the stream is cut."""
        k = len(LABELS)
        idx = np.rint(np.asarray(t, float) * self.marker_rate_hz).astype(np.int64)
        out = np.zeros((len(idx), k), bool)
        if len(idx) == 0:
            return out
        lo, hi = int(idx.min()) - _MAX_RUN, int(idx.max())
        frames = np.arange(lo, hi + 1, dtype=np.int64)
        seed = _splitmix64(np.array([self.params.seed * 1000003 + _S_DROPOUT], np.uint64))
        key = _splitmix64(frames.view(np.uint64) ^ seed)
        p = min(k * self.params.dropout_rate / 10.0, 0.999)
        start = frames[key < np.uint64(int(p * 2.0 ** 64))]
        if len(start) == 0:
            return out
        key2 = _splitmix64(start.view(np.uint64) ^ ~seed)
        marker = ((key2 >> np.uint64(32)) % np.uint64(k)).astype(np.intp)
        length = 3 + ((key2 & np.uint64(0xFFFFFFFF)) % np.uint64(15)).astype(np.int64)
        fr = np.repeat(start, length) + (np.arange(length.sum())
                                         - np.repeat(np.cumsum(length) - length, length))
        mk = np.repeat(marker, length)
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        pos = np.searchsorted(sidx, fr)
        hit = pos < len(sidx)
        hit[hit] = sidx[pos[hit]] == fr[hit]
        rows = order[pos[hit]]
        out[rows, mk[hit]] = True
        # repeated frame times in t (unusual) get the same fate
        if np.any(np.diff(sidx) == 0):
            first = np.flatnonzero(np.concatenate([[True], np.diff(sidx) != 0]))
            out[order] = out[order][first[np.searchsorted(sidx[first], sidx)]]
        return out

    # ---------------------------------------------------------------- geometry solution
    def _solve_geometry(self):
        """Solve the free constants so that the causes hold as docs/metrics.md measures them.

        * pelvis height: the knee is flexed ``_KNEE_STRIKE_DEG`` at foot strike;
        * thigh angle at toe off: the CGM hip flexion reaches ``-hip_extension_deg`` between
          midstance and toe off (secant steps on the measured 3-D angle, else a bracketed
          bisection); when the flat-foot phase already extends the hip further, heel off
          moves earlier (60 %, 50 %, 40 % of stance).  A target out of reach is logged and
          noted in ``geometry_note``; ``truth_steps`` reports what the markers show.
        """
        p = self.params
        T = self.step_period_s
        t_on = self._t_first + 2 * T          # a left onset of the jitter-free schedule
        tab = self._step_table(t_on - 1, t_on + 1, jitter=False)
        # 1. Pelvis height.
        self._pelvis_z0 = 0.0
        tt = np.array([t_on])
        hjc = self._hjc_at(tt, tab, 0)
        ax, az, _ = self._foot_early(np.zeros(1), self._heel_contact_x0(tt))
        lt, ls = self._lt, self._ls
        dist = math.sqrt(lt * lt + ls * ls + 2 * lt * ls * math.cos(math.radians(
            _KNEE_STRIKE_DEG)))
        dx = float(ax[0] - hjc[0, 0])
        self._pelvis_z0 = float(az[0] + math.sqrt(max(dist * dist - dx * dx, 1.0)) - hjc[0, 2])
        # 2. Thigh angle at toe off (and heel off, if needed).
        ts = np.arange(t_on + self._d_on + p.contact_time_s / 2, t_on + self._t_off, 5e-4)
        target = p.hip_extension_deg

        def err(theta):
            self._theta_to = theta
            kin = self._kinematics(ts, jitter=False)
            ext = -self.hip_flexion(kin["R_pelvis"], kin["legs"][0]["R_thigh"])
            return float(np.max(ext)) - target, kin["clamped"]

        for _ in range(6):                                   # fast path: secant-like steps
            e, clamped = err(self._theta_to)
            if abs(e) < 1e-3 and not clamped:
                return
            self._theta_to += math.radians(e)
        # Bracketed bisection: a sign change between grid neighbours that is a real root
        # (not a jump where the leg geometry clamps).
        best = (math.inf, self._heel_off, self._theta_to)          # (|err|, heel off, theta)
        grid = np.radians(np.arange(-60.0, 20.1, 5.0))
        for heel_off in _HEEL_OFFS:
            self._heel_off = heel_off
            res = [err(th)[0] for th in grid]
            for th, e in zip(grid, res):
                best = min(best, (abs(e), heel_off, th))
            # more thigh extension at toe off (smaller theta) -> more hip extension
            for i in range(len(grid) - 1):
                if not (res[i] >= 0 > res[i + 1]):
                    continue
                lo, hi = grid[i], grid[i + 1]
                for _ in range(30):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if err(mid)[0] >= 0 else (lo, mid)
                e = err(0.5 * (lo + hi))[0]
                if abs(e) < 0.05:
                    return
                best = min(best, (abs(e), heel_off, 0.5 * (lo + hi)))
        _, self._heel_off, theta = best
        got = err(theta)[0] + target
        self.geometry_note = (f"peak hip extension {target:g} deg is out of reach with these "
                              f"parameters; the runner shows {got:.1f} deg")
        log.warning("synthetic runner: %s", self.geometry_note)

    # ---------------------------------------------------------------- truth
    def _force_truth(self, period, tc=None):
        """Per-step force truth from the template: 20 N crossings (s after onset), peak
        vertical force (N), loading rate 20–80 % of the impact peak (N/s); ``tc`` (s) the
        per-step force durations (default the runner's)."""
        tc = self._tc if tc is None else tc
        u, f = self._tpl_u, self._tpl_f
        s = self._fz_scale(period, tc)
        d_on, d_off = self._crossings_u(s)
        i_imp = self._tpl_i_imp
        rise_u, rise_f = u[: i_imp + 1], f[: i_imp + 1]
        f_imp = f[i_imp]
        u20 = np.interp(0.2 * f_imp, rise_f, rise_u)
        u80 = np.interp(0.8 * f_imp, rise_f, rise_u)
        rate = s * 0.6 * f_imp / ((u80 - u20) * tc)
        return d_on * tc, d_off * tc, s * f[self._tpl_i_max], rate

    def truth_steps(self, t_end: float, t_start: float = 0.0, _series=None) -> dict:
        """True per-step values of the contacts that lie within ``[t_start, t_end]``.

        Computed from the noise-free signals with the definitions of docs/metrics.md: strike and
        toe off at the 20 N crossings of the continuous vertical force; kinematic values from
        the noise-free markers on the marker frame grid (stance = frames within
        ``[t_strike, t_off]``; a stride = ``[t_strike, next same-side t_strike)``); the heel
        lead is evaluated exactly at ``t_strike``.

        Returns
        -------
        dict of (s,) arrays: ``side`` int8 (0 left, 1 right), ``t_strike``, ``t_off``,
        ``contact_time``, ``flight_time`` (s), ``peak_vgrf`` (BW), ``loading_rate`` (BW/s),
        ``peak_braking`` (BW, < 0), ``braking_impulse`` (BW·s, < 0), ``propulsive_impulse``
        (BW·s), ``pelvic_drop``, ``trunk_lean``, ``peak_hip_extension`` (degrees),
        ``overstride`` (mm).
        """
        bw = self.body_weight_n
        tab = self._step_table(t_start, t_end + 1.0)
        tc = tab["tc"]
        d_on, d_off, peak, rate = self._force_truth(tab["period"], tc)
        t_strike = tab["on"] + d_on
        t_off = tab["on"] + d_off
        keep = np.nonzero((tab["on"] >= t_start) & (tab["on"] + tc <= t_end))[0]
        tc = tc[keep]
        keep = keep[keep + 2 < len(tab["on"])]
        out = {
            "side": tab["side"][keep].astype(np.int8),
            "t_strike": t_strike[keep], "t_off": t_off[keep],
            "contact_time": (t_off - t_strike)[keep],
            "flight_time": t_strike[keep + 1] - t_off[keep],
            "peak_vgrf": peak[keep] / bw, "loading_rate": rate[keep] / bw,
        }
        ub = _BRAKE_U
        n = len(keep)
        brake = tab["brake"][keep]
        out["peak_braking"] = -brake
        out["braking_impulse"] = -brake * ub * tc * 2 / np.pi
        out["propulsive_impulse"] = brake * ub * tc * 2 / np.pi
        if n == 0:
            for name in ("pelvic_drop", "trunk_lean", "overstride", "peak_hip_extension"):
                out[name] = np.zeros(0)
            return out

        # Kinematics on the marker frame grid up to the last needed stride end.
        rate_m = self.marker_rate_hz
        i0 = int(math.floor(t_strike[keep[0]] * rate_m)) - 1
        i1 = int(math.ceil(t_strike[keep[-1] + 2] * rate_m)) + 1
        tm = np.arange(i0, i1 + 1) / rate_m
        ser = _series
        if ser is None or len(ser["t"]) < 1 or ser["t"][0] > tm[0] or ser["t"][-1] < tm[-1]:
            ser = self._series(tm)
        tm = ser["t"]
        obl, lean = ser["obliquity"], ser["lean"]
        ext = {0: ser["ext0"], 1: ser["ext1"]}
        a = np.searchsorted(tm, t_strike[keep], side="left")
        b = np.searchsorted(tm, t_off[keep], side="right")
        c = np.searchsorted(tm, t_strike[keep + 2], side="left")
        m = np.searchsorted(tm, 0.5 * (t_strike[keep] + t_off[keep]), side="left")
        drop = np.empty(n)
        lean_m = np.empty(n)
        hip = np.empty(n)
        for q in range(n):
            sgn = 1.0 if out["side"][q] == 0 else -1.0
            mean = obl[a[q]:c[q]].mean()
            drop[q] = np.max(sgn * (obl[a[q]:b[q]] - mean))
            lean_m[q] = lean[a[q]:b[q]].mean()
            hip[q] = np.max(ext[int(out["side"][q])][m[q]:b[q]])
        strike_kin = self._kinematics(t_strike[keep])
        pos = strike_kin["pos"]
        centre = pos[:, [_IDX["LASI"], _IDX["RASI"], _IDX["LPSI"], _IDX["RPSI"]], 0].mean(axis=1)
        heel = np.where(out["side"] == 0, pos[:, _IDX["LHEE"], 0], pos[:, _IDX["RHEE"], 0])
        out["pelvic_drop"] = drop
        out["trunk_lean"] = lean_m
        out["overstride"] = heel - centre
        out["peak_hip_extension"] = hip
        return out


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------

def simulate_session(params: RunnerParams | None = None):
    """A complete synthetic session in memory, with ``/truth``.

    Parameters
    ----------
    params : RunnerParams, optional (defaults: the realistic runner, 60 s).

    Returns
    -------
    treadlab.acquisition.archive.Session
        Force ``(n, p, 6)`` float32 at ``force_rate_hz`` and markers ``(m, 20, 3)`` float32 at
        ``marker_rate_hz`` over ``[0, duration_s)``; attrs ``subject_id="SIM-<seed>"``,
        ``body_mass_kg``, ``belt_speed_m_s``, ``lab``, ``status="complete"``; ``subject``
        anthropometrics; ``truth = {"params": {...}, "steps": {...}}``.
    """
    p = params if params is not None else RunnerParams()
    runner = SyntheticRunner(p)
    n_f = int(round(p.duration_s * runner.force_rate_hz))
    n_m = int(round(p.duration_s * runner.marker_rate_hz))
    tf = np.arange(n_f) / runner.force_rate_hz
    tm = np.arange(n_m) / runner.marker_rate_hz
    wrench = runner.force(tf)
    # one pass of kinematics for the markers and the truth (which needs 1.5 s more)
    ser = runner._series(np.arange(n_m + int(1.5 * runner.marker_rate_hz))
                         / runner.marker_rate_hz, n_measured=n_m)
    positions = ser.pop("measured")
    steps = runner.truth_steps(p.duration_s, _series=ser)
    attrs = {"subject_id": f"SIM-{p.seed}", "body_mass_kg": float(p.body_mass_kg),
             "belt_speed_m_s": float(p.speed_m_s), "lab": "treadlab simulated lab",
             "status": "complete"}
    force = ForceData(time=tf, wrench=wrench, rate_hz=runner.force_rate_hz,
                      plates=list(runner.plates), origin=runner.origin.copy(),
                      corners=runner.corners.copy())
    markers = MarkerData(time=tm, positions=positions, labels=list(runner.labels),
                         rate_hz=runner.marker_rate_hz)
    return Session(attrs=attrs, force=force, markers=markers, subject=dict(runner.subject),
                   truth={"params": p.as_dict(), "steps": steps})


def simulate_session_file(path, params: dict[str, str] | RunnerParams | None = None) -> Path:
    """Write a synthetic session archive (``treadlab simulate session -o FILE.h5``).

    Parameters
    ----------
    path : str or path of the ``.h5`` file to write.
    params : ``{"name": "text"}`` pairs for :func:`parse_params` (``--param k=v``), or a
        :class:`RunnerParams`.

    Returns
    -------
    Path of the written file.
    """
    p = params if isinstance(params, RunnerParams) else parse_params(params, source="--param")
    return Path(write_session(path, simulate_session(p)))
