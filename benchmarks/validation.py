"""Validation tables of docs/validation.md, re-computed from the recordings.

    ./run bench validation [--data ../shared/data] [--work /tmp/treadlab-cohort] [--table NAME]

The cohort (Fukuchi, Fukuchi & Duarte 2017, PeerJ 5:e3298, CC BY 4.0) is imported with its
static trials and processed once into ``--work`` (as ``treadlab reference build-cohort --work``
does; re-used while up to date, about 15 s on 2 cores the first time). Tables:

``contacts``   kinematic contact fallback against the force events (ms)
``pig``        treadlab angles against Vicon Plug-in Gait's own outputs (deg RMS)
``opensim``    per-trial peak hip extension and pelvic drop against OpenSim IK (r, speed effects)
``hip``        peak hip extension against one marker frame of toe-off jitter (old and new window)
``loo``        leave-one-runner-out scores per cause and speed (default reference rebuilt
               without the runner)
``literature`` the same healthy trials scored against the former literature set

The last line is one JSON object with the headline numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from treadlab.acquisition.archive import attr, open_archive, read_derived
from treadlab.pipeline.reprocess import find_sessions


def _speed(path) -> float:
    """The session's belt speed (m/s), rounded to 0.01."""
    with open_archive(path) as f:
        return round(float(attr(f, "belt_speed_m_s")), 2)

REPO = Path(__file__).resolve().parents[1]


def _ms(x):
    x = np.asarray(x, np.float64) * 1000.0
    x = x[np.isfinite(x)]
    if not x.size:
        return "-", {}
    p = np.percentile(x, [50, 2.5, 97.5])
    return (f"{p[0]:+6.1f}  [{p[1]:+6.1f}, {p[2]:+6.1f}]  n {x.size}",
            {"median_ms": round(float(p[0]), 1), "lo95_ms": round(float(p[1]), 1),
             "hi95_ms": round(float(p[2]), 1), "n": int(x.size)})


def table_contacts(work):
    print("\n## Kinematic contacts vs force events (kinematic - force, ms: median [2.5th, 97.5th "
          "percentile])")
    by = {}
    for h5 in find_sessions(work):
        d = read_derived(h5)["contacts"]
        c = {k: d[k] for k in ("t_strike", "t_off", "kinematic_t_strike", "kinematic_t_off",
                               "valid")}
        speed = _speed(h5)
        v = c["valid"].astype(bool)
        d = by.setdefault(speed, {"strike": [], "off": [], "ct": [], "n": 0, "found": 0})
        d["n"] += int(v.sum())
        d["found"] += int((np.isfinite(c["kinematic_t_strike"]) & v).sum())
        d["strike"].append((c["kinematic_t_strike"] - c["t_strike"])[v])
        d["off"].append((c["kinematic_t_off"] - c["t_off"])[v])
        d["ct"].append(((c["kinematic_t_off"] - c["kinematic_t_strike"])
                        - (c["t_off"] - c["t_strike"]))[v])
    out = {}
    print(f"{'speed':>6}  {'found':>11}  {'strike':<32} {'toe off':<32} {'contact time':<32}")
    for speed in sorted(by) + ["all"]:
        ds = list(by.values()) if speed == "all" else [by[speed]]
        row = {}
        cells = []
        for key in ("strike", "off", "ct"):
            text, nums = _ms(np.concatenate([x for d in ds for x in d[key]]))
            cells.append(text)
            row[key] = nums
        n, found = sum(d["n"] for d in ds), sum(d["found"] for d in ds)
        print(f"{speed!s:>6}  {found:>5}/{n:<5}  {cells[0]:<32} {cells[1]:<32} {cells[2]:<32}")
        out[str(speed)] = row
    from treadlab.pipeline.validation import kinematic_threshold_split

    split = kinematic_threshold_split(work)
    print("thresholds chosen on the odd-numbered runners, tested on the even-numbered ones:")
    for event, r in split.items():
        te, tr = r["test"], r["train"]
        print(f"  {event:<7} {r['chosen_mm']:g} mm: train {tr['median_ms']:+.1f} "
              f"[{tr['lo95_ms']:+.1f}, {tr['hi95_ms']:+.1f}] n {tr['n']};  test "
              f"{te['median_ms']:+.1f} [{te['lo95_ms']:+.1f}, {te['hi95_ms']:+.1f}] n {te['n']}")
    out["split_half"] = split
    return out


