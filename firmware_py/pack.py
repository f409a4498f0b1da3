"""SenML-CBOR packs written straight into one preallocated buffer (no per-record objects).

The bytes are exactly what `protocols.senml.encode` produces for the same readings (the tests check
it on CPython and MicroPython): an array of maps with integer labels; a record carries `bn` =
`<base name><device>/` when the device differs from the previous record's, `bt` = its time (integer
POSIX seconds) when that differs from the previous record's, its point name as `n` and its value (`v`,
`vb` or `vs`; a number as an integer when integral, else the shorter of its shortest exact binary float
and a decimal fraction, tag 4). Map keys are in the deterministic order n(0) v(2) vs(3) vb(4) bn(-2)
bt(-3).

Readings must be added in non-decreasing time order (the poll loop does); `add_name` returns False when
the record does not fit or goes back in time, and the caller then finishes the pack and starts another.
"""

import struct

from protocols.cbor import decimal_fraction, float_size
from protocols.compat import const

_RESERVE = const(3)  # array head: up to 0x99 + u16 records


def half_bits(x: float) -> int:
    """The binary16 pattern of `x` when it is exactly representable, else -1 (x finite, not NaN)."""
    bits = struct.unpack(">I", struct.pack(">f", x))[0]
    sign = (bits >> 16) & 0x8000
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    if exp == 0xFF:
        return sign | 0x7C00
    if exp == 0:
        return sign if mant == 0 else -1
    e = exp - 127
    if -14 <= e <= 15:
        return -1 if mant & 0x1FFF else sign | ((e + 15) << 10) | (mant >> 13)
    if -24 <= e < -14:
        sig = mant | 0x800000
        shift = -1 - e
        return -1 if sig & ((1 << shift) - 1) else sign | (sig >> shift)
    return -1


class PackWriter:
    """Builds one SenML-CBOR pack at a time in a fixed buffer of `size` bytes."""

    def __init__(self, size: int, base_name: str, reserve: int = _RESERVE) -> None:
        """`reserve` >= 3 bytes stay free in front for the array head (more: room for a prefix)."""
        self.reserve = reserve
        self.buf = bytearray(size + reserve - _RESERVE)
        self.view = memoryview(self.buf)
        self.base = base_name.encode()
        self.pos = reserve
        self.count = 0
        self.bt = 0  # the base time in force (0 before the first record, as RFC 8428 counts it)
        self.front = b""  # the device part of the base name in force
        self.last = 0

    def reset(self) -> None:
        self.pos = self.reserve
        self.count = 0
        self.bt = 0
        self.front = b""

    def _put(self, data) -> None:
        n = len(data)
        if self.pos + n > len(self.buf):
            raise IndexError
        self.view[self.pos : self.pos + n] = data
        self.pos += n

    def _byte(self, b: int) -> None:
        if self.pos >= len(self.buf):
            raise IndexError
        self.buf[self.pos] = b
        self.pos += 1

    def _uint(self, major: int, n: int) -> None:
        buf = self.buf
        pos = self.pos
        if n < 24:
            size = 1
        elif n < 0x100:
            size = 2
        elif n < 0x10000:
            size = 3
        elif n < 0x100000000:
            size = 5
        else:
            size = 9
        if pos + size > len(buf):
            raise IndexError
        if size == 1:
            buf[pos] = major | n
        elif size == 2:
            buf[pos] = major | 24
            buf[pos + 1] = n
        elif size == 3:
            struct.pack_into(">BH", buf, pos, major | 25, n)
        elif size == 5:
            struct.pack_into(">BI", buf, pos, major | 26, n)
        else:
            struct.pack_into(">BQ", buf, pos, major | 27, n)
        self.pos = pos + size

    def _int(self, n: int) -> None:
        if n >= 0:
            self._uint(0x00, n)
        else:
            self._uint(0x20, -1 - n)

    def _number(self, x) -> None:
        if type(x) is int:
            self._int(x)
            return
        if x != x:
            self._put(b"\xf9\x7e\x00")
            return
        finite = x - x == 0
        if finite and -9007199254740992.0 <= x <= 9007199254740992.0 and x == int(x):
            self._int(int(x))
            return
        size = float_size(x) if finite else 9
        found = decimal_fraction(x, size) if size > 4 else None
        if found is not None:
            self._byte(0xC4)  # tag 4: decimal fraction [exponent, mantissa]
            self._byte(0x82)
            self._int(found[0])
            self._int(found[1])
            return
        try:
            single = struct.pack(">f", x)
            exact = struct.unpack(">f", single)[0] == x
        except OverflowError:
            exact = False
        if not exact:
            self._byte(0xFB)
            if self.pos + 8 > len(self.buf):
                raise IndexError
            struct.pack_into(">d", self.buf, self.pos, x)
            self.pos += 8
            return
        half = half_bits(x)
        if half >= 0:
            self._byte(0xF9)
            self._byte(half >> 8)
            self._byte(half & 0xFF)
        else:
            self._byte(0xFA)
            self._put(single)

    def add_name(self, front: bytes, point: bytes, value, time: int) -> bool:
        """Append a record: the device as `b"<device>/"`, the point name as UTF-8, the value and integer
        POSIX seconds. False: no room or time went back; the pack is unchanged then."""
        if self.count and (time < self.last or self.count >= 0xFFFF):
            return False
        start = self.pos
        new_front = front != self.front
        new_time = time != self.bt
        try:
            self._byte(0xA2 + (1 if new_front else 0) + (1 if new_time else 0))
            self._byte(0x00)  # n
            self._uint(0x60, len(point))
            self._put(point)
            t = type(value)
            if t is bool:
                self._byte(0x04)  # vb
                self._byte(0xF5 if value else 0xF4)
            elif t is str:
                self._byte(0x03)  # vs
                raw = value.encode()
                self._uint(0x60, len(raw))
                self._put(raw)
            else:
                self._byte(0x02)  # v
                self._number(value)
            if new_front:
                self._byte(0x21)  # bn
                self._uint(0x60, len(self.base) + len(front))
                self._put(self.base)
                self._put(front)
            if new_time:
                self._byte(0x22)  # bt
                self._int(time)
        except IndexError:
            self.pos = start
            return False
        if new_front:
            self.front = bytes(front)
        self.bt = time
        self.count += 1
        self.last = time
        return True

    def finish(self):
        """The finished pack as a memoryview into the buffer (valid until the next `reset`)."""
        n = self.count
        r = self.reserve
        if n < 24:
            start = r - 1
            self.buf[start] = 0x80 | n
        elif n < 0x100:
            start = r - 2
            self.buf[start] = 0x98
            self.buf[start + 1] = n
        else:
            start = r - 3
            struct.pack_into(">BH", self.buf, start, 0x99, n)
        return self.view[start : self.pos]
