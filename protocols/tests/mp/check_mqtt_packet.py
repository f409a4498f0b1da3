"""MQTT 3.1.1 packet codec vectors in the shared dialect: one line per case, identical on CPython and
MicroPython. Run from the repository root: ``python protocols/tests/mp/check_mqtt_packet.py``.
A mismatch prints ``FAIL <case> ...``.
"""

import binascii
import sys

sys.path.insert(0, ".")

from protocols import mqtt_packet as mp
from protocols.errors import ProtocolError
from protocols.mqtt_packet import MqttError
from protocols.tests.mp.vectors import check, done


def hexs(b):
    return binascii.hexlify(bytes(b)).decode()


def error_of(call):
    """The class name and text of what `call` raises, or 'no error'."""
    try:
        call()
    except MqttError as e:
        return "MqttError: %s" % e
    except ValueError as e:
        return "ValueError: %s" % e
    return "no error"


def parse(data):
    """Every whole packet of `data`, decoded as a client decodes its receive buffer."""
    out = []  # type: list
    pos = 0
    while len(data) - pos >= 2:
        size, body = mp.read_length(data, pos, len(data))
        if size < 0 or body + size > len(data):
            break
        head = data[pos]
        kind = mp.check_head(head)
        if kind == mp.PUBLISH:
            qos, topic_end, pid, payload = mp.read_publish(data, body, size, head)
            out.append(("PUBLISH", mp.topic_text(data, body + 2, topic_end), hexs(data[payload:body + size]),
                        qos, head & 1, pid))
        elif kind == mp.CONNACK:
            present, code = mp.read_connack(data, body, size)
            out.append(("CONNACK", present, code))
        elif kind == mp.SUBACK:
            pid, codes = mp.read_suback(data, body, size)
            out.append(("SUBACK", pid, hexs(codes)))
        elif kind == mp.PINGRESP:
            mp.read_empty(size, kind)
            out.append(("PINGRESP",))
        else:
            out.append((mp.FROM_BROKER[kind][0], mp.read_ack(data, body, size, kind)))
        pos = body + size
    return out, len(data) - pos


# Remaining Length (MQTT 3.1.1 Table 2.4)
LENGTHS = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
           (2097152, "80808001"), (268435455, "ffffff7f")]
for n, hex_length in LENGTHS:
    check("length %d" % n, hexs(mp.encode_length(n)), hex_length)
    wire = b"\x30" + binascii.unhexlify(hex_length)
    check("read length %d" % n, mp.read_length(wire, 0, len(wire)), (n, len(wire)))
    check("incomplete %d" % n, mp.read_length(wire, 0, len(wire) - 1), (-1, 0))
for n in (-1, 268435456):
    said = error_of(lambda n=n: mp.encode_length(n))
    check("length %d" % n, said.split(" is ")[-1], "out of range (0..268435455)")
check("length 5 bytes", error_of(lambda: mp.read_length(b"\x30\xff\xff\xff\xff\x01", 0, 6)),
      "MqttError: malformed remaining length: more than 4 bytes")
head = bytearray(6)
check("put_length at 2", (mp.put_length(321, head, 2), hexs(head)), (4, "0000c1020000"))

# CONNECT, SUBSCRIBE, PUBACK
check("connect", hexs(mp.connect("gw", 60)), "100e00044d515454040200" + "3c00026777")
check("connect all", hexs(mp.connect("gw", 30, False, ("s", b"\x00off", 1, True), "u", "p")),
      "101d00044d51545404ec001e" + "00026777" + "000173" + "000400" + "6f6666" + "000175" + "000170")
check("connect unicode id", hexs(mp.connect("\u8def\u706f", 5)), "101200044d515454040200050006e8b7afe781af")
check("password alone", error_of(lambda: mp.connect("gw", 60, password="p")),
      "ValueError: an MQTT password needs a user name")
check("keepalive", error_of(lambda: mp.connect("gw", 65536)),
      "ValueError: MQTT keep-alive 65536 s is outside 0..65535")
check("subscribe", hexs(mp.subscribe(10, [("a/b", 1), ("c", 0)])), "820c000a0003612f6201000163" + "00")
check("puback", hexs(mp.puback(0x1234)), "40021234")
check("puback 0", error_of(lambda: mp.puback(0)), "ValueError: MQTT packet id 0 is outside 1..65535")
check("string over", error_of(lambda: mp.encode_string(b"x" * 65536)),
      "ValueError: MQTT string of 65536 bytes is over 65535")

