"""A small asyncio MQTT 3.1.1 client for the fleet tools: many sessions in one thread.

`fieldlink sim fleet` holds a thousand broker connections from one process; `fieldlink fleet report`
holds one. paho-mqtt (the agent's client) costs a thread or a select() per client and about three
times the CPU per message here (docs/scaling.md, "Why our own client"), so the fleet tools speak
the few packets they need themselves, over asyncio transports; the packets are built and checked by
protocols/mqtt_packet.py, the codec the board's client (firmware_py/mqtt.py) uses too:

    session = Session("gw-0001", will=("fieldlink/s/gw-0001/status", will_bytes, 1, True),
                      on_message=handle)          # handle(topic, payload, retain)
    await session.connect("127.0.0.1", 1883)     # CONNACK refused -> MqttError naming the reason
    done = session.publish(topic, payload, qos=1, retain=False)   # a Future, set at PUBACK
    await session.subscribe([("fieldlink/+/+/cmd", 1)])
    session.abort()                               # drop the TCP connection: the broker sends the will
    await session.disconnect()                    # DISCONNECT: no will

Only what the fleet tools use: clean sessions, QoS 0 and 1 (a QoS 2 delivery is a protocol error
here: nothing subscribes at QoS 2), no TLS. Everything a broker sends is bounded: a packet over
`max_packet` bytes or a malformed one ends the session with an `MqttError` saying what came, never a
crash of the other sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from protocols import mqtt_packet as packets
from protocols.mqtt_packet import CONNACK, PINGRESP, PUBACK, PUBLISH, SUBACK, MqttError, encode_length

__all__ = ["MqttError", "Session", "encode_length"]


class Session(asyncio.Protocol):
    """One MQTT connection (see the module docstring). Not thread-safe: use it from its loop only."""

    def __init__(self, client_id: str, keepalive: int = 60,
                 will: tuple[str, bytes, int, bool] | None = None,
                 on_message: Callable[[str, bytes, bool], Any] | None = None,
                 username: str | None = None, password: str | None = None,
                 max_packet: int = 1 << 20) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self.will = will
        self.on_message = on_message
        self.username = username
        self.password = password
        self.max_packet = max_packet
        self.transport: asyncio.Transport | None = None
        self.error: str | None = None  # why the session ended (None: still up, or a clean disconnect)
        self.closed: asyncio.Future[None] | None = None  # set when the connection is gone
        self._buf = bytearray()
        self._connack: asyncio.Future[int] | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}  # packet id -> PUBACK / SUBACK future
        self._next_id = 0
        self._ping: asyncio.TimerHandle | None = None
        self._ping_sent = 0.0
        self._last_in = 0.0
        self.sent_packets = 0
        self.sent_bytes = 0
        self.received_packets = 0
        self.received_bytes = 0

    # -- public ----------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self.transport is not None and self.closed is not None and not self.closed.done()

    async def connect(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Open the TCP connection, send CONNECT, wait for an accepting CONNACK."""
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self._connack = loop.create_future()
        self.error = None
        self._buf = bytearray()
        self._ping_sent = 0.0
        await asyncio.wait_for(loop.create_connection(lambda: self, host, port), timeout)
        self._send(packets.connect(self.client_id, self.keepalive, True, self.will, self.username,
                                   self.password))
        try:
            code = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError:
            self.abort("no CONNACK from %s:%d within %g s" % (host, port, timeout))
            raise MqttError(self.error or "no CONNACK") from None
        if code != 0:
            self.abort("refused: %s (CONNACK %d)" % (packets.connack_reason(code), code))
            raise MqttError("broker %s:%d refused client %s: %s (CONNACK %d)" % (
                host, port, self.client_id, packets.connack_reason(code), code))
        self._schedule_ping()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                topic_bytes: bytes | None = None) -> asyncio.Future[Any] | None:
        """Send a PUBLISH; for QoS 1 a Future that is set at its PUBACK (or fails when the session
        ends first). `topic_bytes` is `encode_string(topic)` (protocols/mqtt_packet.py) precomputed by
        a caller that publishes often."""
        if not self.up:
            raise MqttError("client %s is not connected" % self.client_id)
        t = topic_bytes if topic_bytes is not None else packets.encode_string(topic)
        if qos == 0:
            self._send(packets.publish(t, payload, 0, retain))
            return None
        pid = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[pid] = future
        self._send(packets.publish(t, payload, qos, retain, pid))
        return future

    async def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS per topic (0x80: refused)."""
        if not self.up:
            raise MqttError("client %s is not connected" % self.client_id)
        pid = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[pid] = future
        self._send(packets.subscribe(pid, topics))
        granted: list[int] = await asyncio.wait_for(future, timeout)
        return granted

    async def disconnect(self) -> None:
        """A clean end: DISCONNECT (the broker discards the will), then close."""
        if self.up and self.transport is not None:
            self._send(packets.DISCONNECT)
            self.transport.close()
        if self.closed is not None:
            await asyncio.shield(self.closed)

    def abort(self, why: str = "aborted") -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the will."""
        if self.error is None:
            self.error = why
        if self.transport is not None:
            self.transport.abort()

    @property
    def inflight(self) -> int:
        return len(self._waiting)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._last_in = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and exc is not None:
            self.error = "connection lost: %s" % exc
        elif self.error is None and self._connack is not None and not self._connack.done():
            self.error = "the broker closed the connection before CONNACK"
        why = MqttError(self.error or "connection closed")
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(why)
            self._connack.exception()  # retrieved: no "never retrieved" warning if nobody waits
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(why)
                future.exception()
        self._waiting.clear()
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        self.transport = None
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.received_bytes += len(data)
        self._last_in = asyncio.get_running_loop().time()
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 2:
                size, body = packets.read_length(buf, pos, end)
                if size < 0:
                    break  # the length itself is not complete yet
                if size > self.max_packet:
                    raise MqttError("the broker sent a packet of %d bytes; the limit is %d"
                                    % (size, self.max_packet))
                if end - body < size:
                    break
                self.received_packets += 1
                self._handle(buf, buf[pos], body, size)
                pos = body + size
        except MqttError as exc:
            self.abort("protocol error: %s" % exc)
            return
        if pos:
            del buf[:pos]

    # -- internals -------------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.sent_packets += 1
            self.sent_bytes += len(data)

    def _new_id(self) -> int:
        for _ in range(65536):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._waiting:
                return self._next_id
        raise MqttError("65535 messages in flight on client %s" % self.client_id)

    def _handle(self, buf: bytearray, head: int, body: int, size: int) -> None:
        """One whole packet from the broker: its first byte `head`, its body buf[body:body + size]."""
        kind = packets.check_head(head)
        if kind == PUBACK:
            future = self._waiting.pop(packets.read_ack(buf, body, size, kind), None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == PUBLISH:
            qos, topic_end, pid, payload = packets.read_publish(buf, body, size, head)
            if qos > 1:
                raise MqttError("a QoS %d delivery; this client subscribes at QoS 0 or 1 only" % qos)
            topic = packets.topic_text(buf, body + 2, topic_end)
            if qos:
                self._send(packets.puback(pid))
            if self.on_message is not None:
                self.on_message(topic, bytes(buf[payload:body + size]), bool(head & 1))
        elif kind == CONNACK:
            _present, code = packets.read_connack(buf, body, size)
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(code)
        elif kind == SUBACK:
            pid, codes = packets.read_suback(buf, body, size)
            future = self._waiting.pop(pid, None)
            if future is not None and not future.done():
                future.set_result(list(codes))
        elif kind == PINGRESP:
            packets.read_empty(size, kind)
            self._ping_sent = 0.0
        else:
            raise MqttError("unexpected packet type %d (first byte 0x%02x) from the broker"
                            % (kind >> 4, head))

    def _schedule_ping(self) -> None:
        if self.keepalive:
            self._ping = asyncio.get_running_loop().call_later(self.keepalive / 2, self._keepalive)

    def _keepalive(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._ping_sent and now - self._ping_sent > self.keepalive:
            self.abort("no answer from the broker within the keep-alive of %d s" % self.keepalive)
            return
        if not self._ping_sent:
            self._ping_sent = now
            self._send(packets.PINGREQ)
        self._schedule_ping()
