"""The ``treadlab`` console script (DESIGN §5b).

Each subcommand parses its arguments, calls one library function, prints, and returns an exit
code: 0 success, 1 a problem with the input or a failed session (one line per problem on
stderr, no traceback), 2 a usage error. This module is the only place that configures logging.
Library modules are imported inside the handlers so ``treadlab --help`` stays fast and a
missing optional piece only affects its own command.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from treadlab.config.errors import TreadlabError

log = logging.getLogger("treadlab")


# --- handlers: one library call each -------------------------------------------------------

def _cmd_demo(args) -> int:
    from treadlab.pipeline.demo import run_demo

    return run_demo(out_dir=args.out, seconds=args.seconds)


def _cmd_capture(args) -> int:
    # acquisition records; processing the finished session is the pipeline's job (DESIGN §2:
    # pipeline -> acquisition, never the other way round).
    from treadlab.acquisition.capture import run_capture

    path = run_capture(config_path=args.config, subject=args.subject,
                       body_mass_kg=args.body_mass, duration_s=args.duration, out_dir=args.out,
                       replay=args.replay)
    print(path)
    if args.no_process:
        return 0
    from treadlab.pipeline.graph import process_session

    _print_summary(process_session(path, config_path=args.config))
    return 0


def _cmd_simulate_lab(args) -> int:
    params = _params(args.param)
    from treadlab.acquisition.simulated import serve_lab

    return serve_lab(config_path=args.config, replay=args.replay, duration_s=args.duration,
                     params=params)


def _cmd_simulate_session(args) -> int:
    params = _params(args.param)
    from treadlab.acquisition.synthetic import simulate_session_file

    path = simulate_session_file(args.output, params=params)
    print(path)
    return 0


def _cmd_import(args) -> int:
    from treadlab.acquisition.c3d_import import import_c3d

    path = import_c3d(args.c3d, args.output, config_path=args.config, subject_id=args.subject,
                      body_mass_kg=args.body_mass, static_path=args.static)
    print(path)
    return 0


def _cmd_process(args) -> int:
    from treadlab.pipeline.graph import process_session

    summary = process_session(args.session, config_path=args.config)
    _print_summary(summary)
    return 0


def _cmd_reprocess(args) -> int:
    from treadlab.pipeline.reprocess import reprocess

    return reprocess(args.archive, scheduler=args.scheduler, workers=args.workers,
                     force=args.force, config_path=args.config, dry_run=args.dry_run)


def _cmd_export(args) -> int:
    from treadlab.pipeline.export import export_sessions

    return export_sessions(args.sessions, args.to, fmt=args.format,
                           keep_identity=args.keep_identity, config_path=args.config)


def _cmd_report(args) -> int:
    from treadlab.pipeline.report import make_report

    print(make_report(args.session, args.output))
    return 0


def _cmd_inspect(args) -> int:
    from treadlab.acquisition.archive import format_inspection, inspect_session

    info = inspect_session(args.session)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    return 0


def _cmd_validate(args) -> int:
    from treadlab.acquisition.archive import validate_session

    problems = validate_session(args.session)
    for p in problems:
        print(f"{args.session}: {p}", file=sys.stderr)
    if not problems:
        print(f"{args.session}: valid treadlab.session")
    return 1 if problems else 0


def _cmd_recover(args) -> int:
    from treadlab.acquisition.recorder import recover

    print(recover(args.session))
    return 0


def _cmd_reference_build(args) -> int:
    from treadlab.pipeline.reference import build_reference

    print(build_reference(args.archive, args.output, config_path=args.config))
    return 0


# --- helpers ---------------------------------------------------------------------------------

def _params(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``; a malformed pair is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"--param expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _print_summary(summary) -> None:
    if summary is None:
        return
    if isinstance(summary, str):
        print(summary)
    else:
        print(json.dumps(summary, indent=2, default=str))


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="treadlab", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("demo", help="simulated lab -> capture -> process -> score table")
    s.add_argument("--out", default="treadlab-demo", help="folder for the session archive")
    s.add_argument("--seconds", type=float, default=30.0, help="capture length (s)")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("capture", help="a technician's capture session")
    s.add_argument("--config", help="lab TOML (default: the shipped simulated lab)")
    s.add_argument("--subject", required=True, help="subject identifier")
    s.add_argument("--body-mass", type=float, help="body mass (kg); else estimated from force")
    s.add_argument("--duration", type=float, help="stop after S seconds (default: Ctrl-C)")
    s.add_argument("--out", default=".", help="folder for the session archive")
    s.add_argument("--no-process", action="store_true", help="record only; skip processing")
    s.add_argument("--replay", metavar="FILE.c3d",
                   help="simulated lab plays this recording once instead of the synthetic "
                        "runner (default config: lab derived from the file); stops at its end")
    s.set_defaults(func=_cmd_capture)

    s = sub.add_parser("simulate", help="virtual devices or a synthetic archive")
    ssub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = ssub.add_parser("lab", help="serve a virtual treadmill (pty) and mocap (UDP/LSL)")
    t.add_argument("--config", help="lab TOML (default: the shipped simulated lab)")
    t.add_argument("--replay", help="play back a real C3D recording instead of the runner")
    t.add_argument("--duration", type=float, help="stop after S seconds (default: Ctrl-C)")
    t.add_argument("--param", action="append", metavar="K=V", help="synthetic runner parameter")
    t.set_defaults(func=_cmd_simulate_lab)
    t = ssub.add_parser("session", help="write a synthetic session archive with /truth")
    t.add_argument("-o", "--output", required=True, help="archive to write (.h5)")
    t.add_argument("--param", action="append", metavar="K=V",
                   help="synthetic runner parameter, e.g. pelvic_drop_deg=8 (repeatable)")
    t.set_defaults(func=_cmd_simulate_session)

    s = sub.add_parser("import", help="a real C3D recording into a raw session archive")
    s.add_argument("c3d")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--config", help="lab TOML (marker names, axes)")
    s.add_argument("--subject", help="subject identifier (default: from the file name)")
    s.add_argument("--body-mass", type=float, help="body mass (kg)")
    s.add_argument("--static", metavar="STATIC.c3d",
                   help="static trial: rebuild knee/ankle markers from the thigh and shank "
                        "clusters (cluster technique) and take the subject measurements")
    s.set_defaults(func=_cmd_import)

    s = sub.add_parser("process", help="derive and score one session")
    s.add_argument("session")
    s.add_argument("--config", help="lab TOML (thresholds, filters, reference set)")
    s.set_defaults(func=_cmd_process)

    s = sub.add_parser("reprocess", help="process a whole archive folder (overnight)")
    s.add_argument("archive")
    s.add_argument("--scheduler", help="existing dask scheduler, tcp://HOST:PORT")
    s.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    s.add_argument("--force", action="store_true", help="reprocess sessions already up to date")
    s.add_argument("--config", help="lab TOML")
    s.add_argument("--dry-run", action="store_true",
                   help="list the sessions that are due and why; process nothing")
    s.set_defaults(func=_cmd_reprocess)

    s = sub.add_parser("export", help="anonymised copies for collaborating labs")
    s.add_argument("sessions", nargs="+")
    s.add_argument("--to", required=True, help="destination folder")
    s.add_argument("--format", choices=["hdf5", "c3d", "csv"], default="hdf5")
    s.add_argument("--keep-identity", action="store_true", help="do not pseudonymise")
    s.add_argument("--config", help="lab TOML (pseudonym secret)")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("report", help="figures and an HTML page for a clinician")
    s.add_argument("session")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser("inspect", help="metadata, streams, quality, derived data and scores")
    s.add_argument("session")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("validate", help="check a file against the treadlab.session contract")
    s.add_argument("session")
    s.set_defaults(func=_cmd_validate)

    s = sub.add_parser("recover", help="make an interrupted capture valid")
    s.add_argument("session")
    s.set_defaults(func=_cmd_recover)

    s = sub.add_parser("reference", help="reference sets for scoring")
    ssub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = ssub.add_parser("build", help="reference means/spreads from processed healthy sessions")
    t.add_argument("archive")
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--config", help="lab TOML")
    t.set_defaults(func=_cmd_reference_build)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # distributed configures its own loggers at INFO when first imported (and so do its worker
    # processes, which inherit the environment): keep the terminal for treadlab's own output.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", logging.getLevelName(level).lower())
    try:
        return int(args.func(args) or 0)
    except _UsageError as exc:
        parser.error(str(exc))  # exit 2
    except TreadlabError as exc:
        print(f"treadlab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("treadlab: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as exc:  # unreadable files, bad numbers: still one line
        if args.verbose:
            raise
        print(f"treadlab: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
