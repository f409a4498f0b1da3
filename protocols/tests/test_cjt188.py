"""CJ/T 188-2004 codec: protocol-facts §2.10 vectors, both DI byte orders, ST maps, units, readers."""

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import cjt188 as c
from protocols.errors import AbnormalReply, CrcError, EncodingError, FrameError

A = "00000000123456"
FIELDS = {"flow_total": 123.45, "flow_settlement": 100.0, "time": (2024, 3, 15, 10, 20, 30)}


def h(text):
    return binascii.unhexlify(text.replace(" ", ""))


VECTORS = [
    (
        "5 read 901F SER 01",
        "FE FE FE FE 68 10 56 34 12 00 00 00 00 01 03 1F 90 01 C8 16",
        lambda: c.read_request(c.METER_COLD_WATER, A, ser=1),
    ),
    (
        "6 reply 123.45 m3",
        "68 10 56 34 12 00 00 00 00 81 16 1F 90 01 45 23 01 00 2C 00 00 01 00 2C 30 20 10 15 03 "
        "24 20 00 00 D9 16",
        lambda: c.encode_901f_reply(0x10, A, FIELDS, ser=1),
    ),
    (
        "7 abnormal ST 07",
        "68 10 56 34 12 00 00 00 00 C1 03 01 07 00 E0 16",
        lambda: c.abnormal_reply(0x10, A, 0x01, 1, 0x07),
    ),
]


