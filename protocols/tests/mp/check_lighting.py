"""The lighting rules agent and board share (protocols/lighting.py) and the group command outcome
(protocols/commands.py: group_outcome): identical output on CPython and MicroPython. Run from the
repository root: ``python protocols/tests/mp/check_lighting.py``. A mismatch prints ``FAIL``.
"""

import sys

sys.path.insert(0, ".")

from protocols import cbor, lighting
from protocols.commands import group_outcome
from protocols.lighting import AS_SCHEDULED, BURNING, DARK, LightWatch
from protocols.tests.mp.vectors import check, done

# the order of a device's writes: dim before the lamp lights, the lamp dark before anything else
check("on last", lighting.ordered({"on": True, "dim": 0.8, "colour": 3}, "on"),
      [("colour", 3), ("dim", 0.8), ("on", True)])
check("off first", lighting.ordered({"dim": 0.4, "on": False}, "on"), [("on", False), ("dim", 0.4)])
check("no control", lighting.ordered({"dim": 0.4, "b": 1}, None), [("b", 1), ("dim", 0.4)])
check("not set", lighting.ordered({"dim": 0.4}, "on"), [("dim", 0.4)])

# a reading is what was written within half a step of the register
check("tolerance dim", lighting.tolerance(0.01), 0.005)
check("tolerance none", lighting.tolerance("x") > 0, True)
check("same", [lighting.same(0.404, 0.4, 0.005), lighting.same(0.41, 0.4, 0.005), lighting.same(1, True, 0.5),
               lighting.same(0, True, 0.5), lighting.same("open", "open", 0.5), lighting.same("a", "b", 1)],
      [True, False, True, False, True, False])
check("not written", lighting.not_written("timeout")["error"],
      "not written: device offline (timeout); it is put right when it answers")

# the event map, byte for byte the same CBOR on both runtimes
result = {"lamp-01": {"ok": True, "error": None, "value": {"on": 1, "dim": 1.0}}}
event = lighting.event("main street", 1, "sunset-10m", 1781958840, 1781958841, "change",
                       {"on": True, "dim": 1}, result)
check("event keys", sorted(event),
      ["at", "devices", "due", "kind", "reason", "schedule", "set", "step", "time"])
print("event %s" % cbor.dumps(event).hex())

# burning by day / dark at night, after alarm_after seconds counted from the first reading after a write
w = LightWatch("on", "power", 1.0, 300)
seen = []
for when, power, wanted in ((1000, 0.0, False), (1100, 80.0, False), (1300, 80.0, False),
                            (1401, 80.0, False), (1500, 80.0, False), (1600, 0.0, False), (1700, 0.0, True),
                            (2001, 0.0, True), (2100, 90.0, True), (2200, 90.0, None), (2300, True, False)):
    seen.append((when, w.reading(power, when, wanted), w.raised))
check("watch", seen, [(1000, None, None), (1100, None, None), (1300, None, None),
                      (1401, (BURNING, True), BURNING), (1500, None, BURNING),
                      (1600, (AS_SCHEDULED, False), None), (1700, None, None), (2001, (DARK, True), DARK),
                      (2100, (AS_SCHEDULED, False), None), (2200, None, None), (2300, None, None)])
w = LightWatch("on", "power", 1.0, 300)
w.reading(0.0, 5000, True)
w.written()  # just switched on: the grace counts from the next reading
check("grace", [w.reading(0.0, 5200, True), w.reading(0.0, 5499, True), w.reading(0.0, 5500, True)],
      [None, None, (DARK, True)])
check("turned", [w.reading(50.0, 5600, False), w.reading(50.0, 5900, False)],
      [(AS_SCHEDULED, False), (BURNING, True)])

# a group command's ack fields
ok = {"ok": True, "error": None, "value": 0.5}
bad = {"ok": False, "error": "timeout: no reply within 100 ms", "value": None}
out = group_outcome(["a", "b"], {"a": ok, "b": ok})
check("group ok", (out["ok"], out["error"], sorted(out["value"]), out["value"]["a"] == ok),
      (True, None, ["a", "b"], True))
out = group_outcome(["a", "b", "c"], {"a": ok, "b": bad})
want = "2 of 3 devices failed: b: timeout: no reply within 100 ms; \u2026"
missing = out["value"]["c"] == {"ok": False, "error": "not run", "value": None}
check("group failed", (out["ok"], out["error"] == want, missing), (False, True, True))
print("group error %s" % out["error"][:-2])
done()
