"""DL/T 698.45 frames and GET services (sans-I/O, CPython and MicroPython).

Frame: [FE..] 68 L(2, low first) C SA-flag SA(1..16) CA HCS(2) APDU FCS(2) 16. L counts every byte
but the 68 and the 16; HCS covers L..CA, FCS covers L..APDU, both CRC-16/X.25 sent low byte first.
C: bit7 DIR (1: from the server), bit6 PRM (1: this exchange was started by the client), bit5 the
APDU is a fragment, bit3 SC (APDU scrambled +0x33), bits0-2 the function (1 link, 3 user data).
SA flag: bits7-6 address type (single, wildcard, group, broadcast), bits5-4 logic address, bits3-0
the address length - 1. Addresses are strings as printed on the meter ("000039200933", the wire
order reversed, hex digits: "A" nibbles are wildcards); OADs are 8 hex digits ("00100200").

APDU services: GET-Request-Normal ``05 01 PIID OAD TimeTag`` and -NormalList ``05 02 PIID n OAD...``
and their responses ``85 01`` / ``85 02`` (OAD, then Get-Result: 00 DAR or 01 Data, then
FollowReport and TimeTag, both optional). Data is A-XDR (protocols.axdr). A response whose Get-Result
is a DAR raises DarError when the value is asked for; the other results of a list stay usable.
Not covered: fragments (C bit5), security-wrapped APDUs (10h / 90h), GET-Record / -Next, SET, ACTION.
"""

from protocols import axdr
from protocols.crc import reflected_table
from protocols.dlt698.table import (
    DAR_MEANINGS,
    OAD_TABLE,
    UNIT_CODES,
    attribute_oad,
    dar_meaning,
    element_index,
    scaled,
    unit_symbol,
)
from protocols.errors import AbnormalReply, CrcError, EncodingError, FrameError, ProtocolError
from protocols.framing import NEED_MORE, NOT_A_FRAME, MeterFrameReader
from protocols.framing import hex_upper as _hex
from protocols.framing import reversed_bytes as _reverse

__all__ = [
    "ADDRESS_BROADCAST", "ADDRESS_GROUP", "ADDRESS_SINGLE", "ADDRESS_WILDCARD", "BROADCAST",
    "CONTROL_REQUEST", "CONTROL_RESPONSE", "DAR_MEANINGS", "MAX_FRAME", "MAX_OADS", "OAD_TABLE",
    "UNIT_CODES", "WILDCARD",
    "DarError", "Dlt698FrameReader", "Frame", "Result", "address_matches", "attribute_oad", "build_frame",
    "crc16", "dar_meaning", "element_index", "format_address", "get_request", "get_response",
    "parse_address", "parse_frame", "parse_get_request", "parse_get_response", "parse_read_address_response",
    "parse_read_response", "parse_request", "read_address_request", "read_request", "read_response",
    "scaled", "unit_symbol",
]

ADDRESS_SINGLE = 0
ADDRESS_WILDCARD = 1
ADDRESS_GROUP = 2
ADDRESS_BROADCAST = 3
ADDRESS_TYPES = ("single", "wildcard", "group", "broadcast")
WILDCARD = "AAAAAAAAAAAA"  # with ADDRESS_WILDCARD: whichever single meter is on the bus
BROADCAST = "AA"  # with ADDRESS_BROADCAST: every meter, none answers

CONTROL_REQUEST = 0x43  # DIR 0, PRM 1, user data: a client's request
CONTROL_RESPONSE = 0xC3  # DIR 1, PRM 1, user data: the server's response to it
MAX_FRAME = 2048  # bytes from 68 to 16; meters negotiate APDUs of a few hundred bytes
MAX_OADS = 64  # OADs in one GET-Request-NormalList we build or accept
OAD_ADDRESS = "40010200"

GET_REQUEST = 0x05
GET_RESPONSE = 0x85
NORMAL = 0x01
NORMAL_LIST = 0x02


class DarError(AbnormalReply):
    """The meter refused one OAD of a GET with a data access result (DAR)."""

    def __init__(self, code: int, address: str, oad: str) -> None:
        self.code = code
        self.meaning = dar_meaning(code)
        self.address = address
        self.oad = oad
        ProtocolError.__init__(self, "meter %s OAD %s: DAR %d: %s" % (address, oad, code, self.meaning))


# ---------------------------------------------------------------- CRC
_CRC_TABLE = reflected_table(0x8408)


