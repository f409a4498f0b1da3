"""Point quality on the board, as the agent (agent/scheduler.py, agent/gateway.py): a point that a
DL/T 645 meter answers without a value (all FF, not BCD, a block member the reply does not reach)
raises one `quality` alarm with the quality text, is counted per answer, and clears once ("good")
at its next good value; a timeout or a command's read leaves it alone.

The bus and the gateway's transition logic under CPython against a meter in memory, then the real
main loop under genuine MicroPython against a meter on a pty and a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from types import SimpleNamespace
from typing import Any

from agent.config import load_config
from agent.firmware.config import compile_config, dumps
from firmware_py import app
from firmware_py.alarms import Alarms
from firmware_py.bus import OK, TIMEOUT, UartBus
from firmware_py.inventory import Inventory
from firmware_py.tests import mpvm
from hil_tests.buses import PtyBus, VirtualBus, VirtualUart
from hil_tests.link import wait_until
from protocols import dlt645

ADDRESS = "000000000161"
BLOCK = "0001FF00"
DIS = {"energy_import": "00010000", "voltage_a": "02010100", "frequency": "02800002", "current_a": "02020100"}
POINTS = ["energy_import", "voltage_a", "frequency", "current_a"]
GOOD = {"00010000": dlt645.encode_value(12345.67, "XXXXXX.XX"),
        "02010100": dlt645.encode_value(230.1, "XXX.X"),
        "02800002": dlt645.encode_value(50.01, "XX.XX"),
        "02020100": dlt645.encode_value(5.123, "XXX.XXX", True)}
ALL_FF = b"\xff\xff"  # voltage_a (XXX.X): "not available"
needs_vm = mpvm.needs_vm


class Meter:
    """A DL/T 645-2007 meter: answers C=11 reads from `values` (DI -> value bytes); while `bad`, its
    voltage_a is all FF; while `silent`, nothing."""

    def __init__(self, values: dict) -> None:
        self.values = dict(values)
        self.bad = True
        self.silent = False
        self.reads = 0

    def answer(self, frame: dlt645.Frame) -> bytes | None:
        if frame.is_reply or frame.address != ADDRESS or self.silent:
            return None
        di = dlt645.parse_read_request(frame)
        self.reads += 1
        value = ALL_FF if di == DIS["voltage_a"] and self.bad else self.values[di]
        return dlt645.read_reply(ADDRESS, di, value, preamble=2)


def site_toml(tmp: str, port: str, broker_port: int = 1883, points: list | None = None) -> str:
    lines = ["format = 1", "[gateway]", 'site = "lab"', 'id = "fw-01"', "health_interval = 1",
             "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port, "keepalive = 10",
             "reconnect_min = 0.2", "reconnect_max = 1.0", "[batch]", "max_records = 50", "max_age = 0.5",
             "[[buses]]", 'name = "meters"', 'port = "%s"' % port, "baud = 9600", "timeout_ms = 300",
             "[[devices]]", 'id = "e1"', 'bus = "meters"', 'profile = "dlt645-3p"',
             'address = "%s"' % ADDRESS, "interval = 0.5", "points = %s" % json.dumps(points or POINTS)]
    path = os.path.join(tmp, "site.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def compiled(tmp: str, port: str, broker_port: int = 1883, points: list | None = None) -> dict:
    return compile_config(load_config(site_toml(tmp, port, broker_port, points)), board="host", ring_slots=16,
                          ring_slot_size=1024)


# -- CPython: the bus and the gateway's transitions, a meter in memory --------------------------------
def meter_bus(meter: Meter) -> VirtualBus:
    """`meter` alone on an in-memory DL/T 645 bus (no line timing)."""
    bus = VirtualBus("dlt645")
    bus.devices["meter"] = SimpleNamespace(handle=meter.answer)
    return bus


class BusUnderTest:
    """One UartBus and the firmware's `point_quality` (the real method, on a stand-in for the rest)."""

    def __init__(self, tmp: str, meter: Meter, points: list | None = None) -> None:
        cfg = compiled(tmp, "/dev/null", points=points)
        cfg["buses"][0]["timeout_ms"] = 50
        self.inv = inv = Inventory(cfg)
        self.alarms: list = []
        self.readings: list = []
        slots = len(inv.points)
        gw = SimpleNamespace(inv=inv, quality=bytearray(slots), bad_answers=[0] * slots)
        gw.alarm = lambda d, point, kind, value, raised, now: self.alarms.append((point, kind, value, raised))
        self.gw = gw
        self.stats = dict.fromkeys(("polls", *app.ERRORS), 0)
        self.bus = UartBus(cfg["buses"][0], VirtualUart(meter_bus(meter)), self.stats)
        self.bus.quality = gw.quality
        self.bus.on_quality = lambda d, k, text, now: Alarms.point_quality(gw, d, k, text, now)

    def poll(self, track: bool = True) -> list:
        def sink(_d, spec, value, _now):
            self.readings.append((self.inv.name(spec), value))

        async def go() -> list:
            bus, inv = self.bus, self.inv
            return [await bus.request(inv, 0, r, sink, 1700000000, track) for r in inv.requests(0)]

        return asyncio.run(go())

    def bad_now(self) -> dict:
        inv = self.inv
        return {inv.name(inv.points[k]): app.QUALITY[q] for k, q in enumerate(self.gw.quality) if q}


