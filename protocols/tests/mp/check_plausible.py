"""Plausibility vectors in the shared dialect: one line per case, identical on CPython and MicroPython.
Run from the repository root: ``python protocols/tests/mp/check_plausible.py``. A mismatch prints ``FAIL``.
"""

import sys

sys.path.insert(0, ".")

from protocols.plausible import REBASE_AFTER, Plausible, check_spec, for_points, from_spec
from protocols.profiles import parse_profile
from protocols.tests.mp.vectors import check, done


def feed(p, values):
    return [p.check(v) for v in values]


nan = float("nan")
inf = float("inf")
volts = Plausible(0, 500)
check("range", feed(volts, [230.1, 0, 500, 500.1, -0.1, 231]), [True, True, True, False, False, True])
check("nan-inf", feed(Plausible(0, 500), [nan, inf, -inf, 230]), [False, False, False, True])
check("unbounded-nan", feed(Plausible(), [nan, 1e300]), [False, True])
check("text-flags", feed(Plausible(0, 1), ["open", True, False, b"x"]), [True, True, True, True])
energy = Plausible(0, None, "non_decreasing")
check("glitch", feed(energy, [100.0, 100.5, 12.0, 101.0, 101.0]), [True, True, False, True, True])
check("glitch-keeps-reference", energy.last, 101.0)
meter = Plausible(0, None, "non_decreasing")
check("rebase-after-%d" % REBASE_AFTER, feed(meter, [5000, 5001, 3, 4, 4, 5, 6]),
      [True, True, False, False, True, True, True])
check("rebased-reference", meter.last, 6)
down = Plausible(None, None, "non_decreasing")
check("falling-run-is-no-rebase", feed(down, [50, 40, 30, 20, 10, 11, 12]),
      [True, False, False, False, False, False, True])
check("range-breaks-run", feed(Plausible(0, None, "non_decreasing"), [9, 1, -1, 2, 3, 4]),
      [True, False, False, False, False, True])
check("ints", feed(Plausible(-1, 1), [-1, 0, 1, 2]), [True, True, True, False])
check("spec-ok", [check_spec({"min": 0, "max": 500}), check_spec({"rule": "non_decreasing"})], [None, None])
check("spec-bad", [check_spec({}) is not None, check_spec({"min": 5, "max": 1}) is not None,
                   check_spec({"min": nan}) is not None, check_spec({"rule": "up"}) is not None,
                   check_spec({"low": 1}) is not None, check_spec([0, 1]) is not None,
                   check_spec({"max": True}) is not None], [True] * 7)
check("from-spec", feed(from_spec({"max": 10}), [10, 11]), [True, False])
profile = parse_profile({
    "model": "m", "kind": "electricity_meter", "protocol": "modbus",
    "points": [{"name": "voltage", "address": 0, "plausible": {"min": 0, "max": 500}},
               {"name": "energy", "address": 2, "type": "u32", "plausible": {"rule": "non_decreasing"}},
               {"name": "current", "address": 4}]})
rules = for_points(profile.points)
check("for-points", sorted(rules), ["energy", "voltage"])
check("for-points-checks", [rules["voltage"].check(600), rules["energy"].check(7)], [False, True])
try:
    parse_profile({"model": "m", "kind": "lamp", "protocol": "modbus",
                   "points": [{"name": "v", "address": 0, "plausible": {"min": 1, "max": 0}}]})
    check("profile-refuses", "accepted", "ProfileError")
except Exception as exc:
    check("profile-refuses", "min 1 is above max 0" in str(exc), True)

done()
