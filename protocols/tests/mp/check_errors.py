"""Error-tree and compat vectors in the shared dialect: one line per case, identical on CPython and
MicroPython. Run from the repository root: ``python protocols/tests/mp/check_errors.py``.
A mismatch prints ``FAIL <case> ...``.
"""

import sys

sys.path.insert(0, ".")

from protocols import compat, errors
from protocols.errors import (
    MODBUS_EXCEPTIONS,
    AbnormalReply,
    CborError,
    CrcError,
    EncodingError,
    ExceptionResponse,
    FrameError,
    ProtocolError,
    SenmlError,
)
from protocols.tests.mp.vectors import check, done

# The tree: every codec error is a ProtocolError; CrcError is a FrameError.
TREE = [
    ("FrameError", FrameError, ProtocolError),
    ("CrcError", CrcError, FrameError),
    ("EncodingError", EncodingError, ProtocolError),
    ("CborError", CborError, ProtocolError),
    ("SenmlError", SenmlError, ProtocolError),
    ("ExceptionResponse", ExceptionResponse, ProtocolError),
    ("AbnormalReply", AbnormalReply, ProtocolError),
]
for name, cls, parent in TREE:
    check("subclass %s" % name, issubclass(cls, parent), True)
check("root is Exception", issubclass(ProtocolError, Exception), True)
check("CrcError not EncodingError", issubclass(CrcError, EncodingError), False)

# Raising and catching through the root, message kept.
for name, cls, _parent in TREE[:5]:
    try:
        raise cls("bad %s" % name)
    except ProtocolError as e:
        check("catch %s" % name, str(e), "bad %s" % name)

# Modbus exception responses: code, meaning and message.
for code in (1, 2, 3, 4, 6, 11, 99):
    resp = ExceptionResponse(3, code)
    check(
        "modbus exc %d" % code,
        (resp.function, resp.code, resp.meaning, str(resp)),
        (
            3,
            code,
            MODBUS_EXCEPTIONS.get(code, "unknown exception"),
            "exception %02X (%s) for function 03" % (code, MODBUS_EXCEPTIONS.get(code, "unknown exception")),
        ),
    )
try:
    raise ExceptionResponse(16, 2)
except ProtocolError as e:
    check("modbus exc caught as root", isinstance(e, ExceptionResponse) and e.code, 2)

# Meter abnormal replies.
e2 = AbnormalReply(0x02, "no data requested")
check(
    "abnormal",
    (e2.code, e2.meaning, str(e2)),
    (2, "no data requested", "meter reported error 02: no data requested"),
)

# compat.const is the identity on CPython and folds on MicroPython: same value either way.
check("const int", compat.const(0x7F), 127)
check("const expr", compat.const(1 << 10), 1024)
check(
    "module names",
    sorted(
        n
        for n in ("errors", "compat")
        if n in (errors.__name__.split(".")[-1], compat.__name__.split(".")[-1])
    ),
    ["compat", "errors"],
)

done()