def crc16(data: "bytes | bytearray") -> int:
    """CRC-16/X.25 (the PPP FCS-16): init FFFF, reflected polynomial 8408, final XOR FFFF.

    "123456789" gives 906E. Sent low byte first; HCS and FCS are both this CRC.
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


# ---------------------------------------------------------------- addresses
def parse_address(address: str) -> bytes:
    """Printed server address -> wire bytes (low byte first): "000039200933" -> 33 09 20 39 00 00.

    2..32 hex digits, an even number; digits are BCD, "A" nibbles wildcards, "F" fills an odd count.
    """
    if not isinstance(address, str) or not 2 <= len(address) <= 32 or len(address) % 2:
        raise EncodingError("server address must be 2..32 hex digits, an even number, got %r" % (address,))
    for ch in address:
        if ch not in "0123456789AaFf":
            raise EncodingError("server address %r: %r is neither a BCD digit nor A (wildcard) nor F (fill)"
                                % (address, ch))
    out = bytearray(len(address) // 2)
    for i in range(len(out)):
        out[i] = int(address[len(address) - 2 * i - 2:len(address) - 2 * i], 16)
    return bytes(out)


def format_address(raw: bytes) -> str:
    """Wire bytes (low byte first) -> the address as printed, upper-case hex."""
    return _hex(_reverse(bytes(raw)))


def address_matches(requested: str, own: str) -> bool:
    """True when ``own`` answers ``requested``: same length, an A nibble matches any digit."""
    if len(requested) != len(own):
        return False
    for a, b in zip(requested.upper(), own.upper()):
        if a != "A" and a != b:
            return False
    return True


# ---------------------------------------------------------------- frames
class Frame:
    """One frame: server address (printed) and type, logic address, client address, control, APDU.

    ``apdu`` never carries the +0x33 scrambling (``scrambled`` says whether the wire did).
    """

    def __init__(self, address: str, apdu: bytes, control: int = CONTROL_REQUEST, client: int = 0,
                 address_type: int = ADDRESS_SINGLE, logic: int = 0) -> None:
        self.address = address
        self.apdu = bytes(apdu)
        self.control = control
        self.client = client
        self.address_type = address_type
        self.logic = logic

    @property
    def from_server(self) -> bool:
        """DIR: the server (meter) sent this frame."""
        return bool(self.control & 0x80)

    @property
    def client_started(self) -> bool:
        """PRM: part of an exchange the client started (request or its response)."""
        return bool(self.control & 0x40)

    @property
    def fragment(self) -> bool:
        """The APDU is a fragment of a longer one (not supported by the services here)."""
        return bool(self.control & 0x20)

    @property
    def scrambled(self) -> bool:
        """SC: the APDU travelled with +0x33 on every byte."""
        return bool(self.control & 0x08)

    @property
    def function(self) -> int:
        """1: link management (login, heartbeat), 3: user data."""
        return self.control & 0x07

    def describe(self) -> str:
        """Who sent what to whom, for error messages."""
        kind = ADDRESS_TYPES[self.address_type]
        way = "response from" if self.from_server else "request to"
        return "%s %s address %s" % (way, kind, self.address)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return False
        return (self.address, self.apdu, self.control, self.client, self.address_type, self.logic) == (
            other.address, other.apdu, other.control, other.client, other.address_type, other.logic)

    def __repr__(self) -> str:
        return "Frame(%r, %s, 0x%02X, client=%d, type=%s, logic=%d)" % (
            self.address, _hex(self.apdu), self.control, self.client, ADDRESS_TYPES[self.address_type],
            self.logic)


def build_frame(frame: Frame, preamble: int = 0) -> bytes:
    """The bytes of ``frame`` with ``preamble`` FE bytes; scrambles the APDU when C has SC set."""
    raw = parse_address(frame.address)
    if not 0 <= frame.address_type <= 3 or not 0 <= frame.logic <= 3:
        raise EncodingError("address type must be 0..3 and logic address 0..3")
    if not 0 <= frame.client <= 255 or not 0 <= frame.control <= 255:
        raise EncodingError("client address and control must be one byte each")
    if frame.address_type == ADDRESS_BROADCAST and raw != b"\xaa":
        raise EncodingError("a broadcast server address is the one byte AA, got %s" % frame.address)
    length = 2 + 1 + 1 + len(raw) + 1 + 2 + len(frame.apdu) + 2
    if length + 2 > MAX_FRAME:
        raise EncodingError("DL/T 698.45 frame of %d bytes is longer than %d" % (length + 2, MAX_FRAME))
    out = bytearray(b"\xfe" * preamble)
    start = len(out)
    out.append(0x68)
    out.append(length & 0xFF)
    out.append(length >> 8)
    out.append(frame.control)
    out.append((frame.address_type << 6) | (frame.logic << 4) | (len(raw) - 1))
    out.extend(raw)
    out.append(frame.client)
    hcs = crc16(out[start + 1:])
    out.append(hcs & 0xFF)
    out.append(hcs >> 8)
    if frame.control & 0x08:
        out.extend(bytes([(b + 0x33) & 0xFF for b in frame.apdu]))
    else:
        out.extend(frame.apdu)
    fcs = crc16(out[start + 1:])
    out.append(fcs & 0xFF)
    out.append(fcs >> 8)
    out.append(0x16)
    return bytes(out)


def _header_size(buf: "bytes | bytearray", i: int) -> int:
    """Bytes from the 68 through HCS, given the SA flag at i + 4."""
    return 4 + 1 + (buf[i + 4] & 0x0F) + 1 + 1 + 2


def parse_frame(buf: bytes) -> Frame:
    """Parse exactly one frame (leading FE allowed). FrameError / CrcError on any defect."""
    n = len(buf)
    i = 0
    while i < n and buf[i] == 0xFE:
        i += 1
    if n - i < 12:
        raise FrameError("DL/T 698.45 frame too short: %d bytes after the FE preamble, need 12" % (n - i))
    if buf[i] != 0x68:
        raise FrameError("DL/T 698.45 frame must start with 68, got %02X" % buf[i])
    word = buf[i + 1] | buf[i + 2] << 8
    if word & 0xC000:
        raise FrameError("DL/T 698.45 length field %04X: bits 14-15 set (kilobyte unit or reserved)" % word)
    end = i + word + 2
    header = _header_size(buf, i)
    if word + 2 < header + 3:
        raise FrameError("DL/T 698.45 length L=%d is shorter than the %d-byte header" % (word, header))
    raw = bytes(buf[i + 5:i + 5 + (buf[i + 4] & 0x0F) + 1])
    address = format_address(raw)
    if n != end:
        raise FrameError("DL/T 698.45 frame with address %s: L=%d needs %d bytes, got %d"
                         % (address, word, word + 2, n - i))
    if buf[end - 1] != 0x16:
        raise FrameError("DL/T 698.45 frame with address %s must end with 16, got %02X"
                         % (address, buf[end - 1]))
    hcs = crc16(buf[i + 1:i + header - 2])
    got = buf[i + header - 2] | buf[i + header - 1] << 8
    if hcs != got:
        raise CrcError("DL/T 698.45 HCS with address %s: frame says %04X, computed %04X"
                       % (address, got, hcs))
    fcs = crc16(buf[i + 1:end - 3])
    got = buf[end - 3] | buf[end - 2] << 8
    if fcs != got:
        raise CrcError("DL/T 698.45 FCS with address %s: frame says %04X, computed %04X"
                       % (address, got, fcs))
    control = buf[i + 3]
    apdu = bytes(buf[i + header:end - 3])
    if control & 0x08:
        apdu = bytes([(b - 0x33) & 0xFF for b in apdu])
    flag = buf[i + 4]
    return Frame(address, apdu, control, buf[i + header - 3], flag >> 6, (flag >> 4) & 3)


class Dlt698FrameReader(MeterFrameReader):
    """Incremental frame reader: skips FE and noise, checks HCS as soon as the header is in (so a
    stray 68 with a huge length stalls nothing), bounds frames to ``max_frame`` bytes."""

    name = "DL/T 698.45"

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        MeterFrameReader.__init__(self)
        self.max_frame = max_frame

    def _least(self, buf: bytearray, n: int) -> int:
        # 68 L L C AF SA.. CA HCS: the header's size is in AF, and a frame has three bytes after it
        return _header_size(buf, 0) + 3 if n >= 5 else self.min_frame

    def _declared(self, buf: bytearray, pos: int, n: int) -> int:
        # the length word counts only once the header's HCS holds (a 68 in noise with a huge length must
        # not hold the frames behind it, nor the link)
        if n - pos < 5:
            return NEED_MORE
        word = buf[pos + 1] | buf[pos + 2] << 8
        header = _header_size(buf, pos)
        if word & 0xC000 or word + 2 > self.max_frame or word + 2 < header + 3:
            return NOT_A_FRAME
        if n - pos < header:
            return NEED_MORE
        if crc16(buf[pos + 1:pos + header - 2]) != buf[pos + header - 2] | buf[pos + header - 1] << 8:
            return NOT_A_FRAME  # a 68 in noise or data: not counted as a CRC error
        return word + 2

    def _parse(self, frame: bytes) -> object:
        return parse_frame(frame)


# ---------------------------------------------------------------- APDU pieces
def _oad_bytes(oad: str) -> bytes:
    attribute_oad(oad)  # checks the form
    return bytes([int(oad[k:k + 2], 16) for k in range(0, 8, 2)])


def _need(apdu: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(apdu):
        raise FrameError("DL/T 698.45 APDU truncated: %s at offset %d needs %d bytes, %d left"
                         % (what, pos, n, len(apdu) - pos))


def _time_tag(apdu: bytes, pos: int) -> tuple:
    """(time tag or None, position after it): 00, or 01 + date_time_s(7) + TI(3)."""
    _need(apdu, pos, 1, "TimeTag")
    if apdu[pos] == 0:
        return (None, pos + 1)
    if apdu[pos] != 1:
        raise FrameError("DL/T 698.45 TimeTag flag %02X at offset %d is neither 00 nor 01" % (apdu[pos], pos))
    _need(apdu, pos + 1, 10, "TimeTag")
    sent, _ = axdr.decode(bytes([axdr.DATE_TIME_S]) + apdu[pos + 1:pos + 8])
    delay, _ = axdr.decode(bytes([axdr.TI]) + apdu[pos + 8:pos + 11])
    return ((sent[1], delay[1]), pos + 11)


def _encode_time_tag(time_tag: "tuple | None") -> bytes:
    if time_tag is None:
        return b"\x00"
    sent = axdr.encode((axdr.DATE_TIME_S, time_tag[0]))[1:]
    return b"\x01" + sent + axdr.encode((axdr.TI, time_tag[1]))[1:]


def _check_piid(piid: int) -> int:
    if isinstance(piid, bool) or not isinstance(piid, int) or not 0 <= piid <= 255:
        raise EncodingError("PIID must be one byte 0..255, got %r" % (piid,))
    return piid


def _check_oads(oads: "list | str") -> list:
    if isinstance(oads, str):
        oads = [oads]
    if not isinstance(oads, (list, tuple)):
        raise EncodingError("OADs must be a list of 8-hex-digit strings, got %r" % (oads,))
    if not oads or len(oads) > MAX_OADS:
        raise EncodingError("a GET asks for 1..%d OADs, got %d" % (MAX_OADS, len(oads)))
    return [attribute_oad(o)[:6] + o[6:].upper() for o in oads]


class Result:
    """One OAD of a GET response: ``data`` (A-XDR tuple) or ``dar`` (int), never both."""

    def __init__(self, oad: str, data: "tuple | None" = None, dar: "int | None" = None) -> None:
        self.oad = oad
        self.data = data
        self.dar = dar

    def value(self, address: str = "-") -> tuple:
        """The data; DarError when the meter refused this OAD."""
        if self.dar is not None:
            raise DarError(self.dar, address, self.oad)
        return self.data  # type: ignore[return-value]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return False
        return (self.oad, self.data, self.dar) == (other.oad, other.data, other.dar)

    def __repr__(self) -> str:
        if self.dar is not None:
            return "Result(%r, dar=%d)" % (self.oad, self.dar)
        return "Result(%r, %r)" % (self.oad, self.data)


# ---------------------------------------------------------------- GET: client side
def get_request(oads: "list | str", piid: int = 0, time_tag: "tuple | None" = None) -> bytes:
    """GET-Request APDU: Normal (05 01) for one OAD, NormalList (05 02) for a list of several.

    A one-item list is still sent as NormalList when ``oads`` is a list of one; a single OAD string
    gives Normal. PIID: bit 7 priority, bits 0-5 the service number, bit 6 reserved.
    ``time_tag`` is ((y, mo, d, h, mi, s), (TI unit, interval)) or None (00).
    """
    single = isinstance(oads, str)
    oads = _check_oads(oads)
    if _check_piid(piid) & 0x40:
        raise EncodingError("PIID %02X: bit 6 is reserved in a request (it is ACD in the response)" % piid)
    out = bytearray([GET_REQUEST, NORMAL if single else NORMAL_LIST, piid])
    if not single:
        out.append(len(oads))
    for oad in oads:
        out.extend(_oad_bytes(oad))
    out.extend(_encode_time_tag(time_tag))
    return bytes(out)


def read_request(address: str, oads: "list | str", piid: int = 0, client: int = 0,
                 address_type: int = ADDRESS_SINGLE, logic: int = 0, preamble: int = 0) -> bytes:
    """A GET request frame to a meter (C=43): one OAD string (Normal) or a list (NormalList)."""
    return build_frame(Frame(address, get_request(oads, piid), CONTROL_REQUEST, client, address_type, logic),
                       preamble)


def read_address_request(piid: int = 0, client: int = 0, preamble: int = 0) -> bytes:
    """GET 40010200 (communication address) to the wildcard SA AAAAAAAAAAAA: one meter on the bus."""
    return read_request(WILDCARD, OAD_ADDRESS, piid, client, ADDRESS_WILDCARD, 0, preamble)


def _results(apdu: bytes, pos: int, count: int, where: str) -> tuple:
    results = []
    for _ in range(count):
        _need(apdu, pos, 5, "A-ResultNormal")
        oad = _hex(apdu[pos:pos + 4])
        choice = apdu[pos + 4]
        pos += 5
        if choice == 0:
            _need(apdu, pos, 1, "DAR")
            results.append(Result(oad, None, apdu[pos]))
            pos += 1
        elif choice == 1:
            try:
                data, pos = axdr.decode(apdu, pos)
            except EncodingError as e:
                raise EncodingError("%s OAD %s: %s" % (where, oad, e)) from None
            results.append(Result(oad, data))
        else:
            raise FrameError("%s OAD %s: Get-Result choice %02X is neither 00 (DAR) nor 01 (Data)"
                             % (where, oad, choice))
    return (results, pos)


def parse_get_response(apdu: bytes, where: str = "meter") -> tuple:
    """(PIID-ACD, [Result, ...], follow-report results) of a GET-Response Normal or NormalList.

    FrameError / EncodingError on anything else or on bytes left over.
    """
    _need(apdu, 0, 3, "GET-Response header")
    if apdu[0] != GET_RESPONSE or apdu[1] not in (NORMAL, NORMAL_LIST):
        if apdu[0] == 0xEE:
            raise FrameError("%s sent an ERROR-Response (EE), code %s" % (
                where, "%02X" % apdu[2] if len(apdu) > 2 else "missing"))
        raise FrameError("%s: expected GET-Response 85 01 / 85 02, got %s" % (where, _hex(apdu[:2])))
    piid = apdu[2]
    pos = 3
    count = 1
    if apdu[1] == NORMAL_LIST:
        _need(apdu, pos, 1, "result count")
        count = apdu[pos]
        pos += 1
    results, pos = _results(apdu, pos, count, where)
    _need(apdu, pos, 1, "FollowReport")
    follow = []  # type: list
    if apdu[pos] == 1:
        _need(apdu, pos + 1, 2, "FollowReport")
        if apdu[pos + 1] != 1:
            raise FrameError("%s: FollowReport choice %02X (records) is not supported"
                             % (where, apdu[pos + 1]))
        follow, pos = _results(apdu, pos + 3, apdu[pos + 2], where + " follow report")
    elif apdu[pos] == 0:
        pos += 1
    else:
        raise FrameError("%s: FollowReport flag %02X is neither 00 nor 01" % (where, apdu[pos]))
    _tag, pos = _time_tag(apdu, pos)
    if pos != len(apdu):
        raise FrameError("%s: %d bytes left after the GET-Response" % (where, len(apdu) - pos))
    return (piid, results, follow)


def parse_read_response(frame: Frame, oads: "list | str", piid: "int | None" = None,
                        address: "str | None" = None) -> list:
    """The Results of a response frame to read_request(..., oads, piid), in the order asked.

    Checks direction, the address (A nibbles in ``address`` match anything), the PIID's service
    number and that the OADs are the ones asked; FrameError otherwise. DARs stay in the Results.
    """
    if not frame.from_server:
        raise FrameError("expected a response (DIR=1), got a %s" % frame.describe())
    if address is not None and not address_matches(address, frame.address):
        raise FrameError("response from meter %s, expected meter %s" % (frame.address, address))
    if frame.fragment:
        raise FrameError("meter %s sent an APDU fragment (C=%02X): segmented responses are not supported"
                         % (frame.address, frame.control))
    where = "meter %s" % frame.address
    got_piid, results, _follow = parse_get_response(frame.apdu, where)
    if piid is not None and got_piid & 0x3F != piid & 0x3F:
        raise FrameError("%s: asked PIID %02X, response carries %02X" % (where, piid, got_piid))
    asked = _check_oads(oads)
    got = [r.oad for r in results]
    if got != asked:
        raise FrameError("%s: asked OADs %s, response carries %s" % (where, " ".join(asked), " ".join(got)))
    return results


def parse_read_address_response(frame: Frame, piid: "int | None" = None) -> str:
    """The printed address from the response to read_address_request(); checked against the SA."""
    result = parse_read_response(frame, [OAD_ADDRESS], piid)[0]
    data = result.value(frame.address)
    if data[0] != axdr.OCTET_STRING:
        raise FrameError("meter %s: 40010200 carries %s, expected an octet-string"
                         % (frame.address, axdr.name(data[0])))
    printed = _hex(data[1])
    if printed != frame.address:
        raise FrameError("meter %s: 40010200 says %s, the frame's address is %s"
                         % (frame.address, printed, frame.address))
    return printed


# ---------------------------------------------------------------- GET: server side
def parse_get_request(apdu: bytes) -> tuple:
    """Server side: (PIID, [OAD, ...], is_list) of a GET-Request Normal / NormalList APDU."""
    _need(apdu, 0, 3, "GET-Request header")
    if apdu[0] != GET_REQUEST or apdu[1] not in (NORMAL, NORMAL_LIST):
        raise FrameError("expected GET-Request 05 01 / 05 02, got %s" % _hex(apdu[:2]))
    piid = apdu[2]
    pos = 3
    count = 1
    if apdu[1] == NORMAL_LIST:
        _need(apdu, pos, 1, "OAD count")
        count = apdu[pos]
        pos += 1
        if not 1 <= count <= MAX_OADS:
            raise FrameError("GET-Request-NormalList asks for %d OADs, accepted 1..%d" % (count, MAX_OADS))
    _need(apdu, pos, 4 * count, "OADs")
    oads = [_hex(apdu[pos + 4 * k:pos + 4 * k + 4]) for k in range(count)]
    _tag, pos = _time_tag(apdu, pos + 4 * count)
    if pos != len(apdu):
        raise FrameError("%d bytes left after the GET-Request" % (len(apdu) - pos))
    return (piid, oads, apdu[1] == NORMAL_LIST)


def parse_request(frame: Frame) -> tuple:
    """Server side: (PIID, [OAD, ...], is_list) of a request frame; FrameError for anything else."""
    if frame.from_server or not frame.client_started or frame.function != 3:
        raise FrameError("not a client's user-data request: C=%02X" % frame.control)
    if frame.fragment:
        raise FrameError("APDU fragments (C=%02X) are not supported" % frame.control)
    return parse_get_request(frame.apdu)


def get_response(piid: int, results: list, is_list: bool = False) -> bytes:
    """Server side: GET-Response APDU (85 01 / 85 02), no FollowReport, no TimeTag."""
    if not is_list and len(results) != 1:
        raise EncodingError("GET-Response-Normal carries one result, got %d" % len(results))
    if len(results) > 255:
        raise EncodingError("GET-Response-NormalList carries at most 255 results")
    out = bytearray([GET_RESPONSE, NORMAL_LIST if is_list else NORMAL, _check_piid(piid)])
    if is_list:
        out.append(len(results))
    for r in results:
        out.extend(_oad_bytes(r.oad))
        if r.dar is not None:
            out.append(0)
            out.append(r.dar & 0xFF)
        else:
            out.append(1)
            out.extend(axdr.encode(r.data))  # type: ignore[arg-type]
    out.extend(b"\x00\x00")
    return bytes(out)


def read_response(address: str, piid: int, results: list, is_list: bool = False, client: int = 0,
                  logic: int = 0, preamble: int = 0) -> bytes:
    """Server side: the response frame (C=C3) from a single address; PIID-ACD echoes ``piid``."""
    apdu = get_response(piid, results, is_list)
    return build_frame(Frame(address, apdu, CONTROL_RESPONSE, client, ADDRESS_SINGLE, logic), preamble)
