"""Validation of treadlab's cause metrics on a processed cohort (``docs/validation.md``).

The functions here read processed cohort archives (``treadlab reference build-cohort --work
DIR``) and the cohort's OpenSim inverse-kinematics files and return plain tables; the scripts in
``benchmarks/`` print them and ``tests/pipeline/test_cohort.py`` checks the claims. Nothing here
is used by processing.

Comparisons with OpenSim use treadlab's own force events on both sides: for every valid contact
inside the time span of the ``.mot`` file, the same window is applied to treadlab's Plug-in Gait
angles and to OpenSim's coordinates:

* peak hip extension: ``-min(hip flexion)`` from midstance to toe off + ``HIP_AFTER_OFF_S``;
* pelvic drop: largest drop of the swing side over stance. treadlab's obliquity is zeroed on the
  static trial; OpenSim's ``pelvis_list`` is used as is (its model was scaled on the same static
  trial, so 0 is the standing pelvis). ``pelvis_list`` > 0 is right side down, the same sign as
  treadlab's obliquity (left side higher);
* per trial, the median over contacts (both sides, and left minus right for asymmetry).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from treadlab.acquisition.archive import attrs_of, open_archive, read_derived, read_markers
from treadlab.config.errors import InputError
from treadlab.kernels.gaps import fill_gaps
from treadlab.kernels.kinematic_contacts import OFF_MM, STRIKE_MM, kinematic_contacts
from treadlab.kernels.steps import HIP_AFTER_OFF_S, step_metrics
from treadlab.pipeline import reference as R
from treadlab.pipeline.derive import lowpass
from treadlab.pipeline.reprocess import find_sessions
from treadlab.pipeline.scoring import load_reference


def read_mot(path) -> dict:
    """An OpenSim ``.mot`` / ``.sto`` table: ``{column: (n,) float64}`` (degrees, s)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    try:
        end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    except StopIteration:
        raise InputError(path, "header", "no 'endheader' line: not an OpenSim table") from None
    cols = lines[end + 1].split()
    rows = [line.split() for line in lines[end + 2:] if line.strip()]
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        raise InputError(path, f"line {end + 3}", "non-numeric value in the table") from None
    if data.ndim != 2 or data.shape[1] != len(cols):
        raise InputError(path, "columns", f"{len(cols)} names for rows of {data.shape[-1]}")
    return {c: data[:, j] for j, c in enumerate(cols)}


def _derived(path):
    """Stored angles (by name, plus ``time``), the angle matrix, names, contacts and root
    attributes of a processed archive (through the archive API)."""
    d = read_derived(path)
    if d is None or "angles" not in d or "contacts" not in d:
        raise InputError(path, "/derived", "not processed (run treadlab process)")
    names = list(d["angles"]["names"])
    values = np.asarray(d["angles"]["values"], dtype=np.float64)
    angles = {n: values[:, j] for j, n in enumerate(names)}
    angles["time"] = np.asarray(d["angles"]["time"])
    with open_archive(path) as f:
        attrs = attrs_of(f)
    return angles, values, names, d["contacts"], attrs


def cohort_pairs(work_dir, cohort_dir) -> list[dict]:
    """Processed archives ``SUBJECT_Tvv.h5`` in ``work_dir`` with their OpenSim file
    ``cohort_dir/SUBJECT/SUBJECT_Tvv_ik_simple.mot`` (pairs without one are left out)."""
    out = []
    for h5 in sorted(Path(work_dir).glob("*_T[0-9][0-9].h5")):
        m = re.match(r"(?P<s>.+)_T(?P<v>\d\d)$", h5.stem)
        mot = Path(cohort_dir) / m["s"] / f"{m['s']}_T{m['v']}_ik_simple.mot"
        if mot.exists():
            out.append({"subject": m["s"], "speed": int(m["v"]) / 10.0, "h5": h5, "mot": mot})
    return out


def _window(t, lo, hi):
    return (t >= lo) & (t <= hi)


