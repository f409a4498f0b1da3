"""The checks of each config section: broker, buses, devices (profiles, addresses, points,
protocol options), rules and the poll plan, and the address normalisation the devices need.

Each `check_*` adds what is wrong to a Checker and returns the good part as config dataclasses.
"""

from __future__ import annotations

import os

from agent.config_keys import (
    Checker,
    Spec,
    boolean,
    choice,
    closest,
    fill,
    integer,
    name,
    number,
    resolve_path,
    show,
    str_list,
    string,
    topic_prefix,
)
from agent.config_model import (
    BrokerConfig,
    BusConfig,
    CommandsConfig,
    Config,
    DeviceConfig,
    Endpoint,
    RuleConfig,
)
from protocols import registry
from protocols.commands import SIGNED_MODES, SWITCHING_ACTIONS
from protocols.profiles import Profile, ProfileError, list_profiles, load_profile

__all__ = [
    "BATCH",
    "COMMANDS",
    "GATEWAY",
    "OUTBOX",
    "TOP",
    "check_broker",
    "check_buses",
    "check_commands",
    "check_devices",
    "check_plan",
    "check_rules",
    "find_profile",
    "normalise_address",
]

BAUDS = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)
RULE_KINDS = ("threshold", "fault", "leak")

GATEWAY: dict[str, Spec] = {
    "site": name(), "id": name(), "prefix": topic_prefix(), "payload": choice("senml", "compact"),
    "health_interval": number(1), "latitude": number(-90, 90), "longitude": number(-180, 180),
    "timezone": string(), "district": name()}
BROKER: dict[str, Spec] = {
    "host": string(), "port": integer(1, 65535), "client_id": string(), "username": string(),
    "password": string(False), "tls": boolean(), "ca_file": string(), "cert_file": string(),
    "key_file": string(), "keepalive": integer(5, 3600), "reconnect_min": number(0, 3600, strict=True),
    "reconnect_max": number(0, 86400, strict=True), "puback_timeout": number(0, 3600, strict=True),
    "probe_interval": number(0.1, 3600), "probe_window": number(0, 86400 * 7),
    "connect_timeout": number(0.1, 120), "persistent_session": boolean(),
    "session_expiry": integer(0, 0xFFFFFFFF), "mqtt_version": choice("auto", "5", "3.1.1")}
#: keys of one `[broker] endpoints` entry written as a table (the URL string alone is the short form)
ENDPOINT: dict[str, Spec] = {
    "url": ("a broker URL", lambda v: v), "ca_file": string(), "cert_file": string(), "key_file": string(),
    "username": string(), "password": string(False)}
TLS_FILES = ("ca_file", "cert_file", "key_file")
OUTBOX: dict[str, Spec] = {
    "path": string(), "max_bytes": integer(65536), "fsync": choice("normal", "full"),
    "sync_every": number(0, 3600), "inflight": integer(1, 1000),
    "memory_bytes": integer(0, 1024 * 1024 * 1024)}
BATCH: dict[str, Spec] = {
    "max_records": integer(1, 10000), "max_age": number(0, 3600, strict=True),
    "max_bytes": integer(512, 1024 * 1024), "adaptive": boolean(), "linger": number(0, 60)}
BUS: dict[str, Spec] = {
    "name": name(), "port": string(), "baud": choice(*BAUDS), "parity": choice("N", "E", "O", upper=True),
    "bytesize": choice(7, 8), "stopbits": choice(1, 2), "timeout_ms": integer(1, 60000),
    "turnaround_ms": integer(0, 10000), "pause_ms": integer(0, 10000)}
DEVICE: dict[str, Spec] = {
    "id": name(), "bus": name(), "profile": name(), "address": ("a device address", lambda v: v),
    "interval": number(0.05, 86400), "points": str_list(), "max_registers": integer(1, 125),
    "single_point_requests": boolean(), "options": ("a table of protocol options", lambda v: v),
    "serves": ("a table", lambda v: v), "lights": integer(1, 100000)}
RULE: dict[str, Spec] = {
    "device": name(), "point": name(), "kind": choice(*RULE_KINDS), "above": number(-1e300),
    "below": number(-1e300), "hysteresis": number(0)}
COMMANDS: dict[str, Spec] = {
    "signed": choice(*SIGNED_MODES), "key_file": string(), "max_bytes": integer(256, 1024 * 1024),
    "queue": integer(1, 10000), "id_window": integer(60, 31 * 86400), "id_store": string()}
