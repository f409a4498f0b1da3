"""Interop with PyPI dlt645 3.2.0 as an independent peer (frames, value formats, DI table).

Where the packages differ (documented, asserted so a change on either side is noticed):
* broadcast time sync: dlt645 sends YY MM DD hh mm ss (YY first); our default is ss first
  (protocol-facts §1.11, unverified). ``time_sync_request(order="yy_first")`` matches the package.
* baud feature word (C=17): dlt645 encodes rate/300 as BCD-looking bytes (4800 -> 0x16, 9600 -> 0x32);
  the standard's table is a bitmap (4800 -> 0x10, 9600 -> 0x20). We do not build C=17.
* sign bit: dlt645 treats bit7 of the MSB as a sign for every format (also voltage, frequency);
  ours only for the signed DIs. They agree on every value a meter can actually report.
* its table labels power factor (0206xxxx) with unit "kW"; ours has no unit (SenML "/").
* the package's DIs we do not carry (harmonics, demand, events) are not compared.
"""

import binascii
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("dlt645")

from dlt645.common.transform import bcd_to_float, float_to_bcd
from dlt645.model.data.define import DIMap
from dlt645.model.types.dlt645_type import BaudRateCode
from dlt645.protocol.protocol import DLT645Protocol

from protocols import dlt645 as d

A = "000000000161"
ADDR = bytes(d.parse_address(A))


def h(text):
    return binascii.unhexlify(text.replace(" ", ""))


@given(
    st.text("0123456789", min_size=12, max_size=12),
    st.integers(0, 255),
    st.binary(max_size=200),
    st.integers(0, 4),
)
def test_their_frames_parse_with_ours(address, control, data, preamble):
    theirs = bytes(DLT645Protocol.build_frame(d.parse_address(address), control, data, preamble))
    assert theirs == d.build_frame(address, control, data, preamble)
    assert d.parse_frame(theirs) == d.Frame(address, control, data)


@given(
    st.text("0123456789", min_size=12, max_size=12),
    st.integers(0, 255),
    st.binary(max_size=200),
    st.integers(0, 4),
)
def test_our_frames_parse_with_theirs(address, control, data, preamble):
    rest, frame = DLT645Protocol.deserialize_with_remaining(d.build_frame(address, control, data, preamble))
    assert rest == b"" and frame is not None
    assert bytes(frame.addr) == d.parse_address(address)
    assert frame.ctrl_code == control and bytes(frame.data) == data


@pytest.mark.parametrize("di", ["00000000", "00010000", "02010100", "02020100", "02030000", "0201FF00"])
def test_read_request_matches_their_client(di):
    theirs = bytes(DLT645Protocol.build_frame(ADDR, 0x11, struct.pack("<I", int(di, 16))))
    assert theirs == d.read_request(A, di)


SHARED = [k for k in d.DI_TABLE if len(k) == 8 and int(k, 16) in DIMap]


def test_di_table_agrees():
    assert len(SHARED) >= 30
    for di in SHARED:
        assert DIMap[int(di, 16)].data_format == d.DI_TABLE[di][1], di
    units = {
        "kWh": "kWh",
        "kvarh": "kvarh",
        "V": "V",
        "A": "A",
        "kW": "kW",
        "kvar": "kvar",
        "kVA": "kVA",
        "Hz": "Hz",
        "Cel": "\u2103",
    }
    for di in SHARED:
        ours = d.DI_TABLE[di][2]
        if ours in units:
            assert DIMap[int(di, 16)].unit.strip() == units[ours], di


NUMERIC = sorted({(d.DI_TABLE[k][1], d.DI_TABLE[k][3]) for k in SHARED if "X" in d.DI_TABLE[k][1]})


@pytest.mark.parametrize("fmt,signed", NUMERIC)
@given(data=st.data())
def test_value_formats_agree(fmt, signed, data):
    decimals = d.format_info(fmt)[1]
    digits = fmt.count("X")
    top = 8 * 10 ** (digits - 1) - 1  # the package reads bit7 as a sign in every format
    mantissa = data.draw(st.integers(-top if signed else 0, top))
    value = mantissa / 10**decimals
    ours = d.encode_value(value, fmt, signed)
    assert bytes(float_to_bcd(value, fmt, "little")) == ours
    assert bcd_to_float(ours, fmt, "little") == d.decode_value(ours, fmt, signed)


def test_worked_reply_values_decode_with_theirs():
    for text, fmt, value in [
        ("68 61 01 00 00 00 00 68 91 08 33 33 33 33 83 34 33 B3 34 16", "XXXXXX.XX", -1.5),
        ("68 61 01 00 00 00 00 68 91 07 33 34 35 35 56 84 B3 28 16", "XXX.XXX", -5.123),
        ("68 61 01 00 00 00 00 68 91 07 33 33 36 35 39 4B 34 53 16", "XX.XXXX", 1.1806),
    ]:
        _, frame = DLT645Protocol.deserialize_with_remaining(h(text))
        assert frame is not None
        assert bcd_to_float(bytes(frame.data[4:]), fmt, "little") == value


def test_difference_time_sync_byte_order():
    when = (2024, 3, 15, 10, 20, 30)
    theirs_data = bytes([0x24, 0x03, 0x15, 0x10, 0x20, 0x30])  # what broadcast_time_sync() puts in DATA
    theirs = bytes(DLT645Protocol.build_frame(b"\x99" * 6, 0x08, theirs_data))
    assert theirs == d.time_sync_request(when, order="yy_first")
    assert theirs != d.time_sync_request(when)  # our default: ss first (protocol-facts §1.7 vector)


def test_difference_baud_feature_word():
    bitmap = {600: 0x02, 1200: 0x04, 2400: 0x08, 4800: 0x10, 9600: 0x20, 19200: 0x40}
    assert BaudRateCode[1200] == bitmap[1200] and BaudRateCode[2400] == bitmap[2400]
    assert BaudRateCode[4800] == 0x16 != bitmap[4800]
    assert BaudRateCode[9600] == 0x32 != bitmap[9600]


def test_difference_sign_bit_on_unsigned_items():
    raw = d.encode_value(800.5, "XXX.X")  # unsigned voltage 800.5 V (not seen on real meters)
    assert d.decode_value(raw, "XXX.X") == 800.5
    assert bcd_to_float(raw, "XXX.X", "little") == -0.5
