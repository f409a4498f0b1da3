"""CBOR vectors in the shared dialect: one line per case, identical on CPython and MicroPython.

Run from the repository root: ``python protocols/tests/mp/check_cbor.py`` (or under MicroPython).
A mismatch prints ``FAIL <case> ...``. Floats are shown as the hex of their CBOR bytes.
"""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import cbor
from protocols.cbor import UNDEFINED, Tag
from protocols.errors import CborError

INF = float("inf")
NAN = float("nan")

VECTORS = [
    ("0", 0, "00"),
    ("23", 23, "17"),
    ("24", 24, "1818"),
    ("100", 100, "1864"),
    ("1000", 1000, "1903e8"),
    ("1000000", 1000000, "1a000f4240"),
    ("1e12", 1000000000000, "1b000000e8d4a51000"),
    ("2^64-1", 18446744073709551615, "1bffffffffffffffff"),
    ("2^64", 18446744073709551616, "c249010000000000000000"),
    ("-2^64", -18446744073709551616, "3bffffffffffffffff"),
    ("-2^64-1", -18446744073709551617, "c349010000000000000000"),
    ("-1", -1, "20"),
    ("-10", -10, "29"),
    ("-100", -100, "3863"),
    ("-1000", -1000, "3903e7"),
    ("0.0", 0.0, "f90000"),
    ("-0.0", -0.0, "f98000"),
    ("1.0", 1.0, "f93c00"),
    ("1.1", 1.1, "fb3ff199999999999a"),
    ("1.5", 1.5, "f93e00"),
    ("65504.0", 65504.0, "f97bff"),
    ("100000.0", 100000.0, "fa47c35000"),
    ("3.4028234663852886e38", 3.4028234663852886e38, "fa7f7fffff"),
    ("1.0e300", 1.0e300, "fb7e37e43c8800759c"),
    ("2^-24", 5.960464477539063e-8, "f90001"),
    ("2^-14", 0.00006103515625, "f90400"),
    ("-4.0", -4.0, "f9c400"),
    ("-4.1", -4.1, "fbc010666666666666"),
    ("inf", INF, "f97c00"),
    ("-inf", -INF, "f9fc00"),
    ("nan", NAN, "f97e00"),
    ("5.5", 5.5, "f94580"),
    ("1000000.5", 1000000.5, "fa49742408"),
    ("5555.5", 5555.5, "fa45ad9c00"),
    ("230.5", 230.5, "f95b34"),
    ("false", False, "f4"),
    ("true", True, "f5"),
    ("null", None, "f6"),
    ("undefined", UNDEFINED, "f7"),
    ("h''", b"", "40"),
    ("h'01020304'", b"\x01\x02\x03\x04", "4401020304"),
    ("bytearray", bytearray(b"\x01"), "4101"),
    ("''", "", "60"),
    ("'a'", "a", "6161"),
    ("'IETF'", "IETF", "6449455446"),
    ("u00fc", "\u00fc", "62c3bc"),
    ("u6c34", "\u6c34", "63e6b0b4"),
    ("U00010151", "\U00010151", "64f0908591"),
    ("[]", [], "80"),
    ("[1,2,3]", [1, 2, 3], "83010203"),
    ("(1,2,3)", (1, 2, 3), "83010203"),
    ("nested", [1, [2, 3], [4, 5]], "8301820203820405"),
    ("25 items", list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ("{}", {}, "a0"),
    ("{1:2,3:4}", {3: 4, 1: 2}, "a201020304"),
    ("{a,b}", {"b": [2, 3], "a": 1}, "a26161016162820203"),
    ("[a,{b:c}]", ["a", {"b": "c"}], "826161a161626163"),
    ("tag0", Tag(0, "2013-03-21T20:04:00Z"), "c074323031332d30332d32315432303a30343a30305a"),
    ("tag1", Tag(1, 1363896240), "c11a514b67b0"),
    ("tag1 float", Tag(1, 1363896240.5), "c1fb41d452d9ec200000"),
    ("tag23", Tag(23, b"\x01\x02\x03\x04"), "d74401020304"),
    (
        "key order",
        {False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3, 100: 2, 10: 1},
        "a80a011864022003617a046261610581186406812007f408",
    ),
    ("senml labels", {-6: 0, -1: 0, 0: 0, 8: 0, -2: 0, 2: 0}, "a6000002000800200021002500"),
]
DECODE_ONLY = [
    ("inf32", "fa7f800000"),
    ("inf64", "fb7ff0000000000000"),
    ("nan32", "fa7fc00000"),
    ("nan64", "fb7ff8000000000000"),
    ("indef bytes", "5f42010243030405ff"),
    ("indef text", "7f657374726561646d696e67ff"),
    ("indef array", "9f018202039f0405ffff"),
    ("indef map", "bf61610161629f0203ffff"),
    ("indef mixed", "83019f0203ff820405"),
    ("non-preferred 0", "1800"),
    ("bignum 0", "c240"),
]
BAD = [
    ("empty", ""),
    ("truncated arg", "1a0000"),
    ("short text", "62c3"),
    ("length beyond", "5affffffff00"),
    ("trailing", "0000"),
    ("reserved ai", "1c"),
    ("invalid utf8", "62c328"),
    ("break outside", "ff"),
    ("indef uint", "1f"),
    ("simple<32", "f800"),
    ("unassigned simple", "f0"),
    ("duplicate key", "a201000100"),
    ("bignum of int", "c201"),
    ("map as key", "a1a000f5"),
    ("unterminated", "9f01"),
    ("too deep", "81" * 33 + "00"),
]
RFC8428 = (
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067766f"
    "6c7461676501615602fb405e066666666666a3006763757272656e74062402fb3ff3333333333333a3006763757272656e7406"
    "2302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e74062102f93e00a300"
    "6763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333"
)
RFC8428_DET = (
    "87a70067766f6c7461676501615602fb405e066666666666200521781b75726e3a6465763a6f773a313065323037336130313038"
    "3030363a22fb41d303a15b001062236141a3006763757272656e7402fb3ff33333333333330624a3006763757272656e7402fb3f"
    "f4cccccccccccd0623a3006763757272656e7402fb3ff66666666666660622a3006763757272656e7402f93e000621a300676375"
    "7272656e7402fb3ff999999999999a0620a3006763757272656e7402fb3ffb3333333333330600"
)


def hx(data: bytes) -> str:
    return binascii.hexlify(data).decode()


def main() -> int:
    fails = 0
    for label, value, expected in VECTORS:
        try:
            got = hx(cbor.dumps(value))
            back = cbor.loads(binascii.unhexlify(expected))
            same = hx(cbor.dumps(back)) == expected and (
                back == value or value != value or type(value) is tuple
            )
        except CborError as exc:
            got, same = "CborError %s" % exc, False
        if got != expected or not same:
            print("FAIL cbor %s got %s" % (label, got))
            fails += 1
        else:
            print("cbor %s %s" % (label, got))
    for label, hexstr in DECODE_ONLY:
        print("cbor-in %s %s" % (label, hx(cbor.dumps(cbor.loads(binascii.unhexlify(hexstr))))))
    for label, hexstr in BAD:
        try:
            cbor.loads(binascii.unhexlify(hexstr))
            print("FAIL cbor-bad %s accepted" % label)
            fails += 1
        except CborError:
            print("cbor-bad %s CborError" % label)
    pack = cbor.loads(binascii.unhexlify(RFC8428))
    if hx(cbor.dumps(pack)) != RFC8428_DET:
        print("FAIL rfc8428 deterministic re-encoding")
        fails += 1
    else:
        print("rfc8428 %d bytes re-encoded deterministically" % (len(RFC8428_DET) // 2))
    print("cbor done, %d failures" % fails)
    return fails


main()
