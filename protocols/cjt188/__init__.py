"""CJ/T 188-2004 water, gas and heat meter frames (sans-I/O, CPython and MicroPython).

Frame: [FE..] 68 T A0..A6 C L DATA CS 16, DATA = DI(2) SER(1) payload, no byte offset, CS is the byte
sum from 68 through DATA. Addresses are 14-digit strings as printed; DIs are ints (0x901F).
Field variations that the standard text could not settle (protocol-facts §2, §7) are arguments that
profiles set per meter: the DI byte order ("lo_first" sends 901F as 1F 90, "hi_first" as 90 1F), the
ST1 status-bit map, the FE preamble length. Replies are accepted in either DI order.
"""


from protocols.bcd import bcd_to_int, int_to_bcd, is_bcd
from protocols.errors import AbnormalReply, EncodingError, FrameError, ProtocolError
from protocols.framing import NOT_A_FRAME, MeterFrameReader, SumFrame
from protocols.framing import hex_upper as _hex

__all__ = [
    "HEAT_LAYOUT", "KNOWN_DIS", "METER_COLD_WATER", "METER_COOLING", "METER_GAS", "METER_HEAT",
    "METER_HOT_WATER", "STATUS_DEFAULT", "UNIT_CODES", "WATER_LAYOUT", "WILDCARD", "WILDCARD_TYPE",
    "Cjt188AbnormalReply", "Cjt188FrameReader", "Frame", "abnormal_reply", "address_matches", "build_frame",
    "decode_status",
    "encode_901f_reply", "encode_di", "encode_status", "format_address", "parse_901f", "parse_address",
    "parse_frame", "parse_reply", "parse_request", "parse_write_reply", "primary_value",
    "read_address_reply", "read_address_request", "read_request", "status_meaning", "valve_request",
    "write_reply",
]

METER_COLD_WATER = 0x10
METER_HOT_WATER = 0x11
METER_HEAT = 0x20
METER_COOLING = 0x21
METER_GAS = 0x30
WILDCARD_TYPE = 0xAA
WILDCARD = "AAAAAAAAAAAAAA"
DI_901F = 0x901F
DI_VALVE = 0xA017
DI_ADDRESS = 0x810A
VALVE_ACTIONS = {"open": 0x55, "close": 0x99, "closed": 0x99, "exercise": 0xAA}

KNOWN_DIS = [0x901F, 0x903F, 0x904F, 0x905F, 0x906F, 0x907F, 0x8102, 0x8103, 0x8104, 0x8105, 0x8106, 0x810A]
KNOWN_DIS += [0xD120 + i for i in range(12)] + [0xA010 + i for i in range(10)]

# code -> (name, SenML primary unit, factor to it). 16 codes in two tables [X]; the x10/x100 steps
# and the per-hour heat codes come from a single source [!] (protocol-facts §2.8).
UNIT_CODES = {
    0x01: ("J", "J", 1), 0x02: ("Wh", "J", 3600), 0x03: ("Wh*10", "J", 36000), 0x04: ("Wh*100", "J", 360000),
    0x05: ("kWh", "J", 3600000), 0x06: ("kWh*10", "J", 36000000), 0x07: ("kWh*100", "J", 360000000),
    0x08: ("MWh", "J", 3.6e9), 0x09: ("MWh*10", "J", 3.6e10), 0x0A: ("MWh*100", "J", 3.6e11),
    0x0B: ("kJ", "J", 1000), 0x0C: ("kJ*10", "J", 10000), 0x0D: ("kJ*100", "J", 100000),
    0x0E: ("MJ", "J", 1e6), 0x0F: ("MJ*10", "J", 1e7), 0x10: ("MJ*100", "J", 1e8),
    0x11: ("GJ", "J", 1e9), 0x12: ("GJ*10", "J", 1e10), 0x13: ("GJ*100", "J", 1e11),
    0x14: ("W", "W", 1), 0x15: ("W*10", "W", 10), 0x16: ("W*100", "W", 100),
    0x17: ("kW", "W", 1000), 0x18: ("kW*10", "W", 10000), 0x19: ("kW*100", "W", 100000),
    0x1A: ("MW", "W", 1e6), 0x1B: ("MW*10", "W", 1e7), 0x1C: ("MW*100", "W", 1e8),
    0x29: ("L", "m3", 0.001), 0x2A: ("L*10", "m3", 0.01), 0x2B: ("L*100", "m3", 0.1),
    0x2C: ("m3", "m3", 1), 0x2D: ("m3*10", "m3", 10), 0x2E: ("m3*100", "m3", 100),
    0x32: ("L/h", "m3/s", 0.001 / 3600), 0x33: ("L/h*10", "m3/s", 0.01 / 3600),
    0x34: ("L/h*100", "m3/s", 0.1 / 3600), 0x35: ("m3/h", "m3/s", 1 / 3600),
    0x36: ("m3/h*10", "m3/s", 10 / 3600), 0x37: ("m3/h*100", "m3/s", 100 / 3600),
    0x40: ("J/h", "W", 1 / 3600), 0x43: ("kJ/h", "W", 1e3 / 3600), 0x44: ("kJ/h*10", "W", 1e4 / 3600),
    0x45: ("kJ/h*100", "W", 1e5 / 3600), 0x46: ("MJ/h", "W", 1e6 / 3600), 0x47: ("MJ/h*10", "W", 1e7 / 3600),
    0x48: ("MJ/h*100", "W", 1e8 / 3600), 0x49: ("GJ/h", "W", 1e9 / 3600), 0x4A: ("GJ/h*10", "W", 1e10 / 3600),
    0x4B: ("GJ/h*100", "W", 1e11 / 3600),
}

