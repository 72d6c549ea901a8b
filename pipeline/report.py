"""Clinician report for one processed session (``treadlab report FILE.h5 -o DIR``).

Writes three PNG figures and an ``index.html`` page that embeds them by relative links:

``grf_stance.png``
    Vertical and fore-aft ground reaction over stance, time-normalised to 0–100 % of stance,
    mean ± SD per side, in body weights (BW). The fore-aft panel marks −0.27 BW, the peak braking
    force of the highest-injury tertile in Napier et al. 2018.
``angles_gait_cycle.png``
    Pelvic obliquity, trunk forward lean, hip flexion and knee flexion over the gait cycle
    (foot strike to the next foot strike of the same side, 0–100 %), mean ± SD per side, with
    the mean toe-off marked. Where the reference set has a band for the quantity it is shaded:
    trunk lean (the upright-trunk band, a mean over stance) and peak hip extension (the band of
    the limited-hip-extension cause, drawn at the negated flexion angle). Pelvic obliquity
    follows Plug-in Gait: on the right side's cycles the sign is flipped, so + means "this
    side up" on both curves.
``scores.png``
    The four cause scores as bars on 0–100 with their zones (z < 1, 1–2, > 2), and beside each
    the measured value (left, right, median) against the reference band in its unit; a cause
    that was not scored is drawn as such, with the reason.

``index.html`` holds the session metadata, the figures and the score table.
"""
from __future__ import annotations

import html
import logging
import math
import textwrap
from pathlib import Path

import numpy as np

from treadlab.acquisition.archive import atomic_write, read_session
from treadlab.acquisition.capture.recorder import require_finished
from treadlab.config.constants import G
from treadlab.config.errors import InputError

log = logging.getLogger(__name__)

#: Napier et al. 2018: peak braking force below this was the highest-injury tertile (BW).
NAPIER_BRAKING_BW = -0.27
SIDES = ((0, "left", "#1f77b4"), (1, "right", "#d62728"))
CAUSE_TITLES = {"pelvic_drop": "Pelvic drop", "upright_trunk": "Upright trunk",
                "overstride": "Over-stride", "limited_hip_extension": "Limited hip extension"}
CAUSE_METRIC_TITLES = {"pelvic_drop": "contralateral pelvic drop",
                       "upright_trunk": "trunk forward lean",
                       "overstride": "heel ahead of pelvis at strike",
                       "limited_hip_extension": "peak hip extension"}
FIGURES = ("grf_stance.png", "angles_gait_cycle.png", "scores.png")
_N_POINTS = 101  # 0, 1, ..., 100 %



def _save(fig, target) -> None:
    """A figure as PNG, written atomically (docs/archive.md §6)."""
    with atomic_write(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, pil_kwargs={"compress_level": 3})

