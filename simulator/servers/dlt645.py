"""DL/T 645-2007 / -1997 server side of one electricity meter: reads by DI, read address, relay.

Tariffs: forward active energy is split over `params.tariffs` tariffs (default 4, commonly sharp, peak,
flat, valley) in fixed per-meter shares, rounded to the register's 0.01 kWh so that the tariffs sum
exactly to the total (DIs 00010100.. and the block 0001FF00 = total + tariffs).

Follow-up frames: with `params.followup = N` (value bytes per frame) or a `followup` fault (`size`),
a read whose value is longer is answered B1 + the first N bytes; C=12 requests (SEQ from `seq_start`,
default 1) get the rest, B2 .. 92, each ending with the SEQ byte unless `reply_seq` is 0.

Relay control (C=1C): 1A trips (relay "open": power and current 0, energy stops), 1B / 1C close. The
request's password must equal `params.password` (8 hex digits, default DEFAULT_PASSWORD "00000000"), and
its operator code `params.operator` when that is set; otherwise the meter answers DC with ERR 04
(password error / not authorised) and the relay stays as it was. Every C=1C request the meter gets is
counted in the device counter `relay_requests` (writes counts the relay changes).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from protocols import dlt645, registry
from protocols.errors import EncodingError, ProtocolError
from protocols.profiles import Point
from simulator.devices.base import uniform
from simulator.servers import reply_address

if TYPE_CHECKING:
    from simulator.device import Device

# DI (2007, printed) -> model quantity
DI_QUANTITY = {
    "00000000": "energy", "00010000": "energy_import", "00020000": "energy_export",
    "02010100": "voltage_a", "02010200": "voltage_b", "02010300": "voltage_c",
    "02020100": "current_a", "02020200": "current_b", "02020300": "current_c",
    "02030000": "power", "02030100": "power_a", "02030200": "power_b", "02030300": "power_c",
    "02040000": "reactive_power", "02050000": "apparent_power", "02060000": "power_factor",
    "02800002": "frequency", "02800007": "temperature",
}
TARIFF_DIS = ("00010100", "00010200", "00010300", "00010400")
# block DI -> member DIs (the energy block ends after the meter's tariff count)
BLOCKS = {
    "0001FF00": ["00010000", *TARIFF_DIS],
    "0201FF00": ["02010100", "02010200", "02010300"],
    "0202FF00": ["02020100", "02020200", "02020300"],
}
# 1997 DI -> 2007 DI, beyond the codec's DI_1997_TO_2007
DI_1997 = {
    "9010": "00010000", "9011": "00010100", "9012": "00010200", "9013": "00010300", "9014": "00010400",
    "9020": "00020000", "B611": "02010100", "B612": "02010200", "B613": "02010300",
    "B621": "02020100", "B622": "02020200", "B623": "02020300", "B630": "02030000", "B631": "02030100",
    "B632": "02030200", "B633": "02030300", "B61F": "0201FF00", "B62F": "0202FF00", "901F": "0001FF00",
}
UNIT_FACTOR = {"kWh": 3600000.0, "kvarh": 3600000.0, "kW": 1000.0, "kvar": 1000.0, "kVA": 1000.0}
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_PASSWORD = 0x04
DEFAULT_TARIFFS = 4
DEFAULT_PASSWORD = "00000000"


def _hex4(device: Device, key: str, value: object) -> bytes:
    """4 bytes from 8 hex digits (params.password / params.operator); ValueError naming the device."""
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        raw = b""
    if len(raw) != 4:
        raise ValueError("device %s: params.%s must be 8 hex digits such as \"00000000\"" % (device.id, key))
    return raw


class Dlt645Server:
    """Answers read-data, read-address and relay control for one meter address."""

    checksum_at = -2

    def __init__(self, device: Device) -> None:
        self.device = device
        self.version = registry.family(device.protocol).version
        self.version = int(device.profile.options.get("version", self.version))
        self.address = dlt645.format_address(dlt645.parse_address(str(device.address)))
        self.preamble = int(device.params.get("preamble", 0))
        self.utc_offset = device.model.utc_offset
        self.tariffs = max(0, min(4, int(device.params.get("tariffs", DEFAULT_TARIFFS))))
        # shares of the total per tariff: fixed per meter, e.g. about 10/35/30/25 %
        base = (10.0, 35.0, 30.0, 25.0)
        self.tariff_weights = [int(1000 * b * uniform(device.seed, "tariff.%d" % k, 0.8, 1.2))
                               for k, b in enumerate(base[:self.tariffs])]
        self._followup: tuple[str, list[bytes]] | None = None  # the DI and reply frames of a split read
        self._seq_start = 1
        self.password = _hex4(device, "password", device.params.get("password", DEFAULT_PASSWORD))
        operator = device.params.get("operator")
        self.operator = None if operator is None else _hex4(device, "operator", operator)
        device.counts.setdefault("relay_requests", 0)

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
        if di07 in TARIFF_DIS:
            return self._tariff(TARIFF_DIS.index(di07), t), fmt, False
        quantity = DI_QUANTITY.get(di07)
        if quantity is None:
            raise KeyError(di)
        value = float(self.device.quantity(quantity, t))  # type: ignore[arg-type]
        value /= UNIT_FACTOR.get(unit, 1.0)
        if not signed and value < 0:
            value = 0.0
        return value, fmt, signed

    def _tariff(self, k: int, t: float) -> float:
        """Tariff k's share of the forward active total, in kWh; the shares add up to the register."""
        if k >= self.tariffs:
            raise KeyError(TARIFF_DIS[k])
        kwh = float(self.device.quantity("energy_import", t)) / UNIT_FACTOR["kWh"]  # type: ignore[arg-type]
        total = round(kwh * 100)  # as encode_value rounds the total register
        whole = sum(self.tariff_weights)
        parts = [total * w // whole for w in self.tariff_weights]
        parts[-1] = total - sum(parts[:-1])
        return parts[k] / 100.0

    def _local(self, t: float) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(int(t) + self.utc_offset * 3600, datetime.UTC)

    def _encode(self, di: str, t: float) -> bytes:
        members = BLOCKS.get(self._di2007(di))
        if members is not None:
            if members[1:] == list(TARIFF_DIS):  # the energy block: the total, then the meter's tariffs
                members = members[:1 + self.tariffs]
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
        if point.block_index is not None:
            size = dlt645.format_info(fmt)[0]
            raw = raw[point.block_index * size:(point.block_index + 1) * size]
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
        if control == 0x12 and self.version == 2007:
            return self._read_followup(frame)
        if control == 0x1C:
            return self._relay(frame, t)
        if control in (0x08, 0x16):
            return None
        return dlt645.abnormal_reply(self._reply_address(), ERR_PASSWORD if control == 0x14 else ERR_OTHER,
                                     self.version, control, self.preamble)

    def _reply_address(self) -> str:
        return reply_address(self.device, self.address)

    def _read(self, frame: dlt645.Frame, t: float) -> bytes | None:
        version = 2007 if frame.control == 0x11 else 1997
        if version != self.version:
            return dlt645.abnormal_reply(self._reply_address(), ERR_OTHER, self.version, frame.control,
                                         self.preamble)
        self._followup = None
        try:
            di = dlt645.parse_read_request(frame, version)
        except ProtocolError:
            return None
        try:
            value = self._encode(di, t)
        except KeyError:
            return dlt645.abnormal_reply(self._reply_address(), ERR_NO_DATA, version, frame.control,
                                         self.preamble)
        size, seq_start, reply_seq = self._split()
        if version == 1997 or size <= 0:
            return dlt645.read_reply(self._reply_address(), di, value, version, False, self.preamble)
        frames = dlt645.read_reply_frames(self._reply_address(), di, value, size, seq_start, reply_seq,
                                          self.preamble)
        self._followup = (di, frames) if len(frames) > 1 else None
        self._seq_start = seq_start
        return frames[0]

    def _split(self) -> tuple[int, int, bool]:
        """(value bytes per frame, SEQ of the first C=12, SEQ byte in 92/B2): fault, else params."""
        fault = self.device.faults.fires("followup")
        if fault:
            return int(fault["size"]), int(fault["seq_start"]), bool(fault["reply_seq"])
        params = self.device.params
        return (int(params.get("followup", 0)), int(params.get("followup_seq_start", 1)),
                bool(params.get("followup_reply_seq", True)))

    def _read_followup(self, frame: dlt645.Frame) -> bytes | None:
        """C=12: the frame SEQ of the last split read; no data (D2) for anything else."""
        try:
            di, seq = dlt645.parse_followup_request(frame)
        except ProtocolError:
            return None
        pending = self._followup
        k = seq - self._seq_start + 1
        if pending is None or pending[0] != di or not 1 <= k < len(pending[1]):
            return dlt645.abnormal_reply(self._reply_address(), ERR_NO_DATA, 2007, 0x12, self.preamble)
        return pending[1][k]

    def _relay(self, frame: dlt645.Frame, t: float) -> bytes | None:
        self.device.counts["relay_requests"] += 1
        try:
            action, _until, password, operator = dlt645.parse_relay_request(frame)
        except ProtocolError:
            return dlt645.abnormal_reply(self._reply_address(), ERR_OTHER, self.version, 0x1C, self.preamble)
        if password != self.password or (self.operator is not None and operator != self.operator):
            return dlt645.abnormal_reply(self._reply_address(), ERR_PASSWORD, self.version, 0x1C,
                                         self.preamble)
        if action == dlt645.RELAY_TRIP:
            self.device.write("relay", "open", t)
        elif action in (dlt645.RELAY_CLOSE_ALLOWED, dlt645.RELAY_CLOSE_DIRECT):
            self.device.write("relay", "closed", t)
        return dlt645.relay_reply(self._reply_address(), self.preamble)