def _read_pig(path):
    import ezc3d

    c3d = ezc3d.c3d(str(path))
    params = c3d["parameters"]
    labels = [s.strip() for s in params["POINT"]["LABELS"]["value"]]
    pts = c3d["data"]["points"][:3].transpose(2, 1, 0).astype(np.float64)
    pts[c3d["data"]["meta_points"]["residuals"][0].T < 0] = np.nan
    proc = {k: float(v["value"][0]) for k, v in params.get("PROCESSING", {}).items()
            if isinstance(v, dict) and len(v.get("value", [])) > 0}
    mid = 0.5 * (pts[:, labels.index("LASI")] + pts[:, labels.index("RASI")])
    mid = mid[np.isfinite(mid).all(axis=1)]
    travel = mid[-1] - mid[0]
    axis = int(np.argmax(np.abs(travel[:2])))
    sign = np.sign(travel[axis])
    rot = (np.diag([sign, sign, 1.0]) if axis == 0
           else np.array([[0, sign, 0], [-sign, 0, 0], [0, 0, 1.0]]))
    keys = {"leg_length_left_mm": "LLegLength", "leg_length_right_mm": "RLegLength",
            "inter_asis_mm": "InterAsisDistance", "asis_trochanter_left_mm":
            "LAsisTrocanterDistance", "asis_trochanter_right_mm": "RAsisTrocanterDistance",
            "knee_width_left_mm": "LKneeWidth", "knee_width_right_mm": "RKneeWidth",
            "ankle_width_left_mm": "LAnkleWidth", "ankle_width_right_mm": "RAnkleWidth",
            "marker_diameter_mm": "MarkerDiameter"}
    return labels, pts @ rot.T, pts, {k: proc.get(v) for k, v in keys.items()}


def table_pig(data):
    from treadlab.kernels.angles import joint_angles

    cols = {"pelvis_tilt": ("LPelvisAngles", 0), "pelvis_obliquity": ("LPelvisAngles", 1),
            "pelvis_rotation": ("LPelvisAngles", 2), "hip_flexion_left": ("LHipAngles", 0),
            "hip_flexion_right": ("RHipAngles", 0), "hip_adduction_left": ("LHipAngles", 1),
            "hip_adduction_right": ("RHipAngles", 1), "knee_flexion_left": ("LKneeAngles", 0),
            "knee_flexion_right": ("RKneeAngles", 0),
            "ankle_dorsiflexion_left": ("LAnkleAngles", 0),
            "ankle_dorsiflexion_right": ("RAnkleAngles", 0)}
    files = ["PiG_Motion-FlatFoot-Full.c3d", "PiG_Motion-FlatFoot-Hole.c3d",
             "CGM24_Walking01.c3d"]
    print("\n## Angles vs Vicon Plug-in Gait outputs stored in the same files (deg RMS)")
    print(f"{'angle':<26}" + "".join(f"{f.split('.')[0][:22]:>24}" for f in files))
    res = {}
    rows = {c: [] for c in cols}
    for name in files:
        path = Path(data) / "pig" / name
        if not path.exists():
            for c in cols:
                rows[c].append("-")
            continue
        labels, pos, raw, subject = _read_pig(path)
        ang = joint_angles(pos.astype(np.float32), labels, subject)
        for c, (label, k) in cols.items():
            a, b = ang[c], raw[:, labels.index(label), k]
            ok = np.isfinite(a) & np.isfinite(b)
            rms = float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))
            rows[c].append(f"{rms:.2f}")
            res.setdefault(name, {})[c] = round(rms, 2)
    for c, cells in rows.items():
        print(f"{c:<26}" + "".join(f"{x:>24}" for x in cells))
    return res


