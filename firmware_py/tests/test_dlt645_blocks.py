"""DL/T 645 block points (0001FF00: total + tariffs) and read follow-ups (B1 -> C=12 -> B2 .. 92) on the
board: the config compile under CPython, then the real bus poller under genuine MicroPython against a
fake meter on a pty (built here from `protocols.dlt645.read_reply_frames`) and against the shared
simulator (`fieldlink sim demo` with the `followup` fault).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from agent.config import load_config
from agent.firmware.config import compile_config, dumps
from firmware_py.inventory import FORMAT, Inventory
from firmware_py.tests import mpvm
from hil_tests.buses import PtyBus
from protocols import dlt645

BLOCK = "0001FF00"
TARIFFS = ["energy_import_total", "energy_import_t1", "energy_import_t2", "energy_import_t3",
           "energy_import_t4"]
KWH = [12345.67, 1234.56, 4567.89, 3456.78, 3086.44]  # the tariffs add up to the total
J_PER_KWH = 3600000
needs_vm = mpvm.needs_vm


def block(values: list[float]) -> bytes:
    return b"".join(dlt645.encode_value(v, "XXXXXX.XX") for v in values)


# -- the config compile (CPython) --------------------------------------------------------------------
def write_toml(tmp: str, port: str, devices: list[dict]) -> str:
    lines = ["format = 1", "[gateway]", 'site = "lab"', 'id = "fw-01"', "[broker]", 'host = "127.0.0.1"',
             "[[buses]]", 'name = "meters"', 'port = "%s"' % port, "baud = 9600",
             "timeout_ms = 2000"]  # a deadline: the meters answer in milliseconds, a busy machine is slower
    for d in devices:
        lines.append("[[devices]]")
        lines += ["%s = %s" % (k, json.dumps(v) if not isinstance(v, dict) else
                               "{ %s }" % ", ".join("%s = %s" % (a, json.dumps(b)) for a, b in v.items()))
                  for k, v in d.items()]
    path = os.path.join(tmp, "site.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def compiled_for(tmp: str, port: str, devices: list[dict]) -> dict:
    return compile_config(load_config(write_toml(tmp, port, devices)), board="host")


def test_block_points_compile_to_one_request_with_byte_offsets(tmp_path):
    cfg = compiled_for(str(tmp_path), "/dev/null", [
        {"id": "e1", "bus": "meters", "profile": "dlt645-3p", "address": "000000000161",
         "points": [*TARIFFS, "voltage_a"]},
        {"id": "e2", "bus": "meters", "profile": "dlt645-3p", "address": "000000000162",
         "points": TARIFFS, "options": {"followup_seq_start": 0, "followup_reply_seq": False,
                                        "max_followups": 3, "preamble": 2}},
    ])
    assert cfg["format"] == FORMAT == 6
    e1, e2 = cfg["devices"]
    assert len(e1["requests"]) == 2  # the block once, voltage_a once
    frame, idx = e1["requests"][0]
    assert frame == dlt645.read_request("000000000161", BLOCK).hex()
    specs = [cfg["specs"][i] for i in idx]
    assert [cfg["names"][s[0]] for s in specs] == TARIFFS
    # [name, DI, byte offset in the value, length, format, signed, scale, offset]
    assert [s[1:] for s in specs] == [[BLOCK, 4 * k, 4, "XXXXXX.XX", False, J_PER_KWH, 0] for k in range(5)]
    (_, (single,)) = e1["requests"][1]
    assert cfg["specs"][single][1:4] == ["02010100", 0, 0]  # not in a block: length 0, the whole value
    # the follow-up settings: profile defaults, then the device's overrides
    assert e1["followup"] == [16, 1, 1, 4]
    assert e2["followup"] == [3, 0, 0, 2]
    assert e2["requests"][0][1] == idx  # a second meter of the model shares the specs
    assert len(cfg["specs"]) == 6  # five members and voltage_a, once for both meters


def test_the_board_refuses_a_config_of_another_format(tmp_path):
    cfg = compiled_for(str(tmp_path), "/dev/null", [
        {"id": "e1", "bus": "meters", "profile": "dlt645-3p", "address": "161", "points": TARIFFS}])
    assert Inventory(cfg).count == 1
    for old in (2, 4, 5):  # 4: either kind made before the merge; 5: lighting.zone and a second zone
        cfg["format"] = old
        with pytest.raises(ValueError) as err:
            Inventory(cfg)
        want = "config.json is format %d, this firmware reads format 6: compile" % old
        assert str(err.value).startswith(want)


# -- a fake meter on a pty ---------------------------------------------------------------------------
class Meter:
    """One DL/T 645 meter: DI -> value bytes; values longer than `size` answer B1 and the rest to C=12
    (SEQ from `seq_start`, SEQ byte in 92/B2 unless not `reply_seq`). `endless`: every C=12 gets B2."""

    def __init__(self, address: str, values: dict, size: int = 0, seq_start: int = 1, reply_seq: bool = True,
                 endless: bool = False, version: int = 2007) -> None:
        self.address = address
        self.values = values
        self.size, self.seq_start, self.reply_seq = size, seq_start, reply_seq
        self.endless = endless
        self.version = version
        self.frames: list = []
        self.log: list = []  # "DI" for C=11 / C=01, "DI+SEQ" for C=12

    def handle(self, frame: dlt645.Frame) -> bytes | None:
        if frame.control == 0x12:
            di, seq = dlt645.parse_followup_request(frame)
            self.log.append("%s+%d" % (di, seq))
            if self.endless:
                return dlt645.followup_reply(self.address, di, b"\x33", seq, True, self.reply_seq, 2)
            k = seq - self.seq_start + 1
            return self.frames[k] if 1 <= k < len(self.frames) else None
        di = dlt645.parse_read_request(frame, self.version)
        self.log.append(di)
        if self.version == 1997:  # a 1997 meter that (wrongly) announces more frames
            return dlt645.read_reply(self.address, di, self.values[di], 1997, True, 2)
        self.frames = dlt645.read_reply_frames(self.address, di, self.values[di], self.size, self.seq_start,
                                               self.reply_seq, 2)
        return self.frames[0]


class MeterBus(PtyBus):
    def __init__(self, meters: list[Meter]) -> None:
        PtyBus.__init__(self, "dlt645", start=False)
        self.meters = {m.address: m for m in meters}

    def reader(self) -> Any:
        return dlt645.Dlt645FrameReader()

    def answer(self, frame: Any) -> bytes | None:
        meter = self.meters.get(frame.address)
        return meter.handle(frame) if meter is not None and not frame.is_reply else None


POLL = """
import json, hostio, asyncio
import hw_host
from firmware_py.bus import UartBus
from firmware_py.inventory import Inventory

