"""The pure task functions of the session graph: arrays in, arrays and dicts out.

``force_task``
    force → zero-lag Butterworth low-pass → re-zero on flight phases → contacts per plate →
    left/right → force metrics per contact (docs/metrics.md §2-3).
``marker_task``
    markers → gap fill → zero-lag Butterworth low-pass → joint angles (CGM / Plug-in Gait).
``step_task``
    both → the per-contact table of ``/derived/contacts`` (docs/archive.md §4.1): events, force metrics and
    the kinematics at each stance (pelvic drop, trunk lean, over-stride, shank angle, hip
    extension).

Nothing here opens files or knows about dask; :mod:`treadlab.pipeline.graph` wires these into a
graph. Every filter setting actually used is returned in ``attrs`` so it is stored with the
derived data (loading rates depend on the filter, Abolins 2019).

Body weight is ``body_mass_kg × g`` N (g = 9.80665 m/s², ``treadlab.config.constants.G``). An
archive without a body mass gets the shared estimate of
:func:`treadlab.kernels.forces.estimate_body_weight` on the re-zeroed total vertical force (the
mean over whole strides, docs/metrics.md §2), recorded in ``attrs["body_weight_source"]``.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np

from treadlab.config.constants import G
from treadlab.config.errors import InputError
from treadlab.config.schema import ContactsConfig, FiltersConfig, LabTable
from treadlab.kernels import contacts as kc
from treadlab.kernels.angles import MARKERS as model_markers, joint_angles, resolve_model
from treadlab.kernels.forces import estimate_body_weight, force_metrics
from treadlab.kernels.gaps import fill_gaps
from treadlab.kernels.filters import butter_sos, sosfiltfilt
from treadlab.kernels.kinematic_contacts import kinematic_contacts
from treadlab.kernels.stats import median
from treadlab.kernels.steps import HIP_AFTER_OFF_S, step_metrics

log = logging.getLogger(__name__)

#: Columns of ``/derived/contacts`` (docs/archive.md §4.1), in order; extra columns follow them.
CONTACT_COLUMNS = ("side", "t_strike", "t_off", "contact_time", "flight_time", "peak_vgrf",
                   "loading_rate", "peak_braking", "braking_impulse", "propulsive_impulse",
                   "pelvic_drop", "trunk_lean", "overstride", "shank_angle_ic",
                   "peak_hip_extension", "valid")
#: Extra per-contact columns step_task adds after :data:`CONTACT_COLUMNS` and their units.
EXTRA_UNITS = {"overstride_leg": "% leg length", "pelvis_tilt_mean": "deg",
               "trunk_lean_midstance": "deg", "peak_hip_extension_source": "",
               "contact_source": "", "kinematic_t_strike": "s", "kinematic_t_off": "s",
               "belt_speed": "m/s", "belt_steady": "1"}
#: Angle columns stored in ``/derived/angles`` (docs/archive.md §4.2, degrees). The kernel's 2-D shank and
#: thigh angles and heel lead feed the per-step metrics but are not stored (archive size and
#: write time: every stored column is another gzip-compressed float32 per marker frame).
STORED_ANGLES = ("pelvis_tilt", "pelvis_obliquity", "pelvis_rotation", "trunk_lean",
                 "hip_flexion_left", "hip_flexion_right", "hip_adduction_left",
                 "hip_adduction_right", "knee_flexion_left", "knee_flexion_right",
                 "ankle_dorsiflexion_left", "ankle_dorsiflexion_right")
#: Which angle a cause metric is built from (its reason is the metric's reason when missing).
METRIC_SOURCE = {"pelvic_drop": "pelvis_obliquity", "trunk_lean": "trunk_lean",
                 "overstride": "heel_lead_left", "shank_angle_ic": "shank_angle_left",
                 "peak_hip_extension": "hip_flexion_left", "overstride_leg": "heel_lead_left"}


@dataclass(frozen=True)
class DeriveSettings:
    """The lab-config values the derivation uses (``[lab] belt``, ``[contacts]``, ``[filters]``).

    strike_n, off_n : N. Contact thresholds (docs/metrics.md §2).
    min_contact_s, min_flight_s : s. min_peak_bw : body weights.
    force_lowpass_hz, marker_lowpass_hz : Hz, Butterworth cut-off (0 or None = no filter).
    force_order, marker_order : Butterworth order of one pass (applied forward and backward:
        zero lag, twice the attenuation).
    max_gap_s : s. Longest marker gap filled.
    belt : ``"split"`` (one plate per foot) or ``"single"``.
    """

    # defaults are the lab config's (one source): this is a flat, picklable snapshot for workers
    belt: str = LabTable.belt
    strike_n: float = ContactsConfig.strike_n
    off_n: float = ContactsConfig.off_n
    min_contact_s: float = ContactsConfig.min_contact_s
    min_peak_bw: float = ContactsConfig.min_peak_bw
    min_flight_s: float = ContactsConfig.min_flight_s
    force_lowpass_hz: float | None = FiltersConfig.force_lowpass_hz
    force_order: int = FiltersConfig.force_order
    marker_lowpass_hz: float | None = FiltersConfig.marker_lowpass_hz
    marker_order: int = FiltersConfig.marker_order
    max_gap_s: float = FiltersConfig.max_gap_s

    @classmethod
    def from_config(cls, cfg) -> "DeriveSettings":
        """From a ``LabConfig`` (``cfg.lab.belt``, ``cfg.contacts.*``, ``cfg.filters.*``);
        absent tables keep the defaults."""
        kw = {}
        lab = getattr(cfg, "lab", None)
        if lab is not None and getattr(lab, "belt", None):
            kw["belt"] = str(lab.belt)
        for table in ("contacts", "filters"):
            t = getattr(cfg, table, None)
            if t is None:
                continue
            for name in cls.__dataclass_fields__:
                if name != "belt" and hasattr(t, name):
                    kw[name] = getattr(t, name)
        return cls(**kw)

    def filter_attrs(self) -> dict:
        """The filter settings as ``/derived`` attributes."""
        return {
            "force_filter": FILTER_DESCRIPTION,
            "force_lowpass_hz": float(self.force_lowpass_hz or 0.0),
            "force_order": int(self.force_order),
            "marker_filter": FILTER_DESCRIPTION,
            "marker_lowpass_hz": float(self.marker_lowpass_hz or 0.0),
            "marker_order": int(self.marker_order),
            "max_gap_s": float(self.max_gap_s),
        }


# --- filtering ---------------------------------------------------------------------------------

#: The ``force_filter`` / ``marker_filter`` attribute of ``/derived``. The compiled kernel
#: (``treadlab.kernels.filters``) computes exactly ``scipy.signal.sosfiltfilt`` with its
#: defaults, so the description, and every stored value, is the one SciPy gave before.
FILTER_DESCRIPTION = "Butterworth low-pass, zero lag (scipy.signal.sosfiltfilt)"


def _sos(rate_hz: float, cutoff_hz, order: int):
    if not cutoff_hz or cutoff_hz <= 0:
        return None
    if cutoff_hz >= 0.5 * rate_hz:
        log.warning("low-pass %.1f Hz is not below Nyquist (%.1f Hz): not filtered",
                    cutoff_hz, 0.5 * rate_hz)
        return None
    return butter_sos(rate_hz, cutoff_hz, order)


def lowpass(x: np.ndarray, rate_hz: float, cutoff_hz, order: int, dtype=np.float64,
            out: np.ndarray | None = None) -> np.ndarray:
    """Zero-lag Butterworth low-pass along axis 0, NaN-aware
    (:func:`treadlab.kernels.filters.sosfiltfilt`).

    Parameters
    ----------
    x : ndarray, shape (n, ...), float
        Signal (any unit); NaN marks missing samples.
    rate_hz : float, Hz. cutoff_hz : float, Hz (0/None, or not below Nyquist: no filtering,
        a copy is returned). order : int. Order of each pass (forward and backward).
    dtype : output dtype (float64 default; float32 for marker positions halves the memory).
        Filtering is in float64 either way.
    out : ndarray, optional. C-contiguous array of ``x``'s shape and ``dtype`` to write into;
        may be ``x`` itself.

    Returns
    -------
    ndarray, shape (n, ...), ``dtype``
        Filtered; NaN where ``x`` is not finite. Inside a column, missing samples are bridged
        by linear interpolation for the filter only and set back to NaN afterwards; samples
        next to a long gap are therefore smoothed towards the bridge (within about one cut-off
        period). A column with at most 3 (2 s + 1) finite samples (``s`` second-order
        sections: 15 for order 4) is returned unfiltered.
    """
    x = np.asarray(x)
    sos = _sos(rate_hz, cutoff_hz, order)
    if sos is None or x.shape[0] == 0:  # a C-contiguous copy, as the filter returns
        return np.array(x, dtype=dtype, order="C")
    return sosfiltfilt(sos, x, dtype=dtype, out=out)


# --- force ---------------------------------------------------------------------------------------

def _left_right(force) -> tuple[int, int]:
    """Plate indices (left, right) of a split belt: by name, else by origin Y (Y = left)."""
    names = [str(n).lower() for n in force.plates]
    left = [i for i, n in enumerate(names) if "left" in n or n in ("l", "fp_l", "belt_l")]
    right = [i for i, n in enumerate(names) if "right" in n or n in ("r", "fp_r", "belt_r")]
    if len(left) == 1 and len(right) == 1 and left != right:
        return left[0], right[0]
    y = np.asarray(force.origin, np.float64)[:, 1]
    return (0, 1) if y[0] >= y[1] else (1, 0)


def _baseline(kc, fz: np.ndarray, rate_hz: float, tolerance_n: float) -> np.ndarray | None:
    """A contact-free first zero estimate (``kc.flight_baseline``), or None when the unloaded
    level of every 1 s window is already within ``tolerance_n`` of zero (the common case: the
    flights are visible to the contact threshold and ``rezero_flight`` does the rest).
    Computed on Fz decimated to about 100 Hz and interpolated back: (n,) float64 N."""
    w = max(1, int(round(rate_hz)))
    k = fz.size // w
    if k:
        windows = fz[:k * w].reshape(k, w)
        with np.errstate(invalid="ignore"):
            low = windows.min(axis=1)
            if np.isnan(low).any():  # NaN samples: the NaN-ignoring minimum of the windows
                with warnings.catch_warnings():  # a window of NaN only stays NaN, dropped below
                    warnings.simplefilter("ignore", RuntimeWarning)
                    low = np.nanmin(windows, axis=1)
        low = low[np.isfinite(low)]
        if low.size and np.max(np.abs(low)) < tolerance_n:
            return None
    return kc.flight_baseline(fz, rate_hz, window_s=_BASELINE_WINDOW_S,
                              quantile=_BASELINE_QUANTILE, step=max(1, int(rate_hz // 100)))


_BASELINE_WINDOW_S = 1.0  #: s, window of ``kc.flight_baseline``
_BASELINE_QUANTILE = 0.05  #: its quantile


def force_task(force, body_mass_kg: float | None, settings: DeriveSettings) -> dict:
    """Contacts and force metrics from the force stream.

    Parameters
    ----------
    force : treadlab.acquisition.archive.ForceData
        ``wrench`` (n, p, 6) float32 N / N·m, ``time`` (n,) float64 s. One plate (single
        belt: sides from the centre of pressure), two with ``settings.belt == "split"`` (one
        per foot), or several separate plates (overground: sides from the foot markers).
    body_mass_kg : float or None
        None: body weight estimated from the force (``attrs['body_weight_source']``).
    settings : DeriveSettings

    Returns
    -------
    dict
        ``contacts``: {name: (c,) array} sorted by strike — ``side`` int8 (0 left, 1 right;
        -1 on a single belt until :func:`step_task` assigns it with the foot markers),
        ``t_strike``, ``t_off``, ``contact_time``, ``flight_time`` (s), ``i_strike``,
        ``i_off`` (sample index), ``peak_vgrf`` (BW), ``loading_rate`` (BW/s),
        ``loading_rate_fallback`` bool, ``peak_braking`` (BW), ``braking_impulse``,
        ``propulsive_impulse`` (BW·s), ``flags`` int32 (``treadlab.kernels.contacts`` bits),
        ``plate`` int16; ``cop_y``: (n,) float64 mm per sample (single belt) or None;
        ``attrs``: body weight and its source, filter and contact settings, re-zero offsets.
    """

    s = settings
    rate = float(force.rate_hz)
    t = np.asarray(force.time, np.float64)
    t0 = float(t[0]) if t.size else 0.0
    w = force.wrench
    p = w.shape[1]
    # single belt: one plate, sides from the centre of pressure; split belt: two plates, one
    # per foot; anything else (overground plates in a row): each plate's contacts, sides from
    # the foot markers in step_task
    mode = "single" if p == 1 else ("split" if p == 2 and s.belt == "split" else "plates")
    # single belt: every channel (the centre of pressure needs the moments); split: Fx and Fz
    chans = [0, 1, 2, 3, 4, 5] if p == 1 else [0, 2]
    kz, kx = chans.index(2), chans.index(0)
    params0 = kc.ContactParams(strike_n=s.strike_n, off_n=s.off_n, min_contact_s=s.min_contact_s,
                               min_peak_n=0.0, min_flight_s=s.min_flight_s)
    plates, found, offsets = [], [], []
    # two plates: their four channels (n, 4) in one low-pass call, whose kernel runs the four
    # recursions side by side (1.6 -> 0.8 ms per session); each plate's (Fx, Fz) rows are then
    # copied out as one complex128 per sample (a plain byte copy, much faster than NumPy's
    # copy of two-wide float64 rows)
    both = None
    if p == 2:
        flat = w.reshape(w.shape[0], p * w.shape[2])[:, [w.shape[2] * j + k for j in range(p)
                                                         for k in chans]]
        both = np.ascontiguousarray(lowpass(flat, rate, s.force_lowpass_hz, s.force_order)
                                    ).view(np.complex128)
        del flat
    for j in range(p):
        x = (np.ascontiguousarray(both[:, j]).view(np.float64).reshape(-1, 2)
             if both is not None else lowpass(w[:, j, chans], rate, s.force_lowpass_hz,
                                              s.force_order))
        # a contact-free first zero when drift hides the flights, then re-zero on this
        # plate's flight phases (treadmill plates drift, Sinitski 2015) and detect again
        base = _baseline(kc, x[:, kz], rate, 0.5 * s.off_n)
        c, _ = kc.detect_contacts(x[:, kz] if base is None
                                  else np.subtract(x[:, kz], base, out=base), rate, params0,
                                  t0=t0)
        del base
        x, off = kc.rezero_flight(x, c.i_strike, c.i_off, rate, out=x, offsets="mean")
        offsets.append(float(off[kz]) if x.size else 0.0)
        plate = {"fz": np.ascontiguousarray(x[:, kz]), "fx": np.ascontiguousarray(x[:, kx]),
                 "all": x if mode == "single" else None}
        del x
        c, _ = kc.detect_contacts(plate["fz"], rate, params0, t0=t0)
        plates.append(plate)
        found.append(c)
    del both

    # body weight
    if body_mass_kg:
        bw = float(body_mass_kg) * G
        bw_source = f"body_mass_kg {float(body_mass_kg):g} x {G} m/s2"
    else:
        if mode == "plates":
            raise InputError("session", "@body_mass_kg",
                             f"missing: needed with {p} separate plates (the runner is not on a "
                             f"plate over whole strides, so body weight cannot be estimated)")
        fz_total = plates[0]["fz"] if p == 1 else plates[0]["fz"] + plates[1]["fz"]
        bw, how = estimate_body_weight(fz_total, rate, strike_n=s.strike_n, off_n=s.off_n,
                                       t0=t0)
        if not np.isfinite(bw) or bw <= 0:
            raise InputError("session", "/raw/force/wrench",
                             f"no body_mass_kg and no body weight from the force ({how['method']})")
        bw_source = f"estimated: mean total Fz over {how['strides']} whole strides"
    for c in found:
        c.flags[c.peak_n < s.min_peak_bw * bw] |= kc.FLAG_LOW_PEAK

    cop_y = None
    if mode == "split":
        li, ri = _left_right(force)
        params = kc.ContactParams(strike_n=s.strike_n, off_n=s.off_n,
                                  min_contact_s=s.min_contact_s, min_peak_n=s.min_peak_bw * bw,
                                  min_flight_s=s.min_flight_s)
        for c, j in ((found[li], li), (found[ri], ri)):
            c.i_peak = np.full(len(c), j, np.int64)  # carries the plate through the merge
        merged = kc.assign_sides_split(found[li], found[ri], plates[li]["fz"],
                                       plates[ri]["fz"], params)
        plate = merged.i_peak.astype(np.int16)
    elif mode == "single":
        merged = found[0]
        plate = np.zeros(len(merged), np.int16)
        cop_y = kc.centre_of_pressure(plates[0]["all"], force.origin[0])[:, 1]
        plates[0]["all"] = None
    else:
        for j, c in enumerate(found):
            c.i_peak = np.full(len(c), j, np.int64)
        merged = kc.Contacts.concat(found)
        merged = merged.take(np.argsort(merged.t_strike, kind="stable"))
        plate = merged.i_peak.astype(np.int16)

    out = {"t_strike": merged.t_strike, "t_off": merged.t_off, "i_strike": merged.i_strike,
           "i_off": merged.i_off, "flags": merged.flags.astype(np.int32), "plate": plate,
           "side": merged.side.astype(np.int8) if mode == "split"
           else np.full(len(merged), -1, np.int8)}
    metrics = {k: np.full(len(merged), np.nan) for k in
               ("peak_vgrf", "loading_rate", "peak_braking", "braking_impulse",
                "propulsive_impulse")}
    metrics["loading_rate_fallback"] = np.zeros(len(merged), bool)
    for j in range(p):
        sel = plate == j
        if not sel.any():
            continue
        m = force_metrics(plates[j]["fx"], plates[j]["fz"], rate, out["i_strike"][sel],
                          out["i_off"][sel], bw)
        for k in metrics:
            metrics[k][sel] = m[k]
    out.update(metrics)
    out["contact_time"] = out["t_off"] - out["t_strike"]
    # flight before each contact, from the latest toe off of either foot; a contact with no
    # flight before it (walking, double support) is flagged and not scored (docs/metrics.md §2)
    prev_off = np.maximum.accumulate(out["t_off"])[:-1] if out["t_off"].size else np.zeros(0)
    flight = out["t_strike"] - np.concatenate(([np.nan], prev_off))
    out["flight_time"] = flight
    out["flags"][np.isfinite(flight) & (flight < s.min_flight_s)] |= kc.FLAG_NO_FLIGHT
    attrs = {"body_weight_n": bw, "body_weight_source": bw_source,
             "force_rezero": "flight phases (Sinitski 2015), kernels.contacts.rezero_flight",
             "force_rezero_mean_offset_n": np.asarray(offsets, np.float64),
             **s.filter_attrs(),
             "contacts_strike_n": float(s.strike_n), "contacts_off_n": float(s.off_n),
             "contacts_min_contact_s": float(s.min_contact_s),
             "contacts_min_peak_bw": float(s.min_peak_bw),
             "contacts_min_flight_s": float(s.min_flight_s),
             "belt": mode}
    return {"contacts": out, "cop_y": cop_y, "attrs": attrs, "rate_hz": rate, "t0": t0,
            "n_plates": p, "mode": mode}


# --- markers ------------------------------------------------------------------------------------

def marker_task(markers, subject: dict, settings: DeriveSettings, *,
                overwrite: bool = False) -> dict:
    """Joint angles from the marker stream.

    Parameters
    ----------
    markers : treadlab.acquisition.archive.MarkerData
        ``positions`` (m, k, 3) float32 mm, NaN = occluded; ``labels`` CGM names.
    subject : dict
        Anthropometrics (``/subject`` attrs, mm); missing values use the model's stated defaults.
    settings : DeriveSettings
    overwrite : bool
        Consume ``markers.positions`` (when float32 and C-contiguous): gaps are filled and the
        positions filtered in place, so a long recording needs no second (m, k, 3) array.

    Returns
    -------
    dict
        ``angles``: ``{"time": (m,) s, "values": (m, a) float32 deg, "names", "reasons"}`` for
        ``/derived/angles``; ``all_names``, ``all_values`` (m, a) float32: every kernel column
        (incl. ``heel_lead_*`` mm); ``time``, ``rate_hz``; ``metric_reasons``: ``{metric: why}`` for
        cause metrics that cannot be measured; ``attrs``: model and gap-fill settings.
    """

    s = settings
    rate = float(markers.rate_hz)
    labels = list(markers.labels)

    keep = [i for i, name in enumerate(labels) if name in set(model_markers) | set(FOOT_EXTRA)]
    pos = np.asarray(markers.positions)
    own = False  # whether pos may be overwritten
    if len(keep) < len(labels):
        pos = pos[:, keep, :]  # a copy of our own
        own = True
    used = [labels[i] for i in keep]
    max_gap = int(round(s.max_gap_s * rate))
    # the kernel fills float32 positions in place, with no temporaries
    if (own or overwrite) and pos.dtype == np.float32 and pos.flags.c_contiguous:
        filled, longest = fill_gaps(pos, max_gap, out=pos)
    else:
        filled, longest = fill_gaps(pos, max_gap)
        filled = filled.astype(np.float32, copy=False)
    del pos
    smooth = lowpass(filled, rate, s.marker_lowpass_hz, s.marker_order, dtype=np.float32,
                     out=filled)  # in place: the filled copy is not needed afterwards
    del filled
    ang, values = _angles_in_blocks(joint_angles, smooth, used, subject or {}, rate)
    names = list(ang.names)
    columns = {n: values[:, i] for i, n in enumerate(names)}
    stored = [n for n in STORED_ANGLES if n in columns]
    reasons = {k: str(v) for k, v in dict(ang.reasons).items()}
    metric_reasons = {}
    for metric, source in METRIC_SOURCE.items():
        other = source.replace("_left", "_right")
        if source in reasons and (other == source or other in reasons):
            metric_reasons[metric] = reasons[source]
    if "trunk_lean" in reasons and not any(x in labels for x in ("C7", "T10", "CLAV", "STRN")):
        metric_reasons["trunk_lean"] = "no trunk markers"
    attrs = {f"angles_{k}": v for k, v in dict(getattr(ang, "attrs", {}) or {}).items()
             if isinstance(v, (str, int, float, bool, np.generic))}
    attrs["marker_longest_gap_filled_s"] = longest / rate if rate > 0 else 0.0
    return {
        "angles": {"time": np.asarray(markers.time, np.float64),
                   # one gather of the stored columns of the float32 values, C-contiguous
                   "values": np.take(values, np.array([names.index(n) for n in stored],
                                                      dtype=np.intp), axis=1),
                   "names": stored, "reasons": {n: reasons[n] for n in stored if n in reasons}},
        "all_names": names, "all_values": values,
        "time": np.asarray(markers.time, np.float64), "rate_hz": rate,
        "reasons": reasons, "metric_reasons": metric_reasons, "attrs": attrs,
        "foot_z": {side: _lowest_foot_z(smooth, used, side) for side in ("L", "R")},
        "foot_heights": {side: _foot_heights(smooth, used, side) for side in ("L", "R")},
    }


def _angles_in_blocks(joint_angles, pos, labels, subject, rate_hz, block_s=60.0):
    """``joint_angles`` over blocks of ``block_s`` seconds with the model frozen once for the
    whole recording (the first call's ``attrs`` passed as the subject), so memory stays bounded
    and every block uses the same leg lengths and joint-centre offsets.

    Returns ``(Angles of the first block, (m, a) float32 values of the whole recording)``.
    """
    m = pos.shape[0]
    step = max(int(block_s * rate_hz), 1)
    if m <= step:
        ang = joint_angles(pos, labels, subject)
        return ang, np.asarray(ang.values, np.float32)
    # estimate the model on a decimated copy of the whole recording, then freeze it (the
    # model set-up alone: the angles of that copy are not needed)
    model = dict(resolve_model(pos[::10], labels, subject)[2])
    first = None
    values = None
    for a in range(0, m, step):
        part = joint_angles(pos[a:a + step], labels, model)
        if first is None:
            first = part
            values = np.empty((m, len(part.names)), np.float32)
        values[a:a + step] = part.values
    first.attrs = model
    return first, values


#: Forefoot markers besides the model's, kept for the kinematic contact fallback when a foot has
#: no TOE marker (CGM names after ``to_cgm``).
FOOT_EXTRA = ("LMT1", "LMT5", "RMT1", "RMT5")


def _foot_heights(pos, labels, side):
    """(heel Z, forefoot Z) of one side, (m,) float64 mm each, for the kinematic contact
    fallback: HEE and TOE, else MT1, else MT5; None when the side lacks either."""
    fore = next((side + n for n in ("TOE", "MT1", "MT5") if side + n in labels), None)
    if side + "HEE" not in labels or fore is None:
        return None
    return (np.asarray(pos[:, labels.index(side + "HEE"), 2], np.float64),
            np.asarray(pos[:, labels.index(fore), 2], np.float64))


def _lowest_foot_z(pos, labels, side) -> np.ndarray:
    """(m,) mm, the positions' dtype: height of the lowest of the HEE/TOE markers of one side (NaN
    if none)."""
    idx = [labels.index(side + n) for n in ("HEE", "TOE") if side + n in labels]
    if not idx:
        return np.full(pos.shape[0], np.nan)
    # NaN-ignoring, NaN only when both are; one marker: fmin with itself, a copy of its Z
    return np.fmin(pos[:, idx[0], 2], pos[:, idx[-1], 2])


# --- steps ---------------------------------------------------------------------------------------

def static_offsets(session_attrs: dict) -> dict:
    """The static-trial values step_task uses, from a session's root attributes.

    Returns
    -------
    dict
        ``obliquity_deg`` and ``tilt_deg`` (deg, Plug-in Gait pelvis of the static trial; NaN
        without one) and ``source`` (the static file name, or ``""``).
    """
    def num(key):
        try:
            v = float(session_attrs.get(key))
        except (TypeError, ValueError):
            return float("nan")
        return v if np.isfinite(v) else float("nan")

    return {"obliquity_deg": num("static_pelvic_obliquity_deg"),
            "tilt_deg": num("static_pelvic_tilt_deg"),
            "source": str(session_attrs.get("static_calibration") or "")}


def leg_length_mm(marker_attrs: dict) -> tuple[float, str]:
    """Mean of the left and right leg lengths the angle model used (mm) and their source.

    NaN when either was a model default (no measurement, no ASIS and ankle markers): a
    metric scaled by a guessed leg length would look measured.
    """
    vals, srcs = [], []
    for side in ("left", "right"):
        vals.append(marker_attrs.get(f"angles_leg_length_{side}_mm"))
        srcs.append(str(marker_attrs.get(f"angles_leg_length_{side}_mm_source", "default")))
    try:
        vals = [float(v) for v in vals]
    except (TypeError, ValueError):
        return float("nan"), "unknown"
    if "default" in srcs or not all(np.isfinite(v) and v > 0 for v in vals):
        return float("nan"), "unknown (model default)"
    return 0.5 * (vals[0] + vals[1]), "/".join(sorted(set(srcs)))


def step_task(force_out: dict, marker_out: dict, settings: DeriveSettings) -> dict:
    """The ``/derived/contacts`` table: events, force metrics and per-stance kinematics.

    Returns
    -------
    dict
        {name: (c,) array} with :data:`CONTACT_COLUMNS` first (docs/archive.md §4.1 units: s, BW, BW/s,
        BW·s, deg, mm; ``valid`` bool), then ``flags``, ``plate``, ``loading_rate_fallback``,
        ``trunk_lean_midstance``, ``pelvis_tilt_mean`` (deg), ``peak_hip_extension_source``,
        ``overstride_leg`` (heel lead at strike in % of the mean leg length, NaN when the
        leg length is unknown), ``contact_source`` (0 force, 1 kinematic fallback),
        ``kinematic_t_strike``/``kinematic_t_off`` (s, the kinematic events matched to each
        contact, NaN when none; see :func:`kinematic_fallback`). Pelvic obliquity is zeroed on the static trial when the session
        has one (``marker_out["static"]``), else on the stride mean; the peak hip extension
        window runs from midstance to toe off + ``HIP_AFTER_OFF_S`` (early swing).
    """

    c = dict(force_out["contacts"])
    if force_out.get("cop_y") is not None and c["t_strike"].size:
        # single belt: centre of pressure, confirmed by the lowest foot markers at midstance
        mid = 0.5 * (c["t_strike"] + c["t_off"])
        mt = marker_out["time"]
        feet = np.stack([np.interp(mid, mt, marker_out["foot_z"][k], left=np.nan, right=np.nan)
                         for k in ("L", "R")], axis=1)
        have = np.isfinite(feet).all(axis=1).any()
        table = kc.Contacts(i_strike=c["i_strike"], i_off=c["i_off"], t_strike=c["t_strike"],
                            t_off=c["t_off"], peak_n=np.zeros(c["t_strike"].size),
                            flags=c["flags"])
        sided_table = kc.assign_sides_single(table, force_out["cop_y"],
                                             foot_marker_z=feet if have else None)
        c["side"], c["flags"] = sided_table.side, sided_table.flags
    elif np.any(c["side"] < 0) and c["t_strike"].size:
        # separate plates (overground): the stance foot is the lower one at midstance
        mid = 0.5 * (c["t_strike"] + c["t_off"])
        mt = marker_out["time"]
        zl, zr = (np.interp(mid, mt, marker_out["foot_z"][k], left=np.nan, right=np.nan)
                  for k in ("L", "R"))
        known = np.isfinite(zl) & np.isfinite(zr)
        c["side"] = np.where(known, np.where(zl <= zr, 0, 1), -1).astype(np.int8)
        c["flags"] = c["flags"].copy()
        c["flags"][~known] |= kc.FLAG_SIDE
    c, _ = kinematic_fallback(c, marker_out)
    sided = c["side"] >= 0
    kin = {k: np.full(c["t_strike"].size, np.nan) for k in CONTACT_COLUMNS}
    static = marker_out.get("static") or {}
    zero = static.get("obliquity_deg", float("nan"))
    if sided.any():
        got = step_metrics(c["t_strike"][sided], c["t_off"][sided], c["side"][sided],
                           marker_out["time"], marker_out["all_values"], marker_out["all_names"],
                           static_obliquity_deg=zero if np.isfinite(zero) else None)
        for k, v in got.items():
            full = np.full(c["t_strike"].size, -1 if k.endswith("_source") else np.nan,
                           dtype=np.asarray(v).dtype)
            full[sided] = v
            kin[k] = full
    out = {}
    for name in CONTACT_COLUMNS:
        if name == "valid":
            out[name] = (c["flags"] == 0) & (c["side"] >= 0)
        elif name in c:
            out[name] = c[name]
        else:
            out[name] = np.asarray(kin[name], np.float64)
    out["valid"] &= np.isfinite(out["t_strike"]) & np.isfinite(out["t_off"])
    out["side"] = out["side"].astype(np.int8)
    out["flags"] = c["flags"].astype(np.int32)
    out["contact_source"] = c["contact_source"].astype(np.int8)
    out["kinematic_t_strike"] = c["kinematic_t_strike"]
    out["kinematic_t_off"] = c["kinematic_t_off"]
    out["plate"] = c["plate"]
    out["loading_rate_fallback"] = c["loading_rate_fallback"]
    for extra in ("trunk_lean_midstance", "pelvis_tilt_mean", "peak_hip_extension_source"):
        if extra in kin:
            out[extra] = kin[extra]
    leg, _ = leg_length_mm(marker_out.get("attrs", {}))
    out["overstride_leg"] = 100.0 * np.asarray(out["overstride"], np.float64) / leg
    return out


#: m/s: a contact is on a *steady* belt when the speed of its belt varied by less than this
#: over the stride window around it (:func:`belt_columns`; docs/scoring.md §1). The simulated
#: and Bertec controllers report mm/s, so a belt at a constant set speed varies by 0.
BELT_STEADY_TOL_M_S = 0.05
#: s: a belt speed between two ``/raw/belt`` samples further apart than this (a lost
#: connection, NaN samples) is unknown (NaN).
BELT_MAX_GAP_S = 0.5
#: s: the stride window when a session has too few contacts to measure its stride time.
DEFAULT_STRIDE_S = 0.7
_STANCE_SAMPLES = 21            #: points of the stance at which the belt speed is averaged


def _belt_at(t, v, q) -> np.ndarray:
    """Belt speed (m/s) at times ``q`` (any shape, s) linearly interpolated from the finite
    samples ``(t, v)`` (t increasing); NaN where the samples bracketing a time are more than
    :data:`BELT_MAX_GAP_S` apart (or, beyond the first / last sample, further than that)."""
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    out = np.full(np.shape(q), np.nan)
    if t.size == 0:
        return out
    q = np.asarray(q, np.float64)
    i = np.searchsorted(t, q, side="right")
    prev = t[np.clip(i - 1, 0, t.size - 1)]
    nxt = t[np.clip(i, 0, t.size - 1)]
    gap = np.where(i == 0, nxt - q, np.where(i == t.size, q - prev, nxt - prev))
    known = np.isfinite(q) & (gap <= BELT_MAX_GAP_S)
    out[known] = np.interp(q[known], t, v)
    return out


def _belt_mean(t, v, a, b) -> np.ndarray:
    """Time average (m/s) of the linearly interpolated belt speed over ``[a, b]`` (s), exact for
    the piecewise-linear speed through the finite samples ``(t, v)`` (held beyond the ends)."""
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    if t.size == 0:
        return np.full(np.shape(a), np.nan)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(t) * 0.5 * (v[1:] + v[:-1]))])

    def integral(q):
        i = np.clip(np.searchsorted(t, q, side="right") - 1, 0, t.size - 1)
        return cum[i] + (q - t[i]) * 0.5 * (v[i] + np.interp(q, t, v))

    span = b - a
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (integral(b) - integral(a)) / np.where(span > 0, span, 1.0),
                        np.interp(a, t, v))


def belt_columns(t_strike, t_off, side, belt: dict | None,
                 session_speed_m_s: float | None = None) -> dict:
    """Per-contact belt speed (m/s) and steadiness, for ``/derived/contacts``.

    Parameters
    ----------
    t_strike, t_off : (c,) float64 s, session clock.
    side : (c,) int, 0 left, 1 right, -1 unassigned.
    belt : dict or None
        ``/raw/belt`` as :func:`treadlab.acquisition.archive.read_belt` returns it: ``time``
        (n,) s session clock, ``speed`` (n, b) m/s, ``belts`` names (``["left", "right"]``).
    session_speed_m_s : float, optional
        The session's ``belt_speed_m_s`` (m/s, NaN = unknown), used when there is no belt stream.

    Returns
    -------
    dict
        ``belt_speed`` (c,) float64 m/s: the mean speed of the belt under the foot over its
        stance (split belt: the foot's own belt, ``left`` for side 0, ``right`` for side 1; a
        contact with no side, or a single belt: the mean of the belts), interpolated from
        ``/raw/belt`` on the session clock; NaN where the stream has a gap longer than
        :data:`BELT_MAX_GAP_S` inside the stance. ``belt_steady`` (c,) bool: that belt's speed
        varied by less than :data:`BELT_STEADY_TOL_M_S` over the stride window centred on
        midstance (one median stride time of the session, two median step intervals;
        :data:`DEFAULT_STRIDE_S` with fewer than 3 contacts) and is known throughout it.
        Without a belt stream (or an empty one) every contact gets ``session_speed_m_s``
        (NaN when unknown) and is steady.
    """
    ts = np.asarray(t_strike, np.float64).reshape(-1)
    to = np.asarray(t_off, np.float64).reshape(-1)
    sd = np.asarray(side).reshape(-1)
    n = ts.size
    if belt is None or len(belt.get("time", ())) == 0:
        try:
            speed = float(session_speed_m_s)
        except (TypeError, ValueError):
            speed = float("nan")
        return {"belt_speed": np.full(n, speed), "belt_steady": np.ones(n, bool)}
    t = np.asarray(belt["time"], np.float64).reshape(-1)
    v = np.asarray(belt["speed"], np.float64).reshape(t.size, -1)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    names = [str(b) for b in belt.get("belts", [])]
    cols = {}
    if v.shape[1] >= 2:
        cols[0] = names.index("left") if "left" in names else 0
        cols[1] = names.index("right") if "right" in names else 1
    strikes = np.sort(ts[np.isfinite(ts)])
    stride = 2.0 * median(np.diff(strikes)) if strikes.size >= 3 else DEFAULT_STRIDE_S
    mid = 0.5 * (ts + to)
    dt = median(np.diff(t)) if t.size >= 2 else 0.01
    k = int(min(401, max(21, math.ceil(stride / max(min(dt, 0.01), 1e-4)) + 1)))
    window = mid[:, None] + stride * np.linspace(-0.5, 0.5, k)[None, :]
    stance = ts[:, None] + (to - ts)[:, None] * np.linspace(0.0, 1.0, _STANCE_SAMPLES)[None, :]
    speed = np.full(n, np.nan)
    steady = np.zeros(n, bool)
    mean_of_belts = v.mean(axis=1)
    for key in (0, 1, None):
        rows = (sd == key) if key is not None else ~np.isin(sd, list(cols))
        if not cols and key is not None:
            continue
        rows &= np.isfinite(ts) & np.isfinite(to)
        if not rows.any():
            continue
        col = v[:, cols[key]] if key is not None else mean_of_belts
        known_stance = np.isfinite(_belt_at(t, col, stance[rows])).all(axis=1)
        speed[rows] = np.where(known_stance, _belt_mean(t, col, ts[rows], to[rows]), np.nan)
        around = _belt_at(t, col, window[rows])
        known = np.isfinite(around).all(axis=1)
        spread = np.ptp(np.where(np.isfinite(around), around, 0.0), axis=1)
        steady[rows] = known & (spread < BELT_STEADY_TOL_M_S)
    return {"belt_speed": speed, "belt_steady": steady}


#: Contact flag (beside the ``kernels.contacts`` bits): the plate's vertical force sat at the
#: recording's maximum for ``SATURATION_SAMPLES`` or more samples in a row (amplifier clipping).
FLAG_SATURATED = 64
SATURATION_SAMPLES = 3
#: Force contacts with these flags are timed by the kinematic fallback instead (the force trace
#: cannot time them: samples missing inside the contact, both feet on one plate, clipping).
REPLACE_FLAGS = 8 | 16 | FLAG_SATURATED  # kernels.contacts FLAG_DROPOUT | FLAG_CROSS_STEP


def _least_within(dtype, top: float, tol: float):
    """The least value ``v`` of float ``dtype`` with ``|v - top| <= tol`` in float64 arithmetic
    (``top`` a value of ``dtype``). That test only weakens as ``v`` rises to ``top``, so for any
    ``v <= top`` it holds exactly when ``v >=`` this value."""
    t = np.dtype(dtype).type
    up, down = t(np.inf), t(-np.inf)
    v = t(top - tol)
    while not abs(float(v) - top) <= tol:
        v = np.nextafter(v, up)
    while abs(float(np.nextafter(v, down)) - top) <= tol:
        v = np.nextafter(v, down)
    return v


def flag_saturated(force_out: dict, force) -> dict:
    """Flag contacts whose raw vertical force clips (``FLAG_SATURATED``).

    A plate clips at a constant level: a contact is saturated when its raw Fz (N) stays within
    1e-6 of the plate's maximum over the whole recording (and at least 1 mN) for
    ``SATURATION_SAMPLES`` consecutive samples — a real force peak changes by tenths of a
    newton per sample at 1 kHz. ``force_out["attrs"]["saturated_contacts"]`` counts them.
    """
    c = force_out["contacts"]
    n = c["t_strike"].size
    flags = np.asarray(c["flags"]).copy()
    w = force.wrench
    count = 0
    if n and w.shape[0]:
        k = SATURATION_SAMPLES
        for j in range(w.shape[1]):
            fz = w[:, j, 2]  # a strided view: no full-length float64 copy
            if fz.dtype.kind != "f":
                fz = fz.astype(np.float64)
            # the NaN-ignoring maximum (+inf when there is one; NaN when nothing is finite);
            # the plain maximum is the same value when it is not NaN, and faster
            top = float(fz.max()) if fz.size else np.nan
            if np.isnan(top):
                top = float(np.fmax.reduce(fz))
            if not np.isfinite(top) or top <= 0:
                continue
            tol = max(1e-6 * abs(top), 1e-3)
            # samples with |fz - top| <= tol in float64: fz >= the least such value of fz's
            # dtype (no sample exceeds top), compared in that dtype without a float64 copy
            at_top = np.flatnonzero(fz >= _least_within(fz.dtype, top, tol))
            # start of runs of >= SATURATION_SAMPLES samples at the top
            if at_top.size < k:
                continue
            first = at_top[:at_top.size - k + 1]
            starts = first[at_top[k - 1:] - first == k - 1]
            if not starts.size:
                continue
            rows = np.flatnonzero(np.asarray(c["plate"]) == j)
            a = np.asarray(c["i_strike"])[rows]
            b = np.asarray(c["i_off"])[rows]
            lo = np.searchsorted(starts, a, "left")
            hi = np.searchsorted(starts, b - k + 1, "right")
            hit = rows[hi > lo]
            flags[hit] |= FLAG_SATURATED
            count += int(hit.size)
    out = dict(force_out)
    out["contacts"] = {**c, "flags": flags.astype(np.asarray(c["flags"]).dtype)}
    out["attrs"] = {**force_out["attrs"], "saturated_contacts": count}
    return out
#: s, a kinematic contact matches a force contact of the same foot when the strikes are closer.
MATCH_S = 0.1


def kinematic_fallback(c: dict, marker_out: dict) -> tuple[dict, dict]:
    """Kinematic contacts where force cannot time a contact (docs/scoring.md).

    Each foot's contacts are found from its heel and forefoot heights
    (:func:`treadlab.kernels.kinematic_contacts.kinematic_contacts`). Every force contact gets
    the matching kinematic events (``kinematic_t_strike``/``kinematic_t_off``, NaN when none
    is within ``MATCH_S``). A force contact flagged with ``REPLACE_FLAGS`` (drop-out,
    cross-step, saturated), or any stretch
    without force contacts longer than twice the median step time (force missing), is timed
    by the kinematic contacts of both feet that fall in it. ``contact_source`` is 0 (force) or
    1 (kinematic); kinematic rows have NaN force metrics, plate -1 and flags 0.

    Returns
    -------
    (contacts, info)
        The contacts sorted by strike, and ``{"kinematic_contacts": n rows added,
        "force_contacts_replaced": n}``.
    """
    n = c["t_strike"].size
    c = dict(c)
    c["contact_source"] = np.zeros(n, np.int8)
    c["kinematic_t_strike"] = np.full(n, np.nan)
    c["kinematic_t_off"] = np.full(n, np.nan)
    info = {"kinematic_contacts": 0, "force_contacts_replaced": 0}
    heights = marker_out.get("foot_heights") or {}
    events = []
    for side, key in ((0, "L"), (1, "R")):
        h = heights.get(key)
        if h is None:
            continue
        ts, to = kinematic_contacts(marker_out["time"], h[0], h[1])
        ts = np.asarray(ts, np.float64).ravel()
        if ts.size:  # rows (strike, off, side), as float64
            events.append(np.column_stack([ts, np.asarray(to, np.float64).ravel(),
                                           np.full(ts.size, float(side))]))
    if not events:
        return c, info
    kin = np.concatenate(events, axis=0)
    for side in (0, 1):  # nearest kinematic strike of the same foot, by binary search
        same = kin[(kin[:, 2] == side) & np.isfinite(kin[:, 0])]
        rows = np.flatnonzero(np.asarray(c["side"]) == side)
        if not (same.size and rows.size):
            continue
        t = c["t_strike"][rows]
        k = np.clip(np.searchsorted(same[:, 0], t), 1, max(len(same) - 1, 1))
        prev = np.clip(k - 1, 0, len(same) - 1)
        k = np.clip(k, 0, len(same) - 1)
        j = np.where(np.abs(same[prev, 0] - t) <= np.abs(same[k, 0] - t), prev, k)
        hit = np.abs(same[j, 0] - t) <= MATCH_S
        c["kinematic_t_strike"][rows[hit]] = same[j[hit], 0]
        c["kinematic_t_off"][rows[hit]] = same[j[hit], 1]
    bad = (np.asarray(c["flags"]) & REPLACE_FLAGS) != 0
    good_strikes = np.sort(c["t_strike"][~bad])
    spans = [(c["t_strike"][i] - MATCH_S, c["t_off"][i] + MATCH_S) for i in np.flatnonzero(bad)]
    steps = np.diff(good_strikes)
    gap = 2.0 * median(steps) if steps.size else np.inf
    if not good_strikes.size:  # no force contact at all: the whole recording
        spans.append((-np.inf, np.inf))
    wide = np.flatnonzero(steps > gap)  # force missing inside
    spans.extend(zip(good_strikes[wide] + MATCH_S, good_strikes[wide + 1] - MATCH_S))
    take = np.zeros(kin.shape[0], bool)
    for lo, hi in spans:
        take |= (kin[:, 0] >= lo) & (kin[:, 0] <= hi)
    take &= np.isfinite(kin[:, 0]) & np.isfinite(kin[:, 1])
    for side in (0, 1):  # never a second row for a contact force still times
        kept = np.sort(c["t_strike"][~bad & (np.asarray(c["side"]) == side)])
        rows = np.flatnonzero(take & (kin[:, 2] == side))
        if kept.size and rows.size:
            hi = np.minimum(np.searchsorted(kept, kin[rows, 0]), kept.size - 1)
            lo = np.maximum(hi - 1, 0)
            near = np.minimum(np.abs(kept[hi] - kin[rows, 0]), np.abs(kept[lo] - kin[rows, 0]))
            take[rows[near <= MATCH_S]] = False
    if not (take.any() or bad.any()):
        return c, info
    keep = ~bad
    new = kin[take]
    k = new.shape[0]
    out = {}
    for name, col in c.items():
        col = np.asarray(col)
        if col.shape[:1] != (n,):
            out[name] = col
            continue
        if name == "t_strike":
            add = new[:, 0]
        elif name == "t_off":
            add = new[:, 1]
        elif name == "side":
            add = new[:, 2]
        elif name == "contact_source":
            add = np.ones(k)
        elif name in ("kinematic_t_strike",):
            add = new[:, 0]
        elif name in ("kinematic_t_off",):
            add = new[:, 1]
        elif name in ("flags", "loading_rate_fallback"):
            add = np.zeros(k)
        elif name in ("i_strike", "i_off", "plate"):
            add = np.full(k, -1)
        else:
            add = np.full(k, np.nan)
        out[name] = np.concatenate([col[keep], add.astype(col.dtype)])
    order = np.argsort(out["t_strike"], kind="stable")
    out = {name: (col[order] if np.asarray(col).shape[:1] == (n - int(bad.sum()) + k,) else col)
           for name, col in out.items()}
    out["contact_time"] = out["t_off"] - out["t_strike"]
    prev_off = np.maximum.accumulate(out["t_off"])[:-1] if out["t_off"].size else np.zeros(0)
    out["flight_time"] = out["t_strike"] - np.concatenate(([np.nan], prev_off))
    info = {"kinematic_contacts": int(k), "force_contacts_replaced": int(bad.sum())}
    return out, info


def step_attrs(marker_out: dict) -> dict:
    """``/derived`` attributes saying how step_task measured (zeroes, windows, leg length)."""
    static = marker_out.get("static") or {}
    zero = static.get("obliquity_deg", float("nan"))
    leg, leg_src = leg_length_mm(marker_out.get("attrs", {}))
    return {
        "pelvic_obliquity_zero": (f"static trial {static.get('source', '')}: {zero:.2f} deg"
                                  if np.isfinite(zero) else "stride mean (no static trial)"),
        "static_pelvic_obliquity_deg": float(zero),
        "static_pelvic_tilt_deg": float(static.get("tilt_deg", float("nan"))),
        "peak_hip_extension_window": (f"midstance to toe off + {HIP_AFTER_OFF_S * 1000:.0f} ms "
                                      f"(early swing)"),
        "overstride_leg_length_mm": float(leg),
        "overstride_leg_length_source": leg_src,
    }


__all__ = ["DeriveSettings", "CONTACT_COLUMNS", "EXTRA_UNITS", "STORED_ANGLES", "lowpass",
           "force_task", "marker_task", "static_offsets", "leg_length_mm", "step_task",
           "step_attrs", "belt_columns", "BELT_STEADY_TOL_M_S", "BELT_MAX_GAP_S",
           "DEFAULT_STRIDE_S"]
