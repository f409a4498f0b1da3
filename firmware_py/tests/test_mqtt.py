"""The firmware's own MQTT 3.1.1 client (firmware_py/mqtt.py) under CPython: a real Mosquitto for
packet ids past 65535 and oversized messages, a scripted socket for whatever a broker could send."""

from __future__ import annotations

import asyncio
import errno
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_py.mqtt import Client, MqttError, topic_item
from hil_tests.broker import Subscriber, broker_or_skip


class TcpSocket:
    """The firmware's socket adapter contract (hw.Socket) on a CPython non-blocking socket."""

    def __init__(self) -> None:
        self.s: socket.socket | None = None

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        self.s = socket.create_connection((host, port), timeout_ms / 1000)
        self.s.setblocking(False)

    def write(self, buf) -> int:
        try:
            return self.s.send(buf)  # type: ignore[union-attr]
        except BlockingIOError:
            return 0

    def readinto(self, buf) -> int:
        try:
            n = self.s.recv_into(buf)  # type: ignore[union-attr]
        except BlockingIOError:
            return 0
        return n if n > 0 else -1

    def close(self) -> None:
        if self.s is not None:
            self.s.close()
            self.s = None


class Board:
    def __init__(self, sock_factory=TcpSocket) -> None:
        self.sock_factory = sock_factory

    def socket(self):
        return self.sock_factory()


async def until(client: Client, predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        client.poll()
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


@pytest.mark.slow
def test_packet_ids_wrap_past_65535_and_every_puback_arrives():
    broker = broker_or_skip()
    try:
        sub = Subscriber(broker, "fw/wrap/#")
        acked: list[int] = []

        async def go() -> list[int]:
            c = Client(Board(), "fw-wrap", 10)
            c.on_puback = acked.append
            await c.connect("127.0.0.1", broker.port)
            c.pid = 65532
            pids = [await c.publish(topic_item("fw/wrap/%d" % i), b"pack %d" % i, 1) for i in range(6)]
            await until(c, lambda: len(acked) == 6)
            await c.disconnect()
            return pids

        pids = asyncio.run(go())
        assert pids == [65533, 65534, 65535, 1, 2, 3]  # 0 is never a packet id
        assert sorted(acked) == sorted(pids)
        assert sub.wait_for(lambda: len(sub.messages) == 6, 5)
        assert [m[1] for m in sub.messages] == [b"pack %d" % i for i in range(6)]
        sub.close()
    finally:
        broker.close()


@pytest.mark.slow
def test_oversized_incoming_message_is_dropped_counted_and_the_session_goes_on():
    broker = broker_or_skip()
    try:
        import paho.mqtt.client as mqtt

        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fw-pub")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        got: list[bytes] = []

        async def go() -> Client:
            c = Client(Board(), "fw-small", 10, rx_size=64)
            c.on_message = lambda topic, payload, retain: got.append(bytes(topic) + b" " + bytes(payload))
            await c.connect("127.0.0.1", broker.port)
            await c.subscribe("fw/cmd", 1)
            await asyncio.sleep(0.3)
            pub.publish("fw/cmd", b"x" * 1000, qos=1).wait_for_publish(5)
            pub.publish("fw/cmd", b"small", qos=1).wait_for_publish(5)
            await until(c, lambda: got)
            acked: list[int] = []
            c.on_puback = acked.append
            pid = await c.publish(topic_item("fw/after"), b"still here", 1)
            await until(c, lambda: acked == [pid])
            await c.disconnect()
            return c

        c = asyncio.run(go())
        pub.loop_stop()
        pub.disconnect()
        assert got == [b"fw/cmd small"]
        assert c.oversized == 1
    finally:
        broker.close()


class ScriptedSocket:
    """Hands the client chosen bytes in chosen chunks; records what the client wrote."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.sent = bytearray()

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        pass

    def write(self, buf) -> int:
        self.sent += bytes(buf)
        return len(buf)

    def readinto(self, buf) -> int:
        if not self.chunks:
            return 0
        data = self.chunks.pop(0)
        n = min(len(buf), len(data))
        buf[:n] = data[:n]
        if n < len(data):
            self.chunks.insert(0, data[n:])
        return n

    def close(self) -> None:
        pass


CONNACK = b"\x20\x02\x00\x00"


def connected_client(chunks: list[bytes], rx_size: int = 64) -> tuple[Client, ScriptedSocket]:
    sock = ScriptedSocket([CONNACK])
    c = Client(Board(lambda: sock), "fw", 10, rx_size=rx_size)
    asyncio.run(c.connect("h", 1))
    sock.chunks = list(chunks)
    return c, sock


@pytest.mark.parametrize("data, why", [
    (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
    (b"\x20\x02\x00\x05", "not authorised"),
    (b"\x20\x03\x00\x00\x00", "malformed CONNACK"),
    (b"\x40\x01\x00", "malformed PUBACK"),
    (b"\x32\x04\x00\x09ab", "topic longer than the packet"),
    (b"\x36\x04\x00\x01ab", "malformed PUBLISH"),
    (b"\x10\x00", "unexpected packet type 1"),
    (b"\x40\x02\x00\x00", "malformed PUBACK: packet id 0"),  # checks of the shared codec
    (b"\xd0\x01\x00", "malformed PINGRESP"),
    (b"\x60\x02\x00\x01", "malformed PUBREL: fixed header flags"),
])
def test_broken_packets_are_mqtt_errors(data, why):
    c, _ = connected_client([data])
    with pytest.raises(MqttError, match=why):
        c.poll()


def test_commands_in_pieces_and_qos1_acknowledged():
    got = []
    publish = b"\x32\x0c\x00\x03cmd\x12\x34hello"
    c, sock = connected_client([publish[:1], publish[1:5], publish[5:] + b"\xd0\x00"])
    c.on_message = lambda t, p, r: got.append((bytes(t), bytes(p), r))
    c.ping_sent = 1
    while sock.chunks:
        c.poll()
    assert got == [(b"cmd", b"hello", False)]
    assert sock.sent.endswith(b"\x40\x02\x12\x34") and c.ping_sent == 0


def test_the_retain_flag_of_a_delivery_is_reported():
    got = []
    retained = b"\x33\x0c\x00\x03cmd\x00\x01hello"  # PUBLISH, QoS 1, retain
    c, sock = connected_client([retained])
    c.on_message = lambda t, p, r: got.append((bytes(p), r))
    while sock.chunks:
        c.poll()
    assert got == [(b"hello", True)]


def test_oversized_packet_skipped_across_reads():
    got = []
    big = b"\x30\xc8\x01\x00\x03big" + b"z" * 195  # 200 bytes of body, rx is 64
    small = b"\x30\x07\x00\x03cmdok"
    c, sock = connected_client([big[:50], big[50:120], big[120:] + small])
    c.on_message = lambda t, p, r: got.append(bytes(p))
    while sock.chunks:
        c.poll()
    assert got == [b"ok"] and c.oversized == 1


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=12), st.integers(8, 128))
def test_any_bytes_from_the_broker_never_crash_the_client(chunks, rx_size):
    c, sock = connected_client(chunks, rx_size)
    c.on_message = lambda t, p, r: (bytes(t), bytes(p))
    c.on_puback = lambda pid: None
    try:
        while sock.chunks:
            c.poll()
    except (MqttError, OSError):
        pass  # the uplink closes and reconnects


def test_socket_closed_by_the_broker_is_an_oserror():
    c, sock = connected_client([])
    sock.readinto = lambda buf: -1  # type: ignore[method-assign]
    with pytest.raises(OSError) as exc:
        c.poll()
    assert exc.value.args[0] == errno.ECONNRESET
