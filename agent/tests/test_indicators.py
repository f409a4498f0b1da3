"""agent/fleet/indicators.py: what counts, the exact star boundaries, rounding, districts, the "next
star" words, and the totals file's errors (file, line, key)."""

from __future__ import annotations

import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from agent.fleet import indicators as ind
from agent.fleet.indicators import DeviceFacts, TotalsError, load_totals, parse_totals

NOW = 1_800_000_000.0
HOUR = 3600.0


def lamp(n: int = 0, lights: object = 1, **kw: object) -> DeviceFacts:
    facts: dict = dict(
        gateway="gw",
        device="lamp-%d" % n,
        kind="lamp",
        last_seen=NOW - 60,
        online=True,
        lights=lights,
        control_writable=True,
        fault_alarm_armed=True,
    )
    facts.update(kw)
    return DeviceFacts(**facts)


def meter(kind: str, households: int = 1, n: int = 0, **kw: object) -> DeviceFacts:
    facts: dict = dict(
        gateway="gw", device="%s-%d" % (kind, n), kind=kind, last_seen=NOW - 60, households=households
    )
    facts.update(kw)
    return DeviceFacts(**facts)


def sensor(network: str, length_m: float, n: int = 0, **kw: object) -> DeviceFacts:
    facts: dict = dict(
        gateway="gw",
        device="%s-%d" % (network, n),
        kind="flow_meter",
        last_seen=NOW - 60,
        network=network,
        length_m=length_m,
    )
    facts.update(kw)
    return DeviceFacts(**facts)


# ---- L1P3 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counted, stars, percent, words",
    [
        (0, 0, "0.0 %", "3 stars need 70 %: 700 more lamps"),
        (699, 0, "69.9 %", "3 stars need 70 %: 1 more lamp"),
        (700, 3, "70.0 %", "4 stars need 90 %: 200 more lamps"),
        (899, 3, "89.9 %", "4 stars need 90 %: 1 more lamp"),
        (900, 4, "90.0 %", "5 stars need 100 %: 100 more lamps"),
        (999, 4, "99.9 %", "5 stars need 100 %: 1 more lamp"),
        (1000, 5, "100.0 %", ""),
        (1200, 5, "120.0 %", ""),
    ],
)
def test_l1p3_boundaries_are_exact(counted: int, stars: int, percent: str, words: str) -> None:
    """One controller of `counted` lamps against 1,000 public lights: 70 % exactly is 3 stars, one lamp
    fewer is not."""
    devices = [lamp(lights=counted)] if counted else []
    got = ind.l1p3(devices, 1000, NOW)
    assert (got.stars, got.percent, got.next_star) == (stars, percent, words)
    assert got.ratio == Fraction(counted, 1000)


def test_l1p3_rounds_down_and_needs_whole_lamps() -> None:
    """2,099 of 2,999 is 69.99 %: shown 69.9 %, 0 stars, and 70 % of 2,999 is 2,099.3, so one more."""
    got = ind.l1p3([lamp(lights=2099)], 2999, NOW)
    assert (got.percent, got.stars, got.next_star) == ("69.9 %", 0, "3 stars need 70 %: 1 more lamp")
    got = ind.l1p3([lamp(lights=2100)], 2999, NOW)
    assert (got.percent, got.stars) == ("70.0 %", 3)
    assert got.line() == (
        "L1P3 intelligent street lights: 70.0 %, 3 stars; 4 stars need 90 %: 600 more lamps"
    )  # 0.9 * 2999 = 2699.1 -> 2700


def test_l1p3_counts_only_controlled_monitored_alarmed_reporting_lamps() -> None:
    devices = [
        lamp(1),
        lamp(2, lights=40),  # a controller of 40 lamps
        lamp(3, online=False),
        lamp(4, control_writable=False),
        lamp(5, fault_alarm_armed=False),
        lamp(6, last_seen=NOW - 24 * HOUR - 1),  # just over 24 h
        lamp(7, last_seen=NOW - 24 * HOUR),  # exactly 24 h still counts
        lamp(8, last_seen=None),
        meter("water_meter"),
    ]
    assert ind.l1p3(devices, 100, NOW).ratio == Fraction(42, 100)
    counted, excluded = ind.lamp_counts([d for d in devices if d.kind == "lamp"], NOW, 24.0)
    assert counted == 42
    assert excluded == {
        "lamps offline": 1,
        "lamps without a writable control point": 1,
        "lamps without an armed fault alarm": 1,
        "lamps not reporting for 24 h": 2,
    }
    assert ind.l1p3(devices, 100, NOW, stale_hours=0.02).ratio == Fraction(
        41, 100
    )  # 60 s old counts, 1 h not


