"""The running agent's state for `fieldlink status`, in a small JSON file beside the outbox.

    <outbox.path>.status.json   (0600, replaced atomically every STATUS_EVERY seconds and at stop)

A file rather than a local socket: the command needs no broker and no answer from the agent (a hung
agent is seen as a state that stopped being renewed, its `updated` time growing old), nothing listens
for connections inside the agent, the outbox folder's permissions already say who may read it, and a
technician can `cat` it. `pid` names the process; a reader that finds it gone (or `running` false after a
clean stop) knows no agent is running.

    {"format": 1, "pid": 812, "running": true, "updated": 1796563994.2, "started": 1796560000.0,
     "site": "demo", "gateway": "gw1", "config": "/etc/fieldlink/site.toml",
     "broker": {"connected": true, "since": 1796560001.0, "url": "mqtt://127.0.0.1:1883",
                "endpoint": "mqtt://127.0.0.1:1883"},
     "outbox": {"packs": 0, "bytes": 0, "records": 0, "dropped": 0}, "clock_synced": true,
     "clock_step": {"at": 1796560100.4, "by": 7212.6, "made": 480, "synced": true},
     "buses": {"meters": {"port": "/dev/ttyUSB0", "line": "2400 8E1", "port_up": true, "polls": 120,
                          "polls_per_s": 0.4, "errors": {"timeout": 3}, "echoes": 0, "line_errors": 0}},
     "devices": {"flat-101-power": {"bus": "meters", "online": true, "since": 1796560002.0,
                                    "reason": "answering", "last_ok": 1796563993.0, "last_error": "",
                                    "failing_points": {},
                                    "alarms": [{"point": "voltage_a", "kind": "threshold", "value": 253.1,
                                                "unit": "V", "since": 1796563000}]}}}

Writing never raises: a disk fault is logged once and the next round tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from agent import os_thread
from agent.diagnosis import line_text
from agent.private import write_state

log = logging.getLogger(__name__)

FORMAT = 1
STATUS_EVERY = 2.0  # seconds between writes
STALE_AFTER = 15.0  # a state not renewed for this long: the agent is hung (or the disk full)
# the parts of the health map `build` reads (the rest, the buses' counters above all, comes from the
# scheduler directly): a round asks the uplink for these only
HEALTH_PARTS = ("clock", "connected", "mqtt", "outbox", "readings")

__all__ = [
    "FORMAT",
    "HEALTH_PARTS",
    "STALE_AFTER",
    "STATUS_EVERY",
    "StatusFile",
    "outbox_state",
    "part",
    "status_path",
]


def part(source: dict, key: str) -> dict:
    """source[key] when it is a map, else an empty one (a health map from a broker is not trusted)."""
    value = source.get(key)
    return value if isinstance(value, dict) else {}


def outbox_state(health: dict) -> dict:
    """The state's outbox section, from a health map (the agent's own or one read from a broker)."""
    outbox, readings = part(health, "outbox"), part(health, "readings")
    return {
        "packs": outbox.get("packs", 0),
        "bytes": outbox.get("bytes", 0),
        "records": outbox.get("records", 0),
        "dropped": readings.get("dropped", 0),
        # the disk: "ok", else why new packs are held in memory (disk_full, read_only, io_error, cannot_open)
        "state": outbox.get("state", "ok"),
        "error": outbox.get("error"),
        "held_packs": outbox.get("held_packs", 0),
        "sync_failures": outbox.get("sync_failures", 0),
    }


def status_path(outbox_path: str) -> str | None:
    """Where the state of the agent that owns `outbox_path` lives (None for an outbox in memory)."""
    if not outbox_path or outbox_path == ":memory:":
        return None
    return outbox_path + ".status.json"


def build(
    config: Any,
    counters: dict,
    health: dict | None,
    alarms: dict,
    broker_since: float,
    rates: dict,
    started: float,
) -> dict:
    """The state map from the scheduler's counters, the uplink's health map and the active alarms
    {(device, point, kind): {value, since}}."""
    buses_cfg = {b.name: b for b in config.buses}
    profiles = {d.id: config.profiles.get(d.profile) for d in config.devices}
    health = health or {}
    mqtt: dict = part(health, "mqtt")
    clock: dict = part(health, "clock")
    by_device: dict[str, list] = {}  # the active alarms, sorted once, by device
    for (d, point, kind), a in sorted(alarms.items(), key=lambda kv: str(kv[0])):
        by_device.setdefault(d, []).append((point, kind, a))
    buses: dict[str, Any] = {}
    devices: dict[str, Any] = {}
    for name, bus in counters.get("buses", {}).items():
        cfg = buses_cfg.get(name)
        tcp = cfg is not None and str(cfg.port).lower().startswith("tcp://")
        line = (
            "Modbus TCP"
            if tcp or cfg is None
            else line_text(cfg.baud, cfg.parity, cfg.stopbits, cfg.bytesize)
        )
        buses[name] = {
            "port": bus.get("port", cfg.port if cfg else ""),
            "line": line,
            "port_up": bus.get("port_up"),
            "polls": bus.get("polls", 0),
            "polls_per_s": rates.get(name, 0.0),
            "errors": {k: v for k, v in bus.get("errors", {}).items() if v},
            "echoes": bus.get("link", {}).get("echoes", 0),
            "line_errors": bus.get("link", {}).get("line_errors", 0),
        }
        for device, c in bus.get("devices", {}).items():
            profile = profiles.get(device)
            active = []
            for point, kind, a in by_device.get(device, ()):
                unit, resolution = "", None
                if profile is not None and point and profile.has_point(point):
                    unit = profile.point(point).unit or ""
                    resolution = profile.point(point).resolution
                active.append(
                    {
                        "point": point,
                        "kind": kind,
                        "value": a["value"],
                        "unit": unit,
                        "resolution": resolution,
                        "since": a["since"],
                    }
                )
            devices[device] = {
                "bus": name,
                "online": c.get("online"),
                "since": c.get("since", 0.0),
                "reason": c.get("reason", ""),
                "last_ok": c.get("last_ok", 0.0),
                "last_error": c.get("last_error", ""),
                "failing_points": dict(c.get("quality", {})),
                "alarms": active,
            }
    g = config.gateway
    return {
        "format": FORMAT,
        "running": True,
        "started": round(started, 1),
        "site": g.site,
        "gateway": g.id,
        "config": getattr(config, "path", ""),
        "broker": {
            "connected": bool(health.get("connected")),
            # the publisher's own time of connecting (health mqtt.since), else when we saw it change
            "since": round(float(mqtt.get("since") or broker_since), 1),
            "url": ", ".join(e.url for e in config.broker.endpoint_list()),
            "endpoint": mqtt.get("endpoint"),
        },
        "outbox": outbox_state(health),
        "clock_synced": clock.get("synced"),  # the kernel's NTP state; None: unknown
        "clock_step": clock.get("step"),  # the clock's last step (agent/system_clock.py); None: none seen
        "buses": buses,
        "devices": devices,
    }


class StatusFile:
    """Writes the state every STATUS_EVERY seconds on its own thread (`start`, `stop`)."""

    def __init__(self, path: str | None, collect: Callable[[], dict], every: float = STATUS_EVERY) -> None:
        self.path = path
        self.collect = collect
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def write(self, state: dict) -> bool:
        """Replace the file with `state` (atomically, 0600); False when the disk refused."""
        if self.path is None:
            return False
        try:
            write_state(self.path, state)
        except OSError as exc:
            if not self._failed:
                log.warning("event=status_file_unwritable path=%s error=%r", self.path, str(exc))
            self._failed = True
            return False
        self._failed = False
        return True

    def _round(self, running: bool = True) -> None:
        try:
            state = self.collect()
        except Exception:  # a bug in a counter must not stop the agent
            log.exception("event=status_collect_failed")
            return
        state["running"] = running
        self.write(state)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._round()

    def start(self) -> None:
        if self.path is None:
            return
        self._round()
        self._thread = os_thread.thread(self._run, "status-file")
        self._thread.start()

    def stop(self) -> None:
        """Stop writing; the last state says `running: false` (a clean stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            self._round(running=False)
