"""Tiny fake field devices on os.openpty() ptys, built on the protocols codecs (test helpers)."""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from typing import Any

from protocols import cjt188, dlt645, modbus
from protocols.errors import ExceptionResponse, ProtocolError


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


class FakeBus:
    """One pty pair: the agent opens `path`; a thread answers as the devices on it."""

    def __init__(self, protocol: str = "modbus") -> None:
        self.protocol = protocol
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.devices: dict[Any, Any] = {}
        self.received = bytearray()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _reader(self) -> Any:
        if self.protocol == "modbus":
            return modbus.RtuFrameReader("request")
        if self.protocol == "dlt645":
            return dlt645.Dlt645FrameReader()
        return cjt188.Cjt188FrameReader()

    def _serve(self) -> None:
        reader = self._reader()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.05)
                if not ready:
                    continue
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            self.received.extend(chunk)
            for frame in reader.feed(chunk):
                reply = self._answer(frame)
                if reply:
                    try:
                        os.write(self.master, reply)
                    except OSError:
                        return
            reader.take_errors()

    def _answer(self, frame: Any) -> bytes | None:
        try:
            if self.protocol == "modbus":
                unit, pdu = frame
                device = self.devices.get(unit)
                if device is None:
                    return None
                reply = device.handle(pdu)
                if reply is None:
                    return None
                if device.delay:
                    time.sleep(device.delay)
                return modbus.rtu_frame(unit, reply)
            for device in self.devices.values():
                reply = device.handle(frame)
                if reply:
                    return reply
        except ProtocolError:
            return None
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
