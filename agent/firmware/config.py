"""`fieldlink firmware-config FILE`: compile the agent's TOML into the firmware's compact JSON.

The TOML is loaded and validated by the agent's own loader (agent/config.py), so a config the agent
rejects is rejected here with the same messages. The output carries only what the board needs, with
the work done on the laptop: the poll plan of agent/planner.py turned into request frames ready to
send (Modbus RTU ADUs, DL/T 645 and CJ/T 188 read frames) and, per request, indexes into shared
tables of point names and decode specs (a DL/T 645 block DI such as 0001FF00 is one request whose
points carry their byte offset and length in the value); the DL/T 645 follow-up settings; the
writable points with the profile's limits; the threshold rules; the inventory as CBOR bytes with
its CRC-32 (the status and the will are small maps the board makes per connection); the RS-485
wiring per board; the groups, the lamps' control, fault and lit points; and, for a config with
lighting schedules, the gateway's place, its time zone compiled to an offset table
(agent/lighting/zones.py) and the schedules with their groups resolved to device ids.
The layout is described in docs/flashing.md ("The compiled config").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agent import planner
from protocols import __version__, birth, compiled, registry
from protocols.commands import CLOCK_SET_AFTER
from protocols.compiled import FORMAT
from protocols.family import number as _number

BOARDS: dict[str, list[dict[str, int]]] = {
    # bus index -> UART number and pins (tx, rx, DE/RE); see docs/flashing.md for the wiring
    "esp32": [{"uart": 2, "tx": 17, "rx": 16, "de": 4}, {"uart": 1, "tx": 25, "rx": 26, "de": 27}],
    "rp2040": [{"uart": 0, "tx": 0, "rx": 1, "de": 2}, {"uart": 1, "tx": 4, "rx": 5, "de": 6}],
    "host": [{"uart": 0, "de": 2}, {"uart": 1, "de": 6}],
}
SAFE_PIN = {"esp32": 0, "rp2040": 22, "host": 0}


class FirmwareConfigError(Exception):
    """The config is valid for the agent but cannot run on a board (says why)."""


class _Table:
    """Unique entries in first-seen order: the board keeps one copy of what devices share."""

    def __init__(self) -> None:
        self.items: list = []
        self.index: dict = {}

    def add(self, item: Any) -> int:
        key = json.dumps(item, sort_keys=True)
        if key not in self.index:
            self.index[key] = len(self.items)
            self.items.append(item)
        return int(self.index[key])


def _requests(plan: Any, device: Any, names: _Table, specs: _Table) -> list:
    family = registry.family(plan.profile.protocol)
    options = planner.device_options(device, plan.profile)
    out = []
    for r in plan.requests:
        frame = family.request_frame(str(device.address), options, r)
        pts = [specs.add(family.decode_spec(p, off, names.add(p.name))) for p, off in r.points]
        out.append([frame.hex(), pts])
    return out


def _write_spec(family: Any, p: Any, name: int, options: dict) -> list:
    """What a command needs to check and write a point: the profile's limits, then how to write."""
    return [name, _number(p.min), _number(p.max), p.values, *family.write_spec(p, options)]


def _birth_device(index: int, device: Any, profile: Any, names: list) -> dict:
    points = []
    for j, name in enumerate(names):
        p = profile.point(name)
        entry: dict = {"name": p.name, "unit": p.unit, "alias": j}
        if p.resolution is not None:
            entry["resolution"] = p.resolution
        points.append(entry)
    from agent.gateway import indicator_fields

    entry = {"id": device.id, "kind": profile.kind, "model": profile.model, "protocol": profile.protocol,
             "address": str(device.address), "alias": index, "points": points}
    entry.update(indicator_fields(device, profile))  # serves, lights: the same as the agent's birth
    return entry


def inventory_bytes(gateway: Any, devices: list, base_name: str, seq: int = 0) -> bytes:
    """The board's retained inventory, byte for byte what protocols.birth encodes (it is sent from flash
    as it is; its CRC-32 goes into every status)."""
    versions = {"fieldlink": __version__, "firmware": __version__}
    return birth.encode(birth.make_inventory(gateway.id, gateway.site, devices, seq, "senml", versions,
                                             base_name, getattr(gateway, "district", None)))


