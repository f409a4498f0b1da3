"""Load and validate the agent's TOML configuration into the dataclasses of agent/config_model.py.

`load_config(path)` returns a Config or raises ConfigError carrying every problem found (not only
the first), each naming the file, the line, the key and what was expected. tomllib reports no
line numbers for values, so `scan_lines` walks the TOML source once and records the line of every
table header (`[broker]`, each `[[devices]]`) and key.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config_model import (
    FORMAT_VERSION,
    BatchConfig,
    BrokerConfig,
    BusConfig,
    Config,
    DeviceConfig,
    GatewayConfig,
    OutboxConfig,
    RuleConfig,
)
from protocols.profiles import Profile, ProfileError, list_profiles, load_profile, valid_name

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "find_profile",
    "load_config",
    "normalise_address",
    "scan_lines",
    "validate",
]

BAUDS = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400)
MODBUS_OPTIONS = ("max_registers", "max_gap", "max_bits", "reply_delay_ms")
DLT645_OPTIONS = ("version", "preamble", "time_sync_order", "baud_probe", "password", "operator",
                  "reply_delay_ms")
CJT188_OPTIONS = ("meter_type", "di_order", "preamble", "status", "unit_code", "reply_delay_ms")
PROTOCOL_OPTIONS = {"modbus": MODBUS_OPTIONS, "dlt645": DLT645_OPTIONS, "dlt645_1997": DLT645_OPTIONS,
                    "cjt188": CJT188_OPTIONS}
RULE_KINDS = ("threshold", "fault", "leak")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (file, line, key) and what was expected."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return "%s:%d: %s: %s" % (self.file, self.line, self.key or "(file)", self.message)


class ConfigError(Exception):
    """A config that cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        first = self.issues[0] if self.issues else ConfigIssue("?", 0, "", "invalid")
        self.file, self.line, self.key, self.expected = first.file, first.line, first.key, first.message
        Exception.__init__(self, "\n".join(str(i) for i in self.issues))


