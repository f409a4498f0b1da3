"""Arbitrary bytes into every DL/T 645 and CJ/T 188 decoder: only ProtocolError subclasses may escape.

Runs the conftest profile (300 examples each by default; HYPOTHESIS_PROFILE=fuzz for 5000). Inputs mix
raw bytes with frames that have a valid checksum around arbitrary DATA, so the decoders past the
framing layer are reached too.
"""

from hypothesis import given
from hypothesis import strategies as st

from protocols import cjt188 as c
from protocols import dlt645 as d
from protocols.errors import ProtocolError

FORMATS = [
    "XXXXXX.XX",
    "XXX.X",
    "XXX.XXX",
    "XX.XXXX",
    "X.XXX",
    "XX.XX",
    "XXX",
    "YYMMDDWW",
    "hhmmss",
    "NNNNNNNNNNNN",
]


def dlt_frames():
    return st.builds(
        lambda a, c_, data, p: d.build_frame("%012d" % a, c_, data, p),
        st.integers(0, 999999999999),
        st.sampled_from([0x91, 0xB1, 0xD1, 0x81, 0xC1, 0x93, 0x11, 0x08, 0x12, 0x92, 0xB2, 0xD2]),
        st.one_of(st.binary(max_size=40), st.binary(max_size=36).map(lambda b: b"\x00\xff\x01\x00" + b)),
        st.integers(0, 4),
    )


def cj_frames():
    return st.builds(
        lambda t, c_, data, p: c.build_frame(t, "%014d" % 1, c_, data, p),
        st.sampled_from([0x10, 0x20, 0x30, 0xAA]),
        st.sampled_from([0x81, 0xC1, 0x83, 0x84, 0x01]),
        st.one_of(
            st.binary(max_size=60),
            st.tuples(st.sampled_from([b"\x1f\x90", b"\x90\x1f"]), st.binary(max_size=50)).map(b"".join),
        ),
        st.integers(0, 4),
    )


@given(st.one_of(st.binary(max_size=300), dlt_frames()))
def test_dlt645_parse_frame_and_replies(data):
    try:
        f = d.parse_frame(data)
    except ProtocolError:
        return
    for call in (
        lambda: d.parse_read_reply(f, "02010100", address=d.WILDCARD),
        lambda: d.parse_read_reply(f, "B611", 1997),
        lambda: d.parse_read_request(f),
        lambda: d.parse_read_address_reply(f),
        lambda: d.parse_time_sync(f),
        lambda: d.parse_write_request(f),
        lambda: d.parse_relay_request(f),
        lambda: d.parse_followup_request(f),
        lambda: d.parse_followup_reply(f, "0001FF00", 1, d.WILDCARD),
        lambda: d.parse_followup_reply(f, "0001FF00", 0, reply_seq=False),
    ):
        try:
            call()
        except ProtocolError:
            pass


@given(st.lists(dlt_frames(), min_size=1, max_size=20), st.integers(0, 3), st.integers(0, 2), st.booleans())
def test_dlt645_followup_assembler(frames, max_followups, seq_start, reply_seq):
    """Any reply sequence: the assembler asks for follow-ups, finishes, or raises a ProtocolError."""
    asm = d.FollowupAssembler(d.WILDCARD, "0001FF00", 2007, max_followups, seq_start, reply_seq)
    try:
        for raw in frames:
            request = asm.feed(d.parse_frame(raw))
            if request is None:
                assert asm.done
                return
            assert d.parse_followup_request(d.parse_frame(request))[1] == seq_start + asm.followups - 1
    except ProtocolError:
        assert not asm.done


@given(st.lists(st.one_of(st.binary(max_size=40), dlt_frames()), max_size=8))
def test_dlt645_reader(chunks):
    reader = d.Dlt645FrameReader()
    for chunk in chunks:
        for f in reader.feed(chunk):
            assert isinstance(f, d.Frame)
    reader.reset()
    assert all(isinstance(e, ProtocolError) for e in reader.take_errors())


@given(st.binary(max_size=12), st.sampled_from(FORMATS), st.booleans())
def test_dlt645_decode_value(raw, fmt, signed):
    for call in (d.decode_value, d.decode_reading, d.decode_block, d.decode_raw):
        try:
            call(raw, fmt, signed)
        except ProtocolError:
            pass


@given(st.one_of(st.binary(max_size=300), cj_frames()), st.one_of(st.none(), st.integers(0, 255)))
def test_cjt188_parse_frame_and_901f(data, ser):
    try:
        f = c.parse_frame(data)
    except ProtocolError:
        return
    for call in (
        lambda: c.parse_901f(f, ser=ser),
        lambda: c.parse_901f(f, meter_type=0x20),
        lambda: c.parse_request(f),
        lambda: c.parse_write_reply(f, 0xA017, ser),
        lambda: c.parse_reply(f, 0x810A, ser, control=0x03),
    ):
        try:
            call()
        except ProtocolError:
            pass


@given(st.lists(st.one_of(st.binary(max_size=40), cj_frames()), max_size=8))
def test_cjt188_reader(chunks):
    reader = c.Cjt188FrameReader()
    for chunk in chunks:
        for f in reader.feed(chunk):
            assert isinstance(f, c.Frame)
    reader.reset()
    assert all(isinstance(e, ProtocolError) for e in reader.take_errors())
