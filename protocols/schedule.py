"""Lighting schedules: parse and check them, resolve a day's steps to instants, and say which step is in
force at an instant and when the next change comes. Pure; shared by the agent and the firmware.

A schedule as the config gives it (TOML on the agent, the same map in the firmware's JSON):

    {"name": "main street", "group": "main_street",        # or "devices": ["lamp-01", ...]
     "steps": [{"at": "sunset-10m", "set": {"on": True, "dim": 100}},
               {"at": "23:30", "set": {"dim": 50}, "days": "mon-fri"},
               {"at": "sunrise+15m", "set": {"on": False}}]}

`at` is "HH:MM" or "HH:MM:SS" local time, or "sunrise", "sunset", "dawn", "dusk" (civil twilight) with an
optional offset "+Nm" / "-Nm" (minutes, at most 720). `days` is optional: "mon".."sun", ranges
("mon-fri", "fri-mon" wraps past Sunday), as one string with commas or a list; the step then happens
only on those local dates. `set` maps point names to values (bool, int, float).

The steps of a local date resolve to instants (POSIX seconds): clock times through the compiled `Zone`
(protocols/zone.py), sun events from protocols/solar.py for the solar day whose noon falls on that
date (a sunset just after midnight, as in Reykjavik in June, belongs to the date before). A sun step
whose event does not happen that day (polar day or night) is skipped with a reason for the log. All
the resolved steps of all days form one timeline; the step in force at an instant is the last one at
or before it, however far back (across midnight, or days back when a `days` filter or a polar season
leaves days without steps), up to LOOKBACK_DAYS. Two steps on the same second: the one listed later
wins.
"""

from protocols import solar

LOOKBACK_DAYS = 370  # a polar night plus margin: how far back and ahead the timeline is searched
# a step resolved for a local date falls within a day of that date's midnight (sun events are within
# 12 hours of the solar noon on that date, offsets add at most 12 hours): days further apart than this
# cannot swap order in the timeline
SPREAD_DAYS = 3
MAX_OFFSET_MINUTES = 720
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SUN_EVENTS = (solar.SUNSET, solar.SUNRISE, solar.DUSK, solar.DAWN)
SCHEDULE_KEYS = ("name", "group", "devices", "steps")
STEP_KEYS = ("at", "set", "days")


class ScheduleError(ValueError):
    """A schedule that cannot be used; names the schedule, the step (1-based) and the key."""

    def __init__(self, schedule: str, step: int, key: str, problem: str) -> None:
        self.schedule = schedule
        self.step = step
        self.key = key
        where = "schedule %r" % schedule
        if step:
            where += ", step %d" % step
        if key:
            where += ", key %r" % key
        super().__init__("%s: %s" % (where, problem))


class Place:
    """Where the gateway is: latitude and longitude in degrees (north, east positive) and its Zone."""

    def __init__(self, latitude: float, longitude: float, zone: object) -> None:
        solar.check_place(latitude, longitude)
        self.latitude = latitude
        self.longitude = longitude
        self.zone = zone


class Step:
    """One step: when (`event` is None for a clock time of `seconds` after local midnight, else a sun
    event with `minutes` offset), on which weekdays (`days`: a tuple of 0=Monday..6=Sunday, or None for
    every day) and what it sets (`values`)."""

    def __init__(self, at: str, event: object, seconds: int, minutes: int, days: object,
                 values: dict) -> None:
        self.at = at
        self.event = event
        self.seconds = seconds
        self.minutes = minutes
        self.days = days
        self.values = values

    def happens_on(self, weekday: int) -> bool:
        return self.days is None or weekday in self.days  # type: ignore[operator]


class Change:
    """A step resolved to an instant: `day` is the local date (days since 1970) it was resolved for,
    `index` its position in the schedule (0-based)."""

    def __init__(self, instant: int, day: int, index: int, step: Step) -> None:
        self.instant = instant
        self.day = day
        self.index = index
        self.step = step

    def key(self) -> tuple:
        return (self.instant, self.day, self.index)

    def __repr__(self) -> str:
        return "Change(%s, step %d %r)" % (solar.format_instant(self.instant), self.index + 1, self.step.at)


