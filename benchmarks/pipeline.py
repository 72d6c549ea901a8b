"""Pipeline benchmark: one long session, archive throughput, peak memory.

Measures

1. ``process_30min_s``: wall time of ``process_session`` on a 30-minute synthetic session
   (1000 Hz force, 200 Hz markers, split belt). Goal ≤ 1.5 s. ``run_session_30min_s``: the
   same session through the batch task (``graph.run_session``, one thread: the core-seconds a
   30-minute session costs a cluster), and ``sessions_30min_per_core_hour`` = 3600 / that.
   ``write_ratio_30min``: the derived file it writes ÷ the session file.
2. ``read_ratio``: reprocessing 20 sessions on a LocalCluster (one worker process per core)
   against reading the same files raw (every dataset of ``/raw``) on the same cluster:
   ``read_ratio = t_read / t_reprocess``. Goal ≥ 0.8. The read/reprocess pair is repeated
   (``--repeat``, default 5) and the median is the figure (``read_ratio_runs`` holds every
   pair: the machine may be shared). ``write_ratio``: bytes a reprocess writes (the derived
   files, the only files it writes) ÷ the bytes of the session files (raw data). Goal ≤ 0.05.
   ``stages_ms``: where one batch session's time goes, the graph's task functions called one
   after the other in this process (best of 3).
3. ``peak_rss_60min_mb``: peak resident memory of a fresh process running ``process_session``
   on a 60-minute session (the session is written by another process first). Goal ≤ 1000 MB.

Usage::

    python benchmarks/pipeline.py [--workdir DIR] [--batch-minutes 2] [--repeat 5] [--quick]

``--quick`` shortens every session (3 / 6 minutes, 0.5-minute batch sessions) for a smoke run.
The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_MAKE = """
import sys
from treadlab.acquisition.sim.synthetic import simulate_session_file
simulate_session_file(sys.argv[1], params={"duration_s": sys.argv[2], "seed": sys.argv[3]})
"""

_PROCESS = """
import json, resource, sys, time
from treadlab.pipeline.graph import process_session
t = time.perf_counter()
s = process_session(sys.argv[1])
elapsed = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"elapsed_s": elapsed, "peak_rss_mb": rss, "contacts": s["contacts"]}))
"""


def _make(path: Path, seconds: float, seed: int = 1) -> Path:
    if not path.exists():
        subprocess.run([sys.executable, "-c", _MAKE, str(path), str(seconds), str(seed)],
                       check=True)
    return path


def _process_in_child(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROCESS, str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_raw(path: str) -> int:
    import h5py

    n = 0
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            nonlocal n
            if isinstance(obj, h5py.Dataset):
                n += obj[()].nbytes
        f["raw"].visititems(visit)
    return n


def _stages(path: str, repeat: int = 3) -> dict:
    """Best-of-``repeat`` wall time (ms) of each task function of one session, run one after
    the other in this process (the dask threaded scheduler would hide them in threads)."""
    from treadlab.pipeline import graph

    settings = graph.load_settings()
    best: dict = {}
    for _ in range(repeat):
        t = {}

        def timed(name, fn, *a):
            t0 = time.perf_counter()
            out = fn(*a)
            t[name] = (time.perf_counter() - t0) * 1000
            return out

        meta = timed("load_meta", graph.load_meta, path)
        markers = timed("load_markers", graph.load_markers, path, settings.marker_names)
        force = timed("load_force", graph.load_force, path)
        fo = timed("force_task", graph.force_task, path, force, meta, settings)
        mo = timed("marker_task", graph.marker_task, markers, meta, settings)
        steps = timed("step_task", graph.step_task, fo, mo, settings)
        scores = timed("score_task", graph.score_task, steps, mo, meta, settings)
        timed("write_task", graph.write_task, path, fo, mo, steps, scores, settings)
        t["total"] = sum(t.values())
        best = {k: min(v, best.get(k, v)) for k, v in t.items()}
    return {k: round(v, 1) for k, v in best.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", help="keep generated sessions here (default: a temp dir)")
    ap.add_argument("--batch-minutes", type=float, default=2.0, help="length of batch sessions")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5,
                    help="read/reprocess pairs on the cluster (median reported)")
    ap.add_argument("--quick", action="store_true", help="short sessions (smoke run)")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="treadlab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    long_min, huge_min, batch_min = (3, 6, 0.5) if args.quick else (30, 60, args.batch_minutes)
    results: dict = {"quick": bool(args.quick), "cores": os.cpu_count()}
    try:
        # 1. one 30-minute session
        s30 = _make(work / f"long_{long_min}min.h5", long_min * 60)
        r = _process_in_child(s30)  # a fresh process: includes imports, excludes generation
        from treadlab.pipeline.graph import process_session

        warm = work / "warm"
        warm.mkdir(exist_ok=True)
        for i in range(2):
            _make(warm / f"w{i}.h5", 20, seed=900 + i)
        process_session(warm / "w0.h5")  # imports and first-call set-up are not the figure
        t = time.perf_counter()
        summary = process_session(s30)
        results[f"process_{long_min}min_s"] = round(time.perf_counter() - t, 3)
        results[f"process_{long_min}min_fresh_process_s"] = round(r["elapsed_s"], 3)
        results["contacts_30min"] = summary["contacts"]
        print(f"process one {long_min}-min session: {results[f'process_{long_min}min_s']:.2f} s "
              f"(goal <= 1.5 s for 30 min; {summary['contacts']} contacts)")
        from treadlab.pipeline.graph import load_settings, run_session

        settings = load_settings()
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            one = run_session(s30, settings, force=True)
            best = min(best, time.perf_counter() - t)
        results[f"run_session_{long_min}min_s"] = round(best, 3)
        results[f"sessions_{long_min}min_per_core_hour"] = round(3600 / best, 1)
        results[f"session_{long_min}min_mb"] = round(s30.stat().st_size / 1e6, 1)
        results[f"derived_{long_min}min_mb"] = round(one["bytes_written"] / 1e6, 2)
        results[f"write_ratio_{long_min}min"] = round(one["bytes_written"] / s30.stat().st_size, 4)
        print(f"batch task on the same session (one thread): {best:.2f} s -> "
              f"{3600 / best:.0f} sessions per core-hour; writes {one['bytes_written'] / 1e6:.2f}"
              f" MB of {s30.stat().st_size / 1e6:.1f} MB")

        # 2. throughput: 20 sessions, reprocess vs raw read on the same cluster
        batch = work / "batch"
        batch.mkdir(exist_ok=True)
        for i in range(args.sessions):
            _make(batch / f"s{i:02d}.h5", batch_min * 60, seed=100 + i)
        from distributed import Client, LocalCluster

        from treadlab.pipeline.reprocess import reprocess

        paths = sorted(str(p) for p in batch.glob("*.h5") if not p.name.endswith(".derived.h5"))
        session_bytes = sum(Path(p).stat().st_size for p in paths)
        with LocalCluster(n_workers=os.cpu_count(), threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            # steady state, as in an overnight run: every worker has imported the pipeline
            client.gather(client.map(_read_raw, paths[:2], pure=False))
            reprocess(warm, scheduler=cluster.scheduler_address, force=True, progress=False)
            runs = []
            for _ in range(max(1, args.repeat)):
                t = time.perf_counter()
                nbytes = sum(client.gather(client.map(_read_raw, paths, pure=False)))
                t_read = time.perf_counter() - t
                t = time.perf_counter()
                result = reprocess(batch, scheduler=cluster.scheduler_address, force=True,
                                   progress=False)
                print(result.table(), file=sys.stderr)
                rc = 0 if result.ok else 1
                t_proc = time.perf_counter() - t
                written = sum(int(r.get("bytes_written", 0)) for _, r in result.processed)
                runs.append((t_read / t_proc, t_read, t_proc, rc, written))
                print(f"{len(paths)} sessions of {batch_min:g} min: raw read {t_read:.2f} s, "
                      f"reprocess {t_proc:.2f} s -> {t_read / t_proc:.3f}")
        ratio, t_read, t_proc, rc, written = sorted(runs)[len(runs) // 2]
        results.update(batch_sessions=len(paths), batch_minutes=batch_min,
                       raw_read_s=round(t_read, 3), reprocess_s=round(t_proc, 3),
                       raw_mb=round(nbytes / 1e6, 1), reprocess_rc=max(r[3] for r in runs),
                       read_ratio=round(ratio, 3),
                       read_ratio_runs=[round(r[0], 3) for r in runs],
                       sessions_per_s=round(len(paths) / t_proc, 2),
                       session_files_mb=round(session_bytes / 1e6, 1),
                       written_mb=round(written / 1e6, 2),
                       write_ratio=round(written / session_bytes, 4))
        print(f"read_ratio {ratio:.2f} (median of {len(runs)}; range "
              f"{min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}; goal >= 0.8)")
        print(f"write_ratio {written / session_bytes:.4f}: a reprocess wrote {written / 1e6:.2f} MB"
              f" (derived files) for {session_bytes / 1e6:.1f} MB of sessions (goal <= 0.05)")
        results["stages_ms"] = _stages(paths[0])
        print("one batch session, stage by stage (ms): "
              + ", ".join(f"{k} {v:.0f}" for k, v in results["stages_ms"].items()))

        # 3. peak memory, 60-minute session, fresh process
        s60 = _make(work / f"huge_{huge_min}min.h5", huge_min * 60, seed=7)
        r = _process_in_child(s60)
        results[f"peak_rss_{huge_min}min_mb"] = round(r["peak_rss_mb"], 1)
        results[f"process_{huge_min}min_s"] = round(r["elapsed_s"], 3)
        print(f"peak RSS processing a {huge_min}-min session: {r['peak_rss_mb']:.0f} MB "
              f"(goal <= 1000 MB for 60 min)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
