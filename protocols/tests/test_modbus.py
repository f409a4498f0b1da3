"""Modbus codec: protocol-facts §3.4 vectors, CRC, limits, exceptions, the RTU frame reader."""

import binascii
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import modbus as mb
from protocols.errors import MODBUS_EXCEPTIONS, CrcError, EncodingError, ExceptionResponse, FrameError


def h(text: str) -> bytes:
    return binascii.unhexlify(text.replace(" ", ""))


# protocol-facts §3.4: (adu, unit, meaning)
REQ_03_6B = h("11 03 00 6B 00 03 76 87")
RSP_03_6B = h("11 03 06 AE 41 56 52 43 40 49 AD")
REQ_03_10 = h("01 03 00 00 00 0A C5 CD")
RSP_03_10 = h("01 03 14 00 01 00 02 00 03 00 04 00 05 00 06 00 07 00 08 00 09 00 0A 8F 16")
RSP_EXC = h("01 83 02 C0 F1")
REQ_16 = h("01 10 00 01 00 02 04 00 0A 01 02 92 30")
RSP_16 = h("01 10 00 01 00 02 10 08")
REQ_06 = h("01 06 00 01 00 03 98 0B")
ALL_FRAMES = [REQ_03_6B, RSP_03_6B, REQ_03_10, RSP_03_10, RSP_EXC, REQ_16, RSP_16, REQ_06]


def test_crc_check_value():
    assert mb.crc16(b"123456789") == 0x4B37
    assert mb.crc16(b"") == 0xFFFF


@pytest.mark.parametrize("adu", ALL_FRAMES)
def test_crc_over_whole_frame_is_zero(adu):
    assert mb.crc16(adu) == 0
    unit, pdu = mb.rtu_parse(adu)
    assert mb.rtu_frame(unit, pdu) == adu


def test_build_worked_requests():
    assert mb.rtu_frame(17, mb.read_request(3, 0x6B, 3)) == REQ_03_6B
    assert mb.rtu_frame(1, mb.read_request(3, 0, 10)) == REQ_03_10
    assert mb.rtu_frame(1, mb.write_registers_request(1, [0x000A, 0x0102])) == REQ_16
    assert mb.rtu_frame(1, mb.write_register_request(1, 3)) == REQ_06


def test_build_worked_responses():
    assert mb.rtu_frame(17, mb.read_response(3, [0xAE41, 0x5652, 0x4340])) == RSP_03_6B
    assert mb.rtu_frame(1, mb.read_response(3, list(range(1, 11)))) == RSP_03_10
    assert mb.rtu_frame(1, mb.exception_response(3, 2)) == RSP_EXC
    assert mb.rtu_frame(1, mb.write_response(mb.parse_request(mb.rtu_parse(REQ_16)[1]))) == RSP_16
    assert mb.rtu_frame(1, mb.write_response(mb.parse_request(mb.rtu_parse(REQ_06)[1]))) == REQ_06


def test_parse_worked_responses():
    assert mb.parse_response(mb.read_request(3, 0x6B, 3), mb.rtu_parse(RSP_03_6B)[1]) == [
        0xAE41,
        0x5652,
        0x4340,
    ]
    assert mb.parse_response(mb.read_request(3, 0, 10), mb.rtu_parse(RSP_03_10)[1]) == list(range(1, 11))
    assert mb.parse_response(mb.write_registers_request(1, [10, 258]), mb.rtu_parse(RSP_16)[1]) == (1, 2)
    assert mb.parse_response(mb.write_register_request(1, 3), mb.rtu_parse(REQ_06)[1]) == (1, 3)
    with pytest.raises(ExceptionResponse) as info:
        mb.parse_response(mb.read_request(3, 0, 10), mb.rtu_parse(RSP_EXC)[1])
    assert (info.value.function, info.value.code, info.value.meaning) == (3, 2, "illegal data address")


def test_parse_worked_requests():
    assert mb.parse_request(mb.rtu_parse(REQ_03_6B)[1]) == mb.Request(3, 0x6B, 3)
    assert mb.parse_request(mb.rtu_parse(REQ_16)[1]) == mb.Request(16, 1, 2, [10, 258])
    assert mb.parse_request(mb.rtu_parse(REQ_06)[1]) == mb.Request(6, 1, 1, [3])
    assert "address=107" in repr(mb.parse_request(mb.rtu_parse(REQ_03_6B)[1]))


