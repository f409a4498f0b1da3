"""Packed BCD helpers shared by the Modbus point encodings, DL/T 645 and CJ/T 188.

Each byte carries two decimal digits, the high nibble being the more significant one.
``little_endian=True`` (the DL/T 645 / CJ/T 188 wire order) puts the least significant pair of
digits in the first byte; ``little_endian=False`` puts the most significant pair first.
"""

from protocols.errors import EncodingError

__all__ = ["bcd_to_int", "int_to_bcd", "is_bcd"]


def is_bcd(data: bytes) -> bool:
    """True when every nibble of ``data`` is a decimal digit 0..9."""
    for b in data:
        if (b >> 4) > 9 or (b & 0x0F) > 9:
            return False
    return True


def bcd_to_int(data: bytes, little_endian: bool = True) -> int:
    """Decode packed BCD ``data`` to a non-negative int.

    Raises EncodingError naming the offending byte when a nibble is above 9, or when ``data``
    is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError("BCD data must be bytes, got %s" % type(data).__name__)
    n = len(data)
    value = 0
    for i in range(n):
        pos = n - 1 - i if little_endian else i
        b = data[pos]
        hi = b >> 4
        lo = b & 0x0F
        if hi > 9 or lo > 9:
            raise EncodingError("not BCD: byte %d is %02X in %s" % (pos, b, _hex(data)))
        value = value * 100 + hi * 10 + lo
    return value


def int_to_bcd(value: int, nbytes: int, little_endian: bool = True) -> bytes:
    """Encode a non-negative int as ``nbytes`` of packed BCD (2 digits per byte).

    Raises EncodingError when ``value`` is not an int, is negative, or needs more than
    ``2 * nbytes`` digits.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise EncodingError("BCD value must be an int, got %s" % type(value).__name__)
    if not isinstance(nbytes, int) or nbytes < 0:
        raise EncodingError("BCD length must be a non-negative int")
    if value < 0:
        raise EncodingError("BCD cannot carry negative value %d" % value)
    out = bytearray(nbytes)
    rest = value
    for i in range(nbytes):
        pair = rest % 100
        rest //= 100
        out[i if little_endian else nbytes - 1 - i] = ((pair // 10) << 4) | (pair % 10)
    if rest:
        raise EncodingError("value %d needs more than %d BCD digits" % (value, 2 * nbytes))
    return bytes(out)


def _hex(data: bytes) -> str:
    """Space-free lowercase hex of ``data`` (works on MicroPython too)."""
    return "".join("%02x" % b for b in data)
