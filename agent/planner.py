"""The request planner: which requests poll a device, and how long they keep the line busy.

How points group into requests and how many bytes each request and reply takes is the protocol's
own answer (`Family.plan` in protocols/<protocol>/family.py: merged Modbus reads, one DL/T 645 read
per data identifier, one CJ/T 188 901F read). Line times add the bus's timing: characters on the
line, the silence that delimits frames where the protocol needs it (Modbus RTU t3.5), the device's
reply delay, the bus's turnaround and pause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols import registry
from protocols.family import PlannedRequest
from protocols.profiles import Profile

__all__ = ["BusPlan", "DevicePlan", "PlannedRequest", "device_options", "plan_config", "plan_device"]


@dataclass
class DevicePlan:
    device: Any  # DeviceConfig
    profile: Profile
    requests: list[PlannedRequest]

    @property
    def cycle_time(self) -> float:
        return sum(r.line_time for r in self.requests)

    @property
    def worst_time(self) -> float:
        return sum(r.worst_time for r in self.requests)


@dataclass
class BusPlan:
    bus: Any  # BusConfig
    devices: list[DevicePlan] = field(default_factory=list)

    @property
    def tcp(self) -> bool:
        return self.bus.port.lower().startswith("tcp://")

    @property
    def line_text(self) -> str:
        if self.tcp:
            return "Modbus TCP"
        return "%d baud %d%s%d" % (self.bus.baud, self.bus.bytesize, self.bus.parity, self.bus.stopbits)

    @property
    def requests(self) -> int:
        return sum(len(d.requests) for d in self.devices)

    @property
    def cycle_time(self) -> float:
        """Line time to poll every device once (seconds)."""
        return sum(d.cycle_time for d in self.devices)

    @property
    def worst_time(self) -> float:
        return sum(d.worst_time for d in self.devices)

    @property
    def utilisation(self) -> float:
        """Fraction of the line's time the polls use at their intervals (1.0 = saturated)."""
        return sum(d.cycle_time / d.device.interval for d in self.devices)


def device_options(device: Any, profile: Profile) -> dict:
    """The profile's protocol options with the device's overrides applied."""
    options = dict(profile.options)
    options.update(device.options or {})
    if getattr(device, "max_registers", None):
        options["max_registers"] = device.max_registers
    return options


def _char_bits(bus: Any) -> int:
    return 1 + bus.bytesize + (0 if bus.parity == "N" else 1) + bus.stopbits


def _timing(bus: Any, protocol: str, options: dict, request_bytes: int, reply_bytes: int) -> tuple:
    """(typical, worst) seconds on the line for one transaction."""
    family = registry.family(protocol)
    reply_delay = options.get("reply_delay_ms", family.reply_delay_ms) / 1000.0
    turnaround = bus.turnaround_ms / 1000.0
    pause = bus.pause_ms / 1000.0
    timeout = bus.timeout_ms / 1000.0
    if bus.port.lower().startswith("tcp://"):
        typical = 0.001 + reply_delay + turnaround + pause
        return typical, timeout + pause
    bits = _char_bits(bus)
    t_char = bits / bus.baud
    # Modbus RTU frames are delimited by t3.5 of silence (before the reply, and before the next
    # request); DL/T 645 and CJ/T 188 frames carry their own delimiters, the meter's reply delay counts.
    t35 = (0.00175 if bus.baud > 19200 else 3.5 * t_char) if family.silence_framed else 0.0
    typical = (request_bytes + reply_bytes) * t_char + t35 + max(t35, turnaround) + pause + reply_delay
    worst = request_bytes * t_char + timeout + max(t35, turnaround) + pause
    return typical, worst


def plan_device(device: Any, profile: Profile, bus: Any) -> DevicePlan:
    """The requests of one poll cycle of `device`, with their line times on `bus`."""
    options = device_options(device, profile)
    names = device.points if device.points is not None else profile.point_names()
    points = [profile.point(n) for n in names]
    family = registry.family(profile.protocol)
    requests = family.plan(device.id, points, options, bool(getattr(device, "single_point_requests", False)))
    for r in requests:
        r.line_time, r.worst_time = _timing(bus, profile.protocol, options, r.request_bytes, r.reply_bytes)
    return DevicePlan(device, profile, requests)


def plan_config(config: Any) -> list[BusPlan]:
    """One BusPlan per configured bus (devices in config order)."""
    plans = {bus.name: BusPlan(bus) for bus in config.buses}
    for device in config.devices:
        plan = plans.get(device.bus)
        if plan is None:
            continue
        profile = config.profiles[device.profile]
        plan.devices.append(plan_device(device, profile, plan.bus))
    return list(plans.values())