def make_report(session_path, out_dir) -> str:
    """Write the figures and ``index.html`` for one processed session.

    Parameters
    ----------
    session_path : str or os.PathLike
        A processed ``treadlab.session`` archive (``treadlab process`` has written
        ``/derived``).
    out_dir : str or os.PathLike
        Folder for ``index.html`` and the PNGs (created when missing; files are replaced).

    Returns
    -------
    str
        Path of ``index.html``.

    Raises
    ------
    InputError
        The file is not a readable session, or it has not been processed.
    """
    import matplotlib  # lazy: ~0.5 s, only for reports; the backend must be set before pyplot

    matplotlib.use("Agg")
    path = Path(session_path)
    require_finished(path)
    session = read_session(path, derived=True)
    d = session.derived
    if not d or not d.get("contacts") or "t_strike" not in d["contacts"]:
        raise InputError(path, "/derived", "not processed (run `treadlab process` first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bw = _body_weight(session)
    contacts = _contacts(d["contacts"])
    notes = {}
    notes["grf"] = _figure_grf(session, contacts, bw, out / FIGURES[0])
    notes["angles"] = _figure_angles(d, contacts, _reference_bands(d), out / FIGURES[1])
    _figure_scores(d.get("scores") or {}, out / FIGURES[2])
    page = out / "index.html"
    with atomic_write(page) as tmp:
        tmp.write_text(_html(path, session, d, contacts, bw, notes), encoding="utf-8")
    log.info("report for %s in %s", path, out)
    return str(page)


# --- data preparation ------------------------------------------------------------------------

def _body_weight(session) -> float:
    attrs = (session.derived or {}).get("attrs", {})
    bw = attrs.get("body_weight_n")
    if isinstance(bw, (int, float)) and bw > 0:
        return float(bw)
    mass = session.attrs.get("body_mass_kg")
    if isinstance(mass, (int, float)) and mass > 0:
        return float(mass) * G
    return math.nan


def _contacts(c: dict) -> dict:
    n = len(np.atleast_1d(c["t_strike"]))
    out = {"side": np.asarray(c.get("side", np.full(n, -1)), dtype=np.int64),
           "t_strike": np.asarray(c["t_strike"], dtype=np.float64),
           "t_off": np.asarray(c.get("t_off", np.full(n, np.nan)), dtype=np.float64),
           "valid": np.asarray(c.get("valid", np.ones(n, bool))).astype(bool)}
    return out


def _normalise(t: np.ndarray, y: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """``y(t)`` resampled at 0, 1, …, 100 % of ``[t0, t1]``; NaN where not covered."""
    if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0) or len(t) < 2:
        return np.full(_N_POINTS, np.nan)
    if t0 < t[0] or t1 > t[-1]:
        return np.full(_N_POINTS, np.nan)
    tq = np.linspace(t0, t1, _N_POINTS)
    i0, i1 = np.searchsorted(t, [t0, t1])
    i0, i1 = max(0, i0 - 2), min(len(t), i1 + 2)
    return np.interp(tq, t[i0:i1], y[i0:i1])


def _stance_curves(session, contacts, bw):
    """{side: (vertical (s, 101), fore-aft (s, 101))} in BW over 0–100 % stance."""
    fo = session.force
    w = np.asarray(fo.wrench, dtype=np.float64)
    if not len(fo.time) or not np.isfinite(bw):
        return {}
    # running has no double support: the sum over plates is the one foot on the ground
    fz = np.nansum(w[:, :, 2], axis=1) / bw
    fx = np.nansum(w[:, :, 0], axis=1) / bw
    out = {}
    for code, _name, _c in SIDES:
        sel = np.flatnonzero(contacts["valid"] & (contacts["side"] == code))
        vz = [_normalise(fo.time, fz, contacts["t_strike"][i], contacts["t_off"][i]) for i in sel]
        vx = [_normalise(fo.time, fx, contacts["t_strike"][i], contacts["t_off"][i]) for i in sel]
        vz = [v for v in vz if np.isfinite(v).all()]
        vx = [v for v in vx if np.isfinite(v).all()]
        if vz:
            out[code] = (np.array(vz), np.array(vx))
    return out


def _cycles(contacts):
    """{side: [(t_strike, t_next_strike, toe-off %)]} of whole gait cycles of valid contacts,
    leaving out cycles longer than 1.5 × the median (a missed contact)."""
    out = {}
    for code, _name, _c in SIDES:
        sel = np.flatnonzero(contacts["side"] == code)
        cyc = []
        for a, b in zip(sel[:-1], sel[1:]):
            if not (contacts["valid"][a] and contacts["valid"][b]):
                continue
            t0, t1, toff = contacts["t_strike"][a], contacts["t_strike"][b], contacts["t_off"][a]
            if np.isfinite(t0) and np.isfinite(t1) and t1 > t0:
                cyc.append((t0, t1, 100.0 * (toff - t0) / (t1 - t0)))
        if cyc:
            dur = np.array([c[1] - c[0] for c in cyc])
            med = np.median(dur)
            cyc = [c for c, du in zip(cyc, dur) if du <= 1.5 * med]
        out[code] = cyc
    return out


#: (title, angle per side (left, right), sign per side, y label)
_ANGLE_PANELS = (
    ("Pelvic obliquity", ("pelvis_obliquity", "pelvis_obliquity"), (1.0, -1.0),
     "deg (+ = this side up)"),
    ("Trunk forward lean", ("trunk_lean", "trunk_lean"), (1.0, 1.0), "deg (+ = forward)"),
    ("Hip flexion", ("hip_flexion_left", "hip_flexion_right"), (1.0, 1.0),
     "deg (+ = flexion, − = extension)"),
    ("Knee flexion", ("knee_flexion_left", "knee_flexion_right"), (1.0, 1.0),
     "deg (+ = flexion)"),
)


def _reference_bands(d: dict) -> dict:
    """{angle panel title: (low, high, label)} from the score table's reference bands."""
    s = d.get("scores") or {}
    if not s or "cause" not in s:
        return {}
    rows = {str(c): i for i, c in enumerate(s["cause"])}
    bands = {}
    ref = (d.get("attrs") or {}).get("reference_id", "reference set")

    def band(cause):
        i = rows.get(cause)
        if i is None or "normal_low" not in s or "normal_high" not in s:
            return None
        lo, hi = float(s["normal_low"][i]), float(s["normal_high"][i])
        return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None

    b = band("upright_trunk")
    if b:
        bands["Trunk forward lean"] = (b[0], b[1], f"{ref}: {b[0]:g}–{b[1]:g}° "
                                                   "(mean over stance)")
    b = band("limited_hip_extension")
    if b:
        bands["Hip flexion"] = (-b[1], -b[0], f"{ref}: peak extension {b[0]:g}–{b[1]:g}°")
    return bands


# --- figures ---------------------------------------------------------------------------------

def _mean_sd(ax, x, curves, color, label):
    m = np.nanmean(curves, axis=0)
    sd = np.nanstd(curves, axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(m)
    ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, lw=0)
    ax.plot(x, m, color=color, lw=2, label=f"{label} (n = {len(curves)})")


def _message(ax, text):
    ax.text(0.5, 0.5, _wrap(text, 48), transform=ax.transAxes, ha="center", va="center",
            fontsize=10, color="0.35")


def _figure_grf(session, contacts, bw, target: Path) -> str:
    import matplotlib.pyplot as plt  # lazy: heavy, and the backend is chosen first

    curves = _stance_curves(session, contacts, bw)
    x = np.linspace(0, 100, _N_POINTS)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.85, wspace=0.25)
    note = ""
    for code, name, color in SIDES:
        if code in curves:
            _mean_sd(axes[0], x, curves[code][0], color, name)
            _mean_sd(axes[1], x, curves[code][1], color, name)
    if not curves:
        note = ("no valid sided contacts" if np.isfinite(bw) else "body weight unknown")
        for ax in axes:
            _message(ax, f"not available: {note}")
    axes[0].set_title("Vertical ground reaction force")
    axes[0].set_ylabel("force (BW)")
    axes[1].set_title("Fore-aft ground reaction force")
    axes[1].set_ylabel("force (BW)   − braking / + propulsion")
    axes[1].axhline(0, color="0.5", lw=0.8)
    if curves:
        axes[1].axhline(NAPIER_BRAKING_BW, color="0.3", ls=":", lw=1.2,
                        label=f"{NAPIER_BRAKING_BW} BW (Napier 2018)")
    for ax in axes:
        ax.set_xlabel("stance (%)")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8, frameon=False)
    fig.suptitle("Ground reaction over stance (mean ± SD per side)", fontsize=12)
    _save(fig, target)
    plt.close(fig)
    return note


