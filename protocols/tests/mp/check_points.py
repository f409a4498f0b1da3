"""Point encoding and BCD vectors for CPython and MicroPython: one line per case, FAIL on a mismatch."""

import sys

sys.path.insert(0, ".")

import binascii
import struct

from protocols import points
from protocols.bcd import bcd_to_int, int_to_bcd
from protocols.errors import ProtocolError
from protocols.tests.mp.vectors import check, done


def regs_hex(regs):
    return ",".join(["%04x" % r for r in regs])




def outcome(fn, *args):
    try:
        return "ok %r" % (fn(*args),)
    except ProtocolError as e:
        return type(e).__name__


# (value, type, order, wire registers)
VECTORS: tuple = (
    (0x1234, "u16", "ABCD", "1234"),
    (0x1234, "u16", "DCBA", "3412"),
    (-1, "s16", "ABCD", "ffff"),
    (-32768, "s16", "BADC", "0080"),
    (0x01020304, "u32", "ABCD", "0102,0304"),
    (0x01020304, "u32", "CDAB", "0304,0102"),
    (0x01020304, "u32", "BADC", "0201,0403"),
    (0x01020304, "u32", "DCBA", "0403,0201"),
    (-2, "s32", "CDAB", "fffe,ffff"),
    (0x0102030405060708, "u64", "ABCD", "0102,0304,0506,0708"),
    (0x0102030405060708, "u64", "CDAB", "0708,0506,0304,0102"),
    (0x0102030405060708, "u64", "BADC", "0201,0403,0605,0807"),
    (0x0102030405060708, "u64", "DCBA", "0807,0605,0403,0201"),
    (-(2 ** 63), "s64", "ABCD", "8000,0000,0000,0000"),
    (-3, "s64", "DCBA", "fdff,ffff,ffff,ffff"),
    (1234, "bcd16", "ABCD", "1234"),
    (12345678, "bcd32", "ABCD", "1234,5678"),
    (12345678, "bcd32", "CDAB", "5678,1234"),
    ("AB1", "str2", "ABCD", "4142,3100"),
    ("AB1", "str2", "BADC", "4241,0031"),
    (True, "bit3", "ABCD", "0008"),
    (False, "bit15", "ABCD", "0000"),
)
for value, kind, order, wire in VECTORS:
    case = "%s %s %r" % (kind, order, value)
    check("encode " + case, regs_hex(points.encode(value, kind, order)), wire)
    regs = [int(w, 16) for w in wire.split(",")]
    check("decode " + case, "%r" % (points.decode(regs, kind, order),), "%r" % (value,))

# floats: wire registers and the value printed with %.6g
FLOATS: tuple = (
    (1.0, "f32", "ABCD", "3f80,0000"),
    (-2.5, "f32", "DCBA", "0000,20c0"),
    (123.456, "f32", "CDAB", "e979,42f6"),
    (1.0, "f64", "ABCD", "3ff0,0000,0000,0000"),
    (-0.1, "f64", "CDAB", "999a,9999,9999,bfb9"),
)
for value, kind, order, wire in FLOATS:
    case = "%s %s %.6g" % (kind, order, value)
    check("encode " + case, regs_hex(points.encode(value, kind, order)), wire)
    regs = [int(w, 16) for w in wire.split(",")]
    check("decode " + case, "%.6g" % float(points.decode(regs, kind, order)), "%.6g" % value)

check("f32 inf", regs_hex(points.encode(float("inf"), "f32")), "7f80,0000")
check("f32 bytes", binascii.hexlify(struct.pack(">f", points.decode([0x4049, 0x0FDB], "f32"))).decode(),
      "40490fdb")

check("scale decode", "%.6g" % float(points.decode([2301], "u16", "ABCD", 0.1)), "230.1")
check("scale encode", regs_hex(points.encode(230.1, "u16", "ABCD", 0.1)), "08fd")
check("offset decode", "%r" % points.decode([100], "s16", "ABCD", 2, -40), "160")
check("offset encode", regs_hex(points.encode(160, "s16", "ABCD", 2, -40)), "0064")
check("scale f32", "%.6g" % float(points.decode([0x3F80, 0], "f32", "ABCD", 1000)), "1000")
check("scale bcd", "%.6g" % float(points.decode([0x0012], "bcd16", "ABCD", 0.1)), "1.2")

REJECTS: tuple = (
    (65536, "u16"), (-1, "u16"), (32768, "s16"), (2 ** 32, "u32"), (2 ** 64, "u64"), (2 ** 63, "s64"),
    (10000, "bcd16"), (10 ** 8, "bcd32"), (float("nan"), "u16"), (1e39, "f32"), ("ABCDE", "str2"),
    (2, "bit1"), ("1", "u16"),
)
for value, kind in REJECTS:
    check("reject %s %r" % (kind, value), outcome(points.encode, value, kind), "EncodingError")
check("reject order", outcome(points.encode, 1, "u16", "ABDC"), "EncodingError")
check("reject kind", outcome(points.register_count, "u8"), "EncodingError")
check("reject bcd nibble", outcome(points.decode, [0x12A4], "bcd16"), "EncodingError")
check("reject reg count", outcome(points.decode, [1], "u32"), "EncodingError")
check("reject reg value", outcome(points.decode, [65536], "u16"), "EncodingError")

for kind, n in (("u16", 1), ("f32", 2), ("s64", 4), ("f64", 4), ("bcd32", 2), ("str10", 10), ("bit7", 1)):
    check("count %s" % kind, "%d" % points.register_count(kind), "%d" % n)

check("bcd le", "%d" % bcd_to_int(binascii.unhexlify("78563412")), "12345678")
check("bcd be", "%d" % bcd_to_int(binascii.unhexlify("12345678"), False), "12345678")
check("bcd enc le", binascii.hexlify(int_to_bcd(12345678, 4)).decode(), "78563412")
check("bcd enc be", binascii.hexlify(int_to_bcd(1234, 3, False)).decode(), "001234")
check("bcd bad nibble", outcome(bcd_to_int, binascii.unhexlify("1a")), "EncodingError")
check("bcd too big", outcome(int_to_bcd, 100, 1), "EncodingError")
check("bcd negative", outcome(int_to_bcd, -1, 2), "EncodingError")

# a round trip over every integer kind and order with a fixed set of values
total = 0
for kind in ("u16", "s16", "u32", "s32", "u64", "s64", "bcd16", "bcd32"):
    for order in points.ORDERS:
        for value in (0, 1, 9, 99, 1234, 9999):
            if points.decode(points.encode(value, kind, order), kind, order) != value:
                print("FAIL roundtrip %s %s %d" % (kind, order, value))
            total += 1
print("roundtrip %d" % total)
done()
