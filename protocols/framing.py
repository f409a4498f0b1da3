"""What every incremental frame reader of the 0x68-framed meter protocols shares.

A reader is fed bytes as a UART delivers them; it keeps a partial frame, counts line noise, and
records what it discarded in ``errors`` (taken by the caller with ``take_errors()``). Subclasses say
only how long a frame that starts at a 0x68 byte is as its header declares it (``_declared``; one rule
serves finding frames, ``_frame_end``, and telling a link how much is still to come, ``missing``) and
how to parse it (``_parse``).
"""

import binascii

from protocols.errors import FrameError, ProtocolError


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


class MeterFrameReader:
    """Base of the DL/T 645 and CJ/T 188 readers: buffer, noise counting and error bookkeeping."""

    name = "meter"

    def __init__(self) -> None:
        self._buf = bytearray()
        self._noise = 0
        self._lead = False  # a preamble (FE) came since the last frame: a frame follows
        self.errors = []  # type: list

    def _declared(self, buf: bytearray, pos: int, n: int) -> int:
        """The length of the frame that starts at ``buf[pos]`` (a 0x68) as its header declares it, with
        ``n`` bytes buffered; NEED_MORE while the header is not all in, NOT_A_FRAME when it cannot be one."""
        raise NotImplementedError

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
