"""SenML packs in the shared dialect: one line per case, identical on CPython and MicroPython.

Run from the repository root: ``python protocols/tests/mp/check_senml.py`` (or under MicroPython).
A mismatch prints ``FAIL <case> ...``. Values and times are shown as the hex of their CBOR bytes.
"""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import cbor, senml
from protocols.errors import ProtocolError

T0 = 1710498030
READINGS = [
    ("m01", "ua", 230.5, T0),
    ("m01", "ia", 5.123, T0),
    ("m01", "p", 1180.6, T0),
    ("m01", "ep", 44444412000, T0),
    ("m01", "ua", 231.0, T0 + 60),
    ("wm1", "vol", 123.45, T0 + 1),
    ("wm1", "valve", True, T0 + 1),
    ("wm1", "state", "open", T0 + 2),
    ("wm1", "raw", b"\x01\x02", T0 + 2),
]
EXPECTED = (
    "89a40062756102f95b34216a67772d30313a6d30312f221a65f420eea20062696102c48222191403a200617002c48220192e"
    "1ea200626570021b0000000a5917e860a3006275610218e7221a65f4212aa40063766f6c02c48221193039216a67772d3031"
    "3a776d312f221a65f420efa2006576616c766504f5a30065737461746503646f70656e221a65f420f0a20063726177084201"
    "02"
)
RFC8428_DET = (
    "87a70067766f6c7461676501615602fb405e066666666666200521781b75726e3a6465763a6f773a313065323037336130313038"
    "3030363a22fb41d303a15b001062236141a3006763757272656e7402fb3ff33333333333330624a3006763757272656e7402fb3f"
    "f4cccccccccccd0623a3006763757272656e7402fb3ff66666666666660622a3006763757272656e7402f93e000621a300676375"
    "7272656e7402fb3ff999999999999a0620a3006763757272656e7402fb3ffb3333333333330600"
)
BAD = [
    ("version 11", [{-1: 11, 0: "x", 2: 1, -3: T0}]),
    ("must-understand", [{0: "x", 2: 1, -3: T0, "foo_": 1}]),
    ("bad first char", [{0: "-x", 2: 1, -3: T0}]),
    ("bad char", [{0: "a b", 2: 1, -3: T0}]),
    ("no value", [{0: "x", -3: T0}]),
    ("two values", [{0: "x", 2: 1, 4: True, -3: T0}]),
    ("relative without now", [{0: "x", 2: 1}]),
    ("not a list", {0: "x"}),
]


def hx(value: object) -> str:
    return binascii.hexlify(cbor.dumps(value)).decode()


def show(label: str, records: list) -> None:
    for r in records:
        keys = sorted(k for k in r if k != "n" and k != "t")
        print("%s %s t=%s %s" % (label, r["n"], hx(r["t"]), " ".join("%s=%s" % (k, hx(r[k])) for k in keys)))


def main() -> int:
    fails = 0
    data = senml.encode(READINGS, "gw-01:")
    got = binascii.hexlify(data).decode()
    print("senml pack %d bytes %s" % (len(data), got))
    if got != EXPECTED:
        print("FAIL senml pack")
        fails += 1
    pack = senml.pack(READINGS, "gw-01:")
    if type(pack[0][-3]) is not int:
        print("FAIL senml bt is not an integer")
        fails += 1
    show("senml rec", senml.decode(data))
    show("senml units", senml.resolve(senml.pack(READINGS[:2], "gw-01:", {("m01", "ua"): "V"})))
    show("senml floattime", senml.resolve(senml.pack([("d", "a", 1, 1276020076.001)], "gw:")))
    show("senml rfc8428", senml.decode(binascii.unhexlify(RFC8428_DET)))
    show("senml relative", senml.resolve([{0: "r", 2: 1, 6: -10}], T0))
    for label, bad in BAD:
        try:
            senml.resolve(bad)  # type: ignore[arg-type]
            print("FAIL senml-bad %s accepted" % label)
            fails += 1
        except ProtocolError as exc:
            print("senml-bad %s %s" % (label, type(exc).__name__))
    print("senml done, %d failures" % fails)
    return fails


main()