# 901F reply payload after DI+SER: (field, bytes, decimals, unit code follows); then time(7) + ST(2)
WATER_LAYOUT = [("flow_total", 4, 2, True), ("flow_settlement", 4, 2, True)]
# heat meter (T=2x) order from one firmware header [!]; decimals as commonly used, unverified
HEAT_LAYOUT = [
    ("heat_settlement", 4, 2, True), ("heat_total", 4, 2, True), ("heat_power", 4, 2, True),
    ("flow_rate", 4, 4, True), ("flow_total", 4, 2, True), ("supply_temp", 3, 2, False),
    ("return_temp", 3, 2, False), ("working_hours", 3, 0, False),
]

# ST1 bit map (KingDa firmware numbering): D1D0 valve 00 open / 01 closed / 11 abnormal, D2 battery low
STATUS_DEFAULT = {
    "valve_mask": 0x03, "valve_shift": 0, "valve_open": 0, "valve_closed": 1, "valve_abnormal": 3,
    "battery_mask": 0x04,
}


def primary_value(value: "int | float", unit_code: int) -> tuple:
    """(value converted to the SenML primary unit, that unit) for a CJ/T 188 unit code."""
    entry = UNIT_CODES.get(unit_code)
    if entry is None:
        raise EncodingError("unknown CJ/T 188 unit code %02X" % unit_code)
    return (value * entry[2], entry[1])


def decode_status(st1: int, st2: int = 0, status: "dict | None" = None) -> dict:
    """ST bytes -> {"valve": "open"|"closed"|"abnormal"|"unknown", "battery_low": bool, "st1", "st2"}."""
    m = status or STATUS_DEFAULT
    v = (st1 & m["valve_mask"]) >> m["valve_shift"]
    valve = "unknown"
    for name in ("open", "closed", "abnormal"):
        if v == m["valve_" + name]:
            valve = name
    return {"valve": valve, "battery_low": bool(st1 & m["battery_mask"]), "st1": st1, "st2": st2}


def encode_status(valve: str = "open", battery_low: bool = False, status: "dict | None" = None) -> int:
    """Server side: ST1 for a valve state and battery flag under a status map."""
    m = status or STATUS_DEFAULT
    key = "valve_" + valve
    if key not in m:
        raise EncodingError("valve state must be open, closed or abnormal, got %r" % (valve,))
    return ((m[key] << m["valve_shift"]) & m["valve_mask"]) | (m["battery_mask"] if battery_low else 0)


def status_meaning(st1: int, st2: int = 0, status: "dict | None" = None) -> str:
    """Human text for ST, e.g. "valve abnormal, battery low (ST 07 00)"."""
    s = decode_status(st1, st2, status)
    return "valve %s, battery %s (ST %02X %02X)" % (
        s["valve"], "low" if s["battery_low"] else "normal", st1, st2)


class Cjt188AbnormalReply(AbnormalReply):
    """An abnormal reply (C with D6 set); ``code`` is ST1, ``meaning`` its decoding."""

    def __init__(self, st1: int, st2: int, address: str, di: str, status: "dict | None" = None) -> None:
        self.code = st1
        self.st2 = st2
        self.meaning = status_meaning(st1, st2, status)
        self.address = address
        ProtocolError.__init__(self, "meter %s DI %s: abnormal reply: %s" % (address, di, self.meaning))


