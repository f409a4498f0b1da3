"""A small asyncio MQTT 3.1.1 client for the fleet tools: many sessions in one thread.

`fieldlink sim fleet` holds a thousand broker connections from one process; `fieldlink fleet report`
holds one. paho-mqtt (the agent's client) costs a thread or a select() per client and about three
times the CPU per message here (docs/scaling.md, "Why our own client"), so the fleet tools speak
the few packets they need themselves, over asyncio transports:

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
import struct
from collections.abc import Callable
from typing import Any

__all__ = ["CONNACK_TEXT", "MqttError", "Session", "encode_length"]

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = b"\xc0\x00"
PINGRESP = 0xD0
DISCONNECT = b"\xe0\x00"

CONNACK_TEXT = {1: "unacceptable protocol version", 2: "client identifier rejected", 3: "broker unavailable",
                4: "bad user name or password", 5: "not authorised"}


class MqttError(Exception):
    """The broker refused the session, broke the protocol, or the connection ended."""


def encode_length(n: int) -> bytes:
    """MQTT's variable-byte Remaining Length (1..4 bytes, at most 268 435 455)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError("MQTT remaining length %d is out of range" % n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string of %d bytes is over 65535" % len(raw))
    return struct.pack(">H", len(raw)) + raw


def _packet(head: int, body: bytes) -> bytes:
    return bytes((head,)) + encode_length(len(body)) + body


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
        self._send(self._connect_packet())
        try:
            code = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError:
            self.abort("no CONNACK from %s:%d within %g s" % (host, port, timeout))
            raise MqttError(self.error or "no CONNACK") from None
        if code != 0:
            self.abort("refused: %s (CONNACK %d)" % (CONNACK_TEXT.get(code, "unknown reason"), code))
            raise MqttError("broker %s:%d refused client %s: %s (CONNACK %d)" % (
                host, port, self.client_id, CONNACK_TEXT.get(code, "unknown reason"), code))
        self._schedule_ping()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                topic_bytes: bytes | None = None) -> asyncio.Future[Any] | None:
        """Send a PUBLISH; for QoS 1 a Future that is set at its PUBACK (or fails when the session
        ends first). `topic_bytes` is `_text(topic)` precomputed by a caller that publishes often."""
        if not self.up:
            raise MqttError("client %s is not connected" % self.client_id)
        head = PUBLISH | (qos << 1) | (1 if retain else 0)
        t = topic_bytes if topic_bytes is not None else _text(topic)
        if qos == 0:
            self._send(bytes((head,)) + encode_length(len(t) + len(payload)) + t + payload)
            return None
        pid = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[pid] = future
        self._send(bytes((head,)) + encode_length(len(t) + 2 + len(payload)) + t + struct.pack(">H", pid)
                   + payload)
        return future

    async def subscribe(self, topics: list[tuple[str, int]], timeout: float = 10.0) -> list[int]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS per topic (0x80: refused)."""
        if not self.up:
            raise MqttError("client %s is not connected" % self.client_id)
        pid = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[pid] = future
        body = struct.pack(">H", pid) + b"".join(_text(t) + bytes((q,)) for t, q in topics)
        self._send(_packet(SUBSCRIBE, body))
        granted: list[int] = await asyncio.wait_for(future, timeout)
        return granted

    async def disconnect(self) -> None:
        """A clean end: DISCONNECT (the broker discards the will), then close."""
        if self.up and self.transport is not None:
            self._send(DISCONNECT)
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
                n = 0
                shift = 0
                i = pos + 1
                complete = False
                for _ in range(4):
                    if i >= end:
                        break
                    b = buf[i]
                    i += 1
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        complete = True
                        break
                else:
                    raise MqttError("malformed remaining length from the broker")
                if not complete:
                    break  # the length itself is not complete yet
                if n > self.max_packet:
                    raise MqttError("the broker sent a packet of %d bytes; the limit is %d"
                                    % (n, self.max_packet))
                if end - i < n:
                    break
                self.received_packets += 1
                self._handle(buf[pos], bytes(buf[i:i + n]))
                pos = i + n
        except (MqttError, struct.error, UnicodeDecodeError, IndexError) as exc:
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

    def _connect_packet(self) -> bytes:
        flags = 0x02  # clean session
        payload = _text(self.client_id)
        if self.will is not None:
            topic, message, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _text(topic) + _text(message)
        if self.username is not None:
            flags |= 0x80
            payload += _text(self.username)
            if self.password is not None:
                flags |= 0x40
                payload += _text(self.password)
        body = _text("MQTT") + bytes((4, flags)) + struct.pack(">H", self.keepalive) + payload
        return _packet(CONNECT, body)

    def _handle(self, head: int, body: bytes) -> None:
        kind = head & 0xF0
        if kind == PUBACK:
            future = self._waiting.pop(struct.unpack_from(">H", body)[0], None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == PUBLISH:
            qos = (head >> 1) & 3
            if qos > 1:
                raise MqttError("a QoS %d delivery; this client subscribes at QoS 0 or 1 only" % qos)
            tlen = struct.unpack_from(">H", body)[0]
            at = 2 + tlen
            if at + 2 * qos > len(body):
                raise MqttError("a PUBLISH whose topic (%d bytes) runs past its packet (%d bytes)"
                                % (tlen, len(body)))
            topic = body[2:at].decode()
            if qos:
                pid = body[at:at + 2]
                at += 2
                self._send(b"\x40\x02" + pid)
            if self.on_message is not None:
                self.on_message(topic, body[at:], bool(head & 1))
        elif kind == CONNACK:
            if self._connack is not None and not self._connack.done():
                self._connack.set_result(body[1])
        elif kind == SUBACK:
            future = self._waiting.pop(struct.unpack_from(">H", body)[0], None)
            if future is not None and not future.done():
                future.set_result(list(body[2:]))
        elif kind == PINGRESP:
            self._ping_sent = 0.0
        else:
            raise MqttError("unexpected packet type 0x%02x from the broker" % head)

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
            self._send(PINGREQ)
        self._schedule_ping()
