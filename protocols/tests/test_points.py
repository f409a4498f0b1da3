"""Point encodings: vectors for every type and order, limits, scale/offset, round-trip properties."""

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.errors import EncodingError
from protocols.points import ORDERS, TYPES, decode, encode, register_count

INT_RANGES = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
    "u64": (0, 2**64 - 1),
    "s64": (-(2**63), 2**63 - 1),
    "bcd16": (0, 9999),
    "bcd32": (0, 99999999),
}


@pytest.mark.parametrize(
    ("type", "n"),
    [
        ("u16", 1),
        ("s16", 1),
        ("u32", 2),
        ("s32", 2),
        ("f32", 2),
        ("u64", 4),
        ("s64", 4),
        ("f64", 4),
        ("bcd16", 1),
        ("bcd32", 2),
        ("str1", 1),
        ("str10", 10),
        ("bit0", 1),
        ("bit15", 1),
    ],
)
def test_register_count(type, n):
    assert register_count(type) == n


@pytest.mark.parametrize("type", ["u8", "str0", "str", "bit16", "bit", "str01", "f16", "", "U16", 16, None])
def test_unknown_type(type):
    with pytest.raises(EncodingError):
        register_count(type)


# value 0x01020304 as wire registers in each order
@pytest.mark.parametrize(
    ("order", "regs"),
    [
        ("ABCD", [0x0102, 0x0304]),
        ("CDAB", [0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403]),
        ("DCBA", [0x0403, 0x0201]),
    ],
)
def test_orders_32(order, regs):
    assert encode(0x01020304, "u32", order) == regs
    assert decode(regs, "u32", order) == 0x01020304


