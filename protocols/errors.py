"""One error tree for every codec. Decoders raise only these, whatever bytes they are fed."""


class ProtocolError(Exception):
    """Root of every error a codec raises on bad input."""

    def __init__(self, *args: object) -> None:
        # MicroPython has no Exception.__init__ attribute, so the subclasses' explicit
        # ProtocolError.__init__(self, ...) calls need this Python-level one.
        super().__init__(*args)


class FrameError(ProtocolError):
    """Malformed frame: bad start or end byte, wrong length, truncated, garbage."""


class CrcError(FrameError):
    """A Modbus CRC or a DL/T 645 / CJ/T 188 checksum that does not match."""


class EncodingError(ProtocolError):
    """A value that cannot be encoded or decoded (out of range, not BCD, wrong type)."""


class CborError(ProtocolError):
    """Bytes that are not well-formed CBOR, or a value CBOR cannot carry."""


class SenmlError(ProtocolError):
    """A SenML pack that breaks RFC 8428 (bad name, unknown version, missing value)."""


MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ExceptionResponse(ProtocolError):
    """A Modbus exception response: the device understood the request and refused it."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        self.meaning = MODBUS_EXCEPTIONS.get(code, "unknown exception")
        ProtocolError.__init__(
            self, "exception %02X (%s) for function %02X" % (code, self.meaning, function)
        )


class AbnormalReply(ProtocolError):
    """A DL/T 645 or CJ/T 188 meter answered with its error flag set."""

    def __init__(self, code: int, meaning: str) -> None:
        self.code = code
        self.meaning = meaning
        ProtocolError.__init__(self, "meter reported error %02X: %s" % (code, meaning))


class WriteRefused(Exception):
    """A command that may not or cannot be carried out; nothing was sent on the bus. Its text is the
    ack's error, the same on the agent and the board."""


def error_kind(exc: BaseException) -> str:
    """The counter a failed transaction is booked under (agent health and board health alike):
    timeout, crc, frame, exception (Modbus), abnormal (DL/T 645 / CJ/T 188 error reply), decode, other."""
    if isinstance(exc, NoReply):
        return "timeout"
    if isinstance(exc, CrcError):
        return "crc"
    if isinstance(exc, FrameError):
        return "frame"
    if isinstance(exc, ExceptionResponse):
        return "exception"
    if isinstance(exc, AbnormalReply):
        return "abnormal"
    if isinstance(exc, EncodingError):
        return "decode"
    return "other"


class NoReply(ProtocolError):
    """No reply within the response timeout (the board's transport; the agent's link raises its own
    LinkTimeout). Booked as a timeout."""


def no_action(device: str, protocol: str, name: object) -> WriteRefused:
    """The refusal of an action a protocol cannot carry out."""
    what = '"%s"' % name if type(name) is str else repr(name)
    return WriteRefused("device %s: %s devices cannot carry out action %s" % (device, protocol, what))
