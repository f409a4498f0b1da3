"""A-XDR type-tagged data as DL/T 698.45 carries it (sans-I/O, CPython and MicroPython).

Every value travels as a type tag byte and its content; multi-byte numbers are big-endian (unlike the
frame's length field). Strings and arrays carry an A-XDR length: one byte below 0x80, else 0x8N
followed by N length bytes (we accept N <= 2, i.e. lengths up to 65535).

A decoded value is a tuple ``(tag, value)`` so that it re-encodes to the same bytes:

| tag | type | value |
|---|---|---|
| 0 | null | None |
| 1, 2 | array, structure | list of (tag, value) |
| 3 | bool | True / False |
| 4 | bit-string | (number of bits, bytes) |
| 5, 6, 15, 16, 17, 18 | double-long, double-long-unsigned, integer, long, unsigned, long-unsigned | int |
| 20, 21, 22 | long64, long64-unsigned, enum | int |
| 9, 12, 85, 86, 87 | octet-string, UTF8-string (str), TSA, MAC, RN | bytes (str for 12) |
| 10 | visible-string | str (one char per byte) |
| 23, 24 | float32, float64 | float |
| 25, 26, 27, 28 | date_time, date, time, date_time_s | tuple of ints (0xFF / 0xFFFF: not given) |
| 80 | OI | int |
| 81, 83 | OAD, OMD | 8 hex digits, upper case ("00100200") |
| 82 | ROAD | (OAD, [OAD, ...]) |
| 84 | TI | (unit, interval) |
| 89 | scaler_unit | (scaler, unit code) |
| 91 | CSD | (0, OAD) or (1, ROAD) |
| 95 | COMDCB | (baud, parity, data bits, stop bits, flow control) |

RSD, MS, Region, SID, SID_MAC and RCSD (88, 90, 92-94, 96) are not decoded: EncodingError names them.
Decoding is bounded (MAX_DEPTH nesting levels, MAX_ITEMS values per call, lengths never beyond the
buffer) and raises only EncodingError, whatever the bytes.
"""

import binascii
import struct

from protocols.errors import EncodingError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "MAX_DEPTH", "MAX_ITEMS", "NAMES", "array", "decode", "decode_all", "decode_length", "encode",
    "encode_length", "name", "plain", "structure",
]

NULL = 0
ARRAY = 1
STRUCTURE = 2
BOOL = 3
BIT_STRING = 4
DOUBLE_LONG = 5
DOUBLE_LONG_UNSIGNED = 6
OCTET_STRING = 9
VISIBLE_STRING = 10
UTF8_STRING = 12
INTEGER = 15
LONG = 16
UNSIGNED = 17
LONG_UNSIGNED = 18
LONG64 = 20
LONG64_UNSIGNED = 21
ENUM = 22
FLOAT32 = 23
FLOAT64 = 24
DATE_TIME = 25
DATE = 26
TIME = 27
DATE_TIME_S = 28
OI = 80
OAD = 81
ROAD = 82
OMD = 83
TI = 84
TSA = 85
MAC = 86
RN = 87
SCALER_UNIT = 89
CSD = 91
COMDCB = 95

MAX_DEPTH = 8  # arrays in structures in arrays ...: meters nest 3 deep at most
MAX_ITEMS = 1024  # values in one decode call (an energy array is 5, a load record a few hundred)

NAMES = {
    0: "null", 1: "array", 2: "structure", 3: "bool", 4: "bit-string", 5: "double-long",
    6: "double-long-unsigned", 9: "octet-string", 10: "visible-string", 12: "UTF8-string", 15: "integer",
    16: "long", 17: "unsigned", 18: "long-unsigned", 20: "long64", 21: "long64-unsigned", 22: "enum",
    23: "float32", 24: "float64", 25: "date_time", 26: "date", 27: "time", 28: "date_time_s", 80: "OI",
    81: "OAD", 82: "ROAD", 83: "OMD", 84: "TI", 85: "TSA", 86: "MAC", 87: "RN", 88: "Region",
    89: "scaler_unit", 90: "RSD", 91: "CSD", 92: "MS", 93: "SID", 94: "SID_MAC", 95: "COMDCB", 96: "RCSD",
}

