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

__all__ = ["BROADCAST_DELAY_MS", "ModbusDriver"]

#: after a broadcast the client keeps the line idle this long (the serial-line spec's "turnaround delay",
#: typically 100..200 ms; the devices act on the request and send nothing)
BROADCAST_DELAY_MS = 100


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
    def _write_pdu(self, point: Point, value: Any) -> bytes:
        """The write request PDU of a coil or whole registers (not a bit inside a register)."""
        try:
            if point.table == "coil":
                return modbus.write_coil_request(point.address, bool(value))
            if isinstance(value, bool):  # true/false on a register point (a lamp's on) is 1/0
                value = int(value)
            registers = points.encode(value, point.type, point.order, point.scale, point.offset)
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (point.name, value, exc)) from None
        if len(registers) == 1:
            return modbus.write_register_request(point.address, registers[0])
        return modbus.write_registers_request(point.address, registers)

    def write(self, link: Link, name: str, value: Any) -> Any:
        point = self.check_write(name, value)
        if point.table in ("input", "discrete"):
            raise WriteRefused("point %s is in the %s table, which cannot be written" % (name, point.table))
        if point.table != "coil" and point.type.startswith("bit"):
            current = self.transact(link, modbus.read_request(3, point.address, 1))
            register = modbus.parse_response(modbus.read_request(3, point.address, 1), current)[0]
            mask = points.encode(True, point.type, point.order)[0]
            register = (register | mask) if value else (register & ~mask & 0xFFFF)
            pdu = modbus.write_register_request(point.address, register)
        else:
            pdu = self._write_pdu(point, value)
        reply = self.transact(link, pdu)
        modbus.parse_response(pdu, reply)
        try:
            return self._read_point(link, point)
        except (LinkError, ProtocolError):  # written, but the read-back failed
            return None

    def broadcast_refusal(self, name: str) -> str | None:
        """None when point `name` may be written to every device of this bus by one broadcast, else why
        not (a Modbus RTU bus, a writable coil or whole register the profile marks "broadcast")."""
        if self.tcp:
            return "bus %s is Modbus TCP (a broadcast is for RTU lines)" % self.bus.name
        if not self.profile.has_point(name):
            return 'profile %s has no point "%s"' % (self.profile.model, name)
        point = self.profile.point(name)
        if not point.broadcast:
            return "profile %s does not mark point %s for broadcast" % (self.profile.model, name)
        if point.table not in ("coil", "holding") or (point.table != "coil" and point.type.startswith("bit")):
            return "point %s is not a coil or whole register" % name
        return None

    def broadcast(self, link: Link, name: str, value: Any) -> None:
        """Write `value` to point `name` of every device on the bus at once: one request to unit 0, which
        no device answers. The line is then kept idle for the profile's `broadcast_delay_ms` (default
        100 ms) so every device has acted on it before the next request. Checked first (WriteRefused)."""
        point = self.check_write(name, value)
        reason = self.broadcast_refusal(name)
        if reason is not None:
            raise WriteRefused(reason)
        link.send(modbus.rtu_frame(0, self._write_pdu(point, value)))
        link.hold(float(self.options.get("broadcast_delay_ms", BROADCAST_DELAY_MS)) / 1000.0)
