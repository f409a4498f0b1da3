"""A small deterministic CBOR (RFC 8949) encoder and strict decoder for the FieldLink payloads.

Encoding follows the core deterministic rules of RFC 8949 section 4.2.1: preferred serialization for
every argument, floats in the shortest IEEE form that holds the value exactly (half, single, double),
NaN as ``f97e00``, map keys sorted bytewise by their encoded form, no indefinite lengths.

Supported values: int (any size; beyond 64 bits as tag 2/3 bignums), float, bool, None, ``UNDEFINED``,
bytes/bytearray/memoryview, str, list/tuple, dict and ``Tag``.

The decoder accepts any well-formed item of that subset, including indefinite lengths and non-preferred
arguments (for interoperability), and raises ``CborError`` for everything else: truncated input,
trailing bytes, reserved or unassigned encodings, invalid UTF-8, lengths beyond the input, duplicate map
keys, nesting deeper than ``MAX_DEPTH``. Arrays decode to lists; array map keys decode to tuples.

Sans-I/O, shared dialect: runs unchanged on CPython 3.11+ and MicroPython 1.22+ (half floats are
converted by hand because MicroPython's ``struct`` lacks ``'e'``).
"""

import struct

from protocols.errors import CborError

MAX_DEPTH = 32
"""Deepest nesting of arrays, maps and tags that ``dumps`` and ``loads`` accept."""

_pack = struct.pack
_unpack = struct.unpack
_unpack_from = struct.unpack_from
_U64_END = 1 << 64


class Tag:
    """A tagged data item (major type 6) that this codec does not interpret itself."""

    def __init__(self, tag: int, value: object) -> None:
        if type(tag) is not int or tag < 0 or tag >= _U64_END:
            raise CborError("tag number must be an integer 0..2**64-1, got %r" % (tag,))
        self.tag = tag
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((self.tag, self.value))

    def __repr__(self) -> str:
        return "Tag(%d, %r)" % (self.tag, self.value)


class _Undefined:
    """The CBOR ``undefined`` simple value (``f7``)."""

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED = _Undefined()
"""Sentinel that ``loads`` returns for ``undefined`` and ``dumps`` encodes as ``f7``."""

# one-byte encodings of the small integers -24..23, indexed by value + 24 (SenML labels hit this path)
_SMALL_KEYS = tuple(bytes((0x1F - i,)) if i < 0 else bytes((i,)) for i in range(-24, 24))


def _head(buf: bytearray, major: int, n: int) -> None:
    """Append an initial byte with major type ``major`` (already shifted) and argument ``n``."""
    if n < 24:
        buf.append(major | n)
    elif n < 0x100:
        buf.append(major | 24)
        buf.append(n)
    elif n < 0x10000:
        buf += _pack(">BH", major | 25, n)
    elif n < 0x100000000:
        buf += _pack(">BI", major | 26, n)
    else:
        buf += _pack(">BQ", major | 27, n)


def _half_bits(bits: int) -> int:
    """Binary16 pattern equal to the binary32 pattern ``bits``, or -1 when it is not exact."""
    sign = (bits >> 16) & 0x8000
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    if exp == 0xFF:  # infinity (NaN never gets here)
        return sign | 0x7C00
    if exp == 0:  # zero; binary32 subnormals are far below the binary16 range
        return sign if mant == 0 else -1
    e = exp - 127
    if -14 <= e <= 15:
        if mant & 0x1FFF:
            return -1
        return sign | ((e + 15) << 10) | (mant >> 13)
    if -24 <= e < -14:  # binary16 subnormal: value = m * 2**-24
        sig = mant | 0x800000
        shift = -1 - e
        if sig & ((1 << shift) - 1):
            return -1
        return sign | (sig >> shift)
    return -1