# ---------------------------------------------------------------------------- line scanner

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY_RE = re.compile(r"^\s*(%s(?:\s*\.\s*%s)*)\s*=" % (_KEY_PART, _KEY_PART))


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _value_state(text: str, depth: int) -> tuple[int, str | None]:
    """Bracket depth after `text` and an unterminated multi-line string opener, if any."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            break
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i:i + 3]
            end = text.find(quote, i + 3)
            if end < 0:
                return depth, quote
            i = end + 3
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if (ch == '"' and text[j] == "\\") else 1
            i = j + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth, None


def scan_lines(text: str) -> dict[tuple, int]:
    """Map TOML paths to the line they start on.

    Paths are tuples of keys and array indexes: ("broker",), ("buses", 0), ("buses", 0, "baud"),
    ("devices", 2, "options", "max_gap"). Only what a human wrote on a line of its own is mapped
    (keys inside inline tables are found through their parent key).
    """
    lines: dict[tuple, int] = {}
    arrays: dict[tuple, int] = {}
    current: tuple = ()
    depth = 0
    open_string: str | None = None

    def resolve(names: list[str]) -> tuple:
        path: tuple = ()
        for name in names:
            path = (*path, name)
            if path in arrays:
                path = (*path, arrays[path])
        return path

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw
        if open_string is not None:
            end = line.find(open_string)
            if end < 0:
                continue
            line = line[end + 3:]
            open_string = None
            depth, open_string = _value_state(line, depth)
            continue
        if depth > 0:
            depth, open_string = _value_state(line, depth)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            end = stripped.find("]]")
            names = _split_dotted(stripped[2:end])
            if not names:
                continue
            parent = resolve(names[:-1])
            key = (*parent, names[-1])
            arrays[key] = arrays.get(key, -1) + 1
            current = (*key, arrays[key])
            lines.setdefault(current, number)
            lines.setdefault(key, number)
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            current = resolve(_split_dotted(stripped[1:end]))
            lines.setdefault(current, number)
            continue
        match = _KEY_RE.match(line)
        if match:
            path = (*current, *_split_dotted(match.group(1)))
            lines.setdefault(path, number)
            depth, open_string = _value_state(line[match.end():], 0)
    return lines


# ---------------------------------------------------------------------------- checking helpers

def _path_text(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += "[%d]" % part
        else:
            out += ("." if out else "") + part
    return out


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"%s"' % value
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Checker:
    def __init__(self, file: str, lines: dict[tuple, int]) -> None:
        self.file = file
        self.lines = lines
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []

    def line_of(self, path: tuple) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def error(self, path: tuple, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, self.line_of(path), _path_text(path), message))

    def warn(self, path: tuple, message: str) -> None:
        self.warnings.append(ConfigIssue(self.file, self.line_of(path), _path_text(path), message))

    def unknown_keys(self, table: dict, path: tuple, known: tuple | list) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
            hint = 'did you mean "%s"? ' % close[0] if close else ""
            self.error((*path, key), "unknown key; %sexpected one of: %s" % (hint, ", ".join(known)))

    def table(self, data: dict, key: str, path: tuple = ()) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.error((*path, key), "expected a table [%s], got %s" % (key, _show(value)))
            return {}
        return value


# A key spec: (expectation text, check(value) -> normalised value or raise ValueError)
_Spec = tuple[str, Callable[[Any], Any]]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(low: int, high: int | None = None) -> _Spec:
    text = "an integer %d..%d" % (low, high) if high is not None else "an integer >= %d" % low

    def check(v: Any) -> int:
        if not _is_int(v) or v < low or (high is not None and v > high):
            raise ValueError
        return int(v)

    return text, check


def _num(low: float, high: float | None = None, strict: bool = False) -> _Spec:
    if high is None:
        text = "a number %s %g" % (">" if strict else ">=", low)
    else:
        text = "a number %g..%g" % (low, high)

    def check(v: Any) -> float:
        if not (_is_int(v) or isinstance(v, float)) or v < low or (strict and v == low) \
                or (high is not None and v > high):
            raise ValueError
        return v

    return text, check


def _str(nonempty: bool = True) -> _Spec:
    def check(v: Any) -> str:
        if not isinstance(v, str) or (nonempty and not v.strip()):
            raise ValueError
        return v

    return ("a non-empty string" if nonempty else "a string"), check


def _name() -> _Spec:
    def check(v: Any) -> str:
        if not valid_name(v):
            raise ValueError
        return v

    return "a name of letters, digits, _ - . (not starting with _ - .), at most 64 characters", check


def _choice(*choices: object, upper: bool = False) -> _Spec:
    def check(v: Any) -> Any:
        if upper and isinstance(v, str):
            v = v.upper()
        if isinstance(v, bool) or v not in choices:
            raise ValueError
        return v

    return "one of %s" % ", ".join(_show(c) for c in choices), check


def _bool() -> _Spec:
    def check(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError
        return v

    return "true or false", check


def _str_list() -> _Spec:
    def check(v: Any) -> list:
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise ValueError
        return list(v)

    return "a list of strings", check


def _prefix() -> _Spec:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not v or any(c in v for c in "+# ") or v.startswith("/") \
                or v.endswith("/"):
            raise ValueError
        return v

    return "a topic prefix without + # spaces or leading/trailing /", check


def _fill(ck: _Checker, table: dict, path: tuple, specs: dict[str, _Spec], required: tuple = (),
          skip: tuple = ()) -> dict[str, Any]:
    """Check the keys of one table against `specs`; return the good values."""
    ck.unknown_keys(table, path, [*specs, *skip])
    out: dict[str, Any] = {}
    for key in required:
        if key not in table:
            ck.error((*path, key), "missing; expected %s" % specs[key][0])
    for key, value in table.items():
        if key not in specs:
            continue
        text, check = specs[key]
        try:
            out[key] = check(value)
        except ValueError:
            ck.error((*path, key), "expected %s, got %s" % (text, _show(value)))
    return out


# ---------------------------------------------------------------------------- sections

_GATEWAY = {"site": _name(), "id": _name(), "prefix": _prefix(), "payload": _choice("senml", "compact"),
            "health_interval": _num(1)}
_BROKER = {"host": _str(), "port": _int(1, 65535), "client_id": _str(), "username": _str(),
           "password": _str(False), "tls": _bool(), "ca_file": _str(), "cert_file": _str(),
           "key_file": _str(), "keepalive": _int(5, 3600), "reconnect_min": _num(0, 3600, strict=True),
           "reconnect_max": _num(0, 86400, strict=True)}
_OUTBOX = {"path": _str(), "max_bytes": _int(65536), "fsync": _choice("normal", "full"),
           "inflight": _int(1, 1000)}
_BATCH = {"max_records": _int(1, 10000), "max_age": _num(0, 3600, strict=True),
          "max_bytes": _int(512, 1024 * 1024)}
_BUS = {"name": _name(), "port": _str(), "baud": _choice(*BAUDS),
        "parity": _choice("N", "E", "O", upper=True),
        "bytesize": _choice(7, 8), "stopbits": _choice(1, 2), "timeout_ms": _int(1, 60000),
        "turnaround_ms": _int(0, 10000), "pause_ms": _int(0, 10000)}
_DEVICE = {"id": _name(), "bus": _name(), "profile": _name(), "address": ("a device address", lambda v: v),
           "interval": _num(0.05, 86400), "points": _str_list(), "max_registers": _int(1, 125),
           "single_point_requests": _bool(), "options": ("a table of protocol options", lambda v: v)}
_RULE = {"device": _name(), "point": _name(), "kind": _choice(*RULE_KINDS), "above": _num(-1e300),
         "below": _num(-1e300), "hysteresis": _num(0)}
_TOP = ("format", "profiles", "gateway", "broker", "outbox", "batch", "buses", "devices", "rules")


def _resolve_path(base_dir: str, path: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def normalise_address(protocol: str, address: object, tcp: bool = False) -> str:
    """The canonical text of a device address; ValueError saying what was expected."""
    if protocol == "modbus":
        high = 255 if tcp else 247
        text = str(address).strip() if not isinstance(address, bool) else ""
        if not text.isdigit() or not 1 <= int(text) <= high:
            if tcp:
                raise ValueError("a Modbus unit id 0..255")
            raise ValueError("a Modbus unit address 1..247")
        return str(int(text))
    width = 14 if protocol == "cjt188" else 12
    what = "a CJ/T 188 meter address of up to 14 digits" if width == 14 else \
        "a DL/T 645 meter address of up to 12 digits (as printed on the meter)"
    if isinstance(address, bool) or not isinstance(address, (int, str)):
        raise ValueError(what)
    text = str(address).strip()
    if not text.isdigit() or len(text) > width:
        raise ValueError(what)
    return text.zfill(width)


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


def _check_broker(ck: _Checker, broker: dict, base_dir: str) -> BrokerConfig:
    path = ("broker",)
    vals = _fill(ck, broker, path, _BROKER)
    for key in ("ca_file", "cert_file", "key_file"):
        if key in vals:
            vals[key] = _resolve_path(base_dir, vals[key])
            if not os.path.isfile(vals[key]):
                ck.error((*path, key), "file %s not found; expected a readable PEM file" % vals[key])
            if not vals.get("tls", False):
                ck.error((*path, key), "%s is set but tls is false; expected tls = true" % key)
    if "key_file" in vals and "cert_file" not in vals:
        ck.error((*path, "key_file"), "key_file without cert_file; expected both for a client certificate")
    if "password" in vals and "username" not in vals:
        ck.error((*path, "password"), "password without username; expected a username too")
    if vals.get("reconnect_max", 60.0) < vals.get("reconnect_min", 1.0):
        ck.error((*path, "reconnect_max"), "expected reconnect_max >= reconnect_min")
    if "tls" in vals and vals["tls"] and "port" not in vals:
        vals["port"] = 8883
    return BrokerConfig(**vals)


def _check_buses(ck: _Checker, buses: object) -> list[BusConfig]:
    out: list[BusConfig] = []
    if not isinstance(buses, list):
        ck.error(("buses",), "expected [[buses]] tables, got %s" % _show(buses))
        return out
    names: dict[str, int] = {}
    for i, bus in enumerate(buses):
        path = ("buses", i)
        if not isinstance(bus, dict):
            ck.error(path, "expected a [[buses]] table")
            continue
        vals = _fill(ck, bus, path, _BUS, required=("name", "port"))
        if "name" not in vals or "port" not in vals:
            continue
        name = vals["name"]
        if name in names:
            ck.error((*path, "name"), 'bus "%s" is already defined at line %d; expected a unique name'
                     % (name, names[name]))
            continue
        names[name] = ck.line_of(path)
        port = vals["port"]
        if port.lower().startswith("tcp://"):
            from agent.link.tcp_link import parse_tcp_url

            try:
                parse_tcp_url(port)
            except ValueError as exc:
                ck.error((*path, "port"), "%s; expected tcp://host:port" % exc)
        elif vals.get("parity", "N") == "N" and vals.get("stopbits", 1) == 1:
            pass  # 8N1 is common in the field though Modbus asks for 11-bit characters
        out.append(BusConfig(line=ck.line_of(path), **vals))
    return out


def _check_options(ck: _Checker, path: tuple, options: object, profile: Profile | None) -> dict:
    if not isinstance(options, dict):
        ck.error(path, "expected a table of protocol options, got %s" % _show(options))
        return {}
    if profile is None:
        return dict(options)
    known = list(PROTOCOL_OPTIONS.get(profile.protocol, ()))
    known += [k for k in profile.options if k not in known]
    ck.unknown_keys(options, path, known)
    out = {}
    for key, value in options.items():
        if key not in known:
            continue
        if key in ("max_registers", "max_gap", "max_bits", "preamble", "reply_delay_ms", "meter_type"):
            high = {"max_registers": 125, "max_bits": 2000, "max_gap": 124, "preamble": 8,
                    "reply_delay_ms": 60000, "meter_type": 255}[key]
            if not _is_int(value) or not (0 if key in ("max_gap", "preamble", "reply_delay_ms") else 1) \
                    <= value <= high:
                ck.error((*path, key), "expected an integer up to %d, got %s" % (high, _show(value)))
                continue
        out[key] = value
    return out


def _check_devices(ck: _Checker, devices: object, buses: dict[str, BusConfig],
                   profile_dirs: list[str], profiles: dict[str, Profile]) -> list[DeviceConfig]:
    out: list[DeviceConfig] = []
    if not isinstance(devices, list):
        ck.error(("devices",), "expected [[devices]] tables, got %s" % _show(devices))
        return out
    ids: dict[str, int] = {}
    addresses: dict[tuple, tuple[str, int]] = {}
    failed_profiles: set[str] = set()
    for i, dev in enumerate(devices):
        path = ("devices", i)
        if not isinstance(dev, dict):
            ck.error(path, "expected a [[devices]] table")
            continue
        vals = _fill(ck, dev, path, _DEVICE, required=("id", "bus", "profile", "address"))
        ok = all(k in vals for k in ("id", "bus", "profile", "address"))
        dev_id = vals.get("id")
        if dev_id is not None:
            if dev_id in ids:
                ck.error((*path, "id"), 'device "%s" is already defined at line %d; expected a unique id'
                         % (dev_id, ids[dev_id]))
                ok = False
            else:
                ids[dev_id] = ck.line_of(path)
        bus = buses.get(vals.get("bus", ""))
        if "bus" in vals and bus is None:
            known = ", ".join(buses) or "none defined"
            ck.error((*path, "bus"), 'no bus named "%s"; expected one of the [[buses]] names (%s)'
                     % (vals["bus"], known))
            ok = False
        profile = None
        model = vals.get("profile")
        if model is not None:
            if model in profiles:
                profile = profiles[model]
            elif model in failed_profiles:
                ok = False
            else:
                try:
                    profile = find_profile(model, profile_dirs)
                    profiles[model] = profile
                except ProfileError as exc:
                    failed_profiles.add(model)
                    ok = False
                    if "no profile for model" in str(exc):
                        models = _known_profiles(profile_dirs)
                        close = difflib.get_close_matches(model, models, n=1, cutoff=0.5)
                        hint = ' (did you mean "%s"?)' % close[0] if close else ""
                        ck.error((*path, "profile"), 'no profile "%s"%s; expected one of: %s'
                                 % (model, hint, ", ".join(models) or "(no profiles installed)"))
                    else:
                        ck.error((*path, "profile"), 'profile "%s" is not valid: %s' % (model, exc))
        tcp = bus is not None and bus.port.lower().startswith("tcp://")
        if profile is not None and bus is not None and tcp and profile.protocol != "modbus":
            ck.error((*path, "bus"), 'profile "%s" speaks %s, which needs a serial bus; bus "%s" is '
                     'Modbus TCP (%s); expected a serial bus' % (profile.model, profile.protocol,
                                                                bus.name, bus.port))
            ok = False
        if profile is not None and bus is not None and not tcp:
            want = profile.link
            got = {"baud": bus.baud, "parity": bus.parity, "stopbits": bus.stopbits}
            diff = ["%s %s" % (k, want[k]) for k in ("baud", "parity", "stopbits")
                    if k in want and want[k] != got[k]]
            if diff:
                ck.warn((*path, "bus"), 'profile "%s" expects %s by default; bus "%s" has baud %d parity %s '
                        'stopbits %d' % (profile.model, ", ".join(diff), bus.name, bus.baud, bus.parity,
                                         bus.stopbits))
        if profile is not None and "address" in vals:
            try:
                vals["address"] = normalise_address(profile.protocol, vals["address"], tcp)
            except ValueError as exc:
                ck.error((*path, "address"), "expected %s, got %s" % (exc, _show(vals["address"])))
                ok = False
            else:
                family = "dlt645" if profile.protocol.startswith("dlt645") else profile.protocol
                key = (vals.get("bus"), family, vals["address"])
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
        if profile is not None and "points" in vals:
            for name in vals["points"]:
                if not profile.has_point(name):
                    close = difflib.get_close_matches(name, profile.point_names(), n=1, cutoff=0.6)
                    hint = ' (did you mean "%s"?)' % close[0] if close else ""
                    ck.error((*path, "points"), 'point "%s" is not in profile "%s"%s; expected one of: %s'
                             % (name, profile.model, hint, ", ".join(profile.point_names())))
                    ok = False
            if not vals["points"]:
                ck.error((*path, "points"), "expected at least one point (leave points out for all)")
                ok = False
        if profile is not None and profile.protocol != "modbus" and "max_registers" in vals:
            ck.error((*path, "max_registers"), "applies to Modbus devices only; profile %s speaks %s"
                     % (profile.model, profile.protocol))
        if "options" in dev:
            vals["options"] = _check_options(ck, (*path, "options"), dev["options"], profile)
        if ok:
            out.append(DeviceConfig(line=ck.line_of(path), **vals))
    return out


def _check_rules(ck: _Checker, rules: object, devices: dict[str, DeviceConfig],
                 profiles: dict[str, Profile]) -> list[RuleConfig]:
    out: list[RuleConfig] = []
    if not isinstance(rules, list):
        ck.error(("rules",), "expected [[rules]] tables, got %s" % _show(rules))
        return out
    for i, rule in enumerate(rules):
        path = ("rules", i)
        if not isinstance(rule, dict):
            ck.error(path, "expected a [[rules]] table")
            continue
        vals = _fill(ck, rule, path, _RULE, required=("device", "point"))
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


def _check_plan(ck: _Checker, config: Config) -> None:
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


def validate(path: str) -> tuple[Config | None, list[ConfigIssue], list[ConfigIssue]]:
    """Check a config file; (config or None, errors, warnings)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return None, [ConfigIssue(path, 0, "", "cannot read the file: %s" % exc.strerror)], []
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        return None, [ConfigIssue(path, 1, "", "not UTF-8 text: %s" % exc)], []
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else 1
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return None, [ConfigIssue(path, line, "", "TOML syntax error: %s" % message)], []
    ck = _Checker(path, scan_lines(text))
    base_dir = os.path.dirname(os.path.abspath(path))
    ck.unknown_keys(data, (), _TOP)

    if "format" not in data:
        ck.error(("format",), "missing; expected format = %d at the top of the file" % FORMAT_VERSION)
    elif data["format"] != FORMAT_VERSION or isinstance(data["format"], bool):
        ck.error(("format",), "expected format = %d (the version this agent reads), got %s"
                 % (FORMAT_VERSION, _show(data["format"])))

    profile_dirs: list[str] = []
    if "profiles" in data:
        text_, check = _str_list()
        try:
            profile_dirs = [_resolve_path(base_dir, p) for p in check(data["profiles"])]
        except ValueError:
            ck.error(("profiles",), "expected %s (folders of site profiles), got %s"
                     % (text_, _show(data["profiles"])))
        for d in profile_dirs:
            if not os.path.isdir(d):
                ck.error(("profiles",), "folder %s not found; expected a folder of profile .json files" % d)

    if "gateway" not in data:
        ck.error(("gateway",), "missing; expected a [gateway] table with site and id")
    gw_vals = _fill(ck, ck.table(data, "gateway"), ("gateway",), _GATEWAY, required=("site", "id")) \
        if "gateway" in data else {}
    broker = _check_broker(ck, ck.table(data, "broker"), base_dir)
    out_vals = _fill(ck, ck.table(data, "outbox"), ("outbox",), _OUTBOX)
    if "path" in out_vals:
        out_vals["path"] = _resolve_path(base_dir, out_vals["path"])
    batch_vals = _fill(ck, ck.table(data, "batch"), ("batch",), _BATCH)
    buses = _check_buses(ck, data.get("buses", []))
    profiles: dict[str, Profile] = {}
    devices = _check_devices(ck, data.get("devices", []), {b.name: b for b in buses}, profile_dirs, profiles)
    rules = _check_rules(ck, data.get("rules", []), {d.id: d for d in devices}, profiles)

    config = Config(
        path=path,
        gateway=GatewayConfig(**gw_vals) if "site" in gw_vals and "id" in gw_vals
        else GatewayConfig(site="?", id="?"),
        broker=broker,
        outbox=OutboxConfig(**out_vals),
        batch=BatchConfig(**batch_vals),
        buses=buses,
        devices=devices,
        rules=rules,
    )
    config.profile_dirs = profile_dirs
    config.profiles = profiles
    if ck.issues:
        return None, ck.issues, ck.warnings
    _check_plan(ck, config)
    # a config whose only fault is its poll plan is returned too, so `fieldlink plan` can show it
    return config, ck.issues, ck.warnings


def load_config(path: str) -> Config:
    """Read and validate `path`; ConfigError lists every problem (file, line, key, expectation)."""
    config, issues, _warnings = validate(path)
    if issues or config is None:
        raise ConfigError(issues)
    return config
