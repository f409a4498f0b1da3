"""Modbus RTU (serial) and Modbus TCP devices."""

from __future__ import annotations

from typing import Any

from agent.drivers.base import Driver, ReadResult, WriteRefused, scaled
from agent.link.base import Link, LinkError
from agent.link.tcp_link import MbapFrameReader
from agent.planner import FUNCTIONS, PlannedRequest
from protocols import modbus, points
from protocols.errors import EncodingError, ProtocolError
from protocols.profiles import Point

__all__ = ["ModbusDriver"]


class ModbusDriver(Driver):
    protocol = "modbus"

    def __init__(self, device: Any, profile: Any, bus: Any) -> None:
        Driver.__init__(self, device, profile, bus)
        self.unit = int(device.address)
        self._transaction = 0

    # ------------------------------------------------------------------ transport
    def transact(self, link: Link, pdu: bytes) -> bytes:
        """Send one request PDU and return the reply PDU from this unit."""
        if self.tcp:
            self._transaction = (self._transaction + 1) & 0xFFFF
            tid = self._transaction
            frame = link.transact(modbus.tcp_frame(tid, self.unit, pdu), MbapFrameReader(),
                                  accept=lambda f: f[0] == tid)
            return bytes(frame[2])
        unit = self.unit
        frame = link.transact(modbus.rtu_frame(unit, pdu), modbus.RtuFrameReader("response"),
                              accept=lambda f: f[0] == unit and f[1][:1] != b"" and self._not_echo(pdu, f[1]))
        return bytes(frame[1])

    @staticmethod
    def _not_echo(request: bytes, reply: bytes) -> bool:
        # A read request echoed by an adapter with local echo is not the reply (writes echo by design).
        return reply != request or request[0] >= 5

    # ------------------------------------------------------------------ reads
    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        pdu = modbus.read_request(request.function, request.address, request.count)
        values = modbus.parse_response(pdu, self.transact(link, pdu))
        return self.decode(request, list(values))

    def decode(self, request: PlannedRequest, values: list) -> ReadResult:
        """Values of the request's points from the registers (or bits) of its reply."""
        result = ReadResult()
        for point, offset in request.points:
            try:
                if request.function <= 2:
                    raw: Any = bool(values[offset])
                else:
                    n = point.register_count()
                    raw = points.decode(values[offset:offset + n], point.type, point.order)
                result.values.append((point.name, scaled(raw, point)))
            except (EncodingError, IndexError) as exc:
                result.bad.append((point.name, "decode: %s" % exc))
        return result

    def _read_point(self, link: Link, point: Point) -> Any:
        request = PlannedRequest(self.id, "modbus", [(point, 0)], function=FUNCTIONS[point.table],
                                 table=point.table, address=point.address, count=point.register_count())
        result = self.read(link, request)
        if result.bad:
            raise EncodingError(result.bad[0][1])
        return result.values[0][1]

    # ------------------------------------------------------------------ writes
    def write(self, link: Link, name: str, value: Any) -> Any:
        point = self.check_write(name, value)
        if point.table in ("input", "discrete"):
            raise WriteRefused("point %s is in the %s table, which cannot be written" % (name, point.table))
        try:
            if point.table == "coil":
                pdu = modbus.write_coil_request(point.address, bool(value))
            elif point.type.startswith("bit"):
                current = self.transact(link, modbus.read_request(3, point.address, 1))
                register = modbus.parse_response(modbus.read_request(3, point.address, 1), current)[0]
                mask = points.encode(True, point.type, point.order)[0]
                register = (register | mask) if value else (register & ~mask & 0xFFFF)
                pdu = modbus.write_register_request(point.address, register)
            else:
                registers = points.encode(value, point.type, point.order, point.scale, point.offset)
                if len(registers) == 1:
                    pdu = modbus.write_register_request(point.address, registers[0])
                else:
                    pdu = modbus.write_registers_request(point.address, registers)
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
        reply = self.transact(link, pdu)
        modbus.parse_response(pdu, reply)
        try:
            return self._read_point(link, point)
        except (LinkError, ProtocolError):  # written, but the read-back failed
            return None
