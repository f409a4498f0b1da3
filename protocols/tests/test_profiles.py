"""protocols.profiles: every shipped profile loads; what a command may write to a point."""

import math

import pytest

from protocols.profiles import ProfileError, list_profiles, load_profile, parse_profile

LAMP: dict = {
    "model": "t-lamp", "kind": "lamp", "protocol": "modbus",
    "points": [
        {"name": "on", "table": "holding", "address": 0, "type": "u16", "writable": True, "min": 0, "max": 1},
        {"name": "dim", "unit": "/", "scale": 0.01, "table": "holding", "address": 1, "type": "u16",
         "writable": True, "min": 0, "max": 1},
        {"name": "relay", "table": "coil", "address": 0, "writable": True},
        {"name": "setpoint", "unit": "Cel", "table": "holding", "address": 2, "type": "f32",
         "writable": True, "min": -20, "max": 60},
        {"name": "power", "unit": "W", "table": "input", "address": 3, "type": "u16"},
    ],
}


def test_every_shipped_profile_loads() -> None:
    names = list_profiles()
    assert {"dlt645-3p", "cjt188-water", "dtsu666", "generic-lamp"} <= set(names)
    for name in names:
        assert load_profile(name).model == name


def test_writes_inside_range_and_on_the_register_grid_are_allowed() -> None:
    lamp = parse_profile(LAMP)
    assert lamp.point("dim").check_write(0.3) is None
    assert lamp.point("dim").check_write(1) is None
    assert lamp.point("on").check_write(True) is None
    assert lamp.point("relay").check_write(False) is None
    assert lamp.point("setpoint").check_write(21.37) is None  # float registers have no grid


@pytest.mark.parametrize("point, value, reason", [
    ("power", 5, "not writable"),
    ("dim", 1.5, "above the maximum"),
    ("dim", -0.1, "below the minimum"),
    ("dim", 0.305, "not a multiple of the step 0.01"),  # would be rounded to 0.3 on the wire
    ("on", 0.5, "not a multiple of the step 1"),        # would be rounded to 0: the lamp off
    ("relay", 2, "on/off"),
    ("dim", math.nan, "finite number"),
    ("setpoint", math.inf, "finite number"),
    ("dim", "half", "needs a number"),
    ("dim", True, "point dim needs a number, not True"),          # a ratio is no on/off switch
    ("setpoint", False, "point setpoint needs a number, not False"),
])
def test_refused_writes_say_why(point: str, value: object, reason: str) -> None:
    message = parse_profile(LAMP).point(point).check_write(value)
    assert message is not None and reason in message, message


def test_a_bad_profile_names_the_point_and_key() -> None:
    bad: dict = dict(LAMP)
    bad["points"] = [dict(LAMP["points"][0], table="register")]
    with pytest.raises(ProfileError, match="point on: table must be one of"):
        parse_profile(bad, "t-lamp.json")


METER: dict = {
    "model": "t-meter", "kind": "electricity_meter", "protocol": "dlt645",
    "points": [{"name": "power", "unit": "W", "di": "02030000", "format": "XX.XXXX", "scale": 1000}],
}


def test_actions_are_listed_per_model() -> None:
    for model in ("dlt645-1p", "dlt645-3p"):
        profile = load_profile(model)
        assert profile.action_names() == ["relay_trip", "relay_close"]
        assert profile.has_action("relay_trip") and not profile.has_action("relay_pulse")
    lamp = parse_profile(LAMP, "t-lamp.json")
    assert lamp.actions == [] and not lamp.has_action("relay_trip")


@pytest.mark.parametrize("protocol, actions, message", [
    ("dlt645", {"name": "relay_trip"}, "actions must be a list"),
    ("dlt645", ["relay_trip"], r"actions\[0\] must be an object"),
    ("dlt645", [{"name": "relay_pulse"}],
     "dlt645 devices can carry out relay_trip, relay_close, not 'relay_pulse'"),
    ("dlt645", [{"name": "relay_trip", "code": 26}], r"actions\[0\]: unknown key 'code'"),
    ("dlt645", [{"name": "relay_trip"}, {"name": "relay_trip"}], "action relay_trip is listed twice"),
    ("dlt645", [{"name": "relay_trip", "description": 1}], "description must be a string"),
    ("dlt645_1997", [{"name": "relay_trip"}], "dlt645_1997 devices can carry out no actions"),
])
def test_bad_actions_are_refused(protocol: str, actions: object, message: str) -> None:
    bad = dict(METER, protocol=protocol, actions=actions)
    if protocol == "dlt645_1997":
        bad["points"] = [{"name": "power", "di": "B630", "format": "XX.XXXX"}]
    with pytest.raises(ProfileError, match=message):
        parse_profile(bad, "t-meter.json")


