"""protocols/schedule.py: parsing with errors that name schedule, step and key; resolving days in
DST-free and DST zones (23- and 25-hour days), across midnight and at polar latitudes; the step in
force, the merged state a rebooted lamp is put back to, and the next change, with property tests."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.lighting.zones import compile_zone
from protocols import schedule as sc
from protocols import solar
from protocols.schedule import Place, ScheduleError, parse_schedule

ZONES = {
    name: compile_zone(name, 2025, 2030)
    for name in (
        "Asia/Shanghai",
        "Europe/Berlin",
        "America/New_York",
        "Arctic/Longyearbyen",
        "Europe/Oslo",
        "Atlantic/Reykjavik",
        "Australia/Sydney",
    )
}
PLACES = {
    "Jinan": Place(36.6512, 117.1201, ZONES["Asia/Shanghai"]),
    "Berlin": Place(52.52, 13.405, ZONES["Europe/Berlin"]),
    "New York": Place(40.7128, -74.0060, ZONES["America/New_York"]),
    "Longyearbyen": Place(78.2232, 15.6267, ZONES["Arctic/Longyearbyen"]),
    "Tromso": Place(69.6492, 18.9553, ZONES["Europe/Oslo"]),
    "Reykjavik": Place(64.1466, -21.9426, ZONES["Atlantic/Reykjavik"]),
    "Sydney": Place(-33.8688, 151.2093, ZONES["Australia/Sydney"]),
}
STREET = {
    "name": "main street",
    "group": "main_street",
    "steps": [
        {"at": "sunset-10m", "set": {"on": True, "dim": 100}},
        {"at": "23:30", "set": {"dim": 50}, "days": "mon-fri"},
        {"at": "sunrise+15m", "set": {"on": False}},
    ],
}
GROUPS = {"main_street": ["lamp-01", "lamp-02"]}


def must(change: sc.Change | None) -> sc.Change:
    assert change is not None, "no step in force / no next change"
    return change


def day_number(y: int, m: int, d: int) -> int:
    return solar.days_from_civil(y, m, d)


def instant(
    zone_name: str, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0
) -> int:
    """The POSIX instant of a wall-clock time, by zoneinfo (the independent reference)."""
    wall = dt.datetime(y, mo, d, h, mi, s, fold=fold, tzinfo=zoneinfo.ZoneInfo(zone_name))
    return int(wall.timestamp())


def wall(zone_name: str, t: int) -> str:
    return dt.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M:%S %Z")


# ---- parsing -------------------------------------------------------------------------------------


def test_parses_the_issue_example_and_resolves_the_group() -> None:
    s = parse_schedule(STREET, GROUPS)
    assert s.name == "main street" and s.group == "main_street" and s.devices == ["lamp-01", "lamp-02"]
    assert [(st_.event, st_.seconds, st_.minutes, st_.days) for st_ in s.steps] == [
        ("sunset", 0, -10, None),
        (None, 84600, 0, (0, 1, 2, 3, 4)),
        ("sunrise", 0, 15, None),
    ]
    assert s.points == ["dim", "on"]
    assert parse_schedule(dict(STREET, group=None, devices=["a", "b"])).devices == ["a", "b"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("18:05", (None, 65100, 0)),
        ("00:00", (None, 0, 0)),
        ("23:59:59", (None, 86399, 0)),
        ("sunset", ("sunset", 0, 0)),
        ("sunset+30m", ("sunset", 0, 30)),
        ("Sunrise - 15m", ("sunrise", 0, -15)),
        ("dusk+0m", ("dusk", 0, 0)),
        ("dawn-720m", ("dawn", 0, -720)),
    ],
)
def test_at_grammar(text: str, expected: tuple) -> None:
    assert sc.parse_at(text) == expected


@pytest.mark.parametrize(
    "spec, days",
    [
        ("mon-fri", (0, 1, 2, 3, 4)),
        ("sat,sun", (5, 6)),
        (["sat", "sun"], (5, 6)),
        ("fri-mon", (0, 4, 5, 6)),
        ("Wed", (2,)),
        ("mon-sun", (0, 1, 2, 3, 4, 5, 6)),
        ("mon, wed-thu", (0, 2, 3)),
        ("sun-sun", (6,)),
    ],
)
def test_days_spelling(spec: object, days: tuple) -> None:
    assert sc.parse_days(spec) == days


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": ""}, "schedule '?', key 'name': every schedule needs a name (text)"),
        (
            {"colour": "red"},
            "schedule 'main street', key 'colour': unknown key (a schedule has name, group, devices, steps)",
        ),
        (
            {"devices": ["a"]},
            "schedule 'main street', key 'group': give either group or devices (one of them)",
        ),
        ({"group": "side_street"}, "schedule 'main street', key 'group': no group 'side_street' in [groups]"),
        (
            {"group": None, "devices": []},
            "schedule 'main street', key 'devices': must be a non-empty list of device ids",
        ),
        (
            {"group": None, "devices": ["a", "a"]},
            "schedule 'main street', key 'devices': a device is listed twice",
        ),
        ({"steps": []}, "schedule 'main street', key 'steps': a schedule needs at least one step"),
        (
            {"steps": [{"set": {"on": True}}]},
            "schedule 'main street', step 1, key 'at': missing: when the step happens",
        ),
        (
            {"steps": [{"at": "sunset", "set": {"on": True}}, {"at": "sunset+10", "set": {"on": True}}]},
            "schedule 'main street', step 2, key 'at': 'sunset+10': after sunset comes +Nm or -Nm (minutes), "
            "e.g. sunset-10m",
        ),
        (
            {"steps": [{"at": "24:00", "set": {"on": True}}]},
            "schedule 'main street', step 1, key 'at': '24:00' is not a time of day (00:00 to 23:59:59)",
        ),
        (
            {"steps": [{"at": "7:30", "set": {"on": True}}]},
            "schedule 'main street', step 1, key 'at': '7:30' is not HH:MM, HH:MM:SS or "
            "sunset/sunrise/dusk/dawn with an optional +Nm/-Nm",
        ),
        (
            {"steps": [{"at": "dusk+721m", "set": {"on": True}}]},
            "schedule 'main street', step 1, key 'at': 'dusk+721m': the offset is more than 720 minutes",
        ),
        (
            {"steps": [{"at": 1830, "set": {"on": True}}]},
            "schedule 'main street', step 1, key 'at': 1830 is not text",
        ),
        (
            {"steps": [{"at": "18:30", "set": {}}]},
            "schedule 'main street', step 1, key 'set': must be a non-empty table of point values, "
            "e.g. {on = true}",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"on": "yes"}}]},
            "schedule 'main street', step 1, key 'set': on = 'yes': a value is true/false or a finite number",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"dim": float("nan")}}]},
            "schedule 'main street', step 1, key 'set': dim = nan: a value is true/false or a finite number",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"dim": float("inf")}}]},
            "schedule 'main street', step 1, key 'set': dim = inf: a value is true/false or a finite number",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"on": True}, "days": "weekdays"}]},
            "schedule 'main street', step 1, key 'days': 'weekdays' is not a day "
            "(mon, tue, wed, thu, fri, sat, sun) or a range such as mon-fri",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"on": True}, "days": "mon-wed-fri"}]},
            "schedule 'main street', step 1, key 'days': 'mon-wed-fri': a range has two ends, e.g. mon-fri",
        ),
        (
            {"steps": [{"at": "18:30", "set": {"on": True}, "days": []}]},
            "schedule 'main street', step 1, key 'days': [] is not a day list such as "
            '"mon-fri" or ["sat", "sun"]',
        ),
        (
            {"steps": [{"at": "18:30", "set": {"on": True}, "when": "now"}]},
            "schedule 'main street', step 1, key 'when': unknown key (a step has at, set, days)",
        ),
    ],
)
def test_errors_name_schedule_step_and_key(change: dict, message: str) -> None:
    raw = dict(STREET, **change)
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(raw, GROUPS)
    assert str(caught.value) == message


def test_error_carries_its_parts_for_the_config_loader() -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(dict(STREET, steps=[STREET["steps"][0], {"at": "x", "set": {"on": 1}}]), GROUPS)
    assert (caught.value.schedule, caught.value.step, caught.value.key) == ("main street", 2, "at")


# ---- resolving days ------------------------------------------------------------------------------

FIXED = {
    "name": "clock",
    "devices": ["lamp"],
    "steps": [
        {"at": "00:00", "set": {"dim": 10}},
        {"at": "02:30", "set": {"dim": 20}},
        {"at": "12:00", "set": {"dim": 30}},
        {"at": "23:59:59", "set": {"dim": 40}},
    ],
}


@pytest.mark.parametrize(
    "zone_name", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Sydney"]
)
def test_clock_steps_of_every_day_are_zoneinfos_instants(zone_name: str) -> None:
    """Every day of 2026, including the 23- and 25-hour days: each clock step resolves to the instant
    zoneinfo gives that wall time (fold=0: the first of a repeated time, the gap read with the offset
    before the change)."""
    s = parse_schedule(FIXED)
    place = Place(0.0, 0.0, ZONES[zone_name])
    for n in range(365):
        date = dt.date(2026, 1, 1) + dt.timedelta(n)
        changes, skipped = s.day(day_number(date.year, date.month, date.day), place)
        assert not skipped
        got = sorted((c.index, c.instant) for c in changes)
        want = [
            (i, instant(zone_name, date.year, date.month, date.day, *hms))
            for i, hms in enumerate([(0, 0, 0), (2, 30, 0), (12, 0, 0), (23, 59, 59)])
        ]
        assert got == want, date


def test_berlin_23_and_25_hour_days() -> None:
    s = parse_schedule(FIXED)
    berlin = Place(52.52, 13.405, ZONES["Europe/Berlin"])
    spring, _ = s.day(day_number(2026, 3, 29), berlin)
    assert [wall("Europe/Berlin", c.instant) for c in spring] == [
        "2026-03-29 00:00:00 CET",
        "2026-03-29 03:30:00 CEST",  # 02:30 does not exist that night
        "2026-03-29 12:00:00 CEST",
        "2026-03-29 23:59:59 CEST",
    ]
    assert spring[-1].instant - spring[0].instant == 23 * 3600 - 1
    autumn, _ = s.day(day_number(2026, 10, 25), berlin)
    assert [wall("Europe/Berlin", c.instant) for c in autumn] == [
        "2026-10-25 00:00:00 CEST",
        "2026-10-25 02:30:00 CEST",  # the first of the two 02:30s
        "2026-10-25 12:00:00 CET",
        "2026-10-25 23:59:59 CET",
    ]
    assert autumn[-1].instant - autumn[0].instant == 25 * 3600 - 1
    # the step in force through the repeated hour stays 02:30's until noon
    second_0230 = instant("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1)
    assert must(s.in_force(second_0230, berlin)).index == 1


def test_new_york_dst_days_and_sunset_in_local_time() -> None:
    s = parse_schedule(STREET)
    ny = PLACES["New York"]
    for date in (dt.date(2026, 3, 8), dt.date(2026, 11, 1)):
        changes, _ = s.day(day_number(date.year, date.month, date.day), ny)
        sunset = solar.sun_event(date.year, date.month, date.day, 40.7128, -74.0060, "sunset")
        assert [c.instant for c in changes if c.index == 0] == [sunset - 600]  # type: ignore[operator]
        assert wall("America/New_York", changes[-1].instant)[:10] == date.isoformat()


def test_jinan_evening_and_night_in_local_time() -> None:
    s = parse_schedule(STREET)
    jinan = PLACES["Jinan"]
    changes, skipped = s.day(day_number(2026, 12, 4), jinan)  # a Friday
    assert not skipped
    assert [(c.index, wall("Asia/Shanghai", c.instant)[11:16]) for c in changes] == [
        (2, "07:22"),
        (0, "16:45"),
        (1, "23:30"),
    ]
    saturday, _ = s.day(day_number(2026, 12, 5), jinan)
    assert [c.index for c in saturday] == [2, 0]  # no 23:30 dimming at the weekend


def test_reykjavik_june_sunset_belongs_to_the_evening_before() -> None:
    """Sunset near 00:04 local: the sunset step of 21 June resolves after midnight, on the 22nd."""
    s = parse_schedule({"name": "r", "devices": ["l"], "steps": [{"at": "sunset", "set": {"on": True}}]})
    changes, _ = s.day(day_number(2026, 6, 21), PLACES["Reykjavik"])
    assert wall("Atlantic/Reykjavik", changes[0].instant)[:13] == "2026-06-22 00"
    assert changes[0].day == day_number(2026, 6, 21)


# ---- polar ---------------------------------------------------------------------------------------


def test_polar_day_skips_sun_steps_with_a_reason_and_keeps_lamps_off() -> None:
    s = parse_schedule(STREET)
    lyr = PLACES["Longyearbyen"]
    changes, skipped = s.day(day_number(2026, 6, 21), lyr)  # a Sunday
    assert changes == []
    assert [reason for _, reason in skipped] == [
        "schedule 'main street' step 1 (sunset-10m) skipped on 2026-06-21: no sunset: "
        "the sun stays above the horizon all day (polar day)",
        "schedule 'main street' step 3 (sunrise+15m) skipped on 2026-06-21: no sunrise: "
        "the sun stays above the horizon all day (polar day)",
    ]
    noon = instant("Arctic/Longyearbyen", 2026, 6, 21, 12)
    state = s.state_at(noon, lyr)
    assert state == {"on": False, "dim": 50}  # off since the last sunrise (in April), dimmed on Friday
    assert wall("Arctic/Longyearbyen", must(s.in_force(noon, lyr)).instant) == "2026-06-19 23:30:00 CEST"
    only_sun = parse_schedule(dict(STREET, steps=[STREET["steps"][0], STREET["steps"][2]]))
    last = must(only_sun.in_force(noon, lyr))
    assert last.step.at == "sunrise+15m" and wall("Arctic/Longyearbyen", last.instant)[:7] == "2026-04"


def test_polar_night_keeps_lamps_on_and_next_change_is_months_away() -> None:
    s = parse_schedule(STREET)
    lyr = PLACES["Longyearbyen"]
    noon = instant("Arctic/Longyearbyen", 2026, 12, 21, 12)
    assert s.state_at(noon, lyr)["on"] is True
    nxt = must(s.next_change(noon, lyr))
    assert nxt.step.at == "23:30"  # the dimming still happens on weekdays
    only_sun = parse_schedule(dict(STREET, steps=[STREET["steps"][0], STREET["steps"][2]]))
    first_sunrise = must(only_sun.next_change(noon, lyr))
    assert first_sunrise.step.at == "sunrise+15m"
    assert wall("Arctic/Longyearbyen", first_sunrise.instant)[:7] == "2027-02"


def test_tromso_white_nights_dusk_step_is_skipped() -> None:
    s = parse_schedule(
        {
            "name": "t",
            "devices": ["l"],
            "steps": [{"at": "dusk", "set": {"on": True}}, {"at": "dawn", "set": {"on": False}}],
        }
    )
    changes, skipped = s.day(day_number(2026, 6, 1), PLACES["Tromso"])
    assert changes == [] and len(skipped) == 2
    assert "white night" in skipped[0][1]


# ---- in force, state, next change ------------------------------------------------------------------


def test_start_up_inside_a_step_across_midnight() -> None:
    """Started at 01:00 on a Saturday: the step in force is Friday's 23:30 dimming; the state puts a
    rebooted lamp on (from the sunset step) at 50 %."""
    s = parse_schedule(STREET)
    jinan = PLACES["Jinan"]
    t = instant("Asia/Shanghai", 2026, 12, 5, 1, 0)
    assert must(s.in_force(t, jinan)).step.at == "23:30"
    assert s.state_at(t, jinan) == {"on": True, "dim": 50}
    assert must(s.next_change(t, jinan)).step.at == "sunrise+15m"
    sunday_night = instant("Asia/Shanghai", 2026, 12, 6, 23, 45)
    assert s.state_at(sunday_night, jinan) == {"on": True, "dim": 100}  # no dimming at the weekend


def test_days_filter_looks_back_a_week() -> None:
    s = parse_schedule(
        {
            "name": "m",
            "devices": ["l"],
            "steps": [
                {"at": "08:00", "set": {"on": True}, "days": "mon"},
                {"at": "09:00", "set": {"on": False}, "days": "mon"},
            ],
        }
    )
    jinan = PLACES["Jinan"]
    sunday = instant("Asia/Shanghai", 2026, 12, 6, 12)
    found = must(s.in_force(sunday, jinan))
    assert found.step.at == "09:00" and wall("Asia/Shanghai", found.instant) == "2026-11-30 09:00:00 CST"
    assert wall("Asia/Shanghai", must(s.next_change(sunday, jinan)).instant) == "2026-12-07 08:00:00 CST"


def test_nothing_in_force_when_no_step_happened_within_the_look_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Longyearbyen in June: the last sunset was in April; with a 30-day look-back nothing is in force
    (and the next sunset, in August, is beyond the look-ahead too)."""
    monkeypatch.setattr(sc, "LOOKBACK_DAYS", 30)
    s = parse_schedule({"name": "n", "devices": ["l"], "steps": [{"at": "sunset", "set": {"on": True}}]})
    lyr = PLACES["Longyearbyen"]
    june = instant("Arctic/Longyearbyen", 2026, 6, 21, 12)
    assert s.in_force(june, lyr) is None and s.state_at(june, lyr) == {}
    assert s.next_change(june, lyr) is None
    monkeypatch.setattr(sc, "LOOKBACK_DAYS", 370)
    assert wall("Arctic/Longyearbyen", must(s.in_force(june, lyr)).instant)[:7] == "2026-04"
    assert wall("Arctic/Longyearbyen", must(s.next_change(june, lyr)).instant)[:7] == "2026-08"