def test_one_alarm_when_a_point_turns_bad_and_one_when_it_is_good_again(tmp_path):
    meter = Meter(GOOD)
    p = BusUnderTest(str(tmp_path), meter)
    for _ in range(3):
        assert p.poll() == [OK] * 4
    assert p.alarms == [("voltage_a", "quality", "not_available", True)]
    assert p.bad_now() == {"voltage_a": "not_available"}
    assert sorted(p.gw.bad_answers) == [0, 0, 0, 3]
    assert {n for n, _ in p.readings} == {"energy_import", "frequency", "current_a"}  # neighbours go on
    assert p.stats["quality"] == 3

    meter.silent = True  # a failed transaction is a comms matter: quality stays as it is
    assert p.poll() == [TIMEOUT] * 4
    meter.silent = False
    meter.bad = False  # a command's read does not touch quality either
    p.poll(track=False)
    assert p.alarms == [("voltage_a", "quality", "not_available", True)]

    p.readings.clear()
    p.poll()
    p.poll()
    assert p.alarms[1:] == [("voltage_a", "quality", "good", False)]
    assert p.bad_now() == {} and sorted(p.gw.bad_answers) == [0, 0, 0, 3]  # the count stays
    assert p.readings.count(("voltage_a", 230.1)) == 2  # the good value is a reading as usual


def test_quality_texts_are_the_agents(tmp_path):
    values = dict(GOOD)
    values[DIS["voltage_a"]] = b"\x5a\x33"  # not BCD
    block = b"".join(dlt645.encode_value(v, "XXXXXX.XX") for v in (100.0, 40.0, 60.0))  # total, t1, t2 only
    values[BLOCK] = block
    meter = Meter(values)
    meter.bad = False
    points = ["voltage_a", "energy_import_total", "energy_import_t2", "energy_import_t3"]
    p = BusUnderTest(str(tmp_path), meter, points)
    p.poll()
    p.poll()
    short = "decode: block 0001FF00 has 12 bytes, member 3 needs 16"
    assert p.alarms == [("voltage_a", "quality", "bad_bcd", True),
                        ("energy_import_t3", "quality", short, True)]
    # the agent's driver says the same of the same answers (its alarm values)
    assert [(point, text, True) for point, text in agent_bad(str(tmp_path), meter, points)] == \
        [(point, text, raised) for point, _kind, text, raised in p.alarms]
    assert p.bad_now() == {"voltage_a": "bad_bcd", "energy_import_t3": "decode"}
    assert dict(p.readings) == {"energy_import_total": 100.0 * 3600000, "energy_import_t2": 60.0 * 3600000}


def agent_bad(tmp: str, meter: Meter, points: list) -> list:
    """(point, quality text) of every bad point in one poll by the agent's own driver."""
    from agent.drivers import make_driver
    from agent.link import open_link

    with meter_bus(meter) as bus:
        config = load_config(site_toml(tmp, bus.path, points=points))
        device = config.devices[0]
        driver = make_driver(device, config.profiles[device.profile], config.buses[0])
        with open_link(config.buses[0]) as link:
            return [bad for request in driver.requests for bad in driver.read(link, request).bad]