def _figure_angles(d, contacts, bands, target: Path) -> dict:
    import matplotlib.pyplot as plt  # lazy: heavy, and the backend is chosen first

    a = d.get("angles") or {}
    names = [str(n) for n in a.get("names", [])]
    t = np.asarray(a.get("time", []), dtype=np.float64)
    values = np.asarray(a.get("values", np.zeros((0, len(names)))), dtype=np.float64)
    reasons = dict(a.get("reasons") or {})
    cycles = _cycles(contacts)
    x = np.linspace(0, 100, _N_POINTS)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.91, wspace=0.22, hspace=0.38)
    notes = {}
    for ax, (title, cols, signs, ylabel) in zip(axes.ravel(), _ANGLE_PANELS):
        drawn = False
        for (code, name, color), col, sign in zip(SIDES, cols, signs):
            if col not in names or not len(t):
                continue
            y = values[:, names.index(col)] * sign
            curves = [_normalise(t, y, c0, c1) for c0, c1, _ in cycles.get(code, [])]
            curves = [cv for cv in curves if np.isfinite(cv).mean() > 0.9]
            if not curves:
                continue
            _mean_sd(ax, x, np.array(curves), color, name)
            toe = np.nanmean([c[2] for c in cycles[code]])
            if np.isfinite(toe):
                ax.axvline(toe, color=color, ls="--", lw=0.9, alpha=0.8)
            drawn = True
        if drawn and title in bands:
            lo, hi, label = bands[title]
            ax.axhspan(lo, hi, color="0.6", alpha=0.25, lw=0, label=label)
        if not drawn:
            why = next((reasons[c] for c in cols if c in reasons), None)
            if why is None:
                why = "no angles stored" if not names else "no complete gait cycles"
            notes[title] = why
            _message(ax, f"not available: {why}")
            ax.set_yticks([])
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("gait cycle (%)   dashed: toe off")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8, frameon=False)
    fig.suptitle("Angles over the gait cycle (mean ± SD per side; shaded grey: reference band)",
                 fontsize=12)
    _save(fig, target)
    plt.close(fig)
    return notes


