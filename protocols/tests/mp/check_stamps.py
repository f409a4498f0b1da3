"""Unset-clock times mended in place (protocols/stamps.py): one line per case, identical on CPython and
MicroPython. Run from the repository root: ``python protocols/tests/mp/check_stamps.py``.
A mismatch prints ``FAIL <case> ...``.
"""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import alarms, cbor, senml, stamps
from protocols.commands import CLOCK_SET_AFTER
from protocols.errors import CborError
from protocols.tests.mp.vectors import check, done

UNSET = stamps.UNSET_BASE
SHIFT = 1796000000 - UNSET


times = [UNSET, UNSET, UNSET + 7, 1796000100]
buf = bytearray(senml.encode([("m%d" % (i % 2), "p", i, t) for i, t in enumerate(times)], "gw:"))
size = len(buf)
check("pack mended", stamps.mend(buf, 0, len(buf), UNSET, CLOCK_SET_AFTER, SHIFT), 2)
check("pack size kept", len(buf), size)
check("pack times", [r["t"] for r in senml.resolve(cbor.loads(bytes(buf)))],  # type: ignore[arg-type]
      [UNSET + SHIFT, UNSET + SHIFT, UNSET + 7 + SHIFT, 1796000100])
moved = [UNSET + SHIFT, UNSET + SHIFT, UNSET + 7 + SHIFT, 1796000100]
want = senml.encode([("m%d" % (i % 2), "p", i, t) for i, t in enumerate(moved)], "gw:")
check("pack bytes", binascii.hexlify(bytes(buf)).decode(), binascii.hexlify(want).decode())

alarm = cbor.dumps(alarms.alarm("e1", None, "comms", "no answer", True, UNSET + 42, 65537))
view = memoryview(bytearray(b"\x81\x01\x00") + alarm)
check("alarm mended", stamps.mend(view, 3, len(view), UNSET, CLOCK_SET_AFTER, SHIFT), 1)
check("alarm time", cbor.loads(bytes(view[3:]))["time"], UNSET + 42 + SHIFT)  # type: ignore[index]

for label, data in (("number", b"\x01"), ("array of a number", b"\x81\x01"), ("trailing byte", b"\xa0\x00"),
                    ("time cut short", b"\xa1\x22\x1a\x38\x6d"), ("indefinite", b"\x9f\xff")):
    try:
        stamps.mend(bytearray(data), 0, len(data), UNSET, CLOCK_SET_AFTER, SHIFT)
        check("refused %s" % label, "accepted", "CborError")
    except CborError:
        check("refused %s" % label, "CborError", "CborError")

nested = cbor.dumps([{"a": [1, 2.5, "x", b"yz", None, {"b": True}]}, -70000, 1.0e300, "é"])
check("skip", cbor.skip(nested + b"\xf6", 0, len(nested) + 1), len(nested))
done()
