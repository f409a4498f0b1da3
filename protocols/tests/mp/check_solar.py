"""Sun events in the shared dialect: one line per case, identical on CPython and MicroPython.
Run from the repository root: ``python protocols/tests/mp/check_solar.py``. A mismatch prints ``FAIL``.
The instants themselves are proven against astral in protocols/tests/test_solar.py; here the same code
must give the same seconds on both interpreters.
"""

import sys

sys.path.insert(0, ".")

from protocols import solar
from protocols.tests.mp.vectors import check, done

check("days 1970", solar.days_from_civil(1970, 1, 1), 0)
check("days 2000", solar.days_from_civil(2000, 1, 1), 10957)
check("days 2026-03-01", solar.days_from_civil(2026, 3, 1), 20513)
check("civil 20513", solar.civil_from_days(20513), (2026, 3, 1))
check("civil -1", solar.civil_from_days(-1), (1969, 12, 31))
check("weekday 2026-12-06", solar.weekday(solar.days_from_civil(2026, 12, 6)), 6)
check("format", solar.format_instant(1796558400), "2026-12-06 12:00:00")

PLACES = (
    ("Jinan", 36.6512, 117.1201),
    ("Harbin", 45.8038, 126.5349),
    ("Urumqi", 43.8256, 87.6168),
    ("Sydney", -33.8688, 151.2093),
    ("New York", 40.7128, -74.0060),
    ("Reykjavik", 64.1466, -21.9426),
    ("Longyearbyen", 78.2232, 15.6267),
)
DATES = ((2026, 3, 20), (2026, 6, 21), (2026, 9, 23), (2026, 12, 21), (2027, 2, 15))

for name, lat, lon in PLACES:
    for y, m, d in DATES:
        events = solar.sun_events(y, m, d, lat, lon)
        words = []
        for event in solar.EVENTS:
            r = events[event]
            words.append("%s=%s" % (event, solar.format_instant(r)[11:] if isinstance(r, int) else r))
        print("%s %04d-%02d-%02d %s noon=%s" % (name, y, m, d, " ".join(words),
                                                 solar.format_instant(solar.solar_noon(y, m, d, lon))[11:]))

# the events land on the altitude they are defined by (sun's centre, geometric)
for name, lat, lon in PLACES[:5]:
    rise = solar.sun_event(2026, 6, 21, lat, lon, solar.SUNRISE)
    dusk = solar.sun_event(2026, 6, 21, lat, lon, solar.DUSK)
    if not isinstance(rise, int) or not isinstance(dusk, int):
        check("%s events" % name, (rise, dusk), "instants")
        continue
    check("%s altitude at sunrise" % name, round(solar.elevation(rise, lat, lon), 2), -0.83)
    check("%s altitude at dusk" % name, round(solar.elevation(dusk, lat, lon), 2), -6.0)

check("polar day", solar.sun_event(2026, 6, 21, 78.2232, 15.6267, solar.SUNSET), solar.ABOVE)
check("polar night", solar.sun_event(2026, 12, 21, 78.2232, 15.6267, solar.SUNRISE), solar.BELOW)
check("describe", solar.describe(solar.SUNSET, solar.ABOVE),
      "no sunset: the sun stays above the horizon all day (polar day)")
check("pole", solar.sun_event(2026, 6, 21, 90.0, 0.0, solar.SUNRISE), solar.ABOVE)
for bad in ((91.0, 0.0, "sunset"), (0.0, 200.0, "sunset"), (0.0, 0.0, "noon")):
    try:
        solar.sun_event(2026, 1, 1, bad[0], bad[1], bad[2])
        check("refused %r" % (bad,), "accepted", "ValueError")
    except ValueError as e:
        check("refused %r" % (bad,), str(e)[:20], str(e)[:20])

done()
