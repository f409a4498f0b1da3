"""DL/T 698.45 codec: published frames (byte for byte both ways), CRC, addresses, GET client and
server halves, DAR, the incremental reader, and round trips of random frames and data."""

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import axdr
from protocols import dlt698 as d
from protocols.errors import AbnormalReply, CrcError, EncodingError, FrameError


def h(text: str) -> bytes:
    return binascii.unhexlify(text.replace(" ", ""))


# Published frames, none made by us (docs/protocols/dlt698.md lists where each was found).
# H3: the standard's Appendix H example of reading 40010200 with the wildcard address, as quoted in a
# public C source; TOOLS: the same request as sent by three independent desktop tools.
H3_REQUEST = "68 17 00 43 45 AA AA AA AA AA AA 00 5B 4F 05 01 25 40 01 02 00 00 0A 92 16"
H3_RESPONSE = ("68 21 00 C3 05 33 09 20 39 00 00 00 4A 55 85 01 25 40 01 02 00 01 09 06 00 00 39 20 09 33"
               " 00 00 B2 D8 16")
TOOLS_REQUEST = "68 17 00 43 45 AA AA AA AA AA AA 10 DA 5F 05 01 03 40 01 02 00 00 90 0F 16"
CA_A1_ENERGY = "68 17 00 43 45 AA AA AA AA AA AA A1 D8 FB 05 01 02 00 10 02 01 00 5B 0C 16"
# a test tool's canned reply to a concentrator: GET-Response-NormalList, forward active energy array
LIST_ENERGY = ("68 35 00 C3 05 04 33 00 00 00 00 10 57 40 85 02 00 01 00 10 02 00 01 01 05 06 00 00 02 BB"
               " 06 00 00 00 C6 06 00 00 00 CB 06 00 00 00 AE 06 00 00 00 7C 00 00 55 43 16")
# an analysis tool's sample: NormalList of energy and 20210200 (date_time_s; its month/day bytes are odd)
LIST_TWO = ("68 42 00 C3 05 02 00 00 00 00 00 00 9A 3D 85 02 00 02 00 10 02 00 01 01 05 06 00 00 00 01 06"
            " 00 00 00 01 06 00 00 00 01 06 00 00 00 01 06 00 00 00 01 20 21 02 00 01 1C 07 E2 11 28 00 00"
            " 00 00 00 65 92 16")
# a simulated meter's reply in a public Java tool, after a request sent with FE FE FE FE
JAVA_ADDRESS = ("68 21 00 C3 05 13 30 04 22 17 20 10 7D A0 85 01 01 40 01 02 00 01 09 06 20 17 22 04 30 13"
                " 00 00 4E EB 16")


def test_crc16_x25_check_value() -> None:
    assert d.crc16(b"123456789") == 0x906E
    assert d.crc16(b"") == 0x0000


def test_h3_read_address_request_is_built_byte_for_byte() -> None:
    assert d.read_address_request(piid=0x25) == h(H3_REQUEST)
    assert d.read_address_request(piid=0x03, client=0x10) == h(TOOLS_REQUEST)
    assert d.read_address_request(piid=0x25, preamble=4) == b"\xfe" * 4 + h(H3_REQUEST)
    frame = d.parse_frame(h(H3_REQUEST))
    assert (frame.address, frame.address_type, frame.client, frame.control) == (
        d.WILDCARD, d.ADDRESS_WILDCARD, 0, 0x43)
    assert not frame.from_server and frame.client_started and frame.function == 3
    assert d.parse_request(frame) == (0x25, ["40010200"], False)


def test_h3_read_address_response_both_ways() -> None:
    frame = d.parse_frame(h(H3_RESPONSE))
    assert frame.address == "000039200933" and frame.from_server and frame.control == 0xC3
    assert d.parse_read_address_response(frame, piid=0x25) == "000039200933"
    # the octet-string prints high byte first; the SA travels low byte first
    assert d.parse_address("000039200933") == h("33 09 20 39 00 00")
    octets = (axdr.OCTET_STRING, h("000039200933"))
    built = d.read_response("000039200933", 0x25, [d.Result("40010200", octets)])
    assert built == h(H3_RESPONSE)
    java = d.parse_frame(h(JAVA_ADDRESS))
    assert java.client == 0x10 and d.parse_read_address_response(java) == "201722043013"


def test_get_normal_of_one_element() -> None:
    assert d.read_request(d.WILDCARD, "00100201", piid=2, client=0xA1,
                          address_type=d.ADDRESS_WILDCARD) == h(CA_A1_ENERGY)
    assert d.parse_request(d.parse_frame(h(CA_A1_ENERGY))) == (2, ["00100201"], False)


