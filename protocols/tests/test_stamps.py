"""Times from an unset clock, mended in the encoded record (protocols/stamps.py), and the CBOR head
and skip it walks with (protocols/cbor.py): checked against cbor2, an independent codec."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import alarms, cbor, senml, stamps
from protocols.commands import CLOCK_SET_AFTER
from protocols.errors import CborError

UNSET = stamps.UNSET_BASE
SHIFT = 1_796_000_000 - UNSET  # what NTP moved the clock by, from the first unset stamp


def resolved(data: bytes) -> list:
    """(name, value, time) of every record, by SenML's own resolution (RFC 8428, bn and bt carried)."""
    return [(r["n"], r["v"], r["t"]) for r in senml.resolve(cbor2.loads(data))]


def pack(times: list) -> bytearray:
    readings = [("m%d" % (i % 3), "p", 1.5 * i, t) for i, t in enumerate(times)]
    return bytearray(senml.encode(readings, "gw:"))


def test_a_pack_of_unset_times_is_moved_in_place() -> None:
    times = [UNSET + 0, UNSET + 0, UNSET + 7, UNSET + 7, UNSET + 3600]
    buf = pack(times)
    before = resolved(bytes(buf))
    size = len(buf)
    assert stamps.mend(buf, 0, len(buf), UNSET, CLOCK_SET_AFTER, SHIFT) == 3  # one bt per change of time
    assert len(buf) == size
    after = resolved(bytes(buf))
    assert [(n, v) for n, v, _ in after] == [(n, v) for n, v, _ in before]  # names and values kept
    assert [t for _, _, t in after] == [t + SHIFT for t in times]


def test_real_times_and_times_out_of_range_are_left_alone() -> None:
    times = [UNSET + 5, 1_796_000_100, 1_796_000_100]
    buf = pack(times)
    assert stamps.mend(buf, 0, len(buf), UNSET, CLOCK_SET_AFTER, SHIFT) == 1
    assert [t for _, _, t in resolved(bytes(buf))] == [UNSET + 5 + SHIFT, 1_796_000_100, 1_796_000_100]
    small = bytearray(senml.encode([("m", "p", 1, 5)], "gw:"))  # a time in one byte: not a stamp
    assert stamps.mend(small, 0, len(small), 0, CLOCK_SET_AFTER, SHIFT) == 0
    assert cbor2.loads(bytes(small))[0][-3] == 5


def test_an_alarm_map_and_a_record_inside_a_larger_buffer() -> None:
    alarm = cbor.dumps(alarms.alarm("e1", "voltage_a", "quality", "not_available", True, UNSET + 42, 65537))
    buf = bytearray(b"\x81\x01\x00") + bytearray(alarm) + bytearray(b"tail")
    assert stamps.mend(buf, 3, 3 + len(alarm), UNSET, CLOCK_SET_AFTER, SHIFT) == 1
    got = cbor2.loads(bytes(buf[3 : 3 + len(alarm)]))
    assert got["time"] == UNSET + 42 + SHIFT and got["n"] == 65537 and got["value"] == "not_available"
    assert buf[:3] == b"\x81\x01\x00" and buf[-4:] == b"tail"


@pytest.mark.parametrize("data, why", [
    (b"\x01", "a number"),
    (b"\x81\x01", "an array of a number"),
    (bytes(pack([UNSET])) + b"\x00", "a byte after the pack"),
    (bytes(pack([UNSET]))[:-1], "a pack cut short"),
    (b"\xa1\x22\x1a\x38\x6d", "a time cut short"),
    (b"\x9f\xff", "an indefinite array"),
])
def test_records_that_are_not_a_pack_or_a_map_are_refused(data: bytes, why: str) -> None:
    buf = bytearray(data)
    with pytest.raises(CborError):
        stamps.mend(buf, 0, len(buf), UNSET, CLOCK_SET_AFTER, SHIFT)


def test_a_shift_beyond_four_bytes_is_refused() -> None:
    buf = pack([UNSET])
    with pytest.raises(ValueError):
        stamps.mend(buf, 0, len(buf), UNSET, CLOCK_SET_AFTER, 0xFFFFFFFF)


items = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.text(max_size=30)
    | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=25,
)


@given(items)
def test_skip_ends_where_cbor2_says_the_item_ends(value) -> None:
    data = cbor2.dumps(value) + b"\xf6"  # a second item after it
    first = len(cbor2.dumps(value))
    assert cbor.skip(data, 0, len(data)) == first
    assert cbor.skip(data, first, len(data)) == len(data)
    with pytest.raises(CborError):
        cbor.skip(data, 0, first - 1)  # cut by one byte


@given(st.integers(0, 2**64 - 1))
def test_head_reads_the_argument_cbor2_wrote(n: int) -> None:
    data = cbor2.dumps(n)
    assert cbor.head(data, 0, len(data)) == (0, n, len(data))