TOP = ("format", "profiles", "gateway", "broker", "outbox", "batch", "commands", "buses", "devices", "rules",
       "groups", "schedules", "lighting")


def normalise_address(protocol: str, address: object, tcp: bool = False) -> str:
    """The canonical text of a device address; ValueError saying what was expected."""
    return str(registry.family(protocol).normalise_address(address, tcp))


def find_profile(model: str, directories: list[str] | None = None) -> Profile:
    """Load profile `model` from the site's profile folders, then the packaged ones."""
    for directory in directories or []:
        if os.path.exists(os.path.join(directory, model + ".json")):
            return load_profile(model, directory)
    return load_profile(model)


def _known_profiles(directories: list[str]) -> list[str]:
    names: set[str] = set()
    for directory in [*directories, None]:
        try:
            names.update(list_profiles(directory))
        except OSError:
            pass
    return sorted(names)


def check_broker(ck: Checker, broker: dict, base_dir: str) -> BrokerConfig:
    """The [broker] table: TLS files exist and go with TLS, pairs that need each other, `endpoints`."""
    path = ("broker",)
    vals = fill(ck, broker, path, BROKER, skip=("endpoints",))
    endpoints = broker.get("endpoints")
    for key in TLS_FILES:
        if key in vals:
            vals[key] = resolve_path(base_dir, vals[key])
            if not os.path.isfile(vals[key]):
                ck.error((*path, key), "file %s not found; expected a readable PEM file" % vals[key])
            if endpoints is None and not vals.get("tls", False):
                ck.error((*path, key), "%s is set but tls is false; expected tls = true" % key)
    if "key_file" in vals and "cert_file" not in vals:
        ck.error((*path, "key_file"), "key_file without cert_file; expected both for a client certificate")
    if "password" in vals and "username" not in vals:
        ck.error((*path, "password"), "password without username; expected a username too")
    if vals.get("reconnect_max", 60.0) < vals.get("reconnect_min", 1.0):
        ck.error((*path, "reconnect_max"), "expected reconnect_max >= reconnect_min")
    if "tls" in vals and vals["tls"] and "port" not in vals:
        vals["port"] = 8883
    if endpoints is not None:
        for key in ("host", "port", "tls"):
            if key in broker:
                ck.error((*path, key), "%s and endpoints are both set; expected one of them (an endpoint is "
                         "\"mqtt://HOST:PORT\" or \"mqtts://HOST:PORT\" for TLS)" % key)
        vals["endpoints"] = _check_endpoints(ck, endpoints, vals, base_dir)
        if vals["endpoints"] and not any(e.tls for e in vals["endpoints"]):
            for key in TLS_FILES:
                if key in vals:
                    ck.error((*path, key), "%s is set but no endpoint uses TLS; expected an mqtts:// endpoint"
                             % key)
    return BrokerConfig(**vals)


def _check_endpoints(ck: Checker, endpoints: object, vals: dict, base_dir: str) -> list[Endpoint]:
    """`[broker] endpoints`: URL strings, or tables {url, ca_file, cert_file, key_file, username, password}
    whose keys override those of [broker] for that endpoint."""
    from agent.endpoints import canonical_url, parse_url

    path = ("broker", "endpoints")
    example = '["mqtts://a.example:8883", "mqtt://b.example:1883"]'
    if not isinstance(endpoints, list) or not endpoints:
        ck.error(path, "expected a list of broker URLs such as %s, got %s" % (example, show(endpoints)))
        return []
    out: list[Endpoint] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(endpoints):
        where = (*path, i)
        own: dict = {}
        if isinstance(item, dict):
            own = fill(ck, item, where, ENDPOINT, required=("url",))
            url = own.pop("url", None)
            if url is None:
                continue
        elif isinstance(item, str):
            url = item
        else:
            ck.error(where, "expected a URL string (%s) or a table with url = ..., got %s"
                     % (example, show(item)))
            continue
        try:
            tls, host, port = parse_url(url)
        except ValueError as exc:
            shown = "" if "@" in str(url) else ", got %s" % show(url)
            ck.error(where, "%s; expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]%s" % (exc, shown))
            continue
        for key in TLS_FILES:
            if key in own:
                own[key] = resolve_path(base_dir, own[key])
                if not os.path.isfile(own[key]):
                    ck.error((*where, key), "file %s not found; expected a readable PEM file" % own[key])
                if not tls:
                    ck.error((*where, key), "%s is set but the URL is mqtt://; expected mqtts:// for TLS"
                             % key)
        if "password" in own and "username" not in own and "username" not in vals:
            ck.error((*where, "password"), "password without username; expected a username too")
        canonical = canonical_url(tls, host, port)
        if canonical in seen:
            ck.error(where, "%s is already endpoint %d; expected each endpoint once"
                     % (canonical, seen[canonical]))
            continue
        seen[canonical] = i
        settings = {k: own[k] if k in own else vals.get(k) for k in (*TLS_FILES, "username", "password")}
        out.append(Endpoint(url=canonical, host=host, port=port, tls=tls, where="broker.endpoints[%d]" % i,
                            own=tuple(sorted(own)), **settings))
    return out