def test_bits():
    req = mb.write_coils_request(19, [True, False, True, True, False, False, True, True, True, False])
    assert req == h("0F 0013 000A 02 CD 01")
    assert mb.parse_request(req).values == [True, False, True, True, False, False, True, True, True, False]
    assert mb.write_coil_request(0xAC, True) == h("05 00AC FF00")
    assert mb.write_coil_request(0xAC, False) == h("05 00AC 0000")
    assert mb.parse_request(h("05 00AC FF00")) == mb.Request(5, 0xAC, 1, [True])
    rsp = mb.read_response(1, [True, False, True, True, False, False, True, True, True, False, True])
    assert rsp == h("01 02 CD 05")
    assert mb.parse_response(mb.read_request(1, 19, 11), rsp) == [
        True,
        False,
        True,
        True,
        False,
        False,
        True,
        True,
        True,
        False,
        True,
    ]
    assert mb.parse_response(mb.write_coil_request(3, True), h("05 0003 FF00")) == (3, True)
    assert mb.parse_response(mb.write_coils_request(3, [True] * 9), h("0F 0003 0009")) == (3, 9)


@pytest.mark.parametrize(
    ("function", "max_count"),
    [(1, 2000), (2, 2000), (3, 125), (4, 125)],
)
def test_read_limits(function, max_count):
    assert mb.parse_request(mb.read_request(function, 0, max_count)).count == max_count
    assert mb.read_request(function, 65535, 1)
    for address, count in ((0, 0), (0, max_count + 1), (-1, 1), (65536, 1), (65535, 2)):
        with pytest.raises(EncodingError):
            mb.read_request(function, address, count)


def test_write_limits():
    assert len(mb.write_registers_request(0, [0] * 123)) == 6 + 246
    assert len(mb.write_coils_request(0, [True] * 1968)) == 6 + 246
    bad = [
        lambda: mb.write_registers_request(0, [0] * 124),
        lambda: mb.write_registers_request(0, []),
        lambda: mb.write_coils_request(0, [True] * 1969),
        lambda: mb.write_coils_request(0, []),
        lambda: mb.write_register_request(0, 65536),
        lambda: mb.write_register_request(0, -1),
        lambda: mb.write_registers_request(65535, [1, 2]),
        lambda: mb.write_coil_request(0, 2),  # type: ignore[arg-type]
        lambda: mb.write_registers_request(0, [1.5]),
        lambda: mb.read_request(5, 0, 1),
        lambda: mb.read_response(3, [0] * 126),
        lambda: mb.read_response(1, [True] * 2001),
        lambda: mb.read_response(6, [1]),
        lambda: mb.exception_response(3, 0),
        lambda: mb.exception_response(0x83, 2),
        lambda: mb.write_response(mb.Request(3, 0, 1)),
    ]
    for make in bad:
        with pytest.raises(EncodingError):
            make()


@pytest.mark.parametrize("unit", [-1, 248, 255])
def test_unit_limits(unit):
    with pytest.raises(EncodingError):
        mb.rtu_frame(unit, b"\x03")


def test_rtu_parse_errors():
    with pytest.raises(CrcError, match="expected 7687, got 7688"):
        mb.rtu_parse(h("11 03 00 6B 00 03 76 88"))
    with pytest.raises(FrameError, match=r"4\.\.256"):
        mb.rtu_parse(h("11 03 76"))
    with pytest.raises(FrameError, match="unit 248"):
        mb.rtu_parse(b"\xf8" + REQ_06[1:])
    assert not issubclass(FrameError, CrcError)


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        (h("03 0000 0000"), 3),
        (h("03 0000 007E"), 3),
        (h("01 0000 07D1"), 3),
        (h("03 FFFF 0002"), 2),
        (h("05 0000 1234"), 3),
        (h("10 0000 0002 03 000000"), 3),
        (h("10 0000 007C F8") + bytes(248), 3),
        (h("0F 0000 0009 01 FF"), 3),
        (h("0F FFFF 0002 01 03"), 2),
        (h("2B 0E01"), 1),
        (h("83 02"), 1),
    ],
)
def test_parse_request_exceptions(pdu, code):
    with pytest.raises(ExceptionResponse) as info:
        mb.parse_request(pdu)
    assert info.value.code == code
    assert info.value.function == pdu[0]
    assert mb.exception_response(pdu[0] & 0x7F, code) == bytes((pdu[0] | 0x80, code))


@pytest.mark.parametrize(
    "pdu", [b"", h("03 0000"), h("03 0000 0001 00"), h("10 0000 0001 02 00"), h("10 0000")]
)
def test_parse_request_frame_errors(pdu):
    with pytest.raises(FrameError):
        mb.parse_request(pdu)


