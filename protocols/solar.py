"""Sunrise, sunset, civil dawn and dusk from the NOAA solar position equations. Pure: dates and
instants are passed in, nothing reads a clock. Shared by the agent and the firmware.

The equations are those of NOAA's solar calculator (Julian century from J2000, geometric mean
longitude and anomaly of the sun, equation of centre, apparent longitude, obliquity, declination,
equation of time, hour angle). An event is the instant the sun's centre crosses a zenith angle:
90.833° for sunrise and sunset (the upper limb at the horizon with standard refraction) and 96° for
civil dawn and dusk. The declination and the equation of time are evaluated at the event itself, by
three passes that start at solar noon.

Instants are POSIX seconds (UTC, integers). A date is (year, month, day) of the proleptic Gregorian
calendar. The events of a date are those of its *solar day* at the given longitude: rise before and
set after the solar noon that falls on that UTC date's local mean noon (so at Reykjavik the sunset of
21 June comes a few minutes after the local midnight that follows it, as it does in the sky).

When the sun does not cross the zenith angle that day (polar day or night, the white nights without
civil dusk), `sun_event` returns ABOVE or BELOW instead of an instant, never an exception from the
math; `describe` turns that into a sentence for a log.

Precision: the arithmetic keeps its magnitudes small (days since J2000 split into an integer day and a
fraction, minutes within the day), so a port with single-precision floats (esp32) loses only seconds,
not minutes: the large POSIX instant is assembled from integers at the end. Never hand this module a
POSIX instant as a float on such a port. See docs/lighting.md.
"""

from math import asin, cos, degrees, radians, sin, tan

SUNRISE = "sunrise"
SUNSET = "sunset"
DAWN = "dawn"
DUSK = "dusk"
EVENTS = (DAWN, SUNRISE, SUNSET, DUSK)

# zenith angle (degrees) of the sun's centre at each event, and +1 rising / -1 setting
ZENITH = {SUNRISE: 90.833, SUNSET: 90.833, DAWN: 96.0, DUSK: 96.0}
RISING = {SUNRISE: True, DAWN: True, SUNSET: False, DUSK: False}

# what sun_event returns when the event does not happen on that day
ABOVE = "above"  # the sun stays above the event's altitude all day (polar day, white night)
BELOW = "below"  # the sun stays below it all day (polar night)

DAYS_1970_TO_2000 = 10957  # 1970-01-01 .. 2000-01-01
SECONDS_PER_DAY = 86400


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (negative before 1970)."""
    y = year - 1 if month <= 2 else year
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days: int) -> tuple:
    """(year, month, day) of a day number counted from 1970-01-01."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if month <= 2 else 0), month, day)


def weekday(days: int) -> int:
    """Day of the week of a day number: 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday)."""
    return (days + 3) % 7


def check_place(latitude: float, longitude: float) -> None:
    """ValueError unless latitude is in [-90, 90] and longitude in [-180, 180] (degrees, east positive)."""
    if not -90.0 <= latitude <= 90.0:
        raise ValueError("latitude %r is outside -90..90 degrees" % (latitude,))
    if not -180.0 <= longitude <= 180.0:
        raise ValueError("longitude %r is outside -180..180 degrees (east positive)" % (longitude,))


def _sun(day: int, minutes: float) -> tuple:
    """(declination in degrees, equation of time in minutes) at `minutes` after 00:00 UTC of `day`."""
    # Julian century from J2000.0 (2000-01-01 12:00 UTC); the integer day keeps float32 exact
    t = ((day - DAYS_1970_TO_2000) + (minutes / 1440.0 - 0.5)) / 36525.0
    mean_long = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360.0
    anomaly = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    m = radians(anomaly)
    centre = (sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t)) + sin(2 * m) * (0.019993 - 0.000101 * t)
              + sin(3 * m) * 0.000289)
    omega = radians(125.04 - 1934.136 * t)
    apparent_long = radians(mean_long + centre - 0.00569 - 0.00478 * sin(omega))
    mean_obliquity = 23.0 + (26.0 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60.0) / 60.0
    obliquity = radians(mean_obliquity + 0.00256 * cos(omega))
    declination = degrees(asin(sin(obliquity) * sin(apparent_long)))
    y = tan(obliquity / 2.0)
    y *= y
    l0 = radians(mean_long)
    eqtime = 4.0 * degrees(y * sin(2 * l0) - 2 * ecc * sin(m) + 4 * ecc * y * sin(m) * cos(2 * l0)
                           - 0.5 * y * y * sin(4 * l0) - 1.25 * ecc * ecc * sin(2 * m))
    return declination, eqtime


def _altitude(days: int, minutes: float, latitude: float, longitude: float) -> float:
    """Geometric altitude of the sun's centre in degrees, `minutes` after 00:00 UTC of day `days`
    (minutes may run outside 0..1440)."""
    declination, eqtime = _sun(days, minutes)
    hour_angle = radians((minutes + eqtime + 4.0 * longitude) / 4.0 - 180.0)
    lat = radians(latitude)
    dec = radians(declination)
    s = sin(lat) * sin(dec) + cos(lat) * cos(dec) * cos(hour_angle)
    return degrees(asin(max(-1.0, min(1.0, s))))