cfg = json.load(open('/config.json'))
try:
    Inventory({"format": 2})
except ValueError as exc:
    hostio.emit(json.dumps(str(exc)))
inv = Inventory(cfg)
spec = cfg["buses"][0]
stats = {"polls": 0, "timeout": 0, "crc": 0, "frame": 0, "exception": 0, "decode": 0, "quality": 0}
bus = UartBus(spec, hw_host.Host().uart(spec), stats)
del cfg

async def go():
    for d in range(inv.count):
        got = {}
        def sink(_d, s, v, _t):
            got[inv.name(s)] = v
        before = dict(stats)
        outcomes = []
        for r in inv.requests(d):
            outcomes.append(await bus.request(inv, d, r, sink, 0))
        hostio.emit(json.dumps({"device": inv.device_id(d), "values": got, "outcomes": outcomes,
                                "errors": {k: stats[k] - before[k] for k in stats if stats[k] != before[k]}}))

await go()
"""


def poll_all(tmp: str, path: str, devices: list[dict]) -> tuple:
    """Every request of every device once under MicroPython: (format error, {device: result})."""
    cfg = os.path.join(tmp, "fw.json")
    with open(cfg, "w") as f:
        f.write(dumps(compiled_for(tmp, path, devices)))
    res = mpvm.run(POLL, files={"/config.json": cfg}, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    values = res.values()
    return values[0], {v["device"]: v for v in values[1:]}


@needs_vm
def test_tariff_points_and_split_values_under_micropython(tmp_path):
    raw = bytearray(block(KWH))
    raw[8:12] = b"\xff\xff\xff\xff"  # tariff 2 not available
    bad_bcd = bytearray(block(KWH))
    bad_bcd[13] = 0x5A  # tariff 3 not BCD
    two_tariffs = block(KWH[:3])  # a meter with two tariffs: the block ends after t2
    meters = [
        Meter("000000000161", {BLOCK: block(KWH), "02010100": dlt645.encode_value(230.1, "XXX.X")}),
        Meter("000000000162", {BLOCK: bytes(raw)}, size=8),  # B1, B2, 92 with SEQ 1, 2
        Meter("000000000163", {BLOCK: bytes(bad_bcd)}, size=6, seq_start=0, reply_seq=False),  # split members
        Meter("000000000164", {BLOCK: block(KWH)}, size=8, endless=True),  # never says "last frame"
        Meter("000000000165", {BLOCK: two_tariffs}),
        Meter("000000009010", {"9010": dlt645.encode_value(1.5, "XXXXXX.XX", False)}, version=1997),
    ]
    devices = [
        {"id": "plain", "bus": "meters", "profile": "dlt645-3p", "address": "000000000161",
         "points": [*TARIFFS, "voltage_a"]},
        {"id": "split", "bus": "meters", "profile": "dlt645-3p", "address": "000000000162",
         "points": TARIFFS},
        {"id": "zero", "bus": "meters", "profile": "dlt645-3p", "address": "000000000163", "points": TARIFFS,
         "options": {"followup_seq_start": 0, "followup_reply_seq": False}},
        {"id": "endless", "bus": "meters", "profile": "dlt645-3p", "address": "000000000164",
         "points": TARIFFS, "options": {"max_followups": 3}},
        {"id": "short", "bus": "meters", "profile": "dlt645-3p", "address": "000000000165",
         "points": TARIFFS},
        {"id": "old", "bus": "meters", "profile": "dlt645-1997", "address": "000000009010",
         "points": ["energy_import"]},
    ]
    with MeterBus(meters) as bus:
        refused, got = poll_all(str(tmp_path), bus.path, devices)
    log = {m.address[-3:]: m.log for m in meters}
    joules = [round(k * J_PER_KWH, 9) for k in KWH]
    assert refused.startswith("config.json is format 2, this firmware reads format 6")

    # one request for the block, each point its own member
    assert got["plain"]["values"] == dict(zip(TARIFFS, joules, strict=True), voltage_a=230.1)
    assert got["plain"]["outcomes"] == [0, 0] and got["plain"]["errors"] == {"polls": 2}
    assert log["161"] == [BLOCK, "02010100"]

    # B1 (8 bytes), B2 (8), 92 (4): C=12 with SEQ 1 and 2; the all-FF member is bad on its own
    assert got["split"]["values"] == {n: j for n, j in zip(TARIFFS, joules, strict=True) if n != TARIFFS[2]}
    assert got["split"]["errors"] == {"polls": 1, "quality": 1}
    assert log["162"] == [BLOCK, BLOCK + "+1", BLOCK + "+2"]

    # 6-byte frames (members split across frames: B1, B2, B2, 92), SEQ from 0, no SEQ byte in replies
    assert got["zero"]["values"] == {n: j for n, j in zip(TARIFFS, joules, strict=True) if n != TARIFFS[3]}
    assert got["zero"]["errors"] == {"polls": 1, "quality": 1}
    assert log["163"] == [BLOCK, BLOCK + "+0", BLOCK + "+1", BLOCK + "+2"]

    # a meter that never sends the last frame: bounded by max_followups, the request fails
    assert got["endless"]["values"] == {} and got["endless"]["outcomes"] == [1]
    assert got["endless"]["errors"] == {"polls": 1, "frame": 1}
    assert log["164"] == [BLOCK, BLOCK + "+1", BLOCK + "+2", BLOCK + "+3"]

    # a block shorter than a member needs: those members are bad, the others arrive
    assert got["short"]["values"] == dict(zip(TARIFFS[:3], joules[:3], strict=True))
    assert got["short"]["errors"] == {"polls": 1, "decode": 2}

    # DL/T 645-1997 has no follow-ups: a reply announcing more is rejected, not read truncated
    assert got["old"]["values"] == {} and got["old"]["errors"] == {"polls": 1, "frame": 1}
    assert log["010"] == ["9010"]


HEAP = """
import gc, json, hostio, asyncio
import hw_host
from firmware_py.bus import UartBus
from firmware_py.inventory import Inventory

