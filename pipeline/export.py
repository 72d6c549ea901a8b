"""Export sessions for collaborating labs (``treadlab export``, DESIGN §5).

Three formats, one entry point (:func:`export_sessions`):

``hdf5``
    A new ``treadlab.session`` v1 file built from an **allow-list** of the schema
    (:data:`ROOT_ATTRS`, :data:`SUBJECT_ATTRS`, the ``/raw`` streams, ``/derived`` contacts,
    angles and scores, ``/truth`` and ``/reference`` data): anything not on the list (free-text
    notes, names, birth dates, file names, device clocks, log details, unknown groups) is not
    copied. Unless ``keep_identity`` is set, ``subject_id`` becomes a keyed pseudonym
    (HMAC-SHA256 with the lab's secret), ``session_id`` a UUID derived the same way, and every
    wall-clock timestamp is coarsened to the day. A JSON description of every group, dataset and
    attribute kept, with units, is embedded as the ``/schema`` dataset. gzip only; dimension
    scales are attached so xarray (h5netcdf) opens each group with named dimensions.
``c3d``
    Markers (mm, lab frame), analog force channels per plate (``Fx1 … Mz1``: the force and
    moment the runner applies to the plate, N and N·mm, about the centre of the plate surface,
    with ``FORCE_PLATFORM`` type-2 parameters) and the contacts of ``/derived/contacts`` as
    ``Foot Strike`` / ``Foot Off`` events. ezc3d writes at most 65535 frames per file
    (NOTES.md), so longer sessions are split into equal numbered parts ``…_part01.c3d``,
    ``…_part02.c3d`` …; a C3D parameter dimension is one byte, so a part also holds at most 255
    events (about 40 s of running), which sets the number of parts of a processed session.
``csv``
    ``…_contacts.csv`` (one row per contact) and ``…_scores.csv`` (one row per cause), units in
    the column headers.

The output file name is derived from the pseudonym (``sub-<16 hex>_ses-<8 hex>``), or from
the source file name with ``keep_identity``.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import math
import os
import re
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.config.errors import ConfigError, InputError, TreadlabError

log = logging.getLogger(__name__)

FORMATS = ("hdf5", "c3d", "csv")
#: Environment variable holding the pseudonym secret when the lab config names none.
DEFAULT_SECRET_ENV = "TREADLAB_PSEUDONYM_SECRET"
#: Shortest secret accepted: a short secret over a guessable id format can be brute-forced.
MIN_SECRET_CHARS = 16
#: ezc3d writes at most this many point frames per file (NOTES.md).
C3D_MAX_FRAMES = 65535
#: A C3D parameter dimension is one byte: the EVENT group holds at most 255 events.
C3D_MAX_EVENTS = 255

#: Root attributes copied (DESIGN §4), with what each holds. Nothing else is copied.
ROOT_ATTRS = {
    "format": "file format name, 'treadlab.session'",
    "format_version": "file format version",
    "session_id": "session identifier (a keyed pseudonymous UUID unless exported with identity)",
    "subject_id": "subject identifier (a keyed pseudonym unless exported with identity)",
    "body_mass_kg": "body mass (kg)",
    "body_mass_source": "how the body mass was obtained",
    "created_utc": "recording date, UTC (coarsened to the day unless exported with identity)",
    "software": "software that recorded or imported the session",
    "lab": "recording lab or system",
    "status": "recording | complete | interrupted",
    "belt_speed_m_s": "treadmill belt speed (m/s)",
    "source_format": "format the session was imported from (c3d), when imported",
}
#: ``/subject`` attributes copied: anthropometrics used by the joint model (all mm).
SUBJECT_ATTRS = ("leg_length_left_mm", "leg_length_right_mm", "inter_asis_mm",
                 "asis_trochanter_left_mm", "asis_trochanter_right_mm", "knee_width_left_mm",
                 "knee_width_right_mm", "ankle_width_left_mm", "ankle_width_right_mm",
                 "marker_diameter_mm", "height_mm")
#: ``/raw/force/calibration`` entries copied.
CALIBRATION_KEYS = ("volts_per_count", "zero", "channels", "matrix")
#: ``/raw/log`` event kinds copied (time and kind only; source and detail are free text).
LOG_KINDS = ("sync", "resync", "crc_error", "drop", "duplicate", "truncated", "clock_reset",
             "disconnect", "reconnect", "tare", "reordered", "late", "bad_packet", "overflow",
             "error")
#: ``/derived`` string attributes copied (numeric ones, processing settings, are all copied).
DERIVED_STR_ATTRS = ("pipeline_version", "config_hash", "reference_id", "reference_sha256",
                     "reference_title", "body_weight_source", "processed_utc")
#: ``/truth/params`` string values copied (the simulator's belt type).
TRUTH_STR_VALUES = {"belt": ("split", "single")}


# =============================================================================================
# public API
# =============================================================================================

def export_sessions(paths, to_dir, fmt: str = "hdf5", keep_identity: bool = False,
                    config_path=None) -> int:
    """Export sessions for a collaborating lab (``treadlab export``).

    Parameters
    ----------
    paths : iterable of str or os.PathLike
        Session archives (``treadlab.session``; ``csv`` and the C3D events need them processed).
    to_dir : str or os.PathLike
        Destination folder (created when missing).
    fmt : {"hdf5", "c3d", "csv"}
    keep_identity : bool
        Keep subject and session identifiers and full timestamps (no pseudonym, no secret
        needed). The allow-list applies either way.
    config_path : str or os.PathLike, optional
        Lab TOML: ``[export] secret`` or ``secret_env`` (default
        ``TREADLAB_PSEUDONYM_SECRET``) gives the pseudonym secret.

    Returns
    -------
    int
        Exit code: 0 when every file was exported, 1 when any failed (one line per failed file
        on stderr; the others are still exported).

    Raises
    ------
    ConfigError
        Unknown format, or no usable pseudonym secret (before any file is touched).
    """
    if fmt not in FORMATS:
        raise ConfigError(None, "--format", f"unknown export format {fmt!r} "
                                            f"(known: {', '.join(FORMATS)})")
    secret = None if keep_identity else pseudonym_secret(config_path)
    to_dir = Path(to_dir)
    to_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in paths:
        notes: list[str] = []
        try:
            written = export_session(path, to_dir, fmt=fmt, secret=secret,
                                     keep_identity=keep_identity, notes=notes)
        except TreadlabError as exc:
            failed += 1
            print(f"treadlab: {exc}", file=sys.stderr)
            continue
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            failed += 1
            msg = str(exc).strip().splitlines()
            print(f"treadlab: {path}: {type(exc).__name__}: {msg[0] if msg else ''}",
                  file=sys.stderr)
            continue
        for note in notes:
            print(f"treadlab: {path}: export dropped {note}", file=sys.stderr)
        for p in written:
            print(p)
    return 1 if failed else 0


def export_session(path, to_dir, fmt: str = "hdf5", secret: bytes | None = None,
                   keep_identity: bool = False, notes: list[str] | None = None) -> list[Path]:
    """Export one session; returns the files written.

    ``secret`` is required unless ``keep_identity`` (see :func:`pseudonym_secret`). Unless
    ``keep_identity``, subject prefixes are removed from marker and model-output labels
    (``"Jane Doe:LASI"`` → ``"LASI"``) and ``/reference/events`` keep only the closed vocabulary
    :data:`EVENT_KINDS`; what was removed is appended to ``notes`` (one line each, counts and
    categories only, never the removed text).

    Raises
    ------
    InputError
        The file is not a readable session, lacks what the format needs, or an identifier
        would survive in the output (the output is then removed).
    """
    from treadlab.acquisition.archive import read_session

    path = Path(path)
    if not keep_identity and not secret:
        raise ConfigError(None, "export.secret", "no pseudonym secret given")
    session = read_session(path, derived=True)
    ident = _identity(path, session.attrs, secret, keep_identity)
    if not keep_identity:
        session, dropped, hide = _scrub_free_text(session)
        ident.secrets_to_hide.extend(h for h in hide if h not in ident.secrets_to_hide)
        if notes is not None:
            notes.extend(dropped)
    to_dir = Path(to_dir)
    to_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "hdf5":
        out = [_export_hdf5(path, session, ident, to_dir / f"{ident.stem}.h5")]
    elif fmt == "c3d":
        out = _export_c3d(path, session, ident, to_dir)
    elif fmt == "csv":
        out = _export_csv(path, session, ident, to_dir)
    else:
        raise ConfigError(None, "--format", f"unknown export format {fmt!r}")
    if not keep_identity and fmt != "c3d":  # C3D parameters are checked before writing
        for p in out:
            try:
                _check_no_identity(p, ident.secrets_to_hide)
            except InputError:
                for q in out:
                    _unlink_quiet(q)
                raise
    log.info("exported %s -> %s", path, ", ".join(str(p) for p in out))
    return out


def pseudonym_secret(config_path=None) -> bytes:
    """The lab's pseudonym secret: ``[export] secret`` of the lab config, else the environment
    variable named by ``[export] secret_env`` (default ``TREADLAB_PSEUDONYM_SECRET``).

    Raises
    ------
    ConfigError
        No secret set, or one shorter than :data:`MIN_SECRET_CHARS` characters: a pseudonym
        from a guessable secret could be reversed by trying every plausible subject id.
    """
    from treadlab.config import load_lab

    cfg = load_lab(config_path)
    table = getattr(cfg, "export", None)
    secret = getattr(table, "secret", None) if table is not None else None
    env = (getattr(table, "secret_env", None) if table is not None else None) \
        or DEFAULT_SECRET_ENV
    where = str(config_path) if config_path else None
    if secret:
        key = "export.secret"
    else:
        secret, key = os.environ.get(env, ""), f"export.secret_env ({env})"
    if not secret:
        raise ConfigError(where, "export.secret",
                          f"no pseudonym secret: set the environment variable {env} (or "
                          f"[export] secret in the lab config) to a long random string, the "
                          f"same for every export of this lab, or pass --keep-identity")
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(where, key, f"pseudonym secret is {len(secret)} characters; use at "
                                      f"least {MIN_SECRET_CHARS} random characters")
    return secret.encode("utf-8")


def pseudonym(subject_id: str, secret: bytes) -> str:
    """``"sub-" + the first 16 hex digits of HMAC-SHA256(secret, subject_id)`` (UTF-8).

    Stable for one secret (one lab); a collaborator cannot recover the id without the secret.
    """
    digest = hmac.new(secret, str(subject_id).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"sub-{digest[:16]}"


def pseudonymous_session_id(session_id: str, secret: bytes) -> str:
    """A UUID (version-4 layout) from HMAC-SHA256(secret, ``"session:" + session_id``)."""
    digest = hmac.new(secret, f"session:{session_id}".encode("utf-8"), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# =============================================================================================
# identity
# =============================================================================================

@dataclass
class _Identity:
    subject_id: str
    session_id: str
    created_utc: str | None
    stem: str
    secrets_to_hide: list[str]  # strings that must not appear in an anonymised output
    keep: bool


def _identity(path: Path, attrs: dict, secret, keep_identity: bool) -> _Identity:
    subj = attrs.get("subject_id")
    sess = attrs.get("session_id")
    created = attrs.get("created_utc")
    if keep_identity:
        stem = _safe_name(path.stem)
        return _Identity(str(subj) if subj is not None else "", str(sess or ""),
                         None if created is None else str(created), stem, [], True)
    if subj is None or str(subj) == "":
        raise InputError(path, "/@subject_id", "missing: nothing to pseudonymise from")
    if sess is None or str(sess) == "":
        raise InputError(path, "/@session_id", "missing: nothing to pseudonymise from")
    subj, sess = str(subj), str(sess)
    pseudo = pseudonym(subj, secret)
    pseudo_sess = pseudonymous_session_id(sess, secret)
    day = _day(created)
    hide = [subj, sess]
    if created is not None and day != str(created):
        hide.append(_time_of_day(str(created)))
    return _Identity(pseudo, pseudo_sess, day, f"{pseudo}_ses-{pseudo_sess[:8]}",
                     [h for h in hide if h], False)


#: The closed vocabulary of ``/reference/events`` kinds an anonymised export keeps; any other
#: event (a free-text label may hold a name or a date of birth) is dropped and counted.
EVENT_KINDS = ("foot_strike", "foot_off")
_EVENT_NAMES = {"foot_strike": "Foot Strike", "foot_off": "Foot Off"}
_SIDE_NAMES = {0: "Left ", 1: "Right "}


def _strip_prefix(label) -> str:
    """``"Jane Doe:LASI"`` → ``"LASI"`` (Vicon puts the subject name before a colon)."""
    text = str(label)
    return text.rsplit(":", 1)[-1].strip() or "POINT"


def _scrub_free_text(session):
    """``(session, notes, hide)``: a copy with subject prefixes removed from marker and
    reference-point labels and reference events reduced to :data:`EVENT_KINDS`; ``notes`` says
    what was dropped (counts only); ``hide`` the removed texts that must not survive export."""
    import dataclasses

    notes, hide = [], []
    mk = session.markers
    labels = [str(lb) for lb in mk.labels]
    prefixes = sorted({lb.rsplit(":", 1)[0].strip() for lb in labels if ":" in lb} - {""})
    new_labels = _unique_labels([_strip_prefix(lb) for lb in labels])
    if new_labels != labels:
        notes.append(f"the subject prefix of {sum(a != b for a, b in zip(labels, new_labels))} "
                     f"marker label(s)")
        mk = dataclasses.replace(mk, labels=new_labels)
    reference = session.reference
    if reference:
        reference = dict(reference)
        pts = reference.get("points") or {}
        keys = [str(k) for k in pts]
        prefixes = sorted(set(prefixes) | {k.rsplit(":", 1)[0].strip() for k in keys
                                           if ":" in k} - {""})
        new_keys = _unique_labels([_strip_prefix(k) for k in keys])
        if new_keys != keys:
            notes.append(f"the subject prefix of {sum(a != b for a, b in zip(keys, new_keys))} "
                         f"model-output label(s)")
        reference["points"] = {n: v for n, v in zip(new_keys, pts.values())}
        for k in ("point_kinds", "point_units"):
            reference.pop(k, None)
        ev = reference.get("events")
        if ev and len(np.atleast_1d(ev.get("time", []))):
            kinds = [str(k) for k in ev.get("kind", [])]
            side = np.asarray(ev.get("side", np.full(len(kinds), -1)), dtype=np.int8)
            keep = np.array([k in EVENT_KINDS for k in kinds], dtype=bool)
            for k in list(kinds) + [str(x) for x in ev.get("source", [])]:
                if k not in EVENT_KINDS and len(k) >= 8:
                    hide.append(k)
            n_drop = int((~keep).sum())
            if n_drop:
                notes.append(f"{n_drop} reference event(s) outside the closed vocabulary "
                             f"({', '.join(EVENT_KINDS)})")
            idx = np.flatnonzero(keep)
            reference["events"] = {
                "time": np.asarray(ev["time"], dtype=np.float64)[idx],
                "side": side[idx],
                "kind": [kinds[i] for i in idx],
                "source": [_SIDE_NAMES.get(int(side[i]), "") + _EVENT_NAMES[kinds[i]]
                           for i in idx]}
            if not len(idx):
                reference.pop("events")
        elif ev is not None:
            reference.pop("events")
    hide.extend(p for p in prefixes if len(p) >= 2)
    for key, value in (session.subject or {}).items():
        if isinstance(value, (str, bytes)) and len(str(value)) >= 6:
            hide.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    src = session.attrs.get("source_file")
    if isinstance(src, str) and len(Path(src).stem) >= 4:
        hide.append(Path(src).stem)
    return dataclasses.replace(session, markers=mk, reference=reference), notes, hide


def _unique_labels(labels: list[str]) -> list[str]:
    """Labels made unique by a ``_2``, ``_3`` … suffix (two subjects' LASI after stripping)."""
    seen: dict[str, int] = {}
    out = []
    for lb in labels:
        n = seen.get(lb, 0) + 1
        seen[lb] = n
        out.append(lb if n == 1 else f"{lb}_{n}")
    return out


def _day(value) -> str | None:
    """An ISO 8601 time coarsened to its UTC day (``"2026-11-24"``); None when unparseable."""
    if value is None:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return t.date().isoformat()


def _time_of_day(value: str) -> str:
    """``"22:01:30"`` of ``"2026-11-24T22:01:30+00:00"`` (the part that must not survive)."""
    m = re.search(r"[T ](\d{2}:\d{2}(:\d{2})?)", value)
    return m.group(1) if m else ""


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "session"


def _check_no_identity(path: Path, hide: list[str], strings=None) -> None:
    """Walk every attribute, object name and string value of an exported file (HDF5 or CSV;
    ``strings`` of a C3D about to be written) and refuse it when an identifier survives.
    Identifiers of fewer than 4 characters are only matched as whole values (a short id would
    otherwise match ordinary text)."""
    hide = [h for h in hide if h]
    if not hide:
        return
    for where, text in (_strings_of(path) if strings is None else strings):
        for h in hide:
            if (len(h) >= 4 and h in text) or text == h:
                raise InputError(path, where, "an identifier of the source session survived "
                                              "export; file removed")


def _strings_of(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".h5":
        with h5py.File(path, "r") as f:
            out = []

            def attrs_of(obj, name):
                for key, value in obj.attrs.items():
                    out.append((f"{name}@{key}", key))
                    for s in _text_values(value):
                        out.append((f"{name}@{key}", s))

            attrs_of(f, "/")

            def visit(name, obj):
                out.append(("/" + name, name))
                attrs_of(obj, "/" + name)
                if isinstance(obj, h5py.Dataset) and h5py.check_string_dtype(obj.dtype):
                    for s in np.asarray(obj.asstr()[()], dtype=object).ravel():
                        out.append(("/" + name, str(s)))

            f.visititems(visit)
            yield from out
    else:
        yield path.name, path.read_text(encoding="utf-8")
        yield path.name, path.name


def _c3d_strings(c, name: str):
    """(where, text) of every parameter name, string value and description of an ezc3d
    object, and the file name."""
    yield name, name
    for group, params in c["parameters"].items():
        yield group, group
        for key, p in params.items():
            if key == "__METADATA__":
                continue
            yield f"{group}:{key}", key
            for s in _text_values(p.get("value")):
                yield f"{group}:{key}", s
            yield f"{group}:{key}", str(p.get("description", ""))


def _text_values(value):
    if isinstance(value, (bytes, np.bytes_)):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _text_values(v)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "SOU":
        for v in value.ravel():
            yield from _text_values(v)


def _chmod_default(p) -> None:
    """Give a file made by ``mkstemp`` (mode 0600) the usual mode under the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(p, 0o666 & ~mask)


def _unlink_quiet(p) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


# =============================================================================================
# HDF5
# =============================================================================================

def _anonymised_session(session, ident: _Identity):
    """A copy of ``session`` holding only what the allow-lists name."""
    from treadlab.acquisition.archive import ForceData, MarkerData, Session

    attrs = {k: v for k, v in session.attrs.items() if k in ROOT_ATTRS}
    attrs["subject_id"] = ident.subject_id
    attrs["session_id"] = ident.session_id
    if ident.created_utc is not None:
        attrs["created_utc"] = ident.created_utc
    else:
        attrs.pop("created_utc", None)
    fo, mk = session.force, session.markers
    cal = None
    if fo.calibration:
        cal = {k: v for k, v in fo.calibration.items() if k in CALIBRATION_KEYS}
    force = ForceData(time=fo.time, wrench=fo.wrench, rate_hz=fo.rate_hz,
                      plates=[str(p) for p in fo.plates], origin=fo.origin, corners=fo.corners,
                      counts=fo.counts, calibration=cal or None,
                      device_time=fo.device_time if ident.keep else None)
    markers = MarkerData(time=mk.time, positions=mk.positions,
                         labels=[str(lb) for lb in mk.labels], rate_hz=mk.rate_hz,
                         device_time=mk.device_time if ident.keep else None)
    events = [(t, "", k, "") for t, _s, k, _d in session.log if k in LOG_KINDS]
    subject = {k: v for k, v in session.subject.items()
               if k in SUBJECT_ATTRS and _is_number(v)}
    truth = None
    if session.truth:
        params = {k: v for k, v in (session.truth.get("params") or {}).items()
                  if _is_number(v) or v in TRUTH_STR_VALUES.get(k, ())}
        steps = {k: np.asarray(v) for k, v in (session.truth.get("steps") or {}).items()
                 if np.asarray(v).dtype.kind in "biuf"}
        truth = {"params": params, "steps": steps}
    reference = None
    if session.reference:
        reference = {}
        ev = session.reference.get("events")
        if ev and len(np.atleast_1d(ev.get("time", []))):
            reference["events"] = {k: ev[k] for k in ("time", "side", "kind", "source")
                                   if k in ev}
        pts = session.reference.get("points")
        if pts:
            reference["points"] = {str(k): np.asarray(v, dtype=np.float32)
                                   for k, v in pts.items()}
        reference = reference or None
    return Session(attrs=attrs, force=force, markers=markers, log=events, subject=subject,
                   truth=truth, reference=reference)


def _anonymised_derived(derived: dict | None, keep: bool):
    """``(derived, attrs)`` reduced to the allow-listed columns and attributes."""
    from treadlab.acquisition.archive import DERIVED_UNITS
    from treadlab.pipeline.derive import CONTACT_COLUMNS
    from treadlab.pipeline.scoring import SCORE_COLUMNS

    if not derived:
        return None, {}
    attrs = {}
    for key, value in (derived.get("attrs") or {}).items():
        if key == "processed_utc":
            attrs[key] = value if keep else _day(value)
        elif key in DERIVED_STR_ATTRS or _is_number(value, arrays=True):
            attrs[key] = value
    out = {}
    contacts = derived.get("contacts")
    if contacts:
        allowed = set(CONTACT_COLUMNS) | set(DERIVED_UNITS) | {
            "plate", "loading_rate_fallback", "trunk_lean_midstance", "pelvis_tilt_mean",
            "peak_hip_extension_source"}
        out["contacts"] = {k: v for k, v in contacts.items()
                           if k in allowed and np.asarray(v).dtype.kind in "biuf"}
    scores = derived.get("scores")
    if scores:
        out["scores"] = {k: v for k, v in scores.items() if k in SCORE_COLUMNS}
    angles = derived.get("angles")
    if angles:
        out["angles"] = {"time": angles["time"], "values": angles["values"],
                         "names": [str(n) for n in angles["names"]],
                         "reasons": dict(angles.get("reasons") or {})}
    return out, attrs


def _is_number(value, arrays: bool = False) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    if arrays and isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return True
    return False


def _export_hdf5(src: Path, session, ident: _Identity, out: Path) -> Path:
    from treadlab.acquisition import archive as ar

    anon = _anonymised_session(session, ident)
    derived, dattrs = _anonymised_derived(session.derived, ident.keep)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", libver=ar.LIBVER) as f:
            ar._write_session_into(f, anon)
            if "created_utc" not in anon.attrs and "created_utc" in f.attrs:
                del f.attrs["created_utc"]  # the writer fills in now; the source had no date
            if derived:
                ar._write_derived_into(f, derived, dattrs)
            f.attrs["exported_utc"] = (datetime.now(timezone.utc).isoformat(timespec="seconds")
                                       if ident.keep else
                                       datetime.now(timezone.utc).date().isoformat())
            f.attrs["export_anonymised"] = np.uint8(not ident.keep)
            if not ident.keep:
                f.attrs["export_pseudonym_method"] = (
                    "subject_id = 'sub-' + HMAC-SHA256(lab secret, subject id)[:16 hex]; "
                    "session_id = UUID from HMAC-SHA256(lab secret, 'session:' + session id); "
                    "dates coarsened to the day")
            _write_schema(f)
        _chmod_default(tmp)
        os.replace(tmp, out)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return out


#: What each kept object holds (the ``/schema`` descriptions); keys are HDF5 paths.
DESCRIPTIONS = {
    "/": "treadlab.session v1 archive of one instrumented treadmill-running session. Lab frame: "
         "X = direction of travel, Y = left, Z = up; positions mm, forces N, moments N*m, "
         "times float64 s on the session clock, angles deg.",
    "/raw": "recorded streams",
    "/raw/force": "force-plate stream",
    "/raw/force/time": "sample times on the session clock",
    "/raw/force/wrench": "[Fx, Fy, Fz, Mx, My, Mz] per plate: the ground reaction acting on the "
                         "body (Fz > 0 in stance, Fx < 0 while braking), lab frame, moments "
                         "about each plate's origin (attribute origin, mm)",
    "/raw/force/plate": "plate names (dimension)",
    "/raw/force/component": "wrench component names (dimension)",
    "/raw/force/counts": "raw ADC counts per channel, before calibration",
    "/raw/force/channel": "ADC channel index (dimension)",
    "/raw/force/calibration": "calibration used to turn counts into the wrench",
    "/raw/force/calibration/volts_per_count": "ADC resolution",
    "/raw/force/calibration/zero": "zero offset (tare) per channel",
    "/raw/force/calibration/channels": "device channel index of each plate's 6 inputs",
    "/raw/force/calibration/matrix": "6x6 volts -> wrench matrix per plate",
    "/raw/markers": "motion-capture marker stream",
    "/raw/markers/time": "frame times on the session clock",
    "/raw/markers/positions": "marker positions, lab frame; NaN = occluded",
    "/raw/markers/label": "marker names (dimension; CGM / Plug-in Gait names where known)",
    "/raw/markers/axis": "X, Y, Z (dimension)",
    "/raw/log": "acquisition events (drops, resyncs, reconnects); time and kind only",
    "/raw/log/time": "event time on the session clock",
    "/raw/log/kind": "event kind",
    "/raw/log/source": "emptied on export",
    "/raw/log/detail": "emptied on export",
    "/subject": "anthropometrics used by the joint model (attributes, mm)",
    "/derived": "pipeline output (attributes: pipeline version, config hash, filter settings, "
                "body weight, reference set)",
    "/derived/contacts": "one row per foot contact",
    "/derived/contacts/contact": "contact index (dimension)",
    "/derived/contacts/side": "0 left, 1 right",
    "/derived/contacts/t_strike": "foot strike time",
    "/derived/contacts/t_off": "toe-off time",
    "/derived/contacts/contact_time": "stance duration",
    "/derived/contacts/flight_time": "flight before the next contact",
    "/derived/contacts/peak_vgrf": "peak vertical ground reaction, body weights",
    "/derived/contacts/loading_rate": "vertical average loading rate (20-80 % of impact peak)",
    "/derived/contacts/loading_rate_fallback": "1 when the fixed-time window was used",
    "/derived/contacts/peak_braking": "most negative fore-aft force over stance",
    "/derived/contacts/braking_impulse": "integral of min(Fx, 0) over stance",
    "/derived/contacts/propulsive_impulse": "integral of max(Fx, 0) over stance",
    "/derived/contacts/pelvic_drop": "contralateral pelvic drop over stance",
    "/derived/contacts/trunk_lean": "mean forward trunk lean over stance",
    "/derived/contacts/trunk_lean_midstance": "forward trunk lean at midstance",
    "/derived/contacts/overstride": "horizontal heel lead over the pelvis centre at strike",
    "/derived/contacts/shank_angle_ic": "shank angle at initial contact (ankle ahead of knee +)",
    "/derived/contacts/peak_hip_extension": "peak hip extension, midstance to toe off",
    "/derived/contacts/valid": "1 when the contact passed every check",
    "/derived/contacts/flags": "bit flags of the contact checks",
    "/derived/angles": "joint and segment angles (Plug-in Gait left-side sign conventions)",
    "/derived/angles/time": "frame times on the session clock",
    "/derived/angles/angle": "angle names (dimension)",
    "/derived/angles/values": "angles per frame; NaN where not computable (reasons attribute)",
    "/derived/scores": "the four cause scores (METRICS.md section 4)",
    "/derived/scores/cause": "cause name (dimension)",
    "/derived/scores/score": "0-100, higher = stronger contributor; NaN = not scored",
    "/derived/scores/value": "median of the cause metric over both sides",
    "/derived/scores/value_left": "median over left steps",
    "/derived/scores/value_right": "median over right steps",
    "/derived/scores/unit": "unit of value, value_left, value_right and the normal band",
    "/derived/scores/normal_low": "lower edge of the reference band",
    "/derived/scores/normal_high": "upper edge of the reference band",
    "/derived/scores/n_steps": "steps with the metric measured",
    "/derived/scores/z": "z-score against the reference set (worse = positive)",
    "/derived/scores/status": "scored, or why not",
    "/truth": "simulator ground truth (synthetic sessions only)",
    "/reference": "what the source recording software stored (events, model outputs), for "
                  "validation only",
    "/schema": "this description (JSON)",
}


def _write_schema(f: h5py.File) -> None:
    """Describe every group, dataset and attribute of ``f`` as JSON in the ``/schema`` dataset."""
    from treadlab.acquisition.archive import _from_attr

    skip = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid"}

    def attr_doc(obj, path):
        out = {}
        for key, value in obj.attrs.items():
            if key in skip:
                continue
            v = _from_attr(value)
            entry = {"type": type(v).__name__ if not isinstance(v, np.ndarray)
                     else f"array{list(v.shape)} {v.dtype}"}
            if path == "/" and key in ROOT_ATTRS:
                entry["description"] = ROOT_ATTRS[key]
            out[key] = entry
        return out

    objects = {"/": {"kind": "group", "description": DESCRIPTIONS["/"],
                     "attributes": attr_doc(f, "/")}}

    def visit(name, obj):
        path = "/" + name
        entry = {"kind": "group" if isinstance(obj, h5py.Group) else "dataset"}
        if path in DESCRIPTIONS:
            entry["description"] = DESCRIPTIONS[path]
        elif path.startswith("/reference/points/"):
            entry["description"] = "model output stored by the recording software"
        elif path.startswith("/truth/"):
            entry["description"] = "true value the synthetic runner was made with"
        if isinstance(obj, h5py.Dataset):
            entry["shape"] = list(obj.shape)
            entry["dtype"] = "string" if h5py.check_string_dtype(obj.dtype) else str(obj.dtype)
            entry["units"] = str(_from_attr(obj.attrs.get("units", "")))
            dims = []
            for d in obj.dims:
                dims.append(d[0].name.rsplit("/", 1)[-1] if len(d) else None)
            if any(dims):
                entry["dimensions"] = dims
            entry["compression"] = obj.compression
        entry["attributes"] = attr_doc(obj, path)
        objects[path] = entry

    f.visititems(visit)
    doc = {"format": "treadlab.session", "format_version": 1,
           "conventions": DESCRIPTIONS["/"],
           "anonymisation": "allow-list export: only the objects listed here were copied",
           "objects": objects}
    ds = f.create_dataset("schema", data=json.dumps(doc, indent=1, sort_keys=True),
                          dtype=h5py.string_dtype("utf-8"))
    ds.attrs["units"] = ""
    ds.attrs["content_type"] = "application/json"
    ds.attrs["description"] = DESCRIPTIONS["/schema"]


# =============================================================================================
# C3D
# =============================================================================================

def _export_c3d(src: Path, session, ident: _Identity, to_dir: Path) -> list[Path]:
    import ezc3d

    mk, fo = session.markers, session.force
    m = len(mk.time)
    if m < 2:
        raise InputError(src, "/raw/markers/time", f"{m} marker frame(s): C3D needs the marker "
                                                   "clock to carry the analog channels")
    rate = float(mk.rate_hz)
    analog_rate, ratio, resampled = _analog_rate(fo.rate_hz, rate)
    analog = _analog_channels(fo)  # (n, 6p) action on plate, N and N*mm
    # analog samples on the marker clock: frame j carries samples j*ratio .. j*ratio+ratio-1
    ta = mk.time[0] + np.arange(m * ratio) / analog_rate
    if not resampled and len(fo.time) and abs(fo.time[0] - mk.time[0]) < 0.25 / fo.rate_hz:
        idx = np.rint((ta - fo.time[0]) * fo.rate_hz).astype(np.int64)
        ok = (idx >= 0) & (idx < len(fo.time))
        a = np.zeros((len(ta), analog.shape[1]))
        a[ok] = analog[idx[ok]]
    else:
        a = np.stack([np.interp(ta, fo.time, analog[:, c], left=0.0, right=0.0)
                      for c in range(analog.shape[1])], axis=1) if len(fo.time) \
            else np.zeros((len(ta), analog.shape[1]))
    if resampled:
        log.info("%s: force resampled from %g Hz to %g Hz (%d x the marker rate)", src,
                 fo.rate_hz, analog_rate, ratio)
    events = _events(session)
    bounds, groups = _parts(mk.time, rate, [e[0] for e in events])
    n_parts = len(bounds) - 1
    if n_parts > 1:
        log.info("%s: %d frames, %d events: split into %d C3D parts (at most %d frames and %d "
                 "events each)", src, m, len(events), n_parts, C3D_MAX_FRAMES, C3D_MAX_EVENTS)
    out = []
    for part in range(n_parts):
        i0, i1 = bounds[part], bounds[part + 1]
        name = ident.stem + (f"_part{part + 1:02d}" if n_parts > 1 else "") + ".c3d"
        target = to_dir / name
        c = ezc3d.c3d()
        _fill_points(c, mk, i0, i1)
        _fill_analogs(c, fo, a[i0 * ratio:i1 * ratio], analog_rate, resampled)
        t0 = mk.time[i0]
        _fill_events(c, [(max(0.0, events[j][0] - t0),) + events[j][1:] for j in groups[part]])
        _fill_treadlab(c, session, ident, part, n_parts, float(t0), fo.rate_hz, resampled)
        if not ident.keep:
            _check_no_identity(target, ident.secrets_to_hide, _c3d_strings(c, name))
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".c3d", dir=to_dir)
        os.close(fd)
        try:
            c.write(tmp)
            _chmod_default(tmp)
            os.replace(tmp, target)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        out.append(target)
    return out


def _parts(time: np.ndarray, rate: float, event_times: list[float]):
    """Split frames ``0..m`` into the fewest equal parts with at most :data:`C3D_MAX_FRAMES`
    frames and :data:`C3D_MAX_EVENTS` events each.

    Returns ``(bounds, groups)``: part ``i`` holds frames ``bounds[i]:bounds[i+1]`` and the
    events with indices ``groups[i]`` (an event belongs to the part whose frames it falls on).
    """
    m = len(time)
    et = np.asarray(event_times, dtype=np.float64)
    frame = np.clip(np.rint((et - time[0]) * rate).astype(np.int64), 0, m - 1) if et.size \
        else np.zeros(0, np.int64)
    n = max(1, math.ceil(m / C3D_MAX_FRAMES), math.ceil(et.size / C3D_MAX_EVENTS))
    while True:
        bounds = np.linspace(0, m, n + 1).round().astype(np.int64)
        part = np.searchsorted(bounds, frame, side="right") - 1
        counts = np.bincount(part, minlength=n) if et.size else np.zeros(n, np.int64)
        if counts.max(initial=0) <= C3D_MAX_EVENTS or n >= m:
            return bounds, [np.flatnonzero(part == i) for i in range(n)]
        n += 1


def _fill_events(c, events) -> None:
    """EVENT group from ``[(time s from the part start, context, label)]``, written in one
    go (``add_event`` rebuilds the group per event) with USED stored as an integer."""
    if not events:
        return
    n = len(events)
    c.add_parameter("EVENT", "USED", [n])
    c.add_parameter("EVENT", "TIMES", np.array([[0.0] * n, [float(e[0]) for e in events]]))
    c.add_parameter("EVENT", "CONTEXTS", [e[1] for e in events])
    c.add_parameter("EVENT", "LABELS", [e[2] for e in events])
    c.add_parameter("EVENT", "DESCRIPTIONS", ["" for _ in events])
    c.add_parameter("EVENT", "SUBJECTS", ["" for _ in events])
    c.add_parameter("EVENT", "ICON_IDS", [0.0] * n)
    c.add_parameter("EVENT", "GENERIC_FLAGS", [0.0] * n)
    # add_parameter stores integers as floats (NOTES.md): assign the existing parameter
    c["parameters"]["EVENT"]["USED"]["value"] = np.array([n])


def _analog_rate(force_rate: float, marker_rate: float) -> tuple[float, int, bool]:
    """(analog rate, samples per marker frame, resampled?): the force rate when it is an integer
    multiple of the marker rate, else the next multiple above it."""
    ratio = force_rate / marker_rate
    if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
        return float(force_rate), int(round(ratio)), False
    k = max(1, math.ceil(ratio))
    return float(k * marker_rate), k, True


def _analog_channels(fo) -> np.ndarray:
    """(n, 6p) float64: per plate the force (N) and moment (N*mm) the runner applies to the
    plate, lab axes, moments about the centre of the plate surface (mean of its corners)."""
    w = np.asarray(fo.wrench, dtype=np.float64)
    n, p = w.shape[0], w.shape[1]
    out = np.zeros((n, 6 * p))
    for i in range(p):
        force = w[:, i, :3]
        moment = w[:, i, 3:]  # N*m about origin
        centre = np.asarray(fo.corners[i], dtype=np.float64).mean(axis=0)
        r = (np.asarray(fo.origin[i], dtype=np.float64) - centre) / 1000.0  # m, centre->origin
        m_centre = moment + np.cross(r, force)
        out[:, 6 * i:6 * i + 3] = -force
        out[:, 6 * i + 3:6 * i + 6] = -m_centre * 1000.0
    return np.nan_to_num(out, nan=0.0)


def _fill_points(c, mk, i0: int, i1: int) -> None:
    pos = np.asarray(mk.positions[i0:i1], dtype=np.float64)  # (f, k, 3)
    k = pos.shape[1]
    pts = np.ones((4, k, i1 - i0))
    pts[:3] = pos.transpose(2, 1, 0)
    c["parameters"]["POINT"]["RATE"]["value"] = [float(mk.rate_hz)]
    c["parameters"]["POINT"]["LABELS"]["value"] = [str(lb) for lb in mk.labels]
    c["parameters"]["POINT"]["DESCRIPTIONS"]["value"] = ["marker, lab frame"] * k
    c["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c["data"]["points"] = pts
    resid = np.zeros((1, k, i1 - i0))
    resid[0][np.isnan(pos).any(axis=2).T] = -1.0  # C3D: negative residual = invalid point
    c["data"]["meta_points"] = {"residuals": resid,
                                "camera_masks": np.zeros((7, k, i1 - i0), dtype=bool)}


def _fill_analogs(c, fo, a: np.ndarray, analog_rate: float, resampled: bool) -> None:
    p = len(fo.plates)
    labels, units, desc = [], [], []
    for i, plate in enumerate(fo.plates):
        for comp in ("Fx", "Fy", "Fz", "Mx", "My", "Mz"):
            labels.append(f"{comp}{i + 1}")
            units.append("N" if comp[0] == "F" else "Nmm")
            desc.append(f"plate {plate}: {comp} applied to the plate, lab axes"
                        + ("" if comp[0] == "F" else ", about the surface centre"))
    n = len(labels)
    ap = c["parameters"]["ANALOG"]
    ap["RATE"]["value"] = [float(analog_rate)]
    ap["LABELS"]["value"] = labels
    ap["DESCRIPTIONS"]["value"] = desc
    ap["UNITS"]["value"] = units
    ap["SCALE"]["value"] = [1.0] * n
    ap["OFFSET"]["value"] = [0] * n
    ap["GEN_SCALE"]["value"] = [1.0]
    c["data"]["analogs"] = a.T[np.newaxis, :, :].astype(np.float64)
    fp = c["parameters"]["FORCE_PLATFORM"]
    fp["USED"]["value"] = np.array([p])
    fp["TYPE"]["value"] = np.full(p, 2)
    fp["ZERO"]["value"] = np.array([0, 0])
    fp["CHANNEL"]["value"] = np.arange(1, 6 * p + 1).reshape(p, 6).T
    # C3D corner order: +x+y, -x+y, -x-y, +x-y in the plate frame; plate axes = lab axes
    corners = np.zeros((3, 4, p))
    for i in range(p):
        cr = np.asarray(fo.corners[i], dtype=np.float64)
        centre = cr.mean(axis=0)
        d = cr - centre
        order = [int(np.argmax(d[:, 0] * sx + d[:, 1] * sy))
                 for sx, sy in ((1, 1), (-1, 1), (-1, -1), (1, -1))]
        corners[:, :, i] = cr[order].T
    fp["CORNERS"]["value"] = corners
    fp["ORIGIN"]["value"] = np.zeros((3, p))


def _events(session) -> list[tuple[float, str, str]]:
    """(time s, "Left"/"Right", "Foot Strike"/"Foot Off") of the sided contacts."""
    d = session.derived or {}
    c = d.get("contacts") or {}
    if not c or "t_strike" not in c:
        log.info("session not processed: C3D written without events")
        return []
    out = []
    side = np.asarray(c.get("side"), dtype=np.int64)
    for s, ts, to in zip(side, np.asarray(c["t_strike"], float), np.asarray(c["t_off"], float)):
        if s not in (0, 1):
            continue
        context = "Left" if s == 0 else "Right"
        if np.isfinite(ts):
            out.append((float(ts), context, "Foot Strike"))
        if np.isfinite(to):
            out.append((float(to), context, "Foot Off"))
    out.sort()
    return out


def _fill_treadlab(c, session, ident, part, n_parts, t0, force_rate, resampled) -> None:
    c.add_parameter("SUBJECTS", "NAMES", [ident.subject_id or ""])
    c.add_parameter("SUBJECTS", "USED", [1.0])
    c.add_parameter("TREADLAB", "FORMAT", "treadlab.session v1 export")
    c.add_parameter("TREADLAB", "SUBJECT_ID", ident.subject_id or "")
    c.add_parameter("TREADLAB", "SESSION_ID", ident.session_id or "")
    c.add_parameter("TREADLAB", "DATE", ident.created_utc or "")
    c.add_parameter("TREADLAB", "PART", f"{part + 1} of {n_parts}")
    c.add_parameter("TREADLAB", "PART_START_S", [float(t0)])
    bm = session.attrs.get("body_mass_kg")
    if _is_number(bm):
        c.add_parameter("TREADLAB", "BODY_MASS_KG", [float(bm)])
    bs = session.attrs.get("belt_speed_m_s")
    if _is_number(bs):
        c.add_parameter("TREADLAB", "BELT_SPEED_M_S", [float(bs)])
    c.add_parameter("TREADLAB", "FRAME", "lab: X travel, Y left, Z up; mm")
    c.add_parameter("TREADLAB", "FORCE",
                    "analog Fx..Mz per plate: force and moment applied to the plate (the "
                    "negated ground reaction on the body), N and N*mm, about the plate centre"
                    + (f"; resampled from {force_rate:g} Hz" if resampled else ""))


# =============================================================================================
# CSV
# =============================================================================================

def _export_csv(src: Path, session, ident: _Identity, to_dir: Path) -> list[Path]:
    from treadlab.acquisition.archive import DERIVED_UNITS

    d = session.derived
    if not d or not d.get("contacts") or not d.get("scores"):
        raise InputError(src, "/derived", "not processed (run `treadlab process` first)")
    derived, _ = _anonymised_derived(d, ident.keep)
    out = []
    contacts = derived["contacts"]
    cols = [k for k in contacts if k != "side"]
    side = np.asarray(contacts.get("side", []), dtype=np.int64)
    rows = [["subject_id", "session_id", "side"] + [_header(k, DERIVED_UNITS.get(k)) for k in
                                                    cols]]
    for i in range(len(side)):
        rows.append([ident.subject_id, ident.session_id,
                     {0: "left", 1: "right"}.get(int(side[i]), "unknown")]
                    + [_cell(contacts[k][i]) for k in cols])
    out.append(_write_csv(to_dir / f"{ident.stem}_contacts.csv", rows))
    scores = derived["scores"]
    cols = [k for k in ("cause", "score", "status", "value", "value_left", "value_right",
                        "unit", "normal_low", "normal_high", "n_steps", "z") if k in scores]
    rows = [["subject_id", "session_id"] + cols]
    for i in range(len(scores["cause"])):
        rows.append([ident.subject_id, ident.session_id] + [_cell(scores[k][i]) for k in cols])
    out.append(_write_csv(to_dir / f"{ident.stem}_scores.csv", rows))
    return out


def _header(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit and unit not in ("1", "") else name


def _cell(v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace")
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else repr(float(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def _write_csv(path: Path, rows) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
        _chmod_default(tmp)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    return path
