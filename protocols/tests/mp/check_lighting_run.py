"""The run of the lighting schedules (protocols/lighting_run.py), the machine agent and board share:
the cases of protocols/tests/lighting_run_cases.py (the ones test_lighting_run.py asserts), identical
output on CPython and MicroPython. Run from the repository root:
``python protocols/tests/mp/check_lighting_run.py``. A mismatch prints ``FAIL``.
"""

import sys

sys.path.insert(0, ".")

from protocols.tests.lighting_run_cases import CASES

failures = 0
for case in CASES:
    for label, got, want in case():
        if got == want:
            print("ok %s: %s" % (case.__name__, label))
        else:
            failures += 1
            print("FAIL %s: %s: got %r want %r" % (case.__name__, label, got, want))
print("%d failures" % failures)