def test_same_second_the_later_listed_step_wins() -> None:
    s = parse_schedule(
        {
            "name": "tie",
            "devices": ["l"],
            "steps": [{"at": "18:00", "set": {"dim": 10}}, {"at": "18:00", "set": {"dim": 90}}],
        }
    )
    t = instant("Asia/Shanghai", 2026, 12, 4, 18)
    assert must(s.in_force(t, PLACES["Jinan"])).index == 1 and s.state_at(t, PLACES["Jinan"]) == {"dim": 90}


STEP_CHOICES = [
    "sunset",
    "sunset-30m",
    "sunrise+15m",
    "dusk",
    "dawn-5m",
    "00:00",
    "01:30",
    "02:30",
    "23:30",
    "12:00",
    "sunset+600m",
]
DAY_CHOICES = [None, "mon-fri", "sat,sun", "wed"]


@st.composite
def schedules(draw: st.DrawFn) -> sc.Schedule:
    n = draw(st.integers(1, 4))
    steps = []
    for i in range(n):
        step: dict = {
            "at": draw(st.sampled_from(STEP_CHOICES)),
            "set": {"dim": i * 10 + draw(st.integers(0, 9))},
        }
        days = draw(st.sampled_from(DAY_CHOICES))
        if days:
            step["days"] = days
        steps.append(step)
    return parse_schedule({"name": "p", "devices": ["l"], "steps": steps})


