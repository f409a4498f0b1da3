"""The fleet as the broker holds it: every gateway's retained status, inventory and latest health, read
back into the device facts the indicators count (agent/fleet/indicators.py). The one place that knows
those shapes (docs/payload.md §4 and §6): a change of the inventory or the health is a change here.

    view = FleetView(prefix="fieldlink")
    view.handle(topic, payload)       # every retained `…/status`, `…/inventory` and `…/health`
    facts = view.facts(now)           # [DeviceFacts], one per device of every known inventory
    view.problems                     # what was refused and why, counted by kind

What is read:

* `…/inventory` — the devices (`protocols.birth.decode`: `district`; per device `kind`,
  `serves.households`, `serves.network`, `serves.length_m`, `lights`). It stays retained while the
  gateway is offline, so an offline gateway's devices are still counted (by their last report).
* `…/status` — online or offline (the will). An offline status whose `session` is older than the
  online status held is a stale connection's will and is ignored. A gateway from before the
  status/inventory split sends its inventory inside an online status (a birth): it is taken as both;
  its will replaces that birth on the broker, so such a gateway offline has no inventory and its
  devices cannot be counted (the report says how many gateways are in that state). An empty payload
  (a cleared retained message) forgets what the topic said.
* `…/health` — `time` (when the gateway sent it) and per bus `devices` {id: {online, last_ok,
  control_writable?, fault_alarm_armed?}} (docs/cddl/health.cddl `device-state`; `last_ok` 0: never,
  missing: the health's time for a device online). A health message from an agent older than that map
  gives each device listed in `buses.<bus>.online` the health's time as its last report.

Everything from the broker is hostile: payloads over `max_payload` bytes, messages that do not decode,
fields of the wrong type and times far in the future are refused, counted in `problems` with the
topic and the reason, and never stop the view. The number of gateways is bounded (`max_gateways`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.fleet.indicators import DeviceFacts
from protocols import birth as birth_msg
from protocols import cbor
from protocols.errors import ProtocolError

__all__ = ["FUTURE_SLACK", "LEAVES", "FleetView", "GatewayState"]

FUTURE_SLACK = 3600.0  # a time this far ahead of the reader's clock is refused (a gateway's clock is wrong)
LEAVES = ("status", "inventory", "health")  # the topics the view reads (fleet report subscribes to these)


@dataclass
class GatewayState:
    """What the broker holds for one gateway."""

    site: str
    gateway: str
    inventory: dict | None = None
    online: bool | None = None  # None: no status seen
    session: int | None = None  # the connection the status held speaks of
    legacy: bool = False  # the inventory came in a birth on …/status (a gateway from before the split)
    health: dict | None = None
    health_time: float | None = None

    @property
    def district(self) -> str | None:
        value = self.inventory.get("district") if self.inventory else None
        return value if isinstance(value, str) else None


@dataclass
class FleetView:
    """Status, inventory and health by gateway; see the module docstring."""

    prefix: str = "fieldlink"
    max_payload: int = 4 << 20
    max_gateways: int = 200_000
    gateways: dict[tuple[str, str], GatewayState] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)  # kind -> count
    examples: list[str] = field(default_factory=list)  # the first few problems, in words
    messages: int = 0

    def handle(self, topic: str, payload: bytes) -> None:
        """Take one message of `<prefix>/<site>/<gateway>/<leaf>`; other topics are ignored."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.prefix or parts[3] not in LEAVES:
            return
        self.messages += 1
        site, gateway, leaf = parts[1], parts[2], parts[3]
        if len(payload) > self.max_payload:
            self._problem("too large", "%s: %d bytes, over the limit of %d" % (topic, len(payload),
                                                                                self.max_payload))
            return
        key = (site, gateway)
        state = self.gateways.get(key)
        if state is None:
            if not payload:
                return
            if len(self.gateways) >= self.max_gateways:
                self._problem("too many gateways", "%s: more than %d gateways; the rest are left out"
                              % (topic, self.max_gateways))
                return
            state = self.gateways[key] = GatewayState(site, gateway)
        try:
            if leaf == "status":
                self._status(state, payload)
            elif leaf == "inventory":
                self._inventory(state, payload)
            else:
                self._health(state, payload)
        except (ProtocolError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            self._problem("bad %s" % leaf, "%s: %s" % (topic, exc))

    def _problem(self, kind: str, text: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(text)

    def _status(self, state: GatewayState, payload: bytes) -> None:
        if not payload:  # a cleared retained status
            if state.legacy:
                state.inventory, state.legacy = None, False
            state.online, state.session = None, None
            return
        raw = cbor.loads(payload)
        if isinstance(raw, dict) and "devices" in raw:  # a birth: inventory and online status in one
            self._take_inventory(state, birth_msg.check(raw), "status")
            state.legacy = True
            raw = birth_msg.status_of(raw)
        msg = birth_msg.check(raw)
        self._same_gateway(state, msg, "status")
        if msg["online"]:
            state.online, state.session = True, msg["session"]
            return
        if state.online and state.session is not None and msg["session"] < state.session:
            return  # the will of an older connection, arrived late: stale (docs/payload.md §4)
        if state.legacy and state.inventory is not None and state.inventory["seq"] != msg["seq"]:
            return  # a legacy will of another seq than the birth held: a stale session's
        state.online, state.session = False, msg["session"]
        if state.legacy:
            state.inventory, state.legacy = None, False  # the will replaced the birth on the broker

    def _inventory(self, state: GatewayState, payload: bytes) -> None:
        if not payload:  # a cleared retained inventory
            if not state.legacy:
                state.inventory = None
            return
        msg = birth_msg.decode(payload)
        if "devices" not in msg:
            raise ValueError("not an inventory (no devices): a status map on the inventory topic")
        self._take_inventory(state, msg, "inventory")
        state.legacy = False

    def _take_inventory(self, state: GatewayState, msg: dict, leaf: str) -> None:
        self._same_gateway(state, msg, leaf)
        state.inventory = msg

    @staticmethod
    def _same_gateway(state: GatewayState, msg: dict, leaf: str) -> None:
        if msg["gateway"] != state.gateway or msg["site"] != state.site:
            raise ValueError("the %s names %s/%s, not the gateway of its topic"
                             % (leaf, msg["site"], msg["gateway"]))

    def _health(self, state: GatewayState, payload: bytes) -> None:
        if not payload:
            state.health, state.health_time = None, None
            return
        msg = cbor.loads(payload)
        if not isinstance(msg, dict):
            raise ValueError("health is not a CBOR map")
        when = msg.get("time")
        if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
            raise ValueError("health has no time (POSIX seconds), got %r" % (when,))
        buses = msg.get("buses")
        if buses is not None and not isinstance(buses, dict):
            raise ValueError("health buses must be a map, got %s" % type(buses).__name__)
        state.health = msg
        state.health_time = float(when)

    # -- what the indicators count -------------------------------------------------------------------

    def facts(self, now: float) -> list[DeviceFacts]:
        """One DeviceFacts per device of every inventory held (gateways without one give none)."""
        out: list[DeviceFacts] = []
        for state in self.gateways.values():
            if state.inventory is None:
                continue
            reports = self._reports(state, now)
            for d in state.inventory["devices"]:
                serves = d.get("serves") or {}
                health = reports.get(d["id"], {})
                lights = d.get("lights", 1)
                out.append(DeviceFacts(
                    gateway=state.gateway, device=d["id"], kind=d["kind"],
                    last_seen=health.get("last_seen"),
                    online=health.get("online") is True,
                    district=state.district,
                    lights=lights,
                    control_writable=health.get("control_writable") is True,
                    fault_alarm_armed=health.get("fault_alarm_armed") is True,
                    households=serves.get("households", 0),
                    network=serves.get("network"),
                    length_m=serves.get("length_m", 0.0),
                ))
        return out

    def _reports(self, state: GatewayState, now: float) -> dict[str, dict]:
        """{device: {online, last_seen, control_writable, fault_alarm_armed}} from the latest health's
        `buses.<bus>.devices` (last_seen from last_ok)."""
        h = state.health
        if h is None or state.health_time is None:
            return {}
        where = "%s/%s/%s/health" % (self.prefix, state.site, state.gateway)
        if state.health_time > now + FUTURE_SLACK:
            self._problem("clock ahead", "%s: its time %d is %d s ahead of this computer's clock; its "
                          "devices count as not reporting"
                          % (where, state.health_time, state.health_time - now))
            return {}
        out: dict[str, dict] = {}
        buses = h.get("buses")
        for bus in buses.values() if isinstance(buses, dict) else ():
            if not isinstance(bus, dict):
                continue
            per_device = bus.get("devices")  # {id: device-state} (docs/cddl/health.cddl)
            if isinstance(per_device, dict):
                for ident, entry in per_device.items():
                    if isinstance(ident, str) and isinstance(entry, dict):
                        out[ident] = dict(entry, last_seen=self._last_seen(entry, state, ident, where, now))
                continue
            online = bus.get("online")  # an agent from before per-device state: online lists per bus
            for ident in online if isinstance(online, list) else ():
                if isinstance(ident, str):
                    out[ident] = {"online": True, "last_seen": state.health_time}
        return out

    def _last_seen(self, entry: dict, state: GatewayState, ident: str, where: str,
                   now: float) -> float | None:
        """A device's last answer: its `last_ok` (0: never); a board's device online without one
        reported at the health's time; None for a value that is not a time or lies in the future."""
        seen = entry.get("last_ok")
        if seen is None:
            return state.health_time if entry.get("online") is True else None
        if isinstance(seen, bool) or not isinstance(seen, (int, float)):
            return None
        if not math.isfinite(seen) or seen <= 0:
            return None
        if seen > now + FUTURE_SLACK:
            self._problem("clock ahead", "%s: device %s last_ok %d is in the future" % (where, ident, seen))
            return None
        return float(seen)

    # -- counts for the report ------------------------------------------------------------------------

    def summary(self, now: float, stale_hours: float) -> dict[str, int]:
        """Gateways by state: with an inventory, offline (its will retained), offline without an
        inventory (a gateway from before the split whose will replaced its birth), without health, with
        health older than `stale_hours`."""
        states = list(self.gateways.values())
        limit = stale_hours * 3600
        return {
            "gateways": len(states),
            "with_inventory": sum(1 for s in states if s.inventory is not None),
            "offline": sum(1 for s in states if s.online is False),
            "offline_without_inventory": sum(1 for s in states if s.online is False and s.inventory is None),
            "without_health": sum(1 for s in states if s.health_time is None),
            "stale_health": sum(1 for s in states
                                if s.health_time is not None and not now - s.health_time <= limit),
            "devices": sum(len(s.inventory["devices"]) for s in states if s.inventory is not None),
        }
