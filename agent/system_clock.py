"""Whether the gateway's system clock is synchronized, as the Linux kernel says.

A Raspberry Pi has no battery clock: it boots with the time it was shut down (fake-hwclock) or the
image's, and readings carry that time until an NTP daemon (systemd-timesyncd, chrony, ntpd) sets it.
Those daemons clear the kernel's STA_UNSYNC flag once they have the clock in hand, and `adjtimex(2)`
in read-only mode (modes 0) returns TIME_ERROR while it is set: the same source `timedatectl`'s
"System clock synchronized" reads. Health carries it as `clock.synced` and `fieldlink status` shows it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

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


def health() -> dict:
    """The agent's health `clock` map."""
    return {"synced": kernel_synced()}


__all__ = ["TIME_ERROR", "health", "kernel_synced"]