def _float(buf: bytearray, x: float) -> None:
    """Append ``x`` in its shortest exact IEEE form."""
    if x != x:
        buf += b"\xf9\x7e\x00"
        return
    try:
        single = _pack(">f", x)
        exact = _unpack(">f", single)[0] == x
    except OverflowError:  # CPython: finite beyond the binary32 range
        exact = False
    if not exact:
        buf.append(0xFB)
        buf += _pack(">d", x)
        return
    half = _half_bits(_unpack(">I", single)[0])
    if half >= 0:
        buf += _pack(">BH", 0xF9, half)
    else:
        buf.append(0xFA)
        buf += single


def float_size(x: float) -> int:
    """Bytes of ``x`` in its shortest exact IEEE form: 3 (half), 5 (single) or 9 (double)."""
    if x != x:
        return 3
    try:
        single = _pack(">f", x)
        exact = _unpack(">f", single)[0] == x
    except OverflowError:
        exact = False
    if not exact:
        return 9
    return 3 if _half_bits(_unpack(">I", single)[0]) >= 0 else 5


def decimal_fraction(x: float, size: int) -> tuple | None:
    """``(exponent, mantissa)`` of the shortest decimal fraction ``mantissa * 10**exponent`` (RFC 8949
    tag 4, exponent -1..-23) that converts back to exactly the binary64 ``x`` -- 230.1 is ``(-1, 2301)``,
    ``c4822019 08fd`` -- when its encoding is shorter than ``size`` bytes; otherwise None.

    ``x`` must be finite and not integral. Exactness is checked as ``mantissa / 10**k == x``: integer
    true division is correctly rounded (CPython; MicroPython divides two exact doubles), so a decoder
    that computes ``mantissa / 10**k`` gets ``x`` back bit for bit.
    """
    if not -429496729.6 < x < 429496729.6:  # the mantissa would need 8 bytes or more
        return None
    scale = 1
    for k in range(1, 24):
        scale *= 10
        m = round(x * scale)
        n = m if m >= 0 else -1 - m
        if n >= 0x100000000:  # 8 bytes or more: never shorter than a double
            return None
        if m / scale == x:
            total = 4 if n < 24 else 5 if n < 0x100 else 6 if n < 0x10000 else 8
            return (-k, m) if total < size else None
    return None


def _bignum(buf: bytearray, tag: int, n: int) -> None:
    """Append ``n`` (>= 2**64) as tag 2/3 with a minimal big-endian byte string."""
    size = 0
    rest = n
    while rest:
        rest >>= 8
        size += 1
    buf.append(0xC0 | tag)
    _head(buf, 0x40, size)
    buf += n.to_bytes(size, "big")


def _first(pair: tuple) -> bytes:
    return pair[0]


def _map(buf: bytearray, obj: dict, depth: int) -> None:
    _head(buf, 0xA0, len(obj))
    items = []
    for key, value in obj.items():
        if type(key) is int and -25 < key < 24:
            kb = _SMALL_KEYS[key + 24]
        else:
            kbuf = bytearray()
            _enc(kbuf, key, depth)
            kb = bytes(kbuf)
        items.append((kb, value))
    if len(items) > 1:
        items.sort(key=_first)
        prev = None
        for kb, _ in items:
            if kb == prev:
                raise CborError("two map keys encode to the same bytes %r" % (kb,))
            prev = kb
    for kb, value in items:
        buf += kb
        _enc(buf, value, depth)


