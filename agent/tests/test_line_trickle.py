"""A reply that trickles in on a slow line (SerialLink on a real pty, the device played on the master side).

At 9600 baud a 25-byte Modbus reply takes 26 ms on the wire and a port hands it on a byte or two at a
time. Once the reply's header says how long the frame is (RtuFrameReader.missing), the link sleeps for
the characters still to come and reads them in one go instead of waking for every byte. These tests
check what a user sees: the reply is read whole and correct, a torn reply still ends at the response
timeout (never earlier), and the link reads far fewer chunks than the device wrote bytes.
Only bounds that a busy machine cannot break are asserted (a late writer only makes chunks larger).
"""

from __future__ import annotations

import os
import threading
import time
import tty

import pytest

from agent.config_model import BusConfig
from agent.link.serial_link import SerialLink
from protocols import modbus as mb
from protocols.errors import FrameError

REQUEST = mb.rtu_frame(1, mb.read_request(3, 0, 10))
REPLY = mb.rtu_frame(1, bytes([3, 20]) + bytes(range(20)))  # 25 bytes


@pytest.fixture
def line():  # type: ignore[no-untyped-def]
    master, slave = os.openpty()
    tty.setraw(master)
    link = SerialLink.from_bus(BusConfig(name="t", port=os.ttyname(slave), baud=9600, timeout_ms=1000))
    link.open()
    yield master, link
    link.close()
    os.close(slave)
    os.close(master)


def trickle(master: int, data: bytes, gap: float) -> threading.Thread:
    """Write `data` one byte at a time, `gap` s apart (a device on a 9600-baud line), from a thread."""

    def run() -> None:
        for i in range(len(data)):
            os.write(master, data[i : i + 1])
            time.sleep(gap)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def counting_reads(link: SerialLink) -> list[int]:
    """Wrap the link's raw read: the sizes of the chunks it returned."""
    sizes: list[int] = []
    raw = link._read

    def read(max_bytes: int, timeout: float) -> bytes:
        data = raw(max_bytes, timeout)
        if data:
            sizes.append(len(data))
        return data

    link._read = read  # type: ignore[method-assign]
    return sizes


def test_a_trickling_reply_is_read_whole_in_a_few_chunks(line) -> None:  # type: ignore[no-untyped-def]
    master, link = line
    sizes = counting_reads(link)
    link.send(REQUEST)
    assert os.read(master, 64) == REQUEST
    writer = trickle(master, REPLY, 0.00104)  # one character time at 9600 8N1
    frame = link.read_frame(mb.RtuFrameReader(), accept=lambda f: f[0] == 1)
    writer.join(5)
    assert frame == mb.rtu_parse(REPLY)
    assert sum(sizes) == len(REPLY)
    # the header (3 bytes) says 22 more follow: one sleep for them, then the rest in one or two reads
    assert len(sizes) <= 8, sizes


def test_a_torn_reply_still_ends_at_the_response_timeout(line) -> None:  # type: ignore[no-untyped-def]
    master, link = line
    link.send(REQUEST)
    assert os.read(master, 64) == REQUEST
    began = time.monotonic()
    writer = trickle(master, REPLY[:6], 0.00104)  # the device stops after 6 of 25 bytes
    with pytest.raises(FrameError) as caught:
        link.read_frame(mb.RtuFrameReader(), accept=lambda f: f[0] == 1)
    writer.join(5)
    assert "incomplete response dropped after silence (6 bytes)" in str(caught.value)
    assert time.monotonic() - began >= 1.0 - 0.01  # the response timeout, counted from the request's end


def test_the_next_frame_after_a_complete_one_is_not_waited_for(line) -> None:  # type: ignore[no-untyped-def]
    """A reply that is complete ends the read at once: the wait is only for bytes a known frame lacks."""
    master, link = line
    link.send(REQUEST)
    assert os.read(master, 64) == REQUEST
    os.write(master, REPLY)
    began = time.monotonic()
    assert link.read_frame(mb.RtuFrameReader(), accept=lambda f: f[0] == 1) == mb.rtu_parse(REPLY)
    assert time.monotonic() - began < 1.0  # well before the response timeout
