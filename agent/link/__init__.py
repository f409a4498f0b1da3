"""Links: the byte transports under the drivers (serial via pyserial URLs, Modbus TCP sockets).

`open_link(bus)` picks the implementation from the bus port: `tcp://host:port` is Modbus TCP
(MBAP framing on a socket); `virtual://NAME` an in-memory bus of this process (agent/link/virtual.py,
for tests); anything else (a device path, `socket://`, `rfc2217://`, `loop://`) goes through
pyserial's `serial_for_url`.
"""

from __future__ import annotations

from typing import Any

from agent.link.base import Link, LinkClosed, LinkError, LinkTimeout

__all__ = ["Link", "LinkClosed", "LinkError", "LinkTimeout", "is_tcp_port", "open_link"]


def is_tcp_port(port: str) -> bool:
    """True when a bus port names a Modbus TCP server (`tcp://host:port`)."""
    return port.lower().startswith("tcp://")


def open_link(bus: Any) -> Link:
    """Build (but do not open) the link for a BusConfig."""
    port = bus.port
    if port.startswith("virtual://"):
        from agent.link.virtual import VirtualLink

        return VirtualLink.from_bus(bus)
    if is_tcp_port(port):
        from agent.link.tcp_link import TcpLink

        return TcpLink.from_bus(bus)
    from agent.link.serial_link import SerialLink

    return SerialLink.from_bus(bus)
