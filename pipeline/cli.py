"""The ``treadlab`` console script (docs/design.md §8).

Each command parses its arguments, calls one library function, prints what it returned and
chooses the exit code. This module is the only place that prints for the library, configures
logging and maps exceptions to exit codes:

0  success
1  a problem with the input or a failed session (``TreadlabError``, ``OSError``): one line per
   problem on stderr, no traceback
2  a usage error (argparse)
3  an unexpected internal error (a bug): a short message pointing to ``-v``, which shows the
   traceback

The library is imported inside each command's handler, so ``treadlab --help`` answers at once
and a broken optional piece only affects its own command.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import traceback

from treadlab.config import software_version
from treadlab.config.errors import TreadlabError

log = logging.getLogger("treadlab")

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

EPILOG = """\
exit codes:
  0  success
  1  a problem with the input or a failed session (one line per problem on stderr)
  2  a usage error
  3  an unexpected internal error (run again with -v for the traceback)

Units: body mass kg, durations s, positions mm, forces N. Lab frame: X forward, Y left, Z up.
Documentation: docs/ in the source tree (design.md, archive.md, wire.md, metrics.md)."""


# --- handlers: one library call each -------------------------------------------------------

def _cmd_demo(args) -> int:
    from treadlab.pipeline.demo import format_demo, run_demo

    print(format_demo(run_demo(out_dir=args.out, seconds=args.seconds,
                               status_stream=sys.stderr)))
    return EXIT_OK


def _cmd_capture(args) -> int:
    # acquisition records; processing the finished session is the pipeline's job
    # (docs/design.md §2: pipeline -> acquisition, never the other way round).
    from treadlab.acquisition.capture.session import run_capture
    from treadlab.pipeline.graph import load_settings, process_session

    if not args.no_process:
        # thresholds, filters and the [scoring] reference are checked before anything is
        # recorded: a bad reference file must not surface only after the subject has run
        load_settings(args.config)
    path = run_capture(config_path=args.config, subject=args.subject,
                       body_mass_kg=args.body_mass, duration_s=args.duration, out_dir=args.out,
                       replay=args.replay, status_stream=sys.stderr, protocol=args.protocol,
                       speed_protocol=args.speed_protocol)
    print(path)
    if not args.no_process:
        _print_summary(process_session(path, config_path=args.config))
    return EXIT_OK


def _cmd_simulate_lab(args) -> int:
    from treadlab.acquisition.sim.simulated import serve_lab

    params = _params(args.param)
    if args.protocol:
        return _simulate_vendor_lab(args, params)
    if args.port is not None:
        raise _UsageError("--port goes with --protocol")

    def ready(lab):
        if lab.force_port:
            print(f"force plate (serial): {lab.force_port}")
        if lab.force_stream:
            print(f"force plate (LSL stream): {lab.force_stream}")
        if lab.marker_address:
            print(f"markers (UDP): {lab.marker_address[0]}:{lab.marker_address[1]}")
        if lab.marker_stream:
            print(f"markers (LSL stream): {lab.marker_stream}")
        print("serving" + (f" for {args.duration:g} s" if args.duration else
                           "; Ctrl-C to stop"), flush=True)

    stats = serve_lab(config_path=args.config, replay=args.replay, duration_s=args.duration,
                      params=params, on_ready=ready)
    if stats:
        print(f"sent {stats.get('force_written', 0)} force frames, "
              f"{stats.get('marker_sent', 0)} marker frames")
    return EXIT_OK


def _simulate_vendor_lab(args, params) -> int:
    from treadlab.acquisition.sim.emulated import serve_emulated_lab

    def ready(lab, cfg):
        host, port = lab.treadmill_address
        print(f"treadmill controller (Bertec remote control, simulated): {host}:{port}")
        print(f"[treadmill]\ndriver = \"bertec\"\nhost = \"{host}\"\nport = {port}")
        if args.protocol == "natnet":
            host, port = lab.natnet_address
            print(f"OptiTrack Motive NatNet {args.natnet_version} server (unicast, command "
                  f"port): {host}:{port}")
            print("lab config: [markers] driver = \"natnet\", and")
            t = cfg.natnet
            print(f"[natnet]\nserver = \"{host}\"\ncommand_port = {port}\nmulticast = false\n"
                  f"marker_set = \"{t['marker_set']}\"\nunits_m = {t['units_m']:g}\n"
                  f"lab_from_motive = {t['lab_from_motive']}")
            print("serving" + (f" for {args.duration:g} s" if args.duration else
                               "; Ctrl-C to stop"), flush=True)
            return
        host, port = lab.qtm_address
        print(f"QTM real-time server (RT protocol 1.25, little endian): {host}:{port}")
        print("lab config: [forceplate] and [markers] driver = \"qualisys\", and")
        print(f"[qualisys]\nhost = \"{host}\"\nport = {port}\nanalog = "
              f"{json.dumps(cfg.qualisys.get('analog', []))}")
        for p in cfg.qualisys["plates"]:
            print(f"[[qualisys.plates]]\nqtm_id = {p['qtm_id']}\nname = \"{p['name']}\"\n"
                  f"rotation = {p['rotation']}\nmoment_origin = {p['moment_origin']}\n"
                  f"force = \"{p['force']}\"")
        print("serving" + (f" for {args.duration:g} s" if args.duration else
                           "; Ctrl-C to stop"), flush=True)

    stats = serve_emulated_lab(config_path=args.config, protocol=args.protocol,
                               replay=args.replay, duration_s=args.duration, params=params,
                               port=args.port or 0, on_ready=ready,
                               natnet_version=args.natnet_version)
    if stats:
        if args.protocol == "natnet":
            print(f"{stats.get('frames', 0)} frames, {stats.get('datagrams', 0)} datagrams sent")
        else:
            print(f"{stats.get('camera_frames', 0)} camera frames, "
                  f"{stats.get('frames_sent', 0)} sent to clients")
    return EXIT_OK


def _cmd_simulate_session(args) -> int:
    from treadlab.acquisition.sim.synthetic import simulate_session_file

    print(simulate_session_file(args.output, params=_params(args.param)))
    return EXIT_OK


def _cmd_import(args) -> int:
    from treadlab.acquisition.io.c3d_import import import_c3d

    if str(args.c3d).lower().endswith((".xdf", ".xdfz", ".xdf.gz")):
        from treadlab.acquisition.io.xdf_import import import_xdf

        if args.static:
            raise _UsageError("--static goes with a C3D recording, not an XDF file")
        print(import_xdf(args.c3d, args.output, config_path=args.config,
                         subject_id=args.subject, body_mass_kg=args.body_mass))
        return EXIT_OK

    print(import_c3d(args.c3d, args.output, config_path=args.config, subject_id=args.subject,
                     body_mass_kg=args.body_mass, static_path=args.static,
                     belt_speed_m_s=args.belt_speed))
    return EXIT_OK


def _cmd_process(args) -> int:
    from treadlab.pipeline.graph import process_session

    _print_summary(process_session(args.session, config_path=args.config))
    return EXIT_OK


def _cmd_reprocess(args) -> int:
    from treadlab.pipeline.reprocess import reprocess

    result = reprocess(args.archive, scheduler=args.scheduler, workers=args.workers,
                       force=args.force, config_path=args.config, dry_run=args.dry_run)
    for line in result.failure_lines():
        print(f"treadlab: failed: {line}", file=sys.stderr)
    if result.dry_run:
        print(result.due_table())
        print(f"{len(result.due)} due, {len(result.skipped)} up to date, "
              f"{len(result.failed)} unreadable (dry run: nothing written)")
        return EXIT_OK if result.ok else EXIT_INPUT
    for line in result.skip_lines():
        print(f"treadlab: {line}", file=sys.stderr)
    if result.processed:
        print(result.timing_table())
        print()
    print(result.table())
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_migrate(args) -> int:
    from treadlab.pipeline.reprocess import migrate_archive

    result = migrate_archive(args.archive, dry_run=args.dry_run)
    for line in result.lines:
        print(line)
    for line in result.failure_lines():
        print(f"treadlab: failed: {line}", file=sys.stderr)
    verb = "to migrate" if args.dry_run else "migrated"
    print(f"{len(result.migrated)} {verb}, {len(result.current)} already current, "
          f"{len(result.skipped)} skipped (locked), {len(result.failed)} failed")
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_export(args) -> int:
    from treadlab.pipeline.export import export_sessions

    result = export_sessions(args.sessions, args.to, fmt=args.format,
                             keep_identity=args.keep_identity, config_path=args.config)
    for line in result.failed + result.dropped:
        print(f"treadlab: {line}", file=sys.stderr)
    for path in result.written:
        print(path)
    return EXIT_OK if result.ok else EXIT_INPUT


def _cmd_report(args) -> int:
    from treadlab.pipeline.report import make_report

    print(make_report(args.session, args.output))
    return EXIT_OK


def _cmd_inspect(args) -> int:
    from treadlab.acquisition.archive import format_inspection, inspect_session

    info = inspect_session(args.session)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    return EXIT_OK


def _cmd_validate(args) -> int:
    from treadlab.acquisition.archive import validate_session

    problems = validate_session(args.session, quick=args.quick)
    for p in problems:
        print(f"{args.session}: {p}", file=sys.stderr)
    if not problems:
        print(f"{args.session}: valid treadlab.session")
    return EXIT_INPUT if problems else EXIT_OK


def _cmd_recover(args) -> int:
    from treadlab.acquisition.capture.recorder import recover

    print(recover(args.session, body_mass_kg=args.body_mass))
    return EXIT_OK


def _cmd_station(args) -> int:
    from treadlab.pipeline.station.server import run_station

    return run_station(config_path=args.config, host=args.host, port=args.port,
                       data_dir=args.data, token=args.token, params=_params(args.param))


def _cmd_reference_build(args) -> int:
    from treadlab.pipeline.reference import build_reference

    print(build_reference(args.archive, args.output, config_path=args.config,
                          participants=args.participants, cohort=args.cohort,
                          template=args.template))
    return EXIT_OK


def _cmd_reference_build_cohort(args) -> int:
    from treadlab.pipeline.reference import build_cohort

    print(build_cohort(args.folders, args.output, participants=args.participants,
                       work=args.work, cohort=args.cohort, name=args.name))
    return EXIT_OK


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


# --- the parser --------------------------------------------------------------------------------

CONFIG_HELP = "lab TOML file (default: the shipped simulated lab)"
SESSION_HELP = "session archive (.h5, format treadlab.session)"
PARAM_HELP = ("synthetic-runner parameter KEY=VALUE, repeatable, e.g. pelvic_drop_deg=8 "
              "(names and units: docs/design.md §6)")


def _command(sub, name: str, summary: str, description: str, func):
    """A subcommand with a one-line summary (in ``treadlab --help``), a description (in
    ``treadlab NAME --help``) and the exit codes."""
    p = sub.add_parser(name, help=summary, description=textwrap.fill(description, 79),
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="treadlab",
        description=textwrap.fill("treadlab: capture, process, score and export instrumented "
                                  "treadmill running sessions (force-plate treadmill + optical "
                                  "motion capture).", 79),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=software_version())
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-vv: debug); tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = _command(sub, "demo", "simulated lab -> capture -> process -> score table",
                 "Run the whole chain on this machine with no hardware: a virtual treadmill "
                 "(pseudo-terminal) and mocap system (UDP) serve a synthetic runner, the capture "
                 "records them, the pipeline processes the session and the four cause scores "
                 "are printed.", _cmd_demo)
    s.add_argument("--out", default="treadlab-demo", metavar="DIR",
                   help="folder for the session archive (default: %(default)s)")
    s.add_argument("--seconds", type=float, default=30.0, metavar="S",
                   help="capture length in seconds (default: %(default)s; 20 s or more give "
                        "enough steps to score)")

    s = _command(sub, "capture", "a technician's capture session",
                 "Open the lab's force plates and mocap stream, tare, record one session into "
                 "a crash-safe archive with live status, then process it (unless "
                 "--no-process). Stops after --duration or on Ctrl-C.", _cmd_capture)
    s.add_argument("--config", metavar="LAB.toml", help=CONFIG_HELP)
    s.add_argument("--subject", required=True, metavar="ID",
                   help="subject identifier (stored in the archive, pseudonymised on export)")
    s.add_argument("--body-mass", type=float, metavar="KG",
                   help="body mass in kg (default: estimated from the vertical force)")
    s.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    s.add_argument("--out", default=".", metavar="DIR",
                   help="folder for the session archive (default: the current folder)")
    s.add_argument("--no-process", action="store_true", help="record only; skip processing")
    s.add_argument("--replay", metavar="FILE.c3d",
                   help="the simulated lab plays this recording once instead of the synthetic "
                        "runner (default config: a lab derived from the file); stops at its end")
    s.add_argument("--protocol", choices=["qtm", "natnet"],
                   help="the simulated lab is a vendor system read through its own client: "
                        "qtm = the QTM emulator read by the qualisys source (qtm-rt); natnet "
                        "= markers from the Motive emulator read by the natnet source, force "
                        "from the simulated treadmill")
    s.add_argument("--speed-protocol", metavar="V:S,V:S,...",
                   help="belt speed stages in m/s:seconds (e.g. 2.5:60,3.5:60,4.5:60) run on "
                        "the lab's [treadmill] controller; the capture lasts the protocol "
                        "unless --duration is given")

    s = sub.add_parser("simulate", help="virtual devices or a synthetic archive",
                       description=textwrap.fill("Simulators: serve a virtual lab, or write a "
                                                 "synthetic session archive with its ground "
                                                 "truth.", 79), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = _command(ssub, "lab", "serve a virtual treadmill (pty) and mocap system (UDP/LSL)",
                 "Serve the lab config's devices from a synthetic runner (or a C3D recording) "
                 "over the real wire formats until Ctrl-C or --duration; prints the endpoints.",
                 _cmd_simulate_lab)
    t.add_argument("--config", metavar="LAB.toml", help=CONFIG_HELP)
    t.add_argument("--replay", metavar="FILE.c3d",
                   help="play back a real C3D recording instead of the synthetic runner")
    t.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help=PARAM_HELP)
    t.add_argument("--protocol", choices=["qtm", "natnet"],
                   help="serve the mocap as a vendor system instead: qtm = Qualisys Track "
                        "Manager's real-time protocol over TCP, markers and force plates (read "
                        "with driver \"qualisys\"); natnet = OptiTrack Motive's NatNet over "
                        "UDP unicast, markers (read with driver \"natnet\")")
    t.add_argument("--port", type=int, metavar="P",
                   help="TCP port of the --protocol server (default: a free one)")
    t.add_argument("--natnet-version", choices=["3.1", "4.1"], default="3.1",
                   help="NatNet version the --protocol natnet server speaks: 3.1 (Motive 2.x, "
                        "default) or 4.1 (Motive 3.x)")
    t = _command(ssub, "session", "write a synthetic session archive with /truth",
                 "Write a complete raw archive of a synthetic runner, with the true per-step "
                 "values in /truth (for tests and validation).", _cmd_simulate_session)
    t.add_argument("-o", "--output", required=True, metavar="FILE.h5", help="archive to write")
    t.add_argument("--param", action="append", metavar="KEY=VALUE", help=PARAM_HELP)

    s = _command(sub, "import", "a real C3D or XDF recording into a raw session archive",
                 "Read a C3D file (markers, force plates, events, model outputs), map its axes "
                 "onto the lab frame and its marker names onto CGM, and write a raw archive. "
                 "An .xdf file (LabRecorder) is read with pyxdf's clock synchronisation and "
                 "dejittering: one Mocap stream (LABEL_X/_Y/_Z) and one Force stream "
                 "(<plate>_Fx … _Mz, N and N*m).",
                 _cmd_import)
    s.add_argument("c3d", metavar="FILE.c3d|FILE.xdf", help="the recording to import")
    s.add_argument("-o", "--output", required=True, metavar="FILE.h5", help="archive to write")
    s.add_argument("--config", metavar="LAB.toml",
                   help="lab TOML: marker name map and lab name (optional)")
    s.add_argument("--subject", metavar="ID", help="subject identifier (default: the file name)")
    s.add_argument("--body-mass", type=float, metavar="KG",
                   help="body mass in kg (default: the file's, else estimated from the force)")
    s.add_argument("--static", metavar="STATIC.c3d",
                   help="static trial: rebuild knee/ankle markers from the thigh and shank "
                        "clusters (cluster technique) and take the subject measurements")
    s.add_argument("--belt-speed", type=float, metavar="M/S",
                   help="treadmill belt speed as set (m/s); default: estimated from the heel "
                        "markers (reads low for forefoot strikers)")

    s = _command(sub, "process", "derive and score one session",
                 "Contacts, force metrics, joint angles, per-step metrics and the four cause "
                 "scores of one archive, written atomically to its derived file (the session's "
                 "/derived link; the session file itself is not rewritten).", _cmd_process)
    s.add_argument("session", metavar="FILE.h5", help=SESSION_HELP)
    s.add_argument("--config", metavar="LAB.toml",
                   help="lab TOML: thresholds, filters, reference set (default: the shipped "
                        "simulated lab)")

    s = _command(sub, "reprocess", "process a whole archive folder (overnight)",
                 "Process every session under a folder on a dask cluster (local by default). "
                 "Sessions already processed with the same pipeline and config are skipped; a "
                 "failing session is reported and never stops the batch.", _cmd_reprocess)
    s.add_argument("archive", metavar="DIR", help="folder searched recursively for *.h5")
    s.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="an existing dask scheduler (default: DASK_SCHEDULER_ADDRESS, else a "
                        "local cluster)")
    s.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: the number of cores)")
    s.add_argument("--force", action="store_true", help="reprocess sessions already up to date")
    s.add_argument("--dry-run", action="store_true",
                   help="list the sessions that are due and why (pipeline version, config, "
                        "reference); process and write nothing")
    s.add_argument("--config", metavar="LAB.toml", help=CONFIG_HELP)

    s = _command(sub, "migrate", "convert older archives to the current layout",
                 "Bring every session under a folder to archive format 2 (docs/archive.md): "
                 "derived data moved to a derived file beside each session and linked, plate "
                 "geometry stored as datasets. Crash-safe and idempotent: current sessions are "
                 "not touched, a killed run is finished by the next.", _cmd_migrate)
    s.add_argument("archive", metavar="DIR", help="folder searched recursively for *.h5")
    s.add_argument("--dry-run", action="store_true",
                   help="list what would change; write nothing")

    s = _command(sub, "export", "anonymised copies for collaborating labs",
                 "Copy sessions for another lab: only the documented schema is kept, subject "
                 "and session identifiers become keyed pseudonyms, dates are coarsened to the "
                 "day. HDF5 (with an embedded schema), C3D or CSV.", _cmd_export)
    s.add_argument("sessions", nargs="+", metavar="FILE.h5", help=SESSION_HELP)
    s.add_argument("--to", required=True, metavar="DIR", help="destination folder")
    s.add_argument("--format", choices=["hdf5", "c3d", "csv"], default="hdf5",
                   help="output format (default: %(default)s)")
    s.add_argument("--keep-identity", action="store_true",
                   help="keep identifiers and full dates (no pseudonym, no secret needed)")
    s.add_argument("--config", metavar="LAB.toml",
                   help="lab TOML holding the pseudonym secret ([export] secret or secret_env; "
                        "default: environment variable TREADLAB_PSEUDONYM_SECRET)")

    s = _command(sub, "report", "figures and an HTML page for a clinician",
                 "Ground reaction force over stance, joint angles over the gait cycle with "
                 "normative bands, and the four scores, as PNG figures and one HTML page.",
                 _cmd_report)
    s.add_argument("session", metavar="FILE.h5", help="a processed session archive")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")

    s = _command(sub, "inspect", "metadata, streams, quality, derived data and scores",
                 "Summarise an archive: attributes, stream lengths and gaps, marker dropouts, "
                 "acquisition log, contacts and scores.", _cmd_inspect)
    s.add_argument("session", metavar="FILE.h5", help=SESSION_HELP)
    s.add_argument("--json", action="store_true", help="print JSON instead of text")

    s = _command(sub, "validate", "check a file against the treadlab.session contract",
                 "Check every required group, dataset, attribute, shape and unit "
                 "(docs/archive.md), read every dataset (a corrupt chunk is found) and check "
                 "the values are physically plausible; exit 1 with one line per problem.",
                 _cmd_validate)
    s.add_argument("session", metavar="FILE.h5", help="the HDF5 file to check")
    s.add_argument("--quick", action="store_true",
                   help="layout only: do not read the data (faster on large archives)")

    s = _command(sub, "recover", "make an interrupted capture valid",
                 "Repair a capture that was killed or stopped early: clear the HDF5 write flags, "
                 "keep each stream up to its last consistent row (never cutting a complete "
                 "file), refit the clocks, mark it interrupted. Works on a copy: the file is "
                 "replaced only when the result validates, and left unchanged otherwise.",
                 _cmd_recover)
    s.add_argument("session", metavar="FILE.h5", help="the archive a killed capture left")
    s.add_argument("--body-mass", type=float, metavar="KG",
                   help="body mass (kg) for a recording too short to estimate it")

    s = _command(sub, "station", "the acquisition daemon: devices kept open, browser console",
                 "Open the lab's devices once and keep them connected; serve the technician "
                 "console (http://HOST:PORT/) and the runner display (/runner) with an HTTP + "
                 "WebSocket API; record, process and report each trial into a runner folder. "
                 "Runs until SIGTERM or Ctrl-C (docs/station.md).", _cmd_station)
    s.add_argument("--config", metavar="LAB.toml", help=CONFIG_HELP)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s; any other address needs "
                        "--token)")
    s.add_argument("--port", type=int, default=8750, help="TCP port (default: %(default)s)")
    s.add_argument("--data", default="treadlab-station", metavar="DIR",
                   help="folder of the runner folders (default: %(default)s)")
    s.add_argument("--token", help="access token (default: environment variable "
                                   "TREADLAB_STATION_TOKEN); required off loopback")
    s.add_argument("--param", action="append", metavar="K=V", help=PARAM_HELP)

    s = sub.add_parser("reference", help="reference sets for scoring",
                       description=textwrap.fill("Reference sets: the healthy means and "
                                                 "spreads the cause scores are measured "
                                                 "against.", 79), epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = _command(ssub, "build", "speed-conditioned reference from processed healthy sessions",
                 "Build a reference set TOML from a folder of processed sessions of healthy "
                 "runners: per cause and side, a line mu(v) in belt speed v (m/s) and the "
                 "residual sigma, in each metric's unit (docs/scoring.md). The same input "
                 "gives a byte-identical file.", _cmd_reference_build)
    t.add_argument("archive", metavar="DIR",
                   help="folder of processed session archives (.h5, searched recursively)")
    t.add_argument("-o", "--output", required=True, metavar="FILE.toml",
                   help="reference set to write")
    t.add_argument("--config", metavar="LAB.toml", help=CONFIG_HELP)
    t.add_argument("--participants", metavar="CSV",
                   help="participants table (Subject column): sessions are matched to runners "
                        "and the cohort's age/height/mass ranges recorded")
    t.add_argument("--cohort", help="citation of the cohort, written into the set")
    t.add_argument("--template", metavar="SET",
                   help="reference set (shipped id or TOML) whose entries are kept for causes "
                        "no session measures (default: the lab config's)")
    t = _command(ssub, "build-cohort", "import, process and build from a C3D cohort",
                 "Import SUBJECTrunTvv.c3d trials with SUBJECTstatic.c3d (belt speed vv/10 "
                 "m/s), process them and build the reference set; the shipped default is "
                 "made this way from the Fukuchi 2017 cohort (docs/scoring.md).",
                 _cmd_reference_build_cohort)
    t.add_argument("folders", nargs="+", metavar="DIR",
                   help="folders holding the trials (searched recursively)")
    t.add_argument("-o", "--output", required=True, metavar="FILE.toml",
                   help="reference set to write")
    t.add_argument("--participants", metavar="CSV",
                   help="participants table with Subject and Mass (kg) columns "
                        "(default: FOLDER/participants.csv of the first folder)")
    t.add_argument("--work", metavar="DIR",
                   help="keep the processed archives here (re-used when up to date; "
                        "default: a temporary folder)")
    t.add_argument("--cohort", help="citation (default: Fukuchi, Fukuchi & Duarte 2017)")
    t.add_argument("--name", help="reference id prefix (default: from the output name)")
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
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("treadlab: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the system refused: still the input, one line
        print(f"treadlab: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # a bug: never mistaken for bad input
        if args.verbose:
            traceback.print_exc()
        text = str(exc).strip().splitlines()
        print(f"treadlab: internal error: {type(exc).__name__}"
              + (f": {text[0]}" if text else "")
              + ("" if args.verbose else " (run again with -v for the traceback)"),
              file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
