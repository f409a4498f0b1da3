"""`fieldlink schedule CONFIG [--date D] [--json]`: every step of every lighting schedule on one local
date, resolved to the gateway's local time as the agent resolves it (protocols/schedule.py, the sun
from protocols/solar.py, the time zone compiled by agent/lighting/zones.py), with the reason for each
step that does not happen that day (its `days`, or no sunset in a polar day).

The schedules are those the agent would run: the config's, and the replacements kept by schedule
commands in `[lighting] store` (when that file can be read). Exit status: 0, 1 for a config that is
not valid, 2 for a bad date.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from protocols import solar
from protocols.schedule import DAY_NAMES, Place, Schedule, solar_day

__all__ = ["add_arguments", "day_report", "run"]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="CONFIG", help="gateway config (TOML)")
    parser.add_argument("--date", metavar="D", help="local date YYYY-MM-DD (default: today at the gateway)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _parse_date(text: str) -> int:
    """Days since 1970 of YYYY-MM-DD; ValueError saying what is expected."""
    parts = text.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4:
        raise ValueError("--date %r: expected YYYY-MM-DD, e.g. 2026-06-21" % text)
    y, m, d = (int(p) for p in parts)
    if not 1 <= m <= 12 or not 1 <= d <= 31 \
            or solar.civil_from_days(solar.days_from_civil(y, m, d)) != (y, m, d):
        raise ValueError("--date %r is not a date" % text)
    return solar.days_from_civil(y, m, d)


def _clock(local_seconds: int, day: int) -> str:
    """HH:MM:SS of local seconds, with the day difference when it falls on another date."""
    text = solar.format_instant(local_seconds)[11:]
    shift = local_seconds // 86400 - day
    return text if shift == 0 else "%s (%+d day)" % (text, shift)


def _offset(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return "UTC%s%02d:%02d" % (sign, minutes // 60, minutes % 60)


def _values(values: dict) -> str:
    return " ".join("%s=%s" % (k, json.dumps(v)) for k, v in values.items())


def day_report(name: str, schedule: Schedule, source: str, day: int, place: Place) -> dict:
    """One schedule's steps on local date `day`: each resolved (time, instant) or skipped (why), in
    the order of the day, and the state in force when the day begins."""
    zone: Any = place.zone
    changes, skipped = schedule.day(day, place)
    rows = []
    for change in changes:
        local = zone.local(change.instant)
        rows.append({"step": change.index + 1, "at": change.step.at, "time": _clock(local, day),
                     "instant": change.instant, "local": solar.format_instant(local),
                     "set": dict(change.step.values)})
    for index, reason in skipped:
        step = schedule.steps[index]
        rows.append({"step": index + 1, "at": step.at, "skipped": reason.split(": ", 1)[1]})
    weekday = solar.weekday(day)
    for index, step in enumerate(schedule.steps):
        if not step.happens_on(weekday):
            days = ", ".join(DAY_NAMES[d] for d in step.days)  # type: ignore[union-attr]
            rows.append({"step": index + 1, "at": step.at,
                         "skipped": "not on %ss (days: %s)" % (WEEKDAYS[weekday], days)})
    start = zone.utc(day * 86400)
    first = schedule.in_force(start, place)
    return {
        "name": name, "source": source, "group": schedule.group,
        "devices": list(schedule.devices or []),  # type: ignore[call-overload]
        "steps": rows,
        "in_force_at_start": None if first is None else {
            "step": first.index + 1, "at": first.step.at,
            "since": solar.format_instant(zone.local(first.instant)),
            "state": schedule.state_at(start, place)},
    }


def _sun(day: int, place: Place) -> dict:
    y, m, d = solar.civil_from_days(solar_day(day, place))
    zone: Any = place.zone
    out = {}
    for event in solar.EVENTS:
        result = solar.sun_event(y, m, d, place.latitude, place.longitude, event)
        if isinstance(result, int):
            out[event] = _clock(zone.local(result), day)
        else:
            out[event] = solar.describe(event, result)
    return out


def run(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config
    from agent.lighting.runner import load_schedules, make_place
    from agent.lighting.store import ScheduleStore

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    place = make_place(config)
    if place is None:
        print("%s: no [gateway] latitude, longitude and timezone: the gateway cannot resolve schedules"
              % args.file, file=sys.stderr)
        return 1
    zone: Any = place.zone
    try:
        day = _parse_date(args.date) if args.date else zone.day(int(time.time()))
    except ValueError as exc:
        print("fieldlink schedule: %s" % exc, file=sys.stderr)
        return 2
    y = solar.civil_from_days(day)[0]
    if not zone.until > day * 86400 >= zone.instants[0]:
        place = make_place(config, now=solar.days_from_civil(y, 7, 1) * 86400)
        assert place is not None
        zone = place.zone
    store = ScheduleStore(config.lighting.store)
    schedules, ignored = load_schedules(config, store.entries)
    noon = zone.utc(day * 86400 + 43200)
    report = {
        "gateway": config.gateway.id, "date": "%04d-%02d-%02d" % solar.civil_from_days(day),
        "weekday": WEEKDAYS[solar.weekday(day)], "latitude": place.latitude, "longitude": place.longitude,
        "timezone": zone.name, "utc_offset": _offset(zone.offset_at(noon)), "sun": _sun(day, place),
        "schedules": [day_report(name, s, source, day, place)
                      for name, (s, source) in sorted(schedules.items())],
        "ignored": [{"name": n, "problem": p} for n, p in ignored],
    }
    if store.problem:
        report["store_problem"] = store.problem
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print(report)
    return 0


def _print(report: dict) -> None:
    print("gateway %s at %.4f, %.4f (%s, %s at noon)" % (report["gateway"], report["latitude"],
                                                         report["longitude"], report["timezone"],
                                                         report["utc_offset"]))
    sun = report["sun"]
    print("%s (%s): %s" % (report["date"], report["weekday"], ", ".join(
        "%s %s" % (event, sun[event]) if sun[event][:1].isdigit() else sun[event] for event in solar.EVENTS)))
    if report.get("store_problem"):
        print("warning: %s" % report["store_problem"])
    for item in report["ignored"]:
        print("warning: the kept replacement of schedule %r does not fit this config and is not run: %s"
              % (item["name"], item["problem"]))
    if not report["schedules"]:
        print("no schedules")
    for s in report["schedules"]:
        target = "group %s: " % s["group"] if s["group"] else ""
        print()
        print("schedule %r (%s%s), %s" % (s["name"], target, ", ".join(s["devices"]),
                                          "from the config" if s["source"] == "config"
                                          else "replaced by a command"))
        first = s["in_force_at_start"]
        if first is not None:
            print("  at 00:00 in force: step %d (%s, since %s): %s"
                  % (first["step"], first["at"], first["since"], _values(first["state"])))
        for row in s["steps"]:
            if "skipped" in row:
                print("  %-17s step %d  %-14s skipped: %s" % ("", row["step"], row["at"], row["skipped"]))
            else:
                print("  %-17s step %d  %-14s %s"
                      % (row["time"], row["step"], row["at"], _values(row["set"])))
