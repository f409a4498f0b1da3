"""The first read of a reply whose size is known (RtuFrameReader.expect_reply), on a virtual line.

A Modbus device answers a read of n registers with 5 + 2n bytes, starting once it has seen the request
end, and the bytes come at line rate. Once the link has seen a reply come in pieces (the line is paced),
it sleeps until the whole reply can be there (t3.5 after the request, the reply's characters, two
characters for the port to hand the last byte on) and reads it in one go, instead of waking for its
first byte and again for the rest; every `relearn_every` replies it reads one as it comes again. On a
line whose replies come whole (a simulator without line timing) it reads at the first byte, as before.
The line here runs on a virtual clock, so what is asserted (how many reads, at what time) does not
depend on the machine's load.
"""

from __future__ import annotations

import pytest

from agent.link.base import Link
from protocols import modbus as mb
from protocols.errors import ExceptionResponse

CHAR = 11 / 9600  # one character at 9600 baud, 8N1
T35 = 3.5 * CHAR
REQUEST = mb.rtu_frame(7, mb.read_request(3, 0, 10))
REPLY = mb.rtu_frame(7, bytes([3, 20]) + bytes(range(20)))  # 25 bytes


class Line(Link):
    """A device on a virtual clock: its reply starts `start` s after the request left the line, one
    character time per byte; `reads` holds (virtual time, bytes) of every read that returned some."""

    def __init__(self, reply: bytes, start: float, whole: bool = False) -> None:
        super().__init__("t", "virtual", timeout=0.5, silence=T35, char_time=CHAR)
        self.reply = reply
        self.start = start
        self.whole = whole  # the reply arrives all at once, `start` s after the request (no line timing)
        self.now = 100.0
        self.clock = lambda: self.now  # type: ignore[method-assign]
        self.sleep = self._advance  # type: ignore[method-assign]
        self.is_open = True
        self.sent_end = 0.0
        self.taken = 0
        self.reads: list[tuple[float, int]] = []

    def _advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def _arrival(self, i: int) -> float:
        if self.whole:
            return self.sent_end + self.start
        return self.sent_end + self.start + (i + 1) * CHAR

    def learnt(self) -> Line:
        """After one transaction read as the bytes came (the link learns the line); reads forgotten."""
        reply = self.reply
        self.reply = REPLY
        assert self.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
        self.reply = reply
        self.reads = []
        return self

    def _write(self, data: bytes) -> None:
        self.sent_end = self.now + len(data) * CHAR
        self.taken = 0

    def _quiet(self, until: float) -> int:
        self.now = max(self.now, until)
        return 0

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        if self.taken >= len(self.reply) or self._arrival(self.taken) > self.now + timeout:
            self.now += timeout
            return b""
        self.now = max(self.now, self._arrival(self.taken))
        end = self.taken
        while end < len(self.reply) and self._arrival(end) <= self.now and end - self.taken < max_bytes:
            end += 1
        chunk = self.reply[self.taken:end]
        self.taken = end
        self.reads.append((self.now, len(chunk)))
        return chunk


def test_reply_sizes_of_reads_and_writes() -> None:
    reader = mb.RtuFrameReader()
    for function, count, size in ((1, 1, 6), (1, 9, 7), (2, 16, 7), (3, 10, 25), (4, 125, 255), (3, 1, 7)):
        reader.expect_reply(mb.rtu_frame(1, mb.read_request(function, 0, count)))
        assert reader.reply_size == size, (function, count)
    reader.expect_reply(mb.rtu_frame(1, bytes([6, 0, 1, 0, 2])))
    assert reader.reply_size == 8
    reader.expect_reply(mb.rtu_frame(1, bytes([16, 0, 0, 0, 2, 4, 0, 1, 0, 2])))
    assert reader.reply_size == 8
    reader.expect_reply(b"\x01\x2b\x0e\x01\x00")  # a function it cannot size: unknown
    assert reader.reply_size == 0
    assert mb.RtuFrameReader(expect="request").reply_size == 0


