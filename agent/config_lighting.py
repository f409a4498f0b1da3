"""The street-lighting and indicator keys of a config: `[gateway] latitude, longitude, timezone`,
`[groups]`, `[[schedules]]`, `[lighting]`, and `serves` / `lights` of `[[devices]]`.

Schedules are parsed by protocols/schedule.py (the same code the firmware runs); its ScheduleError
(schedule, step, key) is mapped to the file's line. Every value a step sets is checked against the
profile of every device the schedule targets, with the check a command gets
(protocols/profiles.Point.check_write): the point exists, is writable and the value is in range.
"""

from __future__ import annotations

import math
import os
from typing import Any

from agent.config_keys import Checker, Spec, closest, is_int, number, show, string
from agent.config_model import Config, DeviceConfig, LightingConfig
from protocols import registry
from protocols.profiles import Profile, valid_name
from protocols.schedule import Schedule, ScheduleError, parse_schedule

__all__ = [
    "GROUP_MAX",
    "LIGHTING",
    "PLACE",
    "check_groups",
    "check_indicator_keys",
    "check_lighting",
    "check_place",
    "check_schedule",
    "check_schedules",
    "default_households",
]

PLACE: dict[str, Spec] = {
    "latitude": number(-90, 90), "longitude": number(-180, 180), "timezone": string()}
LIGHTING: dict[str, Spec] = {"store": string(), "alarm_after": number(0, 86400)}
GROUP_MAX = 1000  # devices in one group (one ack carries a result per device)
METER_KINDS = ("electricity_meter", "water_meter", "gas_meter", "heat_meter")
NETWORKS = ("water", "power", "gas")


def check_place(ck: Checker, gateway: dict, schedules: bool) -> None:
    """latitude, longitude and timezone of [gateway]: all three or none, and needed by schedules; an
    unknown time zone is an error at its line."""
    given = [k for k in PLACE if k in gateway]
    if given and len(given) < 3:
        for key in PLACE:
            if key not in gateway:
                ck.error(("gateway", key), "missing; latitude, longitude and timezone go together "
                         "(e.g. latitude = 36.6512, longitude = 117.1201, timezone = \"Asia/Shanghai\")")
    elif not given and schedules:
        ck.error(("gateway",), "schedules need the gateway's place: set latitude, longitude (degrees, "
                 "north and east positive) and timezone (an IANA name such as \"Asia/Shanghai\") in "
                 "[gateway]")
    name = gateway.get("timezone")
    if isinstance(name, str) and name.strip():
        from agent.lighting.zones import compile_zone

        try:
            compile_zone(name, 2026, 2026)
        except ValueError as exc:
            ck.error(("gateway", "timezone"), "%s" % exc)


def check_groups(ck: Checker, groups: object, devices: dict[str, DeviceConfig]) -> dict[str, list[str]]:
    """[groups]: NAME = [device ids]; names are not device ids, devices exist, each once, at most
    GROUP_MAX."""
    out: dict[str, list[str]] = {}
    if not isinstance(groups, dict):
        ck.error(("groups",), "expected a table [groups] of NAME = [device ids], got %s" % show(groups))
        return out
    for name, members in groups.items():
        path = ("groups", name)
        if not valid_name(name):
            ck.error(path, "a group name is letters, digits, _ - . (not starting with _ - .), at most 64 "
                     "characters")
            continue
        if name in devices:
            ck.error(path, 'group "%s" has the name of a device; expected a name no device has (a command\'s '
                     "device may name a group)" % name)
            continue
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            ck.error(path, "expected a non-empty list of device ids, got %s" % show(members))
            continue
        ok = True
        for member in members:
            if member not in devices:
                near = closest(member, list(devices))
                hint = ' (did you mean "%s"?)' % near if near else ""
                ck.error(path, 'no device "%s"%s; expected ids of [[devices]]' % (member, hint))
                ok = False
        if len(set(members)) != len(members):
            twice = sorted({m for m in members if members.count(m) > 1})
            ck.error(path, "device %s is listed twice; expected each device once" % ", ".join(twice))
            ok = False
        if len(members) > GROUP_MAX:
            ck.error(path, "%d devices; expected at most %d in one group" % (len(members), GROUP_MAX))
            ok = False
        if ok:
            out[name] = list(members)
    return out


def check_schedule(raw: object, groups: dict[str, list[str]], devices: dict[str, DeviceConfig],
                   profiles: dict[str, Profile]) -> Schedule:
    """A schedule (config table or a command's map) checked against the devices it targets;
    ScheduleError naming the schedule, step and key."""
    schedule = parse_schedule(raw, groups)
    name = schedule.name
    key = "group" if schedule.group is not None else "devices"
    for device_id in schedule.devices or []:  # type: ignore[attr-defined]
        if device_id not in devices:
            near = closest(device_id, list(devices))
            hint = ' (did you mean "%s"?)' % near if near else ""
            raise ScheduleError(name, 0, key, 'no device "%s"%s' % (device_id, hint))
    for number_, step in enumerate(schedule.steps, 1):
        for device_id in schedule.devices or []:  # type: ignore[attr-defined]
            device = devices[device_id]
            profile = profiles[device.profile]
            for point, value in step.values.items():
                if not profile.has_point(point):
                    near = closest(point, [p.name for p in profile.points if p.writable])
                    hint = ' (did you mean "%s"?)' % near if near else ""
                    raise ScheduleError(name, number_, "set", 'device %s (profile %s) has no point "%s"%s'
                                        % (device_id, profile.model, point, hint))
                reason = profile.point(point).check_write(value)
                if reason is not None:
                    raise ScheduleError(name, number_, "set", "device %s (profile %s): %s"
                                        % (device_id, profile.model, reason))
    return schedule


