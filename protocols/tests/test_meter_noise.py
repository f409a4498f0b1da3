"""A 0x68 in line noise, or a torn frame, must not hold the good frame behind it (DL/T 645, CJ/T 188,
DL/T 698.45 readers, protocols/framing.py `MeterFrameReader._whole_after`).

A 0x68 looks like the start of a frame; the bytes after it give a length. When that length claims more
than ever comes (a CJ/T 188 reply's control byte, 0x81, read as the length of a frame begun one byte
earlier claims 142 bytes), the reader used to wait for the rest until the link's deadline, and its reset
then dropped the good frame with the noise: one noise byte cost the whole reply. Every published reply is
fed behind such noise, byte by byte and in one chunk: its frame must come out at its last byte (and the
readers' random-chunk tests in test_cjt188.py and test_dlt645.py put 0x68 in their noise too).
"""

from __future__ import annotations

import pytest

from protocols.errors import ProtocolError
from protocols.tests.test_meter_missing import _replies

#: noise in front of a reply: a lone 0x68 right before it, two, one among other bytes, and a torn frame
#: (the first bytes of the same reply, as when a device is cut off and answers again)
NOISE = {
    "68": b"\x68",
    "68 68": b"\x68\x68",
    "00 68 12": b"\x00\x68\x12",
    "68 81 16": b"\x68\x81\x16",
}


def _cases() -> list[tuple[str, object, bytes, bytes]]:
    out = []
    for case, reader_class, reply, _preamble, _header in _replies():
        for name, noise in NOISE.items():
            out.append(("%s behind %s" % (case, name), reader_class, noise, reply))
        torn = reply[:len(reply) // 2]
        out.append(("%s behind a torn copy" % case, reader_class, torn, reply))
    return out


@pytest.mark.parametrize("case,reader_class,noise,reply", _cases(), ids=[x[0] for x in _cases()])
def test_the_frame_behind_noise_comes_at_its_last_byte(case: str, reader_class: object, noise: bytes,
                                                       reply: bytes) -> None:
    want = reader_class()._parse(reply.lstrip(b"\xfe"))  # type: ignore[operator]
    reader = reader_class()  # type: ignore[operator]
    stream = noise + reply
    for i, byte in enumerate(stream):
        frames = reader.feed(bytes([byte]))
        if i < len(stream) - 1:
            assert frames == [], (case, i)
        else:
            assert frames == [want], case
    errors = reader.take_errors()
    assert errors and all(isinstance(e, ProtocolError) for e in errors)  # the noise was counted
    assert reader.missing() == 0


@pytest.mark.parametrize("case,reader_class,noise,reply", _cases(), ids=[x[0] for x in _cases()])
def test_the_frame_behind_noise_in_one_chunk(case: str, reader_class: object, noise: bytes,
                                             reply: bytes) -> None:
    want = reader_class()._parse(reply.lstrip(b"\xfe"))  # type: ignore[operator]
    assert reader_class().feed(noise + reply) == [want], case  # type: ignore[operator]
