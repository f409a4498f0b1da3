"""protocols.birth: birth and will maps, validation, alias tables, resolution scaling."""

import binascii

import cbor2
import pytest

from protocols import birth, cbor
from protocols.errors import EncodingError

T0 = 1710498000
DEVICES = [
    {"id": "em01", "kind": "electricity_meter", "model": "dtsu666", "protocol": "modbus", "address": 1,
     "points": [{"name": "ua", "unit": "V", "resolution": 0.1},
                {"name": "ep", "unit": "J", "resolution": 36000}]},
    {"id": "wm01", "kind": "water_meter", "model": "lxsy", "protocol": "cjt188", "address": "12345678901234",
     "alias": 7, "points": [{"name": "vol", "unit": "m3", "alias": 3}, {"name": "valve", "unit": ""}]},
]


def make() -> dict:
    return birth.make_birth("gw-01", "plant-3", DEVICES, T0, seq=2, payload="compact",
                            versions={"fieldlink": "0.1.0"})


def test_birth_fields_and_default_aliases() -> None:
    b = make()
    assert b["online"] is True and b["gateway"] == "gw-01" and b["site"] == "plant-3" and b["seq"] == 2
    assert b["time"] == T0 and b["payload"] == "compact" and b["base_name"] == "gw-01:"
    assert b["versions"] == {"fieldlink": "0.1.0"}
    em, wm = b["devices"]
    assert em["alias"] == 0 and [p["alias"] for p in em["points"]] == [0, 1]
    assert wm["alias"] == 7 and [p["alias"] for p in wm["points"]] == [3, 1]
    assert em["points"][0] == {"name": "ua", "unit": "V", "alias": 0, "resolution": 0.1}
    assert "resolution" not in wm["points"][0]
    assert em["address"] == 1 and wm["address"] == "12345678901234"


def test_birth_round_trip_and_text_keys() -> None:
    b = make()
    data = birth.encode(b)
    assert birth.decode(data) == b
    plain = cbor2.loads(data)  # a generic tool reads it: text keys all the way down
    assert plain == b and all(isinstance(k, str) for k in plain)
    assert all(isinstance(k, str) for d in plain["devices"] for k in d)


def test_will() -> None:
    will = birth.make_will("gw-01", "plant-3", seq=2)
    assert will == {"online": False, "gateway": "gw-01", "site": "plant-3", "seq": 2}
    data = birth.encode(will)
    assert binascii.hexlify(data).decode() == (
        "a46373657102647369746567706c616e742d33666f6e6c696e65f46767617465776179656777" "2d3031")
    assert birth.decode(data) == will
    with pytest.raises(EncodingError):
        birth.alias_table(will)


def test_units_and_alias_table() -> None:
    b = make()
    assert birth.units(b) == {("em01", "ua"): "V", ("em01", "ep"): "J", ("wm01", "vol"): "m3"}
    table = birth.alias_table(b)
    assert table.seq == 2 and table.base_name == "gw-01:"
    assert table.by_name["wm01"] == (7, {"vol": (3, None), "valve": (1, None)})
    assert table.by_alias[0] == ("em01", {0: ("ua", "V", (birth.DIVIDE, 10)),
                                          1: ("ep", "J", (birth.MULTIPLY, 36000))})


