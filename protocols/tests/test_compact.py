"""protocols.compact: layout, equality with the SenML profile, bytes per reading on meter data."""

import binascii
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import birth, cbor, compact, senml
from protocols.errors import EncodingError, SenmlError

T0 = 1710498000
METER_POINTS = [
    {"name": "ua", "unit": "V", "resolution": 0.1},
    {"name": "ia", "unit": "A", "resolution": 0.001},
    {"name": "p", "unit": "W", "resolution": 0.1},
    {"name": "ep", "unit": "J", "resolution": 36000},  # 0.01 kWh
]


def meter_birth(meters: int = 48, seq: int = 3) -> dict:
    devices = [{"id": "em%02d" % i, "kind": "electricity_meter", "model": "dtsu666", "protocol": "dlt645",
                "address": "0000000000%02d" % i, "points": METER_POINTS} for i in range(meters)]
    return birth.make_inventory("gw-01", "plant-3", devices, seq=seq, payload="compact",
                            versions={"fieldlink": "0.1.0"})


def meter_batch(minutes: int = 1, meters: int = 48, seed: int = 7) -> list:
    """Readings of ``meters`` three-phase meters polled every 60 s, values as the codecs produce them."""
    rnd = random.Random(seed)
    energy = [rnd.randrange(0, 9_999_999) for _ in range(meters)]  # 0.01 kWh counts
    out = []
    for m in range(minutes):
        t = T0 + 30 + 60 * m
        for i in range(meters):
            power = rnd.randrange(0, 150_000)  # 0.1 W steps, up to 15 kW
            energy[i] += power // 6000
            dev = "em%02d" % i
            out += [(dev, "ua", rnd.randrange(2150, 2450) / 10, t),
                    (dev, "ia", rnd.randrange(0, 60_000) / 1000, t),
                    (dev, "p", power / 10, t), (dev, "ep", energy[i] * 36000, t)]
    return out


@pytest.mark.parametrize("minutes", [1, 15])
def test_bytes_per_reading_on_meter_batch(minutes: int) -> None:
    b = meter_birth()
    readings = meter_batch(minutes)
    data = compact.encode(readings, b)
    plain = senml.encode(readings, b["base_name"])
    per, per_senml = len(data) / len(readings), len(plain) / len(readings)
    print("\n%d readings (48 meters x 4 points x %d min): compact %d B = %.2f B/reading; "
          "SenML-CBOR %d B = %.2f B/reading (%.1fx); birth %d B"
          % (len(readings), minutes, len(data), per, len(plain), per_senml, per_senml / per,
             len(birth.encode(b))))
    assert per <= 12
    assert compact.decode(data, b) == senml.resolve(senml.pack(readings, b["base_name"]))


def test_decode_with_units_equals_senml_with_units() -> None:
    b = meter_birth(4)
    readings = meter_batch(2, meters=4)
    expected = senml.decode(senml.encode(readings, b["base_name"], units=birth.units(b)))
    assert compact.decode(compact.encode(readings, b), b, with_units=True) == expected
    assert expected[0]["u"] in ("V", "A", "W", "J")


def test_layout_matches_the_cddl() -> None:
    b = meter_birth(2)
    readings = [("em01", "ua", 230.5, T0 + 60), ("em00", "ia", 5.123, T0), ("em00", "ua", 229.9, T0),
                ("em01", "ep", 44444412000, T0 + 60)]
    items = compact.pack(readings, b)
    assert items == [1, 3, T0, [0, 0, [0, 2299, 1, 5123]], [60, 1, [0, 2305, 3, 1234567]]]
    data = compact.encode(readings, b)
    assert binascii.hexlify(data).decode() == (
        "85" "01" "03" "1a65f420d0" "83" "00" "00" "84" "00" "1908fb" "01" "191403"
        "83" "183c" "01" "84" "00" "190901" "03" "1a0012d687")
    shuffled = list(reversed(readings))
    assert compact.encode(shuffled, b) == data  # deterministic whatever the input order


def test_values_on_the_grid_come_back_exactly_and_others_rounded() -> None:
    b = meter_birth(1)
    grid = [("em00", "ua", n / 10, T0 + n) for n in range(2000, 2600)]
    grid += [("em00", "ia", n / 1000, T0 + n) for n in range(0, 65000, 7)]
    decoded = compact.decode(compact.encode(grid, b), b)
    assert [r["v"] for r in decoded] == [v for _, _, v, _ in sorted(grid, key=lambda r: (r[3], r[1]))]
    off = compact.decode(compact.encode([("em00", "ua", 230.54, T0)], b), b)
    assert off[0]["v"] == 230.5
    assert compact.decode(compact.encode([("em00", "ep", 36000 * 5 + 17999, T0)], b), b)[0]["v"] == 180000


