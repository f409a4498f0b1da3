"""Scenario files (TOML): a site's buses, devices, addresses, seeds and faults.

```toml
[site]
name = "demo"            # optional
seed = 42                # every device seed derives from it (and the device id)
start = "2024-06-01T00:00:00Z"   # simulated start time (default: now)
speed = 1.0              # simulated seconds per wall second
utc_offset = 8           # local time of the site, hours (load curves, meter clocks)
control = "127.0.0.1:0"  # control channel address (port 0: any free port)

[[bus]]
name = "lighting"
line = "9600 8N1"        # default: the first device profile's link settings
instant = false          # true: no wire time, no reply delay
reply_delay = 0.05       # DL/T 645 / CJ/T 188 reply delay, s (clamped to 0.02..0.5)
turnaround = 0.0         # Modbus: extra delay after t3.5, s
link = "/tmp/fieldlink-lighting"  # optional symlink to the pty
pty = true               # false: no pty, the bus is reached through its serial device servers only
tcp = 5020               # optional Modbus TCP server on 127.0.0.1 (0: any free port)
rfc2217 = 0              # RFC 2217 serial device server on 127.0.0.1 (0, the default: any free port)
socket = 0               # raw TCP serial device server on 127.0.0.1 (0, the default: any free port)
uart_errors = "drop"     # what the devices' UARTs do with parity / framing errors: "drop" or "keep"
ab_swapped = false       # A and B swapped between the clients and the devices
termination = true       # false: an unterminated line, bit errors from baud and cable_length...
cable_length = 1000      # m (with termination = false)
bit_error_rate = 1e-4    # ... or this rate per bit (with termination = false)
address_clash = false    # true: devices may share an address; their replies collide on the line
faults = [{kind = "noise", rate = 0.05}]

[[bus.device]]
id = "lamp-{n:02}"        # with count: {n} runs 1..count
count = 40
profile = "generic-lamp"
address = 2               # Modbus unit; DL/T 645 / CJ/T 188: digits as printed; with count it increments
seed = 7                  # optional
params = {rated_power = 100, dim = 0.8}
faults = [{kind = "lamp_failure"}]
```
"""

from __future__ import annotations

import datetime
import os
import tomllib
from dataclasses import dataclass, field