async def live(n):
    best = 1 << 30
    for i in range(n):
        hostio.js_gc()
        await asyncio.sleep_ms(5)
        gc.collect()
        await asyncio.sleep_ms(1)
        a = gc.mem_alloc()
        if a < best:
            best = a
    return best

def make():
    cfg = json.load(open('/config.json'))
    spec = cfg["buses"][0]
    stats = {"polls": 0, "timeout": 0, "crc": 0, "frame": 0, "exception": 0, "decode": 0, "quality": 0}
    return Inventory(cfg), UartBus(spec, hw_host.Host().uart(spec), stats), stats

async def go():
    inv, bus, stats = make()
    made = [0]
    def sink(_d, _s, _v, _t):
        made[0] += 1
    (r,) = inv.requests(0)
    samples = []
    for k in range(6):
        for i in range(10):
            await bus.request(inv, 0, r, sink, 0)
        samples.append(await live(3))
    hostio.emit(json.dumps({"samples": samples, "made": made[0], "stats": stats}))

await go()
"""


@needs_vm
def test_follow_ups_do_not_grow_the_heap(tmp_path):
    meter = Meter("000000000162", {BLOCK: block(KWH)}, size=6)  # four frames per poll
    with MeterBus([meter]) as bus:
        cfg = os.path.join(str(tmp_path), "fw.json")
        with open(cfg, "w") as f:
            f.write(dumps(compiled_for(str(tmp_path), bus.path, [
                {"id": "e", "bus": "meters", "profile": "dlt645-3p", "address": "000000000162",
                 "points": TARIFFS}])))
        res = mpvm.run(HEAP, files={"/config.json": cfg}, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    m = res.values()[-1]
    assert m["made"] == 60 * 5 and m["stats"]["polls"] == 60, m
    assert len(meter.log) == 60 * 4
    samples = m["samples"]
    print("\nDL/T 645 block + 3 follow-ups, live heap after every 10 polls: %s" % samples)
    assert max(samples[2:]) <= min(samples[:2]) + 256, samples


# -- the shared simulator -----------------------------------------------------------------------------
SIM = """
import json, hostio, asyncio
import hw_host
from firmware_py.bus import UartBus
from firmware_py.inventory import Inventory

