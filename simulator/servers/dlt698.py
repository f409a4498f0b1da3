"""DL/T 698.45 server side of one electricity meter: GET-Request-Normal / -NormalList of the OADs in
protocols/dlt698/table.py, answered from the same electricity-meter model as the DL/T 645 meters.

Addressing: a single SA equal to the meter's address (params: none; the scenario's `address`, digits
as printed), or a wildcard SA whose A nibbles cover it (AAAAAAAAAAAA reads the address of the one
meter on the bus); broadcasts are obeyed silently, group addresses ignored. The response comes from the
meter's full address and echoes the request's client address (CA) and PIID.

Values are the model's quantities as integers with the table's scaler (energy 0.01 kWh, voltage 0.1 V,
current 0.001 A, power 0.1 W, power factor 0.001, frequency 0.01 Hz, temperature 0.1 degC),
saturated at the type's range. Energy arrays are total + `params.tariffs` tariffs (default 4) split in
fixed per-meter shares that add up exactly to the total, as for the DL/T 645 meters. Reactive and
apparent power per phase follow active power's split. An OAD the meter does not have gets DAR 4
(object undefined), an element index past the array DAR 8 (out of range); the `abnormal` fault
answers every OAD with its `code` (default 4). Requests it cannot parse, security-wrapped APDUs and
services other than GET stay unanswered (counted in the device counter `ignored`).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from protocols import axdr, dlt698
from protocols.errors import ProtocolError
from protocols.profiles import Point
from simulator.devices.base import uniform
from simulator.servers import reply_address

if TYPE_CHECKING:
    from simulator.device import Device

DAR_UNDEFINED = 4
DAR_OUT_OF_RANGE = 8
DEFAULT_TARIFFS = 4
KWH = 3600000.0
# A-XDR tag -> (low, high) for saturation
RANGES = {axdr.DOUBLE_LONG: (-0x80000000, 0x7FFFFFFF), axdr.DOUBLE_LONG_UNSIGNED: (0, 0xFFFFFFFF),
          axdr.LONG: (-0x8000, 0x7FFF), axdr.LONG_UNSIGNED: (0, 0xFFFF)}


class Dlt698Server:
    """Answers GET requests for one meter address."""

    checksum_at = -2  # the FCS high byte (frames end FCS-low FCS-high 16)

    def __init__(self, device: Device) -> None:
        self.device = device
        try:
            self.address = dlt698.format_address(dlt698.parse_address(str(device.address)))
        except ProtocolError as exc:
            raise ValueError("device %s: address %r is not a DL/T 698.45 server address: %s"
                             % (device.id, device.address, exc)) from None
        self.preamble = int(device.params.get("preamble", 0))
        self.utc_offset = device.model.utc_offset
        self.tariffs = max(0, min(4, int(device.params.get("tariffs", DEFAULT_TARIFFS))))
        base = (10.0, 35.0, 30.0, 25.0)  # about sharp / peak / flat / valley, varied per meter
        self.tariff_weights = [int(1000 * b * uniform(device.seed, "tariff.%d" % k, 0.8, 1.2))
                               for k, b in enumerate(base[:self.tariffs])]
        device.counts.setdefault("ignored", 0)

    # ---------------------------------------------------------------- values
    def _q(self, name: str, t: float) -> float:
        return float(self.device.quantity(name, t))  # type: ignore[arg-type]

    @staticmethod
    def _int(tag: int, value: float) -> tuple:
        low, high = RANGES[tag]
        return (tag, max(low, min(high, round(value))))

    def _energy(self, tag: int, hundredths: int) -> tuple:
        """Total + tariffs (0.01 kWh); the tariff shares add up to the total exactly."""
        whole = sum(self.tariff_weights)
        parts = [hundredths * w // whole for w in self.tariff_weights] if whole else []
        if parts:
            parts[-1] = hundredths - sum(parts[:-1])
        return axdr.array([self._int(tag, v) for v in [hundredths, *parts]])

    def _phases(self, name: str, t: float, total: float) -> list:
        """A per-phase split of a total quantity following active power's split."""
        power = self._q("power", t)
        return [total * self._q("power_" + ph, t) / power if power > 0 else 0.0 for ph in "abc"]

    def _data(self, oad: str, t: float) -> tuple:
        """The A-XDR data of a whole attribute at simulated time t; KeyError when the meter has none."""
        dlong, dlong_u = axdr.DOUBLE_LONG, axdr.DOUBLE_LONG_UNSIGNED
        lng, lng_u = axdr.LONG, axdr.LONG_UNSIGNED
        if oad == "00100200":
            return self._energy(dlong_u, round(self._q("energy_import", t) / KWH * 100))
        if oad == "00200200":
            return self._energy(dlong_u, round(self._q("energy_export", t) / KWH * 100))
        if oad == "00000200":
            return self._energy(dlong, round(self._q("energy", t) / KWH * 100))
        if oad == "20000200":
            return axdr.array([self._int(lng_u, 10 * self._q("voltage_" + ph, t)) for ph in "abc"])
        if oad == "20010200":
            return axdr.array([self._int(dlong, 1000 * self._q("current_" + ph, t)) for ph in "abc"])
        if oad == "20040200":
            values = [self._q("power", t)] + [self._q("power_" + ph, t) for ph in "abc"]
            return axdr.array([self._int(dlong, 10 * v) for v in values])
        if oad in ("20050200", "20060200"):
            total = self._q("reactive_power" if oad == "20050200" else "apparent_power", t)
            return axdr.array([self._int(dlong, 10 * v) for v in [total, *self._phases(oad, t, total)]])
        if oad == "200A0200":
            pf = self._q("power_factor", t)
            values = [pf] + [pf if self._q("power_" + ph, t) > 0 else 1.0 for ph in "abc"]
            return axdr.array([self._int(lng, 1000 * v) for v in values])
        if oad == "200F0200":
            return self._int(lng_u, 100 * self._q("frequency", t))
        if oad == "20100200":
            return self._int(lng, 10 * self._q("temperature", t))
        if oad == "40000200":
            local = datetime.datetime.fromtimestamp(int(t) + self.utc_offset * 3600, datetime.UTC)
            return (axdr.DATE_TIME_S, (local.year, local.month, local.day, local.hour, local.minute,
                                       local.second))
        if oad in ("40010200", "40020200"):
            return (axdr.OCTET_STRING, bytes.fromhex(self.address))
        raise KeyError(oad)

    def _result(self, oad: str, t: float) -> dlt698.Result:
        whole = dlt698.attribute_oad(oad)
        try:
            data = self._data(whole, t)
        except KeyError:
            return dlt698.Result(oad, dar=DAR_UNDEFINED)
        index = dlt698.element_index(oad)
        if index:
            if data[0] != axdr.ARRAY or index > len(data[1]):
                return dlt698.Result(oad, dar=DAR_OUT_OF_RANGE)
            data = data[1][index - 1]
        return dlt698.Result(oad, data)

    def point_value(self, point: Point, t: float) -> object:
        """What a correct client decodes for the point: scaled value * scale + offset (None: a DAR)."""
        result = self._result(point.oad or "", t)
        if result.data is None:
            return None
        value = dlt698.scaled(point.oad or "", result.data, point.element or 0)
        if isinstance(value, bytes):
            return value.hex().upper()
        if isinstance(value, tuple):
            return "%04d-%02d-%02dT%02d:%02d:%02d" % value
        return value * point.scale + point.offset  # type: ignore[operator]

    # ---------------------------------------------------------------- requests
    def accepts(self, frame: dlt698.Frame) -> bool:
        if frame.from_server:
            return False
        if frame.address_type == dlt698.ADDRESS_BROADCAST:
            return True
        if frame.address_type == dlt698.ADDRESS_GROUP:
            return False
        return dlt698.address_matches(frame.address, self.address)

    def handle(self, frame: dlt698.Frame, t: float) -> bytes | None:
        if frame.address_type == dlt698.ADDRESS_BROADCAST:
            return None  # obeyed by all, answered by none
        try:
            piid, oads, is_list = dlt698.parse_request(frame)
        except ProtocolError:
            self.device.counts["ignored"] += 1
            return None
        fault = self.device.faults.fires("abnormal")
        if fault:
            code = int(fault.get("code", DAR_UNDEFINED))
            results = [dlt698.Result(oad, dar=code) for oad in oads]
        else:
            results = [self._result(oad, t) for oad in oads]
        return dlt698.read_response(self._reply_address(), piid & 0xBF, results, is_list, frame.client,
                                    frame.logic, self.preamble)

    def _reply_address(self) -> str:
        return reply_address(self.device, self.address)
