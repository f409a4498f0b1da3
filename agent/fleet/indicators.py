"""The provincial smart-city indicators a county is scored on, from the fleet's inventory and health.

Pure functions (no broker, no clock: `now` is passed in). The integration (`fieldlink fleet report`)
turns retained inventories and health messages into `DeviceFacts`; this module decides what counts and
computes the ratios, the stars and what the next star needs. docs/indicators.md explains each one.

* **L1P3 intelligent street lights** = intelligent lamps / public lights. A lamp counts (with its
  `lights`, 1 unless the device controls several) when the gateway reports it online, its control
  point is writable and its fault alarm is armed. Stars: 70 / 90 / 100 % for 3 / 4 / 5.
* **L1P9 remote-read household meters**: for water, electricity and gas each, households served by
  reporting meters / households; the three coverages (each at most 100 %) weigh a third each.
  Stars: 50 / 70 / 80 %.
* **L2P4 monitored network length**: for water, power and gas each, the pipe or line length that
  reporting sensors monitor / the network's length; a third each (each at most 100 %). Stars:
  70 / 85 / 100 %.

Below the 3-star threshold an indicator has 0 stars. A device whose last report is older than
`stale_hours` counts for nothing. Ratios are exact fractions: 70 % exactly is 3 stars, one lamp less
is not; percentages are shown rounded down so that a display never claims a threshold not reached.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from agent.config_lines import scan_lines

UTILITIES = ("water", "electricity", "gas")  # L1P9, the meters' utilities
NETWORKS = ("water", "power", "gas")  # L2P4, the networks' names in the inventory and the totals
METER_UTILITY = {"water_meter": "water", "electricity_meter": "electricity", "gas_meter": "gas"}
LAMP_KINDS = ("lamp",)

STARS = {  # indicator: ((percent, stars), ...) highest first
    "L1P3": ((100, 5), (90, 4), (70, 3)),
    "L1P9": ((80, 5), (70, 4), (50, 3)),
    "L2P4": ((100, 5), (85, 4), (70, 3)),
}
TITLES = {
    "L1P3": "intelligent street lights",
    "L1P9": "remote-read household meters",
    "L2P4": "monitored network length",
}
TOTAL_KEYS = ("public_lights", "households", "network_length_m")
INVALID = "devices with invalid lights, households or length_m"


class TotalsError(ValueError):
    """A totals file that cannot be used; the message names the file, the line and the key."""


@dataclass(frozen=True)
class DeviceFacts:
    """What the fleet knows of one device: from the gateway's inventory (kind, serves, lights, what is
    writable and alarmed) and its latest health (online, last report)."""

    gateway: str
    device: str
    kind: str
    last_seen: float | None  # POSIX seconds of its last report; None: never
    online: bool = True
    district: str | None = None
    lights: int = 1  # lamps this device switches (a controller of several lamps)
    control_writable: bool = False  # the lamp's control point is writable (controlled)
    fault_alarm_armed: bool = False  # a fault alarm rule is armed on it (fault-alarmed)
    households: int = 0  # households a meter serves
    network: str | None = None  # the network a sensor monitors: water, power or gas
    length_m: float = 0.0  # the length of that network it monitors


@dataclass(frozen=True)
class Totals:
    """The city's (or a district's) totals: public lights, households per utility, network length
    per network (metres)."""

    public_lights: int
    households: dict[str, int]
    network_length_m: dict[str, Fraction]


@dataclass
class CityTotals:
    city: Totals
    districts: dict[str, Totals] = field(default_factory=dict)


@dataclass
class Part:
    """One utility's or network's share of L1P9 / L2P4 (or the lamps of L1P3)."""

    name: str
    counted: Fraction
    total: Fraction

    @property
    def coverage(self) -> Fraction:
        return min(Fraction(1), self.counted / self.total)


@dataclass
class Indicator:
    code: str
    title: str
    ratio: Fraction
    stars: int
    parts: list[Part]
    next_star: str  # what the next star needs, in words; "" at 5 stars

    @property
    def percent(self) -> str:
        """The ratio as a percentage rounded down to 0.1 (69.96 % shows as 69.9 %)."""
        tenths = math.floor(self.ratio * 1000)
        return "%d.%d %%" % (tenths // 10, tenths % 10)

    def line(self) -> str:
        text = "%s %s: %s, %d star%s" % (
            self.code,
            self.title,
            self.percent,
            self.stars,
            "" if self.stars == 1 else "s",
        )
        return text + ("; " + self.next_star if self.next_star else "")


@dataclass
class ScopeReport:
    """The indicators of the city or of one district, and what was left out and why."""

    scope: str
    indicators: list[Indicator]
    excluded: dict[str, int]


def stars_for(code: str, ratio: Fraction) -> int:
    for percent, stars in STARS[code]:
        if ratio * 100 >= percent:
            return stars
    return 0


def _next_threshold(code: str, stars: int) -> int | None:
    """The percentage the next star needs (the 3-star one from 0), None at 5 stars."""
    higher = [(p, s) for p, s in STARS[code] if s > stars]
    return min(higher)[0] if higher else None


def _amount(value: Fraction | int, template: str) -> str:
    """`template` ("{n} more lamp{s}") with the whole amount that reaches `value`, thousands separated."""
    n = math.ceil(value)
    return template.format(n="{:,}".format(n), s="" if n == 1 else "s")


def lamp_counts(lamps: list[DeviceFacts], now: float, stale_hours: float) -> tuple[int, dict[str, int]]:
    """(intelligent lamps, {reason: lamps not counted})."""
    counted = 0
    excluded: dict[str, int] = {}
    for lamp in lamps:
        if invalid(lamp):
            excluded[INVALID] = excluded.get(INVALID, 0) + 1
            continue
        reason = _lamp_reason(lamp, now, stale_hours)
        if reason:
            excluded[reason] = excluded.get(reason, 0) + lamp.lights
        else:
            counted += lamp.lights
    return counted, excluded


def _stale(device: DeviceFacts, now: float, stale_hours: float) -> bool:
    return device.last_seen is None or not now - device.last_seen <= stale_hours * 3600  # NaN is stale


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def invalid(device: DeviceFacts) -> bool:
    """Facts no count can use (they come from a broker: hostile until checked): `lights` or
    `households` not a whole number >= 0, `length_m` not a finite number >= 0."""
    length = device.length_m
    return (
        not _whole(device.lights)
        or not _whole(device.households)
        or isinstance(length, bool)
        or not isinstance(length, (int, float))
        or not 0 <= length < math.inf
    )


def _lamp_reason(lamp: DeviceFacts, now: float, stale_hours: float) -> str:
    if _stale(lamp, now, stale_hours):
        return "lamps not reporting for %g h" % stale_hours
    if not lamp.online:
        return "lamps offline"
    if not lamp.control_writable:
        return "lamps without a writable control point"
    if not lamp.fault_alarm_armed:
        return "lamps without an armed fault alarm"
    return ""


def l1p3(devices: list[DeviceFacts], total_lights: int, now: float, stale_hours: float = 24.0) -> Indicator:
    """L1P3 from the lamps among `devices`."""
    lamps = [d for d in devices if d.kind in LAMP_KINDS]
    counted, _ = lamp_counts(lamps, now, stale_hours)
    ratio = Fraction(counted, total_lights)
    stars = stars_for("L1P3", ratio)
    needed = _next_threshold("L1P3", stars)
    words = ""
    if needed is not None:
        more = Fraction(needed * total_lights, 100) - counted
        words = "%d stars need %d %%: %s" % (
            next(s for p, s in STARS["L1P3"] if p == needed),
            needed,
            _amount(more, "{n} more lamp{s}"),
        )
    return Indicator(
        "L1P3",
        TITLES["L1P3"],
        ratio,
        stars,
        [Part("lamps", Fraction(counted), Fraction(total_lights))],
        words,
    )


def _composite(code: str, parts: list[Part], template: str) -> Indicator:
    """A mean of three coverages (each capped at 100 %), its stars and, for the next star, how much
    more of each part alone would reach it."""
    ratio = sum((p.coverage for p in parts), Fraction(0)) / len(parts)
    stars = stars_for(code, ratio)
    needed = _next_threshold(code, stars)
    words = ""
    if needed is not None:
        gap = Fraction(needed, 100) * len(parts) - ratio * len(parts)  # coverage points still missing
        options = []
        for p in parts:
            room = 1 - p.coverage
            if room >= gap:
                options.append(_amount(gap * p.total, template.replace("{part}", p.name)))
        next_stars = next(s for pc, s in STARS[code] if pc == needed)
        if options:
            words = "%d stars need %d %%: %s" % (next_stars, needed, ", or ".join(options))
            if len(options) > 1:
                words += " (each alone)"
        else:
            words = "%d stars need %d %%: more than one %s must grow (%s)" % (
                next_stars,
                needed,
                "utility" if code == "L1P9" else "network",
                ", ".join("%s %s" % (p.name, _pct(p.coverage)) for p in parts),
            )
    return Indicator(code, TITLES[code], ratio, stars, parts, words)


def _pct(value: Fraction) -> str:
    tenths = math.floor(value * 1000)
    return "%d.%d %%" % (tenths // 10, tenths % 10)


def l1p9(
    devices: list[DeviceFacts], households: dict[str, int], now: float, stale_hours: float = 24.0
) -> Indicator:
    """L1P9 from the reporting meters among `devices`."""
    served = dict.fromkeys(UTILITIES, 0)
    for d in devices:
        utility = METER_UTILITY.get(d.kind)
        if utility and not _stale(d, now, stale_hours) and not invalid(d):
            served[utility] += d.households
    parts = [Part(u, Fraction(served[u]), Fraction(households[u])) for u in UTILITIES]
    return _composite("L1P9", parts, "{n} more household{s} on {part}")


def l2p4(
    devices: list[DeviceFacts], lengths: dict[str, Fraction], now: float, stale_hours: float = 24.0
) -> Indicator:
    """L2P4 from the reporting network sensors among `devices`."""
    monitored = dict.fromkeys(NETWORKS, Fraction(0))
    for d in devices:
        if d.network in monitored and not _stale(d, now, stale_hours) and not invalid(d):
            monitored[d.network] += Fraction(str(d.length_m))
    parts = [Part(n, monitored[n], lengths[n]) for n in NETWORKS]
    return _composite("L2P4", parts, "{n} m more of the {part} network")


def scope_report(
    scope: str, devices: list[DeviceFacts], totals: Totals, now: float, stale_hours: float = 24.0
) -> ScopeReport:
    """The three indicators for the devices of one scope against its totals."""
    excluded: dict[str, int] = {}
    _, lamp_excluded = lamp_counts([d for d in devices if d.kind in LAMP_KINDS], now, stale_hours)
    excluded.update(lamp_excluded)
    others = [d for d in devices if d.kind not in LAMP_KINDS and (d.kind in METER_UTILITY or d.network)]
    bad = sum(1 for d in others if invalid(d))
    if bad:
        excluded[INVALID] = excluded.get(INVALID, 0) + bad
    stale_others = sum(1 for d in others if not invalid(d) and _stale(d, now, stale_hours))
    if stale_others:
        excluded["meters and sensors not reporting for %g h" % stale_hours] = stale_others
    return ScopeReport(
        scope,
        [
            l1p3(devices, totals.public_lights, now, stale_hours),
            l1p9(devices, totals.households, now, stale_hours),
            l2p4(devices, totals.network_length_m, now, stale_hours),
        ],
        excluded,
    )


def report(
    devices: list[DeviceFacts], totals: CityTotals, now: float, stale_hours: float = 24.0
) -> list[ScopeReport]:
    """The city first, then each district that has totals, in the totals file's order. Devices of a
    district without totals count for the city only."""
    out = [scope_report("city", devices, totals.city, now, stale_hours)]
    for name, district in totals.districts.items():
        out.append(scope_report(name, [d for d in devices if d.district == name], district, now, stale_hours))
    return out


# ---- the totals file --------------------------------------------------------------------------


def load_totals(path: str) -> CityTotals:
    """Read and check a totals TOML file; TotalsError naming file, line and key."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise TotalsError("%s: cannot read the totals file: %s" % (path, e.strerror or e)) from None
    text = raw.decode("utf-8", "replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise TotalsError("%s: not valid TOML: %s" % (path, e)) from None
    return parse_totals(data, path, scan_lines(text))


def parse_totals(
    data: dict[str, Any], source: str = "totals", lines: dict[tuple, int] | None = None
) -> CityTotals:
    """Check totals already parsed from TOML. `lines` (from agent.config_lines.scan_lines) puts line
    numbers in the errors."""
    where = _Where(source, lines or {})
    for key in data:
        if key not in (*TOTAL_KEYS, "districts"):
            where.fail(
                (key,), "unknown key %r (totals have %s, and [districts.NAME])" % (key, ", ".join(TOTAL_KEYS))
            )
    city = _scope_totals(data, (), where)
    districts: dict[str, Totals] = {}
    raw_districts = data.get("districts", {})
    if not isinstance(raw_districts, dict):
        where.fail(("districts",), "must be tables: [districts.NAME]")
    for name, table in raw_districts.items():
        if not isinstance(table, dict):
            where.fail(("districts", name), "must be a table with %s" % ", ".join(TOTAL_KEYS))
        for key in table:
            if key not in TOTAL_KEYS:
                where.fail(
                    ("districts", name, key),
                    "unknown key %r (a district has %s)" % (key, ", ".join(TOTAL_KEYS)),
                )
        districts[name] = _scope_totals(table, ("districts", name), where)
    return CityTotals(city, districts)


class _Where:
    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: tuple, problem: str) -> None:
        line = None
        for n in range(len(path), 0, -1):
            line = self.lines.get(path[:n])
            if line:
                break
        at = "%s:%d" % (self.source, line) if line else self.source
        raise TotalsError("%s: %s: %s" % (at, ".".join(str(p) for p in path), problem))