@pytest.mark.parametrize(
    ("req_pdu", "rsp_pdu", "error"),
    [
        (h("03 006B 0003"), h("04 06 AE41 5652 4340"), FrameError),
        (h("03 006B 0003"), h("03 04 AE41 5652"), FrameError),
        (h("03 006B 0003"), h("03 06 AE41 5652 43"), FrameError),
        (h("03 006B 0003"), b"", FrameError),
        (h("03 006B 0003"), h("83 02 00"), FrameError),
        (h("03 006B 0003"), h("84 02"), FrameError),
        (h("06 0001 0003"), h("06 0001 0004"), FrameError),
        (h("10 0001 0002 04 000A 0102"), h("10 0001 0003"), FrameError),
        (h("03 0000 0000"), h("03 00"), EncodingError),
        (b"", h("03 00"), FrameError),
    ],
)
def test_parse_response_mismatch(req_pdu, rsp_pdu, error):
    with pytest.raises(error):
        mb.parse_response(req_pdu, rsp_pdu)


@pytest.mark.parametrize("code", sorted(MODBUS_EXCEPTIONS))
def test_exception_codes(code):
    with pytest.raises(ExceptionResponse) as info:
        mb.parse_response(h("04 0000 0001"), bytes((0x84, code)))
    assert info.value.code == code and info.value.meaning != "unknown exception"


def test_tcp():
    adu = mb.tcp_frame(77, 9, mb.read_request(3, 1, 2))
    assert adu == h("004D 0000 0006 09 03 0001 0002")
    assert mb.tcp_parse(adu) == (77, 9, h("03 0001 0002"))
    assert mb.tcp_adu_length(adu[:6]) == len(adu)
    for bad in (
        adu[:-1],
        adu + b"\x00",
        h("004D 0001 0006 09 03 0001 0002"),
        h("0001 0000 0001 09"),
        h("0001 0000 00FF 09") + bytes(254),
    ):
        with pytest.raises(FrameError):
            mb.tcp_parse(bad)
    with pytest.raises(EncodingError):
        mb.tcp_frame(65536, 1, b"\x03")
    with pytest.raises(EncodingError):
        mb.tcp_frame(1, 1, bytes(254))


def test_timing():
    assert mb.t35(9600, 11) == pytest.approx(0.0040104, rel=1e-4)
    assert mb.t35(19200, 11) == pytest.approx(0.0020052, rel=1e-4)
    assert mb.t35(115200, 11) == 0.00175
    assert mb.t35(9600, 10) == pytest.approx(0.0036458, rel=1e-4)
    assert mb.t15(38400) == 0.00075
    assert mb.frame_time(33, 9600, 11) == pytest.approx(0.0378125)
    # §3.5: 40 character times per 10-register read at 9600 8E1 -> 21.82 transactions/s
    assert 1 / (mb.frame_time(33, 9600) + 2 * mb.t35(9600)) == pytest.approx(21.82, abs=0.01)
    assert 1 / (mb.frame_time(33, 115200) + 2 * mb.t35(115200)) == pytest.approx(150.35, abs=0.01)


# ------------------------------------------------------------------ RTU frame reader

RESPONSES = [RSP_03_6B, RSP_03_10, RSP_EXC, RSP_16, REQ_06]
REQUESTS = [REQ_03_6B, REQ_03_10, REQ_16, REQ_06, mb.rtu_frame(3, mb.write_coils_request(9, [True] * 17))]


def feed_all(reader, data, sizes):
    frames, i = [], 0
    for size in sizes:
        frames += reader.feed(data[i : i + size])
        i += size
    frames += reader.feed(data[i:])
    return frames


@pytest.mark.parametrize(("expect", "adus"), [("response", RESPONSES), ("request", REQUESTS)])
def test_reader_byte_by_byte(expect, adus):
    reader = mb.RtuFrameReader(expect)
    data = b"".join(adus)
    frames = feed_all(reader, data, [1] * len(data))
    assert frames == [mb.rtu_parse(a) for a in adus]
    assert reader.errors == [] and reader.pending == 0


@pytest.mark.parametrize(("expect", "adus"), [("response", RESPONSES), ("request", REQUESTS)])
def test_reader_missing_counts_the_bytes_a_known_frame_still_lacks(expect, adus):
    """After each byte of a frame: never more than the bytes still to come (a link that waits for them
    never outlasts the frame), exactly those once the header tells the length (7 bytes at most), at
    least one until the frame is complete, and 0 then."""
    for adu in adus:
        reader = mb.RtuFrameReader(expect)
        assert reader.missing() == 0
        for i in range(len(adu)):
            frames = reader.feed(adu[i : i + 1])
            left = len(adu) - (i + 1)
            assert frames == ([mb.rtu_parse(adu)] if left == 0 else [])
            missing = reader.missing()
            assert missing <= left
            assert missing >= 1 or left == 0
            if i + 1 >= 7:
                assert missing == left


