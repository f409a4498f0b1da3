"""DL/T 645-2007 / -1997 server side of one electricity meter: reads by DI, read address, relay."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from protocols import dlt645
from protocols.errors import EncodingError, ProtocolError
from protocols.profiles import Point

if TYPE_CHECKING:
    from simulator.device import Device

# DI (2007, printed) -> model quantity
DI_QUANTITY = {
    "00000000": "energy", "00010000": "energy_import", "00010100": "energy_import",
    "00020000": "energy_export",
    "02010100": "voltage_a", "02010200": "voltage_b", "02010300": "voltage_c",
    "02020100": "current_a", "02020200": "current_b", "02020300": "current_c",
    "02030000": "power", "02030100": "power_a", "02030200": "power_b", "02030300": "power_c",
    "02040000": "reactive_power", "02050000": "apparent_power", "02060000": "power_factor",
    "02800002": "frequency", "02800007": "temperature",
}
# block DI -> member DIs (a single-tariff meter: tariff 1 carries the whole total)
BLOCKS = {
    "0001FF00": ["00010000", "00010100"],
    "0201FF00": ["02010100", "02010200", "02010300"],
    "0202FF00": ["02020100", "02020200", "02020300"],
}
# 1997 DI -> 2007 DI, beyond the codec's DI_1997_TO_2007
DI_1997 = {
    "9010": "00010000", "9020": "00020000", "B611": "02010100", "B612": "02010200", "B613": "02010300",
    "B621": "02020100", "B622": "02020200", "B623": "02020300", "B630": "02030000", "B631": "02030100",
    "B632": "02030200", "B633": "02030300", "B61F": "0201FF00", "B62F": "0202FF00", "901F": "0001FF00",
}
UNIT_FACTOR = {"kWh": 3600000.0, "kvarh": 3600000.0, "kW": 1000.0, "kvar": 1000.0, "kVA": 1000.0}
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_PASSWORD = 0x04


class Dlt645Server:
    """Answers read-data, read-address and relay control for one meter address."""

    checksum_at = -2

    def __init__(self, device: Device) -> None:
        self.device = device
        self.version = 1997 if device.protocol == "dlt645_1997" else 2007
        self.version = int(device.profile.options.get("version", self.version))
        self.address = dlt645.format_address(dlt645.parse_address(str(device.address)))
        self.preamble = int(device.params.get("preamble", 0))
        self.utc_offset = device.model.utc_offset

    # ---------------------------------------------------------------- values
    def _di2007(self, di: str) -> str:
        if self.version == 1997:
            return DI_1997.get(di) or dlt645.DI_1997_TO_2007.get(di, "")
        return di

    def _member_value(self, di: str, t: float) -> tuple[object, str, bool]:
        """(value in the meter's unit or digits, format, signed) of one non-block DI."""
        entry = dlt645.DI_TABLE.get(di)
        if entry is None:
            raise KeyError(di)
        _name, fmt, unit, signed = entry
        di07 = self._di2007(di)
        if di07 == "04000101":
            local = self._local(t)
            return "%02d%02d%02d%02d" % (local.year % 100, local.month, local.day,
                                          local.isoweekday() % 7), fmt, False
        if di07 == "04000102":
            local = self._local(t)
            return "%02d%02d%02d" % (local.hour, local.minute, local.second), fmt, False
        if di07 in ("04000401", "04000402"):
            return self.address, fmt, False
        quantity = DI_QUANTITY.get(di07)
        if quantity is None:
            raise KeyError(di)
        value = float(self.device.quantity(quantity, t))  # type: ignore[arg-type]
        value /= UNIT_FACTOR.get(unit, 1.0)
        if not signed and value < 0:
            value = 0.0
        return value, fmt, signed

    def _local(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(t) + self.utc_offset * 3600, datetime.UTC)

    def _encode(self, di: str, t: float) -> bytes:
        members = BLOCKS.get(self._di2007(di))
        if members is not None:
            if self.version == 1997:
                members = [k for m in members for k, v in DI_1997.items() if v == m]
            return b"".join(self._encode(m, t) for m in members)
        value, fmt, signed = self._member_value(di, t)
        try:
            return dlt645.encode_value(value, fmt, signed)  # type: ignore[arg-type]
        except EncodingError:
            nbytes = dlt645.format_info(fmt)[0]
            return b"\x99" * (nbytes - 1) + (b"\x79" if signed else b"\x99")  # saturated

    def point_value(self, point: Point, t: float) -> object:
        raw = self._encode(point.di or "", t)
        _name, fmt, _unit, signed = dlt645.DI_TABLE[point.di or ""]
        fmt = point.format or fmt
        value = dlt645.decode_value(raw, fmt, point.signed if "signed" in point.spec else signed)
        if isinstance(value, str):
            return value
        return value * point.scale + point.offset

    # ---------------------------------------------------------------- requests
    def accepts(self, frame: dlt645.Frame) -> bool:
        if frame.is_reply:
            return False
        if frame.address == dlt645.BROADCAST:
            return True
        try:
            return dlt645.address_matches(frame.address, self.address)
        except EncodingError:
            return False

    def handle(self, frame: dlt645.Frame, t: float) -> bytes | None:
        if frame.address == dlt645.BROADCAST:
            return None  # broadcast time sync / freeze: meters never answer
        control = frame.control
        fault = self.device.faults.fires("abnormal")
        if fault:
            return dlt645.abnormal_reply(self._reply_address(), int(fault.get("code", ERR_NO_DATA)),
                                         self.version, control, self.preamble)
        if control == 0x13:
            if frame.address != dlt645.WILDCARD:
                return None
            return dlt645.read_address_reply(self._reply_address(), self.preamble)
        if control in (0x11, 0x01):
            return self._read(frame, t)
        if control == 0x1C:
            return self._relay(frame, t)
        if control in (0x08, 0x16):
            return None
        return dlt645.abnormal_reply(self._reply_address(), ERR_PASSWORD if control == 0x14 else ERR_OTHER,
                                     self.version, control, self.preamble)

    def _reply_address(self) -> str:
        wrong = self.device.faults.fires("wrong_address")
        if wrong:
            other = wrong.get("address")
            if other is None:
                digits = self.address.isdigit()
                other = "%012d" % ((int(self.address) + 1) % 10 ** 12) if digits else "000000000001"
            return str(other)
        return self.address

    def _read(self, frame: dlt645.Frame, t: float) -> bytes | None:
        version = 2007 if frame.control == 0x11 else 1997
        if version != self.version:
            return dlt645.abnormal_reply(self._reply_address(), ERR_OTHER, self.version, frame.control,
                                         self.preamble)
        try:
            di = dlt645.parse_read_request(frame, version)
        except ProtocolError:
            return None
        try:
            value = self._encode(di, t)
        except KeyError:
            return dlt645.abnormal_reply(self._reply_address(), ERR_NO_DATA, version, frame.control,
                                         self.preamble)
        return dlt645.read_reply(self._reply_address(), di, value, version, False, self.preamble)

    def _relay(self, frame: dlt645.Frame, t: float) -> bytes | None:
        try:
            action = dlt645.parse_relay_request(frame)[0]
        except ProtocolError:
            return dlt645.abnormal_reply(self._reply_address(), ERR_OTHER, self.version, 0x1C, self.preamble)
        if action == dlt645.RELAY_TRIP:
            self.device.write("relay", "open", t)
        elif action in (dlt645.RELAY_CLOSE_ALLOWED, dlt645.RELAY_CLOSE_DIRECT):
            self.device.write("relay", "closed", t)
        return dlt645.relay_reply(self._reply_address(), self.preamble)
