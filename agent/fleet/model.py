"""One simulated gateway, without a network: its config, devices, status, inventory, readings, packs,
health, acks.

Every message is made by the agent's own code, so a change of shape there is a change here too:

* the devices by `agent.gateway.inventory(config)` from a real `Config` (devices with their profiles);
  the retained inventory, the small status of each connection and its will by `protocols.birth`, as
  agent/uplink.py makes them (one more `session` per connect, the inventory's CRC-32 in the status);
* packs by `agent.batcher.Batcher` with the gateway's payload profile (`make_encoder`: SenML or compact),
  closed by count, size and age exactly as the agent closes them;
* health by `agent.health.Health` with the counters the agent adds (`readings`, `outbox`, `mqtt`,
  `commands`, `polls`, `errors`, `buses`);
* commands by the agent's `CommandGate` (signatures, expiry, ids run at most once, refusal texts), and
  the device checks of `Scheduler.prepare` (the profile's writable points and ranges, its actions, via
  the same drivers' `check_write` / `check_action`).

What is simulated is the bus: a poll of a device gives a value for each of its points (see `value`), a
device marked offline answers nothing (a `comms` alarm, `timeout` errors), and a write is read back as
written. `GatewayModel` is driven by the engine (agent/fleet/engine.py) with a clock passed in.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from agent.batcher import Batcher, make_encoder
from agent.command_gate import CommandGate
from agent.config_model import BusConfig, CommandsConfig, Config, DeviceConfig, GatewayConfig, RuleConfig
from agent.diagnosis import line_text
from agent.drivers import WriteRefused, make_driver
from agent.gateway import inventory
from agent.health import Health
from agent.lighting.lamps import lamp_facts
from agent.uplink import versions
from protocols import alarms, cbor, poll
from protocols import birth as birth_msg
from protocols.commands import Command, IdMemory, refusal
from protocols.profiles import Point, Profile

__all__ = ["GatewayModel", "Pack", "SimDevice", "value"]

# A nominal value per SenML unit (what a healthy device reads); counters grow from a base instead.
NOMINAL = {"V": 230.0, "A": 0.45, "W": 95.0, "var": 12.0, "VA": 96.0, "Hz": 50.0, "Cel": 24.0, "Pa": 320000.0,
           "m": 2.4, "/": 0.96, "m3/s": 0.0012, "m/s": 0.8, "pH": 7.2, "S/m": 0.05, "kg/m3": 0.0004, "": 0}
COUNTERS = {"J": 3.6e6, "s": 1.0, "m3": 0.001, "vars": 3.6e6, "VAs": 3.6e6}  # per-second growth, in the unit
OUTBOX_LIMIT = 1 << 20  # bytes of packs one simulated gateway keeps while offline (the agent: 64 MiB on disk)


def quantize(x: float, resolution: Any) -> Any:
    """`x` on the point's grid, as the agent's drivers publish it (2301 * 0.1 -> 230.1)."""
    if not resolution:
        return round(x, 6)
    n = round(x / resolution)
    v = round(n * resolution, 9)
    return int(v) if v == int(v) and (resolution >= 1 or n == 0) else v


def value(point: Point, t: float, seed: int, state: dict) -> Any:
    """The reading of `point` at POSIX time `t` for the device seeded `seed`: a writable point reads
    what was last written, flag points 0, counters grow, other points wander around a nominal."""
    if point.name in state:
        return state[point.name]
    if point.type.startswith("bit") or (point.unit == "" and point.resolution is None):
        return 0
    rate = COUNTERS.get(point.unit)
    if rate is not None:
        base = (seed % 9973 + 100) * 3600.0 * rate * 0.05
        return quantize(base + (t - 1.7e9) * rate * 0.02, point.resolution or 1)
    nominal = NOMINAL.get(point.unit, 1.0)
    wobble = 1.0 + 0.02 * math.sin(t / 97.0 + seed % 61)
    return quantize(nominal * wobble, point.resolution)


class SimDevice:
    """One simulated field device of a gateway."""

    __slots__ = ("answered", "config", "due", "last_seen", "online", "points", "profile", "reason", "seed",
                 "since", "state")

    def __init__(self, config: DeviceConfig, profile: Profile, seed: int) -> None:
        self.config = config
        self.profile = profile
        names = config.points if config.points is not None else profile.point_names()
        self.points = [profile.point(n) for n in names]
        self.seed = seed
        self.online = True
        self.state: dict[str, Any] = {}
        for p in self.points:
            if p.writable:  # what the device holds until a command writes it: switched on, full
                self.state[p.name] = p.values[-1] if p.values else (p.max if p.max is not None else 1)
        self.due = 0.0  # next poll, POSIX seconds
        self.answered: bool | None = None  # what health says: did the last poll get an answer (None: no poll)
        self.last_seen: float | None = None  # POSIX seconds of its last answer
        self.since = 0.0  # POSIX seconds `answered` last changed (0: not yet), as the agent's health
        self.reason = ""  # why it answers or not, in the agent's words (protocols/poll.py)


class Pack:
    """A pack in the simulated outbox: what the agent's outbox holds per row."""

    __slots__ = ("closed", "payload", "records", "topic")

    def __init__(self, topic: str, payload: bytes, records: int, closed: float) -> None:
        self.topic = topic
        self.payload = payload
        self.records = records
        self.closed = closed  # monotonic time the batcher closed it (publish latency starts here)


