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
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfiltfilt

from treadlab.config.constants import G
from treadlab.config.errors import InputError
from treadlab.config.schema import ContactsConfig, FiltersConfig, LabTable
from treadlab.kernels import contacts as kc
from treadlab.kernels.angles import MARKERS as model_markers, joint_angles
from treadlab.kernels.forces import estimate_body_weight, force_metrics
from treadlab.kernels.gaps import fill_gaps
from treadlab.kernels.steps import step_metrics

log = logging.getLogger(__name__)

#: Columns of ``/derived/contacts`` (docs/archive.md §4.1), in order; extra columns follow them.
CONTACT_COLUMNS = ("side", "t_strike", "t_off", "contact_time", "flight_time", "peak_vgrf",
                   "loading_rate", "peak_braking", "braking_impulse", "propulsive_impulse",
                   "pelvic_drop", "trunk_lean", "overstride", "shank_angle_ic",
                   "peak_hip_extension", "valid")
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
                 "peak_hip_extension": "hip_flexion_left"}


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
            "force_filter": "Butterworth low-pass, zero lag (scipy.signal.sosfiltfilt)",
            "force_lowpass_hz": float(self.force_lowpass_hz or 0.0),
            "force_order": int(self.force_order),
            "marker_filter": "Butterworth low-pass, zero lag (scipy.signal.sosfiltfilt)",
            "marker_lowpass_hz": float(self.marker_lowpass_hz or 0.0),
            "marker_order": int(self.marker_order),
            "max_gap_s": float(self.max_gap_s),
        }


# --- filtering ---------------------------------------------------------------------------------

def _sos(rate_hz: float, cutoff_hz, order: int):
    if not cutoff_hz or cutoff_hz <= 0:
        return None
    if cutoff_hz >= 0.5 * rate_hz:
        log.warning("low-pass %.1f Hz is not below Nyquist (%.1f Hz): not filtered",
                    cutoff_hz, 0.5 * rate_hz)
        return None
    return butter(int(order), cutoff_hz / (0.5 * rate_hz), output="sos")


