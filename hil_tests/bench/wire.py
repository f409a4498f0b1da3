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


def sizes(messages: list[Message], inventory: bytes | None) -> Sizes:
    """Payload sizes of every data pack in `messages`, pack by pack (same batches in every format)."""
    from protocols import birth as birth_msg
    from protocols import compact

    table = birth_msg.alias_table(birth_msg.decode(inventory)) if inventory else None
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


STEPS = (
    "one name <device>/<point> per record, bt + float t (before #12)",
    "+ base name per device, point name in n",
    "+ base time per time change, no t",
    "+ integers for integral values",
    "+ decimal fractions (tag 4) where shorter (= what is sent)",
    "(not taken) + times rounded down to whole seconds",
)


def _layout(readings: list, base: str, per_device: bool, per_time: bool, numbers: Any) -> bytes:
    """A SenML pack of `readings` built with some of the #12 choices (for measuring each one)."""
    from protocols import cbor
    from protocols.senml import exact, floor_int

    records: list = []
    bn, bt = "", 0.0
    first = floor_int(min(r[3] for r in readings))
    for device, point, value, time in readings:
        rec: dict = {}
        name = point if per_device else "%s/%s" % (device, point)
        front = base + device + "/" if per_device else base
        rec[0] = name
        if front != bn:
            rec[-2] = bn = front
        if per_time:
            if time != bt:
                rec[-3] = exact(time)
                bt = time
        else:
            if not records and first:
                rec[-3] = first
                bt = first
            if exact(time - bt):
                rec[6] = exact(time - bt)
        key = 4 if type(value) is bool else 3 if type(value) is str else 8 if type(value) is bytes else 2
        rec[key] = numbers(value) if key == 2 else value
        records.append(rec)
    return cbor.dumps(records)


def layout_steps(messages: list[Message], inventory: bytes | None) -> list[tuple[str, int, int]]:
    """(step, bytes, readings) of every data pack re-encoded with the #12 choices added one at a time.

    The readings come off the wire; a value that a float-producing point (non-integer scale or offset,
    f32/f64 registers) made is a float again, as the drivers produced it before the encoder saw it."""
    from agent.batcher import by_device
    from protocols import birth as birth_msg
    from protocols import cbor, senml
    from protocols.profiles import load_profile

    if inventory is None:
        return []
    b = birth_msg.decode(inventory)
    floaty: set[tuple[str, str]] = set()
    for d in b["devices"]:
        try:
            profile = load_profile(d["model"])
        except Exception:
            continue
        for p in d["points"]:
            pt = profile.point(p["name"])
            if type(pt.scale) is float or type(pt.offset) is float or pt.type in ("f32", "f64"):
                floaty.add((d["id"], p["name"]))

    def binary(x: Any) -> Any:  # the shortest exact binary float, integers stay integers
        return x

    def integral(x: Any) -> Any:
        return senml.exact(x) if type(x) is float else x

    totals = [0] * len(STEPS)
    count = 0
    for _, records in data_records(messages):
        raw = [(r.device, r.point, float(plain(r.value)) if (r.device, r.point) in floaty
                and type(plain(r.value)) in (int, float) else plain(r.value), r.time) for r in records]
        grouped = by_device(raw)
        count += len(raw)
        totals[0] += len(_layout(raw, b["base_name"], False, False, binary))
        totals[1] += len(_layout(grouped, b["base_name"], True, False, binary))
        totals[2] += len(_layout(grouped, b["base_name"], True, True, binary))
        totals[3] += len(_layout(grouped, b["base_name"], True, True, integral))
        totals[4] += len(senml.encode(grouped, b["base_name"]))
        totals[5] += len(senml.encode([(d, p, v, int(t)) for d, p, v, t in grouped], b["base_name"]))
        assert len(cbor.dumps(senml.pack(grouped, b["base_name"]))) == len(_layout(
            grouped, b["base_name"], True, True, senml.number))
    return [(step, total, count) for step, total in zip(STEPS, totals)]


def last_inventory(messages: list[Message]) -> bytes | None:
    """The newest inventory payload (`…/inventory`; a legacy birth on `…/status` also holds one)."""
    for m in reversed(messages):
        if m.topic.endswith("/inventory") and m.payload:
            return m.payload
        if m.topic.endswith("/status") and "devices" in cbor2.loads(m.payload):
            return m.payload
    return None
