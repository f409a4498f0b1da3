"""Reads prepared once and run per poll give exactly what the general path gives.

The hot path of a poll (protocols/modbus/device.py `prepare` / `decode_prepared`, protocols/senml.py
`encode` written record by record) must not change a value, a quality or a byte: each is checked here
against the general path it replaces (`parse_response` + `points.decode` + `scaled`; `cbor.dumps(pack)`)
on random plans and replies.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import cbor, modbus, points, senml
from protocols.errors import EncodingError, ExceptionResponse, FrameError
from protocols.modbus import device as mbdev

TYPES = [*points.TYPES, "bit0", "bit7", "bit15", "str1", "str3"]
# every way a scale can apply (device.py `_rule`): floats rounded (a float scale, offset or raw value),
# integers left whole, and the plain 1 and 0 (also as floats) that leave the raw value alone
SCALES = [(1, 0), (0.1, 0), (10, -5), (0.01, 1.5), (1, 3), (3600, 0), (360000, 0), (0.001, 0), (1.0, 0.0),
          (2, 0.5), (-1, 0), (0.1, -40), (1e-9, 0), (3600000, 0.0)]


def general(pdu: bytes, reply: bytes, specs: list) -> tuple:
    """Values and bad points the way a read decoded them before it was prepared."""
    got: list = [None] * len(specs)
    why: dict = {}

    def emit(i: int, value: object, bad: object) -> None:
        if bad is None:
            got[i] = value
        else:
            why[i] = bad

    mbdev.decode(pdu, modbus.parse_response(pdu, reply), specs, emit)
    return got, why


def prepared(frame: bytes, reply: bytes, specs: list) -> tuple:
    why: dict = {}

    def bad(i: int, text: str) -> None:
        why[i] = text

    return mbdev.decode_prepared(mbdev.prepare(1, None, frame, specs), reply, bad), why


@st.composite
def reads(draw: st.DrawFn) -> tuple:
    function = draw(st.sampled_from([1, 2, 3, 4]))
    count = draw(st.integers(1, 40 if function <= 2 else 20))
    specs = []
    for i in range(draw(st.integers(1, 6))):
        off = draw(st.integers(-1, count + 1))
        typ = draw(st.sampled_from(TYPES))
        order = draw(st.sampled_from(points.ORDERS))
        scale, offset = draw(st.sampled_from(SCALES))
        specs.append(["p%d" % i, off, typ, order, scale, offset])
    if function <= 2:
        data = modbus.read_response(function, draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    else:
        data = modbus.read_response(function, draw(st.lists(st.integers(0, 0xFFFF), min_size=count,
                                                            max_size=count)))
    return modbus.rtu_frame(1, modbus.read_request(function, 100, count)), data, specs


@settings(max_examples=400)
@given(reads())
def test_a_prepared_read_decodes_as_the_general_path(case: tuple) -> None:
    frame, reply, specs = case
    # repr: a NaN equals its twin, an int differs from the float of the same value
    assert repr(prepared(frame, reply, specs)) == repr(general(frame[1:-2], reply, specs))


def test_each_scale_is_applied_as_scaled_applies_it() -> None:
    """The per-field rule gives what `scaled` gives, value for value, for integer and float registers
    (one unpack of the whole reply, and field by field when a bit field is read too)."""
    for scale, offset in SCALES:
        for typ in ("u16", "s16", "u32", "s32", "f32", "u64", "f64"):
            count = points.register_count(typ)
            specs = [["a", 0, typ, "ABCD", scale, offset]]
            frame = modbus.rtu_frame(1, modbus.read_request(3, 0, count + 1))
            for registers in ([0] * count, [0xFFFF] * count, [0x4148, 0x1234, 0, 7][:count],
                              [0x3DCC, 0xCCCD, 0x3FB9, 0x999A][:count], [0x7FC0, 0, 0, 0][:count]):
                for extra in ([], [["bit", count, "bit3", "ABCD", 1, 0]]):  # whole reply / field by field
                    reply = modbus.read_response(3, [*registers, 9])
                    got = prepared(frame, reply, specs + extra)
                    assert repr(got) == repr(general(frame[1:-2], reply, specs + extra)), (scale, offset, typ)


def test_a_16_bit_register_times_a_power_of_ten_is_divided_exactly_as_scaled_rounds_it() -> None:
    """Every u16 and s16 value times 0.1, 0.01 ... 1e-9: raw / 10**k (DIVIDED) is, value for value and
    repr for repr, what `scaled` gives (raw * scale rounded to 9 decimals); wider registers, offsets and
    other scales keep the general rounding."""
    from protocols.scaling import scaled

    frame = modbus.rtu_frame(1, modbus.read_request(3, 0, 120))
    for k in range(1, 10):
        scale = float("1e-%d" % k)
        for typ in ("u16", "s16"):
            specs = [["p%d" % i, i, typ, "ABCD", scale, 0] for i in range(120)]
            step = mbdev.prepare(1, None, frame, specs)
            assert {f[3] for f in step[6]} == {mbdev.DIVIDED}
            for start in range(0, 0x10000, 120):
                registers = [(start + i) & 0xFFFF for i in range(120)]
                reply = modbus.read_response(3, registers)
                raws = [r - 0x10000 if typ == "s16" and r >= 0x8000 else r for r in registers]
                got = mbdev.decode_prepared(step, reply, None)
                assert repr(got) == repr([scaled(r, scale, 0) for r in raws]), (k, typ, start)
    others = [["a", 0, "u32", "ABCD", 0.1, 0], ["b", 2, "u16", "ABCD", 0.1, 1],
              ["c", 3, "u16", "ABCD", 0.2, 0], ["d", 4, "u16", "ABCD", 0.1, 0.0],
              ["e", 5, "f32", "ABCD", 0.1, 0]]
    step = mbdev.prepare(1, None, modbus.rtu_frame(1, modbus.read_request(3, 0, 7)), others)
    assert [f[3] for f in step[6]] == [mbdev.ROUNDED] * 5


def test_leading_numbers_are_read_in_one_unpack_and_the_bits_after_them_one_by_one() -> None:
    """A lamp's input registers: seven numbers, then three bits of its fault word (the last number)."""
    specs = [["voltage", 0, "u16", "ABCD", 0.1, 0], ["current", 1, "u16", "ABCD", 0.001, 0],
             ["power", 2, "u16", "ABCD", 0.1, 0], ["energy", 3, "u32", "ABCD", 3600, 0],
             ["hours", 5, "u32", "ABCD", 360, 0], ["temperature", 7, "s16", "ABCD", 0.1, 0],
             ["faults", 8, "u16", "ABCD", 1, 0], ["lamp", 8, "bit0", "ABCD", 1, 0],
             ["cable", 8, "bit1", "ABCD", 1, 0], ["hot", 8, "bit2", "ABCD", 1, 0]]
    frame = modbus.rtu_frame(1, modbus.read_request(4, 0, 9))
    step = mbdev.prepare(1, None, frame, specs)
    assert (step[7], step[9]) == (">HHHIIhH", 7)
    reply = modbus.read_response(4, [2301, 150, 345, 0, 1000, 0, 12, 0xFFF6, 0b101])
    want: tuple = ([230.1, 0.15, 34.5, 3600000, 4320, -1.0, 5, True, False, True], {})
    assert prepared(frame, reply, specs) == want == general(frame[1:-2], reply, specs)


