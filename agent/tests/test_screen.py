"""Plausibility screening at the positions the plan knows is the screening of every value by name.

A reply that gave every point of a planned request holds them in plan order, so the bus owner checks
only the positions whose points have a `plausible` spec (`DeviceState.checked`, `_implausible`);
anything else (a reply with bad points) is looked up value by value (`_screen`). Both must refuse the
same values, in the same order, and leave every point's reference (last good value, readings below it)
the same.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import make_driver
from agent.scheduler import DeviceState, _implausible, _screen
from protocols.profiles import parse_profile

PROFILE = parse_profile({
    "model": "screened", "kind": "electricity_meter", "protocol": "modbus",
    "points": [
        {"name": "a", "address": 0},
        {"name": "volts", "address": 1, "plausible": {"min": 0, "max": 500}},
        {"name": "b", "address": 2},
        {"name": "energy", "address": 3, "type": "u32", "plausible": {"min": 0, "rule": "non_decreasing"}},
        {"name": "temp", "table": "input", "address": 0, "type": "s16", "plausible": {"min": -40, "max": 90}},
        {"name": "c", "table": "input", "address": 1},
    ]})
BUS = BusConfig(name="line", port="/dev/null")


def state() -> DeviceState:
    driver = make_driver(DeviceConfig(id="m1", bus="line", profile="screened", address="1"), PROFILE, BUS)
    return DeviceState(driver, 0.0)


def test_the_positions_are_those_of_the_checked_points_in_plan_order() -> None:
    s = state()
    names = [[p.name for p, _off in r.points] for r in s.driver.requests]
    assert names == [["a", "volts", "b", "energy"], ["temp", "c"]]
    assert [s.checked[id(r)] for r in s.driver.requests] == [(s.driver.requests[0], [1, 3]),
                                                            (s.driver.requests[1], [0])]


numbers = st.one_of(st.integers(-100, 700), st.sampled_from([math.nan, math.inf, -math.inf, 0.5, True, "on"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.lists(numbers, min_size=4, max_size=4)), min_size=1,
                max_size=12))
def test_screening_at_positions_is_screening_by_name(polls: list) -> None:
    by_position, by_name = state(), state()
    for which, drawn in polls:
        request = by_position.driver.requests[which]
        names = [p.name for p, _off in request.points]
        values = list(zip(names, drawn, strict=False))
        refused = _implausible(by_position, names, drawn[:len(names)], by_position.checked[id(request)][1])
        kept, bad = _screen(by_name, list(values), [])
        assert repr([v for i, v in enumerate(values) if i not in (refused or [])]) == repr(kept)
        assert [(names[i], "implausible") for i in refused or []] == bad
    for point, check in by_position.plausible.items():
        other = by_name.plausible[point]
        assert repr((check.last, check.below, check.below_last)) == repr((other.last, other.below,
                                                                          other.below_last))


def test_an_implausible_value_is_refused_at_its_position() -> None:
    s = state()
    names = ["a", "volts", "b", "energy"]
    assert _implausible(s, names, [1, 600, 2, 10], [1, 3]) == [1]
    assert _implausible(s, names, [1, 230, 2, 9], [1, 3]) == [3]  # energy went back from 10
    assert _implausible(s, names, [1, 230, 2, 11], [1, 3]) is None
    kept, bad = _screen(s, [("a", 1), ("volts", 600), ("b", 2), ("energy", 12)], [("x", "decode")])
    assert kept == [("a", 1), ("b", 2), ("energy", 12)]
    assert bad == [("x", "decode"), ("volts", "implausible")]