def compare_trial(h5, mot) -> dict:
    """treadlab vs OpenSim on one trial (module docstring): per-trial medians ``hip_ext``,
    ``hip_ext_os``, ``pelvic_drop``, ``pelvic_drop_os``, ``asym_drop``, ``asym_drop_os``
    (left minus right), ``tilt`` (treadlab mean pelvis tilt over stance), ``n`` contacts."""
    ang, _, _, c, _ = _derived(h5)
    os_ = read_mot(mot)
    mt = os_["time"]
    rows = {k: [] for k in ("hip", "hip_os", "pd", "pd_os", "side", "tilt")}
    for i in np.flatnonzero(c["valid"]):
        ts, to, s = float(c["t_strike"][i]), float(c["t_off"][i]), int(c["side"][i])
        hi = to + HIP_AFTER_OFF_S
        if ts < mt[0] or hi > mt[-1]:
            continue
        lr, o = ("left", "l") if s == 0 else ("right", "r")
        tm = 0.5 * (ts + to)
        w = _window(mt, tm, hi)
        stance = _window(mt, ts, to)
        if not (w.any() and stance.any()):
            continue
        sign = 1.0 if s == 0 else -1.0
        rows["hip"].append(float(c["peak_hip_extension"][i]))
        rows["hip_os"].append(-float(os_[f"hip_flexion_{o}"][w].min()))
        rows["pd"].append(float(c["pelvic_drop"][i]))
        rows["pd_os"].append(float(np.max(sign * os_["pelvis_list"][stance])))
        rows["tilt"].append(float(c["pelvis_tilt_mean"][i]))
        rows["side"].append(s)
    r = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    side = r["side"]

    def med(x, sel=None):
        x = x if sel is None else x[sel]
        x = x[np.isfinite(x)]
        return float(np.median(x)) if x.size else math.nan

    return {"n": int(side.size), "hip_ext": med(r["hip"]), "hip_ext_os": med(r["hip_os"]),
            "pelvic_drop": med(r["pd"]), "pelvic_drop_os": med(r["pd_os"]),
            "asym_drop": med(r["pd"], side == 0) - med(r["pd"], side == 1),
            "asym_drop_os": med(r["pd_os"], side == 0) - med(r["pd_os"], side == 1),
            "asym_hip": med(r["hip"], side == 0) - med(r["hip"], side == 1),
            "asym_hip_os": med(r["hip_os"], side == 0) - med(r["hip_os"], side == 1),
            "tilt": med(r["tilt"])}


def speed_effect(rows: list, key: str, slow: float = 2.5, fast: float = 4.5) -> float:
    """Mean within-runner change of ``key`` from ``slow`` to ``fast`` m/s (runners with both)."""
    by = {(r["subject"], r["speed"]): r[key] for r in rows}
    d = [by[(s, fast)] - by[(s, slow)] for s in sorted({r["subject"] for r in rows})
         if (s, fast) in by and (s, slow) in by]
    return float(np.mean(d)) if d else math.nan


