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
        self.asked: list[float] = []  # the timeout of every read (0: it takes what is there, no `poll`)
        self.waits: list[float] = []  # how long each wait for the silence before a request slept
        self.gaps: list[float] = []  # silence on the line before each request after the first

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
        if self.sent_end and self.reply:
            self.gaps.append(self.now - self._arrival(len(self.reply) - 1))
        self.sent_end = self.now + len(data) * CHAR
        self.taken = 0

    def _quiet(self, until: float) -> int:
        self.waits.append(max(0.0, until - self.now))
        self.now = max(self.now, until)
        return 0

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        self.asked.append(timeout)
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
    assert line.asked[-1:] == [0]  # and it does not wait: the serial link's read is then one `os.read`
    complete = line._arrival(len(REPLY) - 1)
    # read once the silence after it has passed too: at most t3.5 and two characters after it was whole
    assert T35 <= line.reads[0][0] - complete <= T35 + 2 * CHAR + 1e-9


def test_a_device_that_answers_at_once_is_read_once_the_silence_after_a_prompt_reply_has_passed() -> None:
    line = Line(REPLY, 0.0).learnt()
    assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert len(line.reads) == 1
    assert line.reads[0][0] - line._arrival(len(REPLY) - 1) <= 2 * T35 + 2 * CHAR + 1e-9


@pytest.mark.parametrize("start", [0.0, T35, T35 + CHAR])
def test_one_wake_up_serves_a_prompt_reply_and_the_silence_before_the_next_request(start: float) -> None:
    """Back to back on a line of prompt devices: each reply is read in one go once the t3.5 after it
    has passed, so the next request goes out at once (its wait for the silence sleeps 0 s) and never
    less than t3.5 after the reply's last byte, nor later than when the read and a wait would have."""
    line = Line(REPLY, start).learnt()
    line.waits, line.gaps = [], []
    for _ in range(10):
        assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert len(line.reads) == 10 and line.waits[1:] == [0.0] * 9
    assert len(line.gaps) == 10  # the first is after the reply learnt() read
    for gap in line.gaps[1:]:
        assert T35 - 1e-9 <= gap <= 2 * T35 + 2 * CHAR + 1e-9


def test_a_slow_device_is_read_when_its_reply_is_whole() -> None:
    line = Line(REPLY, 0.05).learnt()  # 50 ms before it answers: the first read finds nothing, then waits
    assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert sum(n for _, n in line.reads) == 25
    assert line.reads[-1][0] - line._arrival(len(REPLY) - 1) <= 2 * CHAR + 1e-9


def test_after_a_slow_device_the_silence_is_waited_for_from_the_reply_actually_read() -> None:
    """A device that answered late when the link learnt the line: its replies are read when whole and
    the silence before the next request counts from that read, in a wait of its own."""
    line = Line(REPLY, 0.05).learnt()
    line.waits, line.gaps = [], []
    for _ in range(3):
        assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert all(w > 0 for w in line.waits[1:]), line.waits
    assert all(gap >= T35 - 1e-9 for gap in line.gaps), line.gaps


def test_a_prompt_line_whose_device_turns_slow_still_leaves_the_silence() -> None:
    """Learnt prompt, then the device answers 50 ms late: the read after the silence finds the reply
    unfinished, reads the rest as it comes, and the next request waits t3.5 from its end."""
    line = Line(REPLY, T35).learnt()
    line.start = 0.05
    line.waits, line.gaps = [], []
    for _ in range(3):
        assert line.transact(REQUEST, mb.RtuFrameReader()) == mb.rtu_parse(REPLY)
    assert all(gap >= T35 - 1e-9 for gap in line.gaps[1:]), line.gaps


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


def _meter_replies() -> list[tuple[str, object, bytes]]:
    from protocols import cjt188, dlt645, dlt698
    from protocols.tests.test_cjt188 import FIELDS

    return [
        ("DL/T 645", dlt645.Dlt645FrameReader,
         dlt645.read_reply("000000000161", "02010100", b"\x05\x23", preamble=4)),
        ("CJ/T 188", cjt188.Cjt188FrameReader,
         cjt188.encode_901f_reply(0x10, "00000000123456", FIELDS, preamble=2)),
        ("DL/T 698.45", dlt698.Dlt698FrameReader,
         dlt698.build_frame(dlt698.Frame("000000000161", b"\x05" * 40), preamble=4)),
    ]


@pytest.mark.parametrize("name,reader_class,reply", _meter_replies(), ids=[m[0] for m in _meter_replies()])
def test_a_meter_reply_is_read_in_a_few_goes_not_byte_by_byte(name: str, reader_class: object,
                                                              reply: bytes) -> None:
    """The meter readers say how much of a frame is still to come (`missing`: the shortest frame after
    a preamble or a 0x68, the rest once the header is in), so on a line-timed bus the link sleeps for it
    and reads it in one go: a handful of reads per reply, where it woke for every byte before."""
    line = Line(reply, T35)
    frame = line.transact(b"\x68" * 16, reader_class())  # type: ignore[operator]
    assert frame is not None
    assert sum(n for _, n in line.reads) == len(reply)
    assert len(line.reads) <= 4, (name, line.reads)  # 20-60 bytes: one read per byte before
    assert line.reads[-1][0] - line._arrival(len(reply) - 1) <= 1e-9  # and no later than it was whole


def test_a_meter_reply_behind_a_noise_68_is_still_read() -> None:
    """A 0x68 in noise right before a CJ/T 188 reply reads as a frame whose length (the reply's control
    byte, 0x81) is 142 bytes: the link sleeps towards that (bounded by the deadline) and the reader then
    finds the whole reply behind it (`MeterFrameReader._whole_after`); it used to wait for bytes that never
    came and drop the reply with the noise at the deadline."""
    from protocols import cjt188

    reply = _meter_replies()[1][2].lstrip(b"\xfe")
    line = Line(b"\x68" + reply, T35)
    reader = cjt188.Cjt188FrameReader()
    frame = line.transact(b"\x68" * 16, reader)
    assert frame == cjt188.parse_frame(reply)
    assert line.now <= line.sent_end + line.timeout  # within the reply's deadline
    assert line.counters["line_errors"] == 1  # the noise, counted