def _enc(buf: bytearray, obj: object, depth: int) -> None:
    t = type(obj)
    if t is int:
        n: int = obj  # type: ignore[assignment]
        if n >= 0:
            if n < 24:
                buf.append(n)
            elif n < _U64_END:
                _head(buf, 0x00, n)
            else:
                _bignum(buf, 2, n)
        else:
            n = -1 - n
            if n < _U64_END:
                _head(buf, 0x20, n)
            else:
                _bignum(buf, 3, n)
    elif t is float:
        _float(buf, obj)  # type: ignore[arg-type]
    elif t is str:
        try:
            raw = obj.encode()  # type: ignore[attr-defined]
        except UnicodeError:
            raise CborError("text is not encodable as UTF-8: %r" % (obj,)) from None
        _head(buf, 0x60, len(raw))
        buf += raw
    elif t is dict or t is list or t is tuple or t is Tag:
        if depth <= 0:
            raise CborError("nesting deeper than %d levels" % MAX_DEPTH)
        if t is dict:
            _map(buf, obj, depth - 1)  # type: ignore[arg-type]
        elif t is Tag:
            _head(buf, 0xC0, obj.tag)  # type: ignore[attr-defined]
            _enc(buf, obj.value, depth - 1)  # type: ignore[attr-defined]
        else:
            _head(buf, 0x80, len(obj))  # type: ignore[arg-type]
            for item in obj:  # type: ignore[attr-defined]
                _enc(buf, item, depth - 1)
    elif t is bool:
        buf.append(0xF5 if obj else 0xF4)
    elif obj is None:
        buf.append(0xF6)
    elif t is bytes or t is bytearray:
        _head(buf, 0x40, len(obj))  # type: ignore[arg-type]
        buf += obj  # type: ignore[arg-type,operator]
    elif t is memoryview:
        raw = bytes(obj)  # type: ignore[arg-type,call-overload]
        _head(buf, 0x40, len(raw))
        buf += raw
    elif obj is UNDEFINED:
        buf.append(0xF7)
    else:
        for base in (int, float, str, bytes, bytearray, list, tuple, dict):  # subclasses, e.g. IntEnum
            if isinstance(obj, base):
                _enc(buf, base(obj), depth)  # type: ignore[call-arg,arg-type]
                return
        raise CborError("cannot encode a %s as CBOR" % type(obj).__name__)


def append(buf: bytearray, obj: object) -> None:
    """Append ``obj`` to ``buf`` as deterministic CBOR, as ``dumps`` encodes it (for writers that build
    an item piece by piece, such as ``protocols.senml.encode``)."""
    t = type(obj)
    if t is int and -24 <= obj < 24:  # type: ignore[operator]
        buf += _SMALL_KEYS[obj + 24]  # type: ignore[operator]
    elif t is float:
        _float(buf, obj)  # type: ignore[arg-type]
    else:
        _enc(buf, obj, MAX_DEPTH)


def append_head(buf: bytearray, major: int, n: int) -> None:
    """Append the initial byte (and argument) of major type ``major`` (0x00, 0x20 ... 0xE0) with ``n``."""
    _head(buf, major, n)


def dumps(obj: object) -> bytes:
    """Encode ``obj`` as deterministic CBOR (RFC 8949 section 4.2.1); ``CborError`` if it cannot."""
    buf = bytearray()
    _enc(buf, obj, MAX_DEPTH)
    return bytes(buf)


def _half_value(h: int) -> float:
    """Python float for a binary16 pattern."""
    sign = h & 0x8000
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        x = mant * 5.960464477539063e-08  # mant * 2**-24, exact
        return -x if sign else x
    if exp == 31:
        bits = (sign << 16) | 0x7F800000 | (mant << 13)
    else:
        bits = (sign << 16) | ((exp + 112) << 23) | (mant << 13)
    return _unpack(">f", _pack(">I", bits))[0]


def _need(data: bytes, pos: int, n: int) -> None:
    if n > len(data) - pos:
        raise CborError("truncated: %d bytes needed at offset %d, %d left" % (n, pos, len(data) - pos))


def _freeze(key: object) -> object:
    """Hashable stand-in for an array used as a map key."""
    if type(key) is list:
        return tuple(_freeze(k) for k in key)  # type: ignore[attr-defined]
    if type(key) is Tag:
        return Tag(key.tag, _freeze(key.value))  # type: ignore[attr-defined]
    if type(key) is dict:
        raise CborError("a map used as a map key is not supported")
    return key


def _put(out: dict, key: object, value: object, pos: int) -> None:
    try:
        if key in out:
            raise CborError("duplicate map key %r before offset %d" % (key, pos))
        out[key] = value
    except TypeError:
        _put(out, _freeze(key), value, pos)


