"""Compile an IANA time zone (zoneinfo) into the offset table protocols/zone.py reads on any runtime.

The agent uses the same table as the firmware, so both resolve a schedule identically. zoneinfo
exposes no list of transitions, so the offsets are sampled every six hours and each change is
narrowed to the second by bisection; no zone changes its offset twice within six hours.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from protocols.solar import days_from_civil
from protocols.zone import Zone

STEP = 6 * 3600
YEARS_AHEAD = 20


def _offset(zone: zoneinfo.ZoneInfo, instant: int) -> int:
    offset = dt.datetime.fromtimestamp(instant, dt.UTC).astimezone(zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def compile_zone(name: str, first_year: int, last_year: int | None = None) -> Zone:
    """The offsets of zone `name` from 1 January `first_year` 00:00 UTC to the end of `last_year`
    (default YEARS_AHEAD later). ValueError naming the zone when zoneinfo does not know it."""
    if last_year is None:
        last_year = first_year + YEARS_AHEAD
    if last_year < first_year:
        raise ValueError("time zone %s: last year %d is before first year %d" % (name, last_year, first_year))
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            "unknown time zone %r (an IANA name such as Asia/Shanghai; is the tzdata package installed?)"
            % (name,)
        ) from e
    start = days_from_civil(first_year, 1, 1) * 86400
    until = days_from_civil(last_year + 1, 1, 1) * 86400
    changes = [(start, _offset(zone, start))]
    t = start
    while t < until:
        nxt = min(t + STEP, until)
        if _offset(zone, nxt) != changes[-1][1]:
            lo, hi = t, nxt  # offset(lo) is the last one, offset(hi) differs
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, mid) == changes[-1][1]:
                    lo = mid
                else:
                    hi = mid
            changes.append((hi, _offset(zone, hi)))
        t = nxt
    return Zone(name, changes, until)
