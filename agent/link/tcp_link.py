"""Modbus TCP links: a socket to `tcp://host:port`, reconnected with a backoff when it drops.

The MBAP frame reader is the codec's (`protocols.modbus.MbapFrameReader`), re-exported here.
"""

from __future__ import annotations

import select
import socket
from typing import Any

from agent.link.base import Link, LinkClosed
from protocols.modbus import MbapFrameReader

__all__ = ["MbapFrameReader", "TcpLink", "parse_tcp_url"]


def parse_tcp_url(url: str, default_port: int = 502) -> tuple[str, int]:
    """`tcp://host:port` -> (host, port); ValueError when malformed."""
    rest = url.split("://", 1)[1] if "://" in url else url
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [v6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:
        host, port_text = rest, ""
    if not host:
        raise ValueError("no host in %r" % url)
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ValueError("port %d outside 1..65535" % port)
    return host, port


class TcpLink(Link):
    """Modbus TCP client connection."""

    def __init__(self, name: str, port: str, timeout: float = 1.0, turnaround: float = 0.0,
                 pause: float = 0.0, connect_timeout: float = 3.0) -> None:
        Link.__init__(self, name, port, timeout=timeout, turnaround=turnaround, pause=pause)
        self.host, self.tcp_port = parse_tcp_url(port)
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None

    @classmethod
    def from_bus(cls, bus: Any) -> TcpLink:
        return cls(bus.name, bus.port, timeout=bus.timeout_ms / 1000.0,
                   turnaround=bus.turnaround_ms / 1000.0, pause=bus.pause_ms / 1000.0)

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.tcp_port), timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise LinkClosed("%s: not connected to %s" % (self.name, self.port))
        try:
            sock.setblocking(True)
            sock.settimeout(max(2.0, self.timeout))
            sock.sendall(data)
        except OSError as exc:
            raise self.lost("send to %s failed: %s" % (self.port, exc)) from None
        finally:
            if self._sock is not None:
                self._sock.setblocking(False)

    def _read(self, max_bytes: int, timeout: float) -> bytes:
        sock = self._sock
        if sock is None:
            raise LinkClosed("%s: not connected to %s" % (self.name, self.port))
        try:
            ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
            if not ready:
                return b""
            data = sock.recv(max_bytes)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise self.lost("receive from %s failed: %s" % (self.port, exc)) from None
        if not data:
            raise self.lost("connection to %s closed by the server" % self.port)
        return data