# ---- L1P9 ------------------------------------------------------------------------------------------


def households(water: int, electricity: int, gas: int) -> list[DeviceFacts]:
    out = []
    for kind, n in (("water_meter", water), ("electricity_meter", electricity), ("gas_meter", gas)):
        if n:
            out.append(meter(kind, households=n))
    return out


@pytest.mark.parametrize(
    "served, stars, percent, words",
    [
        (
            (500, 500, 500),
            3,
            "50.0 %",
            "4 stars need 70 %: more than one utility must grow "
            "(water 50.0 %, electricity 50.0 %, gas 50.0 %)",
        ),
        (
            (500, 500, 499),
            0,
            "49.9 %",
            "3 stars need 50 %: 1 more household on water, or 1 more household on "
            "electricity, or 1 more household on gas (each alone)",
        ),
        (
            (700, 700, 700),
            4,
            "70.0 %",
            "5 stars need 80 %: 300 more households on water, or 300 more households "
            "on electricity, or 300 more households on gas (each alone)",
        ),
        (
            (800, 800, 799),
            4,
            "79.9 %",
            "5 stars need 80 %: 1 more household on water, or 1 more household on "
            "electricity, or 1 more household on gas (each alone)",
        ),
        ((1000, 1000, 400), 5, "80.0 %", ""),
        ((1000, 1000, 0), 3, "66.6 %", "4 stars need 70 %: 100 more households on gas"),
        (
            (3000, 0, 0),
            0,
            "33.3 %",
            "3 stars need 50 %: 500 more households on electricity, or 500 more "
            "households on gas (each alone)",
        ),
    ],
)
def test_l1p9_thirds_boundaries_and_words(served: tuple, stars: int, percent: str, words: str) -> None:
    """1,000 households per utility; each utility's coverage counts at most 100 % (3,000 water
    households do not make up for no electricity or gas)."""
    got = ind.l1p9(households(*served), {"water": 1000, "electricity": 1000, "gas": 1000}, NOW)
    assert (got.stars, got.percent, got.next_star) == (stars, percent, words)


def test_l1p9_counts_reporting_meters_by_households() -> None:
    devices = [meter("water_meter", households=1, n=i) for i in range(300)] + [
        meter("electricity_meter", households=24, n=1),  # a block's meter serving 24 flats
        meter("electricity_meter", households=24, n=2, last_seen=NOW - 25 * HOUR),  # stale
        meter("gas_meter", households=0, n=3),  # a meter serving no household (a boiler room)
        meter("heat_meter", households=50, n=4),  # heat is not part of L1P9
    ]
    got = ind.l1p9(devices, {"water": 1000, "electricity": 100, "gas": 500}, NOW)
    assert [(p.name, p.counted, p.total) for p in got.parts] == [
        ("water", 300, 1000),
        ("electricity", 24, 100),
        ("gas", 0, 500),
    ]
    assert got.ratio == (Fraction(3, 10) + Fraction(24, 100) + 0) / 3


# ---- L2P4 ------------------------------------------------------------------------------------------


def networks(water: float, power: float, gas: float) -> list[DeviceFacts]:
    return [sensor("water", water, 1), sensor("power", power, 2), sensor("gas", gas, 3)]


LENGTHS = {"water": Fraction(40000), "power": Fraction(30000), "gas": Fraction(10000)}


@pytest.mark.parametrize(
    "monitored, stars, percent",
    [
        ((28000, 21000, 7000), 3, "70.0 %"),
        ((28000, 21000, 6999.5), 0, "69.9 %"),
        ((34000, 25500, 8500), 4, "85.0 %"),
        ((40000, 30000, 10000), 5, "100.0 %"),
        ((40000, 30000, 9999.9), 4, "99.9 %"),
    ],
)
def test_l2p4_boundaries(monitored: tuple, stars: int, percent: str) -> None:
    got = ind.l2p4(networks(*monitored), LENGTHS, NOW)
    assert (got.stars, got.percent) == (stars, percent)


