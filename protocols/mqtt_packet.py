"""MQTT 3.1.1 packets, bytes in and bytes out: the one codec of the board's client (firmware_py/mqtt.py)
and of the fleet tools' client (agent/fleet/mqtt.py). No sockets, no clock; each client keeps its own
I/O loop and calls this.

Out (what a client sends): `connect`, `publish` (or `put_publish_head` to stream a payload from flash),
`subscribe`, `puback`, the fixed `PINGREQ` and `DISCONNECT`; `encode_string` makes a topic's wire form
once for a caller that publishes often. An argument MQTT cannot carry (a string over 65,535 bytes, a
QoS of 3, packet id 0) is a ValueError: the caller's mistake, not the broker's.

In (what a broker sends): the client keeps the bytes it received in a buffer and asks

    size, body = read_length(buf, pos, end)   # (-1, 0): the length field is not complete yet
    if size >= 0 and body + size <= end:      # the whole packet is in buf[pos:body + size]
        kind = check_head(buf[pos])           # CONNACK, PUBLISH, PUBACK, ...
        ... read_connack / read_publish / read_ack / read_suback / read_empty (buf, body, size, ...)

Everything a broker sends is hostile. Any bytes give either a value or `MqttError` saying what was
wrong with which packet; the readers index only inside `buf[body:body + size]` and return offsets into
it (no copies, for the board's receive buffer). A remaining length is at most 4 bytes (268,435,455);
how large a packet a client accepts is its own bound (the agent fails the session, the board skips it).
"""

import struct

from protocols.errors import ProtocolError

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x60
PUBCOMP = 0x70
SUBSCRIBE = 0x82
SUBACK = 0x90
UNSUBACK = 0xB0
PINGRESP = 0xD0
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

MAX_LENGTH = 268435455  # the largest remaining length 4 bytes carry
MAX_STRING = 65535  # the largest UTF-8 string (or will message) a 2-byte length carries

# CONNACK return codes 0..5 (MQTT 3.1.1 §3.2.2.3)
CONNACK_CODES = ("accepted", "unacceptable protocol version", "client identifier rejected",
                 "broker unavailable", "bad user name or password", "not authorised")

# packets a broker may send a client: name and the fixed header flags §2.2.2 requires (PUBLISH: any)
FROM_BROKER = {
    CONNACK: ("CONNACK", 0),
    PUBLISH: ("PUBLISH", -1),
    PUBACK: ("PUBACK", 0),
    PUBREC: ("PUBREC", 0),
    PUBREL: ("PUBREL", 2),
    PUBCOMP: ("PUBCOMP", 0),
    SUBACK: ("SUBACK", 0),
    UNSUBACK: ("UNSUBACK", 0),
    PINGRESP: ("PINGRESP", 0),
}
SUBACK_CODES = (0, 1, 2, 0x80)  # granted QoS 0, 1, 2; 0x80: refused


class MqttError(ProtocolError):
    """A packet that breaks MQTT 3.1.1, or a broker that refused the session: the client closes the
    connection (and reconnects, on the board)."""


def connack_reason(code: int) -> str:
    """The words for a CONNACK return code."""
    if 0 <= code < len(CONNACK_CODES):
        return CONNACK_CODES[code]
    return "unknown reason %d" % code


# -- out ------------------------------------------------------------------------------------------


def put_length(n: int, buf, pos: int) -> int:
    """Write the variable-byte remaining length `n` (1..4 bytes) at buf[pos]; returns the position
    after it. ValueError when n is outside 0..268,435,455."""
    if n < 0 or n > MAX_LENGTH:
        raise ValueError("MQTT remaining length %d is out of range (0..%d)" % (n, MAX_LENGTH))
    while True:
        b = n & 0x7F
        n >>= 7
        buf[pos] = b | (0x80 if n else 0)
        pos += 1
        if not n:
            return pos


def encode_length(n: int) -> bytes:
    """The variable-byte remaining length `n` as bytes (see put_length)."""
    out = bytearray(4)
    return bytes(out[:put_length(n, out, 0)])


