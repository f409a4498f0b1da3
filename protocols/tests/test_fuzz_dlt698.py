"""Arbitrary bytes into every DL/T 698.45 and A-XDR decoder: only ProtocolError subclasses may escape.

Runs the conftest profile (HYPOTHESIS_PROFILE=fuzz for more examples). Inputs mix raw bytes with
frames and APDUs that are well-formed around arbitrary content, so the decoders past the framing
layer (GET responses, A-XDR, the table's scaling) are reached too.
"""

from hypothesis import given
from hypothesis import strategies as st

from protocols import axdr
from protocols import dlt698 as d
from protocols.errors import ProtocolError

OADS = [*sorted(d.OAD_TABLE), "00100201", "20000203", "20040202"]


def apdus():  # type: ignore[no-untyped-def]
    """GET-Response / -Request heads followed by arbitrary bytes, or a result with arbitrary data."""
    heads = st.sampled_from([b"\x85\x01", b"\x85\x02", b"\x05\x01", b"\x05\x02", b"\xee", b""])
    result = st.tuples(st.sampled_from([bytes.fromhex(o) for o in OADS]), st.binary(max_size=60)).map(
        lambda t: b"\x85\x01\x00" + t[0] + b"\x01" + t[1])
    return st.one_of(st.tuples(heads, st.binary(max_size=80)).map(b"".join), result)


def frames():  # type: ignore[no-untyped-def]
    return st.builds(
        lambda apdu, control, kind, pre: d.build_frame(
            d.Frame(d.BROADCAST if kind == 3 else "000000000161", apdu, control, 0, kind), pre),
        apdus(), st.sampled_from([0x43, 0xC3, 0xE3, 0xCB, 0x01]), st.integers(0, 3), st.integers(0, 4))


@given(st.one_of(st.binary(max_size=300), frames()))
def test_parse_frame_and_services(data) -> None:  # type: ignore[no-untyped-def]
    try:
        f = d.parse_frame(data)
    except ProtocolError:
        return
    for call in (
        lambda: d.parse_request(f),
        lambda: d.parse_get_response(f.apdu),
        lambda: d.parse_read_response(f, ["40010200"]),
        lambda: d.parse_read_response(f, OADS[:3], piid=1, address=d.WILDCARD),
        lambda: d.parse_read_address_response(f),
    ):
        try:
            call()
        except ProtocolError:
            pass


@given(apdus(), st.sampled_from(OADS), st.integers(0, 6))
def test_results_scale_or_refuse(apdu, oad, element) -> None:  # type: ignore[no-untyped-def]
    try:
        _piid, results, _follow = d.parse_get_response(apdu)
    except ProtocolError:
        return
    for r in results:
        try:
            d.scaled(oad, r.value(), element)
        except ProtocolError:
            pass


@given(st.binary(max_size=200))
def test_axdr_decode(data) -> None:  # type: ignore[no-untyped-def]
    try:
        value, end = axdr.decode(data)
    except ProtocolError:
        return
    assert 0 < end <= len(data)
    assert axdr.decode(axdr.encode(value))[0] == value  # what decodes re-encodes
    axdr.plain(value)


def test_axdr_bounds() -> None:
    """Nesting, item counts and lengths beyond the buffer are refused without allocating."""
    deep = b"\x01\x01" * (axdr.MAX_DEPTH + 1) + b"\x00"
    many = b"\x01\x82\xff\xff" + b"\x00" * 10
    wide = b"\x01\x82\x07\xd0" + b"\x00" * 2000  # 2000 nulls: more values than MAX_ITEMS
    huge = b"\x09\x82\xff\xff\x00"
    for raw, words in ((deep, "nested deeper"), (many, "claims 65535 items"), (wide, "more than 1024"),
                       (huge, "needs 65535 bytes")):
        try:
            axdr.decode(raw)
        except ProtocolError as e:
            assert words in str(e), (words, str(e))
        else:
            raise AssertionError("accepted " + words)


@given(st.lists(st.one_of(st.binary(max_size=40), frames()), max_size=8), st.integers(30, 3000))
def test_reader(chunks, max_frame) -> None:  # type: ignore[no-untyped-def]
    reader = d.Dlt698FrameReader(max_frame)
    for chunk in chunks:
        for f in reader.feed(chunk):
            assert isinstance(f, d.Frame)
        assert len(reader._buf) < max(max_frame, 64) + 40  # never holds more than one frame's worth
    reader.reset()
    assert all(isinstance(e, ProtocolError) for e in reader.take_errors())
