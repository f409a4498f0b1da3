"""Modbus RTU / TCP server side of one device: a register image built from the profile's points."""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols import modbus, points
from protocols.errors import EncodingError, ExceptionResponse, ProtocolError
from protocols.profiles import Point

if TYPE_CHECKING:
    from simulator.device import Device

TABLE_OF_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 15: "coil",
                     6: "holding", 16: "holding"}
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3


class ModbusServer:
    """Answers FC 1-6, 15, 16 for one unit address from the device's profile."""

    protocol = "modbus"
    checksum_at = -1

    def __init__(self, device: Device) -> None:
        self.device = device
        self.unit = int(device.address)  # type: ignore[call-overload]
        if not 1 <= self.unit <= 247:
            raise ValueError("device %s: Modbus unit address %r outside 1..247" % (device.id, device.address))
        self.tables: dict[str, list[Point]] = {}
        for p in device.profile.points:
            self.tables.setdefault(p.table, []).append(p)

    # ---------------------------------------------------------------- values
    def _raw(self, point: Point, t: float) -> object:
        value = self.device.quantity(point.name, t)
        bits = point.type.startswith("bit") or point.table in ("coil", "discrete")
        if isinstance(value, bool) and not bits:
            value = int(value)
        return value

    def encode(self, point: Point, value: object) -> list[int]:
        """Registers for a value; a value the type cannot carry saturates (as a real device would)."""
        try:
            return points.encode(value, point.type, point.order, point.scale, point.offset)  # type: ignore[arg-type]
        except EncodingError:
            n = points.register_count(point.type)
            low = isinstance(value, (int, float)) and value < point.offset
            if point.type.startswith("s"):
                return [0x8000] + [0] * (n - 1) if low else [0x7FFF] + [0xFFFF] * (n - 1)
            return [0] * n if low else [0xFFFF] * n

    def point_value(self, point: Point, t: float) -> object:
        value = self._raw(point, t)
        if point.table in ("coil", "discrete"):
            return bool(value)
        regs = self.encode(point, value)
        return points.decode(regs, point.type, point.order, point.scale, point.offset)

    # ---------------------------------------------------------------- requests
    def accepts(self, frame: tuple) -> bool:
        """An RTU (unit, pdu) for this unit or a broadcast (unit 0)."""
        return frame[0] == self.unit or frame[0] == 0

    def handle(self, frame: tuple, t: float) -> bytes | None:
        """RTU: (unit, pdu) -> the reply ADU, or None (broadcast, malformed, silent)."""
        unit, pdu = frame
        reply = self.handle_pdu(unit, pdu, t)
        if reply is None:
            return None
        wrong = self.device.faults.fires("wrong_address")
        if wrong:
            unit = int(wrong.get("address", self.unit % 247 + 1))
        return modbus.rtu_frame(unit, reply)

    def handle_pdu(self, unit: int, pdu: bytes, t: float) -> bytes | None:
        """A request PDU -> the reply PDU (None for broadcasts and malformed requests)."""
        try:
            req = modbus.parse_request(pdu)
        except ExceptionResponse as exc:
            return None if unit == 0 else modbus.exception_response(exc.function, exc.code)
        except ProtocolError:
            return None  # a real device ignores what it cannot parse
        fault = self.device.faults.fires("exception")
        if fault and unit != 0:
            self.device.counts["exceptions"] += 1
            return modbus.exception_response(req.function, int(fault["code"]))
        try:
            if req.function <= 4:
                reply = self._read(req, t)
            else:
                reply = self._write(req, t)
        except ExceptionResponse as exc:
            self.device.counts["exceptions"] += 1
            reply = modbus.exception_response(exc.function, exc.code)
        return None if unit == 0 else reply

    def _overlapping(self, table: str, start: int, count: int) -> list[Point]:
        end = start + count
        return [p for p in self.tables.get(table, [])
                if p.address < end and p.address + p.register_count() > start]

    def _read(self, req: modbus.Request, t: float) -> bytes:
        table = TABLE_OF_FUNCTION[req.function]
        touched = self._overlapping(table, req.address, req.count)
        if not touched:
            raise ExceptionResponse(req.function, ILLEGAL_ADDRESS)
        if table in ("coil", "discrete"):
            bits = [False] * req.count
            for p in touched:
                bits[p.address - req.address] = bool(self._raw(p, t))
            return modbus.read_response(req.function, bits)
        image = [0] * req.count
        for p in touched:
            regs = self.encode(p, self._raw(p, t))
            for i, r in enumerate(regs):
                k = p.address + i - req.address
                if 0 <= k < req.count:
                    image[k] |= r  # bit<N> points share a register
        return modbus.read_response(req.function, image)

    def _write(self, req: modbus.Request, t: float) -> bytes:
        table = TABLE_OF_FUNCTION[req.function]
        touched = self._overlapping(table, req.address, req.count)
        if not touched:
            raise ExceptionResponse(req.function, ILLEGAL_ADDRESS)
        values = req.values or []
        changes = []
        for p in touched:
            n = p.register_count()
            if not p.writable or p.address < req.address or p.address + n > req.address + req.count:
                raise ExceptionResponse(req.function, ILLEGAL_ADDRESS)
            k = p.address - req.address
            if table == "coil":
                value: object = bool(values[k])
            else:
                try:
                    value = points.decode(values[k:k + n], p.type, p.order, p.scale, p.offset)
                except EncodingError:
                    raise ExceptionResponse(req.function, ILLEGAL_VALUE) from None
            if p.check_write(value) is not None:
                raise ExceptionResponse(req.function, ILLEGAL_VALUE)
            changes.append((p.name, value))
        for name, value in changes:
            if name in ("on",) or name.startswith("contactor_"):
                value = bool(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            self.device.write(name, value, t)
        return modbus.write_response(req)
