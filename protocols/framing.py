"""What every incremental frame reader of the 0x68-framed meter protocols shares.

A reader is fed bytes as a UART delivers them; it keeps a partial frame, counts line noise, and
records what it discarded in ``errors`` (taken by the caller with ``take_errors()``). Subclasses say
only how long a frame that starts at a 0x68 byte is as its header declares it (``_declared``; one rule
serves finding frames, ``_frame_end``, and telling a link how much is still to come, ``missing``) and
how to parse it (``_parse``).
"""

import binascii

from protocols.errors import CrcError, EncodingError, FrameError, ProtocolError


def hex_upper(data: bytes) -> str:
    """Upper-case hex without spaces, as addresses and DIs are printed on meters."""
    return binascii.hexlify(bytes(data)).decode().upper()


def reversed_bytes(data: bytes) -> bytes:
    """The bytes in reverse order (the wire sends the low byte first); MicroPython has no [::-1] on all
    ports' bytes, so this is spelled out."""
    n = len(data)
    out = bytearray(n)
    for i in range(n):
        out[i] = data[n - 1 - i]
    return bytes(out)


NEED_MORE = 0  # _frame_end: the frame is not complete yet
NOT_A_FRAME = -1  # _frame_end: this 0x68 is noise


def bcd_address(address: str, size: int) -> bytes:
    """A meter address as printed (up to ``2 * size`` digits, zero-padded; a byte may be "AA", the
    wildcard) -> ``size`` wire bytes, A0 first: the rule of DL/T 645 (6 bytes) and CJ/T 188 (7 bytes)."""
    digits = 2 * size
    if not isinstance(address, str) or not 0 < len(address) <= digits:
        raise EncodingError("meter address must be 1..%d digits, got %r" % (digits, address))
    s = ("0" * (digits - len(address)) + address).upper()
    out = bytearray(size)
    for i in range(size):
        pair = s[digits - 2 - 2 * i:digits - 2 * i]
        if pair == "AA":
            out[i] = 0xAA
        elif "0" <= pair[0] <= "9" and "0" <= pair[1] <= "9":
            out[i] = int(pair[0]) * 16 + int(pair[1])
        else:
            raise EncodingError("meter address %s: %r is neither two digits nor AA" % (address, pair))
    return bytes(out)


class SumFrame:
    """The layout of a frame ``[FE..] 68 <head> L DATA CS 16`` whose CS is the byte sum from the 68
    through DATA (DL/T 645, CJ/T 188): ``head`` bytes from the 68 through L, the meter address at
    ``address_at`` (``address_size`` bytes, A0 first), ``marks`` fixed bytes of the header as
    (offset, value) pairs (DL/T 645's second 68). One description serves the incremental reader
    (``declared``), the parser (``check``) and the address (``address``, ``printed``)."""

    def __init__(self, name: str, head: int, address_at: int, address_size: int, marks: tuple = ()) -> None:
        self.name = name
        self.head = head
        self.least = head + 2  # the shortest frame: no DATA, then CS and 16
        self.address_at = address_at
        self.address_size = address_size
        self.marks = marks

    def declared(self, buf: bytearray, pos: int, n: int) -> int:
        """The length of the frame begun at ``buf[pos]`` (a 0x68) as its L byte says, with ``n`` bytes
        buffered; NEED_MORE until the header is in, NOT_A_FRAME when a fixed byte is wrong."""
        if n - pos < self.head:
            return NEED_MORE
        for at, value in self.marks:
            if buf[pos + at] != value:
                return NOT_A_FRAME
        return self.least + buf[pos + self.head - 1]

    def check(self, buf: bytes) -> tuple:
        """(where the 68 is, the frame's end, the printed address) of exactly one frame in ``buf``
        (leading FE bytes allowed). FrameError / CrcError naming the meter on any defect."""
        name = self.name
        n = len(buf)
        i = 0
        while i < n and buf[i] == 0xFE:
            i += 1
        if n - i < self.least:
            raise FrameError("%s frame too short: %d bytes after the FE preamble, need %d"
                             % (name, n - i, self.least))
        if buf[i] != 0x68:
            raise FrameError("%s frame must start with 68, got %02X" % (name, buf[i]))
        for at, value in self.marks:
            if buf[i + at] != value:
                raise FrameError("%s frame: %02X missing at offset %d, got %02X"
                                 % (name, value, at, buf[i + at]))
        length = buf[i + self.head - 1]
        end = i + self.least + length
        at = i + self.address_at
        address = self.printed(bytes(buf[at:at + self.address_size]))
        if n < end:
            raise FrameError("%s frame from %s truncated: L=%d needs %d bytes, got %d"
                             % (name, address, length, end - i, n - i))
        if n > end:
            raise FrameError("%s frame from %s: %d extra bytes after the end" % (name, address, n - end))
        if buf[end - 1] != 0x16:
            raise FrameError("%s frame from %s must end with 16, got %02X" % (name, address, buf[end - 1]))
        cs = sum(buf[i:end - 2]) & 0xFF
        if cs != buf[end - 2]:
            raise CrcError("%s checksum from %s: frame says %02X, computed %02X"
                           % (name, address, buf[end - 2], cs))
        return i, end, address

    def address(self, address: str) -> bytes:
        """The printed meter address -> its wire bytes (``bcd_address``)."""
        return bcd_address(address, self.address_size)

    def matches(self, requested: str, replied: str) -> bool:
        """True when the address ``replied`` fits ``requested``: an AA byte in the request (a wildcard
        or an abbreviated address) matches any byte. EncodingError when either is no address."""
        a = self.address(requested)
        b = self.address(replied)
        for i in range(self.address_size):
            if a[i] != 0xAA and a[i] != b[i]:
                return False
        return True

    def printed(self, raw: bytes) -> str:
        """The address's wire bytes (A0 first) -> the address as printed ("AA" stays "AA")."""
        if len(raw) != self.address_size:
            raise EncodingError("%s address needs %d bytes, got %d"
                                % (self.name, self.address_size, len(raw)))
        return hex_upper(reversed_bytes(raw))


