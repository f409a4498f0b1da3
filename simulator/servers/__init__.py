"""Protocol servers: turn requests into replies with the shared codecs in `protocols/`.

Each server answers for one device: `accepts(frame)` says whether a request is addressed to it,
`handle(frame, t)` returns the reply bytes at simulated time t (None: stays silent), and
`point_value(point, t)` is what a correct client decodes for a profile point (ground truth).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from protocols import registry

if TYPE_CHECKING:
    from simulator.device import Device


def make_server(device: Device):  # type: ignore[no-untyped-def]
    """The protocol server for a device's profile protocol (the family's `simulator` class)."""
    where = registry.family(device.protocol).simulator
    if not where:
        raise ValueError("device %s: protocol %r is not simulated" % (device.id, device.protocol))
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)(device)


def reader_for(protocol: str):  # type: ignore[no-untyped-def]
    """A request frame reader for a protocol (one per bus and protocol family)."""
    return registry.device(protocol).request_reader()


def reply_address(device: Device, address: str) -> str:
    """The address a meter's reply carries: its own `address`, or under the `wrong_address` fault the
    fault's `address`, else its own plus one in as many digits (an address that is not all digits:
    zeros and a final 1), so that the reply comes from another meter."""
    wrong = device.faults.fires("wrong_address")
    if not wrong:
        return address
    other = wrong.get("address")
    if other is None:
        size = len(address)
        return str((int(address) + 1) % 10 ** size).zfill(size) if address.isdigit() else "1".zfill(size)
    return str(other)


def reader_key(protocol: str) -> str:
    """The variants of one protocol (DL/T 645-2007 and -1997) share one frame reader on a bus."""
    return registry.folder(protocol)
