"""The control channel: JSON lines on a loopback socket, and its Python client."""

from __future__ import annotations

import json
import socket
import time

import pytest
from pymodbus.client import ModbusSerialClient

from simulator.control import SimClient, SimError
from simulator.tests.conftest import LAMPS_AND_METER


@pytest.fixture
def site(make_site):  # type: ignore[no-untyped-def]
    return make_site(LAMPS_AND_METER, speed=60.0)


def test_list_time_and_truth(site) -> None:  # type: ignore[no-untyped-def]
    with SimClient(site.describe()["control"]) as sim:
        devices = {d["id"]: d for d in sim.devices()}
        assert devices["meter"] == {"id": "meter", "protocol": "modbus", "address": 10,
                                    "profile": "dtsu666", "kind": "electricity_meter", "bus": "street",
                                    "faults": {}}
        now = sim.time()
        assert now["speed"] == 60.0 and now["sim"] == pytest.approx(site.clock.sim(now["wall"]))
        # truth at a wall time, at a simulated time, and all points at once
        wall = time.time()
        meter = site.device("meter")
        assert sim.truth("meter", "power", wall=wall) == meter.truth("power", site.clock.sim(wall))
        assert sim.truth("meter", "power", sim=1717203600.0) == meter.truth("power", 1717203600.0)
        values = sim.truths("lamp-1")
        assert set(values) == set(site.device("lamp-1").profile.point_names())
        assert sim.quantity("lamp-1", "lit") is True


def test_truth_matches_what_a_client_reads(site) -> None:  # type: ignore[no-untyped-def]
    client = ModbusSerialClient(port=site.bus("street").device_path, baudrate=9600, timeout=2, retries=1)
    assert client.connect()
    try:
        with SimClient(site.describe()["control"]) as sim:
            before = time.time()
            rr = client.read_input_registers(3, count=2, device_id=1)  # lamp energy, Wh
            after = time.time()
            wh = client.convert_from_registers(rr.registers, client.DATATYPE.UINT32)
            # speed 60: simulated time runs on between the two truths, the reading lies within
            low, high = sim.truth("lamp-1", "energy", wall=before), sim.truth("lamp-1", "energy", wall=after)
            assert low <= wh * 3600 <= high  # type: ignore[operator]
    finally:
        client.close()


def test_write_counters_and_speed(site) -> None:  # type: ignore[no-untyped-def]
    with SimClient(site.describe()["control"]) as sim:
        when = sim.write("lamp-2", "on", False)
        assert sim.truth("lamp-2", "power", sim=when + 1) == 0
        with pytest.raises(SimError, match="not writable"):
            sim.write("meter", "power", 5)
        counts = sim.counters()
        assert counts["devices"]["lamp-2"]["writes"] == 1 and "street" in counts["buses"]
        assert sim.call("speed", speed=10)["speed"] == 10.0
        with pytest.raises(SimError, match="no device"):
            sim.truth("nobody", "power")
        with pytest.raises(SimError, match="no point"):
            sim.truth("meter", "nothing")


def test_raw_json_lines(site) -> None:  # type: ignore[no-untyped-def]
    host, port = site.describe()["control"].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        f = s.makefile("rwb")
        for line in (b'{"op": "time"}\n', b"not json\n", b'{"op": "nonsense"}\n'):
            f.write(line)
            f.flush()
        replies = [json.loads(f.readline()) for _ in range(3)]
    assert replies[0]["ok"] is True and "sim" in replies[0]
    assert replies[1]["ok"] is False and replies[2]["ok"] is False and "unknown op" in replies[2]["error"]
