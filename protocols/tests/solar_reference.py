"""protocols/solar.py against astral 3.2 (PyPI), an independent implementation of the NOAA equations.

Two references, because they answer two questions:

* **astral's own sunrise/sunset/dawn/dusk** (what a user of astral would get): astral puts sunrise at
  zenith 90° + 16' (the sun's radius) + refraction from its own model at that altitude (≈ 90.79°) and
  civil twilight at 96° + refraction (≈ 96.055°), where NOAA and this project use 90.833° and 96°.
  On ordinary days the difference is seconds; on the days the sun only *grazes* the altitude (near the
  polar circles, around the start and end of polar day and night) an event's time depends so much on
  the hundredths of a degree that conventions differ by many minutes or on whether the event happens
  at all. Those days are set apart (`grazing`) and checked on the altitude instead.
* **astral's altitude function** (`astral.sun.elevation` without refraction): at each instant this module
  returns, the sun's centre must stand at the event's altitude (−0.833° or −6°) in astral's model too,
  and on the days this module says there is no event, astral's sun must stay on one side of it. This
  check holds every day, grazing or not, and is what proves the polar cases.

`python -m protocols.tests.solar_reference [YEAR]` prints the table the report quotes.
"""

from __future__ import annotations

import datetime as dt
import sys
import zoneinfo
from collections.abc import Callable
from typing import Any

from astral import Observer, refraction_at_zenith
from astral import sun as asun

from protocols import solar

CITIES = {
    # name: (latitude, longitude, IANA zone)
    "Jinan": (36.6512, 117.1201, "Asia/Shanghai"),
    "Qingdao": (36.0671, 120.3826, "Asia/Shanghai"),
    "Yantai": (37.4638, 121.4479, "Asia/Shanghai"),
    "Heze": (35.2336, 115.4807, "Asia/Shanghai"),
    "Linyi": (35.1041, 118.3564, "Asia/Shanghai"),
    "Harbin": (45.8038, 126.5349, "Asia/Shanghai"),
    "Sanya": (18.2528, 109.5119, "Asia/Shanghai"),
    "Urumqi": (43.8256, 87.6168, "Asia/Shanghai"),
    "Reykjavik": (64.1466, -21.9426, "Atlantic/Reykjavik"),
    "Tromso": (69.6492, 18.9553, "Europe/Oslo"),
    "Longyearbyen": (78.2232, 15.6267, "Arctic/Longyearbyen"),
    "Quito": (-0.1807, -78.4678, "America/Guayaquil"),
    "Sydney": (-33.8688, 151.2093, "Australia/Sydney"),
    "Lima": (-12.0464, -77.0428, "America/Lima"),
    "New York": (40.7128, -74.0060, "America/New_York"),
}

ASTRAL: dict[str, Callable[..., dt.datetime]] = {
    solar.SUNRISE: asun.sunrise,
    solar.SUNSET: asun.sunset,
    solar.DAWN: asun.dawn,
    solar.DUSK: asun.dusk,
}
# astral's default altitudes: -(16' + refraction there) at sunrise/sunset, -(6 + refraction) at dawn/dusk
ASTRAL_ALTITUDE = {
    solar.SUNRISE: -(asun.SUN_APPARENT_RADIUS + refraction_at_zenith(90.0 + asun.SUN_APPARENT_RADIUS)),
    solar.SUNSET: -(asun.SUN_APPARENT_RADIUS + refraction_at_zenith(90.0 + asun.SUN_APPARENT_RADIUS)),
    solar.DAWN: -(6.0 + refraction_at_zenith(96.0)),
    solar.DUSK: -(6.0 + refraction_at_zenith(96.0)),
}
DIRECTION = {True: asun.SunDirection.RISING, False: asun.SunDirection.SETTING}
ASTRAL_SLACK = 10.0  # seconds: an astral answer further than this from its own altitude crossing is its miss
SAME_EVENT = 6 * 3600  # seconds: two answers further apart than this are different events
ORDINARY_LATITUDE = 50.0  # below it no day of the year grazes an event's altitude


def days_of(year: int) -> list[dt.date]:
    first = dt.date(year, 1, 1)
    return [first + dt.timedelta(i) for i in range((dt.date(year + 1, 1, 1) - first).days)]


def altitude(observer: Observer, instant: float) -> float:
    """astral's geometric altitude (no refraction) of the sun's centre at a POSIX instant."""
    when = dt.datetime.fromtimestamp(instant, dt.UTC)
    return asun.elevation(observer, when, with_refraction=False)


def seconds_off(observer: Observer, instant: float, wanted: float) -> float:
    """How far (seconds, linearised) `instant` is from the moment astral's sun is at altitude `wanted`:
    the altitude error over the rate the sun's altitude changes then. Near the polar circles the sun
    moves in altitude slowly, so a small altitude error is many seconds; this puts both in time."""
    rate = abs(altitude(observer, instant + 30.0) - altitude(observer, instant - 30.0)) / 60.0
    error = abs(altitude(observer, instant) - wanted)
    return error / rate if rate > 0 else float("inf")


def target(event: str) -> float:
    return 90.0 - solar.ZENITH[event]


