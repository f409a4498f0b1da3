"""BCD helpers: vectors, nibble validation, round trips."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.bcd import bcd_to_int, int_to_bcd, is_bcd
from protocols.errors import EncodingError, ProtocolError


@pytest.mark.parametrize(
    ("data", "little", "value"),
    [
        (b"\x78\x56\x34\x12", True, 12345678),
        (b"\x12\x34\x56\x78", False, 12345678),
        (b"\x00", True, 0),
        (b"\x99\x99", True, 9999),
        (b"\x01\x00", True, 1),
        (b"\x01\x00", False, 100),
        (b"", True, 0),
    ],
)
def test_vectors(data, little, value):
    assert bcd_to_int(data, little) == value
    assert int_to_bcd(value, len(data), little) == data


@pytest.mark.parametrize("data", [b"\x0a", b"\xa0", b"\x12\x3f", b"\xff\xff"])
def test_bad_nibble(data):
    assert not is_bcd(data)
    with pytest.raises(EncodingError, match="not BCD"):
        bcd_to_int(data)


def test_bad_nibble_message_names_byte():
    with pytest.raises(EncodingError, match=r"byte 1 is 3F in 123f"):
        bcd_to_int(b"\x12\x3f", False)


@pytest.mark.parametrize(
    ("value", "nbytes"), [(-1, 2), (10000, 2), (100, 1), (1, 0), (1.5, 2), (True, 1), ("12", 1)]
)
def test_encode_rejects(value, nbytes):
    with pytest.raises(EncodingError):
        int_to_bcd(value, nbytes)


def test_decode_rejects_non_bytes():
    with pytest.raises(EncodingError):
        bcd_to_int([1, 2])  # type: ignore[arg-type]


@given(st.integers(0, 8), st.data(), st.booleans())
def test_round_trip(nbytes, data, little):
    value = data.draw(st.integers(0, 10 ** (2 * nbytes) - 1))
    encoded = int_to_bcd(value, nbytes, little)
    assert len(encoded) == nbytes and is_bcd(encoded)
    assert bcd_to_int(encoded, little) == value
    assert bcd_to_int(encoded[::-1], not little) == value
    big = encoded if not little else encoded[::-1]
    assert big.hex() == ("%0*d" % (2 * nbytes, value) if nbytes else "")


@given(st.binary(max_size=12), st.booleans())
def test_decode_any_bytes(data, little):
    try:
        value = bcd_to_int(data, little)
    except ProtocolError:
        assert not is_bcd(data)
    else:
        assert int_to_bcd(value, len(data), little) == data
