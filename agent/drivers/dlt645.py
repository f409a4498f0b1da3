"""DL/T 645-2007 (and -1997) electricity meters: one read per data identifier."""

from __future__ import annotations

from typing import Any

from agent.drivers.base import Driver, ReadResult, WriteRefused, scaled
from agent.link.base import Link, LinkError
from agent.planner import PlannedRequest
from protocols import dlt645
from protocols.errors import EncodingError, ProtocolError

__all__ = ["Dlt645Driver"]


def _hex_bytes(text: object, default: bytes) -> bytes:
    if text is None:
        return default
    raw = bytes.fromhex(str(text))
    if len(raw) != 4:
        raise ValueError("needs 8 hex digits")
    return raw


class Dlt645Driver(Driver):
    protocol = "dlt645"

    def __init__(self, device: Any, profile: Any, bus: Any) -> None:
        Driver.__init__(self, device, profile, bus)
        self.address = str(device.address)
        default_version = 1997 if profile.protocol == "dlt645_1997" else 2007
        self.version = int(self.options.get("version", default_version))
        self.preamble = int(self.options.get("preamble", 4))

    def _reply(self, frame: Any) -> bool:
        return bool(frame.is_reply)  # skips our own request echoed by the adapter

    def transact(self, link: Link, request: bytes) -> Any:
        return link.transact(request, dlt645.Dlt645FrameReader(), accept=self._reply)

    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        di = str(request.di)
        frame = self.transact(link, dlt645.read_request(self.address, di, self.version, self.preamble))
        raw = dlt645.parse_read_reply(frame, di, self.version, self.address)
        result = ReadResult()
        for point, _ in request.points:
            try:
                value, quality = dlt645.decode_reading(bytes(raw), str(point.format), point.signed)
            except EncodingError as exc:
                result.bad.append((point.name, "decode: %s" % exc))
                continue
            if quality != "good" or value is None:
                result.bad.append((point.name, quality))  # e.g. not_available: all FF
            else:
                result.values.append((point.name, scaled(value, point)))
        return result

    def write(self, link: Link, name: str, value: Any) -> Any:
        point = self.check_write(name, value)
        try:
            password = _hex_bytes(self.options.get("password"), b"\0\0\0\0")
            operator = _hex_bytes(self.options.get("operator"), b"\0\0\0\0")
        except ValueError as exc:
            raise WriteRefused("device %s: password/operator option %s" % (self.id, exc)) from None
        raw: Any = value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and (point.scale != 1 or point.offset):
            raw = (value - point.offset) / point.scale
        try:
            data = dlt645.encode_value(raw, str(point.format), point.signed)
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
        request = dlt645.write_request(self.address, str(point.di), data, password, operator, self.preamble)
        frame = self.transact(link, request)
        dlt645.parse_reply(frame, 0x14, self.address, str(point.di))
        try:
            planned = PlannedRequest(self.id, self.protocol, [(point, 0)], di=point.di)
            result = self.read(link, planned)
            return result.values[0][1] if result.values else None
        except (LinkError, ProtocolError):
            return None