def _simple(data: bytes, pos: int, ai: int) -> tuple:
    """Decode major type 7 (after its initial byte at pos - 1)."""
    if ai == 25:
        _need(data, pos, 2)
        return _half_value(_unpack_from(">H", data, pos)[0]), pos + 2
    if ai == 26:
        _need(data, pos, 4)
        return _unpack_from(">f", data, pos)[0], pos + 4
    if ai == 27:
        _need(data, pos, 8)
        return _unpack_from(">d", data, pos)[0], pos + 8
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22:
        return None, pos
    if ai == 23:
        return UNDEFINED, pos
    if ai == 24:
        _need(data, pos, 1)
        if data[pos] < 32:
            raise CborError("simple value %d in two bytes is not well-formed (offset %d)" % (data[pos], pos))
        raise CborError("unassigned simple value %d at offset %d" % (data[pos], pos))
    if ai == 31:
        raise CborError("break byte ff outside an indefinite-length item at offset %d" % (pos - 1))
    if ai > 27:
        raise CborError("reserved additional information %d at offset %d" % (ai, pos - 1))
    raise CborError("unassigned simple value %d at offset %d" % (ai, pos - 1))


def _text(raw: bytes, pos: int) -> str:
    try:
        return str(raw, "utf-8")
    except (UnicodeError, ValueError):
        raise CborError("invalid UTF-8 in text string before offset %d" % pos) from None


def _indefinite(data: bytes, pos: int, major: int, depth: int) -> tuple:
    """Decode an indefinite-length string, array or map whose initial byte ended at pos."""
    end = len(data)
    if major == 2 or major == 3:
        chunks: list = []
        while True:
            _need(data, pos, 1)
            ib = data[pos]
            if ib == 0xFF:
                raw = b"".join(chunks)
                return (_text(raw, pos) if major == 3 else raw), pos + 1
            if ib >> 5 != major or ib & 0x1F == 31:
                raise CborError("bad chunk %02x in indefinite-length string at offset %d" % (ib, pos))
            chunk, pos = _dec(data, pos, depth)
            chunks.append(chunk.encode() if major == 3 else chunk)
    if depth <= 0:
        raise CborError("nesting deeper than %d levels at offset %d" % (MAX_DEPTH, pos - 1))
    if major == 4:
        items: list = []
        while True:
            _need(data, pos, 1)
            if data[pos] == 0xFF:
                return items, pos + 1
            item, pos = _dec(data, pos, depth - 1)
            items.append(item)
    if major == 5:
        out: dict = {}
        while True:
            _need(data, pos, 1)
            if data[pos] == 0xFF:
                return out, pos + 1
            key, pos = _dec(data, pos, depth - 1)
            if pos < end and data[pos] == 0xFF:
                raise CborError("indefinite-length map ends after a key at offset %d" % pos)
            value, pos = _dec(data, pos, depth - 1)
            _put(out, key, value, pos)
    raise CborError("indefinite length is not allowed for major type %d at offset %d" % (major, pos - 1))