class _Ids:
    """The command-id store of a simulated gateway: protocols.commands.IdMemory in memory (the agent
    keeps the same rows in SQLite)."""

    def __init__(self) -> None:
        self.memory = IdMemory(4096)
        self.loaded = 0

    def check(self, cmd: Command) -> bytes | None:
        result: bytes | None = self.memory.check(cmd)
        return result

    def begin(self, cmd: Command, until: int) -> None:
        self.memory.begin(cmd, until)

    def finish(self, cmd_id: object, ack: bytes) -> None:
        self.memory.finish(cmd_id, ack)

    def forget(self, cmd_id: object) -> None:
        self.memory.forget(cmd_id)

    def stats(self) -> dict:
        return {"ids": len(self.memory.entries), "ids_evicted": self.memory.evicted}

    def close(self) -> None:
        pass


class GatewayModel:
    """A gateway's messages and state; the engine owns its connection and its clock."""

    def __init__(self, config: Config, seed: int, clock: Callable[[], float],
                 monotonic: Callable[[], float],
                 run_later: Callable[[float, Callable[[], None]], Any]) -> None:
        g = config.gateway
        self.config = config
        self.id = g.id
        self.site = g.site
        self.clock = clock
        self.monotonic = monotonic
        self.run_later = run_later  # (delay s, fn): the bus time of a command's write
        self.rng = random.Random(seed)
        self.devices = {d.id: SimDevice(d, config.profiles[d.profile], seed * 1000 + i)
                        for i, d in enumerate(config.devices)}
        self.topic = {leaf: config.topic(leaf)
                      for leaf in ("status", "inventory", "data", "alarm", "health", "cmd", "ack")}
        self.seq = 0
        #: the inventory map (retained on …/inventory), its bytes and their CRC-32 (in every status)
        self.inventory = birth_msg.make_inventory(g.id, g.site, inventory(config), seq=self.seq,
                                                  payload=g.payload, versions=versions(), district=g.district)
        self.inventory_bytes = birth_msg.encode(self.inventory)
        self.inventory_digest = birth_msg.digest(self.inventory_bytes)
        self.session = 0  # the connection's number, one more at every connect (the agent's `session`)
        b = config.batch
        self.outbox: deque[Pack] = deque()
        self.outbox_bytes = 0
        self.batcher = Batcher(make_encoder(g.payload, self.inventory), self._store,
                               max_records=b.max_records, max_bytes=b.max_bytes, max_age=b.max_age,
                               clock=monotonic)
        self.connected = False
        self.counters = {"polls": 0, "readings": 0, "timeouts": 0, "published": 0, "packs_published": 0,
                         "records_published": 0, "bytes_published": 0, "packs_resent": 0, "connects": 0,
                         "disconnects": 0, "connect_failures": 0, "acks": 0, "acks_dropped": 0,
                         "dropped_packs": 0, "dropped_records": 0, "dropped_bytes": 0}
        self.started = monotonic()
        self.acks: deque[bytes] = deque()  # acks waiting for the network (the engine sends them)
        self.alarms = 0
        self.health = Health(g.id, g.site, clock)
        self.health.add("connected", lambda: self.connected)
        self.health.add("readings", self._reading_counters)
        self.health.add("outbox", self._outbox_stats)
        self.health.add("mqtt", self._mqtt_stats)
        self.gate = CommandGate(config, self, _Ids(), send_ack=self._send_ack, clock=clock)  # type: ignore[arg-type]
        self.health.add("commands", self.gate.stats)
        self.health.add("polls", lambda: self.counters["polls"])
        # every kind the agent counts (docs/cddl/health.cddl `errors`); a simulated bus only times out
        self.health.add("errors", lambda: {"timeout": self.counters["timeouts"], "crc": 0, "frame": 0,
                                           "exception": 0, "abnormal": 0, "decode": 0})
        self.health.add("buses", self._bus_counters)
        self.lamps = lamp_facts(config)
        self._drivers: dict[str, Any] = {}

    # -- messages ---------------------------------------------------------------------------------

    def next_session(self) -> bytes:
        """A new connection: one more `session`; its will (registered at CONNECT), as the agent's."""
        self.session += 1
        return self.will_bytes()

    def will_bytes(self) -> bytes:
        """The offline status of the current connection (the will; also sent on a clean stop)."""
        return birth_msg.encode(birth_msg.make_will(self.id, self.site, self.seq, self.session))

    def status_bytes(self) -> bytes:
        """The online status of the current connection (time = now), with the inventory's CRC-32."""
        return birth_msg.encode(birth_msg.make_status(self.id, self.site, self.seq, self.session,
                                                      int(self.clock()), self.inventory_digest))

    def health_bytes(self) -> bytes:
        return self.health.encode()

    # -- the simulated bus ------------------------------------------------------------------------

    def poll(self, device: SimDevice, now: float) -> int:
        """One poll of `device` at POSIX `now`: its readings go to the batcher. Returns readings made."""
        self.counters["polls"] += 1
        if device.answered is not device.online:
            device.since = now
            device.reason = (poll.online_reason(False) if device.online else poll.offline_reason(
                poll.OFFLINE_AFTER, "timeout: no reply at address %s" % device.config.address))
        device.answered = device.online
        if not device.online:
            self.counters["timeouts"] += 1
            return 0
        device.last_seen = now
        readings = [(device.config.id, p.name, value(p, now, device.seed, device.state), now)
                    for p in device.points]
        self.batcher.add(readings)
        self.counters["readings"] += len(readings)
        return len(readings)

    def set_online(self, device_id: str, online: bool) -> None:
        """A device starts or stops answering; the `comms` alarm the agent raises or clears."""
        device = self.devices[device_id]
        if device.online == online:
            return
        device.online = online
        self.alarm(device_id, None, "comms", "back online" if online else "no answer at address %s"
                   % device.config.address, not online)

    def alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool) -> None:
        """An alarm map through the outbox (QoS 1, in order with the data), as `Uplink.alarm`."""
        self.batcher.flush()
        self.alarms += 1  # the alarm's `n`: one more per alarm, as the agent numbers them
        payload = cbor.dumps(alarms.alarm(device, point, kind, value, raised, self.clock(), self.alarms))
        self._put(self.topic["alarm"], payload, 0)

    def _store(self, payload: bytes, records: int) -> None:
        self._put(self.topic["data"], payload, records)

    def _put(self, topic: str, payload: bytes, records: int) -> None:
        self.outbox.append(Pack(topic, payload, records, self.monotonic()))
        self.outbox_bytes += len(payload)
        while self.outbox_bytes > OUTBOX_LIMIT and len(self.outbox) > 1:  # oldest first, counted
            old = self.outbox.popleft()
            self.outbox_bytes -= len(old.payload)
            self.counters["dropped_packs"] += 1
            self.counters["dropped_records"] += old.records
            self.counters["dropped_bytes"] += len(old.payload)

    def take(self, count: int) -> list[Pack]:
        """Up to `count` packs from the front of the outbox (the engine publishes them)."""
        out: list[Pack] = []
        while self.outbox and len(out) < count:
            pack = self.outbox.popleft()
            self.outbox_bytes -= len(pack.payload)
            out.append(pack)
        return out

    def put_back(self, packs: list[Pack]) -> None:
        """Packs whose PUBACK never came (the connection ended): first again, as the agent replays."""
        for pack in reversed(packs):
            self.outbox.appendleft(pack)
            self.outbox_bytes += len(pack.payload)
        self.counters["packs_resent"] += len(packs)

    # -- commands: the bus-owner side of CommandGate ------------------------------------------------

    def switching(self, cmd: dict) -> bool:
        from protocols.commands import is_switching

        device = self.devices.get(str(cmd.get("device")))
        point = cmd.get("point")
        marked = False
        if device is not None and isinstance(point, str) and device.profile.has_point(point):
            marked = bool(device.profile.point(point).switching)
        return is_switching(cmd.get("action"), marked)

    def submit(self, cmd: dict, done: Callable[[dict], None],
               before: Callable[[], None] | None = None) -> dict | None:
        """As `Scheduler.submit`: the device's checks (nothing runs when refused), then the write on
        the simulated bus a little later, read back, its reading published, `done(ack fields)`."""
        device = self.devices.get(str(cmd.get("device")))
        if device is None:
            return {"ok": False, "error": refusal("unknown_device", repr(cmd.get("device"))), "value": None}
        driver = self._driver(device)
        point = cmd.get("point")
        action = cmd.get("action", "write")
        try:
            if action not in ("read", "write"):
                driver.check_action(action)
            elif not isinstance(point, str):
                return {"ok": False, "error": refusal("no_point"), "value": None}
            elif action == "read":
                driver.point(point)
            else:
                if "value" not in cmd:
                    return {"ok": False, "error": refusal("no_value"), "value": None}
                driver.check_write(point, cmd["value"])
        except WriteRefused as exc:
            return {"ok": False, "error": str(exc), "value": None}
        if before is not None:
            before()

        def run() -> None:
            if not device.online:
                done({"ok": False, "error": "timeout: device %s at address %s did not answer"
                      % (device.config.id, device.config.address), "value": None})
                return
            result: Any = None
            if action == "write":
                device.state[str(point)] = cmd["value"]
            if isinstance(point, str):
                result = value(device.profile.point(point), self.clock(), device.seed, device.state)
                self.batcher.add([(device.config.id, point, result, self.clock())])
            done({"ok": True, "error": None, "value": result})

        self.run_later(0.05, run)
        return None

    def _driver(self, device: SimDevice) -> Any:
        driver = self._drivers.get(device.config.id)
        if driver is None:
            bus = next(b for b in self.config.buses if b.name == device.config.bus)
            driver = self._drivers[device.config.id] = make_driver(device.config, device.profile, bus)
        return driver

    def _send_ack(self, payload: bytes, ran: bool = False) -> None:
        if not self.connected:
            self.counters["acks_dropped"] += 1
            return
        self.counters["acks"] += 1
        self.acks.append(payload)

    # -- health counters, named as the agent names them --------------------------------------------

    def _reading_counters(self) -> dict:
        buffered = sum(p.records for p in self.outbox) + self.batcher.pending
        dropped_by = {"outbox_full": self.counters["dropped_records"], "memory_full": 0, "unreadable": 0,
                      "not_stored": self.batcher.counters["unstored"]}
        return {"made": self.counters["readings"], "published": self.counters["records_published"],
                "buffered": buffered, "dropped": sum(dropped_by.values()), "dropped_by": dropped_by,
                "rejected": self.batcher.counters["rejected"]}

    def _outbox_stats(self) -> dict:
        c = self.counters
        return {"packs": len(self.outbox), "bytes": self.outbox_bytes, "max_bytes": OUTBOX_LIMIT,
                "records": sum(p.records for p in self.outbox), "dropped_packs": c["dropped_packs"],
                "dropped_bytes": c["dropped_bytes"], "dropped_records": c["dropped_records"],
                "corrupt_resets": 0, "fsync": "none (simulated)"}

    def _mqtt_stats(self) -> dict:
        c = self.counters
        return {k: c[k] for k in ("connects", "disconnects", "connect_failures", "packs_published",
                                  "records_published", "bytes_published", "packs_resent", "acks",
                                  "acks_dropped")} | {"connected": self.connected, "last_error": None}

    def device_entry(self, d: SimDevice) -> dict:
        """`…/health` → `buses.<bus>.devices.<id>`, as `Gateway._device_entry`: online (null before its
        first poll), since when, why, its last answer (0: never), and for lamps whether the control
        point is writable and the fault alarm armed (agent.lighting.lamps)."""
        entry: dict[str, Any] = {"online": d.answered, "since": int(d.since), "reason": d.reason,
                                 "last_ok": int(d.last_seen or 0)}
        facts = self.lamps.get(d.config.id)
        if facts is not None:
            entry["control_writable"] = facts.control_writable
            entry["fault_alarm_armed"] = facts.fault_alarm_armed
        return entry

    def _bus_counters(self) -> dict:
        """`…/health` → `buses`, as `Gateway._bus_counters` (docs/cddl/health.cddl `bus`): the port and
        line, who answers, no bad points (the simulated devices answer whole), and per device its
        online state, since when, why, its last answer and a lamp's facts (`device_entry`)."""
        out: dict[str, Any] = {}
        for bus in self.config.buses:
            devices = [d for d in self.devices.values() if d.config.bus == bus.name]
            out[bus.name] = {
                "port": bus.port, "line": line_text(bus.baud, bus.parity, bus.stopbits, bus.bytesize),
                "port_up": True,
                "online": sorted(d.config.id for d in devices if d.answered),
                "offline": sorted(d.config.id for d in devices if d.answered is False),
                "bad_points": {}, "quality": {},
                "devices": {d.config.id: self.device_entry(d) for d in devices},
            }
        return out