def encode_string(s) -> bytes:
    """A UTF-8 string (str) or binary data (bytes) as MQTT puts it: 2-byte big-endian length, then the
    bytes. ValueError over 65,535 bytes."""
    raw = s.encode() if isinstance(s, str) else bytes(s)
    if len(raw) > MAX_STRING:
        raise ValueError("MQTT string of %d bytes is over %d" % (len(raw), MAX_STRING))
    return struct.pack(">H", len(raw)) + raw


def packet(head: int, body: bytes) -> bytes:
    """A whole packet: its first byte, the remaining length, the body."""
    return bytes((head,)) + encode_length(len(body)) + body


def check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError("MQTT QoS %r is not 0, 1 or 2" % (qos,))


def check_pid(pid: int) -> None:
    if pid < 1 or pid > 0xFFFF:
        raise ValueError("MQTT packet id %r is outside 1..65535" % (pid,))


def connect(client_id: str, keepalive: int, clean: bool = True, will=None, username=None,
            password=None) -> bytes:
    """CONNECT for protocol level 4 (3.1.1). `will` is (topic, message bytes, qos, retain) or None;
    a password goes only with a user name (§3.1.2.9)."""
    if keepalive < 0 or keepalive > 0xFFFF:
        raise ValueError("MQTT keep-alive %r s is outside 0..65535" % (keepalive,))
    flags = 0x02 if clean else 0x00
    parts = [encode_string(client_id)]
    if will is not None:
        topic, message, qos, retain = will
        check_qos(qos)
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        parts.append(encode_string(topic))
        parts.append(encode_string(message))
    if username is not None:
        flags |= 0x80
        parts.append(encode_string(username))
        if password is not None:
            flags |= 0x40
            parts.append(encode_string(password))
    elif password is not None:
        raise ValueError("an MQTT password needs a user name")
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack(">H", keepalive) + b"".join(parts)
    return packet(CONNECT, body)


def put_publish_head(buf, qos: int, retain: bool, topic_size: int, payload_size: int) -> int:
    """Write the fixed header of a PUBLISH into buf (5 bytes at least); returns its end. The packet
    goes on with the topic (`encode_string`, `topic_size` bytes), the 2-byte packet id when qos > 0,
    then the payload of `payload_size` bytes."""
    check_qos(qos)
    buf[0] = PUBLISH | (qos << 1) | (1 if retain else 0)
    return put_length(topic_size + (2 if qos else 0) + payload_size, buf, 1)


def publish(topic: bytes, payload: bytes, qos: int = 0, retain: bool = False, pid: int = 0) -> bytes:
    """A whole PUBLISH. `topic` is `encode_string(name)`; `pid` (1..65535) goes with qos > 0 only."""
    head = bytearray(5)
    end = put_publish_head(head, qos, retain, len(topic), len(payload))
    if qos:
        check_pid(pid)
        return bytes(head[:end]) + topic + struct.pack(">H", pid) + payload
    return bytes(head[:end]) + topic + payload


def subscribe(pid: int, topics) -> bytes:
    """SUBSCRIBE of [(topic filter, requested qos), ...] (one at least) under packet id `pid`."""
    check_pid(pid)
    if not topics:
        raise ValueError("an MQTT SUBSCRIBE needs a topic filter")
    parts = [struct.pack(">H", pid)]
    for topic, qos in topics:
        check_qos(qos)
        parts.append(encode_string(topic))
        parts.append(bytes((qos,)))
    return packet(SUBSCRIBE, b"".join(parts))


def puback(pid: int) -> bytes:
    """PUBACK of the QoS 1 delivery `pid`."""
    check_pid(pid)
    return b"\x40\x02" + struct.pack(">H", pid)


# -- in -------------------------------------------------------------------------------------------


def read_length(buf, pos: int, end: int) -> tuple:
    """(remaining length, offset of the body) of the packet whose first byte is buf[pos], reading no
    further than buf[end - 1]; (-1, 0) while its length field is not complete. MqttError when the
    length field runs past its 4 bytes."""
    value = 0
    shift = 0
    i = pos + 1
    while i < end:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift == 28:
            raise MqttError("malformed remaining length: more than 4 bytes")
    return -1, 0


