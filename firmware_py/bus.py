"""One RS-485 bus: send the precomputed request frames of each device, decode replies to readings.

The compiled config carries, per device, its requests ready to send (Modbus RTU ADUs, DL/T 645 and
CJ/T 188 frames), and per request the points with how to decode them, so the board does no planning.
Codecs are the shared `protocols/` modules, imported only for the protocols a site uses.
"""

import binascii

from firmware_py import rt
from protocols.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TIMEOUT = "timeout"


class Device:
    """A configured device: its requests and its polling schedule."""

    def __init__(self, spec: dict, index: int) -> None:
        self.id = spec["id"]
        self.index = index
        self.protocol = spec["protocol"]
        self.address = spec["address"]
        self.interval_ms = int(spec["interval"] * 1000)
        self.options = spec.get("options") or {}
        self.requests = []
        for r in spec["requests"]:
            frame = binascii.unhexlify(r[0])
            pts = []
            for p in r[1]:
                pts.append((p[0], p[1:]))  # (name, decode args)
            self.requests.append((frame, pts))
        self.due = 0
        self.failures = 0
        self.online = True


class Bus:
    """Serialised transactions on one UART with the protocol's timeouts and silences."""

    def __init__(self, spec: dict, uart, stats: dict) -> None:
        self.name = spec["name"]
        self.uart = uart
        self.timeout_ms = spec.get("timeout_ms", 500)
        self.turnaround_ms = spec.get("turnaround_ms", 0)
        self.pause_ms = spec.get("pause_ms", 0)
        baud = spec.get("baud", 9600)
        self.gap_ms = max(2, (11 * 35 * 1000) // (10 * baud) + 1)  # t3.5, rounded up
        self.devices: list = []
        self.rx = bytearray(256)
        self.stats = stats
        self.readers: dict = {}

    def reader(self, protocol: str):
        r = self.readers.get(protocol)
        if r is None:
            if protocol == "modbus":
                from protocols import modbus

                r = modbus.RtuFrameReader("response")
            elif protocol == "cjt188":
                from protocols import cjt188

                r = cjt188.Cjt188FrameReader()
            else:
                from protocols import dlt645

                r = dlt645.Dlt645FrameReader()
            self.readers[protocol] = r
        return r

    async def transact(self, frame, protocol: str, accept):
        """Write `frame` and return the first reply frame `accept(frame)` takes, or None on timeout."""
        reader = self.reader(protocol)
        reader.reset()
        uart = self.uart
        while uart.readinto(self.rx) > 0:  # stale bytes from a late reply
            pass
        await uart.write(frame)
        deadline = rt.ticks_add(rt.ticks_ms(), self.timeout_ms)
        view = memoryview(self.rx)
        while rt.ticks_diff(deadline, rt.ticks_ms()) > 0:
            n = uart.readinto(self.rx)
            if n > 0:
                for f in reader.feed(bytes(view[:n])):
                    if accept(f):
                        return f
                if reader.errors:
                    self.stats["frame"] += len(reader.take_errors())
            else:
                await rt.sleep_ms(2)
        return None

    async def poll(self, device: Device, sink, now: int) -> int:
        """One poll cycle of `device`: every request, readings to `sink(device, name, value, now)`."""
        made = 0
        for frame, pts in device.requests:
            if self.turnaround_ms or self.pause_ms:
                await rt.sleep_ms(self.turnaround_ms + self.pause_ms)
            else:
                await rt.sleep_ms(self.gap_ms)
            self.stats["polls"] += 1
            try:
                made += await self._one(device, frame, pts, sink, now)
            except ProtocolError as exc:
                self.stats[_kind(exc)] += 1
                device.failures += 1
        return made

    async def _one(self, device, frame, pts, sink, now) -> int:
        proto = device.protocol
        made = 0
        if proto == "modbus":
            from protocols import modbus, points

            unit = frame[0]
            pdu = frame[1:-2]
            reply = await self.transact(frame, proto, lambda f: f[0] == unit and f[1] != pdu)
            if reply is None:
                return self._timeout(device)
            values: Any = modbus.parse_response(pdu, reply[1])
            for name, (off, typ, order, scale, offset) in pts:
                if typ.startswith("bit") or frame[1] <= 2:
                    v = values[off]
                    if typ.startswith("bit"):
                        v = points.decode([values[off]], typ, order)
                else:
                    n = points.register_count(typ)
                    v = points.decode(values[off : off + n], typ, order, scale, offset)
                    if type(v) is float:
                        v = round(v, 9)
                sink(device, name, v, now)
                made += 1
        elif proto == "cjt188":
            from protocols import cjt188

            addr = device.address
            reply = await self.transact(frame, proto, lambda f: f.is_reply and f.address == addr)
            if reply is None:
                return self._timeout(device)
            fields = cjt188.parse_901f(reply, device.options.get("meter_type"), None,
                                       device.options.get("status"))
            for name, (field, scale, offset) in pts:
                v = fields.get(field)
                if v is None:
                    self.stats["quality"] += 1
                    continue
                sink(device, name, _scaled(v, scale, offset), now)
                made += 1
        else:
            from protocols import dlt645

            version = 1997 if proto == "dlt645_1997" else 2007
            addr = device.address
            reply = await self.transact(frame, proto, lambda f: f.is_reply)
            if reply is None:
                return self._timeout(device)
            for name, (di, fmt, signed, scale, offset) in pts:
                raw = dlt645.parse_read_reply(reply, di, version, addr)
                v, _quality = dlt645.decode_reading(bytes(raw), fmt, signed)
                if v is None:
                    self.stats["quality"] += 1
                    continue
                sink(device, name, _scaled(v, scale, offset), now)
                made += 1
        device.failures = 0
        device.online = True
        return made

    def _timeout(self, device) -> int:
        self.stats["timeout"] += 1
        device.failures += 1
        if device.failures >= 3:
            device.online = False
        return 0


def _scaled(v, scale, offset):
    if type(v) is bool or type(v) is str:
        return v
    if scale == 1 and offset == 0:
        return v
    v = v * scale + offset
    if type(v) is float:
        v = round(v, 9)
    return v


def _kind(exc) -> str:
    name = type(exc).__name__
    if name == "CrcError":
        return "crc"
    if name in ("ExceptionResponse", "AbnormalReply") or name.endswith("AbnormalReply"):
        return "exception"
    if name == "FrameError":
        return "frame"
    return "decode"
