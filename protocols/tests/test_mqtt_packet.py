"""protocols.mqtt_packet: published vectors, round trips and hostile input (hypothesis).

The independent implementations it is checked against are in test_mqtt_packet_interop.py (paho-mqtt
2.1 on a loopback socket, a real Mosquitto); the MicroPython run is protocols/tests/mp/check_mqtt_packet.py.
"""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import mqtt_packet as mp
from protocols.errors import ProtocolError
from protocols.mqtt_packet import MqttError

# Remaining Length vectors (MQTT 3.1.1 §2.2.3, Table 2.4; shared/protocol-facts.md §6.3)
LENGTHS = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
           (2097152, "80808001"), (268435455, "ffffff7f")]


def parse(data: bytes) -> tuple[list[tuple], int]:
    """Walk `data` as a client walks its receive buffer: every whole packet, decoded by its reader;
    returns (decoded packets, bytes of a packet not yet whole at the end). MqttError as the codec raises.
    Each reader gets the bytes up to the end of its packet only: reading past it is an IndexError."""
    out: list[tuple] = []
    pos = 0
    while len(data) - pos >= 2:
        size, body = mp.read_length(data, pos, len(data))
        if size < 0 or body + size > len(data):
            break
        head = data[pos]
        kind = mp.check_head(head)
        data, whole = data[:body + size], data
        if kind == mp.PUBLISH:
            qos, topic_end, pid, payload = mp.read_publish(data, body, size, head)
            out.append(("PUBLISH", bytes(data[body + 2:topic_end]), bytes(data[payload:body + size]), qos,
                        bool(head & 1), pid))
        elif kind == mp.CONNACK:
            out.append(("CONNACK", *mp.read_connack(data, body, size)))
        elif kind == mp.SUBACK:
            out.append(("SUBACK", *mp.read_suback(data, body, size)))
        elif kind == mp.PINGRESP:
            mp.read_empty(size, kind)
            out.append(("PINGRESP",))
        else:
            out.append((mp.FROM_BROKER[kind][0], mp.read_ack(data, body, size, kind)))
        data = whole
        pos = body + size
    return out, len(data) - pos


@pytest.mark.parametrize("n,hex_", LENGTHS)
def test_remaining_length_vectors(n: int, hex_: str) -> None:
    assert mp.encode_length(n).hex() == hex_
    wire = b"\x30" + bytes.fromhex(hex_)
    assert mp.read_length(wire, 0, len(wire)) == (n, len(wire))