def brute_force_timeline(s: sc.Schedule, place: Place, t: int) -> list:
    """Every change of the local dates 12 days either side of `t`, in timeline order."""
    day = place.zone.day(t)  # type: ignore[attr-defined]
    out = []
    for d in range(day - 12, day + 13):
        out.extend(s.day(d, place)[0])
    return sorted(out, key=sc.Change.key)


@given(
    schedules(), st.sampled_from(sorted(PLACES)), st.integers(1767225600, 1830297600)
)  # 2026-01-01 .. 2028-01-01
def test_in_force_is_stable_between_changes_and_changes_exactly_at_them(
    s: sc.Schedule, city: str, t: int
) -> None:
    place = PLACES[city]
    current = must(s.in_force(t, place))
    nxt = must(s.next_change(t, place))
    timeline = brute_force_timeline(s, place, t)
    before = [c for c in timeline if c.instant <= t]
    after = [c for c in timeline if c.instant > t]
    if before:  # agrees with the timeline built by brute force
        assert current is not None and current.key() == before[-1].key()
    if after:
        assert nxt is not None and nxt.key() == after[0].key()
    if nxt is None:
        return
    # stable up to the second before the next change, and that change (or one on the same second
    # listed later) is in force exactly at its instant
    for probe in (t, (t + nxt.instant) // 2, nxt.instant - 1):
        held = must(s.in_force(probe, place))
        assert (held.key() if held else None) == (current.key() if current else None), probe
    at = must(s.in_force(nxt.instant, place))
    assert at.instant == nxt.instant and at.key() >= nxt.key()
    # the state only changes at a change
    assert s.state_at(nxt.instant - 1, place) == s.state_at(t, place)