def _schedule_path(index: int, exc: ScheduleError) -> tuple:
    path: tuple = ("schedules", index)
    if exc.step:
        path = (*path, "steps", exc.step - 1)
    if exc.key:
        path = (*path, exc.key)
    return path


def check_schedules(ck: Checker, schedules: object, groups: dict[str, list[str]],
                    devices: dict[str, DeviceConfig], profiles: dict[str, Profile]) -> list[dict]:
    """[[schedules]]: each parsed and checked against its devices' profiles; unique names; no two
    schedules set the same point of one device. Returns the good tables."""
    out: list[dict] = []
    names: dict[str, int] = {}
    owner: dict[tuple[str, str], str] = {}  # (device, point) -> the schedule that sets it
    for path, table in ck.tables(schedules, "schedules"):
        index = path[1]
        try:
            schedule = check_schedule(table, groups, devices, profiles)
        except ScheduleError as exc:
            ck.error(_schedule_path(index, exc), str(exc))
            continue
        if not ck.unique(names, path, "schedule", "name", schedule.name):
            continue
        clash = False
        for device_id in schedule.devices or []:  # type: ignore[attr-defined]
            for point in schedule.points:
                other = owner.get((device_id, point))
                if other is not None:
                    ck.error((*path, "steps"), "schedule %r: point %s of device %s is already set by "
                             "schedule %r; expected one schedule per point of a device"
                             % (schedule.name, point, device_id, other))
                    clash = True
                owner[(device_id, point)] = schedule.name
        if not clash:
            out.append(table)
    return out


def check_lighting(ck: Checker, table: dict, outbox_path: str, base_dir: str) -> LightingConfig:
    """[lighting]: where replaced schedules are kept (beside the outbox unless set), alarm_after."""
    from agent.config_keys import fill, resolve_path

    vals = fill(ck, table, ("lighting",), LIGHTING)
    if "store" in vals:
        vals["store"] = resolve_path(base_dir, vals["store"])
    else:
        vals["store"] = os.path.join(os.path.dirname(outbox_path) or ".", "schedules.json")
    return LightingConfig(**vals)


def default_households(profile: Profile) -> int:
    """Households a meter serves unless the config says: its protocol family's `households` (1 for DL/T
    645 and CJ/T 188 meters), else 0."""
    return int(registry.family(profile.protocol).households)


def check_indicator_keys(ck: Checker, raw_devices: object, config: Config) -> None:
    """`serves` and `lights` of each device: households (whole >= 0) on meters, network ("water",
    "power", "gas") with length_m (metres >= 0) on any device but a lamp, lights (>= 1) on lamps.
    Replaces each device's serves by the checked table."""
    by_id = {d.id: d for d in config.devices}
    tables = raw_devices if isinstance(raw_devices, list) else []
    for index, table in enumerate(tables):
        device = by_id.get(str(table.get("id"))) if isinstance(table, dict) else None
        if device is None:
            continue
        path: tuple = ("devices", index)
        profile = config.profiles.get(device.profile)
        if profile is None:
            continue
        if device.lights is not None and profile.kind != "lamp":
            ck.error((*path, "lights"), 'applies to lamps; profile "%s" is a %s'
                     % (profile.model, profile.kind))
        if device.serves is not None:
            device.serves = _check_serves(ck, path, device.serves, profile)


def _check_serves(ck: Checker, path: tuple, serves: Any, profile: Profile) -> dict | None:
    if not isinstance(serves, dict):
        ck.error((*path, "serves"), "expected a table such as {households = 24} or {network = \"water\", "
                 "length_m = 1800}, got %s" % show(serves))
        return None
    out: dict[str, Any] = {}
    for key, value in serves.items():
        where = (*path, "serves", key)
        if key == "households":
            if profile.kind not in METER_KINDS:
                ck.error(where, 'applies to meters; profile "%s" is a %s' % (profile.model, profile.kind))
            elif not is_int(value) or value < 0:
                ck.error(where, "expected a whole number of households >= 0, got %s" % show(value))
            else:
                out[key] = int(value)
        elif key == "network":
            if profile.kind == "lamp":
                ck.error(where, "a lamp monitors no network; expected network on a pipe or line sensor")
            elif value not in NETWORKS:
                ck.error(where, "expected one of %s, got %s" % (", ".join('"%s"' % n for n in NETWORKS),
                                                              show(value)))
            else:
                out[key] = value
        elif key == "length_m":
            if not (is_int(value) or isinstance(value, float)) or not math.isfinite(value) or value < 0:
                ck.error(where, "expected the metres of network it monitors (a number >= 0), got %s"
                         % show(value))
            else:
                out[key] = value
        else:
            ck.error(where, "unknown key; expected households (meters) or network and length_m "
                     "(network sensors)")
    if ("network" in serves) != ("length_m" in serves):
        missing = "length_m" if "network" in serves else "network"
        ck.error((*path, "serves", missing), "missing; network and length_m go together (e.g. serves = "
                 "{network = \"water\", length_m = 1800})")
    return out
