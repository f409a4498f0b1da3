"""DL/T 645-2007 and -1997 electricity-meter frames (sans-I/O, CPython and MicroPython).

Frame: [FE..] 68 A0..A5 68 C L DATA CS 16; DATA travels +0x33 per byte, CS is the byte sum from the
first 68 through DATA. Addresses are strings as printed on the meter ("000000000161"); DIs are strings
in printed order ("02010100", 1997: "B611"). ``Frame.data`` always has the 0x33 offset removed.
Uncertain points (protocol-facts §1.11) are arguments: time-sync byte order, relay layout, and the
follow-up frame numbering (see ``read_followup_request``).
"""

import binascii

from protocols.bcd import bcd_to_int
from protocols.dlt645.table import (
    DI_1997_TO_2007,
    DI_TABLE,
    ERR_BITS,
    FRAME,
    QUALITY_BAD_BCD,
    QUALITY_GOOD,
    QUALITY_NOT_AVAILABLE,
    RELAY_ALARM,
    RELAY_ALARM_RELEASE,
    RELAY_CLOSE_ALLOWED,
    RELAY_CLOSE_DIRECT,
    RELAY_KEEP_POWER,
    RELAY_KEEP_POWER_RELEASE,
    RELAY_TRIP,
    _hex,
    _reverse,
    _time_bytes,
    abbreviated_address,
    address_matches,
    decode_block,
    decode_raw,
    decode_reading,
    decode_value,
    encode_value,
    err_meaning,
    format_address,
    format_info,
    parse_address,
)
from protocols.errors import AbnormalReply, EncodingError, FrameError, ProtocolError
from protocols.framing import MeterFrameReader

__all__ = [
    "BROADCAST", "DI_1997_TO_2007", "DI_TABLE", "ERR_BITS", "MAX_FOLLOWUPS", "QUALITY_BAD_BCD",
    "QUALITY_GOOD", "QUALITY_NOT_AVAILABLE", "RELAY_ALARM", "RELAY_ALARM_RELEASE", "RELAY_CLOSE_ALLOWED",
    "RELAY_CLOSE_DIRECT", "RELAY_KEEP_POWER", "RELAY_KEEP_POWER_RELEASE", "RELAY_TRIP", "WILDCARD",
    "Dlt645AbnormalReply", "Dlt645FrameReader", "FollowupAssembler", "Frame", "abbreviated_address",
    "abnormal_reply", "address_matches", "build_frame", "decode_block", "decode_raw", "decode_reading",
    "decode_value", "encode_value", "err_meaning", "followup_reply", "format_address", "format_info",
    "parse_address", "parse_followup_reply", "parse_followup_request", "parse_frame",
    "parse_read_address_reply", "parse_read_reply", "parse_read_request", "parse_relay_request",
    "parse_reply", "parse_time_sync", "parse_write_request", "read_address_reply", "read_address_request",
    "read_followup_request", "read_reply", "read_reply_frames", "read_request", "relay_reply",
    "relay_request", "time_sync_request", "write_reply", "write_request",
]

BROADCAST = "999999999999"
WILDCARD = "AAAAAAAAAAAA"
ZERO4 = b"\x00\x00\x00\x00"
MAX_FOLLOWUPS = 16


class Dlt645AbnormalReply(AbnormalReply):
    """An abnormal reply (C with D6 set), with the meter address and the DI that was asked."""

    def __init__(self, code: int, address: str, di: str) -> None:
        self.code = code
        self.meaning = err_meaning(code)
        self.address = address
        self.di = di
        ProtocolError.__init__(self, "meter %s DI %s: error %02X: %s" % (address, di, code, self.meaning))


class Frame:
    """One DL/T 645 frame: printed address, control code, data with the 0x33 offset removed."""

    def __init__(self, address: str, control: int, data: bytes = b"") -> None:
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

    @property
    def has_more(self) -> bool:
        """D5: follow-up frames exist."""
        return bool(self.control & 0x20)

    @property
    def function(self) -> int:
        """D4..D0: the function code."""
        return self.control & 0x1F

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return False
        return self.address == other.address and self.control == other.control and self.data == other.data

    def __repr__(self) -> str:
        return "Frame(%r, 0x%02X, %s)" % (self.address, self.control, _hex(self.data))