def _score_rows(scores: dict) -> list[dict]:
    rows = []
    n = len(scores.get("cause", []))
    for i in range(n):
        row = {}
        for key, col in scores.items():
            if len(col) > i:
                v = col[i]
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                row[key] = v.item() if isinstance(v, np.generic) else v
        row["cause"] = str(row["cause"])
        rows.append(row)
    return rows


def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v


def _figure_scores(scores: dict, target: Path) -> None:
    import matplotlib.pyplot as plt  # lazy: heavy, and the backend is chosen first

    rows = _score_rows(scores)
    n = max(1, len(rows))
    height = 1.3 * n + 1.2
    fig, axes = plt.subplots(n, 2, figsize=(11, height), squeeze=False,
                             gridspec_kw={"width_ratios": [1.15, 1]})
    fig.subplots_adjust(left=0.17, right=0.98, bottom=0.75 / height, top=1 - 0.55 / height,
                        wspace=0.08, hspace=0.9)
    if not rows:
        _message(axes[0, 0], "no scores stored")
    for r, row in enumerate(rows):
        ax, gx = axes[r]
        score = _num(row.get("score"))
        unit = str(row.get("unit", ""))
        title = CAUSE_TITLES.get(row["cause"], row["cause"])
        # zones: z < 1 (score < 50), 1 <= z < 2 (50-81.8), z >= 2
        ax.axvspan(0, 50, color="#2ca02c", alpha=0.12, lw=0)
        ax.axvspan(50, 81.8, color="#ff7f0e", alpha=0.15, lw=0)
        ax.axvspan(81.8, 100, color="#d62728", alpha=0.15, lw=0)
        if r == 0:
            for x0, text in ((25, "within 1 SD of reference"), (66, "1–2 SD worse"),
                             (91, "> 2 SD worse")):
                ax.text(x0, 0.68, text, ha="center", va="bottom", fontsize=8, color="0.3")
        if np.isfinite(score):
            color = "#2ca02c" if score < 50 else ("#ff7f0e" if score < 81.8 else "#d62728")
            ax.barh([0], [score], height=0.55, color=color)
            ax.text(min(score + 1.5, 88), 0, f"{score:.0f} / 100", va="center", fontsize=11,
                    fontweight="bold")
        else:
            ax.barh([0], [100], height=0.55, color="none", edgecolor="0.5", hatch="///")
            status = str(row.get("status", "not scored"))
            ax.text(50, 0, _wrap(status, 60), ha="center", va="center", fontsize=9,
                    color="0.2", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.6, 0.6)
        ax.set_yticks([0])
        ax.set_yticklabels([title], fontsize=11)
        ax.set_xticks([0, 18, 50, 82, 100])
        if r == n - 1:
            ax.set_xlabel("score (0–100; 50 = one reference SD worse than the mean)")
        # value against the reference band
        lo, hi = _num(row.get("normal_low")), _num(row.get("normal_high"))
        vals = [(_num(row.get("value_left")), "L", SIDES[0][2]),
                (_num(row.get("value_right")), "R", SIDES[1][2]),
                (_num(row.get("value")), "median", "black")]
        finite = [v for v, _l, _c in vals if np.isfinite(v)]
        span = [v for v in finite + [lo, hi] if np.isfinite(v)]
        if span:
            a, b = min(span), max(span)
            pad = max(0.25 * (b - a), 1.0)
            gx.set_xlim(a - pad, b + pad)
        if np.isfinite(lo) and np.isfinite(hi):
            gx.axvspan(lo, hi, color="0.6", alpha=0.3, lw=0, label="reference band")
        for k, (v, lab, color) in enumerate(vals):
            if np.isfinite(v):
                y = {"L": 0.25, "R": -0.25, "median": 0.0}[lab]
                marker = "o" if lab != "median" else "D"
                gx.plot([v], [y], marker, color=color, ms=8 if lab != "median" else 9)
                gx.annotate(f"{lab} {v:.1f}", (v, y), textcoords="offset points", xytext=(6, -3),
                            fontsize=8)
        if not finite:
            _message(gx, "not measured")
        gx.set_ylim(-0.6, 0.6)
        gx.set_yticks([])
        gx.set_xlabel(f"{CAUSE_METRIC_TITLES.get(row['cause'], row['cause'])} ({unit})",
                      fontsize=9)
        gx.grid(axis="x", alpha=0.3)
    fig.suptitle("Cause scores for running-related low back pain", fontsize=12)
    _save(fig, target)
    plt.close(fig)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;max-width:1150px}