def parse_at(text: object) -> tuple:
    """(event or None, seconds after midnight, offset minutes) of an `at`; ValueError with the reason."""
    if not isinstance(text, str):
        raise ValueError("%r is not text" % (text,))
    spec = text.replace(" ", "").lower()
    for event in SUN_EVENTS:
        if spec.startswith(event):
            rest = spec[len(event):]
            if not rest:
                return (event, 0, 0)
            if rest[0] not in "+-" or not rest.endswith("m") or not rest[1:-1].isdigit():
                raise ValueError("%r: after %s comes +Nm or -Nm (minutes), e.g. %s-10m"
                                 % (text, event, event))
            minutes = int(rest[1:-1])
            if minutes > MAX_OFFSET_MINUTES:
                raise ValueError("%r: the offset is more than %d minutes" % (text, MAX_OFFSET_MINUTES))
            return (event, 0, -minutes if rest[0] == "-" else minutes)
    parts = spec.split(":")
    if len(parts) not in (2, 3) or [p for p in parts if len(p) != 2 or not p.isdigit()]:
        raise ValueError("%r is not HH:MM, HH:MM:SS or sunset/sunrise/dusk/dawn with an optional +Nm/-Nm"
                         % (text,))
    h, m = int(parts[0]), int(parts[1])
    s = int(parts[2]) if len(parts) == 3 else 0
    if h > 23 or m > 59 or s > 59:
        raise ValueError("%r is not a time of day (00:00 to 23:59:59)" % (text,))
    return (None, h * 3600 + m * 60 + s, 0)


def parse_days(spec: object) -> tuple:
    """Weekdays (0=Monday..6=Sunday, sorted) of a `days` value; ValueError with the reason."""
    items = spec.split(",") if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError("%r is not a day list such as \"mon-fri\" or [\"sat\", \"sun\"]" % (spec,))
    found = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError("%r is not a day name" % (item,))
        ends = item.strip().lower().split("-")
        for end in ends:
            if end not in DAY_NAMES:
                raise ValueError("%r is not a day (mon, tue, wed, thu, fri, sat, sun) or a range "
                                 "such as mon-fri" % (item.strip(),))
        if len(ends) > 2:
            raise ValueError("%r: a range has two ends, e.g. mon-fri" % (item.strip(),))
        first = DAY_NAMES.index(ends[0])
        last = DAY_NAMES.index(ends[-1])
        day = first
        while True:
            found.add(day)
            if day == last:
                break
            day = (day + 1) % 7
    return tuple(sorted(found))


class Schedule:
    """A checked schedule: `name`, `group` (or None), `devices` (list, or None until a group is
    resolved), `steps`, and `points` (every point any step sets, sorted)."""

    def __init__(self, name: str, group: object, devices: object, steps: list) -> None:
        self.name = name
        self.group = group
        self.devices = devices
        self.steps = steps
        names = set()
        for step in steps:
            for point in step.values:
                names.add(point)
        self.points = sorted(names)

    def day(self, day: int, place: Place) -> tuple:
        """The steps of local date `day` (days since 1970): ([Change] in timeline order, [(index,
        reason)] for the steps skipped because their sun event does not happen)."""
        changes = []
        skipped = []
        weekday = solar.weekday(day)
        sun = {}  # type: dict
        for index, step in enumerate(self.steps):
            if not step.happens_on(weekday):
                continue
            if step.event is None:
                instant = place.zone.utc(day * 86400 + step.seconds)  # type: ignore[attr-defined]
            else:
                if step.event not in sun:
                    y, m, d = solar.civil_from_days(solar_day(day, place))
                    sun[step.event] = solar.sun_event(y, m, d, place.latitude, place.longitude, step.event)
                result = sun[step.event]
                if not isinstance(result, int):
                    y, m, d = solar.civil_from_days(day)
                    skipped.append((index, "schedule %r step %d (%s) skipped on %04d-%02d-%02d: %s"
                                    % (self.name, index + 1, step.at, y, m, d,
                                       solar.describe(step.event, result))))  # type: ignore[arg-type]
                    continue
                instant = result + step.minutes * 60
            changes.append(Change(instant, day, index, step))
        changes.sort(key=Change.key)
        return changes, skipped

    def in_force(self, instant: int, place: Place) -> "Change | None":
        """The Change in force at `instant` (the last at or before it), or None when no step happened in
        the LOOKBACK_DAYS before it."""
        found = self._before(instant, place, _one)
        return found[0] if found else None

    def state_at(self, instant: int, place: Place) -> dict:
        """What the schedule wants at `instant`: {point: value} merged from the step in force and the
        steps before it until every point of the schedule has a value (a lamp put right after a
        reboot gets `on` from the sunset step even when the step in force only sets `dim`). Points no
        step set within LOOKBACK_DAYS are absent."""
        return _merge(self._before(instant, place, lambda changes: len(_merge(changes)) == len(self.points)))

    def next_change(self, instant: int, place: Place) -> "Change | None":
        """The first Change strictly after `instant` (for a timer), or None within LOOKBACK_DAYS."""
        start = place.zone.day(instant)  # type: ignore[attr-defined]
        best = None  # type: Change | None
        found_on = None
        for day in range(start - SPREAD_DAYS, start + LOOKBACK_DAYS):
            for change in self.day(day, place)[0]:
                if change.instant > instant and (best is None or change.key() < best.key()):
                    best = change
                    if found_on is None:
                        found_on = day
            if found_on is not None and day >= found_on + SPREAD_DAYS:
                break
        return best

    def _before(self, instant: int, place: Place, enough: object) -> list:
        """Changes at or before `instant`, latest first, searching back day by day until `enough(changes)`
        holds and SPREAD_DAYS more days cannot hold a later one (or LOOKBACK_DAYS are searched)."""
        start = place.zone.day(instant)  # type: ignore[attr-defined]
        out = []  # type: list
        settled_on = None
        for day in range(start + SPREAD_DAYS, start - LOOKBACK_DAYS, -1):
            added = False
            for change in self.day(day, place)[0]:
                if change.instant <= instant:
                    out.append(change)
                    added = True
            if added:
                out.sort(key=Change.key, reverse=True)
            if settled_on is None and out and enough(out):  # type: ignore[operator]
                settled_on = day
            if settled_on is not None and day <= settled_on - SPREAD_DAYS:
                break
        return out


