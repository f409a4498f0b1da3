"""Register point encodings: Modbus registers <-> values.

Types: u16 s16 u32 s32 u64 s64 f32 f64 bcd16 bcd32, ``str<N>`` (N registers of text, two
characters each, high byte first, NUL-padded) and ``bit<N>`` (bit N, 0..15, of one register).

Order letters name the bytes of the big-endian value as they appear on the wire: ABCD is big-endian
(the Modbus default), CDAB swaps the words, BADC swaps the bytes in each word, DCBA is little-endian.
For 64-bit types the pattern extends (ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA); for 16-bit types only
the byte swap matters (ABCD = CDAB, BADC = DCBA). Text accepts ABCD and BADC.

Scale and offset: decode returns ``raw * scale + offset``; encode computes
``round((value - offset) / scale)`` for integer and BCD types (exact for ints when divisible).
Every failure raises EncodingError.
"""

import struct

from protocols.bcd import bcd_to_int, int_to_bcd
from protocols.errors import EncodingError

__all__ = ["ORDERS", "TYPES", "decode", "encode", "register_count"]

TYPES = ("u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64", "bcd16", "bcd32")
ORDERS = ("ABCD", "DCBA", "BADC", "CDAB")

# type -> (registers, kind, signed); kind: "i" int, "f" float, "b" BCD
_FIXED = {
    "u16": (1, "i", False), "s16": (1, "i", True),
    "u32": (2, "i", False), "s32": (2, "i", True),
    "u64": (4, "i", False), "s64": (4, "i", True),
    "f32": (2, "f", False), "f64": (4, "f", False),
    "bcd16": (1, "b", False), "bcd32": (2, "b", False),
}

_F32_MAX = 3.4028234663852886e38
_F32_OVERFLOW = 3.4028235677973366e38  # values this large round to infinity in binary32


def _parse_type(type: str) -> tuple:
    """(registers, kind, arg) for a type name; kind "s" text (arg unused), "t" bit (arg = bit)."""
    spec = _FIXED.get(type) if isinstance(type, str) else None
    if spec is not None:
        return spec
    if isinstance(type, str):
        for prefix, kind, low, high in (("str", "s", 1, 125), ("bit", "t", 0, 15)):
            digits = type[len(prefix):]
            if type.startswith(prefix) and digits.isdigit() and len(digits) <= 3:
                n = int(digits)
                if low <= n <= high and str(n) == digits:
                    return (n if kind == "s" else 1), kind, n
    raise EncodingError("unknown point type %r" % (type,))


def register_count(type: str) -> int:
    """Number of 16-bit registers a point of ``type`` occupies."""
    return _parse_type(type)[0]


def _flags(order: str, kind: str) -> tuple:
    """(swap_bytes, swap_words) for an order name."""
    if order not in ORDERS or (kind == "s" and order not in ("ABCD", "BADC")):
        raise EncodingError("unknown byte order %r for this type" % (order,))
    return order[0] in "BD", order[0] in "CD"


def _reorder(data: bytes, order: str, kind: str) -> bytes:
    """Map wire bytes <-> big-endian bytes (the mapping is its own inverse)."""
    swap_bytes, swap_words = _flags(order, kind)
    if kind == "s":
        swap_words = False
    if not swap_bytes and not swap_words:
        return data
    n = len(data)
    out = bytearray(n)
    for w in range(0, n, 2):
        dst = n - 2 - w if swap_words else w
        if swap_bytes:
            out[dst] = data[w + 1]
            out[dst + 1] = data[w]
        else:
            out[dst] = data[w]
            out[dst + 1] = data[w + 1]
    return bytes(out)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decode(registers: list, type: str, order: str = "ABCD", scale: float = 1,
           offset: float = 0) -> int | float | str:
    """Decode the registers of one point to its value (``raw * scale + offset``).

    ``bit<N>`` returns a bool and ``str<N>`` a str (trailing NULs and spaces stripped, one
    character per byte, Latin-1); scale and offset do not apply to them.
    """
    nregs, kind, arg = _parse_type(type)
    if not isinstance(registers, (list, tuple)) or len(registers) != nregs:
        raise EncodingError("%s needs %d registers, got %r" % (type, nregs, registers))
    for r in registers:
        if not isinstance(r, int) or r < 0 or r > 0xFFFF:
            raise EncodingError("register value %r outside 0..65535" % (r,))
    data = _reorder(struct.pack(">%dH" % nregs, *registers), order, kind)
    if kind == "s":
        end = len(data)
        while end and data[end - 1] in (0, 32):
            end -= 1
        return "".join([chr(b) for b in data[:end]])
    raw: int | float = 0
    if kind == "t":
        return (int.from_bytes(data, "big") >> arg) & 1 == 1
    if kind == "b":
        raw = bcd_to_int(data, False)
    elif kind == "f":
        raw = struct.unpack(">f" if nregs == 2 else ">d", data)[0]
    else:
        raw = int.from_bytes(data, "big")
        if arg and raw >> (16 * nregs - 1):
            raw -= 1 << (16 * nregs)
    if scale == 1 and offset == 0:
        return raw
    if not _is_number(scale) or not _is_number(offset):
        raise EncodingError("scale and offset must be numbers, got %r and %r" % (scale, offset))
    return raw * scale + offset