def build_frame(address: str, control: int, data: bytes = b"", preamble: int = 4) -> bytes:
    """A complete frame: ``preamble`` FE bytes, header, DATA (+0x33 added here), CS, 16."""
    if len(data) > 255:
        raise EncodingError("DL/T 645 DATA is at most 255 bytes, got %d" % len(data))
    if not 0 <= control <= 255:
        raise EncodingError("control code must be one byte, got %d" % control)
    body = bytearray(b"\x68")
    body.extend(parse_address(address))
    body.append(0x68)
    body.append(control)
    body.append(len(data))
    for b in data:
        body.append((b + 0x33) & 0xFF)
    body.append(sum(body) & 0xFF)
    body.append(0x16)
    return b"\xfe" * preamble + bytes(body)


def parse_frame(buf: bytes) -> Frame:
    """Parse exactly one frame (leading FE bytes allowed). FrameError / CrcError on any defect."""
    i, end, address = FRAME.check(buf)
    length = end - i - 12
    data = bytearray(length)
    for k in range(length):
        data[k] = (buf[i + 10 + k] - 0x33) & 0xFF
    return Frame(address, buf[i + 8], bytes(data))


def _read_control(version: int) -> int:
    if version == 2007:
        return 0x11
    if version == 1997:
        return 0x01
    raise EncodingError("DL/T 645 version must be 2007 or 1997, got %r" % (version,))


def _di_bytes(di: str, version: int) -> bytes:
    """Printed DI -> wire order (DI0 first)."""
    n = 4 if _read_control(version) == 0x11 else 2
    if not isinstance(di, str) or len(di) != 2 * n:
        raise EncodingError("DL/T 645-%d DI must be %d hex digits, got %r" % (version, 2 * n, di))
    try:
        raw = binascii.unhexlify(di)
    except ValueError:
        raise EncodingError("DI %r is not hex" % di) from None
    return _reverse(raw)


def read_request(address: str, di: str, version: int = 2007, preamble: int = 4) -> bytes:
    """Read-data request: C=11 with a 4-byte DI (2007) or C=01 with a 2-byte DI (1997)."""
    return build_frame(address, _read_control(version), _di_bytes(di, version), preamble)


def parse_read_request(frame: Frame, version: int = 2007) -> str:
    """Server side: the printed DI of a read request (extra N / time bytes are ignored)."""
    control = _read_control(version)
    n = 4 if control == 0x11 else 2
    if frame.control != control:
        raise FrameError("expected read request C=%02X, got %02X" % (control, frame.control))
    if len(frame.data) < n:
        raise FrameError("read request carries %d DI bytes, need %d" % (len(frame.data), n))
    return _hex(_reverse(frame.data[:n]))


def parse_reply(frame: Frame, request_control: int, address: "str | None" = None, di: str = "-") -> bytes:
    """Check a reply to ``request_control`` and return its data.

    Raises Dlt645AbnormalReply for an abnormal reply (ERR byte decoded), FrameError for a reply to
    something else or from another meter (``address`` may contain AA bytes).
    """
    if address is not None and not address_matches(address, frame.address):
        raise FrameError("reply from meter %s, expected meter %s" % (frame.address, address))
    func = request_control & 0x1F
    if frame.control == func | 0xC0 or frame.control == func | 0xE0:
        err = frame.data[0] if frame.data else 0
        raise Dlt645AbnormalReply(err, frame.address, di)
    if frame.control != func | 0x80 and frame.control != func | 0xA0:
        msg = "meter %s DI %s: expected reply C=%02X, got %02X"
        raise FrameError(msg % (frame.address, di, func | 0x80, frame.control))
    return frame.data