# PUBLISH round trips from a fixed pseudo-random sequence (an LCG: the same on both interpreters)
seed = 12345
stream = bytearray()
want = []
for i in range(40):
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    size = seed % 300 if i % 8 else 16384 + seed % 50  # now and then a 3-byte remaining length
    qos = (seed >> 9) & 1
    retain = (seed >> 10) & 1
    topic = "fieldlink/site-%d/gw/%s" % (seed % 97, "cmd" if qos else "\u72b6\u6001")
    payload = bytes((seed + k) & 0xFF for k in range(size))
    pid = (seed >> 11) % 65535 + 1
    wire = mp.publish(mp.encode_string(topic), payload, qos, bool(retain), pid)
    stream += wire
    want.append(("PUBLISH", topic, hexs(payload), qos, retain, pid if qos else 0))
    buf = bytearray(8)
    end = mp.put_publish_head(buf, qos, bool(retain), len(mp.encode_string(topic)), size)
    check("head %d" % i, bytes(buf[:end]) == wire[:end], True)
got, rest = parse(bytes(stream))
check("round trip 40", (got == want, rest), (True, 0))
got, rest = parse(memoryview(stream)[:len(stream) - 1])  # the last one is not whole yet
check("round trip cut", (got == want[:-1], rest), (True, len(wire) - 1))

# What a broker sends
GOOD = [
    ("connack", "20020000", ("CONNACK", False, 0)), ("connack present", "20020100", ("CONNACK", True, 0)),
    ("connack refused", "20020005", ("CONNACK", False, 5)), ("puback", "40020001", ("PUBACK", 1)),
    ("pubrec", "5002ffff", ("PUBREC", 65535)), ("pubrel", "62020002", ("PUBREL", 2)),
    ("pubcomp", "70020003", ("PUBCOMP", 3)), ("unsuback", "b0020004", ("UNSUBACK", 4)),
    ("suback", "90050009000180", ("SUBACK", 9, "000180")), ("pingresp", "d000", ("PINGRESP",)),
    ("publish dup qos1 retain", "3b060001740005" + "78", ("PUBLISH", "t", "78", 1, 1, 5)),
]
for case, hex_wire, one in GOOD:
    check(case, parse(binascii.unhexlify(hex_wire)), ([one], 0))
BAD = [
    ("connect", "1000"), ("subscribe", "8200"), ("pingreq", "c000"), ("type 0", "0000"), ("type 15", "f000"),
    ("connack flags", "21020000"), ("pubrel flags", "60020001"), ("connack size", "2003000000"),
    ("connack reserved", "20020200"), ("puback size", "400100"), ("puback 0", "40020000"),
    ("pingresp body", "d00100"), ("suback short", "90020001"), ("suback 0", "9003000000"),
    ("suback code", "9003000103"), ("publish qos3", "3604000161" + "62"), ("publish short", "300100"),
    ("publish empty topic", "30020000"), ("publish topic past", "3204000961" + "62"),
    ("publish no id", "320400016100"), ("publish id 0", "32050001610000"),
]
for case, hex_wire in BAD:  # the texts themselves are asserted by test_mqtt_packet.py; printed to be compared
    said = error_of(lambda hex_wire=hex_wire: parse(binascii.unhexlify(hex_wire)))
    check("bad " + case, said[:10], "MqttError:")
    print("   %s" % said)
check("not utf-8", error_of(lambda: mp.topic_text(b"\x00\x02\xff\xfe", 2, 4)),
      "MqttError: malformed PUBLISH: topic is not UTF-8")
check("codec error is a ProtocolError", isinstance(MqttError("x"), ProtocolError), True)
check("connack reasons", [mp.connack_reason(c) for c in (0, 4, 5, 9)],
      ["accepted", "bad user name or password", "not authorised", "unknown reason 9"])

# every prefix of a stream of broker packets: whole packets only, never an error
everything = b"".join(binascii.unhexlify(w) for _c, w, _p in GOOD)
counts = []
for cut in range(len(everything) + 1):
    got, rest = parse(everything[:cut])
    counts.append(len(got))
check("prefixes", (counts[-1], counts == sorted(counts)), (len(GOOD), True))

done()