def test_l2p4_words() -> None:
    got = ind.l2p4(networks(28000, 21000, 6999.5), LENGTHS, NOW)
    assert got.next_star == (
        "3 stars need 70 %: 2 m more of the water network, or 2 m more of the power network, "
        "or 1 m more of the gas network (each alone)"
    )
    got = ind.l2p4(networks(40000, 30000, 9000), LENGTHS, NOW)
    assert got.next_star == "5 stars need 100 %: 1,000 m more of the gas network"
    got = ind.l2p4(networks(36000, 27000, 9000), LENGTHS, NOW)  # 90 % each: 4 stars
    assert got.next_star == (
        "5 stars need 100 %: more than one network must grow (water 90.0 %, power 90.0 %, gas 90.0 %)"
    )


def test_l2p4_counts_reporting_sensors_with_a_network() -> None:
    devices = [
        sensor("water", 1000.5, 1),
        sensor("water", 500, 2, last_seen=NOW - 48 * HOUR),
        sensor("power", 250, 3),
        DeviceFacts("gw", "p", "pressure", NOW, length_m=9999.0),
    ]
    got = ind.l2p4(devices, LENGTHS, NOW)
    assert [(p.name, p.counted) for p in got.parts] == [
        ("water", Fraction("1000.5")),
        ("power", 250),
        ("gas", 0),
    ]


# ---- districts and the whole report ----------------------------------------------------------------

TOTALS_TOML = """\
# county totals, from the 2025 statistical yearbook
public_lights = 100
households = {water = 10, electricity = 10, gas = 10}

[network_length_m]
water = 1000
power = 1000
gas = 1000

[districts.Lixia]
public_lights = 10
households = 4
network_length_m = {water = 100, power = 100, gas = 100}

[districts.Shizhong]
public_lights = 50
households = 6
network_length_m = {water = 500, power = 500, gas = 500}
"""


def test_report_per_district_and_city(tmp_path: Path) -> None:
    path = tmp_path / "totals.toml"
    path.write_text(TOTALS_TOML)
    totals = load_totals(str(path))
    devices = [lamp(i, district="Lixia") for i in range(7)] + [
        lamp(10 + i, district="Shizhong") for i in range(20)
    ]
    devices += [lamp(99, district="Tianqiao", lights=50)]  # a district without totals: city only
    devices += [meter("water_meter", 4, district="Lixia"), meter("gas_meter", 3, district="Shizhong")]
    devices += [sensor("water", 100, district="Lixia")]
    reports = ind.report(devices, totals, NOW)
    assert [r.scope for r in reports] == ["city", "Lixia", "Shizhong"]
    city, lixia, shizhong = reports
    assert [i.line() for i in city.indicators] == [
        "L1P3 intelligent street lights: 77.0 %, 3 stars; 4 stars need 90 %: 13 more lamps",
        "L1P9 remote-read household meters: 23.3 %, 0 stars; "
        "3 stars need 50 %: 8 more households on electricity",
        "L2P4 monitored network length: 3.3 %, 0 stars; 3 stars need 70 %: more than one network must grow "
        "(water 10.0 %, power 0.0 %, gas 0.0 %)",
    ]
    assert (
        lixia.indicators[0].line()
        == "L1P3 intelligent street lights: 70.0 %, 3 stars; 4 stars need 90 %: 2 more lamps"
    )
    assert lixia.indicators[1].parts[0].coverage == 1  # 4 of 4 households on water
    assert lixia.indicators[2].ratio == Fraction(1, 3)  # all the district's water network, a third
    assert shizhong.indicators[0].percent == "40.0 %" and shizhong.indicators[0].stars == 0
    assert shizhong.indicators[1].parts[2].counted == 3


def test_report_lists_what_it_left_out() -> None:
    totals = parse_totals(
        {"public_lights": 10, "households": 10, "network_length_m": {"water": 1, "power": 1, "gas": 1}}
    )
    devices = [
        lamp(1),
        lamp(2, online=False),
        lamp(3, last_seen=NOW - 30 * HOUR, lights=3),
        meter("water_meter", last_seen=NOW - 30 * HOUR),
        sensor("gas", 1, last_seen=None),
    ]
    (city,) = ind.report(devices, totals, NOW)
    assert city.excluded == {
        "lamps offline": 1,
        "lamps not reporting for 24 h": 3,
        "meters and sensors not reporting for 24 h": 2,
    }


# ---- the totals file -------------------------------------------------------------------------------


