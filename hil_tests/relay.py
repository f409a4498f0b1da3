"""A TCP relay between a client and a broker, for tests of what crosses the wire.

    with Relay(broker.host, broker.port) as relay:        # listens on 127.0.0.1:relay.port
        ... point the agent at relay.port ...
        relay.packets()            # [(time, "up"|"down", packet type name, remaining length), ...]
        relay.bytes()              # {"up": n, "down": n} since start (or since `mark()`)
        relay.cut()                # close every connection now (the broker keeps its sessions)
        relay.close_door()         # nothing listens on the port: connections are refused
        relay.open_door()          # listening again on the same port

"up" is client to broker. The relay parses the MQTT fixed header of every packet in both directions
(MQTT 3.1.1 and 5 share it), so a test can check the order of SUBSCRIBE, SUBACK and PUBLISH, and count
the bytes a reconnect costs. It owns its threads and sockets and stops them in `close()`.
"""

from __future__ import annotations

import socket
import threading
import time

from hil_tests.broker import free_port

TYPES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
         8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT", 15: "AUTH"}


class _Parser:
    """Splits a byte stream into MQTT packets: (type name, remaining length, first bytes of the body)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, int, bytes, int]]:
        self.buf += data
        out: list[tuple[str, int, bytes, int]] = []
        while len(self.buf) >= 2:
            length, mult, pos = 0, 1, 1
            while True:
                if pos >= len(self.buf):
                    return out
                b = self.buf[pos]
                length += (b & 0x7F) * mult
                mult <<= 7
                pos += 1
                if not b & 0x80:
                    break
            if len(self.buf) < pos + length:
                return out
            kind = TYPES.get(self.buf[0] >> 4, "?")
            out.append((kind, length, bytes(self.buf[pos:pos + min(length, 256)]), self.buf[0]))
            del self.buf[:pos + length]
        return out


class Relay:
    """See the module docstring."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self._lock = threading.Lock()
        self._packets: list[tuple[float, str, str, int, bytes, int]] = []
        self._bytes = {"up": 0, "down": 0}
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.connections = 0
        self.open_door()

    # -- control ---------------------------------------------------------------------------------

    def open_door(self) -> None:
        """Listen on the relay's port (again)."""
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 5
            while True:
                try:
                    s.bind((self.host, self.port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        s.close()
                        raise
                    time.sleep(0.05)
            s.listen(16)
            self._listener = s
        t = threading.Thread(target=self._accept, args=(s,), daemon=True)
        t.start()
        self._threads.append(t)

    def close_door(self) -> None:
        """Stop listening (new connections are refused); open connections stay."""
        with self._lock:
            s, self._listener = self._listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress (close alone would not)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        """Close every relayed connection at once (no DISCONNECT: the broker sends the will)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        self._closed = True
        self.close_door()
        self.cut()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what crossed ----------------------------------------------------------------------------

    def packets(self, since: float = 0.0) -> list[tuple[float, str, str, int, bytes, int]]:
        """(time, direction, type, remaining length, body head, first byte) of every packet after `since`."""
        with self._lock:
            return [p for p in self._packets if p[0] >= since]

    def bytes(self, since: float = 0.0) -> dict[str, int]:
        """Bytes per direction of the packets after `since` (whole packets, headers included)."""
        out = {"up": 0, "down": 0}
        for _t, direction, _kind, length, _body, _first in self.packets(since):
            out[direction] += 1 + _vbi_size(length) + length
        return out

    # -- pumping ---------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
                self.connections += 1
            for src, dst, direction in ((client, upstream, "up"), (upstream, client, "down")):
                t = threading.Thread(target=self._pump, args=(src, dst, direction), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        parser = _Parser()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                now = time.time()
                with self._lock:
                    for kind, length, body, first in parser.feed(data):
                        self._packets.append((now, direction, kind, length, body, first))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()


def _vbi_size(n: int) -> int:
    size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


def publish_topic(body: bytes) -> str:
    """The topic of a PUBLISH body (the first bytes the relay kept)."""
    if len(body) < 2:
        return ""
    n = (body[0] << 8) | body[1]
    return body[2:2 + n].decode("utf-8", "replace")


__all__ = ["Relay", "publish_topic"]
