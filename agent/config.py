"""Load and validate the agent's TOML configuration into the dataclasses of agent/config_model.py.

`load_config(path)` returns a Config or raises ConfigError carrying every problem found (not only
the first), each naming the file, the line, the key and what was expected.

The work is shared by a few modules: agent/config_lines.py finds the line of every key (tomllib
gives none), agent/config_keys.py checks single keys and collects the issues, agent/config_checks.py
checks each section (broker, buses, devices, rules, the poll plan). This module reads the file,
checks the top level and the small sections, and is the public surface.
"""

from __future__ import annotations

import os
import re
import tomllib

from agent.config_checks import (
    BATCH,
    GATEWAY,
    OUTBOX,
    TOP,
    check_broker,
    check_buses,
    check_commands,
    check_devices,
    check_plan,
    check_rules,
    find_profile,
    normalise_address,
    warn_unkeyed,
)
from agent.config_keys import Checker, ConfigIssue, fill, resolve_path, show, str_list
from agent.config_lighting import (
    check_groups,
    check_indicator_keys,
    check_lighting,
    check_place,
    check_schedules,
)
from agent.config_lines import scan_lines
from agent.config_model import (
    FORMAT_VERSION,
    BatchConfig,
    Config,
    GatewayConfig,
    OutboxConfig,
)
from protocols.profiles import Profile

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "find_profile",
    "load_config",
    "normalise_address",
    "scan_lines",
    "validate",
]


class ConfigError(Exception):
    """A config that cannot be used; `.issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        first = self.issues[0] if self.issues else ConfigIssue("?", 0, "", "invalid")
        self.file, self.line, self.key, self.expected = first.file, first.line, first.key, first.message
        Exception.__init__(self, "\n".join(str(i) for i in self.issues))


def _read(path: str) -> tuple[str, dict] | ConfigIssue:
    """The text and parsed TOML of `path`, or the one issue that stops reading it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return ConfigIssue(path, 0, "", "cannot read the file: %s" % exc.strerror)
    try:
        text = raw.decode("utf-8")
        return text, tomllib.loads(text)
    except UnicodeDecodeError as exc:
        return ConfigIssue(path, 1, "", "not UTF-8 text: %s" % exc)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else 1
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return ConfigIssue(path, line, "", "TOML syntax error: %s" % message)


def _check_top(ck: Checker, data: dict, base_dir: str) -> list[str]:
    """Unknown top-level keys, `format`, and the `profiles` folders (returned resolved)."""
    ck.unknown_keys(data, (), TOP)
    if "format" not in data:
        ck.error(("format",), "missing; expected format = %d at the top of the file" % FORMAT_VERSION)
    elif data["format"] != FORMAT_VERSION or isinstance(data["format"], bool):
        ck.error(("format",), "expected format = %d (the version this agent reads), got %s"
                 % (FORMAT_VERSION, show(data["format"])))

    profile_dirs: list[str] = []
    if "profiles" in data:
        text, check = str_list()
        try:
            profile_dirs = [resolve_path(base_dir, p) for p in check(data["profiles"])]
        except ValueError:
            ck.error(("profiles",), "expected %s (folders of site profiles), got %s"
                     % (text, show(data["profiles"])))
        for d in profile_dirs:
            if not os.path.isdir(d):
                ck.error(("profiles",), "folder %s not found; expected a folder of profile .json files" % d)
    return profile_dirs


def validate(path: str) -> tuple[Config | None, list[ConfigIssue], list[ConfigIssue]]:
    """Check a config file; (config or None, errors, warnings)."""
    read = _read(path)
    if isinstance(read, ConfigIssue):
        return None, [read], []
    text, data = read
    ck = Checker(path, scan_lines(text), data)
    base_dir = os.path.dirname(os.path.abspath(path))
    profile_dirs = _check_top(ck, data, base_dir)

    if "gateway" not in data:
        ck.error(("gateway",), "missing; expected a [gateway] table with site and id")
    gw_vals = fill(ck, ck.table(data, "gateway"), ("gateway",), GATEWAY, required=("site", "id")) \
        if "gateway" in data else {}
    broker = check_broker(ck, ck.table(data, "broker"), base_dir)
    out_vals = fill(ck, ck.table(data, "outbox"), ("outbox",), OUTBOX)
    if "path" in out_vals:
        out_vals["path"] = resolve_path(base_dir, out_vals["path"])
    batch_vals = fill(ck, ck.table(data, "batch"), ("batch",), BATCH)
    commands = check_commands(ck, ck.table(data, "commands"), base_dir,
                              out_vals.get("path", OutboxConfig.path))
    buses = check_buses(ck, data.get("buses", []))
    profiles: dict[str, Profile] = {}
    devices = check_devices(ck, data.get("devices", []), {b.name: b for b in buses}, profile_dirs, profiles)
    rules = check_rules(ck, data.get("rules", []), {d.id: d for d in devices}, profiles)
    by_id = {d.id: d for d in devices}
    groups = check_groups(ck, data.get("groups", {}), by_id)
    schedules = check_schedules(ck, data.get("schedules", []), groups, by_id, profiles)
    if "gateway" in data:
        check_place(ck, ck.table(data, "gateway"), bool(data.get("schedules")))
    lighting = check_lighting(ck, ck.table(data, "lighting"), out_vals.get("path", OutboxConfig.path),
                              base_dir)

    config = Config(
        path=path,
        gateway=GatewayConfig(**gw_vals) if "site" in gw_vals and "id" in gw_vals
        else GatewayConfig(site="?", id="?"),
        broker=broker,
        outbox=OutboxConfig(**out_vals),
        batch=BatchConfig(**batch_vals),
        commands=commands,
        buses=buses,
        devices=devices,
        rules=rules,
        groups=groups,
        schedules=schedules,
        lighting=lighting,
    )
    config.profile_dirs = profile_dirs
    config.profiles = profiles
    check_indicator_keys(ck, data.get("devices", []), config)
    if ck.issues:
        return None, ck.issues, ck.warnings
    warn_unkeyed(ck, config)
    check_plan(ck, config)
    # a config whose only fault is its poll plan is returned too, so `fieldlink plan` can show it
    return config, ck.issues, ck.warnings


def load_config(path: str) -> Config:
    """Read and validate `path`; ConfigError lists every problem (file, line, key, expectation)."""
    config, issues, _warnings = validate(path)
    if issues or config is None:
        raise ConfigError(issues)
    return config