def _after_di(frame: Frame, data: bytes, di: str, wire: bytes, tail: int = 0) -> bytes:
    """The value bytes after the echoed DI (and before ``tail`` trailing bytes); checks the echo."""
    n = len(wire)
    if len(data) < n + tail:
        raise FrameError(
            "meter %s DI %s: reply carries %d data bytes, need the %d-byte DI echo%s"
            % (frame.address, di, len(data), n, " and SEQ" if tail else "")
        )
    if data[:n] != wire:
        echoed = _hex(_reverse(data[:n]))
        raise FrameError("meter %s: asked DI %s, reply echoes DI %s" % (frame.address, di, echoed))
    return data[n:len(data) - tail]


def parse_read_reply(frame: Frame, di: str, version: int = 2007, address: "str | None" = None) -> bytes:
    """The value bytes after the echoed DI of a read reply (91/B1, 1997: 81).

    Checks the echoed DI (the checksum cannot catch a DI byte-order error); abnormal replies raise
    Dlt645AbnormalReply with the ERR bits decoded. ``frame.has_more`` tells whether follow-ups exist.
    """
    wire = _di_bytes(di, version)
    return _after_di(frame, parse_reply(frame, _read_control(version), address, di), di, wire)


def read_reply(
    address: str, di: str, value_bytes: bytes, version: int = 2007, more: bool = False, preamble: int = 0
) -> bytes:
    """Server side: normal read reply (91, B1 when ``more``, 1997: 81) echoing ``di``."""
    control = _read_control(version) | (0xA0 if more else 0x80)
    return build_frame(address, control, _di_bytes(di, version) + bytes(value_bytes), preamble)


# Read follow-up (C=12, 2007 only). Layout as the 2007 implementations and captures agree:
# request DATA = DI0..DI3 + SEQ; reply 92 (last) / B2 (more follow) DATA = DI0..DI3 + data + SEQ;
# abnormal D2. Not seen in the standard text (protocol-facts §1.4 [X]), hence settings:
# ``seq_start`` is the SEQ of the first C=12 (1 by default: the B1 reply counts as frame 0), and
# ``reply_seq`` says whether 92/B2 replies end with the SEQ byte (True by default). SEQ is binary.


def read_followup_request(address: str, di: str, seq: int, version: int = 2007, preamble: int = 4) -> bytes:
    """Read-follow-up request (C=12) for frame ``seq`` of ``di`` after a B1 / B2 reply."""
    if version != 2007:
        raise EncodingError("DL/T 645-%r: follow-up reads (C=12) are a 2007 feature" % (version,))
    if not 0 <= seq <= 255:
        raise EncodingError("follow-up SEQ must be 0..255, got %r" % (seq,))
    return build_frame(address, 0x12, _di_bytes(di, 2007) + bytes([seq]), preamble)


def parse_followup_request(frame: Frame) -> tuple:
    """Server side: (printed DI, SEQ) of a C=12 request."""
    if frame.control != 0x12 or len(frame.data) != 5:
        raise FrameError(
            "expected read-follow-up request C=12 L=5, got C=%02X L=%d" % (frame.control, len(frame.data))
        )
    return (_hex(_reverse(frame.data[:4])), frame.data[4])


def followup_reply(
    address: str, di: str, value_bytes: bytes, seq: int, more: bool = False, reply_seq: bool = True,
    preamble: int = 0,
) -> bytes:
    """Server side: follow-up reply 92 (B2 when ``more``): DI + value bytes [+ SEQ]."""
    tail = bytes([seq & 0xFF]) if reply_seq else b""
    return build_frame(address, 0xB2 if more else 0x92, _di_bytes(di, 2007) + bytes(value_bytes) + tail,
                       preamble)


def parse_followup_reply(
    frame: Frame, di: str, seq: int, address: "str | None" = None, reply_seq: bool = True
) -> bytes:
    """The value bytes of a 92 / B2 reply to follow-up ``seq``; checks the DI and SEQ echoes."""
    data = parse_reply(frame, 0x12, address, di)
    value = _after_di(frame, data, di, _di_bytes(di, 2007), 1 if reply_seq else 0)
    if reply_seq and data[-1] != seq & 0xFF:
        msg = "meter %s DI %s: asked follow-up frame %d, reply carries frame %d"
        raise FrameError(msg % (frame.address, di, seq, data[-1]))
    return value