@pytest.mark.parametrize("name,text,build", VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_build(name, text, build):
    assert build() == h(text)


@pytest.mark.parametrize("name,text,build", VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_parse_and_rebuild(name, text, build):
    raw = h(text)
    f = c.parse_frame(raw)
    preamble = len(raw) - len(raw.lstrip(b"\xfe"))
    assert c.build_frame(f.meter_type, f.address, f.control, f.data, preamble) == raw
    assert f.address == A and f.meter_type == 0x10


def test_901f_reply_fields():
    f = c.parse_frame(h(VECTORS[1][1]))
    r = c.parse_901f(f, ser=1)
    assert r["flow_total"] == 123.45 and r["flow_settlement"] == 100.0
    assert r["flow_total_unit"] == 0x2C and r["flow_settlement_unit"] == 0x2C
    assert r["time"] == (2024, 3, 15, 10, 20, 30)
    assert r["valve"] == "open" and r["battery_low"] is False and r["quality"] == "good"
    assert c.encode_901f_reply(0x10, A, r, ser=1) == h(VECTORS[1][1])


def test_hi_first_variant_same_checksum():
    lo = c.read_request(0x10, A, ser=1)
    hi = c.read_request(0x10, A, ser=1, di_order="hi_first")
    assert hi[-2] == lo[-2] == 0xC8 and hi[15:17] == h("901F") and lo[15:17] == h("1F90")
    assert c.parse_request(c.parse_frame(hi)) == (0x901F, 1, b"", "hi_first")
    assert c.parse_request(c.parse_frame(lo)) == (0x901F, 1, b"", "lo_first")


@pytest.mark.parametrize("order", ["lo_first", "hi_first"])
def test_replies_accepted_in_both_orders(order):
    raw = c.encode_901f_reply(0x10, A, FIELDS, ser=5, di_order=order)
    assert c.parse_901f(c.parse_frame(raw), ser=5)["flow_total"] == 123.45


def test_echo_checks():
    raw = c.encode_901f_reply(0x10, A, FIELDS, ser=5)
    with pytest.raises(FrameError, match="asked SER 06"):
        c.parse_901f(c.parse_frame(raw), ser=6)
    other = c.read_address_reply(0x10, A, ser=5)
    with pytest.raises(FrameError, match="expected reply C=81"):
        c.parse_901f(c.parse_frame(other))
    wrong_di = c.build_frame(0x10, A, 0x81, h("2090 05") + b"\x00" * 19)
    with pytest.raises(FrameError, match="asked DI 901F, reply echoes 2090"):
        c.parse_901f(c.parse_frame(wrong_di))
    short = c.build_frame(0x10, A, 0x81, h("1F90 05 00"))
    with pytest.raises(FrameError, match="expected 19"):
        c.parse_901f(c.parse_frame(short))


def test_abnormal_reply_decoded_by_status_map():
    f = c.parse_frame(h(VECTORS[2][1]))
    with pytest.raises(AbnormalReply) as e:
        c.parse_901f(f)
    assert e.value.code == 7 and e.value.meaning == "valve abnormal, battery low (ST 07 00)"
    assert A in str(e.value)
    msb = {
        "valve_mask": 0xC0,
        "valve_shift": 6,
        "valve_open": 0,
        "valve_closed": 1,
        "valve_abnormal": 3,
        "battery_mask": 0x20,
    }
    with pytest.raises(AbnormalReply) as e:
        c.parse_901f(f, status=msb)
    assert e.value.meaning == "valve open, battery normal (ST 07 00)"


def test_status_maps():
    assert c.decode_status(0x01)["valve"] == "closed"
    assert c.decode_status(0x02)["valve"] == "unknown"
    msb = {
        "valve_mask": 0xC0,
        "valve_shift": 6,
        "valve_open": 0,
        "valve_closed": 1,
        "valve_abnormal": 3,
        "battery_mask": 0x20,
    }
    st1 = c.encode_status("closed", True, msb)
    assert st1 == 0x60 and c.decode_status(st1, 0, msb)["valve"] == "closed"
    raw = c.encode_901f_reply(0x10, A, dict(FIELDS, valve="closed", battery_low=True), status=msb)
    r = c.parse_901f(c.parse_frame(raw), status=msb)
    assert r["st1"] == 0x60 and r["valve"] == "closed" and r["battery_low"]
    with pytest.raises(EncodingError):
        c.encode_status("ajar")


def test_valve_and_write_reply():
    raw = c.valve_request(0x10, A, "close", ser=2)
    f = c.parse_frame(raw)
    assert f.control == 0x04 and f.data == h("17A0 02 99")
    assert c.parse_request(f) == (0xA017, 2, b"\x99", "lo_first")
    assert c.parse_frame(c.valve_request(0x10, A, "open", di_order="hi_first")).data == h("A017 00 55")
    assert c.parse_frame(c.valve_request(0x10, A, "closed")).data[-1] == 0x99
    assert c.parse_frame(c.valve_request(0x10, A, "exercise")).data[-1] == 0xAA
    with pytest.raises(EncodingError):
        c.valve_request(0x10, A, "half")
    reply = c.parse_frame(c.write_reply(0x10, A, 0xA017, ser=2, st1=0x01))
    assert c.parse_write_reply(reply, 0xA017, ser=2) == (1, 0)
    with pytest.raises(AbnormalReply):
        c.parse_write_reply(c.parse_frame(c.abnormal_reply(0x10, A, 0x04, 2, 0x03)), 0xA017)


def test_read_address():
    f = c.parse_frame(c.read_address_request(ser=3))
    assert f.meter_type == 0xAA and f.address == c.WILDCARD and f.control == 0x03
    assert c.parse_request(f) == (0x810A, 3, b"", "lo_first")
    assert c.parse_request(c.parse_frame(c.read_address_request(di_order="hi_first")))[3] == "hi_first"
    reply = c.parse_frame(c.read_address_reply(0x10, A, ser=3))
    assert reply.address == A and reply.control == 0x83
    assert c.parse_reply(reply, 0x810A, 3, control=0x03) == b""


def test_heat_meter_layout():
    fields = {
        "heat_settlement": 10.5,
        "heat_total": 1234.56,
        "heat_power": 12.34,
        "flow_rate": 1.2345,
        "flow_total": 99.99,
        "supply_temp": 65.3,
        "return_temp": 45.25,
        "working_hours": 8760,
        "time": (2024, 1, 2, 3, 4, 5),
    }
    raw = c.encode_901f_reply(c.METER_HEAT, A, fields)
    f = c.parse_frame(raw)
    assert len(f.data) == 46
    r = c.parse_901f(f)
    for k, v in fields.items():
        assert r[k] == v, k
    assert r["heat_total_unit"] == 0x05 and r["heat_power_unit"] == 0x17 and r["flow_rate_unit"] == 0x35


def test_non_bcd_gives_quality_flag():
    raw = bytearray(c.parse_frame(c.encode_901f_reply(0x10, A, FIELDS)).data)
    raw[3] = 0xFA
    r = c.parse_901f(c.Frame(0x10, A, 0x81, bytes(raw)))
    assert r["flow_total"] is None and r["quality"] == "bad_bcd" and r["flow_settlement"] == 100.0
    raw[3] = 0x45
    raw[13] = 0xFF
    r = c.parse_901f(c.Frame(0x10, A, 0x81, bytes(raw)))
    assert r["time"] is None and r["quality"] == "bad_bcd"


def test_unit_codes():
    assert c.UNIT_CODES[0x2C][:2] == ("m3", "m3")
    assert c.primary_value(1.5, 0x05) == (5400000.0, "J")
    assert c.primary_value(2, 0x17) == (2000, "W")
    assert c.primary_value(3600, 0x35) == (1.0, "m3/s")
    assert c.primary_value(1000, 0x29) == (1.0, "m3")
    assert c.primary_value(1, 0x11) == (1e9, "J")
    with pytest.raises(EncodingError, match="unit code 99"):
        c.primary_value(1, 0x99)
    # the 16 codes both tables agree on
    for code in (
        0x01,
        0x02,
        0x05,
        0x08,
        0x0A,
        0x0B,
        0x0E,
        0x11,
        0x13,
        0x14,
        0x17,
        0x1A,
        0x29,
        0x2C,
        0x32,
        0x35,
    ):
        assert code in c.UNIT_CODES


@pytest.mark.parametrize(
    "raw,exc",
    [
        ("68 10 56 34 12 00 00 00 00 C1 03 01 07 00 E1 16", CrcError),
        ("68 10 56 34 12 00 00 00 00 C1 03 01 07 00 E0 17", FrameError),
        ("69 10 56 34 12 00 00 00 00 C1 03 01 07 00 E0 16", FrameError),
        ("68 10 56 34 12 00 00 00 00 C1 03 01 07 00 E0", FrameError),
        ("FE 68 10 56", FrameError),
    ],
)
def test_bad_frames(raw, exc):
    with pytest.raises(exc):
        c.parse_frame(h(raw))


def test_address_rules():
    assert c.parse_address("123456") == h("56341200000000")
    assert c.format_address(h("56341200000000")) == A
    with pytest.raises(EncodingError):
        c.parse_address("1234567890123456")
    with pytest.raises(EncodingError):
        c.encode_di(0x901F, "middle")
    assert c.parse_address("AAAAAAAA123456") == h("563412AAAAAAAA")
    assert c.format_address(h("563412AAAAAAAA")) == "AAAAAAAA123456"
    assert c.address_matches(c.WILDCARD, A) and c.address_matches("AAAAAAAA123456", A)
    assert not c.address_matches("AAAAAAAA123457", A) and not c.address_matches(A, "AAAAAAAA123456")
    with pytest.raises(EncodingError):
        c.format_address(h("56341200"))  # CJ/T 188 addresses are 7 bytes
    with pytest.raises(EncodingError):
        c.parse_address("12345B")


@given(
    st.sampled_from([0x10, 0x11, 0x30]),
    st.text("0123456789", min_size=14, max_size=14),
    st.integers(0, 99999999),
    st.integers(0, 99999999),
    st.integers(0, 255),
    st.sampled_from(["lo_first", "hi_first"]),
    st.tuples(
        st.integers(2000, 2099),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    ),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_round_trip_901f(t, address, total, settle, ser, order, when, st1, st2):
    fields = {
        "flow_total": total / 100,
        "flow_settlement": settle / 100,
        "time": when,
        "st1": st1,
        "st2": st2,
        "flow_total_unit": 0x29,
    }
    r = c.parse_901f(c.parse_frame(c.encode_901f_reply(t, address, fields, ser, order)), ser=ser)
    assert round(r["flow_total"] * 100) == total and round(r["flow_settlement"] * 100) == settle
    assert r["time"] == when and (r["st1"], r["st2"]) == (st1, st2) and r["flow_total_unit"] == 0x29


@given(
    st.integers(0, 255),
    st.text("0123456789", min_size=14, max_size=14),
    st.integers(0, 255),
    st.binary(max_size=120),
    st.integers(0, 4),
)
def test_round_trip_frames(t, address, control, data, preamble):
    assert c.parse_frame(c.build_frame(t, address, control, data, preamble)) == c.Frame(
        t, address, control, data
    )


@given(st.randoms(use_true_random=False), st.lists(st.binary(max_size=30), min_size=1, max_size=6))
def test_reader_random_chunks_with_noise(rng, payloads):
    # 0x68 too: a fake header in the noise gives way to the whole frame behind it (test_meter_noise.py)
    noise_bytes = bytes(b for b in range(256) if b != 0xFE)
    stream = b""
    expected = []
    for i, data in enumerate(payloads):
        addr = "%014d" % (i + 1)
        stream += bytes(rng.choice(noise_bytes) for _ in range(rng.randint(0, 5)))
        stream += c.build_frame(0x10, addr, 0x81, data, rng.randint(0, 4))
        expected.append(c.Frame(0x10, addr, 0x81, data))
    reader = c.Cjt188FrameReader()
    got = []
    i = 0
    while i < len(stream):
        n = rng.randint(1, 9)
        got.extend(reader.feed(stream[i : i + n]))
        i += n
    assert got == expected
    assert all(isinstance(e, FrameError) for e in reader.take_errors())


def test_reader_partial_then_good_and_reset():
    good = c.encode_901f_reply(0x10, A, FIELDS, preamble=3)
    reader = c.Cjt188FrameReader()
    frames = []
    for b in good[3:15] + good:
        frames.extend(reader.feed(bytes([b])))
    assert frames == [c.parse_frame(good)]
    assert reader.take_errors()
    reader.feed(good[:8])
    reader.reset()
    assert "partial" in str(reader.take_errors()[-1])


@pytest.mark.parametrize("model", ["cjt188-water", "cjt188-gas", "cjt188-heat"])
def test_profiles_match_901f_fields(model):
    from protocols.profiles import load_profile

    p = load_profile(model)
    o = p.options
    raw = c.encode_901f_reply(o["meter_type"], A, {}, di_order=o["di_order"], status=o["status"])
    fields = c.parse_901f(c.parse_frame(raw), status=o["status"])
    for point in p.points:
        assert point.field in fields, point.name
    for field, code in o["unit_code"].items():
        assert fields[field + "_unit"] == code
        unit = c.UNIT_CODES[code][1]
        point = next(q for q in p.points if q.field == field)
        assert point.unit == unit and point.scale == pytest.approx(c.UNIT_CODES[code][2])
    valves = [q for q in p.points if q.field == "valve" and q.writable]
    for q in valves:
        assert q.values is not None
        assert q.check_write("closed") is None and q.check_write("ajar") is not None
        for v in q.values:
            c.valve_request(o["meter_type"], A, v, di_order=o["di_order"], preamble=o["preamble"])
