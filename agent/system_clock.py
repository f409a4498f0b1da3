"""Whether the gateway's system clock is synchronized, as the Linux kernel says, and when it was stepped.

A Raspberry Pi has no battery clock: it boots with the time it was shut down (fake-hwclock) or the
image's, and readings carry that time until an NTP daemon (systemd-timesyncd, chrony, ntpd) sets it.
Those daemons clear the kernel's STA_UNSYNC flag once they have the clock in hand, and `adjtimex(2)`
in read-only mode (modes 0) returns TIME_ERROR while it is set: the same source `timedatectl`'s
"System clock synchronized" reads. Health carries it as `clock.synced` and `fieldlink status` shows it.

When the daemon sets the clock it steps it: the wall clock jumps against the monotonic one, which never
jumps. `StepWatch` notices such a jump (more than `STEP_S`; the slow slewing NTP does between looks is far
below that) and keeps the last one: when, by how much, and how many of this run's readings were made
before it was seen. Readings made before the step carry the old clock, off by the step, whether already
published or still waiting; the agent does not rewrite them. Health reports it (`clock.steps`,
`clock.step`) so the platform can move them, the log says it once, and `fieldlink status` shows it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: adjtimex's answer while the clock is not synchronized (STA_UNSYNC or STA_CLOCKERR set)
TIME_ERROR = 5
#: room for struct timex on every Linux ABI (208 bytes on 64-bit); zeroed, so modes = 0: only read
_TIMEX_BYTES = 512

_libc: list[Any] = []


def _adjtimex() -> Any:
    if not _libc:
        _libc.append(ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).adjtimex)
    return _libc[0]


def kernel_synced(platform: str = sys.platform) -> bool | None:
    """True when the kernel counts the clock synchronized, False when not, None where it cannot say
    (not Linux, no adjtimex, an error)."""
    if not platform.startswith("linux"):
        return None
    try:
        state = int(_adjtimex()(ctypes.create_string_buffer(_TIMEX_BYTES)))
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


#: seconds the wall clock must jump against the monotonic clock between two looks to count as a step
STEP_S = 1.0


class StepWatch:
    """Notices the system clock being stepped (see the module docstring). `look(made)` from a thread that
    wakes every few seconds, `made` = readings this run has made so far; `health()` for `clock`."""

    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 synced: Callable[[], bool | None] = kernel_synced, threshold: float = STEP_S) -> None:
        self.wall = wall
        self.mono = mono
        self.synced = synced
        self.threshold = threshold
        self._offset = wall() - mono()
        self.steps = 0
        #: the last step: `at` (the new clock's time when it was seen, within a look of the step), `by`
        #: (seconds, + = forward), `made` (readings this run had made when it was seen: those made before
        #: the step carry the old clock), `synced` (the kernel's verdict then)
        self.last: dict | None = None

    def look(self, made: int) -> dict | None:
        """The step since the last look, if the clock was stepped (also logged); else None."""
        wall = self.wall()
        offset = wall - self.mono()
        by, self._offset = offset - self._offset, offset  # slewing between looks is followed, not counted
        if abs(by) <= self.threshold:
            return None
        self.steps += 1
        synced = self.synced()
        self.last = {"at": round(wall, 3), "by": round(by, 3), "made": int(made), "synced": synced}
        log.warning("the system clock was stepped by %+.3f s%s: readings this run made before it (%d so far) "
                    "carry the old clock; they are not rewritten (health clock.step)", by,
                    " (the kernel now counts it synchronized by NTP)" if synced else "", made)
        return self.last

    def health(self) -> dict:
        """The agent's health `clock` map."""
        out: dict = {"synced": self.synced(), "steps": self.steps}
        if self.last is not None:
            out["step"] = dict(self.last)
        return out


__all__ = ["STEP_S", "TIME_ERROR", "StepWatch", "kernel_synced"]