def _dec(data: bytes, pos: int, depth: int) -> tuple:
    """Decode one item at ``pos``; return (value, next position)."""
    if pos >= len(data):
        raise CborError("truncated: a data item is missing at offset %d" % pos)
    ib = data[pos]
    pos += 1
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        return _simple(data, pos, ai)
    if ai < 24:
        arg = ai
    elif ai == 24:
        _need(data, pos, 1)
        arg = data[pos]
        pos += 1
    elif ai == 25:
        _need(data, pos, 2)
        arg = _unpack_from(">H", data, pos)[0]
        pos += 2
    elif ai == 26:
        _need(data, pos, 4)
        arg = _unpack_from(">I", data, pos)[0]
        pos += 4
    elif ai == 27:
        _need(data, pos, 8)
        arg = _unpack_from(">Q", data, pos)[0]
        pos += 8
    elif ai == 31:
        return _indefinite(data, pos, major, depth)
    else:
        raise CborError("reserved additional information %d at offset %d" % (ai, pos - 1))
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2 or major == 3:
        _need(data, pos, arg)
        raw = data[pos : pos + arg]
        pos += arg
        return (_text(raw, pos) if major == 3 else raw), pos
    if depth <= 0:
        raise CborError("nesting deeper than %d levels at offset %d" % (MAX_DEPTH, pos))
    if major == 4:
        _need(data, pos, arg)  # every item takes at least one byte
        items: list = []
        for _ in range(arg):
            item, pos = _dec(data, pos, depth - 1)
            items.append(item)
        return items, pos
    if major == 5:
        if arg > (len(data) - pos) // 2:
            raise CborError("map of %d pairs is longer than the input at offset %d" % (arg, pos))
        out: dict = {}
        for _ in range(arg):
            key, pos = _dec(data, pos, depth - 1)
            value, pos = _dec(data, pos, depth - 1)
            _put(out, key, value, pos)
        return out, pos
    # major 6: tag
    value, pos = _dec(data, pos, depth - 1)
    if arg == 2 or arg == 3:
        if type(value) is not bytes:
            raise CborError("bignum tag %d must enclose a byte string (before offset %d)" % (arg, pos))
        n = int.from_bytes(value, "big") if value else 0
        return (n if arg == 2 else -1 - n), pos
    return Tag(arg, value), pos


def loads(data: bytes | bytearray | memoryview) -> object:
    """Decode exactly one CBOR item from ``data``; ``CborError`` for anything not well-formed."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise CborError("expected bytes to decode, got %s" % type(data).__name__)
    value, pos = _dec(data, 0, MAX_DEPTH)
    if pos != len(data):
        raise CborError("%d trailing bytes after the item at offset %d" % (len(data) - pos, pos))
    return value


def head(data: "bytes | bytearray | memoryview", pos: int, end: int) -> tuple:
    """(major type, argument, position after the head) of the definite-length item at `pos`, without
    decoding it; a float's argument is its bit pattern, a simple value's its number. CborError for an
    indefinite length, a reserved head or a head cut off by `end`."""
    if pos >= end:
        raise CborError("truncated: a data item is missing at offset %d" % pos)
    ib = data[pos]
    major = ib >> 5
    ai = ib & 0x1F
    if ai < 24:
        return major, ai, pos + 1
    if ai > 27:
        raise CborError("indefinite length or reserved head %02x at offset %d" % (ib, pos))
    n = 1 << (ai - 24)
    if pos + 1 + n > end:
        raise CborError("truncated: %d bytes needed at offset %d, %d left" % (n, pos + 1, end - pos - 1))
    arg = 0
    for i in range(pos + 1, pos + 1 + n):
        arg = (arg << 8) | data[i]
    return major, arg, pos + 1 + n


def skip(data: "bytes | bytearray | memoryview", pos: int, end: int, depth: int = MAX_DEPTH) -> int:
    """The position after the definite-length item at `pos` (nothing decoded, nothing allocated
    but the call); CborError as `head`, or for an item running past `end`."""
    major, arg, pos = head(data, pos, end)
    if major == 2 or major == 3:
        pos += arg
    elif major == 4 or major == 5 or major == 6:
        if depth <= 0:
            raise CborError("nesting deeper than %d levels at offset %d" % (MAX_DEPTH, pos))
        items = 1 if major == 6 else arg * (2 if major == 5 else 1)
        if items > end - pos:
            raise CborError("%d items cannot fit in the %d bytes left at offset %d" % (items, end - pos, pos))
        for _ in range(items):
            pos = skip(data, pos, end, depth - 1)
    if pos > end:
        raise CborError("truncated: an item runs %d bytes past the end" % (pos - end))
    return pos


__all__ = ["MAX_DEPTH", "UNDEFINED", "Tag", "append", "append_head", "decimal_fraction", "dumps",
           "float_size", "head", "loads", "skip"]