# fixed-size numbers: tag -> (struct format, size, low, high)
_NUMBERS = {
    5: (">i", 4, -0x80000000, 0x7FFFFFFF),
    6: (">I", 4, 0, 0xFFFFFFFF),
    15: (">b", 1, -0x80, 0x7F),
    16: (">h", 2, -0x8000, 0x7FFF),
    17: (">B", 1, 0, 0xFF),
    18: (">H", 2, 0, 0xFFFF),
    20: (">q", 8, -0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
    21: (">Q", 8, 0, 0xFFFFFFFFFFFFFFFF),
    22: (">B", 1, 0, 0xFF),
    80: (">H", 2, 0, 0xFFFF),
}
_FLOATS = {23: (">f", 4), 24: (">d", 8)}
# date/time types: tag -> field sizes in bytes (2 = a long-unsigned year or milliseconds)
_TIMES = {25: (2, 1, 1, 1, 1, 1, 1, 2), 26: (2, 1, 1, 1), 27: (1, 1, 1), 28: (2, 1, 1, 1, 1, 1)}
_BYTES = (9, 85, 86, 87)  # octet-string, TSA, MAC, RN: length + bytes


def name(tag: int) -> str:
    """The type's name as the standard spells it ("double-long-unsigned"), or "type N"."""
    return NAMES.get(tag, "type %d" % tag)


def array(items: list) -> tuple:
    """(1, items): an array of (tag, value) items, which should share one type."""
    return (ARRAY, list(items))


def structure(items: list) -> tuple:
    """(2, items): a structure of (tag, value) members."""
    return (STRUCTURE, list(items))


# ---------------------------------------------------------------- lengths
def encode_length(n: int) -> bytes:
    """The A-XDR length of ``n`` (0..65535)."""
    if not isinstance(n, int) or n < 0 or n > 0xFFFF:
        raise EncodingError("A-XDR length must be 0..65535, got %r" % (n,))
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def decode_length(buf: bytes, pos: int) -> tuple:
    """(length, position after it). EncodingError when truncated or longer than two length bytes."""
    if pos >= len(buf):
        raise EncodingError("A-XDR length missing at offset %d" % pos)
    first = buf[pos]
    if first < 0x80:
        return (first, pos + 1)
    n = first & 0x7F
    if n == 0 or n > 2:
        raise EncodingError("A-XDR length form %02X at offset %d (only 1 or 2 length bytes)" % (first, pos))
    if pos + 1 + n > len(buf):
        raise EncodingError("A-XDR length truncated at offset %d" % pos)
    value = 0
    for i in range(n):
        value = (value << 8) | buf[pos + 1 + i]
    return (value, pos + 1 + n)


# ---------------------------------------------------------------- decoding
class _Budget:
    """How many more values one decode call may produce (a bound on work and memory)."""

    def __init__(self, items: int) -> None:
        self.items = items

    def take(self, pos: int) -> None:
        self.items -= 1
        if self.items < 0:
            raise EncodingError("A-XDR data at offset %d: more than %d values" % (pos, MAX_ITEMS))


def _need(buf: bytes, pos: int, n: int, tag: int) -> None:
    if pos + n > len(buf):
        raise EncodingError("A-XDR %s at offset %d needs %d bytes, %d left" % (
            name(tag), pos, n, len(buf) - pos))


def _hex8(raw: bytes) -> str:
    return binascii.hexlify(bytes(raw)).decode().upper()


def _road(buf: bytes, pos: int) -> tuple:
    _need(buf, pos, 5, ROAD)
    main = _hex8(buf[pos:pos + 4])
    count = buf[pos + 4]
    pos += 5
    _need(buf, pos, 4 * count, ROAD)
    related = [_hex8(buf[pos + 4 * i:pos + 4 * i + 4]) for i in range(count)]
    return ((main, related), pos + 4 * count)


def _decode(buf: bytes, pos: int, depth: int, budget: _Budget) -> tuple:
    if pos >= len(buf):
        raise EncodingError("A-XDR data missing at offset %d" % pos)
    budget.take(pos)
    tag = buf[pos]
    pos += 1
    if tag == NULL:
        return ((NULL, None), pos)
    if tag == ARRAY or tag == STRUCTURE:
        if depth >= MAX_DEPTH:
            raise EncodingError("A-XDR data nested deeper than %d levels at offset %d" % (MAX_DEPTH, pos - 1))
        count, pos = decode_length(buf, pos)
        if count > len(buf) - pos:  # every item needs at least its tag byte
            raise EncodingError("A-XDR %s at offset %d claims %d items, only %d bytes left" % (
                name(tag), pos, count, len(buf) - pos))
        items = []
        for _ in range(count):
            item, pos = _decode(buf, pos, depth + 1, budget)
            items.append(item)
        return ((tag, items), pos)
    spec = _NUMBERS.get(tag)
    if spec is not None:
        _need(buf, pos, spec[1], tag)
        return ((tag, struct.unpack(spec[0], bytes(buf[pos:pos + spec[1]]))[0]), pos + spec[1])
    if tag == BOOL:
        _need(buf, pos, 1, tag)
        return ((tag, buf[pos] != 0), pos + 1)
    if tag in _BYTES or tag == VISIBLE_STRING or tag == UTF8_STRING:
        n, pos = decode_length(buf, pos)
        _need(buf, pos, n, tag)
        raw = bytes(buf[pos:pos + n])
        if tag == VISIBLE_STRING:
            return ((tag, "".join(chr(b) for b in raw)), pos + n)
        if tag == UTF8_STRING:
            try:
                return ((tag, raw.decode("utf-8")), pos + n)
            except UnicodeError:
                raise EncodingError("A-XDR UTF8-string at offset %d is not UTF-8" % pos) from None
        return ((tag, raw), pos + n)
    if tag == BIT_STRING:
        bits, pos = decode_length(buf, pos)
        n = (bits + 7) // 8
        _need(buf, pos, n, tag)
        return ((tag, (bits, bytes(buf[pos:pos + n]))), pos + n)
    fspec = _FLOATS.get(tag)
    if fspec is not None:
        _need(buf, pos, fspec[1], tag)
        return ((tag, struct.unpack(fspec[0], bytes(buf[pos:pos + fspec[1]]))[0]), pos + fspec[1])
    sizes = _TIMES.get(tag)
    if sizes is not None:
        _need(buf, pos, sum(sizes), tag)
        fields = []
        for size in sizes:
            fields.append(buf[pos] << 8 | buf[pos + 1] if size == 2 else buf[pos])
            pos += size
        return ((tag, tuple(fields)), pos)
    if tag == OAD or tag == OMD:
        _need(buf, pos, 4, tag)
        return ((tag, _hex8(buf[pos:pos + 4])), pos + 4)
    if tag == ROAD:
        value, pos = _road(buf, pos)
        return ((tag, value), pos)
    if tag == TI:
        _need(buf, pos, 3, tag)
        return ((tag, (buf[pos], buf[pos + 1] << 8 | buf[pos + 2])), pos + 3)
    if tag == SCALER_UNIT:
        _need(buf, pos, 2, tag)
        scaler = buf[pos] - 256 if buf[pos] > 127 else buf[pos]
        return ((tag, (scaler, buf[pos + 1])), pos + 2)
    if tag == CSD:
        _need(buf, pos, 1, tag)
        choice = buf[pos]
        if choice == 0:
            _need(buf, pos + 1, 4, tag)
            return ((tag, (0, _hex8(buf[pos + 1:pos + 5]))), pos + 5)
        if choice == 1:
            value, end = _road(buf, pos + 1)
            return ((tag, (1, value)), end)
        raise EncodingError("A-XDR CSD at offset %d: choice %d is neither 0 (OAD) nor 1 (ROAD)"
                            % (pos, choice))
    if tag == COMDCB:
        _need(buf, pos, 5, tag)
        return ((tag, tuple(buf[pos:pos + 5])), pos + 5)
    raise EncodingError("A-XDR type %d (%s) at offset %d is not supported" % (tag, name(tag), pos - 1))


def decode(buf: bytes, pos: int = 0) -> tuple:
    """Decode one value at ``pos``: ((tag, value), position after it). EncodingError on any defect."""
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise EncodingError("A-XDR data must be bytes, got %s" % type(buf).__name__)
    return _decode(buf, pos, 0, _Budget(MAX_ITEMS))


def decode_all(buf: bytes) -> tuple:
    """Decode ``buf`` holding exactly one value; EncodingError if bytes are left over."""
    value, end = decode(buf)
    if end != len(buf):
        raise EncodingError("A-XDR data: %d bytes left after the value" % (len(buf) - end))
    return value


# ---------------------------------------------------------------- encoding
def _oad_bytes(text: object, tag: int) -> bytes:
    if not isinstance(text, str) or len(text) != 8:
        raise EncodingError("A-XDR %s must be 8 hex digits, got %r" % (name(tag), text))
    try:
        return binascii.unhexlify(text)
    except ValueError:
        raise EncodingError("A-XDR %s %r is not hex" % (name(tag), text)) from None


def _road_bytes(value: object) -> bytes:
    if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[1], list):
        raise EncodingError("A-XDR ROAD must be (OAD, [OAD, ...]), got %r" % (value,))
    if len(value[1]) > 255:
        raise EncodingError("A-XDR ROAD carries at most 255 related OADs")
    return _oad_bytes(value[0], ROAD) + bytes([len(value[1])]) + b"".join(
        _oad_bytes(o, ROAD) for o in value[1])


