"""Codec rows: payload sizes of a meter batch, CBOR and Modbus codec speed next to cbor2 and pymodbus.

Sizes are exact counts; speeds are best-of-N wall-clock times on this machine, reported as a ratio to
the peer measured in the same run (never asserted in a unit test).
"""

from __future__ import annotations

import json
import timeit
from importlib.metadata import version

import cbor2
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from protocols import birth, cbor, compact, modbus, senml
from protocols.tests.test_compact import meter_batch, meter_birth


def _best(fn, number: int, repeat: int) -> float:
    """Seconds per call: the best of `repeat` runs of `number` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def payload_sizes() -> list[tuple[str, int, float]]:
    """Bytes per reading of one minute of 48 three-phase meters x 4 points, in each payload format."""
    b = meter_birth()
    readings = meter_batch(1)
    units = birth.units(b)
    n = len(readings)
    rows = [
        ("compact pack (aliases in birth)", len(compact.encode(readings, b))),
        ("SenML-CBOR, units in birth", len(senml.encode(readings, b["base_name"]))),
        ("SenML-CBOR, units in every record", len(senml.encode(readings, b["base_name"], units=units))),
    ]
    senml_json = [
        {"bn": b["base_name"], "n": "%s/%s" % (d, p), "u": units[(d, p)], "v": v, "t": t}
        for d, p, v, t in readings
    ]
    rows.append(("SenML-JSON, one record per reading", len(json.dumps(senml_json, separators=(",", ":")))))
    per_device: dict[str, dict] = {}
    for d, p, v, t in readings:
        per_device.setdefault(d, {"ts": t * 1000, "values": {}})["values"][p] = v
    tb = {d: [entry] for d, entry in per_device.items()}  # ThingsBoard gateway telemetry shape
    rows.append(("ThingsBoard-style gateway JSON", len(json.dumps(tb, separators=(",", ":")))))
    return [(name, size, size / n) for name, size in rows]


def cbor_speed(repeat: int) -> list[tuple[str, float, float]]:
    """Encode/decode a SenML pack of 192 meter readings: ours vs cbor2 (C extension)."""
    b = meter_birth()
    records = senml.pack(meter_batch(1), b["base_name"])
    data = cbor.dumps(records)
    # the same items for cbor2: its own tag type for the decimal fractions (tag 4)
    theirs = [{k: cbor2.CBORTag(v.tag, v.value) if isinstance(v, cbor.Tag) else v for k, v in rec.items()}
              for rec in records]
    assert cbor2.dumps(theirs, canonical=True) == data and cbor.loads(data) == records
    ours_enc = _best(lambda: cbor.dumps(records), 50, repeat)
    theirs_enc = _best(lambda: cbor2.dumps(theirs, canonical=True), 50, repeat)
    ours_dec = _best(lambda: cbor.loads(data), 50, repeat)
    theirs_dec = _best(lambda: cbor2.loads(data), 50, repeat)
    return [
        ("CBOR encode, 192-record SenML pack", ours_enc, theirs_enc),
        ("CBOR decode, 192-record SenML pack", ours_dec, theirs_dec),
    ]


def modbus_speed(repeat: int) -> list[tuple[str, float, float]]:
    """Build and parse an RTU FC03 response of 10 registers: ours vs pymodbus 3.16.1."""
    values = list(range(1, 11))
    framer = FramerRTU(DecodePDU(False))
    message = ReadHoldingRegistersResponse(registers=values, dev_id=1)
    adu = modbus.rtu_frame(1, modbus.read_response(3, values))
    assert framer.buildFrame(message) == adu
    request = modbus.read_request(3, 0, 10)

    def ours_parse() -> object:
        _unit, pdu = modbus.rtu_parse(adu)
        return modbus.parse_response(request, pdu)

    def theirs_parse() -> object:
        return FramerRTU(DecodePDU(False)).handleFrame(adu, 0, 0)

    return [
        ("Modbus RTU build FC03 response", _best(
            lambda: modbus.rtu_frame(1, modbus.read_response(3, values)), 2000, repeat),
         _best(lambda: framer.buildFrame(message), 2000, repeat)),
        ("Modbus RTU parse FC03 response", _best(ours_parse, 2000, repeat),
         _best(theirs_parse, 2000, repeat)),
    ]


def report(repeat: int) -> None:
    print("\nPayload size: 48 meters x 4 points, one minute (192 readings)")
    rows = payload_sizes()
    compact_per = rows[0][2]
    print("  %-38s %8s %10s %8s" % ("format", "bytes", "B/reading", "x compact"))
    for name, size, per in rows:
        print("  %-38s %8d %10.2f %8.2f" % (name, size, per, per / compact_per))
    print("  target (issue #2): compact <= 12 B/reading -> %s" % ("met" if compact_per <= 12 else "NOT MET"))

    print("\nCodec speed (best of %d runs; ratio > 1 means FieldLink is slower than the peer)" % repeat)
    print("  %-38s %12s %12s %8s" % ("operation", "FieldLink", "peer", "ratio"))
    for peer, results in (("cbor2 %s" % version("cbor2"), cbor_speed(repeat)),
                          ("pymodbus %s" % version("pymodbus"), modbus_speed(repeat))):
        for name, ours, theirs in results:
            print("  %-38s %10.1fus %10.1fus %8.2f   (peer: %s)"
                  % (name, ours * 1e6, theirs * 1e6, ours / theirs, peer))
