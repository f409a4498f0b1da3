"""agent/fleet/mqtt.py at the wire: a real Mosquitto and paho as the independent peer, a hostile fake
broker for what Mosquitto never sends."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.fleet.mqtt import MqttError, Session, encode_length
from hil_tests.broker import Mosquitto, Subscriber, broker_or_skip

# MQTT Remaining Length vectors (shared/protocol-facts.md §6.3)
LENGTHS = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
           (2097152, "80808001"), (268435455, "ffffff7f")]


@pytest.mark.parametrize("n,hex_", LENGTHS)
def test_remaining_length_vectors(n: int, hex_: str) -> None:
    assert encode_length(n).hex() == hex_


def test_remaining_length_out_of_range() -> None:
    for n in (-1, 268435456):
        with pytest.raises(ValueError):
            encode_length(n)


def test_publish_qos1_is_acked_and_paho_receives_it_in_order(broker: Mosquitto) -> None:
    sub = Subscriber(broker, topic="t/#", persistent=False)
    payloads = [bytes([i]) * (i * 37 % 300) for i in range(200)]

    async def main() -> int:
        s = Session("pub-1")
        await s.connect(broker.host, broker.port)
        futures = [s.publish("t/data", p, qos=1) for p in payloads]
        await asyncio.wait_for(asyncio.gather(*[f for f in futures if f]), 10)  # every PUBACK came
        assert all(futures)
        s.publish("t/q0", b"zero", qos=0)
        inflight = s.inflight
        await s.disconnect()
        return inflight

    try:
        assert asyncio.run(main()) == 0
        assert sub.wait_for(lambda: len(sub.on("data")) == 200 and sub.on("q0") == [b"zero"], 10)
        assert sub.on("data") == payloads
    finally:
        sub.close()


def test_subscribe_receives_retained_and_live_with_the_retain_flag(broker: Mosquitto) -> None:
    async def main() -> list[tuple[str, bytes, bool]]:
        got: list[tuple[str, bytes, bool]] = []
        a = Session("a")
        await a.connect(broker.host, broker.port)
        await asyncio.wait_for(a.publish("r/x/status", b"kept", qos=1, retain=True), 5)  # type: ignore[arg-type]
        b = Session("b", on_message=lambda t, p, r: got.append((t, p, r)))
        await b.connect(broker.host, broker.port)
        assert await b.subscribe([("r/+/status", 1), ("r/+/live", 0)]) == [1, 0]
        await asyncio.wait_for(a.publish("r/x/live", b"now", qos=1), 5)  # type: ignore[arg-type]
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.05)
        await a.disconnect()
        await b.disconnect()
        return got

    assert asyncio.run(main()) == [("r/x/status", b"kept", True), ("r/x/live", b"now", False)]


def test_abort_makes_the_broker_send_the_will_and_disconnect_does_not(broker: Mosquitto) -> None:
    sub = Subscriber(broker, topic="w/#", persistent=False)

    async def main() -> None:
        for name in ("dropped", "clean"):
            s = Session(name, will=("w/%s" % name, b"offline", 1, True))
            await s.connect(broker.host, broker.port)
            if name == "dropped":
                s.abort("test")
                await s.closed  # type: ignore[misc]
            else:
                await s.disconnect()

    try:
        asyncio.run(main())
        assert sub.wait_for(lambda: sub.on("dropped") == [b"offline"], 10)
        assert sub.on("clean") == []
    finally:
        sub.close()


def test_refused_connect_names_the_reason() -> None:
    broker = broker_or_skip(users={"gw": "secret"})
    try:
        async def main(password: str) -> None:
            s = Session("gw", username="gw", password=password)
            await s.connect(broker.host, broker.port)
            await s.disconnect()

        asyncio.run(main("secret"))
        with pytest.raises(MqttError, match=r"bad user name or password|not authorised"):
            asyncio.run(main("wrong"))
    finally:
        broker.close()


def test_a_publish_without_a_connection_is_an_error() -> None:
    with pytest.raises(MqttError, match="not connected"):
        Session("x").publish("a", b"b")


async def _fake_broker(replies: list[bytes]) -> tuple[asyncio.Server, int]:
    """A broker that answers CONNECT with CONNACK, waits for the client's first packet after it, then
    sends `replies` (hostile bytes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"\x20\x02\x00\x00")
        await writer.drain()
        await reader.read(1024)
        for r in replies:
            writer.write(r)
        await writer.drain()
        try:
            await asyncio.wait_for(reader.read(1024), 5)
        except TimeoutError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("garbage,why", [
    (b"\x30\xff\xff\xff\xff\x01", "malformed remaining length"),
    (b"\x30" + encode_length(5 << 20), "limit"),
    (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
    (b"\xf0\x00", "unexpected packet type"),
    (b"\x30\x03\x00\x09a", "protocol error"),  # topic length past the packet
    (b"\x91\x03\x00\x01\x00", "malformed SUBACK: fixed header flags"),  # checks of the shared codec
    (b"\x40\x02\x00\x00", "malformed PUBACK: packet id 0"),
])
def test_hostile_bytes_end_the_session_with_a_reason_not_a_crash(garbage: bytes, why: str) -> None:
    async def main() -> str:
        server, port = await _fake_broker([garbage])
        got: list[tuple] = []
        s = Session("h", on_message=lambda *m: got.append(m), max_packet=1 << 20)
        try:
            await s.connect("127.0.0.1", port)
            pending = s.publish("a", b"b", qos=1)
            await asyncio.wait_for(s.closed, 5)  # type: ignore[arg-type]
            assert pending is not None and pending.done() and isinstance(pending.exception(), MqttError)
        finally:
            server.close()
            await server.wait_closed()
        assert got == []
        return s.error or ""

    assert why in asyncio.run(main())


def test_packets_split_across_reads_are_put_together() -> None:
    body = struct.pack(">H", 3) + b"a/b" + b"payload"

    async def main() -> list[tuple]:
        got: list[tuple] = []
        packet = b"\x31" + encode_length(len(body)) + body  # retained QoS 0 PUBLISH

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)
            writer.write(b"\x20\x02\x00\x00")
            for i in range(len(packet)):  # one byte per write
                writer.write(packet[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.2)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        s = Session("split", on_message=lambda *m: got.append(m))
        await s.connect("127.0.0.1", port)
        await asyncio.wait_for(s.closed, 5)  # type: ignore[arg-type]
        server.close()
        await server.wait_closed()
        return got

    assert asyncio.run(main()) == [("a/b", b"payload", True)]


class _Wire(asyncio.Transport):
    """A stand-in transport that records what the session writes (no network)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


def _publish_packet(topic: str, payload: bytes, qos: int, retain: bool, pid: int) -> bytes:
    body = struct.pack(">H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack(">H", pid)
    return bytes((0x30 | (qos << 1) | int(retain),)) + encode_length(len(body + payload)) + body + payload


@given(st.lists(st.tuples(st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
                          st.binary(max_size=3000), st.integers(0, 1), st.booleans()), max_size=12),
       st.lists(st.integers(1, 700), max_size=40))
@settings(max_examples=150, deadline=None)
def test_any_split_of_a_stream_of_publishes_gives_the_same_messages(messages: list, cuts: list) -> None:
    """Property: however TCP splits the broker's bytes, every PUBLISH arrives once, whole and in order,
    and a QoS 1 one is acknowledged with its packet id."""
    stream = b"".join(_publish_packet(t, p, q, r, i + 1) for i, (t, p, q, r) in enumerate(messages))
    got: list[tuple[str, bytes, bool]] = []
    s = Session("prop", on_message=lambda t, p, r: got.append((t, p, r)), max_packet=1 << 20)
    wire = _Wire()
    loop = asyncio.new_event_loop()
    try:
        async def feed() -> None:
            s.connection_made(wire)
            at = 0
            for n in [*cuts, len(stream)]:
                s.data_received(stream[at:at + n])
                at += n
                if at >= len(stream):
                    break

        loop.run_until_complete(feed())
    finally:
        loop.close()
    assert not wire.aborted
    assert got == [(t, p, r) for t, p, _q, r in messages]
    acks = [b"\x40\x02" + struct.pack(">H", i + 1) for i, (_t, _p, q, _r) in enumerate(messages) if q]
    assert wire.written == b"".join(acks)
