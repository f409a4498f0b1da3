"""protocols.rules: alarm transitions with hysteresis, flags, and what is ignored."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.rules import Rule, RuleSet


def feed(rule: Rule, values: list) -> list:
    return [rule.update(v) for v in values]


def test_above_with_hysteresis_raises_once_and_clears_once() -> None:
    rule = Rule("pump", "pressure", above=500_000, hysteresis=20_000)
    assert feed(rule, [400_000, 510_000, 520_000, 490_000, 481_000, 479_000, 470_000]) == [
        None, True, None, None, None, False, None]


def test_below_with_hysteresis() -> None:
    rule = Rule("tank", "level", below=1.0, hysteresis=0.2)
    assert feed(rule, [1.5, 0.9, 1.1, 1.19, 1.2, 0.5]) == [None, True, None, None, False, True]


def test_both_bounds() -> None:
    rule = Rule("lamp", "voltage", above=250, below=190)
    assert feed(rule, [230, 260, 230, 180, 180, 200]) == [None, True, False, True, None, False]


def test_fault_flag_rule() -> None:
    rule = Rule("lamp-01", "lamp_failure", kind="fault")
    assert feed(rule, [False, True, True, 0, 1]) == [None, True, None, False, True]


def test_text_values_are_ignored_and_bad_rules_refused() -> None:
    rule = Rule("meter", "valve", above=1)
    assert rule.update("open") is None and not rule.active
    with pytest.raises(ValueError, match="needs above or below"):
        Rule("a", "b")
    with pytest.raises(ValueError, match="not one of"):
        Rule("a", "b", kind="smoke")


def test_ruleset_reports_transitions_in_reading_order() -> None:
    rules = RuleSet([Rule("a", "p", above=10), Rule("b", "q", kind="leak"), Rule("a", "p", below=0)])
    readings = [("a", "p", 11, 100), ("b", "q", True, 101), ("c", "x", 99, 102), ("a", "p", -1, 103)]
    out = [(r.device, r.point, r.kind, v, raised, t) for r, v, raised, t in rules.check(readings)]
    assert out == [("a", "p", "threshold", 11, True, 100), ("b", "q", "leak", True, True, 101),
                   ("a", "p", "threshold", -1, False, 103), ("a", "p", "threshold", -1, True, 103)]


@given(st.lists(st.floats(min_value=-1000, max_value=1000), max_size=60),
       st.floats(min_value=0, max_value=50))
def test_transitions_alternate_and_track_the_state(values: list, hysteresis: float) -> None:
    rule = Rule("d", "p", above=100, below=-100, hysteresis=hysteresis)
    changes = [c for c in feed(rule, values) if c is not None]
    assert all(a != b for a, b in itertools.pairwise(changes))  # raised, cleared, raised...
    if changes:
        assert changes[0] is True and rule.active == changes[-1]
    if values and (values[-1] > 100 or values[-1] < -100):
        assert rule.active  # outside the band always means raised
    if values and -100 + hysteresis <= values[-1] <= 100 - hysteresis:
        assert not rule.active  # well inside always means cleared