def pearson(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else math.nan


def hip_toe_off_sensitivity(h5, after_s: float | None = None) -> dict:
    """How much one marker frame of toe-off jitter moves each step's peak hip extension.

    The stored angles go through :func:`treadlab.kernels.steps.step_metrics` with every
    ``t_off`` moved one marker frame earlier and later. Returns ``delta`` (c,) deg, the larger
    of the two changes per valid contact, ``lag_s`` (c,) s, the time of the hip-flexion minimum
    (over midstance to toe off + 200 ms) after toe off, and ``frame_s``.
    """
    after = HIP_AFTER_OFF_S if after_s is None else after_s
    ang, values, names, c, _ = _derived(h5)
    t = ang["time"]
    dt = float(np.median(np.diff(t)))
    v = np.asarray(c["valid"], bool)
    ts, to, side = c["t_strike"][v], c["t_off"][v], c["side"][v].astype(np.int64)

    def peak(toff):
        return step_metrics(ts, toff, side, t, values, names,
                            hip_after_off_s=after)["peak_hip_extension"]

    base = peak(to)
    delta = np.fmax(np.abs(peak(to + dt) - base), np.abs(peak(to - dt) - base))
    lag = np.full(ts.size, np.nan)
    for k in range(ts.size):
        hf = ang["hip_flexion_left" if side[k] == 0 else "hip_flexion_right"]
        w = _window(t, 0.5 * (ts[k] + to[k]), to[k] + 0.2)
        if w.any() and np.isfinite(hf[w]).any():
            lag[k] = t[w][np.nanargmin(hf[w])] - to[k]
    return {"delta": delta, "lag_s": lag, "frame_s": dt}


def loo_table(rows_scored: list) -> dict:
    """Leave-one-runner-out summary: ``{cause: {"n", "above50", "above82", "by_speed":
    {speed: (n, above50, above82)}}}`` as fractions of the scored trials."""
    out = {}
    for cause in sorted({r["cause"] for r in rows_scored}):
        rs = [r for r in rows_scored if r["cause"] == cause and np.isfinite(r["score"])]
        if not rs:
            continue
        s = np.array([r["score"] for r in rs])
        sp = np.array([round(r["speed"], 2) for r in rs])
        out[cause] = {"n": int(s.size), "above50": float(np.mean(s > 50)),
                      "above82": float(np.mean(s > 82)),
                      "by_speed": {float(v): (int((sp == v).sum()), float(np.mean(s[sp == v] > 50)),
                                              float(np.mean(s[sp == v] > 82)))
                                   for v in sorted(set(sp))}}
    return out


def cohort_loo(work_dir, participants, template="literature", min_steps_per_side=20) -> list:
    """Leave-one-runner-out scores of every processed cohort trial (reference rebuilt without
    the runner each time, exactly as ``build_reference`` fits it)."""
    tpl = load_reference(template)
    causes = R.template_causes(tpl)
    for cause, over in R.BUILT_METRICS.items():
        causes[cause] = {**causes[cause], **over}
    rows, _ = R.collect_sessions(work_dir, causes, min_steps_per_side,
                                 R.read_participants(participants))
    return R.leave_one_runner_out(rows, tpl, min_steps_per_side)


def kinematic_threshold_split(work_dir, strike_grid=(3.0, 5.0, 8.0, 10.0, 15.0),
                              off_grid=(15.0, 20.0, 25.0, 30.0)) -> dict:
    """Out-of-sample check of the kinematic contact thresholds.

    Foot-marker heights of every processed trial (gaps filled and low-passed as the pipeline
    does) are run through the kinematic rule for every threshold of the grids; thresholds are
    chosen on the runners with an odd subject number (smallest ``|median| + half the 95 %
    range`` of kinematic − force, ms) and the chosen ones evaluated on the even-numbered
    runners. Returns ``{"strike": {...}, "off": {...}}`` with ``chosen_mm``, ``train`` and
    ``test`` (median, 2.5th, 97.5th percentile, ms).
    """
    err = {"strike": {}, "off": {}}
    for h5 in find_sessions(work_dir):
        m = re.search(r"(\d+)_T\d\d$", h5.stem)
        group = "train" if m and int(m.group(1)) % 2 else "test"
        with open_archive(h5) as f:
            mk = read_markers(f, h5)
        d = read_derived(h5)
        labels, pos, t = list(mk.labels), mk.positions, mk.time
        c = {k: d["contacts"][k] for k in ("t_strike", "t_off", "side", "valid",
                                           "contact_source")}
        da = d["attrs"]
        cut, order, gap = (float(da["marker_lowpass_hz"]), int(da["marker_order"]),
                           float(da["max_gap_s"]))
        rate = 1.0 / float(np.median(np.diff(t)))
        valid = c["valid"].astype(bool) & (c["contact_source"] == 0)
        for side, key in ((0, "L"), (1, "R")):
            fore = next((key + n for n in ("TOE", "MT1", "MT5") if key + n in labels), None)
            if key + "HEE" not in labels or fore is None:
                continue
            cols = [labels.index(key + "HEE"), labels.index(fore)]
            z, _ = fill_gaps(pos[:, cols, :].astype(np.float32), int(round(gap * rate)))
            z = lowpass(np.asarray(z[:, :, 2], np.float64), rate, cut, order)
            sel = valid & (c["side"] == side)
            fs, fo = c["t_strike"][sel], c["t_off"][sel]
            runs = [(g, OFF_MM, "strike") for g in strike_grid] + \
                [(STRIKE_MM, g, "off") for g in off_grid]
            for s_mm, o_mm, event in runs:
                ks, ko = kinematic_contacts(t, z[:, 0], z[:, 1], strike_mm=s_mm, off_mm=o_mm)
                ok = np.isfinite(ks)
                ks, ko = ks[ok], ko[ok]
                if not ks.size:
                    continue
                hi = np.minimum(np.searchsorted(ks, fs), ks.size - 1)
                lo = np.maximum(hi - 1, 0)
                j = np.where(np.abs(ks[lo] - fs) <= np.abs(ks[hi] - fs), lo, hi)
                hit = np.abs(ks[j] - fs) <= 0.1
                if event == "strike":
                    err["strike"].setdefault((s_mm, group), []).append((ks[j] - fs)[hit])
                else:
                    err["off"].setdefault((o_mm, group), []).append((ko[j] - fo)[hit])

    def stats(x):
        x = np.concatenate(x) * 1000.0
        x = x[np.isfinite(x)]
        p = np.percentile(x, [50, 2.5, 97.5])
        return {"median_ms": round(float(p[0]), 1), "lo95_ms": round(float(p[1]), 1),
                "hi95_ms": round(float(p[2]), 1), "n": int(x.size)}

    out = {}
    for event, grid in (("strike", strike_grid), ("off", off_grid)):
        best = min(grid, key=lambda g: (abs(stats(err[event][(g, "train")])["median_ms"])
                                        + 0.5 * (stats(err[event][(g, "train")])["hi95_ms"]
                                                 - stats(err[event][(g, "train")])["lo95_ms"])))
        out[event] = {"chosen_mm": best, "train": stats(err[event][(best, "train")]),
                      "test": stats(err[event][(best, "test")])}
    return out
