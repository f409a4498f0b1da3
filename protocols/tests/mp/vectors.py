"""The printer the check scripts share (protocols/tests/test_micropython.py runs each under CPython and
MicroPython and compares their lines): `check(case, got, want)` prints ``ok <case> <got>``, or
``FAIL <case> got <got> want <want>`` and counts it; `done()` prints the count and exits 1 after a
failure. Not a check script itself (those are ``check_*.py``)."""

import sys

failures = [0]


def check(case, got, want):
    if got == want:
        print("ok %s %s" % (case, got))
    else:
        failures[0] += 1
        print("FAIL %s got %r want %r" % (case, got, want))


def done():
    print("done %d failures" % failures[0])
    sys.exit(1 if failures[0] else 0)