DLT698: dict = {
    "model": "t-698", "kind": "electricity_meter", "protocol": "dlt698",
    "points": [{"name": "voltage_a", "unit": "V", "oad": "20000200", "element": 1}],
}


def test_dlt698_points_name_an_oad_and_maybe_an_element() -> None:
    profile = parse_profile(DLT698)
    assert (profile.point("voltage_a").oad, profile.point("voltage_a").element) == ("20000200", 1)
    assert load_profile("dlt698-3p").point("energy_import_t4").element == 5
    for change, message in (
        ({"oad": "2000020"}, "oad must be 8 hex digits"),
        ({"element": 0}, "element must be an integer 1..255"),
        ({"element": True}, "element must be an integer"),
        ({"oad": "20000201", "element": 2}, "names element 1 already"),
    ):
        bad = dict(DLT698, points=[dict(DLT698["points"][0], **change)])
        with pytest.raises(ProfileError, match=message):
            parse_profile(bad, "t-698.json")
    with pytest.raises(ProfileError, match=r"element is for DL/T 698\.45 points only"):
        parse_profile(dict(METER, points=[dict(METER["points"][0], element=1)]))


def test_lamp_roles_and_broadcast_of_the_generic_lamp() -> None:
    lamp = load_profile("generic-lamp")
    assert lamp.role_point("control").name == "on"  # type: ignore[union-attr]
    assert lamp.role_point("fault").name == "lamp_failure"  # type: ignore[union-attr]
    lit = lamp.role_point("lit")
    assert lit is not None and lit.name == "power" and lit.lit_above == 1.0
    assert lamp.point("on").broadcast and lamp.point("dim").broadcast and not lamp.point("power").broadcast


def test_a_lamp_without_roles_falls_back_to_on_and_lamp_failure_by_name() -> None:
    bare = parse_profile(dict(LAMP, points=[*LAMP["points"], {
        "name": "lamp_failure", "table": "input", "address": 8, "type": "bit0"}]), "t-lamp.json")
    assert bare.role_point("control").name == "on"  # type: ignore[union-attr]
    assert bare.role_point("fault").name == "lamp_failure"  # type: ignore[union-attr]
    assert bare.role_point("lit") is None
    assert parse_profile(LAMP, "t-lamp.json").role_point("fault") is None


@pytest.mark.parametrize("change, message", [
    ({"name": "power", "role": "lamp"}, "point power: role must be one of control, fault, lit, not 'lamp'"),
    ({"name": "power", "role": "control"}, "point power: the control point must be writable"),
    ({"name": "power", "role": "lit"}, "point power: role lit needs lit_above"),
    ({"name": "power", "role": "lit", "lit_above": "1"}, "point power: role lit needs lit_above"),
    ({"name": "power", "lit_above": 1.0}, "point power: lit_above goes with role lit"),
    ({"name": "power", "broadcast": True}, "point power: broadcast applies to writable points only"),
    ({"name": "dim", "broadcast": "yes"}, "point dim: broadcast must be true or false"),
])
def test_bad_lamp_keys_name_the_point(change: dict, message: str) -> None:
    points = [dict(p, **change) if p["name"] == change["name"] else p for p in LAMP["points"]]
    with pytest.raises(ProfileError, match=message):
        parse_profile(dict(LAMP, points=points), "t-lamp.json")


def test_one_point_per_role() -> None:
    points = [dict(p, role="control") if p["name"] in ("on", "relay") else p for p in LAMP["points"]]
    with pytest.raises(ProfileError, match="points on, relay all have role control; a profile marks one"):
        parse_profile(dict(LAMP, points=points), "t-lamp.json")


def test_broadcast_is_for_protocols_that_can_broadcast() -> None:
    """Only a family with `broadcast` (Modbus: unit 0) lets a profile mark a point for it."""
    bad = dict(METER, points=[dict(METER["points"][0], writable=True, broadcast=True)])
    with pytest.raises(ProfileError, match="DL/T 645 devices cannot be written by broadcast"):
        parse_profile(bad, "t-meter.json")
