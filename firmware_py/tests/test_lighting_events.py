"""The board's `…/event` records (firmware_py/lighting.py `_record`): an application whose event does
not fit one ring slot (a schedule of many lamps) is split by device into several complete events of the
same step, each within a slot, in the schedule's order, together holding every device's result; one
device's result beyond a slot is counted, never fatal. CPython runs the same module the board does."""

from __future__ import annotations

from types import SimpleNamespace

from firmware_py.lighting import Lighting
from hil_tests import cddl
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