from simulator.faults import FaultError, check
from simulator.line import LineError, parse_line
from simulator.wire import UART_ERRORS

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the file and the key."""

    def __init__(self, source: str, where: str, message: str) -> None:
        self.source = source
        self.where = where
        text = "%s: %s: %s" % (source, where, message) if where else "%s: %s" % (source, message)
        ValueError.__init__(self, text)


@dataclass
class DeviceSpec:
    id: str
    profile: str
    address: object
    seed: int | None = None
    params: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)


@dataclass
class BusSpec:
    name: str
    line: str | None = None
    instant: bool = False
    reply_delay: float | None = None
    turnaround: float = 0.0
    link: str | None = None
    pty: bool = True
    tcp: int | None = None
    rfc2217: int = 0
    socket: int = 0
    uart_errors: str = "drop"
    ab_swapped: bool = False
    termination: bool = True
    cable_length: float | None = None
    bit_error_rate: float | None = None
    address_clash: bool = False  # devices may share an address: their replies collide (simulator/bus.py)
    faults: list = field(default_factory=list)
    devices: list[DeviceSpec] = field(default_factory=list)

    def line_faults(self) -> list[tuple[str, dict]]:
        """The physical faults the bus keys put in force from the start."""
        out: list[tuple[str, dict]] = []
        if self.ab_swapped:
            out.append(("ab_swapped", {}))
        if not self.termination:
            params: dict = {}
            if self.cable_length is not None:
                params["cable_length"] = self.cable_length
            if self.bit_error_rate is not None:
                params["bit_error_rate"] = self.bit_error_rate
            out.append(("unterminated", params))
        return out


@dataclass
class Scenario:
    source: str
    name: str = "site"
    seed: int = 0
    start: float | None = None
    speed: float = 1.0
    utc_offset: float = 8.0
    control: str = "127.0.0.1:0"
    buses: list[BusSpec] = field(default_factory=list)


def find(name: str) -> str:
    """A scenario path: an existing file, or the name of a shipped one (`demo`, `street.toml`)."""
    if os.path.exists(name):
        return name
    base = name if name.endswith(".toml") else name + ".toml"
    shipped = os.path.join(SCENARIO_DIR, base)
    if os.path.exists(shipped):
        return shipped
    raise ScenarioError(name, "", "no such file, and no shipped scenario of that name (shipped: %s)"
                        % ", ".join(shipped_names()))


def shipped_names() -> list[str]:
    return sorted(n[:-5] for n in os.listdir(SCENARIO_DIR) if n.endswith(".toml"))


def load(path: str) -> Scenario:
    """Read and check a scenario file."""
    path = find(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(path, "", "not valid TOML: %s" % exc) from None
    return parse(data, path)


def _get(data: dict, key: str, kinds: tuple, source: str, where: str, default: object = None) -> object:
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, bool) and bool not in kinds:
        raise ScenarioError(source, "%s.%s" % (where, key) if where else key,
                            "must be %s, not %r" % (" or ".join(k.__name__ for k in kinds), value))
    if not isinstance(value, kinds):
        raise ScenarioError(source, "%s.%s" % (where, key) if where else key,
                            "must be %s, not %r" % (" or ".join(k.__name__ for k in kinds), value))
    return value


def _unknown(data: dict, allowed: tuple, source: str, where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ScenarioError(source, "%s.%s" % (where, key) if where else key,
                                "unknown key (known: %s)" % ", ".join(allowed))


def _time(value: object, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(source, "site.start", "not an ISO 8601 time: %r" % value) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    raise ScenarioError(source, "site.start", "must be a time or POSIX seconds, not %r" % (value,))


def _faults(value: object, source: str, where: str, bus_level: bool) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ScenarioError(source, where, "must be a list of {kind = ..., ...} tables")
    out = []
    for i, spec in enumerate(value):
        at = "%s[%d]" % (where, i)
        if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
            raise ScenarioError(source, at, "must be a table with a kind, such as {kind = \"no_answer\"}")
        params = {k: v for k, v in spec.items() if k != "kind"}
        try:
            check(spec["kind"], params, bus_level)
        except FaultError as exc:
            raise ScenarioError(source, at, str(exc)) from None
        out.append((spec["kind"], params))
    return out


def _address(value: object, n: int, source: str, where: str) -> object:
    if isinstance(value, bool):
        raise ScenarioError(source, where, "must be a number or a digit string, not %r" % value)
    if isinstance(value, int):
        return value + n
    if isinstance(value, str) and value.isdigit():
        return str(int(value) + n).zfill(len(value))
    if isinstance(value, str) and n == 0:
        return value
    raise ScenarioError(source, where, "must be a number or a digit string, not %r" % (value,))


def _devices(bus: dict, source: str, where: str) -> list[DeviceSpec]:
    entries = bus.get("device", [])
    if not isinstance(entries, list) or not entries:
        raise ScenarioError(source, where + ".device", "a bus needs at least one [[bus.device]]")
    out = []
    for i, dev in enumerate(entries):
        at = "%s.device[%d]" % (where, i)
        if not isinstance(dev, dict):
            raise ScenarioError(source, at, "must be a table")
        _unknown(dev, ("id", "profile", "address", "count", "seed", "params", "faults"), source, at)
        for key in ("id", "profile", "address"):
            if key not in dev:
                raise ScenarioError(source, at, "missing key %r" % key)
        ident = _get(dev, "id", (str,), source, at)
        profile = _get(dev, "profile", (str,), source, at)
        count = int(_get(dev, "count", (int,), source, at, 1))  # type: ignore[call-overload]
        seed = _get(dev, "seed", (int,), source, at)
        params = _get(dev, "params", (dict,), source, at, {})
        faults = _faults(dev.get("faults"), source, at + ".faults", False)
        if count < 1:
            raise ScenarioError(source, at + ".count", "must be at least 1")
        for n in range(count):
            try:
                name = str(ident).format(n=n + 1) if count > 1 else str(ident).format(n=1)
            except (KeyError, ValueError, IndexError) as exc:
                raise ScenarioError(source, at + ".id", "bad template %r: %s" % (ident, exc)) from None
            address = _address(dev["address"], n, source, at + ".address")
            out.append(DeviceSpec(name, str(profile), address,
                                  None if seed is None else int(seed) + n,  # type: ignore[call-overload]
                                  dict(params), list(faults)))  # type: ignore[call-overload]
    return out


def _physical(bus: dict, spec: BusSpec, source: str, where: str) -> None:
    """The serial device server ports, the devices' UART error handling and the wire's faults."""
    for key in ("rfc2217", "socket"):
        port = _get(bus, key, (int,), source, where, 0)
        if not 0 <= port <= 65535:  # type: ignore[operator]
            raise ScenarioError(source, "%s.%s" % (where, key),
                                "must be a TCP port 0..65535 (0: any free port)")
        setattr(spec, key, port)
    spec.uart_errors = str(_get(bus, "uart_errors", (str,), source, where, "drop"))
    if spec.uart_errors not in UART_ERRORS:
        raise ScenarioError(source, where + ".uart_errors", "must be %s, not %r"
                            % (" or ".join(repr(u) for u in UART_ERRORS), spec.uart_errors))
    spec.ab_swapped = bool(_get(bus, "ab_swapped", (bool,), source, where, False))
    spec.termination = bool(_get(bus, "termination", (bool,), source, where, True))
    spec.address_clash = bool(_get(bus, "address_clash", (bool,), source, where, False))
    for key in ("cable_length", "bit_error_rate"):
        value = _get(bus, key, (int, float), source, where)
        if value is None:
            continue
        if spec.termination:
            raise ScenarioError(source, "%s.%s" % (where, key),
                                "only means something with termination = false")
        setattr(spec, key, float(value))  # type: ignore[arg-type]
    try:
        for kind, params in spec.line_faults():
            check(kind, params, bus_level=True)
    except FaultError as exc:
        raise ScenarioError(source, where, str(exc)) from None


def parse(data: dict, source: str = "<scenario>") -> Scenario:
    """Check a decoded scenario; ScenarioError names the file and the key at fault."""
    _unknown(data, ("site", "bus"), source, "")
    site = data.get("site", {})
    if not isinstance(site, dict):
        raise ScenarioError(source, "site", "must be a table")
    _unknown(site, ("name", "seed", "start", "speed", "utc_offset", "control"), source, "site")
    sc = Scenario(source)
    sc.name = str(_get(site, "name", (str,), source, "site", os.path.basename(source).rsplit(".", 1)[0]))
    sc.seed = int(_get(site, "seed", (int,), source, "site", 0))  # type: ignore[call-overload]
    sc.start = _time(site.get("start"), source)
    sc.speed = float(_get(site, "speed", (int, float), source, "site", 1.0))  # type: ignore[arg-type]
    if sc.speed <= 0:
        raise ScenarioError(source, "site.speed", "must be positive")
    sc.utc_offset = float(_get(site, "utc_offset", (int, float), source, "site", 8.0))  # type: ignore[arg-type]
    sc.control = str(_get(site, "control", (str,), source, "site", "127.0.0.1:0"))
    buses = data.get("bus")
    if not isinstance(buses, list) or not buses:
        raise ScenarioError(source, "bus", "a scenario needs at least one [[bus]]")
    names: set[str] = set()
    ids: set[str] = set()
    ports: dict[int, str] = {}  # fixed TCP ports: each may be used once
    for i, bus in enumerate(buses):
        where = "bus[%d]" % i
        if not isinstance(bus, dict):
            raise ScenarioError(source, where, "must be a table")
        _unknown(bus, ("name", "line", "instant", "reply_delay", "turnaround", "link", "pty", "tcp",
                       "rfc2217", "socket", "uart_errors", "ab_swapped", "termination", "cable_length",
                       "bit_error_rate", "address_clash", "faults", "device"), source, where)
        name = str(_get(bus, "name", (str,), source, where, "bus%d" % (i + 1)))
        if name in names:
            raise ScenarioError(source, where + ".name", "bus %r is defined twice" % name)
        names.add(name)
        spec = BusSpec(name)
        spec.line = _get(bus, "line", (str,), source, where)  # type: ignore[assignment]
        if spec.line is not None:
            try:
                parse_line(spec.line)
            except LineError as exc:
                raise ScenarioError(source, where + ".line", str(exc)) from None
        spec.instant = bool(_get(bus, "instant", (bool,), source, where, False))
        rd = _get(bus, "reply_delay", (int, float), source, where)
        spec.reply_delay = None if rd is None else float(rd)  # type: ignore[arg-type]
        spec.turnaround = float(_get(bus, "turnaround", (int, float), source, where, 0.0))  # type: ignore[arg-type]
        spec.link = _get(bus, "link", (str,), source, where)  # type: ignore[assignment]
        spec.pty = bool(_get(bus, "pty", (bool,), source, where, True))
        if spec.link and not spec.pty:
            raise ScenarioError(source, where + ".link", "a link points at the pty: not with pty = false")
        spec.tcp = _get(bus, "tcp", (int,), source, where)  # type: ignore[assignment]
        _physical(bus, spec, source, where)
        spec.faults = _faults(bus.get("faults"), source, where + ".faults", True)
        spec.devices = _devices(bus, source, where)
        for key in ("tcp", "rfc2217", "socket"):
            port = getattr(spec, key)
            if port:
                if port in ports:
                    raise ScenarioError(source, "%s.%s" % (where, key),
                                        "port %d is already %s" % (port, ports[port]))
                ports[port] = "%s.%s" % (where, key)
        for dev in spec.devices:
            if dev.id in ids:
                raise ScenarioError(source, where + ".device", "device id %r is used twice" % dev.id)
            ids.add(dev.id)
        sc.buses.append(spec)
    return sc
