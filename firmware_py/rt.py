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


def epoch_of(clock) -> int:
    """POSIX seconds at the start of `clock`'s epoch: MicroPython counts `time.time()` from 2000-01-01 on
    an ESP32 (and STM32: MICROPY_EPOCH_IS_2000), from 1970 on an RP2040, unix and CPython."""
    return 946684800 if clock.gmtime(0)[0] == 2000 else 0


EPOCH = epoch_of(time)


def now() -> int:
    """POSIX seconds (integer), whatever the port's epoch; boards set their RTC by NTP or from the
    host at boot."""
    return int(time.time()) + EPOCH


def localtime(t: int) -> tuple:
    """(year, month, day, hour, minute, second) of POSIX time `t` as the board's `time.localtime` gives
    it (MicroPython has no time zones: UTC)."""
    return tuple(time.localtime(t - EPOCH)[:6])
