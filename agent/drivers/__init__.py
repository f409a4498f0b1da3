"""Device drivers: a device config and its profile in, transactions on a link out."""

from __future__ import annotations

from typing import Any

from agent.drivers.base import Driver, ReadResult, WriteRefused, error_kind, scaled
from protocols.profiles import Profile

__all__ = ["Driver", "ReadResult", "WriteRefused", "error_kind", "make_driver", "scaled"]


def make_driver(device: Any, profile: Profile, bus: Any) -> Driver:
    """The driver for the profile's protocol."""
    if profile.protocol == "modbus":
        from agent.drivers.modbus import ModbusDriver

        return ModbusDriver(device, profile, bus)
    if profile.protocol in ("dlt645", "dlt645_1997"):
        from agent.drivers.dlt645 import Dlt645Driver

        return Dlt645Driver(device, profile, bus)
    if profile.protocol == "cjt188":
        from agent.drivers.cjt188 import Cjt188Driver

        return Cjt188Driver(device, profile, bus)
    raise ValueError("no driver for protocol %r" % profile.protocol)
