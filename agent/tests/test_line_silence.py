"""The silence a request waits for on a real pty (SerialLink's timed wait on the device file).

The test plays the device on the master side of a pty it owns: it reads what the agent sends and writes
a late reply into the silence. Only lower bounds of time are asserted (a busy machine only ever adds
time): a request never leaves before the silence, counted from the last byte heard.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from agent.config_model import BusConfig
from agent.link.serial_link import SerialLink

PAUSE = 0.25  # s: the bus's pause_ms, so that the silence is long enough to measure on a busy machine


@pytest.fixture
def line():  # type: ignore[no-untyped-def]
    master, slave = os.openpty()
    tty.setraw(master)
    link = SerialLink.from_bus(BusConfig(name="t", port=os.ttyname(slave), baud=9600, timeout_ms=2000,
                                         pause_ms=int(PAUSE * 1000)))
    link.open()
    yield master, link
    link.close()
    os.close(slave)
    os.close(master)


def take(master: int, n: int, deadline: float = 5.0) -> tuple[bytes, float]:
    """`n` bytes from the master side and the time the last of them arrived."""
    data = b""
    end = time.monotonic() + deadline
    while len(data) < n:
        left = end - time.monotonic()
        assert left > 0, "only %r arrived" % data
        if select.select([master], [], [], left)[0]:
            data += os.read(master, n - len(data))
    return data, time.monotonic()


def test_a_request_waits_for_the_silence_after_the_last_byte_heard(line) -> None:  # type: ignore[no-untyped-def]
    master, link = line
    link.send(b"\x01\x03\x00\x00\x00\x01\x84\x0a")  # the first request: the line was idle
    assert take(master, 8)[0] == b"\x01\x03\x00\x00\x00\x01\x84\x0a"
    sent_at = time.monotonic()
    late = b"\x01\x03\x02\x00\x07\xf9\x86"  # a reply that comes after the agent gave up on it
    stray_at: list[float] = []

    def device() -> None:
        time.sleep(PAUSE / 2)  # inside the silence that the next request waits for
        stray_at.append(time.monotonic())
        os.write(master, late)

    player = threading.Thread(target=device)
    player.start()
    link.send(b"\x01\x03\x00\x01\x00\x01\xd5\xca")
    player.join()
    request, arrived = take(master, 8)
    assert request == b"\x01\x03\x00\x01\x00\x01\xd5\xca"
    assert arrived - sent_at >= PAUSE  # the silence after the first request ...
    assert arrived - stray_at[0] >= PAUSE  # ... started again after the late reply
    assert link.counters["discarded_bytes"] == len(late)  # dropped and counted, never read as a reply


def test_a_line_that_never_falls_silent_does_not_stop_the_bus(line) -> None:  # type: ignore[no-untyped-def]
    master, link = line
    link.send(b"\x01\x03\x00\x00\x00\x01\x84\x0a")
    take(master, 8)
    stop = threading.Event()

    def chatter() -> None:  # another master, or noise: a byte every 50 ms, never the silence
        while not stop.wait(0.05):
            os.write(master, b"\x00")

    player = threading.Thread(target=chatter)
    player.start()
    try:
        started = time.monotonic()
        link.send(b"\x01\x03\x00\x01\x00\x01\xd5\xca")
        waited = time.monotonic() - started
    finally:
        stop.set()
        player.join()
    # bounded by the response timeout (2 s) after the silence was due, not forever
    assert PAUSE <= waited
    assert waited < PAUSE + link.timeout + 5.0  # generous for a busy machine; unbounded would hang
    assert link.counters["discarded_bytes"] > 0


def test_bytes_heard_during_a_hold_do_not_end_it_early(line) -> None:  # type: ignore[no-untyped-def]
    master, link = line
    link.pause = 0.0
    link.send(b"\x00\x06\x00\x01\x00\x01\x18\x1b")  # a broadcast: nobody answers
    take(master, 8)
    link.hold(2 * PAUSE)  # the devices act on it; the line stays idle
    held_at = time.monotonic()

    def device() -> None:
        time.sleep(PAUSE / 2)
        os.write(master, b"\xff")  # noise early in the hold

    player = threading.Thread(target=device)
    player.start()
    link.send(b"\x01\x03\x00\x01\x00\x01\xd5\xca")
    player.join()
    request, arrived = take(master, 8)
    assert request == b"\x01\x03\x00\x01\x00\x01\xd5\xca"
    assert arrived - held_at >= 2 * PAUSE  # the noise restarted only t3.5, the hold still counted
    assert link.counters["discarded_bytes"] == 1