def test_normal_list_responses_decode_and_rebuild() -> None:
    frame = d.parse_frame(h(LIST_ENERGY))
    results = d.parse_read_response(frame, ["00100200"], piid=0, address="000000003304")
    energy = d.scaled("00100200", results[0].value())
    assert energy == [6.99, 1.98, 2.03, 1.74, 1.24]
    assert round(sum(energy[1:]), 2) == energy[0]  # the tariffs add up to the total
    assert d.read_response("000000003304", 0, results, is_list=True, client=0x10) == h(LIST_ENERGY)
    two = d.parse_read_response(d.parse_frame(h(LIST_TWO)), ["00100200", "20210200"])
    assert axdr.plain(two[0].value()) == [1, 1, 1, 1, 1]
    assert two[1].value() == (axdr.DATE_TIME_S, (2018, 17, 40, 0, 0, 0))  # not range-checked: raw fields


def test_request_of_a_list_and_the_reply_with_a_dar() -> None:
    oads = ["00100200", "20000200", "F2000200"]
    request = d.read_request("000000000161", oads, piid=7)
    assert h("05 02 07 03 00 10 02 00 20 00 02 00 F2 00 02 00 00") in request
    piid, asked, is_list = d.parse_request(d.parse_frame(request))
    assert (piid, asked, is_list) == (7, oads, True)
    volts = axdr.array([(axdr.LONG_UNSIGNED, 2305), (axdr.LONG_UNSIGNED, 2291), (axdr.LONG_UNSIGNED, 0)])
    energy = axdr.array([(axdr.DOUBLE_LONG_UNSIGNED, 123456)] + [(axdr.DOUBLE_LONG_UNSIGNED, 30864)] * 4)
    results = [d.Result(oads[0], energy), d.Result(oads[1], volts), d.Result(oads[2], dar=6)]
    reply = d.parse_frame(d.read_response("000000000161", piid | 0x40, results, is_list=True))  # ACD set
    got = d.parse_read_response(reply, oads, piid=7, address="000000000161")
    assert got == results
    assert d.scaled("20000200", got[1].value()) == [230.5, 229.1, 0.0]
    assert d.scaled("00100200", got[0].value(), element=1) == 1234.56
    message = r"meter 000000000161 OAD F2000200: DAR 6: object unavailable"
    with pytest.raises(d.DarError, match=message) as err:
        got[2].value("000000000161")
    assert isinstance(err.value, AbnormalReply) and err.value.code == 6


def test_reply_checks_name_what_is_wrong() -> None:
    oads = ["20000200"]
    reply = d.parse_frame(d.read_response("000000000161", 5, [d.Result("20010200", dar=4)]))
    with pytest.raises(FrameError, match="asked OADs 20000200, response carries 20010200"):
        d.parse_read_response(reply, oads)
    with pytest.raises(FrameError, match="asked PIID 06, response carries 05"):
        d.parse_read_response(reply, ["20010200"], piid=6)
    with pytest.raises(FrameError, match="response from meter 000000000161, expected meter 000000000162"):
        d.parse_read_response(reply, ["20010200"], address="000000000162")
    assert d.parse_read_response(reply, ["20010200"], address="AAAAAAAAAA61")[0].dar == 4
    request = d.parse_frame(d.read_request("000000000161", oads))
    with pytest.raises(FrameError, match="expected a response"):
        d.parse_read_response(request, oads)


def test_scrambled_apdu_and_fragments() -> None:
    apdu = d.get_request("40000200", 1)
    wire = d.build_frame(d.Frame("000000000161", apdu, 0x43 | 0x08))
    assert h("38 34 34 73 33 35 33 33") in wire  # 05 01 01 40 00 02 00 00 each +33
    frame = d.parse_frame(wire)
    assert frame.scrambled and frame.apdu == apdu and d.parse_request(frame)[1] == ["40000200"]
    split = d.parse_frame(d.build_frame(d.Frame("000000000161", apdu, 0x43 | 0x20)))
    with pytest.raises(FrameError, match="fragments"):
        d.parse_request(split)


