"""protocols/solar.py: calendar arithmetic against datetime, sun events against astral 3.2 (every day of
a year, fifteen cities from Sanya to Longyearbyen), the polar cases, and the errors a caller sees."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("astral")

from astral import Observer

from protocols import solar
from protocols.tests import solar_reference as ref

EPOCH = dt.date(1970, 1, 1)


@given(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
def test_day_numbers_agree_with_datetime(date: dt.date) -> None:
    days = solar.days_from_civil(date.year, date.month, date.day)
    assert days == (date - EPOCH).days
    assert solar.civil_from_days(days) == (date.year, date.month, date.day)
    assert solar.weekday(days) == date.weekday()


@given(st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31)))
def test_format_instant_agrees_with_datetime(when: dt.datetime) -> None:
    instant = (when.replace(microsecond=0) - dt.datetime(1970, 1, 1)) // dt.timedelta(seconds=1)
    assert solar.format_instant(instant) == when.strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("name", list(ref.CITIES))
def test_same_altitudes_as_astral_within_a_minute(name: str) -> None:
    """Same conventions (-0.833 and -6 degrees, no refraction): every event of 2026 where astral's own
    answer is on its altitude (all of them below the polar circles) is within 60 s of ours."""
    result = ref.same_zenith(name, 2026)
    print("%s: %d events, max %.1f s at %s, astral off %d" % (
        name, result["compared"], result["max_s"], result["worst"], result["astral_off"]))
    assert result["max_s"] <= 60.0, result
    if abs(ref.CITIES[name][0]) < ref.ORDINARY_LATITUDE:
        assert result["compared"] >= 4 * 365 - 2, result  # astral misses at most 2 events near 00:00 UTC
    else:
        assert result["compared"] >= 400, result  # Longyearbyen has ~480 events in a year


@pytest.mark.parametrize("name", [n for n, c in ref.CITIES.items() if abs(c[0]) < ref.ORDINARY_LATITUDE])
def test_astral_own_functions_within_a_minute(name: str) -> None:
    """What an astral user gets (its sunrise()/sunset()/dawn()/dusk() on each local date), matched to
    the same physical event: within one minute for every city below the polar regions, every day."""
    result = ref.astral_defaults(name, 2026)
    print("%s: %d events, max %.1f s at %s" % (name, result["compared"], result["max_s"], result["worst"]))
    assert result["max_s"] <= 60.0, result
    assert result["compared"] >= 4 * 365 - 4, result
    assert len(result["astral_off"]) <= 2, result  # astral's date windows near 00:00 UTC (Urumqi)


@pytest.mark.parametrize("name", list(ref.CITIES))
def test_our_events_stand_at_their_altitude_in_astrals_model(name: str) -> None:
    """Every event we return, grazing polar days included: astral's sun is at the event's altitude
    then, to within one second of its motion; and every ABOVE/BELOW day, astral's sun stays on that
    side of the altitude through the half day the event would fall in (sampled every 10 minutes)."""
    latitude, longitude, _ = ref.CITIES[name]
    observer = Observer(latitude, longitude)
    no_event = 0
    for date in ref.days_of(2026):
        noon = solar.solar_noon(date.year, date.month, date.day, longitude)
        for event in solar.EVENTS:
            result = solar.sun_event(date.year, date.month, date.day, latitude, longitude, event)
            wanted = ref.target(event)
            if isinstance(result, int):
                assert ref.seconds_off(observer, result, wanted) <= 1.0, (date, event, result)
                if solar.RISING[event]:
                    assert noon - 43200 <= result <= noon, (date, event)
                else:
                    assert noon <= result <= noon + 43200, (date, event)
                continue
            no_event += 1
            start = noon - 43200 if solar.RISING[event] else noon
            samples = [ref.altitude(observer, start + 600 * i) for i in range(73)]
            if result == solar.ABOVE:
                assert min(samples) > wanted - 0.01, (date, event, min(samples))
            else:
                assert result == solar.BELOW, result
                assert max(samples) < wanted + 0.01, (date, event, max(samples))
    if abs(latitude) < 60.0:
        assert no_event == 0
    if name == "Longyearbyen":
        assert no_event > 700  # months of polar day and night


def test_polar_day_and_night_are_values_not_exceptions() -> None:
    lat, lon = 78.2232, 15.6267  # Longyearbyen
    assert solar.sun_event(2026, 6, 21, lat, lon, solar.SUNSET) == solar.ABOVE
    assert solar.sun_event(2026, 6, 21, lat, lon, solar.DUSK) == solar.ABOVE
    assert solar.sun_event(2026, 12, 21, lat, lon, solar.SUNRISE) == solar.BELOW
    assert solar.sun_event(2026, 12, 21, lat, lon, solar.DAWN) == solar.BELOW
    assert solar.sun_events(2026, 6, 21, 90.0, 0.0) == dict.fromkeys(solar.EVENTS, solar.ABOVE)
    assert solar.sun_events(2026, 6, 21, -90.0, 0.0) == dict.fromkeys(solar.EVENTS, solar.BELOW)
    assert solar.describe(solar.SUNSET, solar.ABOVE) == (
        "no sunset: the sun stays above the horizon all day (polar day)")
    assert solar.describe(solar.SUNRISE, solar.BELOW) == (
        "no sunrise: the sun stays below the horizon all day (polar night)")
    assert "white night" in solar.describe(solar.DUSK, solar.ABOVE)
    assert solar.describe(solar.SUNRISE, 0) == "sunrise at 1970-01-01 00:00:00 UTC"


def test_tromso_white_nights_have_sunset_but_no_dusk() -> None:
    """Late May at Tromsø: the sun sets but never gets 6 degrees below the horizon."""
    lat, lon = 69.6492, 18.9553
    events = solar.sun_events(2026, 5, 10, lat, lon)
    assert isinstance(events[solar.SUNSET], int) and isinstance(events[solar.SUNRISE], int)
    assert events[solar.DUSK] == solar.ABOVE and events[solar.DAWN] == solar.ABOVE


def test_reykjavik_june_sunset_comes_after_local_midnight() -> None:
    """Reykjavik keeps UTC at 22 degrees west: the sunset of 21 June is at about 00:04 on the 22nd."""
    sunset = solar.sun_event(2026, 6, 21, 64.1466, -21.9426, solar.SUNSET)
    assert solar.format_instant(sunset)[:15] == "2026-06-22 00:0"  # type: ignore[arg-type]


@pytest.mark.parametrize("args, message", [
    ((2026, 1, 1, 91.0, 0.0, "sunset"), "latitude 91.0 is outside -90..90 degrees"),
    ((2026, 1, 1, 0.0, -181.0, "sunset"), "longitude -181.0 is outside -180..180 degrees (east positive)"),
    ((2026, 1, 1, 0.0, 0.0, "noon"), "unknown sun event 'noon' (one of dawn, sunrise, sunset, dusk)"),
])
def test_bad_input_names_what_is_wrong(args: tuple, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        solar.sun_event(*args)
    assert str(caught.value) == message


@given(st.floats(-89.9, 89.9), st.floats(-180.0, 180.0), st.dates(dt.date(1950, 1, 1), dt.date(2100, 12, 31)))
def test_any_place_any_day_gives_ordered_events_or_reasons(latitude: float, longitude: float,
                                                          date: dt.date) -> None:
    """Never an exception; instants in order dawn <= sunrise < noon < sunset <= dusk; ABOVE/BELOW
    consistent (no sunrise because the sun is always up means no dawn either)."""
    events = solar.sun_events(date.year, date.month, date.day, latitude, longitude)
    noon = solar.solar_noon(date.year, date.month, date.day, longitude)
    for event, result in events.items():
        assert isinstance(result, int) or result in (solar.ABOVE, solar.BELOW), (event, result)
    rise, dawn, down, dusk = (events[e] for e in (solar.SUNRISE, solar.DAWN, solar.SUNSET, solar.DUSK))
    if isinstance(rise, int):
        assert rise <= noon
        if isinstance(dawn, int):
            assert dawn <= rise
    if isinstance(down, int):
        assert down >= noon
        if isinstance(dusk, int):
            assert dusk >= down
    if rise == solar.ABOVE:
        assert dawn == solar.ABOVE
    if dawn == solar.BELOW:
        assert rise == solar.BELOW
