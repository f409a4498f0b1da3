"""agent/lighting/zones.py + protocols/zone.py: the compiled offset table answers as zoneinfo does."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.lighting.zones import compile_zone
from protocols.zone import Zone, fixed_zone, zone_from_dict

ZONES = [
    "Asia/Shanghai",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Atlantic/Reykjavik",
    "America/Santiago",
    "Asia/Tehran",
    "Pacific/Kiritimati",
]
COMPILED = {name: compile_zone(name, 2024, 2044) for name in ZONES}
START = int(dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp())
UNTIL = int(dt.datetime(2045, 1, 1, tzinfo=dt.UTC).timestamp())


@given(st.sampled_from(ZONES), st.integers(START, UNTIL - 1))
def test_offset_at_any_instant_is_zoneinfos(name: str, instant: int) -> None:
    expected = dt.datetime.fromtimestamp(instant, zoneinfo.ZoneInfo(name)).utcoffset()
    assert expected is not None
    assert COMPILED[name].offset_at(instant) == int(expected.total_seconds())


@given(st.sampled_from(ZONES), st.datetimes(dt.datetime(2024, 1, 2), dt.datetime(2044, 12, 30)))
def test_local_wall_time_to_utc_is_zoneinfos_fold0(name: str, wall: dt.datetime) -> None:
    """Including the hour that happens twice (first one) and the hour that never happens (read with
    the offset before the change), as zoneinfo with fold=0."""
    wall = wall.replace(microsecond=0, fold=0)  # hypothesis also draws fold=1 (the other reading)
    expected = int(wall.replace(tzinfo=zoneinfo.ZoneInfo(name)).timestamp())
    local_seconds = (wall - dt.datetime(1970, 1, 1)) // dt.timedelta(seconds=1)
    assert COMPILED[name].utc(local_seconds) == expected


def test_every_change_is_found_to_the_second() -> None:
    berlin = COMPILED["Europe/Berlin"]
    assert len(berlin.instants) == 1 + 2 * 21  # two changes a year, 2024..2044
    # 2026: last Sunday of March 01:00 UTC, last Sunday of October 01:00 UTC
    assert 1774746000 in berlin.instants and 1792890000 in berlin.instants
    assert berlin.offset_at(1774746000 - 1) == 3600 and berlin.offset_at(1774746000) == 7200
    assert len(COMPILED["Asia/Shanghai"].instants) == 1


def test_json_round_trip_and_expiry() -> None:
    berlin = COMPILED["Europe/Berlin"]
    again = zone_from_dict(json.loads(json.dumps(berlin.to_dict())))
    assert again.to_dict() == berlin.to_dict()
    assert not again.expired(UNTIL - 1) and again.expired(UNTIL)
    assert again.offset_at(UNTIL + 10**8) == berlin.offsets[-1]  # kept, but expired() says so


def test_fixed_zone_names_itself() -> None:
    assert fixed_zone(8 * 3600).name == "UTC+08:00"
    assert fixed_zone(-(3 * 3600 + 1800)).name == "UTC-03:30"
    assert fixed_zone(19800).utc(0) == -19800


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"name": "X", "until": 1}, "zone X: missing key 'changes'"),
        ({"name": "X", "until": 1, "changes": []}, "zone X: no offsets"),
        (
            {"name": "X", "until": 1, "changes": [[0, 3600], [0, 7200]]},
            "zone X: change 1 is not after the one before it",
        ),
        (
            {"name": "X", "until": 1, "changes": [[0, 90000]]},
            "zone X: change 0: offset 90000 s is beyond 18 hours",
        ),
        (
            {"name": "X", "until": 1, "changes": [[0]]},
            "zone X: change 0 is not [instant, offset seconds]: (0,)",
        ),
        ({"name": "X", "until": "soon", "changes": [[0, 0]]}, "zone X: until 'soon' is not a POSIX instant"),
    ],
)
def test_bad_tables_are_refused_with_the_reason(raw: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        zone_from_dict(raw)
    assert str(caught.value) == message


def test_unknown_zone_names_it() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Asia/Jinan'"):
        compile_zone("Asia/Jinan", 2026)


def test_zone_is_a_plain_class() -> None:
    z = Zone("T", [(0, 0), (100, 3600)], 1000)
    assert z.offset_at(-5) == 0 and z.offset_at(99) == 0 and z.offset_at(100) == 3600
    assert z.day(86400 - 3600) == 1  # 23:00 UTC on day 0 is 00:00 local on day 1


@pytest.mark.parametrize("name", ZONES)
def test_wall_times_around_every_change_are_zoneinfos(name: str) -> None:
    """Every minute of local time within three hours of every change (the gaps and the repeated hours
    that random sampling would rarely hit)."""
    zone = COMPILED[name]
    tz = zoneinfo.ZoneInfo(name)
    checked = 0
    for instant in zone.instants[1:]:
        centre = instant + zone.offset_at(instant)
        for local_seconds in range(centre - 3 * 3600, centre + 3 * 3600, 60):
            wall = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=local_seconds)
            assert zone.utc(local_seconds) == int(wall.replace(tzinfo=tz).timestamp()), (name, wall)
            checked += 1
    assert checked == 360 * (len(zone.instants) - 1)