def check_head(head: int) -> int:
    """The packet type (CONNACK, PUBLISH, ...) of the first byte `head` of a packet from a broker.
    MqttError for a type a broker does not send, or reserved flags other than §2.2.2's."""
    kind = head & 0xF0
    known = FROM_BROKER.get(kind)
    if known is None:
        raise MqttError("unexpected packet type %d (first byte 0x%02x) from the broker" % (kind >> 4, head))
    name, flags = known
    if flags >= 0 and head & 0x0F != flags:
        raise MqttError("malformed %s: fixed header flags 0x%x, not 0x%x" % (name, head & 0x0F, flags))
    return kind


def read_connack(buf, body: int, size: int) -> tuple:
    """(session present, return code) of a CONNACK whose body is buf[body:body + size]."""
    if size != 2:
        raise MqttError("malformed CONNACK: %d bytes, not 2" % size)
    flags = buf[body]
    if flags & 0xFE:
        raise MqttError("malformed CONNACK: reserved flags 0x%02x" % flags)
    return bool(flags & 1), buf[body + 1]


def read_ack(buf, body: int, size: int, kind: int) -> int:
    """The packet id of a PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK (`kind`)."""
    if size != 2:
        raise MqttError("malformed %s: %d bytes, not 2" % (FROM_BROKER[kind][0], size))
    pid = (buf[body] << 8) | buf[body + 1]
    if not pid:
        raise MqttError("malformed %s: packet id 0" % FROM_BROKER[kind][0])
    return pid


def read_empty(size: int, kind: int) -> None:
    """A packet that has no body (PINGRESP)."""
    if size:
        raise MqttError("malformed %s: %d bytes, not 0" % (FROM_BROKER[kind][0], size))


def read_suback(buf, body: int, size: int) -> tuple:
    """(packet id, return codes: bytes, one per topic filter: granted QoS 0..2 or 0x80 refused)."""
    if size < 3:
        raise MqttError("malformed SUBACK: %d bytes, less than 3" % size)
    pid = (buf[body] << 8) | buf[body + 1]
    if not pid:
        raise MqttError("malformed SUBACK: packet id 0")
    for i in range(body + 2, body + size):
        if buf[i] not in SUBACK_CODES:
            raise MqttError("malformed SUBACK: return code 0x%02x" % buf[i])
    return pid, bytes(buf[body + 2 : body + size])


def read_publish(buf, body: int, size: int, head: int) -> tuple:
    """(qos, end of the topic, packet id or 0, start of the payload) of a PUBLISH whose first byte is
    `head`: its topic is buf[body + 2:topic end], its payload buf[payload start:body + size]."""
    qos = (head >> 1) & 3
    if qos == 3:
        raise MqttError("malformed PUBLISH: QoS 3")
    if size < 2:
        raise MqttError("malformed PUBLISH: %d bytes, no room for a topic" % size)
    topic_size = (buf[body] << 8) | buf[body + 1]
    if not topic_size:
        raise MqttError("malformed PUBLISH: empty topic")
    topic_end = body + 2 + topic_size
    payload = topic_end + (2 if qos else 0)
    if payload > body + size:
        raise MqttError("malformed PUBLISH: topic longer than the packet (%d bytes of topic, %d of packet)"
                        % (topic_size, size))
    pid = 0
    if qos:
        pid = (buf[topic_end] << 8) | buf[topic_end + 1]
        if not pid:
            raise MqttError("malformed PUBLISH: QoS %d with packet id 0" % qos)
    return qos, topic_end, pid, payload


def topic_text(buf, start: int, end: int) -> str:
    """The topic buf[start:end] as text; MqttError when it is not UTF-8."""
    try:
        return bytes(buf[start:end]).decode()
    except UnicodeError:
        raise MqttError("malformed PUBLISH: topic is not UTF-8") from None
