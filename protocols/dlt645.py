"""DL/T 645-2007 and -1997 electricity-meter frames (sans-I/O, CPython and MicroPython).

Frame: [FE..] 68 A0..A5 68 C L DATA CS 16; DATA travels +0x33 per byte, CS is the byte sum from the
first 68 through DATA. Addresses are strings as printed on the meter ("000000000161"); DIs are strings
in printed order ("02010100", 1997: "B611"). ``Frame.data`` always has the 0x33 offset removed.
Uncertain points (protocol-facts §1.11) are arguments: time-sync byte order, relay layout.
"""

import binascii

from protocols.bcd import bcd_to_int, int_to_bcd
from protocols.dlt645_table import (
    DI_1997_TO_2007,
    DI_TABLE,
    QUALITY_BAD_BCD,
    QUALITY_GOOD,
    QUALITY_NOT_AVAILABLE,
    _hex,
    _reverse,
    decode_block,
    decode_raw,
    decode_reading,
    decode_value,
    encode_value,
    format_info,
)
from protocols.errors import AbnormalReply, CrcError, EncodingError, FrameError, ProtocolError
from protocols.framing import MeterFrameReader

__all__ = [
    "BROADCAST", "DI_1997_TO_2007", "DI_TABLE", "ERR_BITS", "QUALITY_BAD_BCD", "QUALITY_GOOD",
    "QUALITY_NOT_AVAILABLE", "WILDCARD", "Dlt645AbnormalReply", "Dlt645FrameReader", "Frame",
    "abbreviated_address", "abnormal_reply", "address_matches", "build_frame", "decode_block",
    "decode_raw", "decode_reading", "decode_value", "encode_value", "err_meaning", "format_address",
    "format_info", "parse_address", "parse_frame", "parse_read_address_reply", "parse_read_reply",
    "parse_read_request", "parse_relay_request", "parse_reply", "parse_time_sync", "parse_write_request",
    "read_address_reply", "read_address_request", "read_reply", "read_request", "relay_reply",
    "relay_request", "time_sync_request", "write_reply", "write_request",
]

BROADCAST = "999999999999"
WILDCARD = "AAAAAAAAAAAA"
ZERO4 = b"\x00\x00\x00\x00"

# relay control (C=1C, Q/GDW extension); action codes as commonly documented, unverified here
RELAY_TRIP = 0x1A
RELAY_CLOSE_ALLOWED = 0x1B
RELAY_CLOSE_DIRECT = 0x1C
RELAY_ALARM = 0x2A
RELAY_ALARM_RELEASE = 0x2B
RELAY_KEEP_POWER = 0x3A
RELAY_KEEP_POWER_RELEASE = 0x3B

ERR_BITS = {
    0: "other error",
    1: "no requested data (DI unknown or not supported)",
    2: "password error or not authorised",
    3: "baud rate cannot be changed",
    4: "year time-zone count exceeded",
    5: "daily time-slot count exceeded",
    6: "tariff count exceeded",
    7: "reserved bit 7",
}


def err_meaning(err: int) -> str:
    """Every meaning of the ERR byte of an abnormal reply, joined by "; "."""
    parts = [ERR_BITS[b] for b in range(8) if err & (1 << b)]
    return "; ".join(parts) if parts else "no error bit set"


class Dlt645AbnormalReply(AbnormalReply):
    """An abnormal reply (C with D6 set), with the meter address and the DI that was asked."""

    def __init__(self, code: int, address: str, di: str) -> None:
        self.code = code
        self.meaning = err_meaning(code)
        self.address = address
        self.di = di
        ProtocolError.__init__(
            self, "meter %s DI %s: error %02X: %s" % (address, di, code, self.meaning)
        )


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
        return (
            isinstance(other, Frame)
            and self.address == other.address
            and self.control == other.control
            and self.data == other.data
        )

    def __repr__(self) -> str:
        return "Frame(%r, 0x%02X, %s)" % (self.address, self.control, _hex(self.data))


def format_address(raw: bytes) -> str:
    """Six address bytes in wire order (A0 first) -> the address as printed (AA stays "AA")."""
    if len(raw) != 6:
        raise EncodingError("DL/T 645 address needs 6 bytes, got %d" % len(raw))
    return _hex(_reverse(raw))


def parse_address(address: str) -> bytes:
    """Printed address -> 6 wire bytes (A0 first).

    Shorter digit strings are padded with leading zeros; a byte may be "AA" (wildcard or
    abbreviated addressing). Anything else raises EncodingError.
    """
    if not isinstance(address, str) or not 0 < len(address) <= 12:
        raise EncodingError("meter address must be 1..12 digits, got %r" % (address,))
    s = ("0" * (12 - len(address)) + address).upper()
    out = bytearray(6)
    for i in range(6):
        pair = s[10 - 2 * i:12 - 2 * i]
        if pair == "AA":
            out[i] = 0xAA
        elif "0" <= pair[0] <= "9" and "0" <= pair[1] <= "9":
            out[i] = int(pair[0]) * 16 + int(pair[1])
        else:
            raise EncodingError("meter address %s: %r is neither two digits nor AA" % (address, pair))
    return bytes(out)