class Frame:
    """One CJ/T 188 frame: meter type T, printed address, control code, raw DATA."""

    def __init__(self, meter_type: int, address: str, control: int, data: bytes = b"") -> None:
        self.meter_type = meter_type
        self.address = address
        self.control = control
        self.data = bytes(data)

    @property
    def is_reply(self) -> bool:
        """D7: meter to client."""
        return bool(self.control & 0x80)

    @property
    def is_abnormal(self) -> bool:
        """D6: the meter reports an error."""
        return bool(self.control & 0x40)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (self.meter_type, self.address, self.control, self.data) == (
            other.meter_type, other.address, other.control, other.data)

    def __repr__(self) -> str:
        t, c = self.meter_type, self.control
        return "Frame(0x%02X, %r, 0x%02X, %s)" % (t, self.address, c, _hex(self.data))


#: the frame: 68 T A0..A6 C L DATA CS 16 (the length byte is the eleventh)
FRAME = SumFrame("CJ/T 188", head=11, address_at=2, address_size=7)


def format_address(raw: bytes) -> str:
    """Seven address bytes in wire order (A0 first) -> printed (most significant first)."""
    return FRAME.printed(raw)


def parse_address(address: str) -> bytes:
    """Printed address (up to 14 digits, zero-padded; AA bytes allowed) -> 7 wire bytes."""
    return FRAME.address(address)


def address_matches(requested: str, replied: str) -> bool:
    """True when ``replied`` fits ``requested``; AA bytes in the request match any byte."""
    return FRAME.matches(requested, replied)


def build_frame(meter_type: int, address: str, control: int, data: bytes = b"", preamble: int = 4) -> bytes:
    """A complete frame with ``preamble`` FE bytes; DATA is sent as is."""
    if len(data) > 255 or not 0 <= meter_type <= 255 or not 0 <= control <= 255:
        raise EncodingError("CJ/T 188 frame: T, C must be bytes and DATA at most 255 bytes")
    body = bytearray(b"\x68")
    body.append(meter_type)
    body.extend(parse_address(address))
    body.append(control)
    body.append(len(data))
    body.extend(data)
    body.append(sum(body) & 0xFF)
    body.append(0x16)
    return b"\xfe" * preamble + bytes(body)


def parse_frame(buf: bytes) -> Frame:
    """Parse exactly one frame (leading FE allowed). FrameError / CrcError on any defect."""
    i, end, address = FRAME.check(buf)
    return Frame(buf[i + 1], address, buf[i + 9], bytes(buf[i + 11:end - 2]))


def encode_di(di: int, di_order: str = "lo_first") -> bytes:
    """The 2 DI bytes on the wire: "lo_first" 901F -> 1F 90, "hi_first" -> 90 1F."""
    if not 0 <= di <= 0xFFFF:
        raise EncodingError("CJ/T 188 DI must be 0..FFFF, got %r" % (di,))
    if di_order == "lo_first":
        return bytes([di & 0xFF, di >> 8])
    if di_order == "hi_first":
        return bytes([di >> 8, di & 0xFF])
    raise EncodingError("DI order must be 'lo_first' or 'hi_first', got %r" % (di_order,))


def _request(meter_type: int, address: str, control: int, di: int, ser: int, di_order: str,
             payload: bytes, preamble: int) -> bytes:
    return build_frame(meter_type, address, control, encode_di(di, di_order) + bytes([ser & 0xFF]) + payload,
                       preamble)


def read_request(meter_type: int, address: str, di: int = DI_901F, ser: int = 0, di_order: str = "lo_first",
                 preamble: int = 4) -> bytes:
    """Read-data request (C=01) for ``di`` with sequence number ``ser``."""
    return _request(meter_type, address, 0x01, di, ser, di_order, b"", preamble)


def with_ser(request: bytes, ser: int) -> bytes:
    """A request frame (from ``read_request`` and the like) sent again with sequence number ``ser``:
    the SER byte after the DI and the checksum are rewritten."""
    b = bytearray(request)
    p = 0
    while p < len(b) and b[p] == 0xFE:
        p += 1
    if len(b) < p + 16 or b[p] != 0x68 or b[p + 10] < 3:
        raise EncodingError("not a CJ/T 188 request with DI and SER: %s" % _hex(bytes(request)))
    b[p + 13] = ser & 0xFF
    end = p + 11 + b[p + 10]
    b[end] = sum(b[p:end]) & 0xFF
    return bytes(b)