def _lamps(config: Any, index: dict, names: _Table) -> list:
    """[device, control name | -1, control writable, fault alarm armed, lit name | -1, lit_above] of
    every lamp: the same facts as the agent's health (agent/lighting/lamps.py)."""
    from agent.lighting.lamps import lamp_facts

    out = []
    for device, f in lamp_facts(config).items():
        out.append([index[device], names.add(f.control) if f.control else -1, int(f.control_writable),
                    int(f.fault_alarm_armed), names.add(f.lit) if f.lit else -1, _number(f.lit_above)])
    return out


def _lighting(config: Any, now: float | None) -> dict | None:
    """The schedules the board runs and its place; None without schedules (its time zone is the
    compiled config's top-level `zone`, which relay deadlines use too).

    Each schedule is the config's table with its group resolved to device ids (the board parses it
    with the same protocols/schedule.py)."""
    if not config.schedules:
        return None
    g = config.gateway
    schedules = []
    for table in config.schedules:
        devices = list(config.groups[table["group"]]) if "group" in table else list(table["devices"])
        steps = [{k: step[k] for k in ("at", "set", "days") if k in step} for step in table["steps"]]
        schedules.append({"name": table["name"], "devices": devices, "steps": steps})
    return {"latitude": float(g.latitude), "longitude": float(g.longitude),
            "alarm_after": _number(config.lighting.alarm_after), "schedules": schedules}