def _number(where: _Where, path: tuple, value: Any, whole: bool) -> Fraction:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (whole and not isinstance(value, int))
    ):
        where.fail(path, "%r is not %s" % (value, "a whole number" if whole else "a number"))
    if value <= 0:
        where.fail(path, "must be more than 0 (a ratio needs a total), got %r" % (value,))
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _scope_totals(table: dict[str, Any], prefix: tuple, where: _Where) -> Totals:
    for key in TOTAL_KEYS:
        if key not in table:
            example = {
                "public_lights": "public_lights = 12000",
                "households": "households = 85000",
                "network_length_m": "network_length_m = {water = 420000, power = 380000, gas = 150000}",
            }
            where.fail((*prefix, key), "missing: the indicators need it (e.g. %s)" % example[key])
    lights = int(_number(where, (*prefix, "public_lights"), table["public_lights"], True))
    households_raw = table["households"]
    if isinstance(households_raw, dict):
        households: dict[str, int] = {}
        for u in UTILITIES:
            if u not in households_raw:
                where.fail(
                    (*prefix, "households", u), "missing: households per utility need water, electricity, gas"
                )
            households[u] = int(_number(where, (*prefix, "households", u), households_raw[u], True))
        for u in households_raw:
            if u not in UTILITIES:
                where.fail((*prefix, "households", u), "unknown utility (water, electricity, gas)")
    else:
        count = int(_number(where, (*prefix, "households"), households_raw, True))
        households = dict.fromkeys(UTILITIES, count)
    lengths_raw = table["network_length_m"]
    if not isinstance(lengths_raw, dict):
        where.fail((*prefix, "network_length_m"), "must be a table {water = m, power = m, gas = m}")
    lengths: dict[str, Fraction] = {}
    for n in NETWORKS:
        if n not in lengths_raw:
            where.fail(
                (*prefix, "network_length_m", n), "missing: the length of the %s network in metres" % n
            )
        lengths[n] = _number(where, (*prefix, "network_length_m", n), lengths_raw[n], False)
    for n in lengths_raw:
        if n not in NETWORKS:
            where.fail((*prefix, "network_length_m", n), "unknown network (water, power, gas)")
    return Totals(lights, households, lengths)
