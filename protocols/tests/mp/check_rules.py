"""Alarm-rule vectors in the shared dialect: one line per case, identical on CPython and MicroPython.
Run from the repository root: ``python protocols/tests/mp/check_rules.py``. A mismatch prints ``FAIL``.
"""

import sys

sys.path.insert(0, ".")

from protocols.rules import Rule, RuleSet
from protocols.tests.mp.vectors import check, done


def feed(rule, values):
    return [rule.update(v) for v in values]


check("above", feed(Rule("p", "pressure", above=500000, hysteresis=20000),
                    [400000, 510000, 490000, 479000]), [None, True, None, False])
check("below", feed(Rule("t", "level", below=1.0, hysteresis=0.25), [1.5, 0.75, 1.125, 1.25]),
      [None, True, None, False])
check("flag", feed(Rule("l", "lamp_failure", kind="fault"), [False, True, True, 0]),
      [None, True, None, False])
check("text", feed(Rule("m", "valve", above=1), ["open"]), [None])
rules = RuleSet([Rule("a", "p", above=10), Rule("b", "q", kind="leak")])
got = [(r.device, r.kind, v, raised, t) for r, v, raised, t in
       rules.check([("a", "p", 11, 100), ("b", "q", True, 101), ("a", "p", 5, 102)])]
check("set", got, [("a", "threshold", 11, True, 100), ("b", "leak", True, True, 101),
                   ("a", "threshold", 5, False, 102)])
try:
    Rule("a", "b")
    check("refused", "accepted", "ValueError")
except ValueError:
    check("refused", "ValueError", "ValueError")

done()
