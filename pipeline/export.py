"""Export sessions for collaborating labs (``treadlab export``, docs/design.md §7).

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
    Markers, analog force channels and contact events, written by
    :func:`treadlab.acquisition.io.c3d_export.write_c3d` (beside the C3D import).
``csv``
    ``…_contacts.csv`` (one row per contact) and ``…_scores.csv`` (one row per cause), plus
    ``…_scores_by_speed.csv`` (one row per cause and belt-speed plateau) when the session has
    ``/derived/scores_by_speed``; units in the column headers.

The output file name is derived from the pseudonym (``sub-<16 hex>_ses-<8 hex>``), or from
the source file name with ``keep_identity``.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from treadlab.acquisition.archive import (DERIVED_UNITS, FORMAT_VERSION, LIBVER, ForceData,
                                          MarkerData, Session,
                                          atomic_write, from_attr, read_session,
                                          write_derived_into, write_session_into)
from treadlab.acquisition.archive.atomic import atomic_h5, unlink_quiet
from treadlab.acquisition.capture.recorder import require_finished
from treadlab.acquisition.io.c3d_export import text_values, write_c3d
from treadlab.config import load_lab
from treadlab.config.errors import ConfigError, InputError, TreadlabError
from treadlab.pipeline.derive import CONTACT_COLUMNS
from treadlab.pipeline.scoring import BY_SPEED_COLUMNS, SCORE_COLUMNS

log = logging.getLogger(__name__)

FORMATS = ("hdf5", "c3d", "csv")
#: Environment variable holding the pseudonym secret when the lab config names none.
DEFAULT_SECRET_ENV = "TREADLAB_PSEUDONYM_SECRET"
#: Shortest secret accepted: a short secret over a guessable id format can be brute-forced.
MIN_SECRET_CHARS = 16

#: Root attributes copied (docs/archive.md §2), with what each holds. Nothing else is copied.
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

@dataclass
class ExportResult:
    """What :func:`export_sessions` did: the files written, one line per failed session and
    one line per kind of text an anonymised export dropped (counts, never the text)."""

    written: list[Path]
    failed: list[str]
    dropped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every session was exported."""
        return not self.failed