LINK_KEYS = ("baud", "parity", "stopbits", "bytesize")


def check_buses(ck: Checker, buses: object) -> list[BusConfig]:
    """The [[buses]] tables: unique names, a tcp:// port that parses."""
    out: list[BusConfig] = []
    names: dict[str, int] = {}
    for path, bus in ck.tables(buses, "buses"):
        before = len(ck.issues)
        vals = fill(ck, bus, path, BUS, required=("name", "port"))
        bad_link = any(issue.key.rsplit(".", 1)[-1] in LINK_KEYS for issue in ck.issues[before:])
        if bad_link and "name" in vals:
            ck.bad_links.add(vals["name"])  # no warning about settings already reported as errors
        if "name" not in vals or "port" not in vals:
            continue
        if not ck.unique(names, path, "bus", "name", vals["name"]):
            continue
        port = vals["port"]
        if port.lower().startswith("tcp://"):
            from agent.link.tcp_link import parse_tcp_url

            try:
                parse_tcp_url(port)
            except ValueError as exc:
                ck.error((*path, "port"), "%s; expected tcp://host:port" % exc)
        # 8N1 is accepted: common in the field though Modbus asks for 11-bit characters
        out.append(BusConfig(line=ck.line_of(path), **vals))
    return out


def _check_options(ck: Checker, path: tuple, options: object, profile: Profile | None) -> dict:
    if not isinstance(options, dict):
        ck.error(path, "expected a table of protocol options, got %s" % show(options))
        return {}
    if profile is None:
        return dict(options)
    specs = registry.family(profile.protocol).options
    known = list(specs)
    known += [k for k in profile.options if k not in known]
    ck.unknown_keys(options, path, known)
    out = {}
    for key, value in options.items():
        if key not in known:
            continue
        spec = specs.get(key)
        problem = spec.check(value) if spec is not None else None
        if problem is not None:
            # never echo a secret (a meter password)
            got = "the value is not shown" if spec.secret else "got %s" % show(value)
            ck.error((*path, key), "%s%s %s" % (problem, "," if spec.kind == "int" else ";", got))
            continue
        out[key] = value
    return out


def _device_profile(ck: Checker, path: tuple, model: str, profile_dirs: list[str],
                    profiles: dict[str, Profile], failed: set[str]) -> Profile | None:
    """Profile `model` (loaded once per check); None, after an error the first time, if unusable."""
    if model in profiles:
        return profiles[model]
    if model in failed:
        return None
    try:
        profile = find_profile(model, profile_dirs)
    except ProfileError as exc:
        failed.add(model)
        if "no profile for model" in str(exc):
            models = _known_profiles(profile_dirs)
            close = closest(model, models, cutoff=0.5)
            hint = ' (did you mean "%s"?)' % close if close else ""
            ck.error((*path, "profile"), 'no profile "%s"%s; expected one of: %s'
                     % (model, hint, ", ".join(models) or "(no profiles installed)"))
        else:
            ck.error((*path, "profile"), 'profile "%s" is not valid: %s' % (model, exc))
        return None
    profiles[model] = profile
    return profile


