"""Modbus codec, sans-I/O: CRC-16, PDUs for FC 01-06/15/16, RTU and TCP ADUs, an RTU frame reader.

Builders raise EncodingError on arguments outside the protocol limits; decoders raise FrameError /
CrcError on malformed bytes and ExceptionResponse on a Modbus exception. ``parse_request`` (server
side) raises ExceptionResponse(function, code) carrying the exception a server should answer with.
"""

import binascii
import struct

from protocols.compat import const
from protocols.crc import reflected_table
from protocols.errors import CrcError, EncodingError, ExceptionResponse, FrameError, ProtocolError

__all__ = [
    "READ_COILS", "READ_DISCRETE_INPUTS", "READ_HOLDING_REGISTERS", "READ_INPUT_REGISTERS",
    "WRITE_MULTIPLE_COILS", "WRITE_MULTIPLE_REGISTERS", "WRITE_SINGLE_COIL", "WRITE_SINGLE_REGISTER",
    "Request", "RtuFrameReader", "check_read_response", "crc16", "exception_response", "frame_time",
    "parse_request", "parse_response", "read_request", "read_response", "rtu_frame", "rtu_parse", "t15",
    "t35", "tcp_adu_length", "tcp_frame", "tcp_parse", "write_coil_request", "write_coils_request",
    "write_register_request", "write_registers_request", "write_response",
]

READ_COILS = const(1)
READ_DISCRETE_INPUTS = const(2)
READ_HOLDING_REGISTERS = const(3)
READ_INPUT_REGISTERS = const(4)
WRITE_SINGLE_COIL = const(5)
WRITE_SINGLE_REGISTER = const(6)
WRITE_MULTIPLE_COILS = const(15)
WRITE_MULTIPLE_REGISTERS = const(16)

MAX_READ_BITS = const(2000)
MAX_WRITE_BITS = const(1968)
MAX_READ_REGISTERS = const(125)
MAX_WRITE_REGISTERS = const(123)
MAX_UNIT = const(247)
MAX_PDU = const(253)
MAX_RTU_ADU = const(256)
MAX_TCP_ADU = const(260)

_FUNCTIONS = (1, 2, 3, 4, 5, 6, 15, 16)


_CRC_TABLE = reflected_table(0xA001)


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (init 0xFFFF, reflected poly 0xA001); send low byte first."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _hex(data: bytes | bytearray) -> str:
    return binascii.hexlify(bytes(data)).decode()