def export_sessions(paths, to_dir, fmt: str = "hdf5", keep_identity: bool = False,
                    config_path=None) -> ExportResult:
    """Export sessions for a collaborating lab (``treadlab export``).

    One session that cannot be exported never stops the others: its one-line reason is
    collected in :attr:`ExportResult.failed` (the CLI prints it and exits 1).

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
    ExportResult

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
    result = ExportResult([], [])
    for path in paths:
        notes: list[str] = []
        try:
            result.written += export_session(path, to_dir, fmt=fmt, secret=secret,
                                             keep_identity=keep_identity, notes=notes)
        except TreadlabError as exc:
            result.failed.append(str(exc))
        except OSError as exc:  # the file system refused this session's files
            msg = str(exc).strip().splitlines()
            result.failed.append(f"{path}: {type(exc).__name__}: {msg[0] if msg else ''}")
            continue
        result.dropped += [f"{path}: export dropped {note}" for note in notes]
    return result


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
    path = Path(path)
    if not keep_identity and not secret:
        raise ConfigError(None, "export.secret", "no pseudonym secret given")
    require_finished(path)
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
        check = None if ident.keep else (
            lambda target, strings: _check_no_identity(target, ident.secrets_to_hide, strings))
        out = write_c3d(session, to_dir, ident.stem, subject_id=ident.subject_id,
                        session_id=ident.session_id, date=ident.created_utc, source=path,
                        check=check)
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
                    unlink_quiet(q)
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
                    for s in text_values(value):
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


# =============================================================================================
# HDF5
# =============================================================================================

def _anonymised_session(session, ident: _Identity):
    """A copy of ``session`` holding only what the allow-lists name."""
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
    by_speed = derived.get("scores_by_speed")
    if by_speed:
        out["scores_by_speed"] = {k: v for k, v in by_speed.items() if k in BY_SPEED_COLUMNS}
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
    anon = _anonymised_session(session, ident)
    derived, dattrs = _anonymised_derived(session.derived, ident.keep)
    with atomic_h5(out, libver=LIBVER) as f:
        write_session_into(f, anon)
        if "created_utc" not in anon.attrs and "created_utc" in f.attrs:
            del f.attrs["created_utc"]  # the writer fills in now; the source had no date
        if derived:
            write_derived_into(f, derived, dattrs)
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
    return out


#: What each kept object holds (the ``/schema`` descriptions); keys are HDF5 paths.
DESCRIPTIONS = {
    "/": "treadlab.session v2 archive of one instrumented treadmill-running session. Lab frame: "
         "X = direction of travel, Y = left, Z = up; positions mm, forces N, moments N*m, "
         "times float64 s on the session clock, angles deg.",
    "/raw": "recorded streams",
    "/raw/force": "force-plate stream",
    "/raw/force/time": "sample times on the session clock",
    "/raw/force/wrench": "[Fx, Fy, Fz, Mx, My, Mz] per plate: the ground reaction acting on the "
                         "body (Fz > 0 in stance, Fx < 0 while braking), lab frame, moments "
                         "about each plate's origin (dataset origin, mm)",
    "/raw/force/origin": "point about which each plate's moments are expressed, lab frame, mm",
    "/raw/force/corners": "plate corners, lab frame, mm",
    "/raw/force/xyz": "lab axis names (dimension)",
    "/raw/force/corner": "plate corner index (dimension)",
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
    "/derived/contacts/belt_speed": "mean speed of the belt under the foot over its stance "
                                    "(from /raw/belt, else the session's belt_speed_m_s)",
    "/derived/contacts/belt_steady": "1 when that belt's speed varied by less than 0.05 m/s "
                                     "over the stride around the contact",
    "/derived/angles": "joint and segment angles (Plug-in Gait left-side sign conventions)",
    "/derived/angles/time": "frame times on the session clock",
    "/derived/angles/angle": "angle names (dimension)",
    "/derived/angles/values": "angles per frame; NaN where not computable (reasons attribute)",
    "/derived/scores": "the four cause scores (docs/metrics.md §4)",
    "/derived/scores/cause": "cause name (dimension)",
    "/derived/scores/score": "0-100, higher = stronger contributor; NaN = not scored",
    "/derived/scores/value": "median of the cause metric over both sides",
    "/derived/scores/value_left": "median over left steps",
    "/derived/scores/value_right": "median over right steps",
    "/derived/scores/unit": "unit of value, value_left, value_right and the normal band",
    "/derived/scores/normal_low": "lower edge of the reference band",
    "/derived/scores/normal_high": "upper edge of the reference band",
    "/derived/scores/n_steps": "steps the score rests on (measured; for a speed-conditioned "
                               "cause, on a steady belt within the reference speeds)",
    "/derived/scores/z": "z-score against the reference set (worse = positive)",
    "/derived/scores/status": "scored, or why not",
    "/derived/scores_by_speed": "the cause scores per belt-speed plateau (steady steps grouped "
                                "by belt speed rounded to 0.1 m/s; docs/scoring.md)",
    "/derived/scores_by_speed/row": "row index (dimension)",
    "/derived/scores_by_speed/speed_m_s": "the plateau's belt speed",
    "/truth": "simulator ground truth (synthetic sessions only)",
    "/reference": "what the source recording software stored (events, model outputs), for "
                  "validation only",
    "/schema": "this description (JSON)",
}


def _write_schema(f: h5py.File) -> None:
    """Describe every group, dataset and attribute of ``f`` as JSON in the ``/schema`` dataset."""
    skip = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid"}

    def attr_doc(obj, path):
        out = {}
        for key, value in obj.attrs.items():
            if key in skip:
                continue
            v = from_attr(value)
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
            entry["units"] = str(from_attr(obj.attrs.get("units", "")))
            dims = []
            for d in obj.dims:
                dims.append(d[0].name.rsplit("/", 1)[-1] if len(d) else None)
            if any(dims):
                entry["dimensions"] = dims
            entry["compression"] = obj.compression
        entry["attributes"] = attr_doc(obj, path)
        objects[path] = entry

    f.visititems(visit)
    doc = {"format": "treadlab.session", "format_version": FORMAT_VERSION,
           "conventions": DESCRIPTIONS["/"],
           "anonymisation": "allow-list export: only the objects listed here were copied",
           "objects": objects}
    ds = f.create_dataset("schema", data=json.dumps(doc, indent=1, sort_keys=True),
                          dtype=h5py.string_dtype("utf-8"))
    ds.attrs["units"] = ""
    ds.attrs["content_type"] = "application/json"
    ds.attrs["description"] = DESCRIPTIONS["/schema"]


# =============================================================================================
# CSV
# =============================================================================================

def _export_csv(src: Path, session, ident: _Identity, to_dir: Path) -> list[Path]:
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
    by_speed = derived.get("scores_by_speed")
    if by_speed:
        cols = ["speed_m_s"] + cols
        rows = [["subject_id", "session_id", "speed_m_s [m/s]"] + cols[1:]]
        for i in range(len(by_speed["cause"])):
            rows.append([ident.subject_id, ident.session_id]
                        + [_cell(by_speed[k][i]) for k in cols if k in by_speed])
        out.append(_write_csv(to_dir / f"{ident.stem}_scores_by_speed.csv", rows))
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
    with atomic_write(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    return path