def _check_link(ck: Checker, path: tuple, profile: Profile, bus: BusConfig, tcp: bool) -> bool:
    """A DL/T 645 or CJ/T 188 device on Modbus TCP is an error; other serial settings than the
    profile's factory defaults a warning."""
    if tcp and not registry.family(profile.protocol).tcp:
        ck.error((*path, "bus"), 'profile "%s" speaks %s, which needs a serial bus; bus "%s" is '
                 'Modbus TCP (%s); expected a serial bus' % (profile.model, profile.protocol,
                                                            bus.name, bus.port))
        return False
    if not tcp and bus.name not in ck.bad_links:
        want = profile.link
        got = {"baud": bus.baud, "parity": bus.parity, "stopbits": bus.stopbits}
        diff = ["%s %s" % (k, want[k]) for k in ("baud", "parity", "stopbits")
                if k in want and want[k] != got[k]]
        if diff:
            ck.warn((*path, "bus"), 'profile "%s" expects %s by default; bus "%s" has baud %d parity %s '
                    'stopbits %d' % (profile.model, ", ".join(diff), bus.name, bus.baud, bus.parity,
                                     bus.stopbits))
    return True


def _check_points(ck: Checker, path: tuple, points: list[str], profile: Profile) -> bool:
    ok = True
    for point in points:
        if not profile.has_point(point):
            close = closest(point, profile.point_names())
            hint = ' (did you mean "%s"?)' % close if close else ""
            ck.error((*path, "points"), 'point "%s" is not in profile "%s"%s; expected one of: %s'
                     % (point, profile.model, hint, ", ".join(profile.point_names())))
            ok = False
    if not points:
        ck.error((*path, "points"), "expected at least one point (leave points out for all)")
        ok = False
    return ok


def check_devices(ck: Checker, devices: object, buses: dict[str, BusConfig],
                  profile_dirs: list[str], profiles: dict[str, Profile]) -> list[DeviceConfig]:
    """The [[devices]] tables: unique ids, a known bus and profile, an address unique on its bus
    (normalised), points the profile has, protocol options. Fills `profiles` with those used."""
    out: list[DeviceConfig] = []
    ids: dict[str, int] = {}
    addresses: dict[tuple, tuple[str, int]] = {}
    failed_profiles: set[str] = set()
    for path, dev in ck.tables(devices, "devices"):
        vals = fill(ck, dev, path, DEVICE, required=("id", "bus", "profile", "address"))
        ok = all(k in vals for k in ("id", "bus", "profile", "address"))
        dev_id = vals.get("id")
        if dev_id is not None and not ck.unique(ids, path, "device", "id", dev_id):
            ok = False
        bus = buses.get(vals.get("bus", ""))
        if "bus" in vals and bus is None:
            known = ", ".join(buses) or "none defined"
            ck.error((*path, "bus"), 'no bus named "%s"; expected one of the [[buses]] names (%s)'
                     % (vals["bus"], known))
            ok = False
        profile = None
        if "profile" in vals:
            profile = _device_profile(ck, path, vals["profile"], profile_dirs, profiles, failed_profiles)
            ok = ok and profile is not None
        tcp = bus is not None and bus.port.lower().startswith("tcp://")
        if profile is not None and bus is not None and not _check_link(ck, path, profile, bus, tcp):
            ok = False
        if profile is not None and "address" in vals:
            try:
                vals["address"] = normalise_address(profile.protocol, vals["address"], tcp)
            except ValueError as exc:
                ck.error((*path, "address"), "expected %s, got %s" % (exc, show(vals["address"])))
                ok = False
            else:
                key = (vals.get("bus"), registry.folder(profile.protocol), vals["address"])
                if key in addresses:
                    other, line = addresses[key]
                    ck.error((*path, "address"), 'address %s is already used on bus "%s" by device "%s" '
                             '(line %d); expected a unique address per bus'
                             % (vals["address"], vals.get("bus"), other, line))
                    ok = False
                else:
                    addresses[key] = (str(dev_id), ck.line_of(path))
        elif "address" in vals:
            vals["address"] = str(vals["address"])
        if profile is not None and "points" in vals and not _check_points(ck, path, vals["points"], profile):
            ok = False
        if profile is not None and "max_registers" not in registry.family(profile.protocol).options \
                and "max_registers" in vals:
            ck.error((*path, "max_registers"), "applies to Modbus devices only; profile %s speaks %s"
                     % (profile.model, profile.protocol))
        if "options" in dev:
            vals["options"] = _check_options(ck, (*path, "options"), dev["options"], profile)
        if ok:
            out.append(DeviceConfig(line=ck.line_of(path), **vals))
    return out


