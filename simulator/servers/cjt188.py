"""CJ/T 188-2004 server side of one water / gas meter: 901F reads, valve control, read address."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from protocols import cjt188
from protocols.errors import EncodingError, ProtocolError
from protocols.profiles import Point
from simulator.servers import reply_address

if TYPE_CHECKING:
    from simulator.device import Device

FIELD_QUANTITY = {
    "flow_total": "volume", "flow_settlement": "volume_settlement", "valve": "valve",
    "battery_low": "battery_low", "heat_total": "heat_energy", "heat_settlement": "heat_energy_settlement",
    "heat_power": "heat_power", "flow_rate": "flow_rate", "supply_temp": "supply_temperature",
    "return_temp": "return_temperature", "working_hours": "working_time",
}
DEFAULT_UNITS = {"heat_settlement": 0x05, "heat_total": 0x05, "heat_power": 0x17, "flow_rate": 0x35}
VALVE_CODES = {0x55: "open", 0x99: "closed"}
ST1_VALVE_ABNORMAL = 0x03


class Cjt188Server:
    """Answers one meter type and address: C=01 901F, C=04 A017 (valve), C=03 810A (address)."""

    checksum_at = -2

    def __init__(self, device: Device) -> None:
        self.device = device
        options = device.profile.options
        self.meter_type = int(options.get("meter_type", cjt188.METER_COLD_WATER))
        self.di_order = str(options.get("di_order", "lo_first"))
        self.status = options.get("status")
        self.unit_codes = dict(options.get("unit_code", {}))
        self.address = cjt188.format_address(cjt188.parse_address(str(device.address)))
        self.preamble = int(device.params.get("preamble", 0))
        self.utc_offset = device.model.utc_offset

    # ---------------------------------------------------------------- values
    def fields(self, t: float) -> dict:
        """The 901F fields at simulated time t, in the meter's units."""
        out: dict = {}
        heat = 0x20 <= self.meter_type <= 0x2F
        for name, _n, _decimals, has_unit in cjt188.HEAT_LAYOUT if heat else cjt188.WATER_LAYOUT:
            value = float(self.device.quantity(FIELD_QUANTITY[name], t))  # type: ignore[arg-type]
            if has_unit:
                code = int(self.unit_codes.get(name, DEFAULT_UNITS.get(name, 0x2C)))
                value /= cjt188.UNIT_CODES.get(code, ("m3", "m3", 1))[2]
                out[name + "_unit"] = code
            elif name == "working_hours":
                value = float(value // 3600)
            out[name] = max(0.0, value)
        local = datetime.datetime.fromtimestamp(int(t) + self.utc_offset * 3600, datetime.UTC)
        out["time"] = (local.year, local.month, local.day, local.hour, local.minute, local.second)
        out["valve"] = self.device.quantity("valve", t)
        out["battery_low"] = bool(self.device.quantity("battery_low", t))
        return out

    def reply_901f(self, t: float, ser: int, address: str | None = None) -> bytes:
        return cjt188.encode_901f_reply(self.meter_type, address or self.address, self.fields(t), ser,
                                        self.di_order, self.status, self.preamble)

    def point_value(self, point: Point, t: float) -> object:
        frame = cjt188.parse_frame(self.reply_901f(t, 0))
        value = cjt188.parse_901f(frame, self.meter_type, 0, self.status).get(point.field or "")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        return value * point.scale + point.offset

    # ---------------------------------------------------------------- requests
    def accepts(self, frame: cjt188.Frame) -> bool:
        if frame.is_reply:
            return False
        if frame.meter_type not in (self.meter_type, cjt188.WILDCARD_TYPE):
            return False
        try:
            return cjt188.address_matches(frame.address, self.address)
        except EncodingError:
            return False

    def _reply_address(self) -> str:
        return reply_address(self.device, self.address)

    def _st1(self, t: float) -> int:
        return cjt188.encode_status(str(self.device.quantity("valve", t)),
                                    bool(self.device.quantity("battery_low", t)), self.status)

    def handle(self, frame: cjt188.Frame, t: float) -> bytes | None:
        try:
            di, ser, payload, order = cjt188.parse_request(frame, self.di_order)
        except ProtocolError:
            return None
        fault = self.device.faults.fires("abnormal")
        if fault:
            return cjt188.abnormal_reply(self.meter_type, self._reply_address(), frame.control, ser,
                                         int(fault.get("code", ST1_VALVE_ABNORMAL)), 0, self.preamble)
        if frame.control == 0x01 and di == cjt188.DI_901F:
            return self.reply_901f(t, ser, self._reply_address())
        if frame.control == 0x03 and di == cjt188.DI_ADDRESS:
            if frame.address.upper() != cjt188.WILDCARD:
                return None
            return cjt188.read_address_reply(self.meter_type, self._reply_address(), ser, order,
                                             self.preamble)
        if frame.control == 0x04 and di == cjt188.DI_VALVE and payload:
            action = VALVE_CODES.get(payload[0])
            if action is not None:
                self.device.write("valve", action, t)
            elif payload[0] != 0xAA:  # AA = exercise the valve: no lasting change
                return cjt188.abnormal_reply(self.meter_type, self._reply_address(), frame.control, ser,
                                             self._st1(t), 0, self.preamble)
            try:
                return cjt188.write_reply(self.meter_type, self._reply_address(), di, ser, order,
                                          self._st1(t), 0, self.preamble)
            except EncodingError:
                return None
        return cjt188.abnormal_reply(self.meter_type, self._reply_address(), frame.control, ser,
                                     self._st1(t), 0, self.preamble)