@pytest.mark.parametrize("start", [T35, T35 + CHAR])
def test_a_device_that_answers_after_the_silence_is_read_in_one_go(start: float) -> None:
    line = Line(REPLY, start).learnt()
    frame = line.transact(REQUEST, mb.RtuFrameReader(), accept=lambda f: f[0] == 7)
    assert frame == mb.rtu_parse(REPLY)
    assert [n for _, n in line.reads] == [25]  # one read; before, one for the first byte and more after
    complete = line._arrival(len(REPLY) - 1)
    assert line.reads[0][0] - complete <= 2 * CHAR + 1e-9  # read at most two characters after it was whole


def test_a_device_that_answers_at_once_is_read_at_most_t35_and_two_characters_late() -> None:
    line = Line(REPLY, 0.0).learnt()
    assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert len(line.reads) == 1
    assert line.reads[0][0] - line._arrival(len(REPLY) - 1) <= T35 + 2 * CHAR + 1e-9


def test_a_slow_device_is_read_when_its_reply_is_whole() -> None:
    line = Line(REPLY, 0.05).learnt()  # 50 ms before it answers: the first read finds nothing, then waits
    assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert sum(n for _, n in line.reads) == 25
    assert line.reads[-1][0] - line._arrival(len(REPLY) - 1) <= 2 * CHAR + 1e-9


def test_an_exception_reply_is_still_read_and_raised_by_the_codec() -> None:
    exception = mb.rtu_frame(7, bytes([0x83, 2]))  # 5 bytes where 25 were expected
    line = Line(exception, T35).learnt()
    unit, pdu = line.transact(REQUEST, mb.RtuFrameReader())
    with pytest.raises(ExceptionResponse):
        mb.check_read_response(3, 10, pdu)
    assert unit == 7 and len(line.reads) == 1


def test_without_a_size_the_link_reads_as_the_bytes_come() -> None:
    """A reply of unknown size (a reader told nothing) is read from its first byte, as before."""
    line = Line(REPLY, T35)
    line.send(REQUEST)
    assert line.read_frame(mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert line.reads[0][1] < 25 and len(line.reads) >= 2


def test_the_link_learns_a_paced_line_and_reads_one_reply_as_it_comes_every_so_often() -> None:
    line = Line(REPLY, T35)
    line.transact(REQUEST, mb.RtuFrameReader())
    assert len(line.reads) >= 2  # the first reply is read as it comes: in pieces
    pieces = []
    for _ in range(2 * line.relearn_every + 2):
        line.reads = []
        assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
        pieces.append(len(line.reads))
    # timed reads in one go, but for one reply read as it comes after every `relearn_every` of them
    assert pieces.count(1) == 2 * line.relearn_every and pieces.count(1) < len(pieces), pieces
    assert pieces[line.relearn_every] > 1 and pieces[2 * line.relearn_every + 1] > 1, pieces


def test_a_line_whose_replies_come_whole_is_read_at_the_first_byte() -> None:
    """No line timing (a simulator with --instant, a serial server sending whole frames): the reply is
    read the moment it is there, never slept for."""
    line = Line(REPLY, 0.002, whole=True)
    for _ in range(5):
        line.reads = []
        assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
        assert len(line.reads) == 1 and line.reads[0][0] == pytest.approx(line._arrival(0))


def test_a_line_that_stops_pacing_is_noticed_at_the_next_relearn() -> None:
    line = Line(REPLY, T35).learnt()
    line.whole = True
    late = []
    for _ in range(line.relearn_every + 5):
        line.reads = []
        line.transact(REQUEST, mb.RtuFrameReader())
        late.append(line.reads[0][0] - line._arrival(0))
    assert all(d > 0.02 for d in late[:line.relearn_every])  # timed: read when a paced reply would be whole
    assert all(d == pytest.approx(0.0, abs=1e-9) for d in late[line.relearn_every:])  # then at once again
