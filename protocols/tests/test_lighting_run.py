"""protocols/lighting_run.py, the run of the lighting schedules shared by the agent and the board: the
cases (protocols/tests/lighting_run_cases.py, also run under MicroPython by
protocols/tests/mp/check_lighting_run.py), and properties of any sequence of ticks, bus results,
outages, readings and hand writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.tests.lighting_run_cases import CASES, NIGHT, OFF, Driver, results


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_case(case) -> None:
    for label, got, want in case():
        assert got == want, label


STEP = st.one_of(
    st.tuples(st.just("tick"), st.integers(0, 200)),
    st.tuples(st.just("done"), st.booleans()),
    st.tuples(st.just("online"), st.sampled_from("abc"), st.booleans()),
    st.tuples(st.just("read"), st.sampled_from("abc"), st.booleans()),
    st.tuples(st.just("hand"), st.sampled_from("abc"), st.booleans()),
)


@given(st.lists(STEP, max_size=40), st.booleans())
def test_any_sequence_keeps_the_books(steps: list, across_a_change: bool) -> None:
    """Whatever happens: a device has at most one write on its bus, each application is one event
    once every bus of it reported, a device's schedule alarm alternates raised / cleared and is up
    exactly while the run counts it failed, and every write is counted once."""
    drv = Driver()
    m = drv.machine
    now = OFF - 300 if across_a_change else NIGHT
    stamp = 0
    in_flight: list = []  # (app, bus, devices) not reported yet
    on_bus: set = set()
    apps: dict = {}  # id(app) -> buses
    reported = 0
    for step in steps:
        now += 1
        stamp += 1
        if step[0] == "tick":
            now += step[1]
            m.tick(now, 60)
        elif step[0] == "done" and in_flight:
            app, _, devices = in_flight.pop(0)
            on_bus.difference_update(devices)
            m.bus_done(app, results(devices, None if step[1] else "timeout"), now, stamp)
            reported += len(devices)
        elif step[0] == "online":
            m.device_state(step[1], step[2])
        elif step[0] == "read":
            m.reading(step[1], "on", step[2], now, stamp, now)
        elif step[0] == "hand":
            m.command_queued(step[1], "dim")
            m.command_done(step[1], "dim", 0.5, step[2], stamp)
        drv.carry()
        for app, bus, devices in drv.writes:
            assert not on_bus.intersection(devices), "a second write while one is on the bus"
            on_bus.update(devices)
            apps.setdefault(id(app), []).append(bus)
            in_flight.append((app, bus, devices))
        drv.writes = []
    up: dict = {}
    for device, point, kind, _, raised, _ in drv.alarms:
        assert kind == "schedule" and point is None
        assert up.get(device, False) != raised, "raised twice or cleared when not up"
        up[device] = raised
    assert sorted(d for d, r in up.items() if r) == sorted(drv.run.failed)
    assert drv.counters["writes_ok"] + drv.counters["writes_failed"] == reported
    waiting = {id(app) for app, _, _ in in_flight}
    finished = [id(app) for app in drv.events]
    assert len(finished) == len(set(finished)), "an application recorded twice"
    assert not waiting.intersection(finished), "recorded while a bus still writes"
    assert set(apps) - waiting <= set(finished)