def read_reply_frames(
    address: str, di: str, value_bytes: bytes, size: int = 0, seq_start: int = 1, reply_seq: bool = True,
    preamble: int = 0,
) -> list:
    """Server side: the reply to a read, split into frames of ``size`` value bytes when longer.

    Item 0 answers the C=11 (91, or B1 when split); item k >= 1 answers the C=12 with SEQ
    ``seq_start + k - 1`` (B2 .. 92). ``size`` <= 0 never splits.
    """
    value = bytes(value_bytes)
    if size <= 0 or len(value) <= size:
        return [read_reply(address, di, value, 2007, False, preamble)]
    parts = [value[i:i + size] for i in range(0, len(value), size)]
    out = [read_reply(address, di, parts[0], 2007, True, preamble)]
    for k in range(1, len(parts)):
        out.append(followup_reply(address, di, parts[k], seq_start + k - 1, k < len(parts) - 1, reply_seq,
                                  preamble))
    return out


class FollowupAssembler:
    """Client side: one value spread over a read reply (B1) and follow-up replies (B2 .. 92).

    ``feed`` takes each reply in turn and returns the next request to send (C=12, SEQ counting up
    from ``seq_start``), or None when the value is complete (``value``). More than ``max_followups``
    follow-ups raise FrameError (a meter that never says "last frame").
    """

    def __init__(
        self, address: str, di: str, version: int = 2007, max_followups: int = MAX_FOLLOWUPS,
        seq_start: int = 1, reply_seq: bool = True, preamble: int = 4,
    ) -> None:
        self.address, self.di, self.version, self.preamble = address, di, version, preamble
        self.max_followups, self.seq_start, self.reply_seq = max_followups, seq_start, reply_seq
        self.followups = 0  # C=12 requests handed out
        self.done = False
        self._value = bytearray()

    def feed(self, frame: Frame) -> "bytes | None":
        """Take the reply to the last request; the next request, or None when the value is complete."""
        seq = self.seq_start + self.followups - 1
        if self.followups == 0:
            part = parse_read_reply(frame, self.di, self.version, self.address)
        else:
            part = parse_followup_reply(frame, self.di, seq, self.address, self.reply_seq)
        self._value.extend(part)
        if not frame.has_more:
            self.done = True
            return None
        if self.version != 2007 or self.followups >= self.max_followups:
            raise FrameError(
                "meter %s DI %s: more data announced after %d follow-up frames (limit %d%s)"
                % (frame.address, self.di, self.followups, self.max_followups,
                   "" if self.version == 2007 else "; DL/T 645-1997 follow-ups are not supported")
            )
        self.followups += 1
        return read_followup_request(self.address, self.di, seq + 1, 2007, self.preamble)

    @property
    def value(self) -> bytes:
        """The value bytes joined so far (complete once ``done``)."""
        return bytes(self._value)


def abnormal_reply(
    address: str, err_bits: int, version: int = 2007, control: "int | None" = None, preamble: int = 0
) -> bytes:
    """Server side: abnormal reply to request ``control`` (default: read) with one ERR byte."""
    if control is None:
        control = _read_control(version)
    return build_frame(address, (control & 0x1F) | 0xC0, bytes([err_bits & 0xFF]), preamble)


def read_address_request(preamble: int = 4) -> bytes:
    """Read-communication-address request (C=13) to the wildcard address; one meter on the bus."""
    return build_frame(WILDCARD, 0x13, b"", preamble)


def read_address_reply(address: str, preamble: int = 0) -> bytes:
    """Server side: C=93 carrying the meter's address."""
    return build_frame(address, 0x93, parse_address(address), preamble)


def parse_read_address_reply(frame: Frame) -> str:
    """The printed address from a C=93 reply (checked against the frame header)."""
    data = parse_reply(frame, 0x13, None, "address")
    if len(data) != 6:
        raise FrameError("read-address reply from %s has %d bytes, need 6" % (frame.address, len(data)))
    return format_address(data)


def time_sync_request(when: tuple, order: str = "ss_first", preamble: int = 4) -> bytes:
    """Broadcast time sync (C=08, address 99..99, no reply). ``order`` is a per-meter setting."""
    return build_frame(BROADCAST, 0x08, _time_bytes(when, order), preamble)


