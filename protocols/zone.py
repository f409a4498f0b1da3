"""Local civil time without a time-zone database: the UTC offsets a host compiled for a span of years.

A board has no zoneinfo, so the host (the agent, or the firmware build from the gateway's
`timezone`) turns an IANA zone into a `Zone`: the offset in force from each change on, until an
instant after which the table says nothing. As JSON (what the firmware config carries):

    {"name": "Europe/Berlin", "until": 2524608000,
     "changes": [[1704067200, 3600], [1711846800, 7200], [1729990800, 3600], ...]}

Each change is [POSIX instant, UTC offset in seconds from that instant on]; the first one's offset also
holds before it. A zone without daylight saving is one change. Past `until` the last offset is kept
and `expired()` says so, so the caller can warn that the table needs rebuilding (laws change; the
host compiles about twenty years ahead).

Local times are counted as *local seconds*: days since 1970-01-01 of the local date times 86400 plus
the seconds since local midnight, as if the local wall clock were UTC.
"""

MAX_OFFSET = 18 * 3600  # the widest offset POSIX and IANA allow


class Zone:
    """UTC offsets by instant. `changes`: [(instant, offset seconds)], sorted, at least one."""

    def __init__(self, name: str, changes: list, until: int) -> None:
        if not changes:
            raise ValueError("zone %s: no offsets" % name)
        last = None
        for i, change in enumerate(changes):
            if len(change) != 2 or not isinstance(change[0], int) or not isinstance(change[1], int):
                raise ValueError("zone %s: change %d is not [instant, offset seconds]: %r"
                                 % (name, i, change))
            if not -MAX_OFFSET <= change[1] <= MAX_OFFSET:
                raise ValueError("zone %s: change %d: offset %d s is beyond 18 hours" % (name, i, change[1]))
            if last is not None and change[0] <= last:
                raise ValueError("zone %s: change %d is not after the one before it" % (name, i))
            last = change[0]
        if not isinstance(until, int):
            raise ValueError("zone %s: until %r is not a POSIX instant" % (name, until))
        self.name = name
        self.instants = [c[0] for c in changes]
        self.offsets = [c[1] for c in changes]
        self.until = until

    def _index(self, instant: int) -> int:
        """Index of the change in force at `instant` (0 before the first)."""
        lo, hi = 0, len(self.instants)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.instants[mid] <= instant:
                lo = mid + 1
            else:
                hi = mid
        return lo - 1 if lo > 0 else 0

    def offset_at(self, instant: int) -> int:
        """The UTC offset (seconds) in force at a POSIX instant."""
        return self.offsets[self._index(instant)]

    def local(self, instant: int) -> int:
        """Local seconds of a POSIX instant."""
        return instant + self.offset_at(instant)

    def day(self, instant: int) -> int:
        """The local date of a POSIX instant, as days since 1970-01-01."""
        return self.local(instant) // 86400

    def utc(self, local_seconds: int) -> int:
        """The POSIX instant of a local wall-clock time.

        A time that happens twice (clocks going back) is the first of the two; a time that does not
        happen (clocks going forward) is read with the offset before the change, so 02:30 on the
        morning Berlin springs forward is 03:30 CEST. Both as Python's zoneinfo with fold=0.
        """
        n = len(self.offsets)
        for i in range(max(0, self._index(local_seconds - MAX_OFFSET)), n):
            instant = local_seconds - self.offsets[i]
            if i > 0 and instant < self.instants[i]:
                return local_seconds - self.offsets[i - 1]  # in the gap before change i
            if i + 1 == n or instant < self.instants[i + 1]:
                return instant
        return local_seconds - self.offsets[n - 1]  # not reached: the last interval never ends

    def expired(self, instant: int) -> bool:
        """True past the end of the compiled table (the last offset is then only a guess)."""
        return instant >= self.until

    def to_dict(self) -> dict:
        return {"name": self.name, "until": self.until,
                "changes": [[t, o] for t, o in zip(self.instants, self.offsets)]}


def zone_from_dict(raw: dict) -> Zone:
    """A Zone from its JSON form; ValueError naming the zone and what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("a zone must be a map with name, until and changes, not %r" % (raw,))
    name = raw.get("name", "?")
    for key in ("name", "until", "changes"):
        if key not in raw:
            raise ValueError("zone %s: missing key %r" % (name, key))
    if not isinstance(raw["changes"], list):
        raise ValueError("zone %s: changes must be a list of [instant, offset seconds]" % name)
    return Zone(str(name), [tuple(c) if isinstance(c, (list, tuple)) else (c,) for c in raw["changes"]],
                raw["until"])


def fixed_zone(offset_seconds: int, name: str = "") -> Zone:
    """A zone that keeps one offset for ever (tests, and gateways configured with a bare offset)."""
    if not name:
        sign = "-" if offset_seconds < 0 else "+"
        minutes = abs(offset_seconds) // 60
        name = "UTC%s%02d:%02d" % (sign, minutes // 60, minutes % 60)
    return Zone(name, [(0, offset_seconds)], 2**62)