class MeterFrameReader:
    """Base of the DL/T 645, CJ/T 188 and DL/T 698.45 readers: buffer, noise counting and error
    bookkeeping; a reader of sum-checked frames gives its ``layout`` (a SumFrame) and ``_parse``."""

    name = "meter"
    layout = None  # type: SumFrame | None

    def __init__(self) -> None:
        self._buf = bytearray()
        self._noise = 0
        self._lead = False  # a preamble (FE) came since the last frame: a frame follows
        self.errors = []  # type: list

    def _declared(self, buf: bytearray, pos: int, n: int) -> int:
        """The length of the frame that starts at ``buf[pos]`` (a 0x68) as its header declares it, with
        ``n`` bytes buffered; NEED_MORE while the header is not all in, NOT_A_FRAME when it cannot be one."""
        layout = self.layout
        if layout is None:
            raise NotImplementedError
        return layout.declared(buf, pos, n)

    def _frame_end(self, buf: bytearray, pos: int, n: int) -> int:
        """The end offset of a frame starting at ``pos``, NEED_MORE or NOT_A_FRAME."""
        size = self._declared(buf, pos, n)
        if size <= 0:
            return size
        end = pos + size
        return end if n >= end else NEED_MORE

    def _parse(self, frame: bytes) -> object:
        raise NotImplementedError

    #: the shortest frame, from its first 0x68: what a frame that has begun still needs, at the least,
    #: before its header tells its length
    min_frame = 12

    def _least(self, buf: bytearray, n: int) -> int:
        """What the frame begun at ``buf[0]`` has at the least while its header is not all in."""
        return self.min_frame

    def missing(self) -> int:
        """Bytes still to come, at the least, before the frame begun at the head of the buffer is
        complete: what its header says once it is in, before that what the shortest frame still needs
        (after a preamble too: a frame follows it); 0 when no frame has begun. A link on a slow
        line waits for that many characters in one go instead of waking for every byte or two the port
        hands on (agent/link/base.py `read_frame`); noise that looks like a header can make it wait
        longer, never past the reply's deadline, and the bytes are read and searched then."""
        buf = self._buf
        n = len(buf)
        if not n:
            return self.min_frame if self._lead else 0
        size = self._declared(buf, 0, n)
        if size == NEED_MORE:
            size = self._least(buf, n)
        elif size < 0:
            size = self.min_frame  # noise at the head: what a frame behind it needs at the least
        return size - n if size > n else 0

    def feed(self, chunk: bytes) -> list:
        """Append ``chunk``; return the frames completed by it, in order.

        FE preambles are skipped; other bytes before a frame are counted as noise; a candidate that
        does not parse is recorded in ``errors`` and the search resumes one byte later; a candidate that
        waits for more bytes gives way to a whole frame behind it (``_whole_after``).
        """
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
                else:
                    self._lead = True
                pos += 1
                continue
            end = self._frame_end(buf, pos, n)
            if end == NEED_MORE:
                later = self._whole_after(buf, pos, n)
                if later < 0:
                    break
                self._noise += later - pos  # the 0x68 at pos claimed more than came: noise, or a torn frame
                pos = later
                continue
            if end == NOT_A_FRAME:
                self._noise += 1
                pos += 1
                continue
            try:
                frames.append(self._parse(bytes(buf[pos:end])))
                self._lead = False
                self._flush_noise()
                pos = end
            except ProtocolError as e:
                self.errors.append(e)
                pos += 1
        self._keep(buf, pos)
        return frames

    def _whole_after(self, buf: bytearray, pos: int, n: int) -> int:
        """Where a later frame starts that is whole in the buffer and parses, while the one begun at
        ``pos`` still waits for bytes: a 0x68 in noise (or a torn frame) whose length claims more than
        comes must not hold a good frame behind it until a silence, which would drop both. -1 if none.

        Only a frame that passes every check of ``_parse`` (checksums, end byte) counts: a 0x68 in the
        data of a frame still arriving is taken for a frame only if the bytes after it make one, length,
        checksum and end byte (DL/T 645 also its second 0x68, DL/T 698.45 both CRCs), which a meter's
        readings do not carry."""
        for q in range(pos + 1, n - self.min_frame + 1):
            if buf[q] != 0x68:
                continue
            end = self._frame_end(buf, q, n)
            if end <= 0:
                continue
            try:
                self._parse(bytes(buf[q:end]))
            except ProtocolError:
                continue
            return q
        return -1

    def _keep(self, buf: bytearray, pos: int) -> None:
        """Keep the unparsed tail from ``pos``; report noise once nothing is pending."""
        self._buf = bytearray(buf[pos:])
        if not self._buf:
            self._flush_noise()

    def _flush_noise(self) -> None:
        if self._noise:
            self.errors.append(FrameError("%s: discarded %d bytes of line noise" % (self.name, self._noise)))
            self._noise = 0

    def take_errors(self) -> list:
        """Errors since the last call, oldest first."""
        errors = self.errors
        self.errors = []
        return errors

    def reset(self) -> None:
        """Drop a partial frame (after a silence); it is recorded as an error."""
        if self._buf:
            self.errors.append(
                FrameError("%s: dropped %d bytes of a partial frame" % (self.name, len(self._buf)))
            )
        self._buf = bytearray()
        self._noise = 0
        self._lead = False
