"""Kernel benchmark: contacts, force metrics, joint angles, low-pass and re-zeroing on one hour
of synthetic split-belt running (1000 Hz force, 200 Hz markers).

Prints what it measures; the last line is one JSON object of the figures:

- ``contacts_vs_memory_pass``: contacts + force metrics (both belts) ÷ one NumPy ``sum`` over
  the same four float64 columns (Fx, Fz of each belt) — how close the kernels run to the cost
  of reading their input once (goal ≤ 3);
- ``contacts_vs_numpy``: speed-up of the compiled contact detection over its NumPy reference
  (goal ≥ 10); ``forces_vs_numpy`` the same for the force metrics;
- ``contacts_vs_ktk``: speed-up over Kinetics Toolkit's ``cycles.detect_cycles`` (the same
  hysteresis, 50 N / 20 N) on a 60-s excerpt — it slows super-linearly, so it is only timed on
  an excerpt (goal ≥ 50);
- ``angles_vs_numpy``: compiled ``treadlab.kernels.angles.joint_angles`` over its reference
  ``treadlab.kernels._angles_ref.joint_angles`` on the hour of markers (goal ≥ 5);
  ``angles_ns_per_frame`` the compiled time per marker frame (float32 markers, read as they are);
- ``filters_vs_scipy_force``: ``scipy.signal.sosfiltfilt`` (its best layout: one contiguous
  row per channel, ``axis=1``) over ``treadlab.kernels.filters.sosfiltfilt`` on the four force
  columns as the pipeline holds them, (n, 4), 4th-order 50 Hz; ``filters_vs_scipy_markers``
  the same on the hour of markers, (m, k, 3) float32 in and out with the runner's occlusions
  (NaN), 4th-order 12 Hz, against what the pipeline did before the kernel (gaps bridged with
  ``np.interp``, SciPy on float64 copies of 6 columns at a time); both results are checked
  equal first;
- ``session_filters_vs_scipy``: the same two low-passes as ``derive`` calls them for one
  2-minute session (two belts' Fx, Fz as (n, 2) float32 into float64, the markers float32 in
  place) against SciPy as above; ``fill_vs_numpy``: ``gaps.fill_gaps`` in place on that
  session's markers (with added occlusions) over its NumPy reference ``_gaps_ref.fill_gaps``;
- ``rezero_vs_numpy``: compiled ``contacts.rezero_flight`` over its reference
  ``_contacts_ref.rezero_flight`` (a Python loop over the flights) on one belt-hour of Fx, Fz;
  ``rezero_mean_ms`` the pipeline's call (in place, mean offsets only);
- ``baseline_vs_np_interp``: ``contacts.flight_baseline(step=10)`` (the pipeline's first zero
  estimate, every 10th sample) over the same estimate interpolated back with ``np.interp`` (as
  the pipeline did before the compiled interpolation), one belt-hour of Fz; both checked equal;
- ``steps_vs_numpy``: compiled ``steps.step_metrics`` over its reference on the left belt's
  contacts and the hour of joint angles (float32, as the pipeline stores them);
  ``kinematic_contacts_vs_numpy`` the same for both feet's ``kinematic_contacts``.

Every time is the best of several repeats (the machine is shared; the minimum is the least
disturbed run). Usage: ``python benchmarks/kernels.py [--minutes 60] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
from treadlab.config.constants import G


def best_of(fn, repeats):
    """(best seconds, last result) of ``repeats`` calls."""
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def generate(minutes, with_markers=True):
    from treadlab.acquisition.sim.synthetic import RunnerParams, SyntheticRunner

    # no zero drift: the runner's drift is linear from t = 0 (0.05 N/s by default), so after
    # about 6 min the flight phases sit above the 20 N toe-off level and an hour-long trace
    # would have to be re-zeroed first; the benchmark times the kernels, not the re-zeroing
    params = RunnerParams(duration_s=minutes * 60.0, belt="split", drift_n_per_s=0.0)
    runner = SyntheticRunner(params)
    rate, mrate = runner.force_rate_hz, runner.marker_rate_hz
    n = int(round(minutes * 60 * rate))
    cols = np.empty((4, n))                     # Fx left, Fz left, Fx right, Fz right
    chunk = int(60 * rate)
    for a in range(0, n, chunk):
        t = np.arange(a, min(a + chunk, n)) / rate
        w = runner.force(t)
        cols[0, a:a + t.size] = w[:, 0, 0]
        cols[1, a:a + t.size] = w[:, 0, 2]
        cols[2, a:a + t.size] = w[:, 1, 0]
        cols[3, a:a + t.size] = w[:, 1, 2]
    markers = None
    if with_markers:
        m = int(round(minutes * 60 * mrate))
        markers = np.empty((m, len(runner.labels), 3), np.float32)
        mchunk = int(60 * mrate)
        for a in range(0, m, mchunk):
            tm = np.arange(a, min(a + mchunk, m)) / mrate
            markers[a:a + tm.size] = runner.markers(tm)
    return runner, params, rate, cols, markers


def bench_filters(cols, markers, rate, marker_rate, repeats) -> dict:
    """Time the zero-phase low-pass kernel against SciPy on the force columns and markers."""
    from scipy.signal import sosfiltfilt

    from treadlab.kernels import filters

    sos_f = filters.butter_sos(rate, 50.0, 4)
    force = cols.T                                # (n, 4) view: the pipeline's layout
    t_k, y_k = best_of(lambda: filters.sosfiltfilt(sos_f, force), repeats)
    t_s, y_s = best_of(lambda: sosfiltfilt(sos_f, cols, axis=1), max(1, repeats // 2))
    assert np.array_equal(y_k, y_s.T)
    print(f"low-pass, 4 force columns × {cols.shape[1]} samples: kernel {t_k * 1e3:.0f} ms, "
          f"scipy.signal.sosfiltfilt {t_s * 1e3:.0f} ms")
    del y_k, y_s

    sos_m = filters.butter_sos(marker_rate, 12.0, 4)

    def scipy_blocks():
        return scipy_marker_blocks(sos_m, markers)

    t_mk, z_k = best_of(lambda: filters.sosfiltfilt(sos_m, markers, dtype=np.float32), repeats)
    t_ms, z_s = best_of(scipy_blocks, max(1, repeats // 2))
    assert np.array_equal(z_k, z_s, equal_nan=True)
    print(f"low-pass, markers {markers.shape} float32: kernel {t_mk * 1e3:.0f} ms, "
          f"scipy.signal.sosfiltfilt (6 columns at a time) {t_ms * 1e3:.0f} ms")
    return {"filters_force_ms": round(t_k * 1e3, 1),
            "filters_vs_scipy_force": round(t_s / t_k, 1),
            "filters_markers_ms": round(t_mk * 1e3, 1),
            "filters_vs_scipy_markers": round(t_ms / t_mk, 1)}


def bench_steps(runner, markers, fz, rate, found, repeats) -> dict:
    """Time the first zero estimate of force_task and the per-step kernels of step_task."""
    from treadlab.kernels import (_kinematic_contacts_ref, _steps_ref, contacts,
                                  kinematic_contacts, steps)

    def np_interp_baseline():
        coarse = contacts.flight_baseline(np.ascontiguousarray(fz[::10]), rate / 10)
        idx = np.arange(fz.size, dtype=np.float64)
        return np.interp(idx, idx[::10], coarse)

    t_b, b = best_of(lambda: contacts.flight_baseline(fz, rate, step=10), repeats)
    t_b_np, b_np = best_of(np_interp_baseline, repeats)
    assert np.array_equal(b, b_np)
    print(f"flight_baseline every 10th sample, one belt: {t_b * 1e3:.1f} ms, with np.interp "
          f"{t_b_np * 1e3:.1f} ms")
    out = {"baseline_ms": round(t_b * 1e3, 2), "baseline_vs_np_interp": round(t_b_np / t_b, 1)}
    try:
        from treadlab.kernels import angles
    except ImportError as exc:
        print(f"angles kernels not available: steps_vs_numpy skipped ({exc})")
        return out
    m = markers.shape[0]
    t_m = np.arange(m) / runner.marker_rate_hz
    a = angles.joint_angles(markers, runner.labels, dict(runner.subject))
    table = np.asarray(a.values, np.float32)
    ts = found.t_strike                           # the left belt: left foot contacts
    args = (ts, found.t_off, np.zeros(ts.size, np.int64), t_m, table, a.names)
    t_s, got = best_of(lambda: steps.step_metrics(*args), repeats)
    t_s_ref, want = best_of(lambda: _steps_ref.step_metrics(*args), 1)
    assert np.allclose(got["trunk_lean"], want["trunk_lean"], rtol=0, atol=1e-6, equal_nan=True)
    print(f"step_metrics, {ts.size} contacts on {m} angle frames: compiled {t_s * 1e3:.1f} ms, "
          f"NumPy reference {t_s_ref * 1e3:.0f} ms")
    lab = list(runner.labels)
    feet = [(np.asarray(markers[:, lab.index(f + "HEE"), 2], np.float64),
             np.asarray(markers[:, lab.index(f + "TOE"), 2], np.float64)) for f in "LR"]

    def both(fn):
        return [fn(t_m, h, f) for h, f in feet]
    t_k, _ = best_of(lambda: both(kinematic_contacts.kinematic_contacts), repeats)
    t_k_ref, _ = best_of(lambda: both(_kinematic_contacts_ref.kinematic_contacts), 1)
    print(f"kinematic_contacts, both feet: compiled {t_k * 1e3:.1f} ms, NumPy reference "
          f"{t_k_ref * 1e3:.0f} ms")
    out.update(steps_ms=round(t_s * 1e3, 2), steps_vs_numpy=round(t_s_ref / t_s, 1),
               kinematic_contacts_ms=round(t_k * 1e3, 2),
               kinematic_contacts_vs_numpy=round(t_k_ref / t_k, 1))
    return out



def scipy_marker_blocks(sos, markers):
    """The pipeline's marker low-pass before the kernel (``derive.lowpass`` at commit 11272a8):
    6 columns at a time as contiguous float64 rows, gaps bridged with ``np.interp``, SciPy, NaN
    put back, written into a float32 result."""
    from scipy.signal import sosfiltfilt

    m = markers.shape[0]
    flat = markers.reshape(m, -1)
    out = np.empty(markers.shape, np.float32)
    target = out.reshape(m, -1)
    idx = np.arange(m)
    limit = 3 * (2 * sos.shape[0] + 1)
    for c0 in range(0, flat.shape[1], 6):
        rows = np.ascontiguousarray(flat[:, c0:c0 + 6].T, dtype=np.float64)
        finite = np.isfinite(rows)
        n_ok = finite.sum(axis=1)
        ok = n_ok > limit
        for j in np.flatnonzero(ok & (n_ok < m)):
            good = finite[j]
            rows[j, ~good] = np.interp(idx[~good], idx[good], rows[j, good])
        if ok.any():
            rows[ok] = sosfiltfilt(sos, rows[ok], axis=1)
        rows[~finite] = np.nan
        target[:, c0:c0 + 6] = rows.T
    return out


def bench_session(cols, markers, rate, marker_rate, repeats) -> dict:
    """The low-pass and gap filling as ``derive`` calls them for one 2-minute session (the
    first 2 minutes of the data): Fx, Fz of each belt, (n, 2) float32 into float64, one call per
    belt; the markers (m, k, 3) float32 filled then filtered in place. Baselines in the same
    run: SciPy as in :func:`bench_filters`, and ``_gaps_ref.fill_gaps`` for the gaps."""
    from scipy.signal import sosfiltfilt

    from treadlab.kernels import _gaps_ref, filters, gaps

    n, m = min(cols.shape[1], int(120 * rate)), min(markers.shape[0], int(120 * marker_rate))
    plates = [np.ascontiguousarray(cols[2 * b:2 * b + 2, :n].T, dtype=np.float32)
              for b in range(2)]
    sos_f = filters.butter_sos(rate, 50.0, 4)
    sos_m = filters.butter_sos(marker_rate, 12.0, 4)
    raw = np.ascontiguousarray(markers[:m])
    rng = np.random.default_rng(0)  # occlusions of 1-30 frames, about 1 % of the frames
    for _ in range(max(1, m // 400)):
        a, k = int(rng.integers(0, m - 30)), int(rng.integers(0, raw.shape[1]))
        raw[a:a + int(rng.integers(1, 31)), k] = np.nan
    max_gap = int(round(0.1 * marker_rate))
    filled, _ = gaps.fill_gaps(raw, max_gap)
    work = np.empty_like(raw)

    def kernel_filters():
        out = [filters.sosfiltfilt(sos_f, x) for x in plates]
        np.copyto(work, filled)
        return out, filters.sosfiltfilt(sos_m, work, dtype=np.float32, out=work)

    def scipy_filters():
        return ([sosfiltfilt(sos_f, x.T.astype(np.float64), axis=1).T for x in plates],
                scipy_marker_blocks(sos_m, filled))

    def kernel_fill():
        np.copyto(work, raw)
        return gaps.fill_gaps(work, max_gap, out=work)

    t_k, (f_k, m_k) = best_of(kernel_filters, repeats)
    t_s, (f_s, m_s) = best_of(scipy_filters, repeats)
    assert all(np.array_equal(a, b) for a, b in zip(f_k, f_s))
    assert np.array_equal(m_k, m_s, equal_nan=True)
    t_g, (g_k, l_k) = best_of(kernel_fill, repeats)
    t_g_ref, (g_r, l_r) = best_of(lambda: _gaps_ref.fill_gaps(raw, max_gap), max(1, repeats // 2))
    assert l_k == l_r and np.allclose(g_k, g_r, rtol=0, atol=1e-3, equal_nan=True)
    print(f"one 2-minute session: low-pass of 2 belts × (Fx, Fz) and {raw.shape[1]} markers: "
          f"kernel {t_k * 1e3:.1f} ms, scipy.signal.sosfiltfilt {t_s * 1e3:.1f} ms; "
          f"fill_gaps in place {t_g * 1e3:.2f} ms, NumPy reference {t_g_ref * 1e3:.0f} ms")
    return {"session_filters_ms": round(t_k * 1e3, 2),
            "session_filters_vs_scipy": round(t_s / t_k, 1),
            "session_fill_ms": round(t_g * 1e3, 2),
            "fill_vs_numpy": round(t_g_ref / t_g, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ktk-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)

    from treadlab.kernels import _contacts_ref, _forces_ref
    from treadlab.kernels.contacts import ContactParams, detect_contacts
    from treadlab.kernels.forces import force_metrics

    t = time.perf_counter()
    runner, params, rate, cols, markers = generate(args.minutes)
    n = cols.shape[1]
    print(f"generated {args.minutes:g} min: force {n} samples × 2 belts at {rate:g} Hz, "
          f"markers {markers.shape[0]} frames × {markers.shape[1]} at "
          f"{runner.marker_rate_hz:g} Hz ({time.perf_counter() - t:.1f} s)")
    bw = params.body_mass_kg * G
    p = ContactParams.from_bw(bw)
    fx_l, fz_l, fx_r, fz_r = cols

    def memory_pass():
        return sum(float(np.sum(c)) for c in cols)

    def detect(fn, fz):
        return fn(fz, rate, p)[0]

    def kernels():
        out = []
        for fx, fz in ((fx_l, fz_l), (fx_r, fz_r)):
            c = detect_contacts(fz, rate, p)[0]
            out.append((c, force_metrics(fx, fz, rate, c.i_strike, c.i_off, bw)))
        return out

    t_sum, _ = best_of(memory_pass, args.repeats)
    t_kern, res = best_of(kernels, args.repeats)
    n_contacts = sum(len(c) for c, _ in res)
    print(f"numpy sum over 4 float64 columns: {t_sum * 1e3:.1f} ms")
    print(f"contacts + force metrics, both belts: {t_kern * 1e3:.1f} ms "
          f"({n_contacts} contacts, {np.mean([c.valid.mean() for c, _ in res]) * 100:.1f} % valid)")

    t_c, c_cy = best_of(lambda: detect(detect_contacts, fz_l), args.repeats)
    t_c_ref, c_ref = best_of(lambda: detect(_contacts_ref.detect_contacts, fz_l),
                             max(1, args.repeats // 2))
    assert len(c_cy) == len(c_ref) and np.array_equal(c_cy.i_strike, c_ref.i_strike)
    print(f"contacts, one belt: compiled {t_c * 1e3:.1f} ms, NumPy reference "
          f"{t_c_ref * 1e3:.1f} ms")
    t_f, _ = best_of(lambda: force_metrics(fx_l, fz_l, rate, c_cy.i_strike, c_cy.i_off, bw),
                     args.repeats)
    t_f_ref, _ = best_of(lambda: _forces_ref.force_metrics(fx_l, fz_l, rate, c_cy.i_strike,
                                                           c_cy.i_off, bw),
                         max(1, args.repeats // 2))
    print(f"force metrics, one belt: compiled {t_f * 1e3:.1f} ms, NumPy reference "
          f"{t_f_ref * 1e3:.1f} ms")

    # Kinetics Toolkit on an excerpt
    ktk_ratio = None
    try:
        import kineticstoolkit as ktk
    except ImportError:
        print("kineticstoolkit not installed: contacts_vs_ktk skipped "
              "(pip install 'treadlab[bench]')")
    else:
        k = int(args.ktk_seconds * rate)
        ex = np.ascontiguousarray(fz_l[:k])
        ts = ktk.TimeSeries(time=np.arange(k) / rate)
        ts.data["Fz"] = ex

        def run_ktk():
            return ktk.cycles.detect_cycles(ts, "Fz", event_names=("strike", "off"),
                                            thresholds=(p.strike_n, p.off_n),
                                            directions=("rising", "falling"))
        t_ktk, out = best_of(run_ktk, 1)
        t_ex, c_ex = best_of(lambda: detect(detect_contacts, ex), args.repeats)
        n_ktk = sum(e.name == "strike" for e in out.events)
        ktk_ratio = t_ktk / t_ex
        print(f"{args.ktk_seconds:g}-s excerpt: kineticstoolkit detect_cycles "
              f"{t_ktk * 1e3:.0f} ms ({n_ktk} cycles), treadlab {t_ex * 1e3:.2f} ms "
              f"({len(c_ex)} contacts)")

    # joint angles
    angles_ratio = angles_ns = None
    try:
        from treadlab.kernels import _angles_ref, angles
    except ImportError as exc:
        print(f"angles kernels not available: angles_vs_numpy skipped ({exc})")
    else:
        subject = dict(runner.subject)
        t_a, _ = best_of(lambda: angles.joint_angles(markers, runner.labels, subject),
                         max(1, args.repeats // 2))
        t_a_ref, _ = best_of(lambda: _angles_ref.joint_angles(markers, runner.labels, subject), 1)
        angles_ratio = t_a_ref / t_a
        angles_ns = t_a / markers.shape[0] * 1e9
        print(f"joint angles, {markers.shape[0]} frames: compiled {t_a * 1e3:.0f} ms "
              f"({angles_ns:.0f} ns per frame), NumPy reference {t_a_ref * 1e3:.0f} ms")

    # zero-phase low-pass and flight re-zeroing
    filt = bench_filters(cols, markers, rate, runner.marker_rate_hz, args.repeats)
    filt.update(bench_session(cols, markers, rate, runner.marker_rate_hz, args.repeats))
    c_l = detect_contacts(fz_l, rate, p)[0]
    wl = np.ascontiguousarray(np.stack([fx_l, fz_l], axis=1))
    from treadlab.kernels import contacts as kc

    t_z, z_cy = best_of(lambda: kc.rezero_flight(wl, c_l.i_strike, c_l.i_off, rate),
                        args.repeats)
    t_z_ref, z_ref = best_of(lambda: _contacts_ref.rezero_flight(wl, c_l.i_strike, c_l.i_off,
                                                                 rate),
                             max(1, args.repeats // 2))
    assert np.allclose(z_cy[1], z_ref[1], rtol=0, atol=1e-9)
    print(f"rezero_flight, one belt (Fx, Fz, {len(c_l)} contacts): compiled {t_z * 1e3:.1f} ms, "
          f"NumPy reference {t_z_ref * 1e3:.1f} ms")

    def in_place():
        x = wl.copy()
        return kc.rezero_flight(x, c_l.i_strike, c_l.i_off, rate, out=x, offsets="mean")
    t_zm, _ = best_of(in_place, args.repeats)
    t_copy, _ = best_of(wl.copy, args.repeats)
    t_zm = max(t_zm - t_copy, 0.0)                # the copy is not the kernel's
    print(f"rezero_flight, mean offsets only (the pipeline's call): {t_zm * 1e3:.1f} ms")
    figures_steps = bench_steps(runner, markers, fz_l, rate, c_l, args.repeats)

    figures = {
        "minutes": args.minutes,
        "force_samples_per_belt": n,
        "contacts": n_contacts,
        "numpy_sum_ms": round(t_sum * 1e3, 2),
        "contacts_and_metrics_ms": round(t_kern * 1e3, 2),
        "contacts_vs_memory_pass": round(t_kern / t_sum, 2),
        "contacts_vs_numpy": round(t_c_ref / t_c, 1),
        "forces_vs_numpy": round(t_f_ref / t_f, 1),
        "contacts_vs_ktk": None if ktk_ratio is None else round(ktk_ratio, 1),
        "ktk_excerpt_s": args.ktk_seconds,
        "angles_vs_numpy": None if angles_ratio is None else round(angles_ratio, 1),
        "angles_ns_per_frame": None if angles_ns is None else round(angles_ns, 1),
        **filt,
        "rezero_ms": round(t_z * 1e3, 2),
        "rezero_vs_numpy": round(t_z_ref / t_z, 1),
        "rezero_mean_ms": round(t_zm * 1e3, 2),
        **figures_steps,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or ''}"
                   .strip(", "),
        "python": platform.python_version(),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
