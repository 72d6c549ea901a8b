"""Lab configuration: the shipped labs load, and every mistake is one ConfigError naming the key."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from treadlab.config import ConfigError, LabConfig, load_lab, shipped_lab_path
from treadlab.config.schema import build_lab, frame_bytes

CGM20 = ["LASI", "RASI", "LPSI", "RPSI", "LTHI", "LKNE", "LTIB", "LANK", "LHEE", "LTOE",
         "RTHI", "RKNE", "RTIB", "RANK", "RHEE", "RTOE", "C7", "T10", "CLAV", "STRN"]


def test_default_is_the_simulated_lab():
    cfg = load_lab()
    assert isinstance(cfg, LabConfig)
    assert cfg.source_path == shipped_lab_path("simulated") and cfg.path == cfg.source_path
    assert cfg.lab.belt == "split" and [p.name for p in cfg.plates] == ["left", "right"]
    left, right = cfg.plates
    assert left.origin[1] > 0 > right.origin[1]
    assert all(c[1] > 0 for c in left.corners) and all(c[1] < 0 for c in right.corners)
    fp = cfg.forceplate
    assert (fp.driver, fp.port, fp.baud, fp.rate_hz, fp.channels, fp.sample_type) == \
        ("forceplate_serial", "auto", 2_000_000, 1000.0, 12, "int16")
    assert fp.volts_per_count == 10 / 32768 and fp.frame_bytes == 34
    mk = cfg.markers
    assert (mk.driver, mk.host, mk.port, mk.rate_hz) == ("markers_udp", "127.0.0.1", 0, 200.0)
    assert mk.labels == CGM20
    assert (cfg.filters.force_lowpass_hz, cfg.filters.force_order) == (50.0, 4)
    assert (cfg.filters.marker_lowpass_hz, cfg.filters.marker_order) == (12.0, 4)
    assert cfg.filters.max_gap_s == 0.1 and cfg.contacts.strike_n == 50.0
    assert cfg.simulator["speed_m_s"] == 3.5 and isinstance(cfg.marker_names, dict)
    for p in cfg.plates:  # mostly diagonal: crosstalk under 2 % of the diagonal
        for i, row in enumerate(p.calibration):
            assert all(abs(v) < 0.02 * abs(row[i]) for j, v in enumerate(row) if j != i)


@pytest.mark.parametrize("name", ["simulated", "split_belt", "single_belt"])
def test_shipped_labs_load(name):
    cfg = load_lab(shipped_lab_path(name))
    assert cfg.forceplate.line_bits_per_s <= cfg.forceplate.baud
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.hash())
    assert load_lab(name).hash() == cfg.hash()


def test_example_labs():
    split = load_lab("split_belt")
    assert split.markers.driver == "markers_lsl" and len(split.plates) == 2
    single = load_lab("single_belt")
    assert single.lab.belt == "single" and len(single.plates) == 1
    assert single.forceplate.sample_type == "int32"


def test_frame_bytes_and_link_budget_message(tmp_path):
    # 2 + 2 + 4 + 12 × (2 | 4) + 2 (docs/wire.md §2: 58 for int32, not the 56 of the original notes)
    assert frame_bytes(12, "int16") == 34 and frame_bytes(12, "int32") == 58
    path = write(tmp_path, edit(forceplate={"rate_hz": 2000.0, "sample_type": "int32",
                                            "baud": 921_600}))
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: forceplate.baud: ")
    assert "58-byte" in msg and "1,160,000" in msg and "921,600" in msg
    # an LSL force stream has no baud rate to check
    load_lab(write(tmp_path, edit(forceplate={"driver": "forceplate_lsl", "rate_hz": 2000.0,
                                              "sample_type": "int32", "baud": 921_600})))


def base() -> dict:
    return tomllib.loads(shipped_lab_path("simulated").read_text())


def edit(**tables) -> dict:
    data = base()
    for table, changes in tables.items():
        if changes is None:
            del data[table]
        elif isinstance(data.get(table), dict):
            data[table].update(changes)
        else:
            data[table] = changes
    return data


def write(tmp_path: Path, data: dict, name="lab.toml") -> Path:
    path = tmp_path / name
    path.write_text(_dumps(data))
    return path


def _dumps(data: dict) -> str:
    """Just enough TOML for the tests (tables, arrays of tables, scalars, nested lists)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)
    out = []
    for table, content in data.items():
        if isinstance(content, list):
            for entry in content:
                out.append(f"[[{table}]]")
                out += [f"{k} = {value(v)}" for k, v in entry.items()]
        elif isinstance(content, dict):
            out.append(f"[{table}]")
            out += [f'"{k}" = {value(v)}' for k, v in content.items()]
        else:
            out.append(f"{table} = {value(content)}")
    return "\n".join(out) + "\n"


def plate(i, **changes):
    data = base()
    data["plates"][i].update(changes)
    return data