def check_rules(ck: Checker, rules: object, devices: dict[str, DeviceConfig],
                profiles: dict[str, Profile]) -> list[RuleConfig]:
    """The [[rules]] tables: a known device, a point it polls, bounds for a threshold."""
    out: list[RuleConfig] = []
    for path, rule in ck.tables(rules, "rules"):
        vals = fill(ck, rule, path, RULE, required=("device", "point"))
        dev = devices.get(vals.get("device", ""))
        if "device" in vals and dev is None:
            ck.error((*path, "device"), 'no device "%s"; expected the id of a [[devices]] entry'
                     % vals["device"])
            continue
        if dev is not None and "point" in vals:
            names = dev.points if dev.points is not None else profiles[dev.profile].point_names()
            if vals["point"] not in names:
                ck.error((*path, "point"), 'device "%s" does not poll point "%s"; expected one of: %s'
                         % (dev.id, vals["point"], ", ".join(names)))
                continue
        if vals.get("kind", "threshold") == "threshold" and "above" not in vals and "below" not in vals:
            ck.error(path, "a threshold rule needs above or below; expected at least one of them")
            continue
        if "device" in vals and "point" in vals:
            out.append(RuleConfig(line=ck.line_of(path), **vals))
    return out


def check_plan(ck: Checker, config: Config) -> None:
    """An error on the shortest interval of each bus whose poll cycle does not fit in it."""
    from agent.planner import plan_config

    try:
        plans = plan_config(config)
    except Exception as exc:  # a profile the planner cannot use
        ck.error((), "cannot plan the polls: %s" % exc)
        return
    for bus_plan in plans:
        if not bus_plan.devices:
            continue
        shortest = min(bus_plan.devices, key=lambda d: d.device.interval)
        if bus_plan.cycle_time > shortest.device.interval:
            index = config.devices.index(shortest.device)
            ck.error(("devices", index, "interval"),
                     'impossible poll plan on bus "%s": one poll cycle needs about %.0f ms of line time at '
                     '%s but device "%s" polls every %g s; expected an interval of at least %.1f s, a faster '
                     'baud or fewer points' % (bus_plan.bus.name, bus_plan.cycle_time * 1000,
                                               bus_plan.line_text, shortest.device.id,
                                               shortest.device.interval, bus_plan.cycle_time))


def check_commands(ck: Checker, table: dict, base_dir: str, outbox_path: str) -> CommandsConfig:
    """The [commands] table: the key file (readable by us alone, 64 hex characters per line; its
    content is never shown), the id store beside the outbox unless set."""
    from agent.command_keys import KeyFileError, read_keys

    path = ("commands",)
    vals = fill(ck, table, path, COMMANDS)
    keys: list[bytes] = []
    if "key_file" in vals:
        vals["key_file"] = resolve_path(base_dir, vals["key_file"])
        try:
            keys = read_keys(vals["key_file"])
        except KeyFileError as exc:
            ck.error((*path, "key_file"), "%s" % exc)
    if "id_store" in vals:
        vals["id_store"] = resolve_path(base_dir, vals["id_store"])
    else:
        vals["id_store"] = os.path.join(os.path.dirname(outbox_path) or ".", "command-ids.sqlite")
    if vals.get("signed") == "none":
        ck.warn((*path, "signed"), 'signed = "none": every command runs unsigned, relays and valves '
                'included; anyone who can publish on the cmd topic can switch them')
    return CommandsConfig(keys=keys, **vals)


def warn_unkeyed(ck: Checker, config: Config) -> None:
    """A warning when switching commands are possible but no key_file would let one through."""
    c = config.commands
    if c.signed == "none" or c.keys:
        return
    switching = []
    for device in config.devices:
        profile = config.profiles.get(device.profile)
        if profile is None:
            continue
        names = [a for a in profile.action_names() if a in SWITCHING_ACTIONS]
        names += [p.name for p in profile.points if p.switching]
        if names:
            switching.append("%s (%s)" % (device.id, ", ".join(names)))
    if switching or c.signed == "all":
        what = "every command" if c.signed == "all" else "switching commands of " + "; ".join(switching[:5])
        more = " and %d more devices" % (len(switching) - 5) if len(switching) > 5 else ""
        ck.warn(("commands",), "no key_file: %s%s will be refused (signed = \"%s\"); set key_file"
                % (what, more, c.signed))