def ours_near(date: dt.date, latitude: float, longitude: float, event: str) -> list[int]:
    """Our instants of `event` in the solar days before, of and after `date`."""
    found = []
    for shift in (-1, 0, 1):
        day = date + dt.timedelta(shift)
        result = solar.sun_event(day.year, day.month, day.day, latitude, longitude, event)
        if isinstance(result, int):
            found.append(result)
    return found


def nearest(instants: list, instant: float) -> float | None:
    return min(instants, key=lambda x: abs(x - instant)) if instants else None


def same_zenith(name: str, year: int) -> dict:
    """Against astral's `time_at_elevation` at our altitudes (-0.833, -6, no refraction): the same
    equations with the same conventions. astral iterates twice from 00:00 UTC of a date; where that
    leaves its answer more than ASTRAL_SLACK from its own altitude crossing (grazing days) or finds no
    answer for the event within
    6 hours on any of three dates (an event near 00:00 UTC falls between its date windows), it is
    counted in `astral_off`, not compared."""
    latitude, longitude, _ = CITIES[name]
    observer = Observer(latitude, longitude)
    out: dict[str, Any] = {"max_s": 0.0, "worst": None, "compared": 0, "astral_off": 0}
    for date in days_of(year):
        for event in solar.EVENTS:
            mine = solar.sun_event(date.year, date.month, date.day, latitude, longitude, event)
            if not isinstance(mine, int):
                continue
            theirs = []
            for shift in (-1, 0, 1):
                try:
                    when = asun.time_at_elevation(observer, target(event), date + dt.timedelta(shift),
                                                  DIRECTION[solar.RISING[event]], with_refraction=False)
                except ValueError:
                    continue
                theirs.append(when.timestamp())
            match = nearest(theirs, mine)
            if (match is None or abs(match - mine) > SAME_EVENT
                    or seconds_off(observer, match, target(event)) > ASTRAL_SLACK):
                out["astral_off"] += 1
                continue
            out["compared"] += 1
            if abs(match - mine) > out["max_s"]:
                out["max_s"] = abs(match - mine)
                out["worst"] = (date.isoformat(), event)
    return out


def astral_defaults(name: str, year: int) -> dict:
    """Against astral's own sunrise/sunset/dawn/dusk for each local date, matched to the same physical
    event. Differences come from the altitude conventions (see the module docstring); answers astral
    itself leaves off its own altitude are counted apart; `unmatched`: dates one side has the event and
    the other not (polar transitions)."""
    latitude, longitude, zone_name = CITIES[name]
    zone = zoneinfo.ZoneInfo(zone_name)
    observer = Observer(latitude, longitude)
    out: dict[str, Any] = {"max_s": 0.0, "worst": None, "compared": 0, "astral_off": [], "unmatched": []}
    for date in days_of(year):
        for event, reference in ASTRAL.items():
            ours = ours_near(date, latitude, longitude, event)
            local = [x for x in ours if dt.datetime.fromtimestamp(x, zone).date() == date]
            try:
                theirs = reference(observer, date, tzinfo=zone).timestamp()
            except ValueError:
                if local:
                    out["unmatched"].append((date.isoformat(), event, "astral none"))
                continue
            match = nearest(ours, theirs)
            if seconds_off(observer, theirs, ASTRAL_ALTITUDE[event]) > ASTRAL_SLACK:
                out["astral_off"].append((date.isoformat(), event))
                continue
            if match is None or abs(match - theirs) > SAME_EVENT:
                out["unmatched"].append((date.isoformat(), event, "ours none"))
                continue
            out["compared"] += 1
            if abs(match - theirs) > out["max_s"]:
                out["max_s"] = abs(match - theirs)
                out["worst"] = (date.isoformat(), event)
    return out


def main(argv: list[str]) -> int:
    year = int(argv[1]) if len(argv) > 1 else 2026
    print("protocols/solar.py vs astral 3.2, every day of %d, sunrise/sunset/dawn/dusk" % year)
    print("A: same altitudes (time_at_elevation, no refraction)   B: astral's own sunrise()... functions")
    print("%-13s | %6s %7s %-22s %4s | %6s %7s %-22s %4s %4s" % (
        "city", "A n", "max", "worst", "off", "B n", "max", "worst", "off", "1-sd"))
    worst_a = worst_b = 0.0
    for name in CITIES:
        a = same_zenith(name, year)
        b = astral_defaults(name, year)
        worst_a = max(worst_a, a["max_s"])
        if abs(CITIES[name][0]) < ORDINARY_LATITUDE:
            worst_b = max(worst_b, b["max_s"])
        print("%-13s | %6d %5.1f s %-22s %4d | %6d %5.0f s %-22s %4d %4d" % (
            name, a["compared"], a["max_s"], "%s %s" % a["worst"] if a["worst"] else "-", a["astral_off"],
            b["compared"], b["max_s"], "%s %s" % b["worst"] if b["worst"] else "-", len(b["astral_off"]),
            len(b["unmatched"])))
    print("A max error, all cities: %.1f s" % worst_a)
    print("B max difference, cities below %.0f degrees latitude: %.1f s" % (ORDINARY_LATITUDE, worst_b))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