BAD = [
    (edit(bogus={"x": 1}), "bogus", "unknown table"),
    (edit(lab={"colour": "red"}), "lab.colour", "unknown key"),
    (edit(lab={"belt": "triple"}), "lab.belt", "split"),
    (edit(markers=None), "markers", "missing"),
    (edit(forceplate={"baud": "fast"}), "forceplate.baud", "expected integer"),
    (edit(forceplate={"rate_hz": True}), "forceplate.rate_hz", "expected number"),
    (edit(forceplate={"rate_hz": -5.0}), "forceplate.rate_hz", "outside"),
    (edit(forceplate={"sample_type": "float32"}), "forceplate.sample_type", "int16"),
    (edit(forceplate={"driver": "usb"}), "forceplate.driver", "known: forceplate_serial"),
    (edit(forceplate={"channels": 10}), "plates[1].channels[4]", "out of range 0..9"),
    (plate(1, channels=[0, 7, 8, 9, 10, 11]), "plates[1].channels[0]", "already used"),
    (plate(0, channels=[0, 1, 2]), "plates[0].channels", "needs 6"),
    (plate(0, calibration=[[1.0] * 6] * 5), "plates[0].calibration", "6×6"),
    (plate(0, calibration=[[1.0] * 5] * 6), "plates[0].calibration", "6×6"),
    (plate(0, calibration=[[1.0] * 6] * 5 + [["a"] * 6]), "plates[0].calibration[5][0]",
     "expected number"),
    (plate(0, origin=[0.0, 1.0]), "plates[0].origin", "[x, y, z]"),
    (plate(1, name="left"), "plates[1].name", "duplicate"),
    (plate(0, wheels=4), "plates[0].wheels", "unknown key"),
    (edit(plates=[base()["plates"][0]]), "plates", "split-belt lab needs 2"),
    (edit(markers={"labels": ["LASI", "LASI"]}), "markers.labels[1]", "duplicate"),
    (edit(markers={"labels": []}), "markers.labels", "at least one"),
    (edit(markers={"port": 70000}), "markers.port", "0..65535"),
    (edit(markers={"labels": [f"M{i}" for i in range(6000)]}), "markers.labels", "UDP limit"),
    (edit(markers={"labels": ["LASI", 3]}), "markers.labels[1]", "expected string"),
    (edit(contacts={"strike_n": 10.0}), "contacts.strike_n", ">= contacts.off_n"),
    (edit(filters={"force_lowpass_hz": 600.0}), "filters.force_lowpass_hz", "Nyquist"),
    (edit(filters={"marker_order": 0}), "filters.marker_order", "1..8"),
    (edit(scoring={"min_steps_per_side": 0}), "scoring.min_steps_per_side", ">= 1"),
    (edit(export={"secret_env": "not a name"}), "export.secret_env", "environment"),
    (edit(marker_names={"L.ASIS": 5}), "marker_names.L.ASIS", "marker name"),
    (edit(simulator={"speed_m_s": [1, 2]}), "simulator.speed_m_s", "expected a number"),
    (edit(simulator={"belt": "single"}), "simulator.belt", "differs from lab.belt"),
]


@pytest.mark.parametrize("data, key, why", BAD, ids=[b[1] for b in BAD])
def test_bad_config_names_file_and_key(tmp_path, data, key, why):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    assert err.value.key == key and Path(err.value.path) == path
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}: ") and why in msg and "\n" not in msg


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_lab(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lab]\nname = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML.*line 2"):
        load_lab(bad)
    with pytest.raises(ConfigError, match="directory"):
        load_lab(tmp_path)


def test_optional_tables_default(tmp_path):
    data = base()
    for table in ("contacts", "filters", "scoring", "export", "simulator", "marker_names"):
        del data[table]
    cfg = load_lab(write(tmp_path, data))
    assert cfg.contacts.off_n == 20.0 and cfg.scoring.reference == "default"
    assert cfg.simulator == {} and cfg.marker_names == {}
    assert cfg.hash() == load_lab().hash()  # same content → same digest


def test_hash_tracks_what_changes_derived_data(tmp_path):
    ref = load_lab().hash()
    # formatting, comments, order and location do not matter
    moved = tmp_path / "elsewhere.toml"
    moved.write_text("# a copy\n" + shipped_lab_path("simulated").read_text())
    assert load_lab(moved).hash() == ref
    assert build_lab(base()).hash() == ref
    # device addresses and names do not change derived data
    same = [edit(lab={"name": "other"}), edit(markers={"port": 5000}),
            edit(forceplate={"port": "/dev/ttyUSB1"}), edit(simulator={"seed": 3})]
    for data in same:
        assert build_lab(data).hash() == ref
    changed = [edit(contacts={"off_n": 25.0}), edit(filters={"marker_lowpass_hz": 10.0}),
               edit(marker_names={"L.FOO": "LASI"}), edit(scoring={"reference": "x.toml"})]
    cal = base()
    cal["plates"][0]["calibration"][2][2] = 999.0
    changed.append(cal)
    digests = {build_lab(d).hash() for d in changed}
    assert ref not in digests and len(digests) == len(changed)