def _zone(name: str, now: float | None) -> dict:
    """Time zone `name` compiled from 1 January of last year, YEARS_AHEAD years on (protocols/zone.py
    says when it expired): the board's one zone, for lighting schedules and relay deadlines."""
    from agent.lighting.zones import compile_zone
    from protocols import solar

    year = solar.civil_from_days(int((time.time() if now is None else now) // 86400))[0]
    return compile_zone(name, year - 1).to_dict()


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def name_warnings(compiled: dict) -> list:
    """On an RP2040 a DNS lookup blocks the whole board, and its hardware watchdog allows 8 s
    (firmware_py/app.py WDT_MAX_MS): a host name whose lookup times out resets it. One warning per name."""
    if compiled.get("board") != "rp2040":
        return []
    names = [("broker host", compiled["broker"]["host"])]
    names.append(("NTP host (--ntp-host)", compiled.get("ntp_host") or "pool.ntp.org"))
    return ["%s %s is a name: on an RP2040 a DNS lookup that takes more than 8 s (no DNS answering) "
            "resets the board; give an IP address, or make sure DNS answers" % (what, host)
            for what, host in names if not _is_address(host)]


LOG_LEVELS = ("debug", "info", "warning", "error")  # firmware_py/log.py


def compile_config(config: Any, board: str = "esp32", wifi: tuple | None = None, ring_slots: int = 48,
                   ring_slot_size: int = 1024, bus_pins: dict | None = None, inflight: int = 4,
                   watchdog_ms: int = 30000, now: float | None = None,
                   log_level: str = "info", ntp_host: str | None = None) -> dict:
    """The firmware JSON (a dict) for a loaded agent `Config`.

    Per-point data is stored once in shared tables (`names`, `specs`, `wspecs`) that devices refer
    to by index, so 16 meters of one model cost the board one copy of the model's point list. `now`
    (POSIX seconds, default the clock) picks the first year of the compiled time zone and the board's
    `clock_floor`: a day before it (a host clock a little ahead is no harm)."""
    if board not in BOARDS:
        raise FirmwareConfigError("board must be one of %s" % ", ".join(BOARDS))
    plans = planner.plan_config(config)
    if len(plans) > len(BOARDS[board]):
        raise FirmwareConfigError("%d buses configured; the firmware drives at most %d UARTs"
                                  % (len(plans), len(BOARDS[board])))
    g = config.gateway
    if g.payload != "senml":
        raise FirmwareConfigError("gateway.payload = %r: the firmware publishes the senml profile only"
                                  % g.payload)
    b = config.broker
    endpoints = b.endpoint_list()
    if len(endpoints) > 1:
        raise FirmwareConfigError("broker.endpoints lists %d brokers; the firmware connects to one: give the "
                                  "board one endpoint (a node, or a load balancer in front of the cluster)"
                                  % len(endpoints))
    (ep,) = endpoints
    if ep.tls:
        where = "broker.tls" if ep.where == "broker" else ep.where
        raise FirmwareConfigError("%s: the firmware's MQTT client has no TLS; use a local broker or a "
                                  "TLS-terminating bridge" % where)
    buses: list = []
    devices: list = []
    birth_devices: list = []
    names, specs, wspecs = _Table(), _Table(), _Table()
    writes: list = []
    actions: list = []
    index: dict = {}  # device id -> position
    for i, plan in enumerate(plans):
        bus = plan.bus
        if plan.tcp or "://" in bus.port:
            raise FirmwareConfigError("bus %s: %s is not a serial line; the firmware has UARTs only"
                                      % (bus.name, bus.port))
        spec = {"name": bus.name, "port": bus.port, "baud": bus.baud, "parity": bus.parity,
                "bytesize": bus.bytesize, "stopbits": bus.stopbits, "timeout_ms": bus.timeout_ms,
                "turnaround_ms": bus.turnaround_ms, "pause_ms": bus.pause_ms}
        spec.update(BOARDS[board][i])
        if bus_pins and bus.name in bus_pins:
            spec.update(bus_pins[bus.name])
        buses.append(spec)
        for dplan in plan.devices:
            d = dplan.device
            profile = dplan.profile
            options = planner.device_options(d, profile)
            polled = [p.name for r in dplan.requests for p, _ in r.points]
            index[d.id] = len(devices)
            family = registry.family(profile.protocol)
            entry = {"id": d.id, "bus": i, "protocol": profile.protocol, "model": profile.model,
                     "address": str(d.address),
                     "interval": _number(d.interval), "requests": _requests(dplan, d, names, specs)}
            entry.update(family.compiled_entry(options))  # what the protocol's device steps need
            if family.broadcast and any(p.writable and p.broadcast for p in profile.points):
                entry["broadcast_ms"] = family.broadcast_idle_ms(options)  # the line's idle time after one
            birth_devices.append(_birth_device(len(birth_devices), d, profile, polled))
            for p in profile.points:  # every writable point, polled or not (schedules, commands)
                if p.writable:
                    wspec = _write_spec(family, p, names.add(p.name), options)
                    writes.append([len(devices), wspecs.add(wspec), int(bool(p.switching)),
                                   int(bool(p.broadcast and family.broadcast))])
            for action in profile.action_names():
                if action in family.actions:
                    actions.append([len(devices), action])
            devices.append(entry)
    rules = []
    for rule in config.rules:
        if rule.device in index:
            rules.append([index[rule.device], names.add(rule.point), rule.kind, _number(rule.above),
                          _number(rule.below), _number(rule.hysteresis)])
    groups = [[name, [index[d] for d in members]] for name, members in sorted(config.groups.items())]
    lamps = _lamps(config, index, names)
    lighting = _lighting(config, now)
    made = int(time.time() if now is None else now)
    base_name = "%s:" % g.id
    seq = 0
    inventory = inventory_bytes(g, birth_devices, base_name, seq)
    out: dict = {
        "format": FORMAT,
        "board": board,
        "clock_floor": max(CLOCK_SET_AFTER, made - 86400),
        "gateway": {"site": g.site, "id": g.id, "prefix": g.prefix, "payload": g.payload,
                    "health": _number(g.health_interval), "base_name": base_name},
        "broker": {"host": ep.host, "port": ep.port,
                   "client_id": b.client_id or "%s-%s-%s" % (g.prefix, g.site, g.id),
                   "username": ep.username, "password": ep.password, "keepalive": b.keepalive,
                   "reconnect_min": _number(b.reconnect_min), "reconnect_max": _number(b.reconnect_max),
                   "probe_interval": _number(b.probe_interval), "probe_window": _number(b.probe_window),
                   "persistent_session": b.persistent_session},
        "ring": {"path": "/outbox.ring", "slots": ring_slots, "slot_size": ring_slot_size},
        "batch": {"max_records": config.batch.max_records, "max_age": _number(config.batch.max_age),
                  "max_bytes": min(config.batch.max_bytes, ring_slot_size - 19)},
        "inflight": inflight,
        "watchdog_ms": watchdog_ms,
        "safe_pin": SAFE_PIN[board],
        "buses": buses,
        "names": names.items,
        "specs": specs.items,
        "devices": devices,
        "wspecs": wspecs.items,
        "writes": writes,
        "actions": actions,
        "rules": rules,
        "inventory": inventory.hex(),
        "inventory_crc": birth.digest(inventory),
        "seq": seq,
        "groups": groups,
        "lamps": lamps,
        # the command keys go to the board's flash (config.json): protect the board as the key file
        "commands": {"signed": config.commands.signed, "keys": [k.hex() for k in config.commands.keys],
                     "id_window": config.commands.id_window, "queue": min(config.commands.queue, 8),
                     "max_bytes": config.commands.max_bytes},
    }
    if lighting is not None:
        out["lighting"] = lighting
    if (lighting is not None or actions) and g.timezone:  # schedules; a relay deadline's local time
        out["zone"] = _zone(g.timezone, now)
    if wifi:
        out["wifi"] = {"ssid": wifi[0], "password": wifi[1]}
    if log_level not in LOG_LEVELS:
        raise FirmwareConfigError("log level must be one of %s" % ", ".join(LOG_LEVELS))
    out["log_level"] = log_level  # the board's console log (firmware_py/log.py)
    if ntp_host:
        out["ntp_host"] = ntp_host  # the NTP server the board asks (firmware_py/net.py)
    try:
        compiled.check(out)  # the board runs the same check at boot
    except compiled.CompiledError as exc:  # pragma: no cover - a bug of this compiler
        raise FirmwareConfigError(str(exc)) from None
    return out


def dumps(compiled: dict) -> str:
    """Compact JSON (no spaces): the board parses it once at boot."""
    return json.dumps(compiled, separators=(",", ":"), sort_keys=True)


def _pins(text: str) -> tuple:
    try:
        name, rest = text.split("=", 1)
        parts = [int(x) if x not in ("", "-") else None for x in rest.split(":")]
        keys = ("uart", "tx", "rx", "de")
        return name, {k: v for k, v in zip(keys, parts)}
    except ValueError:
        raise argparse.ArgumentTypeError("expected BUS=UART:TX:RX:DE (DE '-' for auto-direction), got %r"
                                         % text) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="FILE", help="the agent's TOML config")
    parser.add_argument("-o", "--output", help="write the JSON here (default: standard output)")
    parser.add_argument("--board", choices=sorted(BOARDS), default="esp32",
                        help="default UART pins per board (default esp32)")
    parser.add_argument("--bus-pins", action="append", type=_pins, default=[], metavar="BUS=UART:TX:RX:DE",
                        help="UART and pins of one bus (repeatable); DE '-' for auto-direction transceivers")
    parser.add_argument("--wifi-ssid")
    parser.add_argument("--wifi-password", default="")
    parser.add_argument("--ring-slots", type=int, default=48, help="packs the flash ring holds (default 48)")
    parser.add_argument("--ring-slot-size", type=int, default=1024, help="bytes per ring slot (default 1024)")
    parser.add_argument("--inflight", type=int, default=4, help="QoS 1 packs awaiting PUBACK at once")
    parser.add_argument("--watchdog-ms", type=int, default=30000)
    parser.add_argument("--ntp-host", metavar="HOST",
                        help="the NTP server the board sets its clock from (default MicroPython's "
                             "pool.ntp.org; on a network without internet, the site's own)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                        help="what the board prints on its console (default info: boot, Wi-Fi, broker, "
                             "devices offline and back, per-bus errors)")


def run(args: argparse.Namespace) -> int:
    from agent.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2  # docs/cli.md: the input is wrong
    except OSError as exc:
        print("fieldlink firmware-config: cannot read %s: %s" % (args.config, exc), file=sys.stderr)
        return 2
    try:
        compiled = compile_config(
            config, args.board, (args.wifi_ssid, args.wifi_password) if args.wifi_ssid else None,
            args.ring_slots, args.ring_slot_size, dict(args.bus_pins), args.inflight, args.watchdog_ms,
            log_level=args.log_level, ntp_host=args.ntp_host)
    except FirmwareConfigError as exc:
        print("%s: %s" % (args.config, exc), file=sys.stderr)
        return 2
    if compiled["actions"] and "zone" not in compiled:
        print("%s: warning: relay commands carry a deadline in the meter's local time, and a board knows "
              "only UTC: set [gateway] timezone (with latitude and longitude) so that it sends local time"
              % args.config, file=sys.stderr)
    for warning in name_warnings(compiled):
        print("%s: warning: %s" % (args.config, warning), file=sys.stderr)
    text = dumps(compiled)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print("%s: %d buses, %d devices, %d requests, %d schedules -> %s (%d bytes)" % (
            args.config, len(compiled["buses"]), len(compiled["devices"]),
            sum(len(d["requests"]) for d in compiled["devices"]),
            len(compiled.get("lighting", {}).get("schedules", ())), args.output, len(text)), file=sys.stderr)
    else:
        print(text)
    return 0
