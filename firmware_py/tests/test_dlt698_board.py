"""DL/T 698.45 on the board: the firmware's UartBus runs protocols/dlt698/device.py under genuine
MicroPython against the simulated meters (simulator/scenarios/dlt698.toml) on a pty, from the config
`fieldlink firmware config` compiled; every value equals the simulator's ground truth, and a DL/T 645
meter on the same bus is read beside them."""

from __future__ import annotations

import time

import pytest

from firmware_py.tests import mpvm
from protocols.profiles import load_profile

SIM = """
import json, hostio, asyncio
import hw_host
from firmware_py.bus import UartBus
from firmware_py.inventory import Inventory

cfg = json.load(open('/config.json'))
inv = Inventory(cfg)
spec = cfg["buses"][0]
stats = {"polls": 0}
bus = UartBus(spec, hw_host.Host().uart(spec), stats)
del cfg

async def go():
    for d in range(inv.count):
        got = {}
        def sink(_d, s, v, _t):
            got[inv.name(s)] = v
        outcomes = []
        for r in inv.requests(d):
            outcomes.append(await bus.request(inv, d, r, sink, 0))
        hostio.emit(json.dumps({"device": inv.device_id(d), "values": got, "outcomes": outcomes,
                                "stats": dict(stats)}))

await go()
"""


@mpvm.needs_vm
def test_the_board_reads_dlt698_meters_as_the_simulator_has_them(tmp_path):
    from firmware_py.tests.simsite import Simulator, SimulatorMissing

    points = [p.name for p in load_profile("dlt698-3p").points]
    try:
        with Simulator("dlt698", str(tmp_path)) as sim:
            cfg = sim.firmware_config(1883, interval=1.0, timeout_ms=2000)  # a deadline, not a wait
            t0 = time.time()
            res = mpvm.run(SIM, files={"/config.json": cfg}, timeout=120)
            t1 = time.time()
            assert res.returncode == 0, res.stderr[-3000:]
            runs = {run["device"]: run for run in res.values()}
            assert sorted(runs) == ["flat-01-power", "flat-02-power", "stair-lights-power"]
            for device in ("flat-01-power", "flat-02-power"):
                run = runs[device]
                assert set(run["outcomes"]) == {0} and len(run["outcomes"]) == 1, run  # one NormalList GET
                assert sorted(run["values"]) == sorted(points), run
                for name, value in run["values"].items():
                    assert sim.matches(device, name, value, int(t0), t1 - int(t0) + 1), \
                        (device, name, value, sim.truth(device, name, t0))
            assert set(runs["stair-lights-power"]["outcomes"]) == {0}  # the DL/T 645 neighbour
            assert runs["stair-lights-power"]["stats"].get("frame", 0) == 0
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
