"""Interop with PyPI dlt698 1.0.1 (typed bindings to an independent C++ DL/T 698.45 library).

Both ways: frames, CRC, A-XDR data and GET APDUs built by one side are decoded by the other to the same
fields and re-encoded to the same bytes; the OAD table's types, scalers and units agree with the
package's object catalogue (which cites DL/T 698.45-2017 clause by clause).

Where the packages differ (asserted, so a change on either side is noticed):
* visible-string: the package refuses to encode bytes outside printable ASCII; we carry any byte
  (meters pad with 00), so only printable text is compared.
* bit-string: the package refuses set bits after the last used one; we keep the bytes as sent.
* PIID: both refuse to build a request with bit 6 (reserved there; ACD in responses) set.
* unit symbols: the package names only the units it uses (W, kWh, V, A, Hz ...); we name every code of
  the enumeration and spell degree Celsius the SenML way ("Cel", theirs "℃").
* a broadcast SA is the one byte AA on both sides (both refuse to build another).
* the SA flag's bit 5 (extended logic address): neither side interprets the extra byte; compared for
  logic addresses 0 and 1 only.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

dlt698 = pytest.importorskip("dlt698")

from dlt698 import _native as n  # noqa: E402

from protocols import axdr  # noqa: E402
from protocols import dlt698 as d  # noqa: E402
from protocols.tests.test_dlt698 import addresses, data_values  # noqa: E402

TYPES = [d.ADDRESS_SINGLE, d.ADDRESS_WILDCARD, d.ADDRESS_GROUP, d.ADDRESS_BROADCAST]


@given(st.binary(max_size=400))
def test_crc_agrees(data) -> None:  # type: ignore[no-untyped-def]
    assert n.crc16(data) == d.crc16(data)


@given(addresses, st.binary(max_size=300), st.sampled_from([0x43, 0xC3, 0x4B, 0xCB, 0x01, 0x81, 0x03, 0x83]),
       st.integers(0, 255), st.integers(0, 3), st.integers(0, 1))
def test_frames_both_ways(address, apdu, control, client, kind, logic) -> None:  # type: ignore[no-untyped-def]
    if kind == d.ADDRESS_BROADCAST:
        address = d.BROADCAST  # both sides refuse any other broadcast address
    ours = d.build_frame(d.Frame(address, apdu, control, client, kind, logic))
    theirs_frame = n.Frame(client=client, control=control, payload=apdu, server=n.ServerAddress(
        bytes=d.parse_address(address), logical=logic, type=n.AddressType(kind)))
    assert n.encode_frame(theirs_frame) == ours
    got = n.decode_frame(ours)
    assert (got.control, got.client, got.payload) == (control, client, apdu)
    assert (bytes(got.server.bytes), got.server.logical, int(got.server.type)) == (
        d.parse_address(address), logic, kind)
    assert d.parse_frame(n.encode_frame(theirs_frame)) == d.Frame(address, apdu, control, client, kind, logic)


def test_published_frames_decode_alike() -> None:
    from protocols.tests.test_dlt698 import H3_REQUEST, H3_RESPONSE, LIST_ENERGY, h

    for text in (H3_REQUEST, H3_RESPONSE, LIST_ENERGY):
        theirs = n.decode_frame(h(text))
        ours = d.parse_frame(h(text))
        assert (theirs.payload, theirs.control, theirs.client) == (ours.apdu, ours.control, ours.client)


# ---------------------------------------------------------------- A-XDR
def their_oad(oad: str):  # type: ignore[no-untyped-def]
    return n.Oad(oi=int(oad[:4], 16), attribute=int(oad[4:6], 16), index=int(oad[6:], 16))


def to_theirs(value: tuple):  # type: ignore[no-untyped-def]
    tag, v = value
    make = {
        axdr.NULL: lambda: n.Data.null(), axdr.BOOL: lambda: n.Data.boolean(v),
        axdr.DOUBLE_LONG: lambda: n.Data.int32(v), axdr.DOUBLE_LONG_UNSIGNED: lambda: n.Data.uint32(v),
        axdr.INTEGER: lambda: n.Data.int8(v), axdr.LONG: lambda: n.Data.int16(v),
        axdr.UNSIGNED: lambda: n.Data.uint8(v), axdr.LONG_UNSIGNED: lambda: n.Data.uint16(v),
        axdr.LONG64: lambda: n.Data.int64(v), axdr.LONG64_UNSIGNED: lambda: n.Data.uint64(v),
        axdr.ENUM: lambda: n.Data.enumeration(v), axdr.OI: lambda: n.Data.oi(v),
        axdr.OCTET_STRING: lambda: n.Data.octet_string(v),
        axdr.VISIBLE_STRING: lambda: n.Data.visible_string(v),
        axdr.UTF8_STRING: lambda: n.Data.utf8_string(v), axdr.FLOAT64: lambda: n.Data.float64(v),
        axdr.FLOAT32: lambda: n.Data.float32(v),
        axdr.BIT_STRING: lambda: n.Data.bit_string(v[0], v[1]),
        axdr.DATE_TIME_S: lambda: n.Data.date_time_s([v[0] >> 8, v[0] & 0xFF, *v[1:]]),
        axdr.SCALER_UNIT: lambda: n.Data.scaler_unit(n.ScalerUnit(scaler=v[0], unit=v[1])),
        axdr.TI: lambda: n.Data.ti(n.Ti(unit=v[0], interval=v[1])),
        axdr.OAD: lambda: n.Data.oad(their_oad(v)),
        axdr.ARRAY: lambda: n.Data.array([to_theirs(x) for x in v]),
        axdr.STRUCTURE: lambda: n.Data.structure([to_theirs(x) for x in v]),
    }
    return make[tag]()


@given(data_values(2, peer=True))
def test_axdr_both_ways(value) -> None:  # type: ignore[no-untyped-def]
    ours = axdr.encode(value)
    theirs = n.encode_data(to_theirs(value))
    assert ours == theirs
    assert axdr.decode_all(theirs) == value
    assert n.encode_data(n.decode_data(ours)) == ours


def test_difference_bit_string_padding() -> None:
    assert axdr.decode_all(b"\x04\x01\x01") == (axdr.BIT_STRING, (1, b"\x01"))  # we keep the byte as sent
    with pytest.raises(Exception, match="padding"):
        n.decode_data(b"\x04\x01\x01")


def test_difference_visible_string_bytes() -> None:
    assert axdr.decode_all(b"\x0a\x03ab\x00") == (axdr.VISIBLE_STRING, "ab\x00")
    with pytest.raises(Exception, match="visible-string"):
        n.encode_data(n.Data.visible_string("ab\x00"))


# ---------------------------------------------------------------- GET APDUs
@given(st.lists(st.integers(0, 0xFFFFFFFF).map(lambda v: "%08X" % v), min_size=1, max_size=10),
       st.integers(0, 255).map(lambda p: p & 0xBF), st.booleans())
def test_get_request_both_ways(oads, piid, single) -> None:  # type: ignore[no-untyped-def]
    ask = oads[0] if single else oads
    apdu = d.get_request(ask, piid)
    theirs = n.decode_apdu(apdu)
    assert isinstance(theirs, n.GetRequest) and theirs.piid == piid and theirs.list == (not single)
    got = ["%04X%02X%02X" % (a.oi, a.attribute, a.index) for a in theirs.attributes]
    assert got == (oads[:1] if single else oads)
    assert n.encode_apdu(theirs) == apdu
    assert d.parse_get_request(n.encode_apdu(theirs)) == (piid, got, not single)


@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF).map(lambda v: "%08X" % v),
                          st.one_of(data_values(1, peer=True), st.integers(0, 255))), min_size=1, max_size=6),
       st.integers(0, 255))
def test_get_response_both_ways(pairs, piid) -> None:  # type: ignore[no-untyped-def]
    results = [d.Result(o, v) if isinstance(v, tuple) else d.Result(o, dar=v) for o, v in pairs]
    theirs = n.GetResponse(piid_acd=piid, list=True, attributes=[
        n.AttributeResult(attribute=their_oad(r.oad),
                          result=r.dar if r.data is None else to_theirs(r.data))  # type: ignore[arg-type]
        for r in results])
    assert n.encode_apdu(theirs) == d.get_response(piid, results, is_list=True)
    assert d.parse_get_response(n.encode_apdu(theirs)) == (piid, results, [])
    decoded = n.decode_apdu(d.get_response(piid, results, is_list=True))
    assert isinstance(decoded, n.GetResponse) and decoded.piid_acd == piid
    got = [r.result if isinstance(r.result, int) else n.encode_data(r.result) for r in decoded.attributes]
    assert got == [r.dar if r.dar is not None else axdr.encode(r.data) for r in results]  # type: ignore[arg-type]


# ---------------------------------------------------------------- the object table
THEIR_UNITS = {"℃": "Cel"}


@pytest.mark.parametrize("oad", sorted(d.OAD_TABLE))
def test_oad_table_agrees_with_their_catalogue(oad) -> None:  # type: ignore[no-untyped-def]
    _name, tag, element_tag, scaler, unit = d.OAD_TABLE[oad]
    theirs = n.find_attribute(n.Oad(oi=int(oad[:4], 16), attribute=int(oad[4:6], 16), index=0))
    assert theirs is not None, oad
    assert int(theirs.type) == tag
    assert (None if theirs.element_type is None else int(theirs.element_type)) == element_tag
    if theirs.scaling is None:
        assert scaler == 0 and unit == ""
    else:
        assert theirs.scaling.scaler == scaler
        symbol = n.unit_symbol(theirs.scaling.unit)
        assert THEIR_UNITS.get(symbol, symbol) == unit
        assert d.UNIT_CODES[theirs.scaling.unit] == unit


def test_unit_codes_agree_where_they_name_one() -> None:
    named = 0
    for code in range(256):
        symbol = n.unit_symbol(code)
        if symbol:
            assert d.unit_symbol(code) == THEIR_UNITS.get(symbol, symbol), code
            named += 1
    assert named >= 15
