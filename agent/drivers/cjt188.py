"""CJ/T 188-2004 water, gas and heat meters: every point comes from one 901F reply."""

from __future__ import annotations

from typing import Any

from agent.drivers.base import Driver, ReadResult, WriteRefused, scaled
from agent.link.base import Link
from agent.planner import PlannedRequest
from protocols import cjt188
from protocols.errors import EncodingError

__all__ = ["Cjt188Driver"]


class Cjt188Driver(Driver):
    protocol = "cjt188"

    def __init__(self, device: Any, profile: Any, bus: Any) -> None:
        Driver.__init__(self, device, profile, bus)
        self.address = str(device.address)
        self.meter_type = int(self.options.get("meter_type", cjt188.METER_COLD_WATER))
        self.di_order = str(self.options.get("di_order", "lo_first"))
        self.preamble = int(self.options.get("preamble", 4))
        self.status = self.options.get("status")
        if isinstance(self.status, dict):
            self.status = dict(cjt188.STATUS_DEFAULT, **self.status)
        self.unit_codes = dict(self.options.get("unit_code") or {})
        self._ser = 0

    def _next_ser(self) -> int:
        self._ser = (self._ser + 1) & 0xFF
        return self._ser

    def _accept(self, frame: Any) -> bool:
        return bool(frame.is_reply) and frame.address == self.address

    def transact(self, link: Link, request: bytes) -> Any:
        return link.transact(request, cjt188.Cjt188FrameReader(), accept=self._accept)

    def _convert(self, field: str, value: Any, fields: dict) -> Any:
        """Bring a value in the meter's unit code to the unit the profile expects (options.unit_code)."""
        got = fields.get(field + "_unit")
        want = self.unit_codes.get(field)
        if got is None or want is None or got == want or isinstance(value, (bool, str)):
            return value
        have, unit = cjt188.primary_value(value, got)
        base, want_unit = cjt188.primary_value(1, want)
        if unit != want_unit:
            raise EncodingError("%s arrives in unit code %02X, expected %02X" % (field, got, want))
        return have / base

    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        ser = self._next_ser()
        frame = self.transact(link, cjt188.read_request(self.meter_type, self.address, 0x901F, ser,
                                                        self.di_order, self.preamble))
        fields = cjt188.parse_901f(frame, self.meter_type, ser, self.status)
        result = ReadResult()
        for point, _ in request.points:
            value = fields.get(point.field)
            if value is None:
                result.bad.append((point.name, str(fields.get("quality", "missing"))))
                continue
            try:
                value = self._convert(str(point.field), value, fields)
            except EncodingError as exc:
                result.bad.append((point.name, "unit: %s" % exc))
                continue
            result.values.append((point.name, scaled(value, point)))
        return result

    def write(self, link: Link, name: str, value: Any) -> Any:
        point = self.check_write(name, value)
        if point.field != "valve":
            raise WriteRefused("CJ/T 188 meters accept writes to the valve only, not %s" % name)
        actions = {"open": "open", "closed": "close", "close": "close", True: "open", False: "close"}
        action = actions.get(value)
        if action is None:
            raise WriteRefused("valve needs open or closed, not %r" % (value,))
        ser = self._next_ser()
        frame = self.transact(link, cjt188.valve_request(self.meter_type, self.address, action, ser,
                                                         self.di_order, self.preamble))
        cjt188.parse_write_reply(frame, cjt188.DI_VALVE, ser, self.status)
        try:
            result = self.read(link, PlannedRequest(self.id, self.protocol, [(point, 0)], di=0x901F))
            return result.values[0][1] if result.values else None
        except Exception:
            return None