@pytest.mark.parametrize("change, error, message", [
    (lambda b: b[:-1] + b"\x17", FrameError, "must end with 16"),
    (lambda b: b[:12] + bytes([b[12] ^ 1]) + b[13:], CrcError, "HCS with address AAAAAAAAAAAA"),
    (lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:], CrcError, "FCS with address AAAAAAAAAAAA"),
    (lambda b: b[:-4] + bytes([b[-4] ^ 1]) + b[-3:], CrcError, "FCS"),
    (lambda b: b[:10], FrameError, "too short"),
    (lambda b: b[:20], FrameError, "L=23 needs 25 bytes, got 20"),
    (lambda b: b + b"\x16", FrameError, "needs 25 bytes, got 26"),
    (lambda b: b"\x69" + b[1:], FrameError, "must start with 68"),
    (lambda b: b[:2] + b"\x40" + b[3:], FrameError, "bits 14-15"),
])
def test_broken_frames_raise_named_errors(change, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        d.parse_frame(change(h(H3_REQUEST)))


def test_addresses() -> None:
    assert d.parse_address("123456789012") == h("12 90 78 56 34 12")
    assert d.format_address(h("12 90 78 56 34 12")) == "123456789012"
    assert d.parse_address("AA") == b"\xaa" and d.parse_address("00000000001F") == h("1F 00 00 00 00 00")
    for bad in ("", "1", "12345", "12G4", "B1", 12, "1" * 34):
        with pytest.raises(EncodingError):
            d.parse_address(bad)  # type: ignore[arg-type]
    assert d.address_matches("AAAAAAAA0161", "000000000161")
    assert d.address_matches("A00000000161", "000000000161")
    assert not d.address_matches("AAAAAAAA0162", "000000000161")
    assert not d.address_matches("AAAAAAAAAA", "000000000161")  # lengths differ
    # a broadcast request: type 3, one AA byte
    frame = d.parse_frame(d.read_request(d.BROADCAST, "40000200", address_type=d.ADDRESS_BROADCAST))
    assert frame.address_type == d.ADDRESS_BROADCAST and frame.address == "AA"
    assert d.build_frame(frame)[4] == 0xC0
    with pytest.raises(EncodingError, match="broadcast server address is the one byte AA"):
        d.read_request("000000000161", "40000200", address_type=d.ADDRESS_BROADCAST)


def test_builders_refuse_bad_arguments() -> None:
    for bad in ([], ["0010020"], ["0010020G"], [123], ["00100200"] * (d.MAX_OADS + 1), 5):
        with pytest.raises(EncodingError):
            d.get_request(bad)  # type: ignore[arg-type]
    for piid in (256, -1, 0x40):
        with pytest.raises(EncodingError):
            d.get_request("00100200", piid=piid)
    with pytest.raises(EncodingError):
        d.get_response(0, [d.Result("00100200", (6, 1)), d.Result("00200200", (6, 1))])
    with pytest.raises(EncodingError):
        d.build_frame(d.Frame("000000000161", b"\x00" * d.MAX_FRAME))


def test_time_tag_is_carried_and_skipped() -> None:
    tag = ((2024, 6, 1, 8, 0, 0), (1, 5))  # sent 2024-06-01 08:00:00, valid 5 minutes
    apdu = d.get_request("40000200", 3, tag)
    assert apdu.endswith(h("01 07 E8 06 01 08 00 00 01 00 05"))
    assert d.parse_get_request(apdu) == (3, ["40000200"], False)
    with pytest.raises(FrameError, match="TimeTag flag 02"):
        d.parse_get_request(apdu[:7] + b"\x02")


def test_error_response_is_named() -> None:
    frame = d.Frame("000000000161", h("EE 01 02"), d.CONTROL_RESPONSE)
    with pytest.raises(FrameError, match="ERROR-Response"):
        d.parse_read_response(frame, ["40000200"])


# ---------------------------------------------------------------- reader
def test_reader_resyncs_after_noise_and_stray_68() -> None:
    good = h(H3_RESPONSE)
    # a stray 68 claiming a 4000-byte frame must not hold back the real frame behind it
    stray = b"\x68\xa0\x0f\x43\x05" + b"\x11" * 9
    stream = b"\x00\x13" + stray + b"\xfe\xfe" + good + b"\x55\x68" + h(LIST_ENERGY) + good[:9]
    reader = d.Dlt698FrameReader()
    got = []
    for i in range(0, len(stream), 7):
        got.extend(reader.feed(stream[i:i + 7]))
    assert [f.address for f in got] == ["000039200933", "000000003304"]
    reader.reset()
    errors = reader.take_errors()
    assert all(isinstance(e, FrameError) for e in errors)
    noise = [int(str(e).split()[3]) for e in errors if "line noise" in str(e)]
    assert sum(noise) == 2 + len(stray) + 2  # 00 13, the stray header, 55 68; FE bytes are not noise
    assert str(errors[-1]) == "DL/T 698.45: dropped 9 bytes of a partial frame"


def test_reader_reports_a_bad_fcs_and_goes_on() -> None:
    good = h(H3_RESPONSE)
    bad = good[:-3] + bytes([good[-3] ^ 0xFF]) + good[-2:]
    reader = d.Dlt698FrameReader()
    frames = reader.feed(bad + good)
    assert len(frames) == 1 and frames[0].address == "000039200933"
    errors = reader.take_errors()
    assert any(isinstance(e, CrcError) and "FCS" in str(e) for e in errors)


def test_reader_bounds_frame_size() -> None:
    big = d.build_frame(d.Frame("000000000161", b"\x05" * 300))
    assert d.Dlt698FrameReader().feed(big)
    small = d.Dlt698FrameReader(max_frame=200)
    assert small.feed(big + h(H3_REQUEST))[0].address == d.WILDCARD  # the big one is noise to it


# ---------------------------------------------------------------- properties
addresses = st.integers(1, 16).flatmap(
    lambda n: st.lists(st.sampled_from("0123456789A"), min_size=2 * n, max_size=2 * n).map("".join))


@given(addresses, st.binary(max_size=300), st.integers(0, 255), st.integers(0, 255), st.integers(0, 3),
       st.integers(0, 3), st.integers(0, 4))
def test_frames_round_trip(address, apdu, control, client, kind, logic, preamble) -> None:  # type: ignore[no-untyped-def]
    if kind == d.ADDRESS_BROADCAST:
        address = d.BROADCAST
    frame = d.Frame(address, apdu, control, client, kind, logic)
    wire = d.build_frame(frame, preamble)
    assert d.parse_frame(wire) == frame
    reader = d.Dlt698FrameReader()
    got = [f for i in range(0, len(wire), 5) for f in reader.feed(wire[i:i + 5])]
    assert got == [frame]


def tagged(tag: int):  # type: ignore[no-untyped-def]
    """A function putting ``tag`` in front of a value (for strategies' map)."""
    return lambda value: (tag, value)


def bit_strings(clear_padding: bool = False):  # type: ignore[no-untyped-def]
    def of(bits: int):  # type: ignore[no-untyped-def]
        size = (bits + 7) // 8
        mask = (0xFF << (8 * size - bits)) & 0xFF
        return st.binary(min_size=size, max_size=size).map(
            lambda b: (axdr.BIT_STRING, (bits, b[:-1] + bytes([b[-1] & mask]) if b and clear_padding else b)))
    return st.integers(0, 40).flatmap(of)


def all_ints():  # type: ignore[no-untyped-def]
    return st.one_of(*[st.integers(lo, hi).map(tagged(t)) for t, (_f, _n, lo, hi) in axdr._NUMBERS.items()])


def data_values(depth: int = 3, peer: bool = False):  # type: ignore[no-untyped-def]
    """Random A-XDR data. ``peer``: only what PyPI dlt698 also accepts (printable visible-strings,
    bit-strings without set padding bits, valid dates, TI units 0..5)."""
    text = st.characters(min_codepoint=0x20, max_codepoint=0x7E) if peer else st.characters(max_codepoint=255)
    dates = (st.tuples(st.integers(2000, 2099), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23),
                       st.integers(0, 59), st.integers(0, 59)) if peer
             else st.tuples(st.integers(0, 65535), *[st.integers(0, 255)] * 5))
    leaves = st.one_of(
        st.just((axdr.NULL, None)), all_ints(), st.booleans().map(tagged(axdr.BOOL)),
        st.binary(max_size=300).map(tagged(axdr.OCTET_STRING)),
        st.text(text, max_size=20).map(tagged(axdr.VISIBLE_STRING)),
        st.text(max_size=20).map(tagged(axdr.UTF8_STRING)),
        bit_strings(clear_padding=peer),
        dates.map(tagged(axdr.DATE_TIME_S)),
        st.tuples(st.integers(-128, 127), st.integers(0, 255)).map(tagged(axdr.SCALER_UNIT)),
        st.integers(0, 0xFFFFFFFF).map(lambda v: (axdr.OAD, "%08X" % v)),
        st.tuples(st.integers(0, 5 if peer else 255), st.integers(0, 65535)).map(tagged(axdr.TI)),
        st.floats(allow_nan=False, width=32).map(tagged(axdr.FLOAT32)),
        st.floats(allow_nan=False).map(tagged(axdr.FLOAT64)),
    )
    if depth == 0:
        return leaves
    inner = data_values(depth - 1, peer)
    return st.one_of(leaves, st.lists(inner, max_size=5).map(axdr.array),
                     st.lists(inner, max_size=5).map(axdr.structure))


@given(data_values())
def test_axdr_round_trip(value) -> None:  # type: ignore[no-untyped-def]
    raw = axdr.encode(value)
    assert axdr.decode_all(raw) == value


@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF).map(lambda v: "%08X" % v),
                          st.one_of(data_values(1), st.integers(0, 255))), min_size=1, max_size=8),
       st.integers(0, 255))
def test_get_response_round_trip(pairs, piid) -> None:  # type: ignore[no-untyped-def]
    results = [d.Result(o, v) if isinstance(v, tuple) else d.Result(o, dar=v) for o, v in pairs]
    apdu = d.get_response(piid, results, is_list=True)
    assert d.parse_get_response(apdu) == (piid, results, [])
    frame = d.parse_frame(d.read_response("000000000161", piid, results, True))
    assert d.parse_read_response(frame, [o for o, _ in pairs], piid) == results
