"""A running simulated site: the clock, the buses with their devices, the control channel."""

from __future__ import annotations

import json
import os
import time

from protocols.profiles import ProfileError, load_profile
from simulator.bus import Bus
from simulator.clock import Clock
from simulator.control import ControlServer
from simulator.device import Device, DeviceError, device_seed
from simulator.devices.base import derive_seed
from simulator.faults import FaultError
from simulator.line import Line
from simulator.scenario import Scenario, ScenarioError
from simulator.servers import reader_key


class Site:
    """Everything a scenario describes, built and ready to start."""

    def __init__(self, scenario: Scenario, speed: float | None = None, instant: bool | None = None,
                 control: str | None = None, start: float | None = None,
                 profile_dir: str | None = None) -> None:
        self.scenario = scenario
        src = scenario.source
        self.clock = Clock(start if start is not None else scenario.start,
                           speed if speed is not None else scenario.speed)
        self.control_address = control if control is not None else scenario.control
        self.buses: list[Bus] = []
        self.devices: dict[str, Device] = {}
        self.control: ControlServer | None = None
        self.tcp_servers: list = []
        self.serial_servers: list = []
        self._started = False
        for b, spec in enumerate(scenario.buses):
            devices = []
            seen: dict[tuple, str] = {}
            for i, ds in enumerate(spec.devices):
                where = "bus[%d].device[%d] (%s)" % (b, i, ds.id)
                try:
                    profile = load_profile(ds.profile, profile_dir)
                except ProfileError as exc:
                    raise ScenarioError(src, where + ".profile", str(exc)) from None
                try:
                    seed = device_seed(scenario.seed, ds.id, ds.seed)
                    device = Device(ds.id, profile, ds.address, self.clock, seed, ds.params,
                                    scenario.utc_offset)
                    for kind, params in ds.faults:
                        device.inject(kind, params, self.clock.start)
                except (DeviceError, FaultError, ValueError) as exc:
                    raise ScenarioError(src, where, str(exc)) from None
                key = (reader_key(profile.protocol), str(getattr(device.server, "address", device.address)))
                if key in seen and not getattr(spec, "address_clash", False):
                    raise ScenarioError(src, where + ".address", "address %s is already used by %s on bus %s"
                                        % (ds.address, seen[key], spec.name))
                seen[key] = ds.id
                devices.append(device)
                self.devices[ds.id] = device
            line = self._line(spec, devices[0], instant)
            bus = Bus(spec.name, line, devices, self.clock, derive_seed(scenario.seed, "bus:" + spec.name),
                      spec.link, getattr(spec, "uart_errors", "drop"), getattr(spec, "pty", True))
            for kind, params in list(spec.line_faults()) + list(spec.faults):
                bus.set_fault(kind, params)
            bus.collide = bool(getattr(spec, "address_clash", False))
            bus.tcp_port = spec.tcp
            bus.rfc2217_port = spec.rfc2217
            bus.socket_port = spec.socket
            self.buses.append(bus)

    @staticmethod
    def _line(spec: object, first: Device, instant: bool | None) -> Line:
        inst = bool(getattr(spec, "instant", False)) if instant is None else instant
        kw = {"instant": inst, "reply_delay": getattr(spec, "reply_delay", None),
              "turnaround": getattr(spec, "turnaround", 0.0)}
        text = getattr(spec, "line", None)
        if text:
            return Line.from_spec(text, **kw)
        link = first.profile.link
        return Line(int(link.get("baud", 9600)), int(link.get("bytesize", 8)), str(link.get("parity", "N")),
                    int(link.get("stopbits", 1)), **kw)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- life cycle
    def start(self) -> Site:
        try:
            for bus in self.buses:
                bus.start()
            for bus in self.buses:
                port = bus.tcp_port
                if port is not None:
                    from simulator.modbus_tcp import ModbusTcpServer

                    server = ModbusTcpServer(bus, port)
                    server.start()
                    bus.tcp_address = server.address
                    self.tcp_servers.append(server)
                self._serve_serial(bus)
            self.control = ControlServer(self, self.control_address)
            self.control.start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _serve_serial(self, bus: Bus) -> None:
        """The bus's RFC 2217 and raw TCP serial device servers."""
        from simulator.serial_server import SerialServer

        for kind, port in (("rfc2217", bus.rfc2217_port), ("socket", bus.socket_port)):
            try:
                server = SerialServer(bus, kind, port)
            except OSError as exc:
                raise OSError(exc.errno, "bus %s: cannot serve %s on 127.0.0.1:%d: %s"
                              % (bus.name, kind, port, exc.strerror or exc)) from None
            server.start()
            setattr(bus, kind + "_address", server.address)
            bus.servers[kind] = server
            self.serial_servers.append(server)

    def stop(self) -> None:
        """Stop every thread and close every fd and socket this site opened."""
        if self.control is not None:
            self.control.stop()
            self.control = None
        for server in self.tcp_servers + self.serial_servers:
            server.stop()
        self.tcp_servers = []
        self.serial_servers = []
        for bus in self.buses:
            bus.servers = {}
            bus.stop()
        self._started = False

    def __enter__(self) -> Site:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- queries
    def device(self, ident: str) -> Device:
        try:
            return self.devices[ident]
        except KeyError:
            known = ", ".join(sorted(self.devices))
            raise DeviceError("no device %r (devices: %s)" % (ident, known)) from None

    def bus(self, name: str) -> Bus:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise DeviceError("no bus %r (buses: %s)" % (name, ", ".join(b.name for b in self.buses)))

    def sim_time(self, wall: float | None = None, sim: float | None = None) -> float:
        """Simulated time for a wall time (now by default) or a simulated time given directly."""
        return float(sim) if sim is not None else self.clock.sim(wall)

    def describe(self) -> dict:
        """The ports-file content: buses with path, line and devices, and the control address."""
        buses = []
        for bus in self.buses:
            entry = bus.describe()
            tcp = bus.tcp_address
            entry["tcp"] = "%s:%d" % tcp if tcp else None
            buses.append(entry)
        control = self.control.address if self.control is not None else None
        return {
            "scenario": os.path.abspath(self.scenario.source), "site": self.scenario.name,
            "pid": os.getpid(), "control": "%s:%d" % control if control else None,
            "speed": self.clock.speed, "start": self.clock.start, "wall_start": self.clock.wall0,
            "buses": buses,
        }

    def write_ports_file(self, path: str) -> None:
        """Write the ports file atomically (readers never see half of it)."""
        tmp = "%s.tmp%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(self.describe(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)
