"""The cluster recipes of docs/reprocess.md, exercised as far as one machine allows: the SLURM
batch script dask-jobqueue renders is checked and then run by bash against the cluster's own
scheduler (the worker command a compute node would run); the Kubernetes manifest is loaded and
checked, and its worker and CronJob commands are run here against a local ``dask scheduler``."""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treadlab.acquisition.archive import read_derived, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session
from treadlab.pipeline.reprocess import find_sessions

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _archive(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_session(root / f"s{i}.h5", simulate_session(RunnerParams(duration_s=4.0, seed=60 + i)))
    return root


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # dask, treadlab of this venv
    return env


@pytest.mark.timeout(120)
def test_slurm_job_script_rendered_checked_and_run_locally(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from distributed import Client

    spec = importlib.util.spec_from_file_location("reprocess_slurm",
                                                  REPO / "deploy" / "slurm" / "reprocess_slurm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cluster = mod.make_cluster(cores=1, memory="2GB", walltime="00:10:00", partition="batch",
                               account="gait", scheduler_host="127.0.0.1")
    proc = None
    try:
        script = cluster.job_script()
        directives = [ln for ln in script.splitlines() if ln.startswith("#SBATCH")]
        assert "#SBATCH -J treadlab-worker" in directives
        assert "#SBATCH --partition=batch" in directives and "#SBATCH --account=gait" in directives
        assert "#SBATCH -t 00:10:00" in directives and "#SBATCH --cpus-per-task=1" in directives
        (command,) = [ln for ln in script.splitlines() if "dask_worker" in ln]
        assert cluster.scheduler_address in command
        assert "--nthreads 1" in command  # one job core = one single-threaded worker
        assert command.split()[0] == sys.executable  # the same environment as the client
        # what a compute node runs: the batch script itself (#SBATCH lines are comments to bash)
        job = tmp_path / "job.sh"
        job.write_text(script)
        proc = subprocess.Popen(["bash", str(job)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, env=_env())
        archive = _archive(tmp_path / "archive")
        with Client(cluster.scheduler_address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        from treadlab.pipeline.reprocess import reprocess

        result = reprocess(archive, scheduler=cluster.scheduler_address, progress=False)
        assert result.ok and len(result.processed) == 2
        assert all(read_derived(p) is not None for p in find_sessions(archive))
        # the script's own --print-job-script renders without submitting anything
        out = subprocess.run([sys.executable, str(REPO / "deploy/slurm/reprocess_slurm.py"),
                              str(archive), "--cores", "4", "--print-job-script"],
                             capture_output=True, text=True, timeout=60, env=_env())
        assert out.returncode == 0, out.stderr
        assert "--nworkers 4" in out.stdout and "--nthreads 1" in out.stdout
    finally:
        if proc is not None:
            _stop(proc)
        cluster.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _subst(args: list, env: dict) -> list[str]:
    """Kubernetes' ``$(VAR)`` expansion of container args."""
    out = []
    for a in args:
        a = str(a)
        for k, v in env.items():
            a = a.replace(f"$({k})", v)
        out.append(a)
    return out


@pytest.mark.timeout(120)
def test_kubernetes_manifest_loaded_checked_and_its_commands_run_locally(tmp_path):
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all((REPO / "deploy/kubernetes/daskcluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"DaskCluster", "CronJob"}
    cluster = kinds["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"] and args[args.index("--nthreads") + 1] == "1"
    job = kinds["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (runner,) = job["containers"]
    # the archive is mounted at the same path in the workers and in the job that submits
    mount = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}["archive"]
    assert {m["name"]: m["mountPath"] for m in runner["volumeMounts"]}["archive"] == mount
    assert runner["command"][:2] == ["treadlab", "reprocess"] and runner["command"][2] == mount
    env = {e["name"]: e["value"] for e in runner["env"]}
    svc = cluster["spec"]["scheduler"]["service"]
    port = svc["ports"][0]["port"]
    assert env["DASK_SCHEDULER_ADDRESS"] == f"tcp://{cluster['metadata']['name']}-scheduler:{port}"
    assert scheduler["args"][:2] == ["dask", "scheduler"]

    # the same commands here: the scheduler's, then one worker's (as the operator starts it,
    # with DASK_SCHEDULER_ADDRESS and DASK_WORKER_NAME set), then the CronJob's
    local = f"tcp://127.0.0.1:{_free_port()}"
    base = _env()
    procs = []
    try:
        sched_args = [a for a in scheduler["args"]]
        sched_args[sched_args.index("--port") + 1] = local.rsplit(":", 1)[1]
        procs.append(subprocess.Popen(sched_args + ["--host", "127.0.0.1", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True, env=base))
        wenv = dict(base, DASK_SCHEDULER_ADDRESS=local, DASK_WORKER_NAME="treadlab-worker-0")
        wargs = _subst(args, wenv)
        wargs[wargs.index("--dashboard-address") + 1] = "127.0.0.1:0"
        procs.append(subprocess.Popen(wargs + ["--host", "127.0.0.1"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True,
                                      env=wenv))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(local, timeout="5s") as client:
                    client.wait_for_workers(1, timeout=60)
                    assert "treadlab-worker-0" in {w["name"] for w in
                                                   client.scheduler_info()["workers"].values()}
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        archive = _archive(tmp_path / "archive")
        cmd = [str(archive) if a == mount else a for a in runner["command"]]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                             env=dict(base, DASK_SCHEDULER_ADDRESS=local))
        assert out.returncode == 0, out.stderr
        assert "processed             2" in out.stdout
        assert all(read_derived(p) is not None for p in find_sessions(archive))
    finally:
        for p in reversed(procs):
            _stop(p)
