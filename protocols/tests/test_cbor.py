"""protocols.cbor: RFC 8949 Appendix A vectors, RFC 8428 example, determinism, strictness, cbor2 cross-check.

Appendix A coverage (protocol-facts section 5.2 plus the rest of Appendix A that the subset covers):
every value is checked both ways (dumps == hex, loads == value). Tags 0 and 1 decode to ``Tag`` rather than
``datetime`` (the codec does not interpret them). Not covered, by design: simple(16) ``f0`` and
simple(255) ``f8ff`` (unassigned simple values raise ``CborError``); the non-preferred float forms
(``fa7f800000`` ...) and the indefinite-length items are decode-only (the encoder never produces them).
"""

import binascii
import math
import struct

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import cbor
from protocols.cbor import UNDEFINED, Tag, dumps, loads
from protocols.errors import CborError


def h(s: str) -> bytes:
    return binascii.unhexlify(s)


INF = float("inf")

# (value, preferred-serialization hex); from RFC 8949 Appendix A
APPENDIX_A = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (18446744073709551616, "c249010000000000000000"),
    (-18446744073709551616, "3bffffffffffffffff"), (-18446744073709551617, "c349010000000000000000"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"), (1.5, "f93e00"),
    (65504.0, "f97bff"), (100000.0, "fa47c35000"), (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"), (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"),
    (-4.0, "f9c400"), (-4.1, "fbc010666666666666"), (INF, "f97c00"), (-INF, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"), (UNDEFINED, "f7"),
    (Tag(0, "2013-03-21T20:04:00Z"), "c074323031332d30332d32315432303a30343a30305a"),
    (Tag(1, 1363896240), "c11a514b67b0"), (Tag(1, 1363896240.5), "c1fb41d452d9ec200000"),
    (Tag(23, b"\x01\x02\x03\x04"), "d74401020304"), (Tag(24, b"dIETF"), "d818456449455446"),
    (Tag(32, "http://www.example.com"), "d82076687474703a2f2f7777772e6578616d706c652e636f6d"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"), ("IETF", "6449455446"),
    ("\"\\", "62225c"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    ({"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, "a56161614161626142616361436164614461656145"),
]

# decode-only: non-preferred floats and indefinite lengths (Appendix A)
DECODE_ONLY = [
    ("fa7f800000", INF), ("fb7ff0000000000000", INF), ("faff800000", -INF), ("fbfff0000000000000", -INF),
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"), ("7f657374726561646d696e67ff", "streaming"),
    ("9fff", []), ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]), ("9f01820203820405ff", [1, [2, 3], [4, 5]]),
    ("83018202039f0405ff", [1, [2, 3], [4, 5]]), ("83019f0203ff820405", [1, [2, 3], [4, 5]]),
    ("9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff", list(range(1, 26))),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}), ("826161bf61626163ff", ["a", {"b": "c"}]),
    ("bf6346756ef563416d7421ff", {"Fun": True, "Amt": -2}),
]
NAN_FORMS = ["f97e00", "fa7fc00000", "fb7ff8000000000000"]

RFC8428_CBOR = (
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f"
    "6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a3006763757272656e7406"
    "2302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a300"
    "6763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333"
)
RFC8428_DETERMINISTIC = (
    "87a70067766f6c7461676501615602fb405e066666666666200521781b75726e3a6465763a6f773a313065323037336130313038"
    "3030363a22fb41d303a15b001062236141a3006763757272656e7402fb3ff33333333333330624a3006763757272656e7402fb3f"
    "f4cccccccccccd0623a3006763757272656e7402fb3ff66666666666660622a3006763757272656e7402f93e000621a300676375"
    "7272656e7402fb3ff999999999999a0620a3006763757272656e7402fb3ffb3333333333330600"
)
RFC8428_VALUE = [
    {-2: "urn:dev:ow:10e2073a0108006:", -3: 1276020076.001, -4: "A", -1: 5, 0: "voltage", 1: "V", 2: 120.1},
    {0: "current", 6: -5, 2: 1.2}, {0: "current", 6: -4, 2: 1.3}, {0: "current", 6: -3, 2: 1.4},
    {0: "current", 6: -2, 2: 1.5}, {0: "current", 6: -1, 2: 1.6}, {0: "current", 6: 0, 2: 1.7},
]
PROJECT_PACK = [
    {-2: "urn:dev:mac:0024befffe804ff1:", -3: 1710498030, 0: "ua", 1: "V", 2: 230.5},
    {0: "ia", 1: "A", 2: 5.123}, {0: "p", 1: "W", 2: 1180.6}, {0: "ep", 1: "J", 2: 44444412000.0},
    {0: "water", 1: "m3", 2: 123.45},
]
PROJECT_HEX = (
    "85a50062756101615602f95b3421781d75726e3a6465763a6d61633a303032346265666666653830346666313a221a65f420eea3"
    "0062696101614102fb40147df3b645a1cba300617001615702fb4092726666666666a30062657001614a02fb4224b22fd0c00000"
    "a30065776174657201626d3302fb405edccccccccccd"
)


def same(a: object, b: object) -> bool:
    """Equality that also tells -0.0 from 0.0 and float from int (exactness of a round trip)."""
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is not type(b) and not (isinstance(a, bytes) and isinstance(b, bytes)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    return a == b


@pytest.mark.parametrize("value,hexstr", APPENDIX_A, ids=[x[1] for x in APPENDIX_A])
def test_appendix_a_both_ways(value: object, hexstr: str) -> None:
    assert binascii.hexlify(dumps(value)).decode() == hexstr
    assert same(loads(h(hexstr)), value)


@pytest.mark.parametrize("hexstr,value", DECODE_ONLY, ids=[x[0][:20] for x in DECODE_ONLY])
def test_appendix_a_decode_only(hexstr: str, value: object) -> None:
    assert same(loads(h(hexstr)), value)
    assert same(cbor2.loads(h(hexstr)), value)  # the reference agrees


@pytest.mark.parametrize("hexstr", NAN_FORMS)
def test_nan_forms_decode_and_encode_as_half(hexstr: str) -> None:
    value = loads(h(hexstr))
    assert math.isnan(value)  # type: ignore[arg-type]
    assert dumps(value) == h("f97e00")


def test_appendix_a_agrees_with_cbor2_canonical() -> None:
    for item, hexstr in APPENDIX_A:
        value: object = item
        if isinstance(value, Tag):
            value = cbor2.CBORTag(value.tag, value.value)
        elif value is UNDEFINED:
            value = cbor2.undefined
        assert cbor2.dumps(value, canonical=True).hex() == hexstr


def test_rfc8428_example_decodes_and_reencodes_deterministically() -> None:
    value = loads(h(RFC8428_CBOR))
    assert same(value, RFC8428_VALUE)
    assert len(h(RFC8428_CBOR)) == 195
    assert dumps(value) == h(RFC8428_DETERMINISTIC)
    assert loads(h(RFC8428_DETERMINISTIC)) == value


def test_project_pack_vector() -> None:
    assert dumps(PROJECT_PACK) == h(PROJECT_HEX)
    assert len(h(PROJECT_HEX)) == 126
    assert same(loads(h(PROJECT_HEX)), PROJECT_PACK)


def test_key_order_is_bytewise_rfc8949_4_2_1() -> None:
    value = {False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3, 100: 2, 10: 1}
    out = dumps(value)
    assert out == h("a8" "0a01" "186402" "2003" "617a04" "62616105" "81186406" "812007" "f408")
    decoded = loads(out)
    assert list(decoded) == [10, 100, -1, "z", "aa", (100,), (-1,), False]  # type: ignore[call-overload]


def test_senml_labels_sorted_like_cbor2_canonical() -> None:
    rec = {k: 0 for k in (-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8)}
    assert dumps(rec) == cbor2.dumps(rec, canonical=True)
    assert list(loads(dumps(rec))) == [0, 1, 2, 3, 4, 5, 6, 7, 8, -1, -2, -3, -4, -5, -6]  # type: ignore


def test_every_half_float_round_trips_and_matches_struct_e() -> None:
    for bits in range(0x10000):
        raw = b"\xf9" + struct.pack(">H", bits)
        value = loads(raw)
        ref = struct.unpack(">e", raw[1:])[0]
        if math.isnan(ref):
            assert math.isnan(value) and dumps(value) == b"\xf9\x7e\x00"  # type: ignore[arg-type]
        else:
            assert same(value, ref) and dumps(value) == raw


def test_other_inputs_and_containers() -> None:
    assert dumps((1, 2)) == dumps([1, 2]) == h("820102")
    assert dumps(bytearray(b"\x01")) == dumps(memoryview(b"\x01")) == h("4101")
    assert loads(bytearray(h("820102"))) == [1, 2]
    assert loads(memoryview(h("820102"))) == [1, 2]
    assert dumps(2**100) == cbor2.dumps(2**100, canonical=True) == h("c24d10000000000000000000000000")
    assert loads(dumps(2**100)) == 2**100 and loads(dumps(-(2**100))) == -(2**100)
    assert loads(h("c240")) == 0 and loads(h("c34100")) == -1  # non-preferred bignums are accepted
    assert loads(h("a1820102f5")) == {(1, 2): True}
    assert loads(h("1800")) == 0  # non-preferred argument: well-formed, accepted
    assert Tag(5, [1]) == Tag(5, [1]) and Tag(5, 1) != Tag(6, 1) and repr(Tag(1, 2)) == "Tag(1, 2)"


BAD = [
    ("", "empty"), ("18", "truncated argument"), ("1a0000", "truncated argument"), ("62c3", "short text"),
    ("5affffffff00", "length beyond input"), ("9b00000000ffffffff00", "array beyond input"),
    ("bb00000000ffffffff00", "map beyond input"), ("0000", "trailing byte"), ("1c", "reserved ai"),
    ("3d", "reserved ai"), ("5e", "reserved ai"), ("7f61", "unterminated stream"), ("fc", "reserved ai"),
    ("62c328", "invalid utf-8"), ("63eda080", "encoded surrogate"), ("ff", "break outside"),
    ("1f", "indefinite uint"), ("3f", "indefinite nint"), ("df00", "indefinite tag"),
    ("5f6161ff", "text chunk in bytes"), ("5f5f4100ffff", "nested indefinite chunk"),
    ("f800", "two-byte simple < 32"), ("f820", "unassigned simple"), ("f0", "unassigned simple"),
    ("a201000100", "duplicate key"), ("c201", "bignum of an int"), ("a1a000f5", "map as key"),
    ("bf00ff", "map ends after key"), ("8181818181", "truncated nest"), ("f9", "truncated half"),
    ("fb000000", "truncated double"), ("c1", "tag without item"), ("a10a", "map without value"),
]


@pytest.mark.parametrize("hexstr,why", BAD, ids=[b[1] + ":" + b[0][:10] for b in BAD])
def test_decoder_is_strict(hexstr: str, why: str) -> None:
    with pytest.raises(CborError):
        loads(h(hexstr))


def test_nesting_limit() -> None:
    ok = b"\x81" * cbor.MAX_DEPTH + b"\x00"
    assert loads(ok) is not None
    with pytest.raises(CborError):
        loads(b"\x81" * (cbor.MAX_DEPTH + 1) + b"\x00")
    with pytest.raises(CborError):
        loads(b"\xc6" * 200 + b"\x00")
    deep: list = []
    for _ in range(cbor.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CborError):
        dumps(deep)
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(CborError):
        dumps(cyclic)


def test_every_truncation_of_a_valid_item_raises() -> None:
    data = h(RFC8428_DETERMINISTIC)
    for n in range(len(data)):
        with pytest.raises(CborError):
            loads(data[:n])


@pytest.mark.parametrize(
    "value", [{1, 2}, object(), "\ud800", Tag, complex(1, 2), {float("nan"): 1, -float("nan"): 2}]
)
def test_encoder_refuses_what_cbor_cannot_carry(value: object) -> None:
    with pytest.raises(CborError):
        dumps(value)


def test_loads_refuses_non_bytes() -> None:
    with pytest.raises(CborError):
        loads("00")  # type: ignore[arg-type]


# ---- property-based cross-check against cbor2 6.3.0 -------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False) | st.text(max_size=12) | st.binary(max_size=12)
)
keys = (
    st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=6) | st.binary(max_size=6)
    | st.floats(allow_nan=False)
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


@given(values)
def test_cbor2_reads_what_we_write(value: object) -> None:
    assert cbor2.loads(dumps(value)) == value


@given(values)
def test_we_read_what_cbor2_writes(value: object) -> None:
    assert loads(cbor2.dumps(value)) == value
    assert loads(cbor2.dumps(value, canonical=True)) == value


# maps whose keys all encode to the same length: there length-first (cbor2) and bytewise orders agree
same_length_maps = st.dictionaries(st.integers(min_value=-24, max_value=23), st.just(0), max_size=8) | (
    st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=1), st.just(0), max_size=8)
)
canonical_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=12)
)
canonical_values = st.recursive(
    canonical_scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.integers(min_value=-24, max_value=23), inner, max_size=6)
    | st.dictionaries(st.text(alphabet="abcdefgh", min_size=2, max_size=2), inner, max_size=6),
    max_leaves=25,
)


@given(canonical_values)
def test_identical_bytes_to_cbor2_canonical(value: object) -> None:
    assert dumps(value) == cbor2.dumps(value, canonical=True)


@given(same_length_maps)
def test_identical_bytes_for_flat_maps(value: dict) -> None:
    assert dumps(value) == cbor2.dumps(value, canonical=True)


@given(st.floats(width=32))
def test_binary32_values_never_take_eight_bytes(x: float) -> None:
    """What a single-precision MicroPython holds always fits half or single, exactly."""
    out = dumps(x)
    assert len(out) <= 5
    back = loads(out)
    assert (math.isnan(x) and math.isnan(back)) or same(back, x)  # type: ignore[arg-type]


@given(st.floats())
def test_floats_are_shortest_exact(x: float) -> None:
    out = dumps(x)
    if math.isnan(x):
        assert out == b"\xf9\x7e\x00"
        return
    assert same(loads(out), x)
    shorter = {9: [3, 5], 5: [3], 3: []}[len(out)]
    for size in shorter:  # no shorter form holds the value exactly
        fmt = ">e" if size == 3 else ">f"
        try:
            assert struct.unpack(fmt, struct.pack(fmt, x))[0] != x
        except OverflowError:
            pass