def table_opensim(work, cohort):
    from treadlab.pipeline import validation as V

    rows = [{**p, **V.compare_trial(p["h5"], p["mot"])} for p in V.cohort_pairs(work, cohort)]
    print(f"\n## Per-trial treadlab (Plug-in Gait) vs OpenSim IK, {len(rows)} trials, "
          f"{len({r['subject'] for r in rows})} runners (same force events and windows)")
    print(f"{'quantity':<28}{'r':>7}{'treadlab mean':>15}{'OpenSim mean':>14}"
          f"{'speed effect 2.5->4.5 (tl / os)':>34}")
    out = {}
    for key, label in (("hip_ext", "peak hip extension (deg)"),
                       ("pelvic_drop", "pelvic drop (deg)"),
                       ("asym_drop", "drop asymmetry L-R (deg)"),
                       ("asym_hip", "hip ext asymmetry L-R (deg)")):
        a = [r[key] for r in rows]
        b = [r[key + "_os"] for r in rows]
        r = V.pearson(a, b)
        se_t, se_o = V.speed_effect(rows, key), V.speed_effect(rows, key + "_os")
        print(f"{label:<28}{r:>7.2f}{np.nanmean(a):>15.2f}{np.nanmean(b):>14.2f}"
              f"{se_t:>20.2f} / {se_o:.2f}")
        out[key] = {"r": round(r, 3), "mean": round(float(np.nanmean(a)), 2),
                    "mean_os": round(float(np.nanmean(b)), 2), "speed_effect": round(se_t, 2),
                    "speed_effect_os": round(se_o, 2)}
    # within-runner speed effects agree?
    for key in ("hip_ext", "pelvic_drop"):
        by = {(r["subject"], r["speed"]): r for r in rows}
        d_t, d_o = [], []
        for s in sorted({r["subject"] for r in rows}):
            if (s, 2.5) in by and (s, 4.5) in by:
                d_t.append(by[(s, 4.5)][key] - by[(s, 2.5)][key])
                d_o.append(by[(s, 4.5)][key + "_os"] - by[(s, 2.5)][key + "_os"])
        r = V.pearson(d_t, d_o)
        print(f"within-runner speed effect of {key}: r {r:.2f} over {len(d_t)} runners")
        out[key]["speed_effect_r"] = round(r, 3)
    tilt = [r["tilt"] for r in rows]
    print(f"mean pelvis tilt over stance (treadlab, PiG): {np.nanmean(tilt):.1f} deg anterior")
    return out


def table_hip(work):
    from treadlab.kernels.steps import HIP_AFTER_OFF_S
    from treadlab.pipeline import validation as V

    new, old, lag = [], [], []
    for h5 in find_sessions(work):
        a = V.hip_toe_off_sensitivity(h5)
        new.append(a["delta"])
        lag.append(a["lag_s"])
        old.append(V.hip_toe_off_sensitivity(h5, after_s=0.0)["delta"])
    new, old, lag = (np.concatenate(x) for x in (new, old, lag))
    print("\n## Peak hip extension vs one marker frame (6.7 ms) of toe-off jitter, "
          f"{new.size} contacts")
    print(f"hip flexion minimum after force toe off: median {np.nanmedian(lag) * 1000:.0f} ms, "
          f"99th percentile {np.nanpercentile(lag, 99) * 1000:.0f} ms, at toe off or earlier "
          f"{np.nanmean(lag <= 0.004) * 100:.1f} %")
    out = {}
    for name, d in (("window ends at toe off", old),
                    (f"to toe off + {HIP_AFTER_OFF_S * 1000:.0f} ms", new)):
        p = np.nanpercentile(d, [50, 95, 100])
        print(f"{name:<26} change median {p[0]:.2f}  95th {p[1]:.2f}  max {p[2]:.2f} deg;  "
              f"> 0.5 deg on {np.nanmean(d > 0.5) * 100:.1f} % of contacts")
        out[name] = {"median": round(float(p[0]), 3), "max": round(float(p[2]), 3),
                     "frac_above_0_5": round(float(np.nanmean(d > 0.5)), 4)}
    return out


