"""The control channel: JSON lines over a loopback TCP socket, and a small client for tests.

Each request is one JSON object on one line with an "op"; each reply is one line,
{"ok": true, ...} or {"ok": false, "error": "..."}. Times: "wall" (POSIX seconds, the wall time a
client observed) or "sim" (simulated seconds); neither means now.

| op       | arguments                            | reply                                          |
|----------|--------------------------------------|------------------------------------------------|
| info     |                                      | the ports-file content                         |
| list     |                                      | devices: [{id, protocol, address, profile, ...}] |
| time     |                                      | wall, sim, speed                               |
| truth    | device, point, [wall or sim]         | value, sim: what the device answers for a point |
| truths   | device, [wall or sim]                | values: {point: value}, sim                    |
| quantity | device, name, [wall or sim]          | value, sim: a model quantity (SenML unit)      |
| fault    | target (id or "bus:NAME"), kind, [params] | fault: the parameters in force            |
| clear    | target, [kind]                       | (every fault of the target without kind)       |
| write    | device, key, value, [sim]            | sim: when it took effect (on, dim, valve, ...) |
| counters | [device]                             | devices: {id: counts}, buses: {name: counts},  |
|          |                                      | wires: {bus: {to_devices, to_client: counts}}  |
| line     | bus                                  | the bus's line: settings, faults, serial       |
|          |                                      | servers, clients with their UART settings      |
| speed    | speed                                | speed                                          |
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.site import Site


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("control address must be HOST:PORT, not %r" % text)
    return host, int(port)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            try:
                line = self.rfile.readline()
            except OSError:
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object with an 'op'")
                reply: dict = {"ok": True}
                reply.update(self.server.control.dispatch(request))
            except Exception as exc:  # every failure goes back to the client, the server keeps going
                reply = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
            try:
                self.wfile.write((json.dumps(reply) + "\n").encode())
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    control: ControlServer


class ControlServer:
    """Serves the control channel of one site on a loopback TCP port."""

    def __init__(self, site: Site, address: str = "127.0.0.1:0") -> None:
        self.site = site
        self._server = _Server(parse_address(address), _Handler)
        self._server.control = self
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sim-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    # ---------------------------------------------------------------- operations
    def _when(self, req: dict) -> float:
        return self.site.sim_time(req.get("wall"), req.get("sim"))

    def dispatch(self, req: dict) -> dict:
        op = req.get("op")
        site = self.site
        if op == "info":
            return site.describe()
        if op == "time":
            now = time.time()
            return {"wall": now, "sim": site.clock.sim(now), "speed": site.clock.speed}
        if op == "list":
            out = []
            for bus in site.buses:
                for d in bus.devices:
                    entry = d.describe()
                    entry["bus"] = bus.name
                    entry["faults"] = d.fault_listing()
                    out.append(entry)
            return {"devices": out}
        if op == "truth":
            t = self._when(req)
            return {"value": site.device(req["device"]).truth(req["point"], t), "sim": t}
        if op == "truths":
            t = self._when(req)
            d = site.device(req["device"])
            return {"values": {p: d.truth(p, t) for p in d.profile.point_names()}, "sim": t}
        if op == "quantity":
            t = self._when(req)
            return {"value": site.device(req["device"]).quantity(req["name"], t), "sim": t}
        if op == "fault":
            target = str(req["target"])
            params = req.get("params") or {}
            if target.startswith("bus:"):
                return {"fault": site.bus(target[4:]).set_fault(req["kind"], params)}
            return {"fault": site.device(target).inject(req["kind"], params, req.get("sim"))}
        if op == "clear":
            target = str(req["target"])
            if target.startswith("bus:"):
                site.bus(target[4:]).clear_fault(req.get("kind"))
            else:
                site.device(target).clear(req.get("kind"), req.get("sim"))
            return {}
        if op == "write":
            return {"sim": site.device(req["device"]).write(req["key"], req["value"], req.get("sim"))}
        if op == "counters":
            devices = [site.device(req["device"])] if req.get("device") else list(site.devices.values())
            return {"devices": {d.id: dict(d.counts) for d in devices},
                    "buses": {b.name: dict(b.counts) for b in site.buses},
                    "wires": {b.name: b.wire_counts() for b in site.buses}}
        if op == "line":
            return site.bus(str(req["bus"])).line_state()
        if op == "speed":
            site.clock.set_speed(float(req["speed"]))
            return {"speed": site.clock.speed}
        raise ValueError("unknown op %r (ops: info list time truth truths quantity fault clear write "
                         "counters line speed)" % (op,))


class SimError(RuntimeError):
    """The simulator refused a control request; the message says why."""


class SimClient:
    """A blocking client of the control channel: `SimClient("127.0.0.1:7000").truth("m1", "power")`."""

    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        host, port = parse_address(address) if isinstance(address, str) else address
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._file = self._sock.makefile("rwb")

    def call(self, op: str, **args: object) -> dict:
        request = dict(args)
        request["op"] = op
        self._file.write((json.dumps(request) + "\n").encode())
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise SimError("the simulator closed the control channel")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise SimError(reply.get("error", "unknown error"))
        return reply

    @staticmethod
    def _when(wall: float | None, sim: float | None) -> dict:
        out: dict = {}
        if wall is not None:
            out["wall"] = wall
        if sim is not None:
            out["sim"] = sim
        return out

    def truth(self, device: str, point: str, wall: float | None = None, sim: float | None = None) -> object:
        """What `device` answers for profile point `point` at wall (or simulated) time; now by default."""
        return self.call("truth", device=device, point=point, **self._when(wall, sim))["value"]

    def truths(self, device: str, wall: float | None = None, sim: float | None = None) -> dict:
        return self.call("truths", device=device, **self._when(wall, sim))["values"]

    def quantity(self, device: str, name: str, wall: float | None = None, sim: float | None = None) -> object:
        return self.call("quantity", device=device, name=name, **self._when(wall, sim))["value"]

    def fault(self, target: str, kind: str, **params: object) -> dict:
        """Switch a fault on for a device id or "bus:NAME"."""
        return self.call("fault", target=target, kind=kind, params=params)["fault"]

    def clear(self, target: str, kind: str | None = None) -> None:
        args: dict = {"target": target}
        if kind is not None:
            args["kind"] = kind
        self.call("clear", **args)

    def write(self, device: str, key: str, value: object) -> float:
        return self.call("write", device=device, key=key, value=value)["sim"]

    def counters(self, device: str | None = None) -> dict:
        return self.call("counters", **({"device": device} if device else {}))

    def line(self, bus: str) -> dict:
        """A bus's line: settings, faults, serial servers, clients and their UART settings, wire counts."""
        return self.call("line", bus=bus)

    def devices(self) -> list:
        return self.call("list")["devices"]

    def time(self) -> dict:
        return self.call("time")

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