def make_config(gateway: str, site: str, devices: list[tuple], profiles: dict[str, Profile],
                interval: float, prefix: str = "fieldlink", payload: str = "senml",
                health_interval: float = 60.0, commands: CommandsConfig | None = None,
                bus_size: int = 32, district: str | None = None,
                rules: list[RuleConfig] | None = None) -> Config:
    """A `Config` as agent/config.py would load it: `devices` are (id, profile model, address) or
    (id, model, address, serves, lights); every `bus_size` devices share an RS-485 bus."""
    config = Config(path="<sim fleet %s>" % gateway,
                    gateway=GatewayConfig(site=site, id=gateway, prefix=prefix, payload=payload,
                                          health_interval=health_interval, district=district),
                    commands=commands or CommandsConfig(signed="switching"), rules=list(rules or []))
    for i, entry in enumerate(devices):
        ident, model, address = entry[:3]
        serves, lights = (entry[3], entry[4]) if len(entry) > 3 else (None, None)
        bus = "rs485-%d" % (i // bus_size + 1)
        if not config.buses or config.buses[-1].name != bus:
            link = profiles[model].link
            config.buses.append(BusConfig(name=bus, port="/dev/ttyS%d" % (i // bus_size),
                                          baud=link.get("baud", 9600), parity=link.get("parity", "N")))
        config.devices.append(DeviceConfig(id=ident, bus=bus, profile=model, address=address,
                                           interval=interval, serves=serves, lights=lights))
    config.profiles = {m: profiles[m] for m in {d[1] for d in devices}}
    return config
