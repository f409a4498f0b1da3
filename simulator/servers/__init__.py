"""Protocol servers: turn requests into replies with the shared codecs in `protocols/`.

Each server answers for one device: `accepts(frame)` says whether a request is addressed to it,
`handle(frame, t)` returns the reply bytes at simulated time t (None: stays silent), and
`point_value(point, t)` is what a correct client decodes for a profile point (ground truth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.device import Device


def make_server(device: Device):  # type: ignore[no-untyped-def]
    """The protocol server for a device's profile protocol."""
    protocol = device.protocol
    if protocol == "modbus":
        from simulator.servers.modbus import ModbusServer

        return ModbusServer(device)
    if protocol in ("dlt645", "dlt645_1997"):
        from simulator.servers.dlt645 import Dlt645Server

        return Dlt645Server(device)
    if protocol == "cjt188":
        from simulator.servers.cjt188 import Cjt188Server

        return Cjt188Server(device)
    if protocol == "dlt698":
        from simulator.servers.dlt698 import Dlt698Server

        return Dlt698Server(device)
    raise ValueError("device %s: protocol %r is not simulated" % (device.id, protocol))


def reader_for(protocol: str):  # type: ignore[no-untyped-def]
    """A request frame reader for a protocol (one per bus and protocol)."""
    if protocol == "modbus":
        from protocols.modbus import RtuFrameReader

        return RtuFrameReader(expect="request")
    if protocol in ("dlt645", "dlt645_1997"):
        from protocols.dlt645 import Dlt645FrameReader

        return Dlt645FrameReader()
    if protocol == "dlt698":
        from protocols.dlt698 import Dlt698FrameReader

        return Dlt698FrameReader()
    from protocols.cjt188 import Cjt188FrameReader

    return Cjt188FrameReader()


def reader_key(protocol: str) -> str:
    """DL/T 645-2007 and -1997 share one frame reader on a bus."""
    return "dlt645" if protocol == "dlt645_1997" else protocol
