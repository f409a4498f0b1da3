"""Times recorded before a gateway's clock was set, and mending them once it is.

A board without a battery clock stamps what it records before NTP sets its clock from `UNSET_BASE`
(2000-01-01: firmware_py/clock.py), so a consumer can tell such a time from a real one. When the clock
is set later in the same boot the board knows by how much to move those stamps, and `mend` moves them
in the encoded record itself, just before it is published: the `bt` (-3) of each record of a SenML
pack (an array of maps) and the `time` of an alarm or event map. Times from 1970 to 2106 are 4-byte
unsigned integers in CBOR (head 0x1a), before and after the move, so the record keeps its length and
nothing is allocated; a time encoded otherwise is left alone.
"""

import struct

from protocols import cbor
from protocols.errors import CborError

UNSET_BASE = 946684800  # 2000-01-01T00:00:00Z
_TIME = b"time"


def _is_time_key(buf, pos: int, end: int) -> bool:
    if buf[pos] == 0x22:  # -3: SenML bt
        return True
    return buf[pos] == 0x64 and pos + 5 <= end and bytes(buf[pos + 1 : pos + 5]) == _TIME


def _mend_map(buf, pos: int, end: int, low: int, high: int, delta: int) -> tuple:
    major, pairs, pos = cbor.head(buf, pos, end)
    if major != 5:
        raise CborError("expected a map at offset %d" % pos)
    mended = 0
    for _ in range(pairs):
        timed = _is_time_key(buf, pos, end)
        pos = cbor.skip(buf, pos, end)
        if timed and pos + 5 <= end and buf[pos] == 0x1A:
            t = struct.unpack_from(">I", buf, pos + 1)[0]
            if low <= t < high:
                struct.pack_into(">I", buf, pos + 1, t + delta)
                mended += 1
        pos = cbor.skip(buf, pos, end)
    return mended, pos


def mend(buf, start: int, end: int, low: int, high: int, delta: int) -> int:
    """Add `delta` to every time in [`low`, `high`) of the SenML pack, alarm or event map encoded in
    `buf[start:end]` (a bytearray or a writable memoryview), in place; how many it moved. `low` +
    `delta` .. `high` + `delta` must stay below 2**32. CborError when the record is not one of those."""
    if low + delta < 0 or high + delta > 0x100000000:
        raise ValueError("times moved by %d would leave the 4-byte range" % delta)
    major, count, pos = cbor.head(buf, start, end)
    if major == 5:
        mended, pos = _mend_map(buf, start, end, low, high, delta)
    elif major == 4:
        mended = 0
        for _ in range(count):
            n, pos = _mend_map(buf, pos, end, low, high, delta)
            mended += n
    else:
        raise CborError("expected a SenML pack or a map at offset %d" % start)
    if pos != end:
        raise CborError("%d bytes after the record" % (end - pos))
    return mended