@pytest.mark.parametrize("resolution,expected", [
    (None, None), (0.1, (birth.DIVIDE, 10)), (0.01, (birth.DIVIDE, 100)), (0.001, (birth.DIVIDE, 1000)),
    (1e-6, (birth.DIVIDE, 1000000)), (0.5, (birth.DIVIDE, 2)), (0.25, (birth.DIVIDE, 4)),
    (1, (birth.MULTIPLY, 1)),
    (1.0, (birth.MULTIPLY, 1)), (36000, (birth.MULTIPLY, 36000)), (0.3, (birth.GENERIC, 0.3)),
    (2.5, (birth.GENERIC, 2.5)),
])
def test_scaling(resolution: object, expected: object) -> None:
    assert birth.scaling(resolution) == expected


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b.update(online="yes"), "online"),
    (lambda b: b.update(payload="json"), "payload"),
    (lambda b: b.update(seq=-1), "seq"),
    (lambda b: b.update(time="now"), "time"),
    (lambda b: b.update(gateway="gw 01"), "gateway"),
    (lambda b: b.update(versions={"a": 1}), "version"),
    (lambda b: b.update(devices={}), "devices"),
    (lambda b: b["devices"].append(dict(b["devices"][0])), "declared twice"),
    (lambda b: b["devices"][1].update(alias=0), "declared twice"),
    (lambda b: b["devices"][0]["points"][1].update(alias=0), "declared twice"),
    (lambda b: b["devices"][0]["points"][1].update(name="ua"), "declared twice"),
    (lambda b: b["devices"][0]["points"][0].update(resolution=0), "resolution"),
    (lambda b: b["devices"][0]["points"][0].update(resolution=float("nan")), "resolution"),
    (lambda b: b["devices"][0].update(address=1.5), "address"),
    (lambda b: b["devices"][0].update(points=[{"name": "a/b", "unit": ""}]), "name"),
    (lambda b: b.update(base_name="-x:"), "must start"),
    (lambda b: b["devices"].append(3), "must be a map"),
])
def test_validation(mutate: object, message: str) -> None:
    b = make()
    b["devices"] = [dict(d, points=[dict(p) for p in d["points"]]) for d in b["devices"]]
    mutate(b)  # type: ignore[operator]
    with pytest.raises(EncodingError, match=message):
        birth.encode(b)


def test_decode_refuses_non_status() -> None:
    for value in ([1], {"online": True}, {"online": False, "gateway": "g", "site": "s"}):
        with pytest.raises(EncodingError):
            birth.decode(cbor.dumps(value))


def test_serves_and_lights_travel_in_the_device_entries() -> None:
    devices = [dict(DEVICES[0], serves={"households": 0, "network": "power", "length_m": 1200.5}),
               dict(DEVICES[1], serves={"households": 24}),
               {"id": "lamp-01", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus", "address": 3,
                "points": [], "lights": 2}]
    b = birth.make_birth("gw-01", "plant-3", devices, T0)
    decoded = cbor2.loads(birth.encode(b))
    assert decoded["devices"][0]["serves"] == {"households": 0, "network": "power", "length_m": 1200.5}
    assert decoded["devices"][1]["serves"] == {"households": 24} and "lights" not in decoded["devices"][1]
    assert decoded["devices"][2]["lights"] == 2 and "serves" not in decoded["devices"][2]
    assert birth.decode(birth.encode(b)) == b


@pytest.mark.parametrize("extra, message", [
    ({"serves": 3}, "serves must be a map"),
    ({"serves": {"homes": 3}}, "serves has unknown key 'homes'"),
    ({"serves": {"households": -1}}, "serves.households must be a whole number >= 0"),
    ({"serves": {"households": 2.5}}, "serves.households must be a whole number >= 0"),
    ({"serves": {"households": True}}, "serves.households must be a whole number >= 0"),
    ({"serves": {"network": "water"}}, "network and length_m go together"),
    ({"serves": {"network": "heat", "length_m": 3}}, "serves.network must be one of water, power, gas"),
    ({"serves": {"network": "gas", "length_m": float("nan")}}, "serves.length_m must be a finite number"),
    ({"serves": {"network": "gas", "length_m": -1}}, "serves.length_m must be a finite number"),
    ({"lights": 0}, "lights must be a whole number >= 1"),
    ({"lights": True}, "lights must be a whole number >= 1"),
])
def test_bad_serves_and_lights_are_refused(extra: dict, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        birth.make_birth("gw-01", "plant-3", [dict(DEVICES[0], **extra)], T0)