def _int(value: object, tag: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EncodingError("A-XDR %s must be an int %d..%d, got %r" % (name(tag), low, high, value))
    return value


def _encode(data: object, out: bytearray, depth: int) -> None:
    if not isinstance(data, tuple) or len(data) != 2 or not isinstance(data[0], int):
        raise EncodingError("A-XDR data must be a (tag, value) tuple, got %r" % (data,))
    tag, value = data
    if tag == NULL:
        out.append(0)
        return
    if tag == ARRAY or tag == STRUCTURE:
        if depth >= MAX_DEPTH or not isinstance(value, list):
            raise EncodingError("A-XDR %s must be a list nested at most %d deep" % (name(tag), MAX_DEPTH))
        out.append(tag)
        out.extend(encode_length(len(value)))
        for item in value:
            _encode(item, out, depth + 1)
        return
    spec = _NUMBERS.get(tag)
    if spec is not None:
        out.append(tag)
        out.extend(struct.pack(spec[0], _int(value, tag, spec[2], spec[3])))
        return
    if tag == BOOL:
        if not isinstance(value, bool):
            raise EncodingError("A-XDR bool must be True or False, got %r" % (value,))
        out.append(tag)
        out.append(1 if value else 0)
        return
    if tag in _BYTES or tag == VISIBLE_STRING or tag == UTF8_STRING:
        if tag == VISIBLE_STRING:
            if not isinstance(value, str) or any(ord(ch) > 255 for ch in value):
                raise EncodingError("A-XDR visible-string must be a str of 8-bit characters, got %r"
                                    % (value,))
            raw = bytes([ord(ch) for ch in value])
        elif tag == UTF8_STRING:
            if not isinstance(value, str):
                raise EncodingError("A-XDR UTF8-string must be a str, got %r" % (value,))
            raw = value.encode("utf-8")
        else:
            if not isinstance(value, (bytes, bytearray)):
                raise EncodingError("A-XDR %s must be bytes, got %r" % (name(tag), value))
            raw = bytes(value)
        out.append(tag)
        out.extend(encode_length(len(raw)))
        out.extend(raw)
        return
    if tag == BIT_STRING:
        if not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[1], (bytes, bytearray)):
            raise EncodingError("A-XDR bit-string must be (bits, bytes), got %r" % (value,))
        bits = _int(value[0], tag, 0, 0xFFFF)
        if len(value[1]) != (bits + 7) // 8:
            raise EncodingError("A-XDR bit-string of %d bits needs %d bytes, got %d" % (
                bits, (bits + 7) // 8, len(value[1])))
        out.append(tag)
        out.extend(encode_length(bits))
        out.extend(value[1])
        return
    fspec = _FLOATS.get(tag)
    if fspec is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EncodingError("A-XDR %s must be a number, got %r" % (name(tag), value))
        out.append(tag)
        try:
            out.extend(struct.pack(fspec[0], value))
        except (OverflowError, ValueError):
            raise EncodingError("A-XDR %s cannot carry %r" % (name(tag), value)) from None
        return
    sizes = _TIMES.get(tag)
    if sizes is not None:
        if not isinstance(value, tuple) or len(value) != len(sizes):
            raise EncodingError("A-XDR %s needs %d fields, got %r" % (name(tag), len(sizes), value))
        out.append(tag)
        for size, field in zip(sizes, value):
            f = _int(field, tag, 0, 0xFFFF if size == 2 else 0xFF)
            if size == 2:
                out.append(f >> 8)
            out.append(f & 0xFF)
        return
    if tag == OAD or tag == OMD:
        out.append(tag)
        out.extend(_oad_bytes(value, tag))
        return
    if tag == ROAD:
        out.append(tag)
        out.extend(_road_bytes(value))
        return
    if tag == TI:
        if not isinstance(value, tuple) or len(value) != 2:
            raise EncodingError("A-XDR TI must be (unit, interval), got %r" % (value,))
        out.append(tag)
        out.append(_int(value[0], tag, 0, 0xFF))
        interval = _int(value[1], tag, 0, 0xFFFF)
        out.extend(bytes([interval >> 8, interval & 0xFF]))
        return
    if tag == SCALER_UNIT:
        if not isinstance(value, tuple) or len(value) != 2:
            raise EncodingError("A-XDR scaler_unit must be (scaler, unit), got %r" % (value,))
        out.append(tag)
        out.append(_int(value[0], tag, -128, 127) & 0xFF)
        out.append(_int(value[1], tag, 0, 0xFF))
        return
    if tag == CSD:
        if not isinstance(value, tuple) or len(value) != 2 or value[0] not in (0, 1):
            raise EncodingError("A-XDR CSD must be (0, OAD) or (1, ROAD), got %r" % (value,))
        out.append(tag)
        out.append(value[0])
        out.extend(_oad_bytes(value[1], CSD) if value[0] == 0 else _road_bytes(value[1]))
        return
    if tag == COMDCB:
        if not isinstance(value, tuple) or len(value) != 5:
            raise EncodingError("A-XDR COMDCB needs 5 fields, got %r" % (value,))
        out.append(tag)
        for field in value:
            out.append(_int(field, tag, 0, 0xFF))
        return
    raise EncodingError("A-XDR type %d (%s) cannot be encoded here" % (tag, name(tag)))


def encode(data: tuple) -> bytes:
    """The bytes of a (tag, value) tuple; EncodingError when a value does not fit its type."""
    out = bytearray()
    _encode(data, out, 0)
    return bytes(out)


def plain(data: tuple) -> "Any":
    """The Python value without type tags: arrays and structures become lists of plain values."""
    if not isinstance(data, tuple) or len(data) != 2:
        raise EncodingError("A-XDR data must be a (tag, value) tuple, got %r" % (data,))
    tag, value = data
    if tag == ARRAY or tag == STRUCTURE:
        return [plain(item) for item in value]
    return value