def parse_request(frame: Frame, di_order: "str | None" = None) -> tuple:
    """Server side: (di, ser, payload, di_order) of a request; the order is guessed from KNOWN_DIS if None."""
    d = frame.data
    if frame.is_reply or len(d) < 3:
        raise FrameError("not a CJ/T 188 request with DI and SER: C=%02X L=%d" % (frame.control, len(d)))
    if di_order is None:
        di_order = "hi_first" if (d[0] << 8 | d[1]) in KNOWN_DIS else "lo_first"
    di = d[0] | d[1] << 8 if di_order == "lo_first" else d[0] << 8 | d[1]
    return (di, d[2], d[3:], di_order)


def parse_reply(frame: Frame, di: int, ser: "int | None" = None, status: "dict | None" = None,
                control: int = 0x01) -> bytes:
    """Payload after DI+SER of a normal reply to request ``control``; echoed DI (either order) and SER
    checked. An abnormal reply raises Cjt188AbnormalReply with ST decoded by the ``status`` map."""
    d = frame.data
    where = "%04X" % di
    if frame.control == (control & 0x3F) | 0xC0:
        st1 = d[1] if len(d) > 1 else 0
        raise Cjt188AbnormalReply(st1, d[2] if len(d) > 2 else 0, frame.address, where, status)
    if frame.control != (control & 0x3F) | 0x80:
        raise FrameError("meter %s DI %s: expected reply C=%02X, got %02X"
                         % (frame.address, where, (control & 0x3F) | 0x80, frame.control))
    if len(d) < 3:
        raise FrameError("meter %s DI %s: reply has %d bytes, need DI+SER" % (frame.address, where, len(d)))
    echo = bytes(d[:2])
    if echo != encode_di(di, "lo_first") and echo != encode_di(di, "hi_first"):
        raise FrameError("meter %s: asked DI %s, reply echoes %s" % (frame.address, where, _hex(echo)))
    if ser is not None and d[2] != ser & 0xFF:
        raise FrameError("meter %s DI %s: asked SER %02X, reply has %02X" % (frame.address, where, ser, d[2]))
    return d[3:]


def _decode_time(raw: bytes) -> "tuple | None":
    if not is_bcd(raw):
        return None
    v = [(b >> 4) * 10 + (b & 15) for b in raw]
    return (v[6] * 100 + v[5], v[4], v[3], v[2], v[1], v[0])