def table_loo(work, cohort, template="literature", title=None):
    from treadlab.pipeline import validation as V

    rows = V.cohort_loo(work, Path(cohort) / "participants.csv", template=template)
    t = V.loo_table(rows)
    print("\n## " + (title or "Leave-one-runner-out: share of healthy trials scoring above 50 / "
                              "82 (a calibrated reference: ~16 % / ~2 %)"))
    print(f"{'cause':<24}{'trials':>7}{'>50':>8}{'>82':>8}   by speed (>50 / >82)")
    for cause, r in t.items():
        sp = "  ".join(f"{v:g}: {a * 100:.0f}/{b * 100:.0f} % (n {n})"
                       for v, (n, a, b) in r["by_speed"].items())
        print(f"{cause:<24}{r['n']:>7}{r['above50'] * 100:>7.1f}%{r['above82'] * 100:>7.1f}%   {sp}")
    return t


def table_literature(work):
    """The cohort's own trials scored against the former literature defaults."""
    from treadlab.pipeline.scoring import load_reference, score_causes

    ref = load_reference("literature")
    res = {}
    for h5 in find_sessions(work):
        c = dict(read_derived(h5)["contacts"])
        speed = _speed(h5)
        c["valid"] = c["valid"].astype(bool)
        t = score_causes(c, ref, speed_m_s=speed)
        for cause, s in zip(t["cause"], t["score"]):
            if np.isfinite(s):
                res.setdefault(str(cause), {}).setdefault(speed, []).append(float(s))
    print("\n## The same healthy trials against the former literature set "
          "(config/reference_literature.toml): share above 50 / 82")
    out = {}
    for cause, by in res.items():
        allv = np.concatenate([np.asarray(v) for v in by.values()])
        sp = "  ".join(f"{v:g}: {np.mean(np.asarray(x) > 50) * 100:.0f}/"
                       f"{np.mean(np.asarray(x) > 82) * 100:.0f} %" for v, x in sorted(by.items()))
        print(f"{cause:<24}{allv.size:>4} trials {np.mean(allv > 50) * 100:5.1f}% / "
              f"{np.mean(allv > 82) * 100:4.1f}%   {sp}")
        out[cause] = {"above50": round(float(np.mean(allv > 50)), 3),
                      "above82": round(float(np.mean(allv > 82)), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                   help="folder of the shared recordings (cohort/, running/, pig/)")
    p.add_argument("--work", default="/tmp/treadlab-cohort",
                   help="cache of processed cohort archives")
    p.add_argument("--table", action="append",
                   choices=["contacts", "pig", "opensim", "hip", "loo", "literature"],
                   help="print only these tables (repeatable)")
    args = p.parse_args(argv)
    data = Path(args.data)
    cohort = data / "cohort"
    if not (cohort / "participants.csv").exists():
        print(f"validation: cohort not found under {data}", file=sys.stderr)
        return 2
    from treadlab.pipeline.reference import prepare_cohort

    prepare_cohort([cohort, data / "running"], args.work, cohort / "participants.csv")
    tables = args.table or ["contacts", "pig", "opensim", "hip", "loo", "literature"]
    summary = {}
    for name in tables:
        if name == "contacts":
            summary[name] = table_contacts(args.work)
        elif name == "pig":
            summary[name] = table_pig(data)
        elif name == "opensim":
            summary[name] = table_opensim(args.work, cohort)
        elif name == "hip":
            summary[name] = table_hip(args.work)
        elif name == "loo":
            summary[name] = table_loo(args.work, cohort)
        elif name == "literature":
            summary[name] = table_literature(args.work)
    print(json.dumps({"benchmark": "validation", **summary}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