body{color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}
td.num{text-align:right}
img{max-width:100%;border:1px solid #ddd;margin:0.5em 0}
.note{color:#555;font-size:0.9em}
"""


def _score_cells(row: dict, *, sides: bool) -> list[str]:
    """The HTML cells of one score row: cause, score, value (and left/right with ``sides``),
    unit, reference band, steps, status."""
    e = html.escape
    score = _num(row.get("score"))
    cells = [f"<td>{e(CAUSE_TITLES.get(row['cause'], row['cause']))}</td>",
             f"<td class=\"num\">{_fmt(score, '.0f') if np.isfinite(score) else 'not scored'}"
             "</td>",
             f"<td class=\"num\">{_fmt(row.get('value'))}</td>"]
    if sides:
        cells += [f"<td class=\"num\">{_fmt(row.get('value_left'))}</td>",
                  f"<td class=\"num\">{_fmt(row.get('value_right'))}</td>"]
    return cells + [f"<td>{e(str(row.get('unit', '')))}</td>",
                    f"<td>{_fmt(row.get('normal_low'), 'g')}–"
                    f"{_fmt(row.get('normal_high'), 'g')}</td>",
                    f"<td class=\"num\">{e(str(row.get('n_steps', '')))}</td>",
                    f"<td>{e(str(row.get('status', '')))}</td>"]


def _fmt(v, spec=".1f") -> str:
    v = _num(v)
    return "–" if not np.isfinite(v) else format(v, spec)


def _html(path: Path, session, d, contacts, bw, notes) -> str:
    e = html.escape
    a = session.attrs
    da = d.get("attrs") or {}
    valid = contacts["valid"]
    meta = [
        ("Subject", a.get("subject_id", "?")),
        ("Session", a.get("session_id", "?")),
        ("Recorded (UTC)", a.get("created_utc", "?")),
        ("Body mass", f"{_fmt(a.get('body_mass_kg'))} kg"),
        ("Body weight used", f"{_fmt(bw, '.0f')} N ({da.get('body_weight_source', '?')})"),
        ("Belt speed", f"{_fmt(a.get('belt_speed_m_s'), '.2f')} m/s"),
        ("Lab", a.get("lab", "?")),
        ("Contacts", f"{int(valid.sum())} valid of {len(valid)} "
                     f"({int(np.sum(valid & (contacts['side'] == 0)))} left, "
                     f"{int(np.sum(valid & (contacts['side'] == 1)))} right)"),
        ("Markers", f"{len(session.markers.labels)} at {_fmt(session.markers.rate_hz, 'g')} Hz"
         if len(session.markers.time) else "none"),
        ("Force", f"{len(session.force.plates)} plate(s) at {_fmt(session.force.rate_hz, 'g')} Hz"),
        ("Processed", f"{da.get('processed_utc', '?')} · {da.get('pipeline_version', '?')}"),
        ("Reference set", f"{da.get('reference_id', '?')} {da.get('reference_title', '')}"),
        ("File", path.name),
    ]
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>treadlab report – {e(str(a.get('subject_id', path.stem)))}</title>",
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Running report: {e(str(a.get('subject_id', '?')))}</h1>",
           "<h2>Session</h2><table>"]
    out += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in meta]
    out.append("</table>")
    out.append("<h2>Cause scores</h2>")
    out.append("<p class=\"note\">Score 0–100: 18 at the reference mean, 50 one reference SD "
               "worse, 82 two SD worse. Values are medians over valid steps; the band is the "
               "reference set's normal range. A cause that could not be scored says why.</p>")
    out.append("<table><tr><th>cause</th><th>score</th><th>value</th><th>left</th>"
               "<th>right</th><th>unit</th><th>reference band</th><th>steps</th>"
               "<th>status</th></tr>")
    for row in _score_rows(d.get("scores") or {}):
        out.append("<tr>" + "".join(_score_cells(row, sides=True)) + "</tr>")
    out.append("</table>")
    by_speed = _score_rows(d.get("scores_by_speed") or {})
    if by_speed:  # docs/scoring.md §1: steady steps grouped by belt speed (0.1 m/s plateaus)
        out.append("<h3>Scores per belt-speed plateau</h3>")
        out.append("<p class=\"note\">The session's steady steps grouped by belt speed "
                   "(rounded to 0.1 m/s), each plateau scored on its own with the same rules; "
                   "steps while the belt changed speed are in none.</p>")
        out.append("<table><tr><th>belt speed</th><th>cause</th><th>score</th><th>value</th>"
                   "<th>unit</th><th>reference band</th><th>steps</th><th>status</th></tr>")
        for row in by_speed:
            out.append(f"<tr><td class=\"num\">{_fmt(row.get('speed_m_s'), '.1f')} m/s</td>"
                       + "".join(_score_cells(row, sides=False)) + "</tr>")
        out.append("</table>")
    out.append(f"<img src=\"{FIGURES[2]}\" alt=\"cause scores\">")
    out.append("<h2>Ground reaction over stance</h2>")
    if notes.get("grf"):
        out.append(f"<p class=\"note\">Not available: {e(notes['grf'])}</p>")
    out.append(f"<img src=\"{FIGURES[0]}\" alt=\"ground reaction force over stance\">")
    out.append("<h2>Angles over the gait cycle</h2>")
    for title, why in (notes.get("angles") or {}).items():
        out.append(f"<p class=\"note\">{e(title)}: not available ({e(why)}).</p>")
    out.append(f"<img src=\"{FIGURES[1]}\" alt=\"angles over the gait cycle\">")
    out.append("<p class=\"note\">Pelvic obliquity on the right side's cycles has its sign "
               "flipped (Plug-in Gait), so + means the side of that cycle is up. Grey bands: "
               "the reference set's normal range where it has one (trunk lean: mean over "
               "stance; hip: peak extension).</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