# -- MicroPython: the main loop, a meter on a pty, a real Mosquitto -----------------------------------
class PtyMeter(PtyBus):
    """`meter` on a pty, answering in a thread; stopped and closed on exit."""

    def __init__(self, meter: Meter) -> None:
        PtyBus.__init__(self, "dlt645", start=False)
        self.meter = meter

    def reader(self) -> Any:
        return dlt645.Dlt645FrameReader()

    def answer(self, frame: Any) -> bytes | None:
        return self.meter.answer(frame)


RUN = """
import json, hostio
import hw_host
from firmware_py import app

def make():
    cfg = json.load(open('/config.json'))
    return app.Firmware(cfg, hw_host.Host())

gw = make()
await gw.main(run_ms=%(run_ms)d)
hostio.emit(json.dumps({"quality": list(gw.quality), "bad_answers": list(gw.bad_answers),
    "alarms": gw.counters["alarms"], "errors": gw.stats, "pending": gw.ring.pending()}))
"""


@needs_vm
def test_quality_alarms_on_the_broker_under_micropython(tmp_path):
    from hil_tests.broker import Subscriber, broker_or_skip

    broker = broker_or_skip()
    errors: list = []
    try:
        sub = Subscriber(broker, "fieldlink/lab/fw-01/#", client_id="quality-test")
        meter = Meter(GOOD)

        def alarms() -> list:
            return [a for a in sub.decoded("alarm") if a["kind"] == "quality"]

        def director() -> None:
            try:
                assert wait_until(lambda: len(alarms()) >= 1, 20), "no quality alarm raised"
                time.sleep(2.5)  # bad answers go on: counted, no second alarm
                meter.bad = False
                assert wait_until(lambda: len(alarms()) >= 2, 10), "no quality alarm cleared"
            except AssertionError as exc:
                errors.append(exc)

        with PtyMeter(meter) as pty:
            cfg = os.path.join(str(tmp_path), "fw.json")
            with open(cfg, "w") as f:
                f.write(dumps(compiled(str(tmp_path), pty.path, broker.port)))
            t = threading.Thread(target=director, daemon=True)
            t.start()
            res = mpvm.run(RUN % {"run_ms": 11000}, files={"/config.json": cfg})
            t.join(10)
        time.sleep(0.5)
        sub.client.loop_stop()
        sub.client.disconnect()
    finally:
        broker.close()
    assert res.returncode == 0, res.stderr[-3000:]
    assert not errors, (errors, res.values())
    summary = res.values()[-1]

    # exactly one raised and one cleared, the agent's alarm maps
    got = alarms()
    assert [(a["device"], a["point"], a["value"], a["state"]) for a in got] == [
        ("e1", "voltage_a", "not_available", "raised"), ("e1", "voltage_a", "good", "cleared")], got
    assert set(got[0]) == {"device", "point", "kind", "value", "n", "state", "time"}
    raised, cleared = got[0]["time"], got[1]["time"]
    assert cleared - raised >= 2

    # the bad point sends nothing while it is bad, then its good value; its neighbours never stop
    readings = [(name.split("/", 1)[1], value, t) for name, value, t in sub.readings()]
    voltage = [(v, t) for n, v, t in readings if n == "voltage_a"]
    assert voltage and all(v == 230.1 and t >= cleared for v, t in voltage), voltage
    for point in ("energy_import", "frequency", "current_a"):
        times = [t for n, _v, t in readings if n == point]
        assert min(times) <= raised + 1 and max(times) >= cleared, (point, times)  # +1: a later request
        assert [t for t in times if raised < t < cleared], (point, times)

    # health: bad answers per point so far, the points bad right now (as the agent's health)
    health = sub.decoded("health")
    bad_then = [h for h in health if h["points_bad"] == 1]
    assert bad_then and bad_then[-1]["buses"]["meters"]["quality"] == {"e1": {"voltage_a": "not_available"}}
    last = health[-1]["buses"]["meters"]
    assert last["quality"] == {} and health[-1]["points_bad"] == 0
    assert last["bad_points"]["e1"]["voltage_a"] >= 4, last
    assert summary["quality"] == [0, 0, 0, 0] and max(summary["bad_answers"]) >= 4
    assert summary["alarms"] == 2 and summary["errors"]["quality"] == max(summary["bad_answers"])