def _raw_int(value: int | float, scale: float, offset: float, type: str) -> int:
    if isinstance(value, int) and isinstance(scale, int) and isinstance(offset, int) \
            and scale != 0 and (value - offset) % scale == 0:
        return (value - offset) // scale
    try:
        x = (value - offset) / scale
    except ZeroDivisionError:
        raise EncodingError("scale 0 cannot encode %s" % type) from None
    if x != x or x in (float("inf"), float("-inf")):
        raise EncodingError("%s cannot carry %r" % (type, x))
    return round(x)


def encode(value: int | float | str | bool, type: str, order: str = "ABCD", scale: float = 1,
           offset: float = 0) -> list[int]:
    """Encode one point value to its registers; EncodingError when it does not fit the type.

    ``bit<N>`` gives the register with only bit N set (or 0): the caller merges it into the
    register it read. ``str<N>`` is NUL-padded to 2N characters.
    """
    nregs, kind, arg = _parse_type(type)
    _flags(order, kind)
    if kind == "s":
        if not isinstance(value, str):
            raise EncodingError("%s needs a str, got %r" % (type, value))
        codes = [ord(c) for c in value]
        if len(codes) > 2 * nregs or (codes and max(codes) > 255):
            raise EncodingError("text %r does not fit %s (2 Latin-1 characters per register)" % (value, type))
        data = bytes(codes) + bytes(2 * nregs - len(codes))
    elif kind == "t":
        if not (value is True or value is False or value in (0, 1)):
            raise EncodingError("%s needs a bool, got %r" % (type, value))
        data = struct.pack(">H", (1 << arg) if value else 0)
    else:
        if not isinstance(value, (int, float)) or isinstance(value, bool) \
                or not _is_number(scale) or not _is_number(offset):
            raise EncodingError("%s needs a number with numeric scale/offset, got %r" % (type, value))
        bits = 16 * nregs
        if kind == "f":
            if scale == 0:
                raise EncodingError("scale 0 cannot encode %s" % type)
            x = float(value - offset) / scale if (scale != 1 or offset != 0) else float(value)
            if nregs == 2 and x == x and _F32_OVERFLOW <= abs(x) < float("inf"):
                raise EncodingError("%r is outside the f32 range (max %.9g)" % (x, _F32_MAX))
            try:
                data = struct.pack(">f" if nregs == 2 else ">d", x)
            except OverflowError:
                raise EncodingError("%r does not fit %s" % (x, type)) from None
        else:
            raw = _raw_int(value, scale, offset, type)
            if kind == "b":
                if raw < 0 or raw >= 10 ** (4 * nregs):
                    raise EncodingError("%d outside 0..%d for %s" % (raw, 10 ** (4 * nregs) - 1, type))
                data = int_to_bcd(raw, 2 * nregs, False)
            else:
                low = -(1 << (bits - 1)) if arg else 0
                high = (1 << (bits - 1)) - 1 if arg else (1 << bits) - 1
                if raw < low or raw > high:
                    raise EncodingError("%d outside %d..%d for %s" % (raw, low, high, type))
                if raw < 0:
                    raw += 1 << bits
                data = raw.to_bytes(2 * nregs, "big")
    return list(struct.unpack(">%dH" % nregs, _reorder(data, order, kind)))
