"""One RS-485 bus: send the precomputed request frames of each device, decode replies to readings.

The compiled config carries, per device, its requests ready to send (Modbus RTU ADUs, DL/T 645 and
CJ/T 188 frames), and per request the points as indexes into the shared decode specs (see
firmware_py/inventory.py), so the board does no planning. A DL/T 645 reply with the follow-up flag
(B1) is followed by read-follow-up requests (C=12) through `protocols.dlt645.FollowupAssembler`,
bounded by the device's `max_followups`; a block DI's value is split into its points by the byte
offset and length each spec carries. Codecs are the shared `protocols/` modules; the gateway imports
those its site uses once, at start. Writes (commands) run here too, on the line between polls:
Modbus FC 05/06/16 through `protocols.points.encode`, the CJ/T 188 valve.

Point quality (as agent/scheduler.py): a point the device answered for without a usable value (DL/T
645 all-FF "not_available", non-BCD "bad_bcd", a block member the reply does not reach, a CJ/T 188
field with bad BCD or in another unit) is no reading. While polling (`track`), each such answer goes
to `on_quality(d, k, text, now)` (k: the point's slot, its index in `inv.points`), and so does the
first good value of a point whose slot in `quality` is not 0 (text None). A failed transaction
(timeout, CRC, ...) reports nothing: it is a comms matter.
"""

from firmware_py import rt
from firmware_py.inventory import CJT188, DLT645_1997, MODBUS
from protocols.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OK = 0  # a request's outcome
FAILED = 1  # the device answered with an error (exception, abnormal reply, bad frame)
TIMEOUT = 2  # no reply
FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
VALVE = {"open": "open", "closed": "close", "close": "close", True: "open", False: "close"}


