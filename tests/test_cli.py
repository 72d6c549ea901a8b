"""The console script: usage errors exit 2, every command of docs/design.md §8 is present, help
for every argument, --version, exit codes 1 (bad input) and 3 (a bug)."""
import argparse
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


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for inner, p in _subparsers(sub):
                    yield f"{name} {inner}", p


def test_every_command_and_argument_is_described():
    parser = build_parser()
    assert "exit codes" in parser.epilog and "3  an unexpected internal error" in parser.epilog
    for name, sub in _subparsers(parser):
        assert sub.description, f"treadlab {name} has no description"
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"treadlab {name} {action.dest} has no help"
    capture = dict(_subparsers(parser))["capture"]
    body_mass = next(a for a in capture._actions if a.dest == "body_mass")
    assert "kg" in body_mass.help


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("treadlab ")


def test_an_unexpected_error_is_exit_3_not_bad_input(tmp_path, capsys, monkeypatch):
    import treadlab.acquisition.archive as archive

    def broken(path):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(archive, "validate_session", broken)
    assert main(["validate", str(tmp_path / "x.h5")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "-v" in err[0]
    assert main(["-v", "validate", str(tmp_path / "x.h5")]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_bad_input_is_exit_1(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.h5" in err[0]
