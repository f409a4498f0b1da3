"""Whether the board's clock is set, and the times of readings taken before it was.

A board has no battery clock. After power-up MicroPython starts it at a fixed date: 2000-01-01 on an
ESP32, but 2021-01-01 on an RP2040 or RP2350 (ports/rp2/main.c), which no fixed year can tell from a
set clock. So the floor is the compiled config's `clock_floor` (the day before the host compiled it;
protocols/commands.py `CLOCK_SET_AFTER` for an older config): a clock earlier than that was not set.

While the clock is not set, readings and alarms are stamped `UNSET_BASE` + seconds since the first
such stamp (`stamp`): year 2000 on every board, never a plausible date. When NTP then sets the clock
in the same boot, `jumped` learns how far it moved (`shift`), and the uplink moves those stamps by as
much (protocols/stamps.py `mend`) before it publishes them: POSIX time within the second or two NTP's
exchange takes. The ring marks what was recorded with an unset clock, and in which boot
(firmware_py/packs.py `UNTIMED`). Stamps of an earlier boot cannot be mended: they go out as they
are, before 2020, which a consumer can tell from a real time.
"""

from protocols.commands import CLOCK_SET_AFTER
from protocols.stamps import UNSET_BASE

_floor = [CLOCK_SET_AFTER]
_first = [-1]  # rt.now() at this boot's first unset stamp (-1: none yet)
_shift = [0]  # POSIX time - unset stamp, for this boot's unset stamps (0: not known)


def set_floor(floor) -> None:
    """The compiled config's `clock_floor` (None: the built-in floor)."""
    _floor[0] = max(CLOCK_SET_AFTER, int(floor or 0))


def floor() -> int:
    return _floor[0]


def is_set(now: int) -> bool:
    """True when `now` (the board's clock) can be a real time."""
    return now >= _floor[0]


def stamp(now: int) -> int:
    """The time to record for something that happened when the board's clock read `now`: `now`, or
    while the clock is not set, `UNSET_BASE` + seconds since the first unset stamp of this boot."""
    if now >= _floor[0]:
        return now
    if _first[0] < 0:
        _first[0] = now
    return UNSET_BASE + now - _first[0]


def jumped(before: int, after: int) -> None:
    """The clock was set: it read `before` and now reads `after`. From an unset clock to a set one,
    this boot's unset stamps can be turned into POSIX time from now on."""
    if before < _floor[0] <= after and not _shift[0]:
        first = before if _first[0] < 0 else _first[0]
        _shift[0] = after - before + first - UNSET_BASE


def shift() -> int:
    """What turns this boot's unset stamps into POSIX time (add it); 0 while that is not known."""
    return _shift[0]


def reset() -> None:
    """As after a reboot (tests)."""
    _floor[0] = CLOCK_SET_AFTER
    _first[0] = -1
    _shift[0] = 0
