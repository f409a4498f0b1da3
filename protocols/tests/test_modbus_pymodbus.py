"""Cross-check against pymodbus 3.16.1: its framers read what we build, and we read what it builds."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pymodbus")

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU
from pymodbus.pdu import ExceptionResponse as PmException
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    WriteSingleCoilRequest,
    WriteSingleCoilResponse,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from protocols import modbus as mb
from protocols.errors import ExceptionResponse

READ_REQ = {
    1: ReadCoilsRequest,
    2: ReadDiscreteInputsRequest,
    3: ReadHoldingRegistersRequest,
    4: ReadInputRegistersRequest,
}
READ_RSP = {
    1: ReadCoilsResponse,
    2: ReadDiscreteInputsResponse,
    3: ReadHoldingRegistersResponse,
    4: ReadInputRegistersResponse,
}

units = st.integers(1, 247)
addresses = st.integers(0, 65535)
registers = st.integers(0, 0xFFFF)


def server_decode(adu):
    """pymodbus in the server role decodes a request ADU."""
    used, pdu = FramerRTU(DecodePDU(True)).handleFrame(adu, 0, 0)
    assert used == len(adu) and pdu is not None
    return pdu


def client_decode(adu):
    used, pdu = FramerRTU(DecodePDU(False)).handleFrame(adu, 0, 0)
    assert used == len(adu) and pdu is not None
    return pdu


def pm_frame(message, unit, is_server):
    message.dev_id = unit
    return FramerRTU(DecodePDU(is_server)).buildFrame(message)


def test_crc_agrees_on_worked_frame():
    body = bytes.fromhex("1103006b0003")
    crc = mb.crc16(body)
    assert FramerRTU.compute_CRC(body) == ((crc & 0xFF) << 8) | (crc >> 8)


@given(st.sampled_from([1, 2, 3, 4]), units, st.data())
def test_read_request_both_ways(function, unit, data):
    count = data.draw(st.integers(1, 2000 if function <= 2 else 125))
    address = data.draw(st.integers(0, 65536 - count))
    ours = mb.rtu_frame(unit, mb.read_request(function, address, count))
    pdu = server_decode(ours)
    assert (type(pdu), pdu.dev_id, pdu.address, pdu.count) == (READ_REQ[function], unit, address, count)
    theirs = pm_frame(READ_REQ[function](address=address, count=count), unit, False)
    assert theirs == ours
    got_unit, got_pdu = mb.rtu_parse(theirs)
    assert got_unit == unit and mb.parse_request(got_pdu) == mb.Request(function, address, count)


@given(st.sampled_from([3, 4]), units, st.lists(registers, min_size=1, max_size=125))
def test_register_response_both_ways(function, unit, values):
    ours = mb.rtu_frame(unit, mb.read_response(function, values))
    pdu = client_decode(ours)
    assert type(pdu) is READ_RSP[function] and list(pdu.registers) == values and pdu.dev_id == unit
    theirs = pm_frame(READ_RSP[function](registers=values), unit, True)
    assert theirs == ours
    request = mb.read_request(function, 0, len(values))
    assert mb.parse_response(request, mb.rtu_parse(theirs)[1]) == values


@given(st.sampled_from([1, 2]), units, st.lists(st.booleans(), min_size=1, max_size=2000))
def test_bit_response_both_ways(function, unit, values):
    ours = mb.rtu_frame(unit, mb.read_response(function, values))
    pdu = client_decode(ours)
    assert type(pdu) is READ_RSP[function]
    assert list(pdu.bits[: len(values)]) == values and not any(pdu.bits[len(values) :])
    theirs = pm_frame(READ_RSP[function](bits=values), unit, True)
    assert theirs == ours
    assert mb.parse_response(mb.read_request(function, 0, len(values)), mb.rtu_parse(theirs)[1]) == values


@given(units, addresses, st.booleans())
def test_write_coil_both_ways(unit, address, value):
    ours = mb.rtu_frame(unit, mb.write_coil_request(address, value))
    pdu = server_decode(ours)
    assert type(pdu) is WriteSingleCoilRequest and (pdu.address, list(pdu.bits)) == (address, [value])
    assert pm_frame(WriteSingleCoilRequest(address=address, bits=[value]), unit, False) == ours
    echo = pm_frame(WriteSingleCoilResponse(address=address, bits=[value]), unit, True)
    assert mb.parse_response(mb.write_coil_request(address, value), mb.rtu_parse(echo)[1]) == (address, value)


@given(units, addresses, registers)
def test_write_register_both_ways(unit, address, value):
    ours = mb.rtu_frame(unit, mb.write_register_request(address, value))
    pdu = server_decode(ours)
    assert type(pdu) is WriteSingleRegisterRequest and (pdu.address, list(pdu.registers)) == (
        address,
        [value],
    )
    assert pm_frame(WriteSingleRegisterRequest(address=address, registers=[value]), unit, False) == ours
    echo = pm_frame(WriteSingleRegisterResponse(address=address, registers=[value]), unit, True)
    assert mb.parse_response(mb.write_register_request(address, value), mb.rtu_parse(echo)[1]) == (
        address,
        value,
    )


@given(units, st.data())
def test_write_coils_both_ways(unit, data):
    values = data.draw(st.lists(st.booleans(), min_size=1, max_size=1968))
    address = data.draw(st.integers(0, 65536 - len(values)))
    request = mb.write_coils_request(address, values)
    ours = mb.rtu_frame(unit, request)
    pdu = server_decode(ours)
    assert type(pdu) is WriteMultipleCoilsRequest
    assert (pdu.address, pdu.count, list(pdu.bits)) == (address, len(values), values)
    theirs = pm_frame(WriteMultipleCoilsRequest(address=address, bits=values), unit, False)
    assert mb.parse_request(mb.rtu_parse(theirs)[1]) == mb.Request(15, address, len(values), values)
    echo = pm_frame(WriteMultipleCoilsResponse(address=address, count=len(values)), unit, True)
    assert mb.rtu_frame(unit, mb.write_response(mb.parse_request(request))) == echo
    assert mb.parse_response(request, mb.rtu_parse(echo)[1]) == (address, len(values))


@given(units, st.data())
def test_write_registers_both_ways(unit, data):
    values = data.draw(st.lists(registers, min_size=1, max_size=123))
    address = data.draw(st.integers(0, 65536 - len(values)))
    request = mb.write_registers_request(address, values)
    ours = mb.rtu_frame(unit, request)
    pdu = server_decode(ours)
    assert type(pdu) is WriteMultipleRegistersRequest and (pdu.address, list(pdu.registers)) == (
        address,
        values,
    )
    theirs = pm_frame(WriteMultipleRegistersRequest(address=address, registers=values), unit, False)
    assert theirs == ours
    echo = pm_frame(WriteMultipleRegistersResponse(address=address, count=len(values)), unit, True)
    assert mb.rtu_frame(unit, mb.write_response(mb.parse_request(request))) == echo
    assert mb.parse_response(request, mb.rtu_parse(echo)[1]) == (address, len(values))


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16]), st.sampled_from([1, 2, 3, 4, 5, 6, 8, 10, 11]), units)
def test_exception_both_ways(function, code, unit):
    ours = mb.rtu_frame(unit, mb.exception_response(function, code))
    pdu = client_decode(ours)
    assert isinstance(pdu, PmException) and (pdu.function_code, pdu.exception_code) == (function | 0x80, code)
    theirs = pm_frame(PmException(function, code), unit, True)
    assert theirs == ours
    request = {
        1: mb.read_request(1, 0, 1),
        2: mb.read_request(2, 0, 1),
        3: mb.read_request(3, 0, 1),
        4: mb.read_request(4, 0, 1),
        5: mb.write_coil_request(0, True),
        6: mb.write_register_request(0, 1),
        15: mb.write_coils_request(0, [True]),
        16: mb.write_registers_request(0, [1]),
    }[function]
    with pytest.raises(ExceptionResponse) as info:
        mb.parse_response(request, mb.rtu_parse(theirs)[1])
    assert (info.value.function, info.value.code) == (function, code)


@given(st.integers(0, 65535), st.integers(0, 255), st.sampled_from([3, 4]), st.integers(1, 125), st.data())
def test_tcp_both_ways(tid, unit, function, count, data):
    address = data.draw(st.integers(0, 65536 - count))
    ours = mb.tcp_frame(tid, unit, mb.read_request(function, address, count))
    message = READ_REQ[function](address=address, count=count, dev_id=unit, transaction_id=tid)
    theirs = FramerSocket(DecodePDU(False)).buildFrame(message)
    assert theirs == ours
    used, pdu = FramerSocket(DecodePDU(True)).handleFrame(ours, 0, 0)
    assert pdu is not None
    assert used == len(ours) and (pdu.transaction_id, pdu.dev_id, pdu.address, pdu.count) == (
        tid,
        unit,
        address,
        count,
    )


@given(
    st.lists(st.tuples(units, st.lists(registers, min_size=1, max_size=20)), min_size=1, max_size=5),
    st.integers(1, 13),
)
def test_reader_splits_pymodbus_stream(responses, chunk):
    stream = b"".join(pm_frame(ReadHoldingRegistersResponse(registers=v), u, True) for u, v in responses)
    reader = mb.RtuFrameReader("response")
    frames = []
    for i in range(0, len(stream), chunk):
        frames += reader.feed(stream[i : i + chunk])
    assert [
        (u, mb.parse_response(mb.read_request(3, 0, len(v)), p)) for (u, p), (_, v) in zip(frames, responses)
    ] == [(u, v) for u, v in responses]
    assert len(frames) == len(responses) and reader.errors == []