def test_households_as_one_number_applies_to_every_utility() -> None:
    t = parse_totals(
        {"public_lights": 5, "households": 7, "network_length_m": {"water": 1, "power": 2.5, "gas": 3}}
    )
    assert t.city.households == {"water": 7, "electricity": 7, "gas": 7}
    assert t.city.network_length_m["power"] == Fraction(5, 2) and t.districts == {}


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.replace("public_lights = 100\n", ""),
            "totals.toml: public_lights: missing: the indicators need it (e.g. public_lights = 12000)",
        ),
        (
            lambda s: s.replace("gas = 1000\n", ""),
            "totals.toml:5: network_length_m.gas: missing: the length of the gas network in metres",
        ),
        (
            lambda s: s.replace("public_lights = 10\n", ""),
            "totals.toml:10: districts.Lixia.public_lights: missing: the indicators need it "
            "(e.g. public_lights = 12000)",
        ),
        (
            lambda s: s.replace("public_lights = 50", "public_lights = 0"),
            "totals.toml:16: districts.Shizhong.public_lights: must be more than 0 "
            "(a ratio needs a total), got 0",
        ),
        (
            lambda s: s.replace("public_lights = 100", "public_lights = 99.5"),
            "totals.toml:2: public_lights: 99.5 is not a whole number",
        ),
        (
            lambda s: s.replace("water = 1000", "water = true"),
            "totals.toml:6: network_length_m.water: True is not a number",
        ),
        (
            lambda s: s.replace("gas = 10}", "heat = 10}"),
            "totals.toml:3: households.gas: missing: households per utility need water, electricity, gas",
        ),
        (
            lambda s: s.replace("public_lights = 100", "public_lights = 100\nlamps = 3"),
            "totals.toml:3: lamps: unknown key 'lamps' "
            "(totals have public_lights, households, network_length_m, and [districts.NAME])",
        ),
        (
            lambda s: s.replace("households = 4\n", "households = 4\nparks = 2\n"),
            "totals.toml:13: districts.Lixia.parks: unknown key 'parks' "
            "(a district has public_lights, households, network_length_m)",
        ),
        (
            lambda s: s.replace(
                "network_length_m = {water = 100, power = 100, gas = 100}",
                "network_length_m = {water = 100, power = 100, gas = 100, heat = 5}",
            ),
            "totals.toml:13: districts.Lixia.network_length_m.heat: unknown network (water, power, gas)",
        ),
        (lambda s: s + "[[oops\n", None),
    ],
)
def test_totals_errors_name_file_line_and_key(tmp_path: Path, edit: object, message: str | None) -> None:
    path = tmp_path / "totals.toml"
    path.write_text(edit(TOTALS_TOML))  # type: ignore[operator]
    with pytest.raises(TotalsError) as caught:
        load_totals(str(path))
    text = str(caught.value).replace(str(tmp_path) + "/", "")
    if message is None:
        assert text.startswith("totals.toml: not valid TOML: ")
    else:
        assert text == message


def test_missing_totals_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        TotalsError, match=r"nope\.toml: cannot read the totals file: No such file or directory"
    ):
        load_totals(str(tmp_path / "nope.toml"))


def test_totals_example_in_the_docs_is_valid(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "indicators.md"
    text = docs.read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:]]
    example = next(b for b in blocks if "public_lights" in b)  # the totals file, not a config example
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent(example))
    totals = load_totals(str(path))
    assert totals.city.public_lights > 0 and totals.districts


def test_hostile_inventory_is_left_out_and_counted_never_a_crash() -> None:
    """Facts come from births on a broker: a negative or fractional count, a NaN or infinite length
    or time are not counted, and the report says how many devices were left out for it."""
    totals = parse_totals(
        {"public_lights": 10, "households": 10, "network_length_m": {"water": 10, "power": 10, "gas": 10}}
    )
    devices = [
        lamp(1),
        lamp(2, lights=-5),
        lamp(3, lights=2.5),
        meter("water_meter", households=-3, n=4),
        meter("gas_meter", households=2, n=5),
        sensor("water", float("nan"), 6),
        sensor("power", float("inf"), 7),
        sensor("gas", -1.0, 8),
        sensor("gas", 4.0, 9, last_seen=float("nan")),
        sensor("water", 5.0, 10),
    ]
    (city,) = ind.report(devices, totals, NOW)
    lights, households, network = city.indicators
    assert lights.ratio == Fraction(1, 10)
    assert [p.counted for p in households.parts] == [0, 0, 2]
    assert [p.counted for p in network.parts] == [5, 0, 0]
    assert city.excluded == {
        "devices with invalid lights, households or length_m": 6,
        "meters and sensors not reporting for 24 h": 1,
    }
