"""protocols.mqtt_packet against independent implementations: paho-mqtt 2.1 (its CONNECT, PUBLISH,
SUBSCRIBE and PUBACK bytes equal ours; it decodes our PUBLISHes) on a loopback socket this test owns,
and a real Mosquitto taking our packets over a raw socket (CONNECT with will and password, SUBSCRIBE,
PUBLISH of every remaining-length size, PUBACK, PINGREQ)."""

from __future__ import annotations

import socket
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from hil_tests.broker import Mosquitto, Subscriber, broker_or_skip
from protocols import mqtt_packet as mp


class Wire:
    """A TCP connection read one whole MQTT packet at a time (framed by our read_length)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def packet(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                size, body = mp.read_length(self.buf, 0, len(self.buf))
                if size >= 0 and body + size <= len(self.buf):
                    whole, self.buf = self.buf[:body + size], self.buf[body + size:]
                    return whole
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no whole packet within %g s (have %r)" % (timeout, self.buf[:40]))
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the peer closed the connection")
            self.buf += data


def decode(wire: bytes) -> tuple:
    """One whole packet, decoded by the codec's readers (the client side's view)."""
    size, body = mp.read_length(wire, 0, len(wire))
    assert body + size == len(wire)
    head = wire[0]
    kind = mp.check_head(head)
    if kind == mp.PUBLISH:
        qos, topic_end, pid, payload = mp.read_publish(wire, body, size, head)
        return ("PUBLISH", mp.topic_text(wire, body + 2, topic_end), wire[payload:], qos, bool(head & 1), pid)
    if kind == mp.CONNACK:
        return ("CONNACK", *mp.read_connack(wire, body, size))
    if kind == mp.SUBACK:
        return ("SUBACK", *mp.read_suback(wire, body, size))
    if kind == mp.PINGRESP:
        mp.read_empty(size, kind)
        return ("PINGRESP",)
    return (mp.FROM_BROKER[kind][0], mp.read_ack(wire, body, size, kind))


class Paho:
    """A paho client connected to a listening socket of this test: the test plays the broker."""

    def __init__(self, client_id: str, keepalive: int, clean: bool, will, user, password) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.got: list[tuple] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                                  protocol=mqtt.MQTTv311)
        if will is not None:
            self.client.will_set(will[0], will[1], will[2], will[3])
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, m.qos, m.retain))
        self.client.connect("127.0.0.1", self.server.getsockname()[1], keepalive)
        conn, _ = self.server.accept()
        self.wire = Wire(conn)

    def pump(self, done, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "paho did not get there within %g s" % timeout
            self.client.loop(timeout=0.02)

    def close(self) -> None:
        self.client.disconnect()
        self.wire.sock.close()
        self.server.close()


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=30)
wills = st.none() | st.tuples(names, st.binary(max_size=50), st.integers(0, 2), st.booleans())
logins = st.sampled_from([(None, None), ("gw", None), ("gw-7", "s3cret"), ("", "")])
messages = st.lists(st.tuples(names, st.binary(max_size=300), st.integers(0, 1), st.booleans()),
                    min_size=1, max_size=6)


# a TCP connection per example: at most 40 (the profile's number when smaller)
@settings(max_examples=min(40, settings().max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(names, st.integers(0, 65535), st.booleans(), wills, logins, messages)
def test_paho_sends_our_bytes_and_reads_ours(client_id, keepalive, clean, will, login, msgs) -> None:
    user, password = login
    paho = Paho(client_id, keepalive, clean, will, user, password)
    try:
        assert paho.wire.packet() == mp.connect(client_id, keepalive, clean, will, user, password)
        paho.wire.sock.sendall(b"\x20\x02\x00\x00")
        paho.pump(paho.client.is_connected)

        for topic, payload, qos, retain in msgs:  # paho -> us: byte for byte, and our readers agree
            mid = paho.client.publish(topic, payload, qos, retain).mid
            wire = paho.wire.packet()
            assert wire == mp.publish(mp.encode_string(topic), payload, qos, retain, mid)
            assert decode(wire) == ("PUBLISH", topic, payload, qos, retain, mid if qos else 0)
            if qos:
                paho.wire.sock.sendall(mp.puback(mid))  # (paho reads it at its next loop)

        filters = [(t, q) for t, _p, q, _r in msgs]
        _rc, sub_mid = paho.client.subscribe(filters)
        assert sub_mid is not None and paho.wire.packet() == mp.subscribe(sub_mid, filters)

        for n, (topic, payload, qos, retain) in enumerate(msgs):  # us -> paho, and its PUBACK
            paho.wire.sock.sendall(mp.publish(mp.encode_string(topic), payload, qos, retain, n + 1))
            paho.pump(lambda n=n: len(paho.got) == n + 1)
            assert paho.got[n] == (topic, payload, qos, retain)
            if qos:
                assert paho.wire.packet() == mp.puback(n + 1)
    finally:
        paho.close()


def raw(broker: Mosquitto) -> Wire:
    return Wire(socket.create_connection((broker.host, broker.port), 10))


@pytest.mark.slow
def test_mosquitto_takes_our_packets() -> None:
    broker = broker_or_skip()
    try:
        talk_to(broker)
    finally:
        broker.close()


def talk_to(broker: Mosquitto) -> None:
    """Our CONNECT (will), SUBSCRIBE, PUBLISH of every length size, PUBACK and PINGREQ, to Mosquitto."""
    sub = Subscriber(broker, topic="codec/#", persistent=False)
    wire = raw(broker)
    try:
        wire.sock.sendall(mp.connect("codec-1", 30, clean=True, will=("codec/will", b"gone", 1, True)))
        assert decode(wire.packet()) == ("CONNACK", False, 0)
        wire.sock.sendall(mp.subscribe(1, [("codec/echo/#", 1), ("codec/nothing", 0)]))
        assert decode(wire.packet()) == ("SUBACK", 1, b"\x01\x00")

        sizes = [0, 1, 120, 130, 16380, 16390, 2097160]  # 1-, 2-, 3- and 4-byte remaining lengths
        for n, size in enumerate(sizes):
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            pid = 65535 - n
            wire.sock.sendall(mp.publish(mp.encode_string("codec/echo/%d" % n), payload, 1, False, pid))
            seen = [decode(wire.packet()), decode(wire.packet())]  # its PUBACK and its echo, either order
            got = {p[0]: p for p in seen}
            assert got["PUBACK"] == ("PUBACK", pid)
            echo = got["PUBLISH"]
            assert echo[1:5] == ("codec/echo/%d" % n, payload, 1, False) and echo[5] > 0
            wire.sock.sendall(mp.puback(echo[5]))

        wire.sock.sendall(mp.PINGREQ)
        assert decode(wire.packet()) == ("PINGRESP",)
        assert sub.wait_for(lambda: len(sub.messages) == len(sizes), 10)
        assert [len(p) for _t, p, _r in sub.messages] == sizes
    finally:
        wire.sock.close()  # no DISCONNECT: Mosquitto publishes the will
    try:
        assert sub.wait_for(lambda: sub.on("will") == [b"gone"], 10)
    finally:
        sub.close()


@pytest.mark.slow
def test_mosquitto_checks_the_password_we_send() -> None:
    broker = broker_or_skip(users={"gw": "secret"})
    try:
        for password, codes in (("secret", (0,)), ("wrong", (4, 5))):  # 4: bad password, 5: not authorised
            wire = raw(broker)
            try:
                wire.sock.sendall(mp.connect("codec-2", 10, username="gw", password=password))
                kind, present, code = decode(wire.packet())
                assert kind == "CONNACK" and not present and code in codes, (password, code)
                if code == 0:
                    wire.sock.sendall(mp.DISCONNECT)
            finally:
                wire.sock.close()
    finally:
        broker.close()