def test_other_value_types_and_unscaled_points() -> None:
    devices = [{"id": "v1", "kind": "water_meter", "model": "x", "protocol": "cjt188", "address": "1",
                "points": [{"name": "valve", "unit": ""}, {"name": "flow", "unit": "m3/s"},
                           {"name": "state", "unit": ""}, {"name": "raw", "unit": ""},
                           {"name": "lvl", "unit": "m", "resolution": 0.01}]}]
    b = birth.make_inventory("gw-02", "s", devices, payload="compact")
    readings = [("v1", "valve", True, T0), ("v1", "flow", 0.000123, T0), ("v1", "state", "open", T0 + 1),
                ("v1", "raw", bytearray(b"\x01\x02"), T0 + 1), ("v1", "flow", 2.0, T0 + 2),
                ("v1", "lvl", float("inf"), T0 + 3), ("v1", "lvl", 7, T0 + 4), ("v1", "flow", -3, T0 + 5)]
    items = compact.pack(readings, b)
    assert items[3] == [0, 0, [0, True, 1, 0.000123]]
    assert items[5] == [2, 0, [1, 2]]  # integral float goes as an int
    assert items[6] == [3, 0, [4, float("inf")]]
    assert items[7] == [4, 0, [4, 700]]
    assert compact.decode(compact.encode(readings, b), b) == senml.resolve(senml.pack(readings, "gw-02:"))


def test_alias_table_can_be_reused_and_base_time_given() -> None:
    b = meter_birth(2)
    table = birth.alias_table(b)
    readings = meter_batch(1, meters=2)
    data = compact.encode(readings, table, base_time=T0)
    assert cbor.loads(data)[2] == T0  # type: ignore[index]
    assert compact.decode(data, table) == compact.decode(compact.encode(readings, b), b)


@pytest.mark.parametrize("reading", [("em99", "ua", 1.0, T0), ("em00", "xx", 1.0, T0), ("em00", "ua", [], T0),
                                     ("em00", "ep", 2**80, T0)])
def test_encode_refuses_undeclared_points_and_bad_values(reading: tuple) -> None:
    with pytest.raises(EncodingError):
        compact.encode([reading], meter_birth(1))


@pytest.mark.parametrize("items,message", [
    ([2, 3, T0], "format 2"), ([1, 4, T0], "seq 4"), ([1, 3, 1.5], "base time"), ([1, 3], "array"),
    ({1: 3}, "array"), ([1, 3, T0, [0, 0]], "slot 0"), ([1, 3, T0, [0, 9, [0, 1]]], "device alias 9"),
    ([1, 3, T0, [0, 0, [7, 1]]], "point alias 7"), ([1, 3, T0, [0, 0, [0]]], "readings must be"),
    ([1, 3, T0, [0, 0, [0, None]]], "cannot be"), ([1, 3, T0, ["x", 0, [0, 1]]], "time offset"),
    ([1, 3, 0, [0, 0, [0, 1]]], "relative"), ([1, 3, T0, [0, 0, [0, 2**70]]], "out of range"),
    ([1, 3, T0, [0, True, [0, 1]]], "device alias True"),
])
def test_decode_refuses_malformed_packs(items: object, message: str) -> None:
    with pytest.raises(SenmlError, match=message):
        compact.decode(cbor.dumps(items), meter_birth(1))


points = st.sampled_from(["ua", "ia", "p", "ep", "flag", "text", "blob", "num"])
grid_values = {
    "ua": st.integers(-100000, 100000).map(lambda n: n / 10),
    "ia": st.integers(-(10**9), 10**9).map(lambda n: n / 1000),
    "p": st.integers(-(10**9), 10**9).map(lambda n: n / 10),
    "ep": st.integers(-(10**12), 10**12).map(lambda n: n * 36000),
    "flag": st.booleans(), "text": st.text(max_size=8), "blob": st.binary(max_size=8),
    "num": st.integers(-(2**63), 2**63) | st.floats(allow_nan=False),
}


@st.composite
def any_readings(draw: st.DrawFn) -> list:
    n = draw(st.integers(1, 40))
    out = []
    for _ in range(n):
        p = draw(points)
        t = draw(st.integers(T0, T0 + 3600) | st.floats(T0, T0 + 3600.0))
        out.append(("em%02d" % draw(st.integers(0, 2)), p, draw(grid_values[p]), t))
    return out


def mixed_birth() -> dict:
    pts = [*METER_POINTS, {"name": "flag", "unit": ""}, {"name": "text", "unit": ""},
           {"name": "blob", "unit": ""}, {"name": "num", "unit": "count"}]
    devices = [{"id": "em%02d" % i, "kind": "electricity_meter", "model": "m", "protocol": "modbus",
                "address": i + 1, "alias": 10 * i + 5, "points": pts} for i in range(3)]
    return birth.make_inventory("gw-01", "plant-3", devices, seq=9, payload="compact")


MIXED = mixed_birth()
MIXED_TABLE = birth.alias_table(MIXED)


@given(any_readings())
def test_compact_decode_equals_senml_resolve(readings: list) -> None:
    data = compact.encode(readings, MIXED_TABLE)
    decoded = compact.decode(data, MIXED_TABLE)
    resolved = senml.resolve(senml.pack(readings, "gw-01:"))
    assert decoded == resolved
    assert [type(r.get("v")) for r in decoded] == [type(r.get("v")) for r in resolved]  # 230, not 230.0