def test_plain_numbers_of_one_byte_order_are_read_in_one_unpack() -> None:
    specs = [["a", 0, "u16", "ABCD", 1, 0], ["b", 2, "s32", "ABCD", 0.1, 0], ["c", 5, "f32", "ABCD", 1, 0]]
    frame = modbus.rtu_frame(1, modbus.read_request(3, 0, 7))
    step = mbdev.prepare(1, None, frame, specs)
    assert step[7] == ">H2xi2xf"  # the whole reply's struct format, the gaps skipped
    reply = modbus.read_response(3, [7, 0, 0xFFFF, 0xFFF6, 0, 0x4148, 0])
    assert prepared(frame, reply, specs) == ([7, -1.0, 12.5], {}) == general(frame[1:-2], reply, specs)


@pytest.mark.parametrize("reply, error", [
    (b"\x83\x02", ExceptionResponse), (b"\x83\x02\x00", FrameError), (b"\x04\x02\x00\x01", FrameError),
    (b"\x03\x04\x00\x01", FrameError), (b"\x03\x02\x00\x01\x00", FrameError), (b"", FrameError),
])
def test_a_wrong_reply_is_refused_as_the_general_path_refuses_it(reply: bytes, error: type) -> None:
    frame = modbus.rtu_frame(1, modbus.read_request(3, 0, 1))
    specs = [["a", 0, "u16", "ABCD", 1, 0]]
    with pytest.raises(error) as general_exc:
        general(frame[1:-2], reply, specs)
    with pytest.raises(error) as prepared_exc:
        prepared(frame, reply, specs)
    assert str(prepared_exc.value) == str(general_exc.value)


def test_only_reads_are_prepared() -> None:
    with pytest.raises(EncodingError, match="function 1-4"):
        mbdev.prepare(1, None, modbus.rtu_frame(1, modbus.write_register_request(0, 1)), [])


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=6).filter(
    lambda s: s[0].isalnum())
values = (st.booleans() | st.integers(min_value=-(2**64), max_value=2**64) | st.floats()
          | st.sampled_from([230.1, 0.7, 49.98, -0.0, 1e300, 5e-324]) | st.text(max_size=6)
          | st.binary(max_size=6) | st.builds(bytearray, st.binary(max_size=3)))
times = st.sampled_from([1710498030, 1710498030.0, 1710498030.5, 1276020076.001, 0.25, -3])


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(["m01", "m02", "v1"]), names, values, times), max_size=20),
       st.sampled_from(["gw-01:", "", "urn:dev:mac:0024befffe804ff1:"]))
def test_encode_writes_exactly_the_deterministic_cbor_of_the_pack(readings: list, base: str) -> None:
    assert senml.encode(readings, base) == cbor.dumps(senml.pack(readings, base))
    shared = 1710498031.25  # a poll's readings share one time object
    polled = [(d, p, v, shared) for d, p, v, _ in readings]
    assert senml.encode(polled, base) == cbor.dumps(senml.pack(polled, base))


def test_encode_refuses_what_pack_refuses() -> None:
    for readings in ([("m01", "a", 1, float("nan"))], [("m01", "a", 1, 0), ("m01", "a", 1, float("inf"))],
                     [("m01", "a b", 1, 0)], [("m01", "a", object(), 0)], [("m01", "a", 1)]):
        with pytest.raises(senml.SenmlError) as packed:
            senml.pack(readings, "gw:")
        with pytest.raises(senml.SenmlError) as encoded:
            senml.encode(readings, "gw:")
        assert str(encoded.value) == str(packed.value)
