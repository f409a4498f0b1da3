"""Arbitrary bytes into every Modbus and point decoder: only ProtocolError subclasses may escape.

Runs the conftest profile (300 examples each by default; HYPOTHESIS_PROFILE=fuzz for 5000).
"""

from hypothesis import given
from hypothesis import strategies as st

from protocols import modbus as mb
from protocols import points
from protocols.errors import ProtocolError

PDU_PREFIX = st.sampled_from(
    [b"", b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x0f", b"\x10", b"\x83", b"\x90"]
)
pdus = st.one_of(st.binary(max_size=260), st.tuples(PDU_PREFIX, st.binary(max_size=260)).map(b"".join))


def with_crc(body: bytes) -> bytes:
    crc = mb.crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


@given(st.one_of(st.binary(max_size=300), st.binary(min_size=2, max_size=256).map(with_crc)))
def test_rtu_parse(data):
    try:
        unit, pdu = mb.rtu_parse(data)
    except ProtocolError:
        return
    assert mb.rtu_frame(unit, pdu) == data


@given(
    st.one_of(
        st.binary(max_size=300),
        st.tuples(st.binary(min_size=2, max_size=2), pdus).map(
            lambda t: t[0] + b"\x00\x00" + (len(t[1]) + 1).to_bytes(2, "big") + b"\x01" + t[1]
        ),
    )
)
def test_tcp_parse(data):
    try:
        tid, unit, pdu = mb.tcp_parse(data)
    except ProtocolError:
        return
    assert mb.tcp_frame(tid, unit, pdu) == data


@given(pdus, pdus)
def test_parse_response(request_pdu, response_pdu):
    try:
        mb.parse_response(request_pdu, response_pdu)
    except ProtocolError:
        pass


@given(st.tuples(st.sampled_from(range(1, 5)), st.integers(0, 65535), st.integers(1, 2000)), pdus)
def test_parse_response_to_valid_request(req, response_pdu):
    function, address, count = req
    try:
        request_pdu = mb.read_request(function, address, count)
    except ProtocolError:
        return
    try:
        mb.parse_response(request_pdu, response_pdu)
    except ProtocolError:
        pass


@given(pdus)
def test_parse_request(pdu):
    try:
        req = mb.parse_request(pdu)
    except ProtocolError:
        return
    if req.function in (5, 6, 15, 16):
        assert mb.write_response(req)
        if req.function != 5:
            assert mb.parse_request(pdu) == req


@given(st.lists(st.binary(max_size=40), max_size=12), st.sampled_from(["response", "request"]))
def test_frame_reader(chunks, expect):
    reader = mb.RtuFrameReader(expect)
    for chunk in chunks:
        for unit, pdu in reader.feed(chunk):
            assert 0 <= unit <= 247 and pdu
    reader.reset()
    assert reader.pending == 0
    assert all(isinstance(e, ProtocolError) for e in reader.take_errors())


registers = st.lists(st.one_of(st.integers(0, 0xFFFF), st.integers(-5, 70000)), max_size=6)
any_type = st.one_of(
    st.sampled_from(points.TYPES), st.sampled_from(["str1", "str3", "bit0", "bit15", "x", "str0"])
)


@given(
    registers,
    any_type,
    st.sampled_from([*points.ORDERS, "XXXX"]),
    st.sampled_from([1, 0.1, -2, 0]),
    st.sampled_from([0, 1.5, -40]),
)
def test_points_decode(regs, type, order, scale, offset):
    try:
        points.decode(regs, type, order, scale, offset)
    except ProtocolError:
        pass


@given(st.binary(max_size=16), any_type, st.sampled_from(points.ORDERS))
def test_points_decode_from_bytes(data, type, order):
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]
    try:
        points.decode(regs, type, order)
    except ProtocolError:
        pass


@given(
    st.one_of(st.integers(), st.floats(), st.text(max_size=8), st.booleans(), st.none()),
    any_type,
    st.sampled_from(points.ORDERS),
    st.sampled_from([1, 0.1, 3, 0]),
    st.sampled_from([0, 2.5, -7]),
)
def test_points_encode(value, type, order, scale, offset):
    try:
        regs = points.encode(value, type, order, scale, offset)
    except ProtocolError:
        return
    assert all(0 <= r <= 0xFFFF for r in regs)
