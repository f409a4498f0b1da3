"""`missing()` of the 0x68-framed meter readers (DL/T 645, CJ/T 188, DL/T 698.45): how many bytes a frame
that has begun still needs, at the least. A link on a slow line (2400 baud is usual for meters) sleeps
that many character times and reads the rest in one go instead of waking for every byte the port hands on
(agent/tests/test_line_timed_read.py counts the reads), so it must never say more than will come: fed
byte by byte, every published reply is checked at every byte against what is really left.
"""

from __future__ import annotations

import binascii

import pytest

from protocols import cjt188 as c
from protocols import dlt645 as d
from protocols import dlt698 as e
from protocols.tests.test_cjt188 import FIELDS
from protocols.tests.test_dlt698 import H3_RESPONSE, LIST_ENERGY


def h(text: str) -> bytes:
    return binascii.unhexlify(text.replace(" ", ""))


def _replies() -> list[tuple[str, object, bytes, int, int]]:
    """(case, reader class, reply bytes, preamble length, header length from the first 0x68)."""
    out: list[tuple[str, object, bytes, int, int]] = []
    for p in range(5):
        out.append(("645 energy, %d FE" % p, d.Dlt645FrameReader,
                    d.read_reply("000000000161", "00010000", b"\x12\x34\x56\x78", preamble=p), p, 10))
        out.append(("645 voltage, %d FE" % p, d.Dlt645FrameReader,
                    d.read_reply("000000000161", "02010100", b"\x05\x23", preamble=p), p, 10))
    for p in range(4):
        out.append(("188 901F, %d FE" % p, c.Cjt188FrameReader,
                    c.encode_901f_reply(0x10, "00000000123456", FIELDS, preamble=p), p, 11))
    for name, text in (("698 H3", H3_RESPONSE), ("698 list", LIST_ENERGY)):
        frame = h(text)
        out.append((name, e.Dlt698FrameReader, frame, 0, 9 + (frame[4] & 0x0F)))
        out.append((name + ", 2 FE", e.Dlt698FrameReader, b"\xfe\xfe" + frame, 2, 9 + (frame[4] & 0x0F)))
    big = e.build_frame(e.Frame("000000000161", b"\x05" * 300), preamble=4)
    out.append(("698 300-byte APDU, 4 FE", e.Dlt698FrameReader, big, 4, 9 + (big[8] & 0x0F)))
    return out


@pytest.mark.parametrize("case,reader_class,reply,preamble,header", _replies(),
                         ids=[r[0] for r in _replies()])
def test_missing_never_says_more_than_will_come(case: str, reader_class: object, reply: bytes,
                                                preamble: int, header: int) -> None:
    reader = reader_class()  # type: ignore[operator]
    assert reader.missing() == 0  # nothing begun
    frames: list = []
    for i, byte in enumerate(reply):
        frames += reader.feed(bytes([byte]))
        left = len(reply) - i - 1
        said = reader.missing()
        assert said <= left, (case, i, said, left)
        if i + 1 >= preamble + header:
            assert said == left, (case, i, said, left)  # the header is in: exactly the rest
        else:
            assert said > 0, (case, i)  # a preamble or a 0x68 came: a frame follows
    assert len(frames) == 1 and reader.missing() == 0 and not reader.take_errors()


def test_after_a_frame_and_after_reset_nothing_is_missing() -> None:
    reader = d.Dlt645FrameReader()
    reply = d.read_reply("000000000161", "02010100", b"\x05\x23", preamble=4)
    reader.feed(reply[:3])
    assert reader.missing() == 12  # only FE so far: at least the shortest frame follows
    reader.reset()
    assert reader.missing() == 0
    assert reader.feed(reply) and reader.missing() == 0


def test_noise_that_looks_like_a_header_is_bounded() -> None:
    """A stray 0x68 whose length word claims 4000 bytes: DL/T 698.45 trusts the length only once the
    header's HCS holds, so the reader never asks for more than a header and three bytes meanwhile."""
    stray = b"\x68\xa0\x0f\x43\x05" + b"\x11" * 9
    reader = e.Dlt698FrameReader()
    for byte in stray + b"\xfe\xfe" + h(H3_RESPONSE):
        reader.feed(bytes([byte]))
        assert reader.missing() <= 9 + 15 + 3