def _noon(days: int, longitude: float) -> float:
    """Solar noon in minutes after 00:00 UTC of day `days` (the equation of time taken at noon)."""
    minutes = 720.0 - 4.0 * longitude
    for _ in range(2):
        minutes = 720.0 - 4.0 * longitude - _sun(days, minutes)[1]
    return minutes


def sun_event(year: int, month: int, day: int, latitude: float, longitude: float, event: str) -> "int | str":
    """The instant (POSIX seconds, int) of `event` (SUNRISE, SUNSET, DAWN, DUSK) in the solar day of
    the date at that place, or ABOVE / BELOW when the sun does not cross the event's altitude then.

    Rising events are sought between the solar midnight before the date's solar noon and that noon,
    setting events between the noon and the next solar midnight; the crossing is found on the
    altitude itself (regula falsi, Illinois variant, to under a second), so it stays right on the
    days the sun only grazes the altitude near the polar circles. Latitude and longitude in degrees,
    north and east positive; ValueError when out of range or when `event` is unknown.
    """
    if event not in ZENITH:
        raise ValueError("unknown sun event %r (one of %s)" % (event, ", ".join(EVENTS)))
    check_place(latitude, longitude)
    days = days_from_civil(year, month, day)
    target = 90.0 - ZENITH[event]
    noon = _noon(days, longitude)
    if RISING[event]:
        a, b = noon - 720.0, noon
    else:
        a, b = noon, noon + 720.0
    fa = _altitude(days, a, latitude, longitude) - target
    fb = _altitude(days, b, latitude, longitude) - target
    # a crossing in the event's direction: below then above when rising, above then below when setting
    # (within a degree of a pole the day's drift in declination can outrun the daily circle)
    up_at_noon = fb >= 0.0 if RISING[event] else fa >= 0.0
    down_at_midnight = fa < 0.0 if RISING[event] else fb < 0.0
    if not up_at_noon:
        return BELOW
    if not down_at_midnight:
        return ABOVE
    side = 0
    x = a
    for _ in range(60):
        x = (a * fb - b * fa) / (fb - fa)
        fx = _altitude(days, x, latitude, longitude) - target
        if fx == 0.0 or b - a < 0.2 / 60.0:
            break
        if (fx < 0.0) == (fa < 0.0):
            a, fa = x, fx
            if side == -1:
                fb /= 2.0
            side = -1
        else:
            b, fb = x, fx
            if side == 1:
                fa /= 2.0
            side = 1
    return days * SECONDS_PER_DAY + round(x * 60.0)


def sun_events(year: int, month: int, day: int, latitude: float, longitude: float) -> dict:
    """{event: instant or ABOVE/BELOW} for the four events of the date's solar day."""
    return dict((event, sun_event(year, month, day, latitude, longitude, event)) for event in EVENTS)


def solar_noon(year: int, month: int, day: int, longitude: float) -> int:
    """The instant (POSIX seconds) the sun crosses the meridian on that date at that longitude."""
    check_place(0.0, longitude)
    days = days_from_civil(year, month, day)
    return days * SECONDS_PER_DAY + round(_noon(days, longitude) * 60.0)


def elevation(instant: int, latitude: float, longitude: float) -> float:
    """Geometric elevation of the sun's centre in degrees (no refraction) at a POSIX instant."""
    check_place(latitude, longitude)
    days = instant // SECONDS_PER_DAY
    return _altitude(days, (instant - days * SECONDS_PER_DAY) / 60.0, latitude, longitude)


def describe(event: str, result: object) -> str:
    """Words for a log: why there is no `event` (result ABOVE or BELOW), or 'at <instant>'."""
    if result == ABOVE:
        if event in (SUNRISE, SUNSET):
            return "no %s: the sun stays above the horizon all day (polar day)" % event
        return "no %s: the sun stays above 6 degrees below the horizon all night (white night)" % event
    if result == BELOW:
        if event in (SUNRISE, SUNSET):
            return "no %s: the sun stays below the horizon all day (polar night)" % event
        return "no %s: the sun stays more than 6 degrees below the horizon all day" % event
    return "%s at %s UTC" % (event, format_instant(result))  # type: ignore[arg-type]


def format_instant(instant: int) -> str:
    """'YYYY-MM-DD HH:MM:SS' of a POSIX instant (UTC, or local when an offset was added)."""
    days = instant // SECONDS_PER_DAY
    rest = instant - days * SECONDS_PER_DAY
    y, m, d = civil_from_days(days)
    return "%04d-%02d-%02d %02d:%02d:%02d" % (y, m, d, rest // 3600, rest // 60 % 60, rest % 60)