class WriteRefused(Exception):
    """A command that cannot be run; nothing was sent on the bus."""


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
        self.devices = bytearray()  # device indexes, in poll order
        self.jobs: list = []  # commands waiting for the line
        self.rx = bytearray(256)
        self.stats = stats
        self.readers: dict = {}
        self.ser = 0  # CJ/T 188 sequence number of writes
        self.quality: Any = None  # the gateway's quality code per point slot (bytearray), if it tracks
        self.on_quality: Any = None  # callable(d, k, text or None, now)

    def reader(self, protocol: int):
        """The frame reader of `protocol` on this bus (made once, at start)."""
        r = self.readers.get(protocol)
        if r is None:
            if protocol == MODBUS:
                from protocols import modbus

                r = modbus.RtuFrameReader("response")
            elif protocol == CJT188:
                from protocols import cjt188

                r = cjt188.Cjt188FrameReader()
            else:
                from protocols import dlt645

                r = dlt645.Dlt645FrameReader()
            self.readers[protocol] = r
        return r

    async def transact(self, frame, protocol: int, accept):
        """Write `frame` and return the first reply frame `accept(frame)` takes, or None on timeout."""
        if self.turnaround_ms or self.pause_ms:
            await rt.sleep_ms(self.turnaround_ms + self.pause_ms)
        else:
            await rt.sleep_ms(self.gap_ms)
        reader = self.reader(protocol)
        reader.reset()
        reader.take_errors()
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

    # -- polling -----------------------------------------------------------------------------------
    async def request(self, inv, d: int, r: int, sink, now: int, track: bool = False) -> int:
        """Run request `r` of device `d`; readings go to `sink(d, spec, value, now)`. OK, FAILED or
        TIMEOUT; errors are counted by kind. `track`: a poll, whose point quality is followed (a
        command's read is not)."""
        self.stats["polls"] += 1
        try:
            return await self._request(inv, d, r, sink, now, track and self.on_quality is not None)
        except ProtocolError as exc:
            self.stats[_kind(exc)] += 1
            return FAILED

    def _good(self, d: int, k: int, now: int) -> None:
        """A good value at slot `k`: a point that was bad is good again."""
        if self.quality[k]:
            self.on_quality(d, k, None, now)

    async def _request(self, inv, d: int, r: int, sink, now: int, track: bool) -> int:
        proto = inv.protocol[d]
        frame = inv.frame(r)
        pts = inv.points
        first = inv.points_at[r]
        last = inv.points_at[r + 1]
        specs = inv.specs
        if proto == MODBUS:
            from protocols import modbus, points

            unit = frame[0]
            pdu = bytes(frame[1:-2])
            reply = await self.transact(frame, proto, lambda f: f[0] == unit and f[1] != pdu)
            if reply is None:
                return self._timeout()
            values: Any = modbus.parse_response(pdu, reply[1])
            coils = frame[1] <= 2
            for k in range(first, last):
                spec = pts[k]
                _n, off, typ, order, scale, offset = specs[spec]
                v: Any
                if coils:
                    v = bool(values[off])
                elif typ.startswith("bit"):
                    v = points.decode([values[off]], typ, order)
                else:
                    n = points.register_count(typ)
                    v = points.decode(values[off : off + n], typ, order, scale, offset)
                    if type(v) is float:
                        v = round(v, 9)
                if track:
                    self._good(d, k, now)
                sink(d, spec, v, now)
        elif proto == CJT188:
            from protocols import cjt188

            addr = inv.address[d]
            reply = await self.transact(frame, proto, lambda f: f.is_reply and f.address == addr)
            if reply is None:
                return self._timeout()
            meter_type, status, units = inv.options[d] or (None, None, None)
            fields = cjt188.parse_901f(reply, meter_type, None, status)
            for k in range(first, last):
                spec = pts[k]
                _n, field, scale, offset = specs[spec]
                v = fields.get(field)
                if v is None:
                    self.stats["quality"] += 1
                    if track:
                        text = fields.get("quality", "missing")
                        self.on_quality(d, k, text if text != "good" else "missing", now)
                    continue
                want = units.get(field) if units else None
                got = fields.get(field + "_unit")
                if want is not None and got is not None and got != want and type(v) is not bool \
                        and type(v) is not str:
                    have, unit = cjt188.primary_value(v, got)
                    base, want_unit = cjt188.primary_value(1, want)
                    if unit != want_unit:
                        self.stats["decode"] += 1
                        if track:
                            self.on_quality(d, k, "unit: %s arrives in unit code %02X, expected %02X"
                                            % (field, got, want), now)
                        continue
                    v = have / base
                if track:
                    self._good(d, k, now)
                sink(d, spec, scaled(v, scale, offset), now)
        else:
            from protocols import dlt645
            from protocols.errors import EncodingError

            version = 1997 if proto == DLT645_1997 else 2007
            addr = inv.address[d]
            di = specs[pts[first]][1]  # the request's DI: every point of it has the same
            limit, seq_start, reply_seq, preamble = inv.options[d]
            value = dlt645.FollowupAssembler(addr, di, version, limit, seq_start, reply_seq, preamble)

            def accept(f) -> bool:
                return f.is_reply and dlt645.address_matches(addr, f.address)

            request: Any = frame
            while request is not None:  # a B1 reply is followed by C=12 requests until the last frame
                reply = await self.transact(request, proto, accept)
                if reply is None:
                    return self._timeout()
                request = value.feed(reply)
            raw = value.value
            for k in range(first, last):
                spec = pts[k]
                _n, _di, off, size, fmt, signed, scale, offset = specs[spec]
                try:  # a block member that is short, all FF or not BCD is a bad point on its own
                    if size and off + size > len(raw):  # the agent's words (agent/drivers/dlt645.py)
                        raise EncodingError("block %s has %d bytes, member %d needs %d"
                                            % (di, len(raw), off // size, off + size))
                    v, quality = dlt645.decode_reading(raw[off : off + size] if size else raw, fmt, signed)
                except EncodingError as exc:
                    self.stats["decode"] += 1
                    if track:
                        self.on_quality(d, k, "decode: %s" % exc, now)
                    continue
                if v is None:
                    self.stats["quality"] += 1
                    if track:
                        self.on_quality(d, k, quality, now)  # not_available (all FF), bad_bcd
                    continue
                if track:
                    self._good(d, k, now)
                sink(d, spec, scaled(v, scale, offset), now)
        return OK

    def _timeout(self) -> int:
        self.stats["timeout"] += 1
        return TIMEOUT

    # -- commands ----------------------------------------------------------------------------------
    async def write(self, inv, d: int, ws: tuple, value) -> "Any":
        """Write `value` to the point of write spec `ws` (already checked against the profile's
        limits); returns the value read back (None when the read-back failed). ProtocolError when the
        device refused or did not answer the write; WriteRefused when it cannot be written at all."""
        proto = inv.protocol[d]
        name = inv.names[ws[0]].decode()
        if proto == MODBUS:
            return await self._write_modbus(inv.address[d], ws, name, value)
        if proto == CJT188:
            return await self._write_valve(inv, d, ws, name, value)
        raise WriteRefused("point %s: DL/T 645 writes are not supported by the firmware" % name)

    async def _modbus(self, unit: int, pdu: bytes):
        from protocols import modbus
        from protocols.errors import FrameError

        reply = await self.transact(modbus.rtu_frame(unit, pdu), MODBUS, lambda f: f[0] == unit)
        if reply is None:
            raise FrameError("unit %d: no reply to FC%02d" % (unit, pdu[0]))
        return modbus.parse_response(pdu, reply[1])

    async def _write_modbus(self, unit: int, ws: tuple, name: str, value) -> "Any":
        from protocols import modbus, points
        from protocols.errors import EncodingError

        table, address, typ, order, scale, offset = ws[4:10]
        if table == "input" or table == "discrete":
            raise WriteRefused("point %s is in the %s table, which cannot be written" % (name, table))
        try:
            if table == "coil":
                pdu = modbus.write_coil_request(address, bool(value))
            elif typ.startswith("bit"):
                register = (await self._modbus(unit, modbus.read_request(3, address, 1)))[0]
                mask = points.encode(True, typ, order)[0]
                register = (register | mask) if value else (register & ~mask & 0xFFFF)
                pdu = modbus.write_register_request(address, register)
            else:
                regs = points.encode(value, typ, order, scale, offset)
                if len(regs) == 1:
                    pdu = modbus.write_register_request(address, regs[0])
                else:
                    pdu = modbus.write_registers_request(address, regs)
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
        await self._modbus(unit, pdu)
        try:  # read back
            count = 1 if table == "coil" else points.register_count(typ)
            values: Any = await self._modbus(unit, modbus.read_request(FUNCTIONS[table], address, count))
            if table == "coil":
                return bool(values[0])
            if typ.startswith("bit"):
                return points.decode([values[0]], typ, order)
            v = points.decode(values, typ, order, scale, offset)
            return round(v, 9) if type(v) is float else v
        except ProtocolError:
            return None

    async def _write_valve(self, inv, d: int, ws: tuple, name: str, value) -> "Any":
        from protocols import cjt188
        from protocols.errors import FrameError

        field, meter_type, di_order, preamble = ws[4:8]
        if field != "valve":
            raise WriteRefused("CJ/T 188 meters accept writes to the valve only, not %s" % name)
        action = VALVE.get(value)
        if action is None:
            raise WriteRefused("valve needs open or closed, not %r" % (value,))
        addr = inv.address[d]
        self.ser = (self.ser + 1) & 0xFF
        status = (inv.options[d] or (None, None, None))[1]
        frame = cjt188.valve_request(meter_type, addr, action, self.ser, di_order, preamble)
        reply = await self.transact(frame, CJT188, lambda f: f.is_reply and f.address == addr)
        if reply is None:
            raise FrameError("meter %s: no reply to the valve command" % addr)
        cjt188.parse_write_reply(reply, cjt188.DI_VALVE, self.ser, status)
        got: list = []
        for r in inv.requests(d):  # read back: the 901F request carries the valve state
            await self.request(inv, d, r, lambda _d, spec, v, _t: got.append((spec, v)), 0)
        for spec, v in got:
            if inv.specs[spec][1] == "valve":
                return v
        return None


def scaled(v, scale, offset):
    """The published value: `v * scale + offset` (bools and text unchanged), floats rounded to 9
    decimals as the agent does (2301 * 0.1 -> 230.1)."""
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