@pytest.mark.parametrize(
    ("order", "regs"),
    [
        ("ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_orders_64(order, regs):
    assert encode(0x0102030405060708, "u64", order) == regs
    assert decode(regs, "u64", order) == 0x0102030405060708


@pytest.mark.parametrize(
    ("order", "reg"), [("ABCD", 0x1234), ("CDAB", 0x1234), ("BADC", 0x3412), ("DCBA", 0x3412)]
)
def test_orders_16(order, reg):
    assert encode(0x1234, "u16", order) == [reg]


@pytest.mark.parametrize(
    ("value", "type", "order", "regs"),
    [
        (-1, "s16", "ABCD", [0xFFFF]),
        (-2, "s32", "CDAB", [0xFFFE, 0xFFFF]),
        (-(2**63), "s64", "ABCD", [0x8000, 0, 0, 0]),
        (1.0, "f32", "ABCD", [0x3F80, 0x0000]),
        (1.0, "f32", "CDAB", [0x0000, 0x3F80]),
        (-2.5, "f32", "DCBA", [0x0000, 0x20C0]),
        (1.0, "f64", "ABCD", [0x3FF0, 0, 0, 0]),
        (1234, "bcd16", "ABCD", [0x1234]),
        (12345678, "bcd32", "ABCD", [0x1234, 0x5678]),
        (12345678, "bcd32", "CDAB", [0x5678, 0x1234]),
        ("AB1", "str2", "ABCD", [0x4142, 0x3100]),
        ("AB1", "str2", "BADC", [0x4241, 0x0031]),
        (True, "bit3", "ABCD", [0x0008]),
        (False, "bit3", "ABCD", [0x0000]),
        (True, "bit15", "ABCD", [0x8000]),
    ],
)
def test_vectors(value, type, order, regs):
    assert encode(value, type, order) == regs
    assert decode(regs, type, order) == value


def test_nan_and_inf_floats():
    assert math.isnan(float(decode(encode(float("nan"), "f32"), "f32")))
    assert decode(encode(float("-inf"), "f64", "DCBA"), "f64", "DCBA") == float("-inf")
    assert encode(float("inf"), "f32") == [0x7F80, 0]


def test_bit_ignores_other_bits():
    assert decode([0xFFF7], "bit3") is False
    assert decode([0x0008], "bit3") is True


def test_string_strips_padding():
    assert decode([0x4142, 0x2000], "str2") == "AB"
    assert decode([0, 0], "str2") == ""
    assert decode([0xE94F], "str1") == "\xe9O"


def test_scale_offset():
    assert decode([2301], "u16", scale=0.1) == pytest.approx(230.1)
    assert encode(230.1, "u16", scale=0.1) == [2301]
    assert decode([100], "s16", scale=2, offset=-40) == 160
    assert encode(160, "s16", scale=2, offset=-40) == [100]
    assert encode(-40.0, "u16", scale=0.5, offset=-40) == [0]
    assert decode([0x3F80, 0], "f32", scale=1000) == 1000.0
    assert encode(1000.0, "f32", scale=1000) == [0x3F80, 0]
    assert decode([0x0012], "bcd16", scale=0.1) == pytest.approx(1.2)
    # exact integer path for large values
    assert encode(2**64 - 1, "u64", scale=1) == [0xFFFF] * 4
    assert encode(2**63 + 2 * 3, "u64", scale=2, offset=6) == [0x4000, 0, 0, 0]


@pytest.mark.parametrize(
    ("value", "type", "kw"),
    [
        (65536, "u16", {}),
        (-1, "u16", {}),
        (32768, "s16", {}),
        (-32769, "s16", {}),
        (2**32, "u32", {}),
        (2**63, "s64", {}),
        (2**64, "u64", {}),
        (-1, "u64", {}),
        (10000, "bcd16", {}),
        (-1, "bcd16", {}),
        (10**8, "bcd32", {}),
        (float("nan"), "u16", {}),
        (float("inf"), "s32", {}),
        (1e300, "u64", {}),
        (6553.6, "u16", {"scale": 0.1}),
        (1, "u16", {"scale": 0}),
        (1.0, "f32", {"scale": 0}),
        (1e39, "f32", {}),
        (-3.5e38, "f32", {}),
        ("1", "u16", {}),
        (None, "u16", {}),
        (True, "u16", {}),
        (1, "u16", {"scale": "x"}),
        ("ABCDE", "str2", {}),
        ("\u20ac", "str1", {}),
        (1, "str1", {}),
        (2, "bit1", {}),
        ("x", "bit1", {}),
        (1, "u16", {"order": "ABDC"}),
        ("AB", "str1", {"order": "CDAB"}),
    ],
)
def test_encode_rejects(value, type, kw):
    with pytest.raises(EncodingError):
        encode(value, type, **kw)


@pytest.mark.parametrize(
    ("regs", "type", "kw"),
    [
        ([0x1A34], "bcd16", {}),
        ([0x1234, 0x567F], "bcd32", {}),
        ([0xFFFF], "bcd16", {"order": "DCBA"}),
        ([1, 2], "u16", {}),
        ([1], "u32", {}),
        ([65536], "u16", {}),
        ([-1], "u16", {}),
        ([1.0], "u16", {}),
        ("ab", "u16", {}),
        (None, "u16", {}),
        ([1], "u16", {"order": "XYZW"}),
        ([1], "u16", {"scale": None}),
    ],
)
def test_decode_rejects(regs, type, kw):
    with pytest.raises(EncodingError):
        decode(regs, type, **kw)


def test_bcd_error_names_nibble():
    with pytest.raises(EncodingError, match="not BCD"):
        decode([0x12A4], "bcd16")


orders = st.sampled_from(ORDERS)


@pytest.mark.parametrize("type", sorted(INT_RANGES))
@given(data=st.data(), order=orders)
def test_int_round_trip(type, data, order):
    low, high = INT_RANGES[type]
    value = data.draw(st.integers(low, high))
    regs = encode(value, type, order)
    assert len(regs) == register_count(type)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode(regs, type, order) == value


@pytest.mark.parametrize("type", sorted(INT_RANGES))
@given(data=st.data(), order=orders)
def test_int_decode_encode(type, data, order):
    n = register_count(type)
    regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    try:
        value = decode(regs, type, order)
    except EncodingError:
        assert type.startswith("bcd")
        return
    assert encode(value, type, order) == regs


@given(value=st.floats(width=32), order=orders)
def test_f32_round_trip(value, order):
    got = decode(encode(value, "f32", order), "f32", order)
    assert (math.isnan(float(got)) and math.isnan(value)) or got == value


@given(value=st.floats(), order=orders)
def test_f64_round_trip(value, order):
    got = decode(encode(value, "f64", order), "f64", order)
    got = float(got)
    assert struct.pack(">d", got) == struct.pack(">d", value) or (math.isnan(got) and math.isnan(value))


@given(regs=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), order=orders)
def test_f32_bits_preserved(regs, order):
    value = float(decode(regs, "f32", order))
    if not math.isnan(value):
        assert encode(value, "f32", order) == regs


@given(n=st.integers(1, 20), data=st.data(), order=st.sampled_from(["ABCD", "BADC"]))
def test_str_round_trip(n, data, order):
    alphabet = st.characters(min_codepoint=1, max_codepoint=255)
    text = data.draw(st.text(alphabet, max_size=2 * n).filter(lambda s: not s.endswith((" ", "\x00"))))
    type = "str%d" % n
    regs = encode(text, type, order)
    assert len(regs) == n
    assert decode(regs, type, order) == text


@given(bit=st.integers(0, 15), value=st.booleans(), order=orders)
def test_bit_round_trip(bit, value, order):
    type = "bit%d" % bit
    assert decode(encode(value, type, order), type, order) is value


@given(
    raw=st.integers(0, 0xFFFF),
    scale=st.sampled_from([0.1, 0.01, 2, 10, 0.5]),
    offset=st.sampled_from([0, -40, 273.15, 1000]),
)
def test_scaled_round_trip(raw, scale, offset):
    value = decode([raw], "u16", scale=scale, offset=offset)
    assert encode(value, "u16", scale=scale, offset=offset) == [raw]


def test_types_constant_covers_fixed_types():
    for type in TYPES:
        assert register_count(type) in (1, 2, 4)
