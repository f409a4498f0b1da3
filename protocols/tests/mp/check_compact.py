"""Compact packs and the birth message in the shared dialect: one line per case, identical everywhere.

Run from the repository root: ``python protocols/tests/mp/check_compact.py`` (or under MicroPython).
A mismatch prints ``FAIL <case> ...``. Sizes are integers; bytes/reading is printed in thousandths.
"""

import sys

sys.path.insert(0, ".")

import binascii

from protocols import birth, compact, senml
from protocols.errors import ProtocolError

T0 = 1710498000
POINTS = [
    {"name": "ua", "unit": "V", "resolution": 0.1},
    {"name": "ia", "unit": "A", "resolution": 0.001},
    {"name": "p", "unit": "W", "resolution": 0.1},
    {"name": "ep", "unit": "J", "resolution": 36000},
]
SMALL_HEX = "8501031a65f420d083000084001908fb0119140383183c018400190901031a0012d687"


def make_inventory(meters: int) -> dict:
    devices = []
    for i in range(meters):
        devices.append(
            {
                "id": "em%02d" % i,
                "kind": "electricity_meter",
                "model": "dtsu666",
                "protocol": "dlt645",
                "address": "0000000000%02d" % i,
                "points": POINTS,
            }
        )
    return birth.make_inventory(
        "gw-01", "plant-3", devices, seq=3, payload="compact", versions={"fieldlink": "0.1.0"}
    )


def meter_batch(minutes: int, meters: int) -> list:
    """Deterministic pseudo-random meter readings (a small LCG: no ``random`` module differences)."""
    state = 12345
    out = []
    for m in range(minutes):
        t = T0 + 30 + 60 * m
        for i in range(meters):
            vals = []
            for span in (300, 60000, 150000, 9999999):
                state = (state * 1103515245 + 12345) % 2147483648
                vals.append(state % span)
            dev = "em%02d" % i
            out.append((dev, "ua", (2150 + vals[0]) / 10, t))
            out.append((dev, "ia", vals[1] / 1000, t))
            out.append((dev, "p", vals[2] / 10, t))
            out.append((dev, "ep", vals[3] * 36000, t))
    return out


def hx(data: bytes) -> str:
    return binascii.hexlify(data).decode()


def main() -> int:
    fails = 0
    small = make_inventory(2)
    readings = [
        ("em01", "ua", 230.5, T0 + 60),
        ("em00", "ia", 5.123, T0),
        ("em00", "ua", 229.9, T0),
        ("em01", "ep", 44444412000, T0 + 60),
    ]
    got = hx(compact.encode(readings, small))
    print("compact small %s" % got)
    if got != SMALL_HEX:
        print("FAIL compact small")
        fails += 1
    will = birth.encode(birth.make_will("gw-01", "plant-3", 3, 17))
    print("status will %s" % hx(will))
    data = birth.encode(small)
    print("inventory small %d bytes %s crc %d" % (len(data), hx(data), birth.digest(data)))
    if birth.decode(data) != small:
        print("FAIL inventory round trip")
        fails += 1
    status = birth.encode(birth.make_status("gw-01", "plant-3", 3, 17, T0, birth.digest(data)))
    print("status online %s" % hx(status))
    if birth.decode(status)["inventory"] != birth.digest(data):
        print("FAIL status round trip")
        fails += 1
    for minutes in (1, 15):
        b = make_inventory(48)
        table = birth.alias_table(b)
        batch = meter_batch(minutes, 48)
        data = compact.encode(batch, table)
        plain = senml.encode(batch, b["base_name"])
        n = len(batch)
        print(
            "compact meters %d min: %d readings, compact %d B (%d.%03d B/reading), "
            "senml %d B (%d.%03d B/reading)"
            % (
                minutes,
                n,
                len(data),
                len(data) // n,
                len(data) * 1000 // n % 1000,
                len(plain),
                len(plain) // n,
                len(plain) * 1000 // n % 1000,
            )
        )
        if len(data) > 12 * n:
            print("FAIL compact over 12 bytes/reading")
            fails += 1
        if compact.decode(data, table) != senml.resolve(senml.pack(batch, b["base_name"])):
            print("FAIL compact %d min decode differs from senml resolve" % minutes)
            fails += 1
        else:
            print("compact meters %d min decode equals senml resolve" % minutes)
        if minutes == 1:
            print("compact meters 1 min head %s" % hx(data[:48]))
    try:
        compact.decode(compact.encode(readings, small), make_inventory(1))
        print("FAIL compact decode accepted a pack with an unknown device")
        fails += 1
    except ProtocolError as exc:
        print("compact-bad unknown device %s" % type(exc).__name__)
    print("compact done, %d failures" % fails)
    return fails


main()
