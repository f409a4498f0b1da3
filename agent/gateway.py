"""The running gateway: config -> links, drivers and bus owners (scheduler) -> the uplink façade."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from agent import seams
from agent.config_lighting import METER_KINDS, default_households
from agent.config_model import BusConfig, Config
from agent.diagnosis import line_text
from agent.dispatch import Dispatcher
from agent.lighting.lamps import lamp_facts
from agent.link import Link, open_link
from agent.planner import plan_config
from agent.scheduler import Scheduler
from protocols import registry
from protocols.quality import GOOD_VALUE
from protocols.rules import Rule, RuleSet

__all__ = ["Gateway", "indicator_fields", "inventory"]

log = logging.getLogger("fieldlink.gateway")


def inventory(config: Config) -> list[dict]:
    """The device inventory for the birth message: one dict per device with its polled points, and
    what the smart-city indicators need (docs/payload.md §4): `serves` on meters and network sensors,
    `lights` on lamps."""
    out = []
    for device in config.devices:
        profile = config.profiles[device.profile]
        names = device.points if device.points is not None else profile.point_names()
        points = []
        for name in names:
            p = profile.point(name)
            entry: dict[str, Any] = {"name": p.name, "unit": p.unit}
            if p.resolution is not None:
                entry["resolution"] = p.resolution
            points.append(entry)
        # docs/payload.md: a Modbus unit id is a uint, a meter address its printed digits (text).
        address = registry.family(profile.protocol).birth_address(device.address)
        entry = {"id": device.id, "kind": profile.kind, "model": profile.model,
                 "protocol": profile.protocol, "address": address, "points": points}
        entry.update(indicator_fields(device, profile))
        out.append(entry)
    return out


def indicator_fields(device: Any, profile: Any) -> dict:
    """The birth's `serves` (meters: households, by default 1 for DL/T 645 and CJ/T 188 meters and 0 for
    others; network sensors: network and length_m) and `lights` (lamps, default 1) of one device."""
    out: dict[str, Any] = {}
    serves = dict(device.serves or {})
    if profile.kind in METER_KINDS and "households" not in serves:
        serves["households"] = default_households(profile)
    if serves:
        out["serves"] = serves
    if profile.kind == "lamp":
        out["lights"] = device.lights if device.lights is not None else 1
    return out


STOP_BUDGET = 4.5  # seconds from SIGTERM to a closed outbox and a clean DISCONNECT (systemd waits 90)
LINK_COUNTERS = ("line_errors", "skipped_frames", "discarded_bytes", "opens", "open_failures", "echoes")


class Gateway:
    """Owns the scheduler and the uplink; `start`, then `stop` (flushes)."""

    def __init__(self, config: Config, uplink: seams.Uplink | None = None,
                 link_factory: Callable[[BusConfig], Link] = open_link, lighting_options: dict | None = None,
                 **scheduler_options: Any) -> None:
        self.config = config
        if uplink is None:
            from agent.uplink import Uplink

            uplink = Uplink(config, inventory(config))
        self.uplink: seams.Uplink = uplink
        self.scheduler = Scheduler(config, self._sink, self._event, link_factory=link_factory,
                                   quality=self._quality, **scheduler_options)
        self.lighting = self._lighting(config, lighting_options or {})
        self.dispatcher = Dispatcher(self.scheduler, config.groups, self.lighting)
        self.commands = self._command_gate(config)
        self.rules = RuleSet([Rule(r.device, r.point, r.kind, r.above, r.below, r.hysteresis)
                              for r in config.rules])
        self.lamps = lamp_facts(config)
        self.uplink.commands = self.commands
        self.uplink.add_counters("commands", self.commands.stats)
        self.uplink.add_counters("polls", lambda: self._counters()["polls"])
        self.uplink.add_counters("errors", lambda: self._counters()["errors"])
        self.uplink.add_counters("buses", self._bus_counters)
        if self.lighting is not None:
            self.uplink.add_counters("lighting", self.lighting.stats)
        self._stopped = threading.Event()
        # for `fieldlink status` (agent/status_file.py): active alarms, broker state changes, poll rates
        self._alarms: dict[tuple, dict] = {}
        self._alarms_lock = threading.Lock()
        self._started = time.time()
        self._broker: tuple[bool | None, float] = (None, self._started)  # (connected, since)
        self._rates: tuple[float, dict] = (time.monotonic(), {})
        from agent.status_file import StatusFile, status_path

        self.status_file = StatusFile(status_path(config.outbox.path), self._status)

    def _status(self) -> dict:
        """The state `fieldlink status` reads (agent/status_file.py)."""
        from agent.status_file import HEALTH_PARTS, build

        counters = self.scheduler.counters()
        part_of = getattr(self.uplink, "counters_of", None)
        # only the parts the state shows: the whole health map would run the scheduler's counters three
        # more times and copy them all, every round (agent/uplink.py `counters_of`)
        health_of = part_of(HEALTH_PARTS) if part_of is not None else getattr(self.uplink, "counters", None)
        health = health_of if isinstance(health_of, dict) else None
        connected = bool(health.get("connected")) if health else False
        if connected != self._broker[0]:
            self._broker = (connected, time.time())
        now = time.monotonic()
        then, polls = self._rates
        current = {name: bus["polls"] for name, bus in counters["buses"].items()}
        span = max(1e-3, now - then)
        rates = {name: round((n - polls.get(name, 0)) / span, 2) for name, n in current.items()}
        self._rates = (now, current)
        with self._alarms_lock:
            alarms = dict(self._alarms)
        return build(self.config, counters, health, alarms, self._broker[1], rates, self._started)

    def _note_alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
                    when: float) -> None:
        with self._alarms_lock:
            if raised:
                self._alarms[(device, point or "", kind)] = {"value": value, "since": int(when)}
            else:
                self._alarms.pop((device, point or "", kind), None)

    def _lighting(self, config: Config, options: dict) -> Any:
        """The lighting task when the config has schedules or a place to run them (agent/lighting)."""
        if not config.schedules and config.gateway.latitude is None:
            return None
        from agent.lighting.runner import LightingTask

        return LightingTask(config, self.scheduler, record_event=self.uplink.event, alarm=self._alarm,
                            **options)

    def _alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
               when: float | None = None) -> None:
        log.log(logging.WARNING if raised else logging.INFO,
                "event=alarm device=%s point=%s kind=%s state=%s value=%r", device, point, kind,
                "raised" if raised else "cleared", value)
        self.uplink.alarm(device, point, kind, value, raised, when=when)

    def _device_entry(self, device: str, c: dict) -> dict:
        """One device of `…/health` → `buses.<bus>.devices`: online (null: not polled yet), since when,
        why, its last answer (docs/cddl/health.cddl `device-state`); a lamp also whether its control
        point is writable and its fault alarm armed (the L1P3 facts, docs/payload.md)."""
        entry: dict[str, Any] = {"online": c["online"], "since": int(c["since"]), "reason": c["reason"],
                                 "last_ok": int(c["last_ok"])}
        facts = self.lamps.get(device)
        if facts is not None:
            entry["control_writable"] = facts.control_writable
            entry["fault_alarm_armed"] = facts.fault_alarm_armed
        return entry

    def device_health(self) -> dict:
        """Every device's entry of `…/health` → `buses.<bus>.devices`, by device id (for tools and tests)."""
        out: dict[str, dict] = {}
        for bus in self.scheduler.counters()["buses"].values():
            for device, c in bus["devices"].items():
                out[device] = self._device_entry(device, c)
        return out

    def _command_gate(self, config: Config) -> Any:
        """The command gate: rules of protocols/commands.py, ids in the store beside the outbox."""
        from agent.command_gate import CommandGate
        from agent.command_store import IdStore, PendingIdStore

        c = config.commands
        store: Any = None
        if c.id_store:
            try:
                store = IdStore(c.id_store)
            except (sqlite3.Error, OSError) as exc:  # a read-only or full disk must not stop the polling
                log.error("event=command_store_unavailable path=%s error=%r: commands are refused (no_store) "
                          "until it can be opened", c.id_store, str(exc))
                store = PendingIdStore(c.id_store, str(exc))
        return CommandGate(config, self.dispatcher, store, send_ack=self._send_ack)

    def _send_ack(self, payload: bytes, ran: bool = False) -> None:
        send = getattr(self.uplink, "send_ack", None)
        if send is not None:
            send(payload, ran)

    def _counters(self) -> dict:
        return self.scheduler.counters()

    def _bus_counters(self) -> dict:
        out = {}
        configs = {b.name: b for b in self.config.buses}
        for name, bus in self.scheduler.counters()["buses"].items():
            cfg = configs[name]
            tcp = str(cfg.port).lower().startswith("tcp://")
            out[name] = {
                "port": cfg.port,
                "line": "Modbus TCP" if tcp else line_text(cfg.baud, cfg.parity, cfg.stopbits, cfg.bytesize),
                "port_up": bus["port_up"], "polls": bus["polls"], "readings": bus["readings"],
                "late": bus["late"], "errors": {k: v for k, v in bus["errors"].items() if v},
                "online": sorted(d for d, c in bus["devices"].items() if c["online"]),
                "offline": sorted(d for d, c in bus["devices"].items() if c["online"] is False),
                # per device, per point: bad answers so far, and the points that are bad right now
                "bad_points": {d: dict(c["bad_by_point"]) for d, c in bus["devices"].items()
                               if c["bad_by_point"]},
                "quality": {d: dict(c["quality"]) for d, c in bus["devices"].items() if c["quality"]},
                # what the line did: noise and torn frames show here even when a good reply followed
                "link": {k: bus["link"].get(k, 0) for k in LINK_COUNTERS},
                # per device: online (null: not polled yet), since when, why, and its last answer
                "devices": {d: self._device_entry(d, c) for d, c in bus["devices"].items()},
            }
        return out

    def _sink(self, readings: list) -> None:
        self.uplink.submit(readings)
        if self.lighting is not None:
            self.lighting.readings(readings)
        for rule, value, raised, when in self.rules.check(readings):
            log.warning("event=alarm device=%s point=%s kind=%s state=%s value=%r", rule.device, rule.point,
                        rule.kind, "raised" if raised else "cleared", value)
            self.uplink.alarm(rule.device, rule.point, rule.kind, value, raised, when=when)
            self._note_alarm(rule.device, rule.point, rule.kind, value, raised, when)

    def _event(self, device: str, online: bool, reason: str) -> None:
        self.uplink.device_state(device, online, reason)
        if self.lighting is not None:
            self.lighting.device_state(device, online)

    def _quality(self, device: str, point: str, quality: str | None, when: float) -> None:
        """A point turned bad (`quality` is why, e.g. "not_available") or good again (None): a
        `quality` alarm, raised with the quality text as its value, cleared with "good"."""
        raised = quality is not None
        value = quality if raised else GOOD_VALUE
        log.log(logging.WARNING if raised else logging.INFO,
                "event=alarm device=%s point=%s kind=quality state=%s value=%r", device, point,
                "raised" if raised else "cleared", value)
        self.uplink.alarm(device, point, "quality", value, raised, when=when)
        self._note_alarm(device, point, "quality", value, raised, when)

    def start(self) -> None:
        g = self.config.gateway
        log.info("event=starting site=%s gateway=%s buses=%d devices=%d", g.site, g.id,
                 len(self.scheduler.workers), len(self.scheduler.drivers))
        for plan in plan_config(self.config):
            if plan.devices:
                log.info("bus=%s port=%s line=%r requests_per_cycle=%d cycle_ms=%.1f utilisation=%.1f%%",
                         plan.bus.name, plan.bus.port, plan.line_text, plan.requests, plan.cycle_time * 1000,
                         plan.utilisation * 100)
        c = self.config.commands
        if c.signed == "none":
            log.warning('event=commands_unsigned [commands] signed = "none": every command runs unsigned, '
                        "relays and valves included")
        log.info("event=commands signed=%s keys=%d queue=%d max_bytes=%d id_store=%s ids=%d", c.signed,
                 len(c.keys), c.queue, c.max_bytes, c.id_store,
                 self.commands.store.loaded if self.commands.store is not None else 0)
        self.uplink.start()
        self.scheduler.start()
        if self.lighting is not None:
            self.lighting.start()
        self.status_file.start()

    def stop(self) -> None:
        """Stop polling (the poll in flight is finished), commit every reading made to the outbox, publish
        for a moment, go offline, disconnect: all within STOP_BUDGET seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        began = time.monotonic()
        log.info("event=stopping")
        if self.lighting is not None:
            self.lighting.stop(timeout=1.0)
        self.scheduler.stop(timeout=2.0)
        self.status_file.stop()
        left = STOP_BUDGET - (time.monotonic() - began)
        self.uplink.stop(flush=True, drain=max(0.2, min(1.2, left - 1.0)), timeout=0.8)
        self.commands.close()
        c = self.scheduler.counters()
        log.info("event=stopped polls=%d readings=%d errors=%s", c["polls"], c["readings"],
                 ",".join("%s:%d" % kv for kv in c["errors"].items() if kv[1]) or "none")
