"""What a consumer sees on the broker, decoded independently (cbor2 + RFC 8428), and the payload sizes of
the same readings in the other formats: compact (our codec, with the birth that was published) and the
ThingsBoard IoT Gateway telemetry JSON, computed from its documented shape
``{"<device>": [{"ts": <ms>, "values": {"<key>": value, ...}}, ...]}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import cbor2

from hil_tests.bench.common import Message


@dataclass(frozen=True)
class Record:
    device: str
    point: str
    value: Any
    time: float


def resolve(pack: Any) -> list[Record]:
    """RFC 8428 section 4.6 on a cbor2-decoded pack: base name, time and value carry forward; the
    name after the gateway's base name splits into `<device>/<point>`."""
    out = []
    bn, bt, bv = "", 0, 0
    for rec in pack:
        bn, bt, bv = rec.get(-2, bn), rec.get(-3, bt), rec.get(-5, bv)
        name = bn + rec.get(0, "")
        value = bv + rec[2] if 2 in rec else next(rec[k] for k in (4, 3, 8) if k in rec)
        device, _, point = name.split(":", 1)[1].partition("/")
        out.append(Record(device, point, value, float(bt + rec.get(6, 0))))
    return out


def plain(value: Any) -> Any:
    """A decimal fraction (CBOR tag 4, decoded by cbor2 as Decimal) as the double it stands for."""
    return float(value) if type(value).__name__ == "Decimal" else value


def tb_json(records: list[Record]) -> bytes:
    """The ThingsBoard gateway telemetry message for `records` (one `ts` per device and time)."""
    body: dict[str, dict[int, dict]] = {}
    for r in records:
        body.setdefault(r.device, {}).setdefault(round(r.time * 1000), {})[r.point] = plain(r.value)
    message = {d: [{"ts": ts, "values": values} for ts, values in times.items()] for d, times in body.items()}
    return json.dumps(message, separators=(",", ":")).encode()


@dataclass
class Sizes:
    """Bytes of the same readings as published (SenML-CBOR) and recomputed in the other formats."""

    readings: int = 0
    packs: int = 0
    senml: int = 0
    compact: int = 0
    tb: int = 0

    def per(self, what: str) -> float:
        return getattr(self, what) / self.readings if self.readings else float("nan")


def data_records(messages: list[Message]) -> list[tuple[Message, list[Record]]]:
    return [(m, resolve(cbor2.loads(m.payload))) for m in messages if m.topic.endswith("/data")]


def sizes(messages: list[Message], birth_payload: bytes | None) -> Sizes:
    """Payload sizes of every data pack in `messages`, pack by pack (same batches in every format)."""
    from protocols import birth as birth_msg
    from protocols import compact

    table = birth_msg.alias_table(birth_msg.decode(birth_payload)) if birth_payload else None
    out = Sizes()
    for message, records in data_records(messages):
        out.packs += 1
        out.readings += len(records)
        out.senml += len(message.payload)
        out.tb += len(tb_json(records))
        if table is not None:
            readings = [(r.device, r.point, plain(r.value), r.time) for r in records]
            out.compact += len(compact.encode(readings, table))
    return out


def last_birth(messages: list[Message]) -> bytes | None:
    """The newest birth (online status) payload."""
    for m in reversed(messages):
        if m.topic.endswith("/status") and cbor2.loads(m.payload).get("online"):
            return m.payload
    return None
