"""Mutated C3D headers and parameters through ``treadlab import``: one line naming the file and
the byte offset or parameter, never a crash (ezc3d can die with SIGBUS on a short file), never
a session with impossible values."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.faults.conftest import run_command
from treadlab.acquisition.archive import validate_session, write_session
from treadlab.acquisition.sim.synthetic import RunnerParams, simulate_session

ezc3d = pytest.importorskip("ezc3d")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A C3D exported from a synthetic session (always), and a real recording when present."""
    tmp = tmp_path_factory.mktemp("c3d")
    s = simulate_session(RunnerParams(duration_s=3.0, seed=2))
    s.attrs["subject_id"] = "M1"
    write_session(tmp / "s.h5", s)
    run = run_command(["export", tmp / "s.h5", "--to", tmp, "--format", "c3d",
                       "--keep-identity"], expect="ok")
    assert run.code == 0, run.err
    out = [tmp / "s.c3d"]
    real = SHARED_DATA / "importer" / "Qualisys.c3d"
    if real.exists():
        out.append(real)
    return out


def _word(data, word, value):
    struct.pack_into("<H", data, 2 * (word - 1), value)


def _bytes_edit(fn):
    def mutate(src, dst):
        data = bytearray(src.read_bytes())
        fn(data)
        dst.write_bytes(bytes(data))
    return mutate


def _param_edit(group, name, value):
    def mutate(src, dst):
        c = ezc3d.c3d(str(src))
        if group not in c["parameters"] or name not in c["parameters"][group]:
            pytest.skip(f"{src.name} has no {group}:{name}")
        c["parameters"][group][name]["value"] = value(c["parameters"][group][name]["value"])
        c.write(str(dst))
    return mutate


def _label_bytes(src, dst):
    """A POINT label overwritten with bytes no text encoding gives (0xFF …)."""
    data = bytearray(src.read_bytes())
    start = (data[0] - 1) * 512
    for label in (b"LASI", b"RASI", b"LTOE"):
        i = data.find(label, start)
        if i > 0:
            data[i:i + 4] = b"\xff\xfe\xff\xfe"
            break
    dst.write_bytes(bytes(data))


def _data_end(data) -> int:
    """Bytes the header's frames need (data start block, frames, points, analog samples)."""
    n_points, n_analog, first, last = struct.unpack_from("<HHHH", data, 2)
    data_block = struct.unpack_from("<H", data, 16)[0]
    per = 4 if data[15] & 0x80 else 2
    return (data_block - 1) * 512 + (last - first + 1) * (4 * n_points + n_analog) * per


MUTATIONS = {
    "data_start_in_header": (_bytes_edit(lambda d: _word(d, 9, 1)), "fail"),
    "data_start_in_parameters": (_bytes_edit(lambda d: _word(d, 9, d[0])), "fail"),
    "one_byte_short_of_the_data": (
        lambda s, d: d.write_bytes(s.read_bytes()[:_data_end(s.read_bytes()) - 1]), "fail"),
    "half": (lambda s, d: d.write_bytes(s.read_bytes()[:len(s.read_bytes()) // 2]), "fail"),
    "header_only": (lambda s, d: d.write_bytes(s.read_bytes()[:512]), "fail"),
    "key_byte": (_bytes_edit(lambda d: d.__setitem__(1, 0x51)), "fail"),
    "parameter_block_zero": (_bytes_edit(lambda d: d.__setitem__(0, 0)), "fail"),
    "parameter_block_far": (_bytes_edit(lambda d: d.__setitem__(0, 250)), "fail"),
    "frames_huge": (_bytes_edit(lambda d: _word(d, 5, 65000)), "fail"),
    "analog_scale_zero": (_param_edit("ANALOG", "SCALE", lambda v: np.zeros_like(v)), "fail"),
    "gen_scale_zero": (_param_edit("ANALOG", "GEN_SCALE", lambda v: [0.0]), "fail"),
    "corners_nan": (_param_edit("FORCE_PLATFORM", "CORNERS",
                                lambda v: np.full_like(np.asarray(v, float), np.nan)), "fail"),
    # ezc3d takes the rate from POINT:RATE: a zero in the header alone leaves a readable file
    "header_rate_zero": (_bytes_edit(lambda d: struct.pack_into("<f", d, 20, 0.0)), "any"),
    "undecodable_label": (_label_bytes, "any"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_import_of_a_mutated_c3d(sources, tmp_path, mutation):
    fn, expect = MUTATIONS[mutation]
    for src in sources:
        bad = tmp_path / f"{src.stem}-{mutation}.c3d"
        fn(src, bad)
        out = tmp_path / f"{src.stem}-{mutation}.h5"
        run = run_command(["import", bad, "-o", out, "--body-mass", "70"], inputs=[bad],
                          expect=expect, subprocess_=mutation in ("one_byte_short_of_the_data", "half"))
        assert not run.problems, (src.name, run.problems, run.err)
        if run.code == 1:
            assert bad.name in run.err
            assert not out.exists()
        else:
            assert validate_session(out) == []
