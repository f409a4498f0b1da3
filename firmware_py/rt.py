"""Clock and sleep shims so firmware modules also import on CPython (unit tests)."""

import asyncio
import time

try:
    ticks_ms = time.ticks_ms  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
    ticks_add = time.ticks_add  # type: ignore[attr-defined]
except AttributeError:  # CPython

    def ticks_ms() -> int:
        return int(time.monotonic() * 1000)

    def ticks_diff(a: int, b: int) -> int:
        return a - b

    def ticks_add(a: int, b: int) -> int:
        return a + b


try:
    sleep_ms = asyncio.sleep_ms  # type: ignore[attr-defined]
except AttributeError:  # CPython

    def sleep_ms(ms: int):  # type: ignore[misc]
        return asyncio.sleep(ms / 1000)


def now() -> int:
    """POSIX seconds (integer); boards set their RTC by NTP or from the host at boot."""
    t = time.time()
    return int(t)


def localtime(t: int) -> tuple:
    """(year, month, day, hour, minute, second) of POSIX time `t` in the board's local time."""
    return tuple(time.localtime(t)[:6])
