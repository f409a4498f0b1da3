"""The spec files docs/cddl/*.cddl and pycddl (an independent CDDL validator, RFC 8610) to check live
messages against them: `validate("health", payload)` raises pycddl.ValidationError naming where."""

from __future__ import annotations

import os
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CDDL = os.path.join(ROOT, "docs", "cddl")
#: topic leaf -> spec file (…/cmd is a command, …/data a SenML or compact pack)
FILES = {"status": "status", "alarm": "alarm", "cmd": "command", "ack": "ack", "health": "health",
         "senml": "senml", "compact": "compact", "event": "event"}

_schemas: dict = {}


def schema(name: str, rule: str | None = None):  # type: ignore[no-untyped-def]
    """The compiled schema of docs/cddl/<name>.cddl: its first rule is the message, or `rule`."""
    import pycddl

    if (name, rule) not in _schemas:
        with open(os.path.join(CDDL, "%s.cddl" % FILES.get(name, name))) as f:
            text = f.read()
        _schemas[(name, rule)] = pycddl.Schema(text if rule is None else "root = %s\n%s" % (rule, text))
    return _schemas[(name, rule)]


def validate(name: str, payload: bytes) -> None:
    """Validate one CBOR message; pycddl.ValidationError when it does not match its spec. A health
    message's buses are checked one by one against the `bus` rule too (and their maps of maps against
    the rules health.cddl names beside them: pycddl 0.6.4 cannot check a map of such maps itself)."""
    if FILES.get(name, name) == "compact":
        _compact(name, payload)
        return
    schema(name).validate_cbor(payload)
    if FILES.get(name, name) == "command" and payload[:1] == b"\xd1":  # tag 17: its embedded items
        from protocols import cbor

        item: Any = cbor.loads(payload)
        protected, _unprotected, inner, _tag = item.value  # type: ignore[attr-defined]
        schema(name, "protected-header").validate_cbor(bytes(protected))
        schema(name, "plain").validate_cbor(bytes(inner))
    if FILES.get(name, name) == "senml":
        from protocols import cbor

        records: Any = cbor.loads(payload)
        for record in records:
            values = [k for k in (2, 3, 4, 8) if k in record]
            if len(values) > 1 or (0 in record and not values and 5 not in record):
                raise ValueError("SenML record %r: exactly one of v, vs, vb, vd (or a sum)" % (record,))
    if FILES.get(name, name) == "event":
        from protocols import cbor

        event: Any = cbor.loads(payload)
        for value in event["set"].values():
            schema(name, "setting").validate_cbor(cbor.dumps(value))
        for result in event["devices"].values():
            schema(name, "read-back").validate_cbor(cbor.dumps(result["value"]))
    if FILES.get(name, name) == "health":
        from protocols import cbor

        message: Any = cbor.loads(payload)
        for bus in message["buses"].values():
            schema(name, "bus").validate_cbor(cbor.dumps(bus))
            for counts in bus["bad_points"].values():
                schema(name, "point-counts").validate_cbor(cbor.dumps(counts))
            for qualities in bus["quality"].values():
                schema(name, "point-qualities").validate_cbor(cbor.dumps(qualities))


def _compact(name: str, payload: bytes) -> None:
    """A compact pack in the parts pycddl 0.6.4 can check (docs/cddl/compact.cddl says why)."""
    from protocols import cbor

    items: Any = cbor.loads(payload)
    if not isinstance(items, list) or len(items) < 3:
        raise ValueError("a compact pack is [format, seq, bt, * slot], got %r" % (items,))
    schema(name, "compact-head").validate_cbor(cbor.dumps(items[:3]))
    for slot in items[3:]:
        if not isinstance(slot, list) or len(slot) < 3 or len(slot) % 2 != 1:
            raise ValueError("a slot is [dt, + (device, readings)], got %r" % (slot,))
        schema(name, "dt").validate_cbor(cbor.dumps(slot[0]))
        for device, readings in zip(slot[1::2], slot[2::2]):
            schema(name, "alias").validate_cbor(cbor.dumps(device))
            if not isinstance(readings, list) or len(readings) % 2:
                raise ValueError("readings are [* (point, value)], got %r" % (readings,))
            for point, value in zip(readings[0::2], readings[1::2]):
                schema(name, "alias").validate_cbor(cbor.dumps(point))
                schema(name, "wire-value").validate_cbor(cbor.dumps(value))


__all__ = ["CDDL", "FILES", "schema", "validate"]
