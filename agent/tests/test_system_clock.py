"""agent/system_clock.py: the kernel's NTP state in health (`clock.synced`) and on `fieldlink status`."""

from __future__ import annotations

import ctypes
import sys
import time

import pytest

from agent import system_clock
from agent.commands.status import from_health, render, verdict
from agent.tests.test_status import state


@pytest.mark.parametrize("answer, synced", [
    (0, True),  # TIME_OK
    (1, True),  # TIME_INS: a leap second is coming; synchronized
    (4, True),  # TIME_WAIT
    (system_clock.TIME_ERROR, False),  # STA_UNSYNC: no NTP daemon has set it
    (-1, None),  # the call failed
])
def test_adjtimex_answers_map_to_synced(monkeypatch, answer, synced) -> None:
    seen: list = []

    def fake(buf):
        seen.append(bytes(buf.raw))
        return answer

    monkeypatch.setattr(system_clock, "_libc", [fake])
    assert system_clock.kernel_synced("linux") is synced
    assert seen == [bytes(512)]  # modes 0: the call only reads, it never sets the clock


def test_where_the_kernel_cannot_say_it_is_unknown(monkeypatch) -> None:
    assert system_clock.kernel_synced("darwin") is None and system_clock.kernel_synced("win32") is None

    def broken(buf):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(system_clock, "_libc", [broken])
    assert system_clock.kernel_synced("linux") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_real_call_agrees_with_the_kernels_status_word() -> None:
    """On this machine: the answer is a verdict, and it is the STA_UNSYNC bit of the same struct timex
    (at byte 40 on 64-bit Linux: modes, offset, freq, maxerror, esterror, then status)."""
    synced = system_clock.kernel_synced()
    assert synced in (True, False)
    if ctypes.sizeof(ctypes.c_long) == 8:
        buf = ctypes.create_string_buffer(512)
        ctypes.CDLL(None).adjtimex(buf)
        status = int.from_bytes(buf.raw[40:44], sys.byteorder)
        unsynced = status & (0x0040 | 0x1000)  # STA_UNSYNC, STA_CLOCKERR
        assert synced == (not unsynced), status


def test_status_shows_the_clocks_sync_without_calling_it_a_problem() -> None:
    """A site may run without NTP on purpose (an RTC, an isolated network): shown on the screen with
    what to do, the exit code stays what the rest says."""
    now = time.time()
    for synced, line in ((True, "  clock   synchronized (NTP)"),
                         (False, "  clock   NOT synchronized: the kernel does not count it set by NTP")):
        s = state(now)
        s["clock_synced"] = synced
        lines = render(s, now).splitlines()
        assert any(x.startswith(line) for x in lines), lines
        assert lines.index(next(x for x in lines if x.startswith("  clock"))) == 2  # after the broker
        assert verdict(s, now) == (0, [])
    s = state(now)
    s["clock_synced"] = None  # not Linux, or a board
    assert not [x for x in render(s, now).splitlines() if x.startswith("  clock")]


def test_an_agents_health_read_from_a_broker_carries_it() -> None:
    now = time.time()
    health = {"gateway": "gw1", "site": "lab", "time": int(now), "connected": True,
              "clock": {"synced": False}}
    s = from_health({"online": True}, health, "b:1883")
    assert s["clock_synced"] is False and s["clock_set"] is None
    assert "  clock   NOT synchronized" in render(s, now)