cfg = json.load(open('/config.json'))
inv = Inventory(cfg)
d = inv.find_device("flat-101-power")
spec = cfg["buses"][inv.bus[d]]
stats = {"polls": 0, "timeout": 0, "crc": 0, "frame": 0, "exception": 0, "decode": 0, "quality": 0}
bus = UartBus(spec, hw_host.Host().uart(spec), stats)
del cfg

async def go():
    for n in range(2):
        got = {}
        def sink(_d, s, v, _t):
            got[inv.name(s)] = v
        outcomes = []
        for r in inv.requests(d):
            outcomes.append(await bus.request(inv, d, r, sink, 0))
        hostio.emit(json.dumps({"values": got, "outcomes": outcomes, "stats": dict(stats)}))
    inv.options[d] = (0,) + inv.options[d][1:]  # no follow-ups allowed: the split block must fail
    outcomes = []
    for r in inv.requests(d):
        outcomes.append(await bus.request(inv, d, r, lambda *a: None, 0))
    hostio.emit(json.dumps({"outcomes": outcomes, "stats": stats}))

await go()
"""


@needs_vm
def test_tariffs_from_the_simulator_with_follow_up_frames(tmp_path):
    from firmware_py.tests.simsite import Simulator, SimulatorMissing

    try:
        with Simulator("demo", str(tmp_path)) as sim:
            sim.client.fault("flat-101-power", "followup", size=6)  # the 20-byte block in four frames
            cfg = sim.firmware_config(1883, interval=1.0, timeout_ms=2000)  # a deadline, not a wait
            t0 = time.time()
            res = mpvm.run(SIM, files={"/config.json": cfg}, timeout=120)
            t1 = time.time()
            assert res.returncode == 0, res.stderr[-3000:]
            *runs, bounded = res.values()
            for run in runs:
                values = run["values"]
                assert set(run["outcomes"]) == {0}, run
                assert set(TARIFFS) <= set(values), sorted(values)
                # one block reply: the tariffs add up to the total, to the register's 0.01 kWh
                total = sum(values[n] for n in TARIFFS[1:])
                assert total == pytest.approx(values[TARIFFS[0]], abs=J_PER_KWH * 0.001)
                for name in [*TARIFFS, "energy_import"]:
                    assert sim.matches("flat-101-power", name, values[name], int(t0), t1 - int(t0) + 1), \
                        (name, values[name], sim.truth("flat-101-power", name, t0))
            assert runs[-1]["stats"]["frame"] == 0 and runs[-1]["stats"]["decode"] == 0
            assert bounded["outcomes"].count(1) == 1 and bounded["stats"]["frame"] == 1, bounded
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