def _check(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or value < low or value > high:
        raise EncodingError("%s %r outside %d..%d" % (name, value, low, high))


def _check_span(address: int, count: int) -> None:
    if address + count > 0x10000:
        raise EncodingError("address %d + count %d runs past 65535" % (address, count))


def _pack_bits(values: list) -> bytes:
    out = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list:
    return [(data[i >> 3] >> (i & 7)) & 1 == 1 for i in range(count)]


def _registers(values: list) -> bytes:
    for v in values:
        _check("register value", v, 0, 0xFFFF)
    return struct.pack(">%dH" % len(values), *values)


def _bool(value: bool) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    raise EncodingError("coil value must be a bool, got %r" % (value,))


# ---------------------------------------------------------------- client side: requests

def read_request(function: int, address: int, count: int) -> bytes:
    """PDU reading ``count`` bits (FC 1/2, 1..2000) or registers (FC 3/4, 1..125) at ``address``."""
    if function not in (1, 2, 3, 4):
        raise EncodingError("function %r is not a read (1-4)" % (function,))
    _check("address", address, 0, 0xFFFF)
    _check("count", count, 1, MAX_READ_BITS if function <= 2 else MAX_READ_REGISTERS)
    _check_span(address, count)
    return struct.pack(">BHH", function, address, count)


def write_coil_request(address: int, value: bool) -> bytes:
    """FC 5 PDU: write one coil (ON is FF00, OFF is 0000)."""
    _check("address", address, 0, 0xFFFF)
    return struct.pack(">BHH", 5, address, 0xFF00 if _bool(value) else 0)


def write_register_request(address: int, value: int) -> bytes:
    """FC 6 PDU: write one holding register (value 0..65535)."""
    _check("address", address, 0, 0xFFFF)
    _check("register value", value, 0, 0xFFFF)
    return struct.pack(">BHH", 6, address, value)


def write_coils_request(address: int, values: list) -> bytes:
    """FC 15 PDU: write 1..1968 coils starting at ``address``."""
    _check("address", address, 0, 0xFFFF)
    bits = [_bool(v) for v in values]
    _check("count", len(bits), 1, MAX_WRITE_BITS)
    _check_span(address, len(bits))
    data = _pack_bits(bits)
    return struct.pack(">BHHB", 15, address, len(bits), len(data)) + data


def write_registers_request(address: int, values: list) -> bytes:
    """FC 16 PDU: write 1..123 holding registers starting at ``address``."""
    _check("address", address, 0, 0xFFFF)
    _check("count", len(values), 1, MAX_WRITE_REGISTERS)
    _check_span(address, len(values))
    data = _registers(values)
    return struct.pack(">BHHB", 16, address, len(values), len(data)) + data


# ---------------------------------------------------------------- server side

class Request:
    """A decoded request PDU. ``values`` is None for reads, else a list of bools (FC 5/15)
    or register ints (FC 6/16); ``count`` is 1 for FC 5/6."""

    def __init__(self, function: int, address: int, count: int, values: list | None = None) -> None:
        self.function = function
        self.address = address
        self.count = count
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and (
            self.function, self.address, self.count, self.values
        ) == (other.function, other.address, other.count, other.values)

    def __repr__(self) -> str:
        return "Request(function=%d, address=%d, count=%d, values=%r)" % (
            self.function, self.address, self.count, self.values)


def parse_request(pdu: bytes) -> Request:
    """Decode a request PDU (server side).

    FrameError when the PDU is truncated or its length contradicts its byte count;
    ExceptionResponse(function, 1) for an unsupported function, (function, 3) for a quantity,
    byte count or coil value out of range, (function, 2) when address + quantity passes 65535.
    """
    pdu = bytes(pdu)
    if not pdu:
        raise FrameError("empty request PDU")
    fc = pdu[0]
    if fc not in _FUNCTIONS:
        raise ExceptionResponse(fc, 1)
    if fc <= 6:
        if len(pdu) != 5:
            raise FrameError("FC%02X request: expected 5 bytes, got %d: %s" % (fc, len(pdu), _hex(pdu)))
        address, word = struct.unpack(">HH", pdu[1:])
        if fc == 5:
            if word not in (0, 0xFF00):
                raise ExceptionResponse(fc, 3)
            return Request(fc, address, 1, [word == 0xFF00])
        if fc == 6:
            return Request(fc, address, 1, [word])
        if word < 1 or word > (MAX_READ_BITS if fc <= 2 else MAX_READ_REGISTERS):
            raise ExceptionResponse(fc, 3)
        if address + word > 0x10000:
            raise ExceptionResponse(fc, 2)
        return Request(fc, address, word)
    if len(pdu) < 6 or len(pdu) != 6 + pdu[5]:
        raise FrameError("FC%02X request: length %d does not match byte count: %s"
                         % (fc, len(pdu), _hex(pdu)))
    address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
    if fc == 15:
        if count < 1 or count > MAX_WRITE_BITS or nbytes != (count + 7) // 8:
            raise ExceptionResponse(fc, 3)
        values: list = _unpack_bits(pdu[6:], count)
    else:
        if count < 1 or count > MAX_WRITE_REGISTERS or nbytes != 2 * count:
            raise ExceptionResponse(fc, 3)
        values = list(struct.unpack(">%dH" % count, pdu[6:]))
    if address + count > 0x10000:
        raise ExceptionResponse(fc, 2)
    return Request(fc, address, count, values)


def exception_response(function: int, code: int) -> bytes:
    """Exception PDU: function | 0x80, then the exception code."""
    _check("function", function, 1, 0x7F)
    _check("exception code", code, 1, 0xFF)
    return bytes((function | 0x80, code))


def read_response(function: int, values: list) -> bytes:
    """Response PDU for FC 1/2 (list of bools) or FC 3/4 (list of register ints)."""
    if function in (1, 2):
        bits = [_bool(v) for v in values]
        _check("count", len(bits), 1, MAX_READ_BITS)
        data = _pack_bits(bits)
    elif function in (3, 4):
        _check("count", len(values), 1, MAX_READ_REGISTERS)
        data = _registers(values)
    else:
        raise EncodingError("function %r is not a read (1-4)" % (function,))
    return bytes((function, len(data))) + data


def write_response(request: Request) -> bytes:
    """Echo PDU for FC 5/6 (address and value) or FC 15/16 (address and quantity)."""
    fc = request.function
    if fc == 5:
        return write_coil_request(request.address, (request.values or [False])[0])
    if fc == 6:
        return write_register_request(request.address, (request.values or [0])[0])
    if fc in (15, 16):
        _check("address", request.address, 0, 0xFFFF)
        _check("count", request.count, 1, MAX_WRITE_BITS if fc == 15 else MAX_WRITE_REGISTERS)
        return struct.pack(">BHH", fc, request.address, request.count)
    raise EncodingError("function %r is not a write (5, 6, 15, 16)" % (fc,))


# ---------------------------------------------------------------- client side: responses

def parse_response(request_pdu: bytes, response_pdu: bytes) -> list | tuple:
    """Check ``response_pdu`` answers ``request_pdu`` and return its content.

    FC 1/2 -> list of ``count`` bools; FC 3/4 -> list of register ints; FC 5/6 -> (address, value);
    FC 15/16 -> (address, count). Raises ExceptionResponse for an exception PDU, FrameError when the
    function, byte count or echo does not match, EncodingError when ``request_pdu`` is not a request.
    """
    try:
        req = parse_request(request_pdu)
    except ExceptionResponse as e:
        raise EncodingError("not a valid request PDU: %s" % e) from None
    resp = bytes(response_pdu)
    fc = req.function
    if fc <= 4:
        check_read_response(fc, req.count, resp)
        if fc <= 2:
            return _unpack_bits(resp[2:], req.count)
        return list(struct.unpack(">%dH" % req.count, resp[2:]))
    _check_function(fc, resp)
    expected = write_response(req)
    if resp != expected:
        raise FrameError("FC%02X response does not echo the request: expected %s, got %s"
                         % (fc, _hex(expected), _hex(resp)))
    if fc == 5 or fc == 6:
        return (req.address, (req.values or [0])[0])
    return (req.address, req.count)


def _check_function(fc: int, resp: bytes) -> None:
    """FrameError unless ``resp`` is a response of function ``fc``; ExceptionResponse for its exception."""
    if not resp:
        raise FrameError("FC%02X: empty response PDU" % fc)
    if resp[0] != fc:
        if resp[0] == fc | 0x80:
            if len(resp) != 2:
                raise FrameError("FC%02X exception response must be 2 bytes: %s" % (fc, _hex(resp)))
            raise ExceptionResponse(fc, resp[1])
        raise FrameError("expected function %02X in response, got %02X: %s" % (fc, resp[0], _hex(resp)))


def check_read_response(function: int, count: int, resp: bytes) -> None:
    """Check that ``resp`` answers a read of ``count`` bits (FC 1/2) or registers (FC 3/4): nothing, or
    ExceptionResponse for an exception PDU, FrameError for another function or a wrong byte count.
    What ``parse_response`` checks of a read, without parsing the request again (a planned read)."""
    nbytes = (count + 7) // 8 if function <= 2 else 2 * count
    if len(resp) == 2 + nbytes and resp[0] == function and resp[1] == nbytes:
        return  # the usual reply
    _check_function(function, resp)
    if len(resp) < 2 or resp[1] != nbytes or len(resp) != 2 + nbytes:
        raise FrameError("FC%02X response for %d items: expected byte count %d (%d bytes), got: %s"
                         % (function, count, nbytes, 2 + nbytes, _hex(resp)))


# ---------------------------------------------------------------- ADUs

def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """RTU ADU: unit, PDU, CRC low byte, CRC high byte. Unit 0 (broadcast) .. 247."""
    _check("unit", unit, 0, MAX_UNIT)
    _check("PDU length", len(pdu), 1, MAX_PDU)
    body = bytes((unit,)) + bytes(pdu)
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def rtu_parse(adu: bytes) -> tuple:
    """Split an RTU ADU into (unit, pdu) after checking its length, unit and CRC."""
    adu = bytes(adu)
    if len(adu) < 4 or len(adu) > MAX_RTU_ADU:
        raise FrameError("RTU frame must be 4..256 bytes, got %d: %s" % (len(adu), _hex(adu)))
    if adu[0] > MAX_UNIT:
        raise FrameError("RTU unit %d outside 0..247: %s" % (adu[0], _hex(adu)))
    want = crc16(adu[:-2])
    got = adu[-2] | (adu[-1] << 8)
    if want != got:
        raise CrcError("RTU CRC mismatch: expected %02x%02x, got %02x%02x in %s"
                       % (want & 0xFF, want >> 8, got & 0xFF, got >> 8, _hex(adu)))
    return adu[0], adu[1:-2]


def tcp_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    """Modbus TCP ADU: MBAP header (transaction, protocol 0, length, unit 0..255) then the PDU."""
    _check("transaction", transaction, 0, 0xFFFF)
    _check("unit", unit, 0, 0xFF)
    _check("PDU length", len(pdu), 1, MAX_PDU)
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + bytes(pdu)


def tcp_adu_length(header: bytes) -> int:
    """Total ADU length announced by the first 6+ bytes of an MBAP header (for stream reassembly)."""
    header = bytes(header)
    if len(header) < 6:
        raise FrameError("MBAP header needs 6 bytes, got %d: %s" % (len(header), _hex(header)))
    proto, length = struct.unpack(">HH", header[2:6])
    if proto != 0:
        raise FrameError("MBAP protocol id must be 0, got %d: %s" % (proto, _hex(header[:6])))
    if length < 2 or length > MAX_PDU + 1:
        raise FrameError("MBAP length %d outside 2..254: %s" % (length, _hex(header[:6])))
    return 6 + length


def tcp_parse(adu: bytes) -> tuple:
    """Split a Modbus TCP ADU into (transaction, unit, pdu), checking the MBAP header."""
    adu = bytes(adu)
    if len(adu) < 8:
        raise FrameError("TCP ADU must be at least 8 bytes, got %d: %s" % (len(adu), _hex(adu)))
    total = tcp_adu_length(adu)
    if total != len(adu):
        raise FrameError("MBAP length says %d bytes, got %d: %s" % (total, len(adu), _hex(adu)))
    return (adu[0] << 8) | adu[1], adu[6], adu[7:]


# ---------------------------------------------------------------- timing

def frame_time(nbytes: int, baud: int, bits_per_char: int = 11) -> float:
    """Seconds on the wire for ``nbytes`` characters of ``bits_per_char`` bits at ``baud``."""
    return nbytes * bits_per_char / baud


def t35(baud: int, bits: int = 11) -> float:
    """Inter-frame silence t3.5 in seconds: 3.5 characters, or 1.75 ms above 19200 baud."""
    return 0.00175 if baud > 19200 else 3.5 * bits / baud


def t15(baud: int, bits: int = 11) -> float:
    """Inter-character timeout t1.5 in seconds: 1.5 characters, or 0.75 ms above 19200 baud."""
    return 0.00075 if baud > 19200 else 1.5 * bits / baud


# ---------------------------------------------------------------- RTU stream reader

MAX_ERRORS = const(64)


class RtuFrameReader:
    """Reassemble RTU frames from bytes arriving in arbitrary chunks.

    The frame length is inferred from the function code (and byte count) of the expected side;
    a CRC failure or impossible header (unit above 247, unit 0 in a response, unknown function,
    impossible byte count) is recorded in ``errors`` and the reader resynchronises by dropping one
    byte. Noise that looks like the header of a long frame holds the bytes behind it until the frame
    would be complete or ``reset()`` is called on a t3.5 silence, which then returns any good frame
    found behind it. ``errors`` keeps the last MAX_ERRORS entries; ``error_count`` counts all.
    """

    def __init__(self, expect: str = "response") -> None:
        if expect not in ("response", "request"):
            raise EncodingError("expect must be 'response' or 'request', got %r" % (expect,))
        self.expect = expect
        self.errors: list = []
        self.error_count = 0
        self._buf = bytearray()
        #: how long the reply to the request last sent will be when it is good (`expect_reply`); 0 unknown
        self.reply_size = 0

    def expect_reply(self, request: bytes) -> None:
        """Note the size of a good reply to `request` (an RTU frame): a read of n coils or inputs
        (5 + ceil(n/8) bytes), of n registers (5 + 2n), a write (8). A link on a slow line then waits
        until the whole reply can have come before it first reads, instead of waking for its first
        byte; 0 (unknown) for anything else. An exception reply is shorter: it is read that much later."""
        size = 0
        if len(request) == 8 and self.expect == "response":
            fc = request[1]
            count = (request[4] << 8) | request[5]
            if fc in (1, 2) and 1 <= count <= 2000:
                size = 5 + (count + 7) // 8
            elif fc in (3, 4) and 1 <= count <= 125:
                size = 5 + 2 * count
            elif fc in (5, 6):
                size = 8
        elif len(request) > 8 and self.expect == "response" and request[1] in (15, 16):
            size = 8
        self.reply_size = size

    @property
    def pending(self) -> int:
        """Bytes buffered towards a frame not yet complete."""
        return len(self._buf)

    def missing(self) -> int:
        """Bytes still to come, at the least, before the frame at the head of the buffer is complete: its
        length less what is buffered once the header tells the length, before that what the shortest
        frame would still need (5 bytes for a response, 8 for a request); 0 when nothing is buffered.
        A link on a slow line waits for that many characters in one go instead of waking for every
        byte the port hands on; it is never more than will come, so no wait outlasts the frame."""
        buf = self._buf
        if not buf:
            return 0
        try:
            n = self._length(buf, 0)
        except FrameError:
            return 0
        if n == 0:
            n = 5 if self.expect == "response" else 8
        return n - len(buf) if n > len(buf) else 0

    def _error(self, err: ProtocolError) -> None:
        self.error_count += 1
        if len(self.errors) >= MAX_ERRORS:
            self.errors.pop(0)
        self.errors.append(err)

    def take_errors(self) -> list:
        """Return and clear the errors recorded since the last call."""
        errors = self.errors
        self.errors = []
        return errors

    def _length(self, buf: bytes | bytearray, i: int) -> int:
        """Length of the frame at ``buf[i]``; 0 if more bytes are needed; FrameError if impossible."""
        n = len(buf) - i
        if n < 2:
            return 0
        unit, fc = buf[i], buf[i + 1]
        if unit > MAX_UNIT:
            raise FrameError("unit %d outside 0..247" % unit)
        if self.expect == "response":
            if unit == 0:
                raise FrameError("unit 0 is broadcast, never answered")
            if fc & 0x80:
                if (fc & 0x7F) not in _FUNCTIONS:
                    raise FrameError("exception for unsupported function %02X" % (fc & 0x7F))
                return 5
            if fc not in _FUNCTIONS:
                raise FrameError("unsupported function %02X" % fc)
            if fc >= 5:
                return 8
            if n < 3:
                return 0
            count = buf[i + 2]
            if count == 0 or count > 250 or (fc >= 3 and count & 1):
                raise FrameError("impossible byte count %d for function %02X" % (count, fc))
            return 5 + count
        if fc not in _FUNCTIONS:
            raise FrameError("unsupported function %02X" % fc)
        if fc <= 6:
            return 8
        if n < 7:
            return 0
        count = (buf[i + 4] << 8) | buf[i + 5]
        nbytes = buf[i + 6]
        want = (count + 7) // 8 if fc == 15 else 2 * count
        limit = MAX_WRITE_BITS if fc == 15 else MAX_WRITE_REGISTERS
        if count < 1 or count > limit or nbytes != want:
            raise FrameError("impossible quantity %d / byte count %d for function %02X" % (count, nbytes, fc))
        return 9 + nbytes

    def _step(self) -> tuple | None:
        """Take one frame off the buffer, recording what is dropped; None when more bytes are needed."""
        buf = self._buf
        i = 0
        found = None
        while i < len(buf):
            try:
                n = self._length(buf, i)
            except FrameError as e:
                self._error(FrameError("%s (expected a %s header), dropped %02x from %s"
                                       % (e, self.expect, buf[i], _hex(buf[i:i + 8]))))
                i += 1
                continue
            if n == 0 or i + n > len(buf):
                break
            frame = bytes(buf[i:i + n])
            want = crc16(frame[:-2])
            if frame[-2] != want & 0xFF or frame[-1] != want >> 8:
                self._error(CrcError("%s CRC mismatch: expected %02x%02x, got %02x%02x in %s"
                                     % (self.expect, want & 0xFF, want >> 8, frame[-2], frame[-1],
                                        _hex(frame))))
                i += 1
                continue
            found = (frame[0], frame[1:-2])
            i += n
            break
        if i:
            self._buf = buf[i:]  # no del on MicroPython bytearrays: keep the tail
        return found

    def _frame_at(self, i: int) -> int:
        """Length of a complete frame with a good CRC at offset ``i`` of the buffer, else 0."""
        buf = self._buf
        try:
            n = self._length(buf, i)
        except FrameError:
            return 0
        if n == 0 or i + n > len(buf) or crc16(bytes(buf[i:i + n])) != 0:
            return 0
        return n

    def feed(self, chunk: bytes) -> list:
        """Add received bytes; return the (unit, pdu) frames they complete, in order."""
        if not self._buf and len(chunk) >= 4:  # the usual case: one whole frame in one chunk
            try:
                n = self._length(chunk, 0)
            except FrameError:
                n = 0
            if n == len(chunk) and crc16(chunk) == 0:  # a good CRC leaves a zero remainder
                return [(chunk[0], bytes(chunk[1:n - 2]))]
        self._buf.extend(chunk)
        frames: list = []
        while True:
            frame = self._step()
            if frame is None:
                return frames
            frames.append(frame)

    def reset(self) -> list:
        """The line was silent for t3.5: drop the partial frame (recorded as one FrameError).

        Returns any complete frames found behind leading noise in the buffer (usually none).
        """
        buf = self._buf
        frames: list = []
        start = i = 0
        while i < len(buf):
            n = self._frame_at(i)
            if n == 0:
                i += 1
                continue
            if i > start:
                self._error(FrameError("%d bytes of noise before a frame, dropped: %s"
                                       % (i - start, _hex(buf[start:i]))))
            frames.append((buf[i], bytes(buf[i + 1:i + n - 2])))
            i += n
            start = i
        if start < len(buf):
            self._error(FrameError("incomplete %s dropped after silence (%d bytes): %s"
                                   % (self.expect, len(buf) - start, _hex(buf[start:]))))
        self._buf = bytearray()
        return frames


class MbapFrameReader:
    """Stream reassembly of Modbus TCP ADUs -> (transaction, unit, pdu) tuples."""

    def __init__(self) -> None:
        self._buf = b""
        self.errors: list = []

    def feed(self, chunk: bytes) -> list:
        buf = self._buf + bytes(chunk)
        frames = []
        while len(buf) >= 6:
            try:
                total = tcp_adu_length(buf[:6])
            except FrameError as exc:
                self.errors.append(exc)
                buf = b""  # a byte stream with a broken header cannot resynchronise
                break
            if len(buf) < total:
                break
            adu = buf[:total]
            buf = buf[total:]
            try:
                frames.append(tcp_parse(adu))
            except FrameError as exc:
                self.errors.append(exc)
        self._buf = buf
        return frames

    def take_errors(self) -> list:
        errors = self.errors
        self.errors = []
        return errors

    def reset(self) -> list:
        if self._buf:
            self.errors.append(FrameError("incomplete MBAP frame: %s" % _hex(self._buf)))
            self._buf = b""
        return []