@pytest.mark.parametrize("n", [-1, 268435456, 1 << 40])
def test_remaining_length_out_of_range_is_a_value_error(n: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        mp.encode_length(n)


@given(st.integers(0, mp.MAX_LENGTH), st.integers(0, 3))
def test_remaining_length_round_trip_at_any_offset(n: int, offset: int) -> None:
    wire = b"\xff" * offset + b"\x30" + mp.encode_length(n) + b"\xee"
    assert mp.read_length(wire, offset, len(wire)) == (n, offset + 1 + len(mp.encode_length(n)))
    for cut in range(offset + 1, offset + len(mp.encode_length(n)) + 1):
        assert mp.read_length(wire, offset, cut) == (-1, 0)  # the length field is not complete yet


@pytest.mark.parametrize("field", ["ffffffff01", "80808080", "ffffff80"])
def test_a_remaining_length_over_four_bytes_is_malformed(field: str) -> None:
    wire = b"\x30" + bytes.fromhex(field)
    with pytest.raises(MqttError, match="malformed remaining length"):
        mp.read_length(wire, 0, len(wire))


def test_connect_bytes_by_hand() -> None:
    """MQTT 3.1.1 §3.1: protocol name, level 4, flags, keep-alive, then the payload in its order."""
    assert mp.connect("gw", 60).hex() == "100e" + "00044d515454" + "04" + "02" + "003c" + "0002" + "6777"
    wire = mp.connect("gw", 30, clean=False, will=("s", b"\x00off", 1, True), username="u", password="p")
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain, will QoS 1, will
    body = (b"\x00\x04MQTT\x04" + bytes((flags,)) + b"\x00\x1e" + b"\x00\x02gw" + b"\x00\x01s"
            + b"\x00\x04\x00off" + b"\x00\x01u" + b"\x00\x01p")
    assert wire == b"\x10" + bytes((len(body),)) + body


def test_a_password_without_a_user_name_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a user name"):
        mp.connect("gw", 60, password="p")


@pytest.mark.parametrize("call, why", [
    (lambda: mp.connect("gw", 70000), "keep-alive"),
    (lambda: mp.connect("gw", 60, will=("t", b"", 3, False)), "QoS 3"),
    (lambda: mp.encode_string("x" * 65536), "over 65535"),
    (lambda: mp.publish(b"\x00\x01t", b"", 1, False, 0), "packet id 0"),
    (lambda: mp.publish(b"\x00\x01t", b"", 1, False, 65536), "packet id 65536"),
    (lambda: mp.subscribe(1, []), "needs a topic filter"),
    (lambda: mp.subscribe(1, [("a", 3)]), "QoS 3"),
    (lambda: mp.puback(0), "packet id 0"),
])
def test_what_mqtt_cannot_carry_is_a_value_error(call, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        call()


def test_subscribe_puback_and_fixed_packets_by_hand() -> None:
    wire = mp.subscribe(10, [("a/b", 1), ("c", 0)])
    assert wire.hex() == "820c" + "000a" + "0003612f62" + "01" + "000163" + "00"
    assert mp.puback(0x1234) == b"\x40\x02\x12\x34"
    assert mp.PINGREQ == b"\xc0\x00" and mp.DISCONNECT == b"\xe0\x00"


topics = st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t)


@given(st.lists(st.tuples(topics, st.binary(max_size=400), st.integers(0, 2), st.booleans(),
                          st.integers(1, 0xFFFF)), max_size=8))
def test_publish_round_trip(messages: list) -> None:
    """Property: a stream of PUBLISHes decodes to the same topics, payloads, QoS, retain and ids, and
    every strict prefix of it decodes to the whole packets it holds and no more."""
    wires = [mp.publish(mp.encode_string(t), p, q, r, i) for t, p, q, r, i in messages]
    stream = b"".join(wires)
    want = [("PUBLISH", t.encode(), p, q, r, i if q else 0) for t, p, q, r, i in messages]
    assert parse(stream) == (want, 0)
    whole = 0
    for k, wire in enumerate(wires):
        cut = whole + len(wire) - 1  # one byte short of packet k
        assert parse(stream[:cut]) == (want[:k], len(wire) - 1)
        whole += len(wire)
    for (t, _p, _q, _r, _i), wire in zip(messages, wires):
        _size, body = mp.read_length(wire, 0, len(wire))
        _qos, topic_end, _pid, _payload = mp.read_publish(wire, body, len(wire) - body, wire[0])
        assert mp.topic_text(wire, body + 2, topic_end) == t


@given(st.integers(0, 3000), st.integers(0, 40))
def test_publish_head_streams_the_same_bytes_as_publish(payload_size: int, topic_size: int) -> None:
    """The board writes the head into its own buffer and streams topic, id and payload after it."""
    topic = mp.encode_string("t" * topic_size)
    payload = bytes(range(256)) * (payload_size // 256) + bytes(payload_size % 256)
    for qos in (0, 1):
        head = bytearray(8)
        end = mp.put_publish_head(head, qos, True, len(topic), len(payload))
        streamed = bytes(head[:end]) + topic + (struct.pack(">H", 7) if qos else b"") + payload
        assert streamed == mp.publish(topic, payload, qos, True, 7)


@pytest.mark.parametrize("wire, want", [
    (b"\x20\x02\x00\x00", ("CONNACK", False, 0)),
    (b"\x20\x02\x01\x00", ("CONNACK", True, 0)),
    (b"\x20\x02\x00\x05", ("CONNACK", False, 5)),
    (b"\x40\x02\x00\x01", ("PUBACK", 1)),
    (b"\x50\x02\xff\xff", ("PUBREC", 0xFFFF)),
    (b"\x62\x02\x00\x02", ("PUBREL", 2)),
    (b"\x70\x02\x00\x03", ("PUBCOMP", 3)),
    (b"\xb0\x02\x00\x04", ("UNSUBACK", 4)),
    (b"\x90\x05\x00\x09\x00\x01\x80", ("SUBACK", 9, b"\x00\x01\x80")),
    (b"\xd0\x00", ("PINGRESP",)),
    (b"\x3b\x06\x00\x01t\x00\x05x", ("PUBLISH", b"t", b"x", 1, True, 5)),  # DUP, QoS 1, retain
])
def test_what_a_broker_sends_decodes(wire: bytes, want: tuple) -> None:
    assert parse(wire) == ([want], 0)


@pytest.mark.parametrize("wire, why", [
    (b"\x10\x00", "unexpected packet type 1 "),  # CONNECT: a client's packet
    (b"\x82\x00", "unexpected packet type 8 "),
    (b"\xc0\x00", "unexpected packet type 12 "),
    (b"\xe0\x00", "unexpected packet type 14 "),
    (b"\x00\x00", "unexpected packet type 0 "),
    (b"\xf0\x00", "unexpected packet type 15 "),
    (b"\x21\x02\x00\x00", "malformed CONNACK: fixed header flags 0x1"),
    (b"\x60\x02\x00\x01", "malformed PUBREL: fixed header flags 0x0, not 0x2"),
    (b"\x20\x03\x00\x00\x00", "malformed CONNACK: 3 bytes"),
    (b"\x20\x02\x02\x00", "malformed CONNACK: reserved flags 0x02"),
    (b"\x40\x01\x00", "malformed PUBACK: 1 bytes"),
    (b"\x40\x02\x00\x00", "malformed PUBACK: packet id 0"),
    (b"\xd0\x01\x00", "malformed PINGRESP: 1 bytes"),
    (b"\x90\x02\x00\x01", "malformed SUBACK: 2 bytes"),
    (b"\x90\x03\x00\x00\x00", "malformed SUBACK: packet id 0"),
    (b"\x90\x03\x00\x01\x03", "malformed SUBACK: return code 0x03"),
    (b"\x36\x04\x00\x01ab", "malformed PUBLISH: QoS 3"),
    (b"\x30\x01\x00", "malformed PUBLISH: 1 bytes"),
    (b"\x30\x02\x00\x00", "malformed PUBLISH: empty topic"),
    (b"\x32\x04\x00\x09ab", "topic longer than the packet"),
    (b"\x32\x04\x00\x01a\x00", "topic longer than the packet"),  # room for the topic, not the id
    (b"\x32\x05\x00\x01a\x00\x00", "QoS 1 with packet id 0"),
])
def test_broken_packets_are_named(wire: bytes, why: str) -> None:
    with pytest.raises(MqttError, match=why):
        parse(wire)


def test_a_topic_that_is_not_utf8_is_named() -> None:
    wire = b"\x30\x04\x00\x02\xff\xfe"
    _size, body = mp.read_length(wire, 0, len(wire))
    _qos, topic_end, _pid, _payload = mp.read_publish(wire, body, 4, wire[0])
    with pytest.raises(MqttError, match="not UTF-8"):
        mp.topic_text(wire, body + 2, topic_end)


def test_the_codec_error_is_a_protocol_error() -> None:
    assert issubclass(MqttError, ProtocolError)
    assert mp.connack_reason(4) == "bad user name or password" and mp.connack_reason(9) == "unknown reason 9"


GOOD = [b"\x20\x02\x00\x00", b"\x40\x02\x00\x01", b"\x90\x03\x00\x02\x01", b"\xd0\x00",
        b"\x33\x08\x00\x03a/b\x00\x07hi", b"\x30\x05\x00\x01t\x00\x00"]
pieces = st.lists(st.one_of(st.sampled_from(GOOD), st.binary(max_size=6)), max_size=8)
streams = st.one_of(st.binary(max_size=64), pieces.map(b"".join))


@given(streams)
def test_any_bytes_give_packets_or_the_codec_error(data: bytes) -> None:
    """Property: garbage, truncated or oversized input from a broker decodes or raises MqttError;
    never another exception (an IndexError would say a reader looked past its packet)."""
    try:
        packets, rest = parse(data)
    except MqttError:
        return
    assert 0 <= rest <= len(data)
    for p in packets:
        assert p[0] in ("PUBLISH", "CONNACK", "SUBACK", "PINGRESP", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
                        "UNSUBACK")


@given(st.sampled_from([0x20, 0x30, 0x32, 0x40, 0x90, 0xD0]), st.binary(max_size=40))
def test_a_packet_cut_short_is_never_decoded(head: int, body: bytes) -> None:
    """Property: however a packet is cut, the part is held back (not decoded), whatever it holds."""
    wire = bytes((head,)) + mp.encode_length(len(body)) + body
    for cut in range(len(wire)):
        packets, rest = parse(wire[:cut])
        assert packets == [] and rest == cut