def parse_time_sync(frame: Frame, order: str = "ss_first") -> tuple:
    """Server side: (year, month, day, hour, minute, second) from a C=08 frame."""
    if frame.control != 0x08 or len(frame.data) != 6:
        raise FrameError("expected time sync C=08 L=6, got C=%02X L=%d" % (frame.control, len(frame.data)))
    raw = frame.data if order == "ss_first" else _reverse(frame.data)
    _time_bytes((2000, 1, 1, 0, 0, 0), order)  # validates order
    v = bcd_to_int(raw)
    y = 2000 + v // 10000000000
    return (y, v // 100000000 % 100, v // 1000000 % 100, v // 10000 % 100, v // 100 % 100, v % 100)


def _four(value: bytes, what: str) -> bytes:
    if len(value) != 4:
        raise EncodingError("%s must be 4 bytes, got %d" % (what, len(value)))
    return bytes(value)


def write_request(
    address: str, di: str, data: bytes, password: bytes = ZERO4, operator: bytes = ZERO4, preamble: int = 4
) -> bytes:
    """Write-data request (C=14): DI + password (PA P0 P1 P2) + operator (C0..C3) + value bytes."""
    payload = _di_bytes(di, 2007) + _four(password, "password") + _four(operator, "operator") + bytes(data)
    if len(payload) > 50 + 12:
        raise EncodingError("write to %s DI %s: %d value bytes is too long" % (address, di, len(data)))
    return build_frame(address, 0x14, payload, preamble)


def parse_write_request(frame: Frame) -> tuple:
    """Server side: (di, password, operator, value bytes) of a C=14 request."""
    if frame.control != 0x14 or len(frame.data) < 12:
        raise FrameError(
            "expected write request C=14 with >= 12 data bytes, got C=%02X L=%d"
            % (frame.control, len(frame.data))
        )
    d = frame.data
    return (_hex(_reverse(d[:4])), d[4:8], d[8:12], d[12:])


def write_reply(address: str, preamble: int = 0) -> bytes:
    """Server side: normal write reply (C=94, L=0)."""
    return build_frame(address, 0x94, b"", preamble)


def relay_request(
    address: str,
    action: int,
    valid_until: tuple,
    password: bytes = ZERO4,
    operator: bytes = ZERO4,
    preamble: int = 4,
) -> bytes:
    """Relay / alarm / keep-power control (C=1C, Q/GDW extension, plaintext form).

    DATA = password(4) + operator(4) + action + 00 + valid-until (ss mm hh DD MM YY). The layout is
    taken from vendor documentation of the Q/GDW extension and is not verified; meters with an ESAM
    expect an encrypted form instead.
    """
    payload = _four(password, "password") + _four(operator, "operator code") + bytes([action & 0xFF, 0])
    return build_frame(address, 0x1C, payload + _time_bytes(valid_until, "ss_first"), preamble)


def parse_relay_request(frame: Frame) -> tuple:
    """Server side: (action, valid_until, password, operator) of a C=1C request."""
    d = frame.data
    if frame.control != 0x1C or len(d) != 16:
        raise FrameError("expected relay request C=1C L=16, got C=%02X L=%d" % (frame.control, len(d)))
    when = parse_time_sync(Frame(frame.address, 0x08, d[10:16]), "ss_first")
    return (d[8], when, d[:4], d[4:8])


def relay_reply(address: str, preamble: int = 0) -> bytes:
    """Server side: normal relay reply (C=9C, L=0)."""
    return build_frame(address, 0x9C, b"", preamble)


class Dlt645FrameReader(MeterFrameReader):
    """Incremental frame reader: feed received chunks, get complete frames.

    Skips FE preambles and line noise; a candidate with a bad checksum or end byte is reported in
    ``errors`` and the search resumes one byte later. Call ``reset()`` after a long silence.
    """

    name = "DL/T 645"
    layout = FRAME

    def _parse(self, frame: bytes) -> object:
        return parse_frame(frame)
