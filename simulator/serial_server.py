"""Serial device servers for a bus: RFC 2217 and raw TCP, each on a loopback port.

Many cabinets reach their RS-485 through such a box. `rfc2217://HOST:PORT` carries the client's UART
settings (baud, data bits, parity, stop bits) with the data, so the simulator knows them and the wire
model (simulator/wire.py) garbles what a UART at those settings would. `socket://HOST:PORT` carries
bytes only: the port runs at the bus's own settings, like a device server configured correctly.

One client at a time per server: a new connection takes the port over and the previous one is closed
(a laptop that went to sleep leaves a dead session behind; its reconnect must not be locked out).
Each connection is a new access to the bus (simulator/access.py), starting at the bus's settings.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import TYPE_CHECKING

from simulator.access import Access
from simulator.devices.base import derive_seed
from simulator.rfc2217 import ComPort, escape

if TYPE_CHECKING:
    from simulator.bus import Bus

KINDS = ("rfc2217", "socket")
SEND_TIMEOUT = 2.0  # a client that does not read for this long is dropped


class SerialServer:
    """Serves one bus to one TCP client at a time, as RFC 2217 (`kind` "rfc2217") or raw bytes ("socket")."""

    def __init__(self, bus: Bus, kind: str = "rfc2217", port: int = 0, host: str = "127.0.0.1") -> None:
        if kind not in KINDS:
            raise ValueError("serial server kind must be one of %s, not %r" % (", ".join(KINDS), kind))
        self.bus = bus
        self.kind = kind
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self.counts = {"connections": 0, "takeovers": 0}
        self._current: _Connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return "%s://%s:%d" % (self.kind, self.address[0], self.address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="%s-%s" % (self.kind, self.bus.name),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._listener.close()
        with self._lock:
            current, self._current = self._current, None
        if current is not None:
            current.close()
            current.join()

    def describe(self) -> dict:
        with self._lock:
            current = self._current
        return {"url": self.url, "client": current.peer if current is not None else None, **self.counts}

    def forget(self, conn: _Connection) -> None:
        """A connection ended: the port is free."""
        with self._lock:
            if self._current is conn:
                self._current = None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], 0.1)
                if not ready:
                    continue
                sock, peer = self._listener.accept()
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.1)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(SEND_TIMEOUT)
            with self._lock:
                previous = self._current
                self.counts["connections"] += 1
                conn = _Connection(self, sock, "%s:%d" % peer[:2], self.counts["connections"])
                self._current = conn
            if previous is not None:
                if not previous.closed.is_set():
                    self.counts["takeovers"] += 1  # the previous client was still connected
                previous.close()
                previous.join()
            conn.start()


class _Connection:
    """One client of a serial server: its socket, its Telnet state, its access to the bus."""

    def __init__(self, server: SerialServer, sock: socket.socket, peer: str, number: int) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.telnet = server.kind == "rfc2217"
        bus = server.bus
        seed = derive_seed(bus.seed, "%s:%d" % (server.kind, number))
        self.access = Access(bus, server.kind, self.send, seed=seed, peer=peer)
        self.protocol = ComPort(bus.line.settings) if self.telnet else None
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="%s-%s-%d" % (server.kind, bus.name, number),
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)

    def close(self) -> None:
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send(self, data: bytes) -> int:
        """Line data for the client (escaped on RFC 2217); 0 when the client is gone."""
        return len(data) if self._raw(escape(data) if self.telnet else data) else 0

    def _raw(self, data: bytes) -> bool:
        if not data:
            return True
        if self.closed.is_set():
            return False
        try:
            with self._send_lock:
                self.sock.sendall(data)
            return True
        except OSError:
            self.close()
            return False

    def _run(self) -> None:
        bus = self.server.bus
        access, protocol = self.access, self.protocol
        bus.attach(access)
        try:
            if protocol is not None:
                self._raw(protocol.greet())
            while not self.closed.is_set() and not self.server._stop.is_set():
                try:
                    ready, _, _ = select.select([self.sock], [], [], 0.05)
                    now = time.monotonic()
                    chunk = self.sock.recv(4096) if ready else None
                except (OSError, ValueError):
                    return
                if protocol is not None:
                    protocol.linestate(access.wire.take_errors())
                if chunk is None:
                    access.idle(now)
                    continue
                if not chunk:
                    return  # the client closed the connection
                if protocol is None:
                    access.receive(chunk, now)
                    continue
                events = protocol.feed(chunk)
                self._raw(protocol.take())
                for kind, value in events:
                    if kind == "data":
                        access.receive(value, now)
                    elif kind == "settings":
                        access.wire.set_client(value)
                    elif kind == "break" and value:
                        access.wire.client_break()
                self._raw(protocol.take())
        finally:
            bus.detach(access)
            self.closed.set()
            self.server.forget(self)
            try:
                self.sock.close()
            except OSError:
                pass
