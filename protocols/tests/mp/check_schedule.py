"""Schedules and compiled zones in the shared dialect: identical output on CPython and MicroPython.
Run from the repository root: ``python protocols/tests/mp/check_schedule.py``. A mismatch prints ``FAIL``.
The zone tables below are what agent/lighting/zones.py compiles from zoneinfo (2026-2027); the agent's
tests prove those tables and the resolution against zoneinfo and astral.
"""

import json
import sys

sys.path.insert(0, ".")

from protocols import solar
from protocols.schedule import Place, ScheduleError, parse_schedule
from protocols.tests.mp.vectors import check, done
from protocols.zone import fixed_zone, zone_from_dict

BERLIN = zone_from_dict(json.loads(
    '{"name": "Europe/Berlin", "until": 1830297600, "changes": [[1767225600, 3600], [1774746000, 7200],'
    ' [1792890000, 3600], [1806195600, 7200], [1824944400, 3600]]}'))
SHANGHAI = fixed_zone(8 * 3600, "Asia/Shanghai")
STREET = {"name": "main street", "group": "main_street", "steps": [
    {"at": "sunset-10m", "set": {"on": True, "dim": 100}},
    {"at": "23:30", "set": {"dim": 50}, "days": "mon-fri"},
    {"at": "sunrise+15m", "set": {"on": False}},
]}
CLOCK = {"name": "clock", "devices": ["lamp"], "steps": [
    {"at": "00:00", "set": {"dim": 10}}, {"at": "02:30", "set": {"dim": 20}},
    {"at": "12:00", "set": {"dim": 30}}, {"at": "23:59:59", "set": {"dim": 40}}]}


def must(change):
    if change is None:
        raise AssertionError("no step in force / no next change")
    return change


def local(zone, instant):
    return solar.format_instant(zone.local(instant))


def day(y, m, d):
    return solar.days_from_civil(y, m, d)


# zone: offsets, the 23- and 25-hour days
check("berlin winter", BERLIN.offset_at(1767225600), 3600)
check("berlin summer", BERLIN.offset_at(1774746000), 7200)
check("berlin gap 02:30", local(BERLIN, BERLIN.utc(day(2026, 3, 29) * 86400 + 9000)), "2026-03-29 03:30:00")
check("berlin repeat 02:30", BERLIN.utc(day(2026, 10, 25) * 86400 + 9000), 1792888200)
check("berlin expired", (BERLIN.expired(1830297599), BERLIN.expired(1830297600)), (False, True))
check("round trip", zone_from_dict(BERLIN.to_dict()).to_dict() == BERLIN.to_dict(), True)

clock = parse_schedule(CLOCK)
berlin = Place(52.52, 13.405, BERLIN)
for y, m, d in ((2026, 3, 29), (2026, 10, 25), (2026, 7, 1)):
    changes, skipped = clock.day(day(y, m, d), berlin)
    check("clock %04d-%02d-%02d" % (y, m, d), [local(BERLIN, c.instant)[11:] for c in changes],
          ["00:00:00", "03:30:00" if (m, d) == (3, 29) else "02:30:00", "12:00:00", "23:59:59"])

# a street in Jinan, Shandong (UTC+8, no DST), a Friday and a Saturday
street = parse_schedule(STREET, {"main_street": ["lamp-01", "lamp-02"]})
check("devices", street.devices, ["lamp-01", "lamp-02"])
jinan = Place(36.6512, 117.1201, SHANGHAI)
for y, m, d in ((2026, 12, 4), (2026, 12, 5), (2026, 6, 21)):
    changes, skipped = street.day(day(y, m, d), jinan)
    print("jinan %04d-%02d-%02d %s" % (y, m, d, " ".join(
        "%s=%s" % (c.step.at, local(SHANGHAI, c.instant)[11:]) for c in changes)))
t = 1796403600  # 2026-12-05 01:00 CST (17:00 UTC the day before), a Saturday: inside Friday's dimming
check("in force", must(street.in_force(t, jinan)).step.at, "23:30")
check("state", sorted(street.state_at(t, jinan).items()), [("dim", 50), ("on", True)])
check("next", must(street.next_change(t, jinan)).step.at, "sunrise+15m")

# polar day at Longyearbyen: sun steps skipped with a reason, lamps stay off
lyr = Place(78.2232, 15.6267, BERLIN)  # Arctic/Longyearbyen keeps Central European time
changes, skipped = street.day(day(2026, 6, 21), lyr)
check("polar changes", len(changes), 0)
for index, reason in skipped:
    print("skipped %d %s" % (index, reason))
noon = day(2026, 6, 21) * 86400 + 10 * 3600
check("polar state", sorted(street.state_at(noon, lyr).items()), [("dim", 50), ("on", False)])
only_sun = parse_schedule({"name": "sun", "devices": ["l"],
                           "steps": [STREET["steps"][0], STREET["steps"][2]]})
check("polar last sunrise", local(BERLIN, must(only_sun.in_force(noon, lyr)).instant)[:7], "2026-04")
check("polar next sunset", local(BERLIN, must(only_sun.next_change(noon, lyr)).instant)[:7], "2026-08")

for bad, key in (({"at": "sunset+10", "set": {"on": True}}, "at"), ({"at": "18:00", "set": {}}, "set"),
                 ({"at": "18:00", "set": {"on": True}, "days": "weekdays"}, "days"),
                 ({"at": "18:00", "set": {"dim": float("nan")}}, "set")):
    try:
        parse_schedule({"name": "x", "devices": ["l"], "steps": [bad]})
        check("refused %s" % key, "accepted", "ScheduleError")
    except ScheduleError as e:
        check("refused %s" % key, (e.step, e.key), (1, key))
        print("message %s" % e)

done()