def _one(changes: list) -> bool:
    return len(changes) >= 1


def _merge(changes: list) -> dict:
    """{point: value} from changes latest first: each point's latest value."""
    state = {}  # type: dict
    for change in changes:
        for point, value in change.step.values.items():
            if point not in state:
                state[point] = value
    return state


def solar_day(day: int, place: Place) -> int:
    """The date whose mean solar noon falls on local date `day` (the same date unless the zone is
    more than 12 hours from solar time, as on the far side of the date line)."""
    for candidate in (day, day - 1, day + 1):
        noon = candidate * 86400 + 43200 - int(place.longitude * 240.0)
        if place.zone.day(noon) == day:  # type: ignore[attr-defined]
            return candidate
    return day


def parse_schedule(raw: object, groups: object = None) -> Schedule:
    """A Schedule from its config map; ScheduleError naming the schedule, step and key. With `groups`
    ({name: [device ids]}) a `group` is resolved into `devices` and must exist."""
    if not isinstance(raw, dict):
        raise ScheduleError("?", 0, "", "a schedule must be a table with name, group or devices, and steps")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScheduleError("?", 0, "name", "every schedule needs a name (text)")
    for key in raw:
        if key not in SCHEDULE_KEYS:
            raise ScheduleError(name, 0, key, "unknown key (a schedule has %s)" % ", ".join(SCHEDULE_KEYS))
    group = raw.get("group")
    devices = raw.get("devices")
    if (group is None) == (devices is None):
        raise ScheduleError(name, 0, "group", "give either group or devices (one of them)")
    if group is not None:
        if not isinstance(group, str) or not group:
            raise ScheduleError(name, 0, "group", "%r is not a group name" % (group,))
        if groups is not None:
            if group not in groups:  # type: ignore[operator]
                raise ScheduleError(name, 0, "group", "no group %r in [groups]" % group)
            devices = list(groups[group])  # type: ignore[index]
    else:
        if not isinstance(devices, list) or not devices:
            raise ScheduleError(name, 0, "devices", "must be a non-empty list of device ids")
        for device in devices:
            if not isinstance(device, str) or not device:
                raise ScheduleError(name, 0, "devices", "%r is not a device id" % (device,))
        if len(set(devices)) != len(devices):
            raise ScheduleError(name, 0, "devices", "a device is listed twice")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise ScheduleError(name, 0, "steps", "a schedule needs at least one step")
    steps = [_parse_step(name, i + 1, s) for i, s in enumerate(steps_raw)]
    return Schedule(name, group, devices, steps)


def _parse_step(name: str, number: int, raw: object) -> Step:
    if not isinstance(raw, dict):
        raise ScheduleError(name, number, "", "a step must be a table with at and set")
    for key in raw:
        if key not in STEP_KEYS:
            raise ScheduleError(name, number, key, "unknown key (a step has %s)" % ", ".join(STEP_KEYS))
    if "at" not in raw:
        raise ScheduleError(name, number, "at", "missing: when the step happens")
    try:
        event, seconds, minutes = parse_at(raw["at"])
    except ValueError as e:
        raise ScheduleError(name, number, "at", str(e)) from None
    days = None
    if "days" in raw:
        try:
            days = parse_days(raw["days"])
        except ValueError as e:
            raise ScheduleError(name, number, "days", str(e)) from None
    values = raw.get("set")
    if not isinstance(values, dict) or not values:
        raise ScheduleError(name, number, "set",
                            "must be a non-empty table of point values, e.g. {on = true}")
    for point, value in values.items():
        if not isinstance(point, str) or not point:
            raise ScheduleError(name, number, "set", "%r is not a point name" % (point,))
        if not isinstance(value, (bool, int, float)) or (isinstance(value, float) and value - value != 0):
            raise ScheduleError(name, number, "set",
                                "%s = %r: a value is true/false or a finite number" % (point, value))
    return Step(raw["at"], event, seconds, minutes, days, dict(values))
