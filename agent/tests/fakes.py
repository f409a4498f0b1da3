"""Tiny fake field devices built on the protocols codecs (test helpers). They sit on a bus of
hil_tests/buses.py: a `VirtualBus` (in memory) or a `PtyBus` (behind a real pty)."""

from __future__ import annotations

import threading
import time
from typing import Any

from protocols import cjt188, dlt645, modbus
from protocols.errors import ExceptionResponse


class FakeModbus:
    """A Modbus server: registers and coils by address; `dead` stops it answering."""

    def __init__(self, registers: dict[int, int] | None = None, inputs: dict[int, int] | None = None,
                 coils: dict[int, bool] | None = None, delay: float = 0.0) -> None:
        self.holding = dict(registers or {})
        self.inputs = dict(inputs or {})
        self.coils = dict(coils or {})
        self.delay = delay
        self.dead = False
        self.requests: list[tuple[float, Any]] = []

    def handle(self, pdu: bytes) -> bytes | None:
        try:
            req = modbus.parse_request(pdu)
        except ExceptionResponse as exc:
            return modbus.exception_response(exc.function, exc.code)
        self.requests.append((time.monotonic(), req))
        if self.dead:
            return None
        fc = req.function
        if fc in (1, 2, 3, 4):
            tables: dict[int, dict] = {1: self.coils, 2: self.coils, 3: self.holding, 4: self.inputs}
            table = tables[fc]
            addresses = range(req.address, req.address + req.count)
            if any(a not in table for a in addresses) and fc >= 3:
                return modbus.exception_response(fc, 2)
            return modbus.read_response(fc, [table.get(a, 0) for a in addresses])
        if fc == 5:
            self.coils[req.address] = bool((req.values or [0])[0])
        elif fc in (6, 16):
            for i, v in enumerate(req.values or []):
                self.holding[req.address + i] = v
        return modbus.write_response(req)


class FakeMeter645:
    """A DL/T 645-2007 meter: DI -> value bytes (codec order). With `followup` = N, values longer than
    N bytes answer B1 and the rest to C=12 requests (logged as "DI+SEQ")."""

    def __init__(self, address: str, values: dict[str, bytes], followup: int = 0) -> None:
        self.address = address
        self.values = dict(values)
        self.followup = followup
        self.dead = False
        self.requests: list[str] = []
        self.frames: list[bytes] = []

    def handle(self, frame: Any) -> bytes | None:
        if self.dead or not dlt645.address_matches(frame.address, self.address):
            return None
        if frame.control == 0x13:
            return dlt645.read_address_reply(self.address)
        if frame.control == 0x12:
            di, seq = dlt645.parse_followup_request(frame)
            self.requests.append("%s+%d" % (di, seq))
            if not 1 <= seq < len(self.frames):
                return dlt645.abnormal_reply(self.address, 0x02, control=0x12)
            return self.frames[seq]
        di = dlt645.parse_read_request(frame)
        self.requests.append(di)
        if di not in self.values:
            return dlt645.abnormal_reply(self.address, 0x02)
        self.frames = dlt645.read_reply_frames(self.address, di, self.values[di], self.followup, preamble=2)
        return self.frames[0]


class FakeMeter188:
    """A CJ/T 188 water meter answering 901F and valve control."""

    def __init__(self, address: str, fields: dict, meter_type: int = 0x10) -> None:
        self.address = address
        self.fields = dict(fields)
        self.meter_type = meter_type
        self.dead = False

    def handle(self, frame: Any) -> bytes | None:
        if self.dead or frame.address not in (self.address, cjt188.WILDCARD):
            return None
        di, ser, payload, order = cjt188.parse_request(frame)
        if di == cjt188.DI_ADDRESS:
            return cjt188.read_address_reply(self.meter_type, self.address, ser, order)
        if di == cjt188.DI_VALVE:
            self.fields["valve"] = "open" if payload[:1] == b"\x55" else "closed"
            return cjt188.write_reply(self.meter_type, self.address, di, ser, order)
        return cjt188.encode_901f_reply(self.meter_type, self.address, self.fields, ser, order)


class RecordingUplink:
    """Stands in for agent.uplink.Uplink (the `agent.seams.Uplink` contract): records what the
    acquisition side hands over — readings, comms states, alarms, counter sources."""

    def __init__(self) -> None:
        self.readings: list = []
        self.states: list = []
        self.alarms: list = []
        self.events: list = []
        self.counters: dict = {}
        self.commands: Any = None
        self.acks: list = []
        self.stopped: bool | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        pass

    def stop(self, flush: bool = True, drain: float = 2.0, timeout: float = 1.0) -> None:
        self.stopped = flush

    def submit(self, readings: list[Any] | tuple[Any, ...]) -> None:
        with self.lock:
            self.readings.extend(readings)

    def device_state(self, device_id: str, online: bool, reason: str = "") -> None:
        with self.lock:
            self.states.append((device_id, online, reason))

    def alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
              when: float | None = None) -> None:
        with self.lock:
            self.alarms.append((device, point, kind, value, raised, when))

    def event(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)

    def add_counters(self, name: str, getter: Any) -> None:
        self.counters[name] = getter

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        with self.lock:
            self.acks.append((payload, ran))

    def count(self, device: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for r in self.readings if r[0] == device and r[3] >= since)