def _encode_time(when: tuple) -> bytes:
    y, mo, d, h, mi, s = when[0], when[1], when[2], when[3], when[4], when[5]
    if not (0 <= y <= 9999 and 1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        raise EncodingError("meter time %r out of range" % (when,))
    return int_to_bcd(s, 1) + int_to_bcd(mi, 1) + int_to_bcd(h, 1) + int_to_bcd(d, 1) + int_to_bcd(mo, 1) + \
        int_to_bcd(y, 2)


def parse_901f(frame: Frame, meter_type: "int | None" = None, ser: "int | None" = None,
               status: "dict | None" = None) -> dict:
    """Fields of a 901F reply, values in the meter's own units (the ``*_unit`` fields hold the codes).

    Water/gas: flow_total, flow_settlement; heat (T=2x): HEAT_LAYOUT fields. Always time, st1, st2,
    valve, battery_low and quality ("good", or "bad_bcd" when some field is not BCD; that field is None).
    """
    t = frame.meter_type if meter_type is None else meter_type
    layout = HEAT_LAYOUT if 0x20 <= t <= 0x2F else WATER_LAYOUT
    payload = parse_reply(frame, DI_901F, ser, status)
    need = sum(f[1] + (1 if f[3] else 0) for f in layout) + 9
    if len(payload) != need:
        raise FrameError("meter %s 901F: %d payload bytes, expected %d for meter type %02X"
                         % (frame.address, len(payload), need, t))
    out = {}  # type: dict
    quality = "good"
    pos = 0
    for name, nbytes, decimals, has_unit in layout:
        raw = payload[pos:pos + nbytes]
        pos += nbytes
        if is_bcd(raw):
            v = bcd_to_int(raw)
            out[name] = v / (10 ** decimals) if decimals else v
        else:
            out[name] = None
            quality = "bad_bcd"
        if has_unit:
            out[name + "_unit"] = payload[pos]
            pos += 1
    out["time"] = _decode_time(payload[pos:pos + 7])
    if out["time"] is None:
        quality = "bad_bcd"
    out.update(decode_status(payload[pos + 7], payload[pos + 8], status))
    out["quality"] = quality
    return out


def encode_901f_reply(meter_type: int, address: str, fields: dict, ser: int = 0, di_order: str = "lo_first",
                      status: "dict | None" = None, preamble: int = 0) -> bytes:
    """Server side: a 901F reply from a dict shaped like parse_901f's (missing values are 0, units m3 /
    kWh / kW / m3/h by default; st1 from "st1" or from "valve" and "battery_low")."""
    layout = HEAT_LAYOUT if 0x20 <= meter_type <= 0x2F else WATER_LAYOUT
    default_units = {"heat_settlement": 0x05, "heat_total": 0x05, "heat_power": 0x17, "flow_rate": 0x35}
    out = bytearray()
    for name, nbytes, decimals, has_unit in layout:
        v = fields.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise EncodingError("901F field %s must be a number, got %r" % (name, v))
        try:
            mantissa = round(v * 10 ** decimals) if isinstance(v, float) else v * 10 ** decimals
        except (ValueError, OverflowError):
            raise EncodingError("901F field %s cannot carry %r" % (name, v)) from None
        out.extend(int_to_bcd(mantissa, nbytes))
        if has_unit:
            out.append(fields.get(name + "_unit", default_units.get(name, 0x2C)))
    out.extend(_encode_time(fields.get("time", (2000, 1, 1, 0, 0, 0))))
    st1 = fields.get("st1")
    if st1 is None:
        st1 = encode_status(fields.get("valve", "open"), fields.get("battery_low", False), status)
    out.append(st1 & 0xFF)
    out.append(fields.get("st2", 0) & 0xFF)
    return _request(meter_type, address, 0x81, DI_901F, ser, di_order, bytes(out), preamble)


def abnormal_reply(meter_type: int, address: str, control: int, ser: int, st1: int, st2: int = 0,
                   preamble: int = 0) -> bytes:
    """Server side: abnormal reply to request ``control`` (C | 0xC0), DATA = SER ST1 ST2 [!]."""
    data = bytes([ser & 0xFF, st1 & 0xFF, st2 & 0xFF])
    return build_frame(meter_type, address, (control & 0x3F) | 0xC0, data, preamble)


def valve_request(meter_type: int, address: str, action: str, ser: int = 0, di_order: str = "lo_first",
                  preamble: int = 4) -> bytes:
    """Valve control (C=04, DI A017): action "open" (55), "close" or "closed" (99), "exercise" (AA)."""
    code = VALVE_ACTIONS.get(action)
    if code is None:
        raise EncodingError("valve action must be open, close or exercise, got %r" % (action,))
    return _request(meter_type, address, 0x04, DI_VALVE, ser, di_order, bytes([code]), preamble)


def write_reply(meter_type: int, address: str, di: int, ser: int = 0, di_order: str = "lo_first",
                st1: int = 0, st2: int = 0, preamble: int = 0) -> bytes:
    """Server side: normal write reply (C=84), DATA = DI SER ST1 ST2 [!]."""
    return _request(meter_type, address, 0x84, di, ser, di_order, bytes([st1 & 0xFF, st2 & 0xFF]), preamble)


def parse_write_reply(frame: Frame, di: int, ser: "int | None" = None, status: "dict | None" = None) -> tuple:
    """(st1, st2) of a write reply; (None, None) when the meter sends no ST."""
    p = parse_reply(frame, di, ser, status, 0x04)
    return (p[0], p[1]) if len(p) >= 2 else (None, None)


def read_address_request(ser: int = 0, di_order: str = "lo_first", preamble: int = 4) -> bytes:
    """Read-address request (C=03, DI 810A) to T=AA and address AA*7; one meter on the bus."""
    return _request(WILDCARD_TYPE, WILDCARD, 0x03, DI_ADDRESS, ser, di_order, b"", preamble)


def read_address_reply(meter_type: int, address: str, ser: int = 0, di_order: str = "lo_first",
                       preamble: int = 0) -> bytes:
    """Server side: C=83 with DI+SER; the address travels in the header."""
    return _request(meter_type, address, 0x83, DI_ADDRESS, ser, di_order, b"", preamble)


class Cjt188FrameReader(MeterFrameReader):
    """Incremental frame reader: skips FE and noise, resyncs one byte after a bad candidate."""

    name = "CJ/T 188"
    layout = FRAME
    min_frame = FRAME.least

    def _frame_end(self, buf: bytearray, pos: int, n: int) -> int:
        end = MeterFrameReader._frame_end(self, buf, pos, n)
        if end > 0 and (buf[end - 1] != 0x16 or (sum(buf[pos:end - 2]) & 0xFF) != buf[end - 2]):
            return NOT_A_FRAME  # a 0x68 inside noise or data: not counted as a checksum error
        return end

    def _parse(self, frame: bytes) -> object:
        return parse_frame(frame)