def test_reader_missing_after_noise_is_the_next_frames():
    reader = mb.RtuFrameReader()
    assert reader.feed(h("FA") + RSP_03_10[:4]) == []  # unit 250 is dropped as noise; a header follows
    assert reader.missing() == len(RSP_03_10) - 4
    assert reader.feed(RSP_03_10[4:]) == [mb.rtu_parse(RSP_03_10)]
    assert reader.missing() == 0 and reader.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 247), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125), st.data())
def test_reader_missing_property(unit, registers, data):
    values = b"".join(struct.pack(">H", r) for r in registers)
    adu = mb.rtu_frame(unit, bytes([3, len(values)]) + values)
    cut = data.draw(st.integers(3, len(adu) - 1))
    reader = mb.RtuFrameReader()
    assert reader.feed(adu[:cut]) == []
    assert reader.missing() == len(adu) - cut
    assert reader.feed(adu[cut:]) == [(unit, adu[1:-2])] and reader.missing() == 0


def test_reader_bad_expect():
    with pytest.raises(EncodingError):
        mb.RtuFrameReader("both")


def test_reader_crc_error_then_resync():
    reader = mb.RtuFrameReader()
    broken = RSP_03_6B[:-1] + b"\x00"
    frames = reader.feed(broken + RSP_EXC)
    assert frames == [(1, h("83 02"))]
    errors = reader.take_errors()
    assert isinstance(errors[0], CrcError)
    assert "expected 49ad, got 4900" in str(errors[0]) and "110306ae41" in str(errors[0])
    assert reader.errors == []


def test_reader_impossible_header_message():
    reader = mb.RtuFrameReader("request")
    assert reader.feed(h("FA") + REQ_06) == [(1, h("06 0001 0003"))]
    (err,) = reader.errors
    assert type(err) is FrameError and "unit 250" in str(err) and "fa" in str(err)


def test_reader_reset_drops_partial_and_salvages():
    reader = mb.RtuFrameReader()
    assert reader.feed(RSP_03_10[:7]) == []
    assert reader.reset() == []
    assert len(reader.take_errors()) == 1 and reader.pending == 0
    assert reader.feed(RSP_EXC) == [(1, h("83 02"))]
    # noise that looks like the start of a long frame hides a complete frame; silence reveals it
    assert reader.feed(h("01 03 F0") + RSP_EXC) == []
    assert reader.reset() == [(1, h("83 02"))]
    assert len(reader.take_errors()) == 1


def test_reader_error_list_is_bounded():
    reader = mb.RtuFrameReader()
    reader.feed(b"\xff" * 500)
    assert len(reader.errors) == mb.MAX_ERRORS and reader.error_count == 499 and reader.pending == 1


@given(st.data(), st.sampled_from(["response", "request"]))
def test_reader_random_chunks_with_noise(data, expect):
    pool = RESPONSES if expect == "response" else REQUESTS
    adus = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
    # noise between frames is from bytes that can never start a frame (unit > 247)
    noise = st.binary(max_size=5).map(lambda b: bytes(0xF8 | (x & 7) for x in b))
    stream, expected = b"", []
    for adu in adus:
        stream += data.draw(noise)
        if data.draw(st.booleans()):
            stream += adu
            expected.append(mb.rtu_parse(adu))
        else:  # corrupted or truncated then silence would follow: corrupt the CRC instead
            stream += adu[:-1] + bytes([adu[-1] ^ 0x5A])
    sizes = data.draw(st.lists(st.integers(1, 16), max_size=40))
    reader = mb.RtuFrameReader(expect)
    got = feed_all(reader, stream, sizes) + reader.reset()
    assert got == expected
    assert reader.pending == 0


@given(st.binary(max_size=64), st.sampled_from(["response", "request"]), st.randoms(use_true_random=False))
def test_reader_truncated_frame_then_silence(prefix, expect, rnd):
    pool = RESPONSES if expect == "response" else REQUESTS
    adu = rnd.choice(pool)
    reader = mb.RtuFrameReader(expect)
    reader.feed(prefix)
    reader.reset()  # whatever garbage: silence ends it
    reader.take_errors()
    cut = rnd.randrange(1, len(adu))
    assert reader.feed(adu[:cut]) == []
    reader.reset()
    assert reader.feed(adu) == [mb.rtu_parse(adu)]


def test_reader_many_random_chunkings():
    rng = random.Random(1234)
    data = b"".join(RESPONSES) * 3
    for _ in range(50):
        reader = mb.RtuFrameReader()
        sizes = [rng.randint(1, 30) for _ in range(20)]
        assert feed_all(reader, data, sizes) == [mb.rtu_parse(a) for a in RESPONSES] * 3
