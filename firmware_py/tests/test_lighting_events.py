"""The board's `…/event` records (firmware_py/lighting.py `_record`): an application whose event does
not fit one ring slot (a schedule of many lamps) is split by device into several complete events of the
same step, each within a slot, in the schedule's order, together holding every device's result; one
device's result beyond a slot is counted, never fatal. And the task writes nothing while the board's
clock is not set. CPython runs the same module the board does."""

from __future__ import annotations

from types import SimpleNamespace

from firmware_py.lighting import Lighting
from hil_tests import cddl
from hil_tests.sample_configs import SUN, bus, group, lamp, schedule, site_head
from protocols import cbor, lighting


class Inv:
    def __init__(self, n: int) -> None:
        self.ids = ["lamp-%02d" % (i + 1) for i in range(n)]

    def device_id(self, d: int) -> str:
        return self.ids[d]


class Packs:
    def __init__(self) -> None:
        self.events: list[bytes] = []

    def add_event(self, data: bytes) -> None:
        if len(data) + 1 > SLOT:
            raise ValueError("a record of %d bytes does not fit a slot of %d" % (len(data) + 1, SLOT))
        self.events.append(data)


SLOT = 1024


class App:
    def __init__(self, n: int, error: str = "timeout: street: no reply within 100 ms") -> None:
        self.run = SimpleNamespace(schedule=SimpleNamespace(name="main street"))
        self.reason = "change"
        self.state = {"on": True, "dim": 0.8}
        self.results = {d: {"ok": d % 3 != 0, "error": None if d % 3 else error,
                            "value": {"on": 1, "dim": 0.8} if d % 3 else None} for d in range(n)}


def board(n: int) -> Lighting:
    task = Lighting.__new__(Lighting)  # only what _record uses: no schedules, buses or clock
    task.inv = Inv(n)
    task.packs = Packs()
    task.max_event = SLOT
    task.counters = {"errors": 0}
    return task


def record(task: Lighting, app: App, devices: list[int]) -> list[dict]:
    change = SimpleNamespace(index=0, instant=1781958840, step=SimpleNamespace(at="sunset"))
    task._record(app, change, devices, 1781958841)
    return [cbor.loads(e) for e in task.packs.events]


def test_a_street_event_is_split_by_device_over_slots_and_loses_no_result():
    n = 40
    task, app = board(n), App(n)
    results = {task.inv.device_id(d): app.results[d] for d in range(n)}
    whole = cbor.dumps(lighting.event("main street", 1, "sunset", 1781958840, 1781958841, "change", app.state,
                                      results))
    assert len(whole) + 1 > SLOT  # one event would not fit
    events = record(task, app, list(range(n)))
    assert len(events) > 1 and all(len(e) + 1 <= SLOT for e in task.packs.events)
    order = [device for e in events for device in e["devices"]]
    assert order == ["lamp-%02d" % (d + 1) for d in range(n)]  # every device once, in order
    for e in events:
        assert (e["schedule"], e["step"], e["at"], e["due"], e["reason"], e["set"]) == (
            "main street", 1, "sunset", 1781958840, "change", {"on": True, "dim": 0.8})
        for device, result in e["devices"].items():
            assert result == app.results[int(device[5:]) - 1]
    for payload in task.packs.events:
        cddl.validate("event", payload)
    assert task.counters["errors"] == 0


def test_one_device_result_beyond_a_slot_is_counted_not_fatal():
    task, app = board(2), App(2, error="x" * 2000)
    events = record(task, app, [0, 1])
    assert [list(e["devices"]) for e in events] == [["lamp-02"]]  # lamp-01's result alone is too big
    assert task.counters["errors"] == 1


SITE = site_head(signed=None) + "\n" + bus() + "\n" + lamp(1) + "\n" + lamp(2) + "\n" \
    + group("street", ["lamp-01", "lamp-02"]) + "\n" + schedule("street", SUN, group="street")


def test_nothing_is_written_until_the_boards_clock_is_set(tmp_path, monkeypatch):
    """Before NTP (the clock before 2020) the step in force is unknown: the lighting task queues no
    write and says clock_set false; once the clock is set it writes the state in force to every lamp."""
    import asyncio

    from agent.config import load_config
    from agent.firmware.config import compile_config
    from firmware_py import lighting as board_lighting
    from firmware_py import rt
    from firmware_py.inventory import Inventory
    from protocols.zone import zone_from_dict

    path = tmp_path / "site.toml"
    path.write_text(SITE)
    cfg = compile_config(load_config(str(path)), board="host")
    inv = Inventory(cfg)
    bus = SimpleNamespace(jobs=[], devices=[0, 1])
    poller = SimpleNamespace(online=bytearray(b"\x01\x01"), last_error=[None, None])
    zone = zone_from_dict(cfg["zone"])  # the config's one zone: the app builds it, for relays too
    task = board_lighting.Lighting(cfg["lighting"], zone, inv, [bus], poller, SimpleNamespace(), Packs(),
                                   SLOT)
    clock = {"now": 86400 * 365}  # 1971: no NTP, no RTC
    monkeypatch.setattr(rt, "now", lambda: clock["now"])
    seen: dict = {}

    async def go() -> None:
        stop = {"run": True}
        runner = asyncio.ensure_future(task.run([0], 0, lambda: stop["run"]))
        await asyncio.sleep(1.5)
        seen["before"] = (len(bus.jobs), task.clock_set, task.stats()["clock_set"])
        clock["now"] = 1781958840  # NTP: 2026-06-20
        for _ in range(50):
            await asyncio.sleep(0.1)
            if bus.jobs:
                break
        stop["run"] = False
        await runner

    asyncio.run(go())
    assert seen["before"] == (0, False, False)
    assert task.clock_set is True and len(bus.jobs) == 1
    job = bus.jobs[0]
    assert job.devices == [0, 1] and job.app.reason == "start" and "on" in job.app.state
