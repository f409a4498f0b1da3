"""protocols.plausible: ranges, NaN, the non-decreasing rule with its rebase, and the profile key.

Property tests state what the rule promises whatever the sequence: what is accepted from a
non-decreasing register never goes down except at a rebase, a rebase needs REBASE_AFTER readings in a
row below the reference that do not fall among themselves, and a lone glitch changes nothing.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.plausible import REBASE_AFTER, Plausible, check_spec, for_points
from protocols.profiles import ProfileError, load_profile, parse_profile

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
anything = st.one_of(finite, st.just(math.nan), st.just(math.inf), st.just(-math.inf),
                     st.integers(min_value=-10**9, max_value=10**9))


@given(st.lists(anything, max_size=60), finite, finite)
def test_range_accepts_exactly_the_finite_values_inside(values, a, b):
    low, high = min(a, b), max(a, b)
    p = Plausible(low, high)
    for v in values:
        inside = math.isfinite(v) and low <= v <= high
        assert p.check(v) is inside


@given(st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), max_size=80))
def test_non_decreasing_accepted_values_fall_only_at_a_rebase(values):
    p = Plausible(0, None, "non_decreasing")
    accepted: list[float] = []
    run: list[float] = []  # rejected readings since the last accepted one
    for v in values:
        reference = p.last
        if p.check(v):
            if accepted and v < accepted[-1]:
                # a rebase: REBASE_AFTER - 1 rejected readings before it, all below the reference,
                # not falling among themselves, and this one not below the last of them
                tail = [*run[-(REBASE_AFTER - 1):], v]
                assert len(tail) == REBASE_AFTER and all(x < reference for x in tail)
                assert tail == sorted(tail)
            accepted.append(v)
            run = []
        else:
            assert reference is not None and v < reference
            run.append(v)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=2, max_size=40),
       st.integers(min_value=1, max_value=39),
       st.floats(min_value=0, max_value=1e6, allow_nan=False, exclude_max=True))  # below the 1e6 start
def test_a_lone_glitch_is_refused_and_changes_nothing(steps, where, glitch):
    series = []
    total = 1e6
    for s in steps:
        total += s
        series.append(total)
    where = where % len(series)
    if where == 0:
        where = 1
    p = Plausible(0, None, "non_decreasing")
    got = []
    for i, v in enumerate(series):
        if i == where:
            assert p.check(glitch) is False  # below every value of the series
        got.append(p.check(v))
    assert all(got) and p.last == series[-1]


def test_meter_cleared_then_counting_again_is_accepted_after_the_rebase():
    p = Plausible(0, None, "non_decreasing")
    results = [p.check(v) for v in [9000.5, 9001.0, 0.0, 0.1, 0.2, 0.3]]
    assert results == [True, True] + [False] * (REBASE_AFTER - 1) + [True] * (4 - REBASE_AFTER + 1)
    assert p.last == 0.3


@pytest.mark.parametrize(("spec", "problem"), [
    ({}, "min, max or rule"), ({"min": 1, "max": 0}, "above max"), ({"max": math.inf}, "finite"),
    ({"rule": "increasing"}, "not one of non_decreasing"), ({"lo": 0}, "unknown key"), ("0..500", "object"),
])
def test_bad_specs_say_what_is_wrong(spec, problem):
    assert problem in (check_spec(spec) or "")


def test_profile_refuses_a_bad_plausible_key_and_names_the_point():
    with pytest.raises(ProfileError, match=r"point voltage: plausible: min 600 is above max 500"):
        parse_profile({"model": "m", "kind": "electricity_meter", "protocol": "modbus",
                       "points": [{"name": "voltage", "address": 0, "plausible": {"min": 600, "max": 500}}]})


#: what the packaged profiles promise (physically certain only): model -> {point: spec}
V500 = {"min": 0, "max": 500}
COUNTER = {"min": 0, "rule": "non_decreasing"}
PACKAGED: dict[str, dict[str, dict]] = {
    "dlt645-1p": {"voltage": V500, "energy_import": COUNTER, "energy_export": COUNTER,
                  "power_factor": {"min": -1, "max": 1}},
    "dlt645-3p": {"voltage_a": V500, "energy_import_t1": COUNTER},
    "dlt645-1997": {"voltage_a": V500, "energy_import": COUNTER},
    "dlt698-3p": {"voltage_c": V500, "energy_import": COUNTER, "power_factor": {"min": -1, "max": 1}},
    "dtsu666": {"voltage_a": V500, "voltage_ab": {"min": 0, "max": 866}, "energy_import": COUNTER},
    "cjt188-water": {"volume": COUNTER},
    "cjt188-gas": {"volume": COUNTER},
    "cjt188-heat": {"heat_energy": COUNTER, "flow_rate": {"min": 0}},
    "water-quality": {"ph": {"min": 0, "max": 14}},
}


@pytest.mark.parametrize("model", sorted(PACKAGED))
def test_packaged_profiles_carry_the_physical_limits(model):
    points = {p.name: p for p in load_profile(model).points}
    for name, spec in PACKAGED[model].items():
        assert points[name].plausible == spec, (model, name)
    assert set(for_points(list(points.values()))) >= set(PACKAGED[model])


def test_counters_that_restart_by_design_carry_no_rule():
    """A lamp controller's energy and burn hours start again at 0 after a reboot (the simulator's reboot
    fault does the same): never decreasing is not physically certain there."""
    for model, point in (("generic-lamp", "energy"), ("generic-lamp", "burn_hours"),
                         ("lighting-cabinet", "energy"), ("dlt645-1p", "energy_combined")):
        spec = load_profile(model).point(point).plausible
        assert not spec or "rule" not in spec, (model, point)
