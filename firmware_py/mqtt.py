"""A small MQTT 3.1.1 client for the firmware, over a non-blocking socket adapter.

Why not umqtt.simple: it waits for each PUBACK before returning (the poll loop would stall on a slow
broker) and its packet id does not wrap at 65535. Here QoS 1 publishes return at once with their
packet id; PUBACKs arrive through `poll()` and call `on_puback(pid)`, so the caller can keep a window
of packs in flight and acknowledge them in the flash ring. Packet ids wrap 1..65535 (0 is never used).
The keep-alive is our own schedule: PINGREQ when nothing was sent for keepalive/2 seconds, and the
connection is declared dead when nothing came back within keepalive seconds of a PINGREQ.

Reconnects (`Backoff`) follow the agent's failover schedule for one endpoint (agent/endpoints.py):
after a session ends, a random point of [0, reconnect_min]; a broker that worked and now refuses TCP
is probed every [probe/2, probe] for probe_window, then the delay doubles up to reconnect_max; any
other failure backs off exponentially from reconnect_min. Draws come from a generator seeded per board
(client id and clock), so a street of gateways that lost the same broker does not come back in lockstep.

The session is persistent unless `clean` is set: the broker keeps our subscription and queues commands
while we are away, and CONNACK's `session_present` tells whether it still holds them. The will is set
by `on_open` (called once TCP is up, before CONNECT), so it can carry this connection's number.

The packets are protocols/mqtt_packet.py's (the codec the fleet tools' client shares): this module is
the socket loop around it. Whatever a broker sends is either handled or an MqttError naming the broken
packet (the uplink closes and reconnects); a packet larger than the receive buffer is skipped and
counted (`oversized`).

The socket adapter (firmware_py.hw) offers: `await connect(host, port)`, `write(buf) -> n`
(non-blocking, may be short), `readinto(buf) -> n` (0: nothing now, -1: closed), `close()`.
"""

import binascii
import random
import struct

from firmware_py import rt
from protocols import mqtt_packet as packets
from protocols.mqtt_packet import CONNACK, PINGREQ, PINGRESP, PUBACK, PUBLISH, SUBACK, MqttError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



JITTER_BITS = 10  # the jitter's resolution: 1/1024 of the delay (small ints, no long arithmetic)
UP = 0  # a session was accepted (and has ended)
UNREACHABLE = 1  # no TCP connection (refused, timeout, no route)
REFUSED = 2  # TCP up, but no accepted CONNACK (refused, closed, timeout)


def jitter_bits(client_id: str):
    """`getrandbits(n)` of a generator seeded from this board: its client id (unique on a street) and
    the clock (ticks since reset, which differ between boards that power up together by the time
    Wi-Fi is up). MicroPython has one generator (`random.seed`); CPython gets its own instance."""
    seed = binascii.crc32(client_id.encode()) ^ rt.ticks_ms()
    seed &= 0x3FFFFFFF
    try:
        return random.Random(seed).getrandbits  # type: ignore[attr-defined]
    except AttributeError:  # MicroPython
        random.seed(seed)
        return random.getrandbits


def doubled(base: int, times: int, cap: int) -> int:
    """min(cap, base * 2**times) without long integers."""
    d = base
    for _ in range(times):
        if d >= cap:
            break
        d <<= 1
    return min(d, cap)


class Backoff:
    """Reconnect delays (ms) of one endpoint, the agent's schedule (agent/endpoints.py Failover):
    `next_ms(outcome)` after an attempt: UP (a session was accepted and ended) -> [0, low];
    UNREACHABLE on a broker that worked, within `window_ms` of the outage -> [probe/2, probe]; then
    d = min(high, probe * 2**late) -> [d/2, d]; anything else -> d = min(high, low * 2**(failures-1))
    -> [d/2, d]. `bits` is a getrandbits (tests pass their own), `clock` ticks in ms."""

    def __init__(self, low_ms: int, high_ms: int, bits, probe_ms: int = 1500, window_ms: int = 300000,
                 clock=rt.ticks_ms) -> None:
        self.low_ms = low_ms
        self.high_ms = high_ms
        self.probe_ms = probe_ms
        self.window_ms = window_ms
        self.bits = bits
        self.clock = clock
        self.good = False  # a session was accepted here
        self.failures = 0  # failed attempts since the last accepted session
        self.late = 0  # failed probes after the window
        self.down_since = -1  # ticks when the outage began (-1: not down)
        self.last_ms = 0

    def draw(self, lo: int, hi: int) -> int:
        return lo + ((hi - lo) * self.bits(JITTER_BITS) >> JITTER_BITS)

    def next_ms(self, outcome: int) -> int:
        now = self.clock()
        if outcome == UP:
            self.good = True
            self.failures = 0
            self.late = 0
            self.down_since = now
            self.last_ms = self.draw(0, self.low_ms)
            return self.last_ms
        if self.down_since < 0:
            self.down_since = now
        self.failures = min(self.failures + 1, 64)
        if self.good and outcome == UNREACHABLE:
            if rt.ticks_diff(now, self.down_since) < self.window_ms:
                d = self.probe_ms
            else:
                self.late = min(self.late + 1, 64)
                d = doubled(self.probe_ms, self.late, self.high_ms)
        else:
            d = doubled(self.low_ms, self.failures - 1, self.high_ms)
        self.last_ms = self.draw(d >> 1, d)
        return self.last_ms


