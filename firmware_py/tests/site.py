"""Build a site for the firmware tests: agent TOML with N devices on a fake bus, compiled to JSON."""

from __future__ import annotations

import json
import os

from agent.config import load_config
from agent.firmware.config import compile_config, dumps

HERE = os.path.dirname(os.path.abspath(__file__))


def write_site(tmp: str, port: str, broker_port: int, units: list[int], interval: float = 0.5,
               health: float = 2.0, max_age: float = 1.0, points: dict | None = None,
               ring_slots: int = 16, rules: list[dict] | None = None) -> str:
    """Write site.toml for the fw-meter devices at `units`; returns the path of the compiled JSON.
    `rules`: [[rules]] tables as dicts."""
    lines = ["format = 1", 'profiles = ["%s"]' % os.path.join(HERE, "site", "profiles"),
             "[gateway]", 'site = "lab"', 'id = "fw-01"', "health_interval = %s" % health,
             "[broker]", 'host = "127.0.0.1"', "port = %d" % broker_port, "keepalive = 10",
             "reconnect_min = 0.2", "reconnect_max = 1.0",
             "[batch]", "max_records = 50", "max_age = %s" % max_age,
             "[[buses]]", 'name = "rs485a"', 'port = "%s"' % port, "baud = 19200", "timeout_ms = 300"]
    for u in units:
        lines += ["[[devices]]", 'id = "m%d"' % u, 'bus = "rs485a"', 'profile = "fw-meter"',
                  "address = %d" % u, "interval = %s" % interval]
        if points and u in points:
            lines.append("points = %s" % json.dumps(points[u]))
    for rule in rules or []:
        lines.append("[[rules]]")
        lines += ["%s = %s" % (k, json.dumps(v)) for k, v in rule.items()]
    toml = os.path.join(tmp, "site.toml")
    with open(toml, "w") as f:
        f.write("\n".join(lines) + "\n")
    compiled = compile_config(load_config(toml), board="host", ring_slots=ring_slots,
                              ring_slot_size=1024)
    out = os.path.join(tmp, "fw.json")
    with open(out, "w") as f:
        f.write(dumps(compiled))
    return out
