"""The fault-injection suite: every command run on damaged input, a full disk, hostile text.

Each run goes through :func:`run_command`, which records what a failure must never be: a
traceback, a crash (a signal, exit code ≥ 128 or 3 = unexpected internal error), a silent success
on damaged input (exit 0), an input file changed by a failing command. The counts are printed at
the end of the test session::

    fault-injection: N runs, 0 tracebacks, 0 crashes, 0 silent successes, 0 inputs modified
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

COUNTS = {"runs": 0, "tracebacks": 0, "crashes": 0, "silent successes": 0,
          "inputs modified": 0}
FAILURES: list[str] = []


@dataclass
class Run:
    argv: list
    code: int
    out: str
    err: str
    problems: list = field(default_factory=list)


def _digest(path: Path) -> str | None:
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def run_command(argv, *, inputs=(), expect="fail", subprocess_=False, timeout=120) -> Run:
    """Run ``treadlab ARGV`` and check the failure contract; returns the :class:`Run`.

    ``expect``: "fail" (damaged input: exit 1 with one line naming the input), "ok" or "any"
    (exit 0 or 1, never a crash or a traceback). ``inputs`` are files/folders that must be
    unchanged when the command fails. ``subprocess_`` runs it in its own process (to observe a
    crash); otherwise in-process through ``treadlab.pipeline.cli.main``.
    """
    argv = [str(a) for a in argv]
    before = {str(p): _digest(p) for p in inputs}
    tb = False
    if subprocess_:
        proc = subprocess.run([sys.executable, "-m", "treadlab.pipeline.cli", *argv],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        from treadlab.pipeline.cli import main

        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            try:
                code = int(main(argv) or 0)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # a traceback escaped the CLI
                import traceback

                traceback.print_exc()
                code, tb = 3, True
        out, err = o.getvalue(), e.getvalue()
    run = Run(argv, code, out, err)
    COUNTS["runs"] += 1
    if tb or "Traceback (most recent call last)" in err:
        COUNTS["tracebacks"] += 1
        run.problems.append("traceback")
    if code < 0 or code >= 128 or code == 3:
        COUNTS["crashes"] += 1
        run.problems.append(f"crash (exit {code})")
    if expect == "fail" and code == 0:
        COUNTS["silent successes"] += 1
        run.problems.append("silent success")
    if code != 0:
        changed = [p for p, d in before.items() if _digest(p) != d]
        if changed:
            COUNTS["inputs modified"] += 1
            run.problems.append(f"modified {changed}")
    if expect == "fail" and code == 1 and not err.strip():
        run.problems.append("no error message")
    if run.problems:
        FAILURES.append(f"treadlab {' '.join(argv)}: {', '.join(run.problems)}: "
                        f"{err.strip()[-300:]}")
    return run


def pytest_terminal_summary(terminalreporter):
    if not COUNTS["runs"]:
        return
    c = COUNTS
    terminalreporter.write_line(
        f"fault-injection: {c['runs']} runs, {c['tracebacks']} tracebacks, {c['crashes']} "
        f"crashes, {c['silent successes']} silent successes, {c['inputs modified']} inputs "
        f"modified")
    for line in FAILURES[:20]:
        terminalreporter.write_line(f"  {line}")


@pytest.fixture
def small_disk(tmp_path):
    """``make(size)`` mounts a tmpfs of ``size`` (e.g. ``"1m"``) and returns its folder;
    unmounted in teardown. Root only (the suite's full-disk tests skip otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    mounts = []

    def make(size: str) -> Path:
        mnt = tmp_path / f"disk{len(mounts)}"
        mnt.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
        mounts.append(mnt)
        return mnt

    yield make
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until ``leave`` bytes are free; the filler file."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        n = max(0, free - leave)
        block = b"\0" * (1 << 16)
        try:
            while n > 0:
                n -= fh.write(block[:n])
        except OSError:
            pass
    return filler
