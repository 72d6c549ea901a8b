"""The station records QTM's analog channels (``[qualisys] analog``) in ``/raw/analog``, as
capture does: a real ``treadlab station`` process reading the QTM emulator (its own process,
qtm-rt over loopback TCP) for force, markers and two analog channels; one short static trial;
``treadlab inspect`` lists the channels with their units."""
from __future__ import annotations

import numpy as np
import h5py
import pytest

from treadlab.acquisition.archive import format_inspection, inspect_session, validate_session
from treadlab.acquisition.sim.emulated import emulated_lab_config
from treadlab.config import load_lab
from treadlab.config.loader import shipped_lab_path

from .conftest import trial_done, wait_healthy

pytestmark = pytest.mark.timeout(150)

CHANNELS = ["EMG_1", "Trigger"]


def qtm_lab_toml(folder):
    """The shipped simulated lab read through the QTM emulator, with two analog channels."""
    text = shipped_lab_path("simulated").read_text(encoding="utf-8")
    table = emulated_lab_config(load_lab(None), "qtm").qualisys
    text = (text.replace('driver = "forceplate_serial"', 'driver = "qualisys"')
            .replace('driver = "markers_udp"', 'driver = "qualisys"'))
    lines = ["", "[qualisys]", 'host = "auto"',
             "analog = [" + ", ".join(f'"{c}"' for c in CHANNELS) + "]"]
    for p in table["plates"]:
        lines += ["", "[[qualisys.plates]]", f"qtm_id = {int(p['qtm_id'])}",
                  f'name = "{p["name"]}"', f"rotation = {np.asarray(p['rotation']).tolist()}",
                  f"moment_origin = {np.asarray(p['moment_origin']).tolist()}",
                  f'force = "{p["force"]}"']
    path = folder / "lab_qtm.toml"
    path.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_station_records_qtm_analog_channels(tmp_path, station_factory):
    st = station_factory(config=qtm_lab_toml(tmp_path))
    state = wait_healthy(st, 60)
    analog = state["health"]["analog"]
    assert analog["channels"] == CHANNELS and analog["units"] == ["mV", "V"]
    assert st.call("POST", "/api/runner", {"id": "A01", "body_mass_kg": 70,
                                           "leg_length_mm": 900})[0] == 200
    code, meta = st.call("POST", "/api/trials", {"kind": "static", "duration_s": 3})
    assert code == 201, meta
    trial_done(st, meta["id"], timeout=60)
    path = tmp_path / "data" / "A01" / (meta["id"].split("/")[1] + ".h5")
    assert validate_session(path) == []
    with h5py.File(path, "r") as f:
        g = f["raw/analog"]
        assert list(g["channel"].asstr()[()]) == CHANNELS
        assert list(g["unit"].asstr()[()]) == ["mV", "V"]
        seq = g["seq"][()]
        rate = float(g.attrs["rate_hz"])
        assert g["data"].shape == (len(seq), 2) and len(seq) > 2.5 * rate
        assert np.all(np.diff(seq) == 1)
        assert np.nanmax(g["data"][:, 1]) == 5.0            # the emulator's sync pulses
    assert "not recorded by the station" not in st.log.read_text()
    text = format_inspection(inspect_session(path))
    assert "analog " in text and "EMG_1 (mV), Trigger (V)" in text, text
    assert "gaps 0" in text.split("analog", 1)[1].splitlines()[0], text
