"""Reprocess a treadlab archive on a SLURM cluster with dask-jobqueue (docs/reprocess.md).

Run it on a login node, in the Python environment that has treadlab and dask-jobqueue
(``pip install "dask-jobqueue>=0.9"``), with the archive mounted at the same path on every
compute node::

    python deploy/slurm/reprocess_slurm.py /lab/archive --jobs 4 --cores 16 --partition batch

Each SLURM job runs ``--cores`` single-threaded dask worker processes (HDF5 reads serialise on
a process-wide lock, so threads do not help); ``--memory`` is the job's memory, shared by its
workers (give each at least 2 GB for a 60-minute session). ``--print-job-script`` prints the
batch script dask-jobqueue would submit and exits, without submitting anything.
"""
from __future__ import annotations

import argparse
import sys


def make_cluster(cores: int = 16, memory: str = "40GB", walltime: str = "08:00:00",
                 partition: str | None = None, account: str | None = None,
                 scheduler_host: str | None = None):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run ``cores`` single-threaded worker
    processes. ``memory``: per job (e.g. ``"40GB"``); ``walltime``: ``HH:MM:SS``."""
    from dask_jobqueue import SLURMCluster

    extra = []
    if partition:
        extra.append(f"--partition={partition}")
    if account:
        extra.append(f"--account={account}")
    options = {"dashboard_address": ":0"}
    if scheduler_host:
        options["host"] = scheduler_host
    return SLURMCluster(cores=cores, processes=cores, memory=memory, walltime=walltime,
                        job_name="treadlab-worker", job_extra_directives=extra,
                        scheduler_options=options)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive", help="archive folder, mounted at this path on every node")
    ap.add_argument("--jobs", type=int, default=4, help="SLURM jobs (nodes) to start")
    ap.add_argument("--cores", type=int, default=16, help="cores per job = worker processes")
    ap.add_argument("--memory", default="40GB", help="memory per job")
    ap.add_argument("--walltime", default="08:00:00")
    ap.add_argument("--partition")
    ap.add_argument("--account")
    ap.add_argument("--config", help="lab TOML (default: the shipped simulated lab)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--print-job-script", action="store_true",
                    help="print the batch script and exit (submits nothing)")
    args = ap.parse_args(argv)

    cluster = make_cluster(args.cores, args.memory, args.walltime, args.partition, args.account)
    try:
        if args.print_job_script:
            print(cluster.job_script())
            return 0
        from distributed import Client

        from treadlab.pipeline.reprocess import reprocess

        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=3600)  # the queue may take a while
            result = reprocess(args.archive, scheduler=cluster.scheduler_address,
                               force=args.force, config_path=args.config)
        for line in result.failure_lines():
            print(f"treadlab: failed: {line}", file=sys.stderr)
        print(result.timing_table())
        print(result.table())
        return 0 if result.ok else 1
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