def topic_item(topic: str) -> bytes:
    """A topic as MQTT puts it on the wire: 2-byte length + UTF-8 (precomputed once)."""
    return packets.encode_string(topic)


class Client:
    """One MQTT session at a time; `connect` again after `close` (persistent session unless `clean`)."""

    def __init__(self, hw, client_id: str, keepalive: int = 30, user=None, password=None,
                 will=None, rx_size: int = 512, clean: bool = False) -> None:
        self.hw = hw
        self.client_id = client_id
        self.keepalive = keepalive
        self.user = user
        self.password = password
        self.will = will  # (topic, payload bytes, qos, retain) or None; `on_open` may set it
        self.clean = clean
        self.session_present = False  # CONNACK: the broker still holds our session
        self.tcp_up = False  # the last connect got as far as a TCP connection
        self.on_open: Any = None  # callable(), after TCP is up and before CONNECT
        self.on_suback: Any = None  # callable(pid, granted: bool)
        self.sock: Any = None
        self.pid = 0
        self.head = bytearray(8)
        self.rx = bytearray(rx_size)
        self.rx_len = 0
        self.skip = 0  # bytes left of an incoming packet too big for rx
        self.oversized = 0  # incoming packets dropped because they do not fit rx
        self.on_puback: Any = None  # callable(pid)
        self.on_message: Any = None  # callable(topic_bytes_view, payload_view, retained: bool)
        self.last_tx = 0
        self.last_rx = 0
        self.ping_sent = 0
        self.connected = False
        self.pings = 0

    # -- output ---------------------------------------------------------------------------------
    async def _send(self, data) -> None:
        view = memoryview(data)
        sent = 0
        deadline = rt.ticks_add(rt.ticks_ms(), 10000)
        while sent < len(view):
            n = self.sock.write(view[sent:])
            if n is None or n < 0:
                raise OSError(104)
            if n == 0:
                if rt.ticks_diff(deadline, rt.ticks_ms()) < 0:
                    raise OSError(110)
                await rt.sleep_ms(2)
            sent += n
        self.last_tx = rt.ticks_ms()

    def next_pid(self) -> int:
        self.pid = self.pid + 1 if self.pid < 0xFFFF else 1
        return self.pid

    async def connect(self, host: str, port: int, timeout_ms: int = 10000) -> None:
        """Open the socket, send CONNECT (with the will), wait for CONNACK."""
        self.close()
        self.tcp_up = False
        self.session_present = False
        self.sock = self.hw.socket()
        await self.sock.connect(host, port)
        self.tcp_up = True
        if self.on_open is not None:
            self.on_open()
        # unacknowledged packs are resent from the flash ring either way: a persistent session only keeps
        # our subscription and the commands queued for us
        user = self.user or None
        await self._send(packets.connect(self.client_id, self.keepalive, self.clean, self.will or None, user,
                                         (self.password or None) if user else None))
        self.rx_len = 0
        self.skip = 0
        self.connected = False
        deadline = rt.ticks_add(rt.ticks_ms(), timeout_ms)
        while not self.connected:
            self.poll()
            if rt.ticks_diff(deadline, rt.ticks_ms()) < 0:
                raise OSError(110)
            await rt.sleep_ms(5)
        self.last_rx = rt.ticks_ms()
        self.ping_sent = 0

    async def begin_publish(self, topic: bytes, length: int, qos: int = 0, retain: bool = False) -> int:
        """Send the head of a PUBLISH whose payload of `length` bytes follows through `send`;
        returns the packet id (0 for QoS 0). Lets a payload be streamed from flash."""
        head = self.head
        end = packets.put_publish_head(head, qos, retain, len(topic), length)
        pid = 0
        if qos:
            pid = self.next_pid()
            struct.pack_into(">H", head, end, pid)  # sent after the topic, from the same buffer
        await self._send(memoryview(head)[:end])
        await self._send(topic)
        if qos:
            await self._send(memoryview(head)[end : end + 2])
        return pid

    async def send(self, data) -> None:
        """Part of a payload announced by `begin_publish`."""
        await self._send(data)

    async def publish(self, topic: bytes, payload, qos: int = 0, retain: bool = False) -> int:
        """Send PUBLISH (topic from `topic_item`); returns the packet id (0 for QoS 0)."""
        pid = await self.begin_publish(topic, len(payload), qos, retain)
        await self._send(payload)
        return pid

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        pid = self.next_pid()
        await self._send(packets.subscribe(pid, [(topic, qos)]))
        return pid

    async def disconnect(self) -> None:
        """Clean DISCONNECT: the broker discards the will."""
        if self.sock is not None:
            try:
                await self._send(packets.DISCONNECT)
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        self.connected = False
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    async def keep_alive(self) -> None:
        """PINGREQ on schedule; OSError(110) when the broker went quiet."""
        now = rt.ticks_ms()
        half = self.keepalive * 500
        if self.ping_sent and rt.ticks_diff(now, self.ping_sent) > half * 2:
            raise OSError(110)
        if not self.ping_sent and rt.ticks_diff(now, self.last_tx) >= half:
            self.ping_sent = now or 1
            self.pings += 1
            await self._send(PINGREQ)

    # -- input ----------------------------------------------------------------------------------
    def poll(self) -> int:
        """Read what arrived and handle every complete packet; returns how many were handled."""
        sock = self.sock
        if sock is None:
            raise OSError(107)
        handled = 0
        rx = self.rx
        while True:
            if self.rx_len >= len(rx):  # a packet larger than rx: drop it (see skip)
                self._drop_oversized()
            n = sock.readinto(memoryview(rx)[self.rx_len :])
            if n is None or n == 0:
                break
            if n < 0:
                raise OSError(104)
            self.last_rx = rt.ticks_ms()
            self.rx_len += n
            if self.skip:
                take = min(self.skip, self.rx_len)
                self._consume(take)
                self.skip -= take
            handled += self._parse()
        return handled

    def _drop_oversized(self) -> None:
        size, start = packets.read_length(self.rx, 0, self.rx_len)
        if size < 0:
            raise MqttError("malformed remaining length")
        self.oversized += 1
        self.skip = start + size - self.rx_len
        self.rx_len = 0

    def _consume(self, n: int) -> None:
        left = self.rx_len - n
        if left > 0:
            self.rx[0:left] = self.rx[n : self.rx_len]
        self.rx_len = left

    def _parse(self) -> int:
        """Handle every complete packet in rx. A packet that breaks the protocol raises MqttError
        (the caller closes and reconnects); nothing a broker sends can raise anything else."""
        handled = 0
        rx = self.rx
        while self.rx_len >= 2:
            size, start = packets.read_length(rx, 0, self.rx_len)
            if size < 0 or start + size > self.rx_len:
                break
            kind = packets.check_head(rx[0])
            if kind == CONNACK:
                present, code = packets.read_connack(rx, start, size)
                if code:
                    raise MqttError("broker refused: %s" % packets.connack_reason(code))
                self.session_present = present and not self.clean
                self.connected = True
            elif kind == PUBACK:
                pid = packets.read_ack(rx, start, size, kind)
                if self.on_puback is not None:
                    self.on_puback(pid)
            elif kind == PINGRESP:
                packets.read_empty(size, kind)
                self.ping_sent = 0
            elif kind == SUBACK:
                pid, codes = packets.read_suback(rx, start, size)
                if self.on_suback is not None:
                    self.on_suback(pid, codes[0] < 0x80)
            elif kind == PUBLISH:
                self._incoming(start, size)
            else:  # UNSUBACK, PUBREC, PUBREL, PUBCOMP: never asked for; checked, then let go
                packets.read_ack(rx, start, size, kind)
            self._consume(start + size)
            handled += 1
        return handled

    def _incoming(self, start: int, size: int) -> None:
        rx = self.rx
        qos, topic_end, pid, body = packets.read_publish(rx, start, size, rx[0])
        if self.on_message is not None:
            view = memoryview(rx)
            self.on_message(view[start + 2 : topic_end], view[body : start + size], bool(rx[0] & 1))
        if qos:  # PUBACK straight away (QoS 2 is never subscribed); a command is handled once per arrival
            self.sock.write(packets.puback(pid))
