"""Inventory vectors in the shared dialect (the device inventory with the indicators' serves and lights):
one line per case, identical on CPython and MicroPython. Run from the repository root:
``python protocols/tests/mp/check_birth.py``. A mismatch prints ``FAIL``.
"""

import binascii
import sys

sys.path.insert(0, ".")

from protocols import birth
from protocols.errors import EncodingError
from protocols.tests.mp.vectors import check, done


def refused(case, devices, words):
    try:
        birth.make_inventory("gw", "s", devices)
    except EncodingError as exc:
        check(case, words in str(exc), True)
        return
    check(case, "accepted", "refused")


METER = {"id": "m1", "kind": "water_meter", "model": "cjt188-water", "protocol": "cjt188",
         "address": "00000000000101", "points": [], "serves": {"households": 1}}
LAMP = {"id": "l1", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus", "address": 1,
        "points": [{"name": "on", "unit": "/"}], "lights": 3}
SENSOR = {"id": "p1", "kind": "pressure", "model": "pressure-sensor", "protocol": "modbus", "address": 20,
          "points": [], "serves": {"network": "water", "length_m": 1800}}
msg = birth.make_inventory("gw", "s", [METER, LAMP, SENSOR], seq=1)
data = birth.encode(msg)
# the same bytes on both runtimes (the harness compares every line): deterministic CBOR, text keys
print("encoded %d %s" % (len(data), binascii.hexlify(data).decode()))
back = birth.decode(data)
check("meter", back["devices"][0]["serves"], {"households": 1})
check("lamp", back["devices"][1]["lights"], 3)
check("sensor", sorted(back["devices"][2]["serves"].items()), [("length_m", 1800), ("network", "water")])
refused("households", [dict(METER, serves={"households": -2})], "households")
refused("network", [dict(SENSOR, serves={"network": "heat", "length_m": 1})], "network")
refused("pair", [dict(SENSOR, serves={"length_m": 1})], "go together")
refused("lights", [dict(LAMP, lights=0)], "lights")
done()
