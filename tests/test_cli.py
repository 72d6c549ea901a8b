"""The console script: usage errors exit 2, every DESIGN §5b command is present."""
import subprocess
import sys

import pytest

from treadlab.pipeline.cli import build_parser, main

COMMANDS = ["demo", "capture", "simulate", "import", "process", "reprocess", "export", "report",
            "inspect", "validate", "recover", "reference"]


def test_every_design_command_is_present():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_bad_param_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "session", "-o", str(tmp_path / "x.h5"), "--param", "novalue"])
    assert exc.value.code == 2


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "treadlab.pipeline.cli", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "reprocess" in out.stdout
