"""The request planner: which requests poll a device, and how long they keep the line busy.

Modbus points of one device are merged per table (function code) into requests of at most
`max_registers` registers (profile option, device override; 125 at most), bridging gaps of up to
`max_gap` unused registers. DL/T 645 needs one request per data identifier (the members of a
block DI such as 0001FF00, named by their `block_index`, share it); CJ/T 188 reads every
field with one 901F request. Line times follow protocol-facts §3.5 (Modbus: characters on the
line plus t3.5 around the reply) and §1.8 (DL/T 645: wake-up preamble plus the meter's reply delay),
plus the bus's turnaround and pause.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.profiles import Point, Profile

__all__ = ["BusPlan", "DevicePlan", "PlannedRequest", "device_options", "plan_config", "plan_device"]

FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
DEFAULT_MAX_GAP = 4
DEFAULT_REPLY_DELAY_MS = {"modbus": 0, "dlt645": 20, "dlt645_1997": 20, "cjt188": 20}


@dataclass
class PlannedRequest:
    """One transaction of a poll cycle."""

    device: str
    protocol: str
    points: list[tuple[Point, int]]  # the point and its offset in the reply (registers, bits; DL/T 645 bytes)
    function: int = 0  # Modbus function code
    table: str = ""
    address: int = 0  # Modbus start register / bit
    count: int = 0  # Modbus registers or bits
    di: Any = None  # DL/T 645 DI (printed text) or CJ/T 188 DI (int)
    request_bytes: int = 0
    reply_bytes: int = 0
    line_time: float = 0.0  # seconds, typical (device answers)
    worst_time: float = 0.0  # seconds, when the device does not answer (response timeout)

    def describe(self) -> str:
        names = ", ".join(p.name for p, _ in self.points)
        if self.protocol == "modbus":
            unit = "bits" if self.function <= 2 else "regs"
            return "FC%02d %s %d..%d (%d %s): %s" % (self.function, self.table, self.address,
                                                    self.address + self.count - 1, self.count, unit, names)
        if self.protocol == "cjt188":
            return "read %04X: %s" % (self.di, names)
        return "read DI %s: %s" % (self.di, names)


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
    reply_delay = options.get("reply_delay_ms", DEFAULT_REPLY_DELAY_MS.get(protocol, 0)) / 1000.0
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
    t35 = (0.00175 if bus.baud > 19200 else 3.5 * t_char) if protocol == "modbus" else 0.0
    typical = (request_bytes + reply_bytes) * t_char + t35 + max(t35, turnaround) + pause + reply_delay
    worst = request_bytes * t_char + timeout + max(t35, turnaround) + pause
    return typical, worst


def _modbus_requests(device: Any, profile: Profile, points: list[Point], options: dict) -> list:
    single = bool(getattr(device, "single_point_requests", False))
    max_regs = min(int(options.get("max_registers", 125)), 125)
    max_bits = min(int(options.get("max_bits", 2000)), 2000)
    max_gap = int(options.get("max_gap", DEFAULT_MAX_GAP))
    out: list[PlannedRequest] = []
    for table in ("holding", "input", "coil", "discrete"):
        chosen = sorted((p for p in points if p.table == table), key=lambda p: (p.address, p.name))
        bits = table in ("coil", "discrete")
        limit = max_bits if bits else max_regs
        gap = max_gap * 16 if bits else max_gap
        current: PlannedRequest | None = None
        for p in chosen:
            n = p.register_count()
            if current is not None and not single:
                end = current.address + current.count
                new_end = max(end, p.address + n)
                if p.address - end <= gap and new_end - current.address <= limit:
                    current.count = new_end - current.address
                    current.points.append((p, p.address - current.address))
                    continue
            current = PlannedRequest(device.id, "modbus", [(p, 0)], function=FUNCTIONS[table],
                                     table=table, address=p.address, count=n)
            out.append(current)
    for r in out:
        r.request_bytes = 8
        r.reply_bytes = 5 + ((r.count + 7) // 8 if r.function <= 2 else 2 * r.count)
    return out


def _dlt645_reply_bytes(fmt: str) -> int:
    try:
        from protocols import dlt645

        return int(dlt645.format_info(fmt)[0])
    except Exception:
        digits = len(fmt.replace(".", ""))
        return (digits + 1) // 2


def plan_device(device: Any, profile: Profile, bus: Any) -> DevicePlan:
    """The requests of one poll cycle of `device`, with their line times on `bus`."""
    options = device_options(device, profile)
    names = device.points if device.points is not None else profile.point_names()
    points = [profile.point(n) for n in names]
    protocol = profile.protocol
    requests: list[PlannedRequest]
    if protocol == "modbus":
        requests = _modbus_requests(device, profile, points, options)
    elif protocol in ("dlt645", "dlt645_1997"):
        preamble = int(options.get("preamble", 4))
        di_len = 4 if protocol == "dlt645" else 2
        requests = []
        by_di: dict[str, PlannedRequest] = {}
        for p in points:
            di = str(p.di)
            # a block DI (0001FF00): the point's byte offset in the value and the reply up to its member
            size = _dlt645_reply_bytes(p.format or "")
            index = p.block_index or 0
            reply_bytes = 12 + di_len + (index + 1) * size  # replies: FE optional; follow-ups not counted
            if di in by_di:  # points of one DI (block members, or scaled twice) share the request
                by_di[di].points.append((p, index * size))
                by_di[di].reply_bytes = max(by_di[di].reply_bytes, reply_bytes)
                continue
            r = PlannedRequest(device.id, protocol, [(p, index * size)], di=p.di)
            r.request_bytes = preamble + 12 + di_len
            r.reply_bytes = reply_bytes
            by_di[di] = r
            requests.append(r)
    elif protocol == "cjt188":
        preamble = int(options.get("preamble", 4))
        meter_type = int(options.get("meter_type", 0x10))
        r = PlannedRequest(device.id, protocol, [(p, 0) for p in points], di=0x901F)
        r.request_bytes = preamble + 13 + 3
        r.reply_bytes = 13 + (0x2E if 0x20 <= meter_type <= 0x2F else 0x16)
        requests = [r]
    else:
        raise ValueError("profile %s: protocol %r cannot be polled" % (profile.model, protocol))
    for r in requests:
        r.line_time, r.worst_time = _timing(bus, protocol, options, r.request_bytes, r.reply_bytes)
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