_QTM = '''
[qualisys]
host = "qtm-pc"
[[qualisys.plates]]
qtm_id = 1
name = "left"
rotation = [[0, 1, 0], [1, 0, 0], [0, 0, -1]]
[[qualisys.plates]]
qtm_id = 2
name = "right"
'''

#: (what is appended to the shipped simulated lab, force driver, marker driver, key, why):
#: the vendor tables are checked when the lab is loaded, not only when a capture opens them
VENDOR_BAD = [
    (_QTM.replace('host = "qtm-pc"', 'host = "qtm-pc"\nhots = 1'), "qualisys", "qualisys",
     "qualisys.hots", "unknown key; known: host, port"),
    (_QTM.replace('host = "qtm-pc"', 'host = "qtm-pc"\nport = 0'), "qualisys", "qualisys",
     "qualisys.port", "outside 1..65535"),
    (_QTM.replace('host = "qtm-pc"', 'host = "qtm-pc"\nversion = "1.7"'), "qualisys",
     "qualisys", "qualisys.version", "qtm-rt needs >= 1.8"),
    (_QTM.replace('host = "qtm-pc"', 'host = "qtm-pc"\nanalog = "EMG"'), "qualisys",
     "qualisys", "qualisys.analog", "expected a list"),
    (_QTM.replace("[[0, 1, 0], [1, 0, 0], [0, 0, -1]]", "[[0, 2, 0], [1, 0, 0], [0, 0, -1]]"),
     "qualisys", "qualisys", "qualisys.plates[0].rotation", "3×3 rotation"),
    (_QTM.replace('name = "right"', 'name = "rihgt"'), "qualisys", "qualisys",
     "qualisys.plates[1].name", "not a [[plates]] name"),
    (_QTM.replace('qtm_id = 2\nname = "right"\n', 'qtm_id = 2\nname = "right"\nforce = "up"\n'),
     "qualisys", "qualisys", "qualisys.plates[1].force", "on_plate"),
    (_QTM.split("[[qualisys.plates]]\nqtm_id = 2")[0], "qualisys", "qualisys",
     "qualisys.plates", "no QTM plate mapped to right"),
    ("", "qualisys", "qualisys", "qualisys", "missing"),
    ('[natnet]\nserver = "motive"\ncomand_port = 1\n', None, "natnet", "natnet.comand_port",
     "unknown key"),
    ('[natnet]\nserver = "motive"\nunits_m = 0\n', None, "natnet", "natnet.units_m", "outside (0, 1e+06]"),
    ('[natnet]\nlab_from_motive = [[1, 0, 0], [0, 1, 0]]\n', None, "natnet",
     "natnet.lab_from_motive", "3×3 rotation"),
    ('[natnet]\nmulticast = "yes"\n', None, "natnet", "natnet.multicast", "true/false"),
    ("", None, "natnet", "natnet", "missing"),
    ('[treadmill]\ndriver = "woodway"\n', None, None, "treadmill.driver", "bertec"),
    ('[treadmill]\nmax_speed_m_s = 40.0\n', None, None, "treadmill.max_speed_m_s", "(0, 30]"),
    ('[treadmill]\nport = "4000"\n', None, None, "treadmill.port", "expected integer"),
]


@pytest.mark.parametrize("extra, force, markers, key, why", VENDOR_BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(VENDOR_BAD)])
def test_bad_vendor_table_names_file_and_key(tmp_path, extra, force, markers, key, why):
    text = shipped_lab_path("simulated").read_text()
    if force:
        text = text.replace('driver = "forceplate_serial"', f'driver = "{force}"', 1)
    if markers:
        text = text.replace('driver = "markers_udp"', f'driver = "{markers}"', 1)
    path = tmp_path / "lab.toml"
    path.write_text(text + extra)
    with pytest.raises(ConfigError) as err:
        load_lab(path)
    msg = str(err.value)
    assert err.value.key == key, msg
    assert msg.startswith(f"{path}: {key}: ") and why in msg and "\n" not in msg


def test_good_vendor_tables_load(tmp_path):
    text = (shipped_lab_path("simulated").read_text()
            .replace('driver = "forceplate_serial"', 'driver = "qualisys"', 1)
            .replace('driver = "markers_udp"', 'driver = "qualisys"', 1)
            + _QTM.replace('host = "qtm-pc"', 'host = "qtm-pc"\nanalog = ["EMG_1"]')
            + '[treadmill]\nhost = "auto"\n')
    path = tmp_path / "lab.toml"
    path.write_text(text)
    cfg = load_lab(path)
    assert cfg.qualisys["analog"] == ["EMG_1"] and cfg.treadmill == {"host": "auto"}