def lowpass(x: np.ndarray, rate_hz: float, cutoff_hz, order: int, dtype=np.float64,
            block: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Zero-lag Butterworth low-pass along axis 0, NaN-aware.

    Parameters
    ----------
    x : ndarray, shape (n, ...), float
        Signal (any unit); NaN marks missing samples.
    rate_hz : float, Hz. cutoff_hz : float, Hz (0/None: no filtering, a copy is returned).
    order : int. Order of each pass (forward and backward).
    dtype : output dtype (float64 default; float32 for marker positions halves the memory).
    block : int, optional. Columns filtered at a time (bounds the float64 temporaries);
        default: as many as fit in max(16 MiB, 6 columns of ``x``): every column of a short
        recording in one ``sosfiltfilt`` call, 6 at a time for an hour of markers.
    out : ndarray, optional. C-contiguous array of ``x``'s shape and ``dtype`` to write into;
        may be ``x`` itself (each block of columns is copied before it is overwritten).

    Returns
    -------
    ndarray, shape (n, ...), ``dtype``
        Filtered; NaN where ``x`` is NaN. Inside a column, missing samples are bridged by
        linear interpolation for the filter only and set back to NaN afterwards, so each
        column is filtered in one vectorised pass; samples next to a long gap are therefore
        smoothed towards the bridge (within about one cut-off period). A column with fewer
        finite samples than the filter's padding is returned unfiltered.
    """
    x = np.asarray(x)
    sos = _sos(rate_hz, cutoff_hz, order)
    if sos is None or x.shape[0] == 0:
        return np.array(x, dtype=dtype)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    if out is not None and (out.shape != x.shape or not out.flags.c_contiguous):
        raise ValueError(f"out must be C-contiguous with shape {x.shape}")
    if block is None:
        block = max(1, max(16 << 20, 6 * 8 * n) // (n * 8))
    result = np.empty(x.shape, dtype=dtype) if out is None else out
    target = result.reshape(n, -1)  # a view: result must be C-contiguous
    padlen = 3 * (2 * sos.shape[0] + 1)
    idx = np.arange(n)
    for c0 in range(0, flat.shape[1], block):
        # one row per column, contiguous along time: the layout sosfilt works in
        rows = np.ascontiguousarray(flat[:, c0:c0 + block].T, dtype=np.float64)
        finite = np.isfinite(rows)
        n_ok = finite.sum(axis=1)
        ok = n_ok > padlen
        for j in np.flatnonzero(ok & (n_ok < n)):
            good = finite[j]
            rows[j, ~good] = np.interp(idx[~good], idx[good], rows[j, good])
        if n > padlen and ok.all():
            rows = sosfiltfilt(sos, rows, axis=1)
        elif n > padlen and ok.any():
            rows[ok] = sosfiltfilt(sos, rows[ok], axis=1)
        rows[~finite] = np.nan
        target[:, c0:c0 + block] = rows.T
    return result


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
        with np.errstate(invalid="ignore"):
            low = np.nanmin(fz[:k * w].reshape(k, w), axis=1) if np.isnan(fz).any() \
                else fz[:k * w].reshape(k, w).min(axis=1)
        low = low[np.isfinite(low)]
        if low.size and np.max(np.abs(low)) < tolerance_n:
            return None
    step = max(1, int(rate_hz // 100))
    if step == 1:
        return _flight_baseline(kc, fz, rate_hz)
    coarse = _flight_baseline(kc, np.ascontiguousarray(fz[::step]), rate_hz / step)
    idx = np.arange(fz.size, dtype=np.float64)
    return np.interp(idx, idx[::step], coarse)


_BASELINE_WINDOW_S = 1.0  #: s, window of ``kc.flight_baseline``
_BASELINE_QUANTILE = 0.05  #: its quantile


def _flight_baseline(kc, fz: np.ndarray, rate_hz: float) -> np.ndarray:
    """``kc.flight_baseline`` with 1 s windows and the 5 % quantile."""
    return kc.flight_baseline(fz, rate_hz, window_s=_BASELINE_WINDOW_S,
                              quantile=_BASELINE_QUANTILE)


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
    for j in range(p):
        x = lowpass(w[:, j, chans], rate, s.force_lowpass_hz, s.force_order)
        # a contact-free first zero when drift hides the flights, then re-zero on this
        # plate's flight phases (treadmill plates drift, Sinitski 2015) and detect again
        base = _baseline(kc, x[:, kz], rate, 0.5 * s.off_n)
        c, _ = kc.detect_contacts(x[:, kz] if base is None else x[:, kz] - base, rate, params0,
                                  t0=t0)
        del base
        x, off = kc.rezero_flight(x, c.i_strike, c.i_off, rate)
        offsets.append(float(np.mean(off[:, kz])) if off.size else 0.0)
        del off
        plate = {"fz": np.ascontiguousarray(x[:, kz]), "fx": np.ascontiguousarray(x[:, kx]),
                 "all": x if mode == "single" else None}
        del x
        c, _ = kc.detect_contacts(plate["fz"], rate, params0, t0=t0)
        plates.append(plate)
        found.append(c)

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

def marker_task(markers, subject: dict, settings: DeriveSettings) -> dict:
    """Joint angles from the marker stream.

    Parameters
    ----------
    markers : treadlab.acquisition.archive.MarkerData
        ``positions`` (m, k, 3) float32 mm, NaN = occluded; ``labels`` CGM names.
    subject : dict
        Anthropometrics (``/subject`` attrs, mm); missing values use the model's stated defaults.
    settings : DeriveSettings

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

    keep = [i for i, name in enumerate(labels) if name in set(model_markers)]
    pos = np.asarray(markers.positions)
    if len(keep) < len(labels):
        pos = pos[:, keep, :]
    used = [labels[i] for i in keep]
    max_gap = int(round(s.max_gap_s * rate))
    # markers are filled independently: a few at a time bounds the kernel's temporaries
    filled = np.empty(pos.shape, dtype=np.float32)
    longest = 0
    for k0 in range(0, pos.shape[1], 4):
        part, n_long = fill_gaps(pos[:, k0:k0 + 4], max_gap)
        filled[:, k0:k0 + 4] = part
        longest = max(longest, int(n_long))
        del part
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
                   "values": np.stack([columns[n] for n in stored], axis=1).astype(np.float32)
                   if stored else np.zeros((len(markers.time), 0), np.float32),
                   "names": stored, "reasons": {n: reasons[n] for n in stored if n in reasons}},
        "all_names": names, "all_values": values,
        "time": np.asarray(markers.time, np.float64), "rate_hz": rate,
        "reasons": reasons, "metric_reasons": metric_reasons, "attrs": attrs,
        "foot_z": {side: _lowest_foot_z(smooth, used, side) for side in ("L", "R")},
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
    # estimate the model on a decimated copy of the whole recording, then freeze it
    model = dict(joint_angles(pos[::10], labels, subject).attrs)
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


def _lowest_foot_z(pos, labels, side) -> np.ndarray:
    """(m,) float64 mm: height of the lowest of the HEE/TOE markers of one side (NaN if none)."""
    idx = [labels.index(side + n) for n in ("HEE", "TOE") if side + n in labels]
    if not idx:
        return np.full(pos.shape[0], np.nan)
    return np.fmin.reduce(pos[:, idx, 2], axis=1)  # NaN-ignoring, NaN only when all are


# --- steps ---------------------------------------------------------------------------------------

def step_task(force_out: dict, marker_out: dict, settings: DeriveSettings) -> dict:
    """The ``/derived/contacts`` table: events, force metrics and per-stance kinematics.

    Returns
    -------
    dict
        {name: (c,) array} with :data:`CONTACT_COLUMNS` first (docs/archive.md §4.1 units: s, BW, BW/s,
        BW·s, deg, mm; ``valid`` bool), then ``flags``, ``plate``, ``loading_rate_fallback``,
        ``trunk_lean_midstance``.
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
    sided = c["side"] >= 0
    kin = {k: np.full(c["t_strike"].size, np.nan) for k in CONTACT_COLUMNS}
    if sided.any():
        got = step_metrics(c["t_strike"][sided], c["t_off"][sided], c["side"][sided],
                           marker_out["time"], marker_out["all_values"], marker_out["all_names"])
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
    out["side"] = out["side"].astype(np.int8)
    out["flags"] = c["flags"].astype(np.int32)
    out["plate"] = c["plate"]
    out["loading_rate_fallback"] = c["loading_rate_fallback"]
    for extra in ("trunk_lean_midstance", "pelvis_tilt_mean", "peak_hip_extension_source"):
        if extra in kin:
            out[extra] = kin[extra]
    return out


__all__ = ["DeriveSettings", "CONTACT_COLUMNS", "STORED_ANGLES", "lowpass",
           "force_task", "marker_task", "step_task"]