def abbreviated_address(address: str, keep_bytes: int) -> str:
    """Keep the low ``keep_bytes`` bytes of ``address`` and fill the rest with AA."""
    s = format_address(parse_address(address))
    if not 0 <= keep_bytes <= 6:
        raise EncodingError("keep_bytes must be 0..6, got %d" % keep_bytes)
    return "AA" * (6 - keep_bytes) + s[12 - 2 * keep_bytes:]


def address_matches(requested: str, replied: str) -> bool:
    """True when ``replied`` fits ``requested``; AA bytes in the request match any byte."""
    a = parse_address(requested)
    b = parse_address(replied)
    for i in range(6):
        if a[i] != 0xAA and a[i] != b[i]:
            return False
    return True


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
    n = len(buf)
    i = 0
    while i < n and buf[i] == 0xFE:
        i += 1
    if n - i < 12:
        raise FrameError("DL/T 645 frame too short: %d bytes after the FE preamble, need 12" % (n - i))
    if buf[i] != 0x68:
        raise FrameError("DL/T 645 frame must start with 68, got %02X" % buf[i])
    if buf[i + 7] != 0x68:
        raise FrameError("DL/T 645 second 68 missing: got %02X at offset 7" % buf[i + 7])
    length = buf[i + 9]
    end = i + 12 + length
    address = _hex(_reverse(bytes(buf[i + 1:i + 7])))
    if n < end:
        raise FrameError(
            "DL/T 645 frame from %s truncated: L=%d needs %d bytes, got %d"
            % (address, length, end - i, n - i)
        )
    if n > end:
        raise FrameError("DL/T 645 frame from %s: %d extra bytes after the end" % (address, n - end))
    if buf[end - 1] != 0x16:
        raise FrameError("DL/T 645 frame from %s must end with 16, got %02X" % (address, buf[end - 1]))
    cs = sum(buf[i:end - 2]) & 0xFF
    if cs != buf[end - 2]:
        raise CrcError(
            "DL/T 645 checksum from %s: frame says %02X, computed %02X" % (address, buf[end - 2], cs)
        )
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
        raise FrameError(
            "meter %s DI %s: expected reply C=%02X, got %02X"
            % (frame.address, di, func | 0x80, frame.control)
        )
    return frame.data


def parse_read_reply(frame: Frame, di: str, version: int = 2007, address: "str | None" = None) -> bytes:
    """The value bytes after the echoed DI of a read reply (91/B1, 1997: 81).

    Checks the echoed DI (the checksum cannot catch a DI byte-order error); abnormal replies raise
    Dlt645AbnormalReply with the ERR bits decoded.
    """
    wire = _di_bytes(di, version)
    data = parse_reply(frame, _read_control(version), address, di)
    n = len(wire)
    if len(data) < n:
        raise FrameError(
            "meter %s DI %s: reply carries %d data bytes, need the %d-byte DI echo"
            % (frame.address, di, len(data), n)
        )
    if data[:n] != wire:
        echoed = _hex(_reverse(data[:n]))
        raise FrameError("meter %s: asked DI %s, reply echoes DI %s" % (frame.address, di, echoed))
    return data[n:]


def read_reply(
    address: str, di: str, value_bytes: bytes, version: int = 2007, more: bool = False, preamble: int = 0
) -> bytes:
    """Server side: normal read reply (91, B1 when ``more``, 1997: 81) echoing ``di``."""
    control = _read_control(version) | (0xA0 if more else 0x80)
    return build_frame(address, control, _di_bytes(di, version) + bytes(value_bytes), preamble)


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


def _time_bytes(when: tuple, order: str) -> bytes:
    """(Y, M, D, h, m, s) -> 6 BCD bytes ss mm hh DD MM YY (ss_first) or YY .. ss (yy_first)."""
    if len(when) < 6:
        raise EncodingError("time must be (year, month, day, hour, minute, second), got %r" % (when,))
    y, mo, d, h, mi, s = when[0], when[1], when[2], when[3], when[4], when[5]
    ok = 2000 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31
    if not (ok and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 59):
        raise EncodingError("time %r out of range for DL/T 645 (years 2000..2099)" % (when,))
    digits = int_to_bcd(((((y % 100) * 100 + mo) * 100 + d) * 100 + h) * 10000 + mi * 100 + s, 6)
    if order == "ss_first":
        return digits
    if order == "yy_first":
        return _reverse(digits)
    raise EncodingError("time byte order must be 'ss_first' or 'yy_first', got %r" % (order,))


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

    def feed(self, chunk: bytes) -> list:
        """Append ``chunk``; return the frames completed by it, in order."""
        self._buf.extend(chunk)
        buf = self._buf
        n = len(buf)
        pos = 0
        frames = []
        while pos < n:
            b = buf[pos]
            if b != 0x68:
                if b != 0xFE:
                    self._noise += 1
                pos += 1
                continue
            if n - pos < 10:
                break
            if buf[pos + 7] != 0x68:
                self._noise += 1
                pos += 1
                continue
            end = pos + 12 + buf[pos + 9]
            if n < end:
                break
            try:
                frames.append(parse_frame(bytes(buf[pos:end])))
                self._flush_noise()
                pos = end
            except FrameError as e:
                self.errors.append(e)
                pos += 1
        self._keep(buf, pos)
        return frames
