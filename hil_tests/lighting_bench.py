"""`python -m hil_tests.lighting_bench [LAMPS]`: what a street's lighting costs on its bus and on the CPU.

1. A group command that dims every lamp of a street (LAMPS simulated generic lamps on one 9600 8N1 bus at
   real line speed, polled every 10 s): the time from the command to its ack, written lamp by lamp with
   a read-back each, and as one Modbus broadcast (`readback` false). The simulator's ground truth
   confirms every lamp was dimmed both times.
2. Resolving a schedule on CPython (`Schedule.in_force`, `state_at`, `next_change`: what the lighting task
   does once per change): Jinan, and Longyearbyen in its polar day (the search walks back months).

Sizes, not pass/fail: the numbers go into docs/lighting.md. `hil_tests/test_lighting_bench.py` keeps it
runnable.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any

SCENARIO = """\
[site]
name = "benchstreet"
seed = 12
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-{n:02}"
count = %d
profile = "generic-lamp"
address = 1
params = { dim = 1.0, rated_power = 100 }
"""

CONFIG = """\
format = 1

[gateway]
site = "benchstreet"
id = "gw1"

[outbox]
path = "outbox.sqlite"

[commands]
signed = "none"

[[buses]]
name = "street"
port = "%s"
baud = 9600
timeout_ms = 300

[groups]
street = [%s]
%s"""


class Acks:
    """Collects the acks of the group commands (in place of the uplink)."""

    def __init__(self) -> None:
        self.acks: dict[Any, dict] = {}
        self.arrived = threading.Condition()
        self.commands: Any = None

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        from protocols import cbor

        ack: Any = cbor.loads(payload)
        with self.arrived:
            self.acks[ack["id"]] = ack
            self.arrived.notify_all()

    def wait(self, cmd_id: str, timeout: float) -> dict:
        with self.arrived:
            if not self.arrived.wait_for(lambda: cmd_id in self.acks, timeout):
                raise RuntimeError("no ack for %s within %g s" % (cmd_id, timeout))
            return self.acks[cmd_id]

    def __getattr__(self, name: str) -> Any:  # start, stop, submit, alarm, event, add_counters ...
        return lambda *args, **kwargs: None


def group_command(lamps: int, folder: str) -> list[tuple[str, float, float, int]]:
    from agent.config import load_config
    from agent.gateway import Gateway
    from protocols import cbor
    from simulator.control import SimClient
    from simulator.scenario import load
    from simulator.site import Site

    scenario = os.path.join(folder, "street.toml")
    with open(scenario, "w") as f:
        f.write(SCENARIO % lamps)
    site = Site(load(scenario), instant=False).start()
    rows = []
    try:
        ids = ["lamp-%02d" % (i + 1) for i in range(lamps)]
        devices = "".join('\n[[devices]]\nid = "%s"\nbus = "street"\nprofile = "generic-lamp"\naddress = %d\n'
                          'interval = 10\n' % (d, i + 1) for i, d in enumerate(ids))
        path = os.path.join(folder, "site.toml")
        with open(path, "w") as f:
            f.write(CONFIG % (site.bus("street").device_path, ", ".join('"%s"' % d for d in ids), devices))
        acks = Acks()
        gateway = Gateway(load_config(path), uplink=acks)
        gateway.start()
        sim = SimClient(site.describe()["control"])
        try:
            deadline = time.monotonic() + 60  # the first poll cycle of every lamp is over
            while time.monotonic() < deadline and not all(
                    h["online"] for h in gateway.device_health().values()):
                time.sleep(0.1)
            for n, (how, readback, value) in enumerate((("lamp by lamp, read back", True, 0.4),
                                                        ("one broadcast", False, 0.6))):
                cmd_id = "bench-%d" % n
                cmd = {"id": cmd_id, "device": "street", "point": "dim", "value": value, "readback": readback}
                began = time.perf_counter()
                gateway.commands.take(cbor.dumps(cmd))
                ack = acks.wait(cmd_id, 120)
                took = time.perf_counter() - began
                assert ack["ok"] is True, ack
                # the simulator's truth: when did the last lamp take the new level (a broadcast is acked
                # once sent; the lamps act on it as its bytes arrive)
                deadline = time.perf_counter() + 30
                while time.perf_counter() < deadline:
                    now = time.time()
                    if all(at_level(sim.truth(d, "dim", wall=now), value) for d in ids):
                        break
                    time.sleep(0.005)
                dimmed = sum(1 for d in ids if at_level(sim.truth(d, "dim"), value))
                rows.append((how, took, time.perf_counter() - began, dimmed))
        finally:
            sim.close()
            gateway.stop()
    finally:
        site.stop()
    return rows


def at_level(truth: Any, value: float) -> bool:
    """The simulator's dim level equals `value`."""
    return abs(float(truth) - value) < 1e-6


def resolving() -> list[tuple[Any, ...]]:
    from agent.lighting.zones import compile_zone
    from protocols.schedule import Place, parse_schedule
    from protocols.solar import days_from_civil

    table = {"name": "s", "devices": ["l"], "steps": [
        {"at": "sunset-10m", "set": {"on": True, "dim": 1.0}},
        {"at": "23:30", "days": "mon-fri", "set": {"dim": 0.5}},
        {"at": "sunrise+15m", "set": {"on": False}}]}
    schedule = parse_schedule(table)
    rows = []
    for city, lat, lon, zone, date in (("Jinan", 36.6512, 117.1201, "Asia/Shanghai", (2026, 3, 11)),
                                       ("Longyearbyen, polar day", 78.2232, 15.6267, "Arctic/Longyearbyen",
                                        (2026, 6, 21))):
        place = Place(lat, lon, compile_zone(zone, 2026, 2027))
        noon = days_from_civil(*date) * 86400 + 43200
        times = []
        for call in (schedule.in_force, schedule.state_at, schedule.next_change):
            n = 20
            began = time.perf_counter()
            for i in range(n):
                call(noon + 3600 * i, place)  # type: ignore[operator]
            times.append((time.perf_counter() - began) / n * 1000)
        rows.append((city, *times))
    return rows


def main(argv: list[str]) -> int:
    lamps = int(argv[0]) if argv else 40
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        rows = group_command(lamps, folder)
    print("group command: dim %d lamps on one 9600 8N1 bus (simulated at line speed)" % lamps)
    for how, took, seen, dimmed in rows:
        print("  %-24s ack after %6.3f s, every lamp dimmed within %6.3f s (%d of %d, simulator truth)"
              % (how, took, seen, dimmed, lamps))
    print("resolving a schedule on CPython %s (ms per call)" % sys.version.split()[0])
    for city, in_force, state_at, next_change in resolving():
        print("  %-24s in_force %6.2f  state_at %6.2f  next_change %6.2f"
              % (city, in_force, state_at, next_change))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
