"""`fieldlink status`: one screen for one gateway.

    fieldlink status [--config FILE] [--json]            # on the gateway: the running agent's state file
    fieldlink status --broker HOST:PORT [--site S] [--gateway G] [--timeout S] [--json]   # from a desk

Local: the state the running agent writes beside its outbox (agent/status_file.py), found from the
config (default /etc/fieldlink/fieldlink.toml, the service's); no broker needed. Remote: the gateway's
retained `…/status` and its next `…/health` (per-device online state is in health under
`buses.<bus>.devices`).

Exit: 0 all well; 1 a device offline, the broker unreachable (from the agent, or from this command), the
outbox's disk failing (new packs held in memory), the gateway's clock not set (before 2020) or the agent
not renewing its state; 2 wrong input (arguments, config file); 3 no agent running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

from agent.outbox import FAULTS
from agent.status_file import outbox_state, part
from agent.units import show_text
from protocols.commands import CLOCK_SET_AFTER

DEFAULT_CONFIG = "/etc/fieldlink/fieldlink.toml"
NO_AGENT = 3
#: free space below which the outbox's disk counts as full (SQLite needs room for its WAL and pages)
DISK_LOW = 1024 * 1024

__all__ = ["DEFAULT_CONFIG", "NO_AGENT", "add_arguments", "from_health", "render", "run", "verdict"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="gateway config (default %s, the service's)" % DEFAULT_CONFIG,
    )
    parser.add_argument(
        "--broker", metavar="HOST:PORT", help="read the gateway's status and health from a broker"
    )
    parser.add_argument("--site", default="+", help="with --broker: the site (default: any)")
    parser.add_argument("--gateway", default="+", help="with --broker: the gateway (default: any)")
    parser.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=70.0,
        help="with --broker: seconds to wait for the next health message (default 70)",
    )
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--json", action="store_true", help="the state as JSON (for scripts)")
    parser.add_argument("--si", action="store_true", help="SenML units in alarm values")


def ago(seconds: float) -> str:
    """ "42 s", "7 min", "3 h 5 min", "2 d 4 h"."""
    s = max(0, int(seconds))
    if s < 120:
        return "%d s" % s
    if s < 7200:
        return "%d min" % (s // 60)
    if s < 172800:
        return "%d h %d min" % (s // 3600, s % 3600 // 60)
    return "%d d %d h" % (s // 86400, s % 86400 // 3600)


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "never"


def verdict(state: dict, now: float) -> tuple[int, list[str]]:
    """(exit code, problems) of a state map (local or remote)."""
    problems = []
    if not state.get("broker", {}).get("connected"):
        since = state.get("broker", {}).get("since") or 0
        problems.append(
            "broker %s unreachable%s"
            % (state.get("broker", {}).get("url") or "", " since %s" % stamp(since) if since else "")
        )
    for device, d in sorted(state.get("devices", {}).items()):
        if d.get("online") is False:
            problems.append(
                "%s offline since %s: %s" % (device, stamp(d.get("since") or 0), d.get("reason", ""))
            )
    o = state.get("outbox", {})
    if o.get("state", "ok") != "ok":
        problems.append(
            "outbox %s: %s (%s): new packs are held in memory (%d now) and lost if the power goes"
            % (o["state"], FAULTS.get(o["state"], o["state"]), o.get("error") or "no detail",
               o.get("held_packs", 0))
        )
    trouble = disk_problem(state.get("disk") or {})
    if trouble:
        problems.append(trouble)
    updated = state.get("updated")
    reads = time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(updated or 0)))
    if state.get("clock_set") is False:  # a board says so itself (its config's floor: firmware_py/clock.py)
        problems.append(
            "the board's clock is not set (it reads %s UTC): NTP has not answered since power-up; schedules "
            "wait, relay commands and commands with an expiry are refused, and readings are stamped from "
            "2000-01-01 until NTP answers (then mended%s); check its network's NTP server (--ntp-host)"
            % (reads, "; they wait for it in the board's ring now, up to 10 min" if state.get("clock_waiting")
               else "")
        )
    elif updated is not None and float(updated) < CLOCK_SET_AFTER:
        problems.append(
            "the gateway's clock is not set (it reads %s UTC): readings carry that time and commands with an "
            "expiry are refused; set it by NTP (on a Pi: timedatectl set-ntp true)" % reads
        )
    age = now - float(updated or now)
    if state.get("source") == "local" and age > float(state.get("stale_after", 15.0)):
        problems.append("the agent has not renewed its state for %s (hung, or its disk is full?)" % ago(age))
    return (1 if problems else 0), problems


def render(state: dict, now: float, si: bool = False) -> str:
    """The one screen."""
    out = []
    b = state.get("broker", {})
    since = b.get("since") or 0
    if b.get("connected"):
        broker = "connected to %s%s" % (
            b.get("endpoint") or b.get("url") or "the broker",
            " for %s" % ago(now - since) if since else "",
        )
    else:
        broker = "NOT connected%s (%s)" % (
            " since %s, %s" % (stamp(since), ago(now - since)) if since else "",
            b.get("endpoint") or b.get("url") or "broker",
        )
    o = state.get("outbox", {})
    up = state.get("uptime")
    if up is None and state.get("started"):
        up = now - float(state["started"])
    out.append(
        "gateway %s/%s  up %s  %s"
        % (
            state.get("site"),
            state.get("gateway"),
            ago(up or 0),
            "pid %s" % state["pid"] if state.get("pid") else "",
        )
    )
    out.append("  broker  %s" % broker)
    synced = state.get("clock_synced")
    if synced is True:
        out.append("  clock   synchronized (NTP)")
    elif synced is False:  # shown, not a problem: a site may run without NTP on purpose
        out.append("  clock   NOT synchronized: the kernel does not count it set by NTP, readings carry the "
                   "system time as it is (on a Pi: timedatectl set-ntp true, or give it an NTP server)")
    step = state.get("clock_step")
    if isinstance(step, dict) and isinstance(step.get("by"), (int, float)):
        by = float(step["by"])
        size = ("+" if by >= 0 else "-") + (ago(abs(by)) if abs(by) >= 120 else "%.1f s" % abs(by))
        at = stamp(float(step.get("at") or 0))
        out.append("  clock   stepped %s at %s: the readings made before it (of %s made by then) carry the "
                   "old clock, off by that much" % (size, at, step.get("made", "?")))
    out.append(
        "  outbox  %s packs, %s readings waiting, %s dropped%s%s"
        % (
            o.get("packs", "?"),
            o.get("records", "?"),
            o.get("dropped", 0),
            "" if o.get("state", "ok") == "ok" else "  DISK %s: %d packs held in memory"
            % (o["state"].upper().replace("_", " "), o.get("held_packs", 0)),
            ", %d failed fsyncs" % o["sync_failures"] if o.get("sync_failures") else "",
        )
    )
    devices = state.get("devices", {})
    for name, bus in sorted(state.get("buses", {}).items()):
        errors = ", ".join("%s %d" % kv for kv in sorted(bus.get("errors", {}).items())) or "no errors"
        extra = ""
        if bus.get("echoes"):
            extra = ", %d echoes (DE/RE?)" % bus["echoes"]
        port = "" if bus.get("port_up") is not False else "  PORT DOWN"
        out.append(
            "bus %s  %s  %s  %.2f polls/s  %s%s%s"
            % (
                name,
                bus.get("port", ""),
                bus.get("line", ""),
                float(bus.get("polls_per_s") or 0),
                errors,
                extra,
                port,
            )
        )
        for device, d in sorted(devices.items()):
            if d.get("bus") != name:
                continue
            if d.get("online") is True:
                what = "online "
            elif d.get("online") is False:
                what = "OFFLINE since %s (%s ago): %s" % (
                    stamp(d.get("since") or 0),
                    ago(now - (d.get("since") or now)),
                    d.get("reason", ""),
                )
            else:
                what = "not polled yet"
            last = d.get("last_ok") or 0
            line = "  %-20s %s" % (device, what)
            if d.get("online") is not False or last:
                line += "  last reading %s" % ("%s ago" % ago(now - last) if last else "never")
            out.append(line)
            for point, quality in sorted(d.get("failing_points", {}).items()):
                out.append("      point %s: %s" % (point, quality))
            for a in d.get("alarms", []):
                if a.get("kind") == "quality":
                    continue  # shown as a failing point
                value = show_text(a.get("value"), a.get("unit"), a.get("resolution"), si, a.get("point", ""))
                out.append(
                    "      ALARM %s %s = %s since %s"
                    % (a.get("kind"), a.get("point"), value, stamp(a.get("since") or 0))
                )
    _code, problems = verdict(state, now)
    out.append("status: %s" % ("all well" if not problems else "; ".join(problems)))
    return "\n".join(out)


def from_health(status: dict | None, health: dict, url: str) -> dict:
    """A state map (as the local file) from a gateway's retained status and its health message."""
    buses: dict[str, Any] = {}
    devices: dict[str, Any] = {}
    for name, bus in (health.get("buses") or {}).items():
        if not isinstance(bus, dict):
            continue
        uptime = float(health.get("uptime") or 0)
        buses[name] = {
            "port": bus.get("port", ""),
            "line": bus.get("line", ""),
            "port_up": bus.get("port_up"),
            "polls": bus.get("polls", 0),
            "polls_per_s": round(float(bus.get("polls", 0)) / uptime, 2) if uptime else 0.0,
            "errors": dict(bus.get("errors") or {}),
            "echoes": (bus.get("link") or {}).get("echoes", 0),
        }
        quality = bus.get("quality") or {}
        for device, d in (bus.get("devices") or {}).items():
            devices[device] = {
                "bus": name,
                "online": d.get("online"),
                "since": d.get("since", 0),
                "reason": d.get("reason", ""),
                "last_ok": d.get("last_ok", 0),
                "failing_points": dict(quality.get(device) or {}),
                "alarms": [],
            }
    mqtt: dict = part(health, "mqtt")
    clock: dict = part(health, "clock")
    return {
        "source": "broker",
        "site": health.get("site"),
        "gateway": health.get("gateway"),
        "uptime": health.get("uptime"),
        "updated": health.get("time"),
        "clock_set": clock.get("set"),  # a board's own verdict (None from an agent)
        "clock_waiting": clock.get("waiting"),  # a board's records wait for NTP
        "clock_synced": clock.get("synced"),  # an agent's kernel NTP state (None: a board)
        "clock_step": clock.get("step"),  # an agent's clock's last step (agent/system_clock.py)
        "online": (status or {}).get("online"),
        "broker": {
            "connected": bool(health.get("connected", True)),
            "since": mqtt.get("since") or 0,
            "url": url,
            "endpoint": mqtt.get("endpoint"),
        },
        "outbox": outbox_state(health),
        "buses": buses,
        "devices": devices,
    }


def _print(state: dict, args: Any, out: TextIO) -> int:
    now = time.time()
    code, problems = verdict(state, now)
    if args.json:
        print(json.dumps(dict(state, problems=problems, exit=code), sort_keys=True, default=str), file=out)
    else:
        print(render(state, now, args.si), file=out)
    return code


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return isinstance(pid, int)
    return True


def run_local(args: Any, out: TextIO) -> int:
    from agent.config import ConfigError, load_config
    from agent.private import read_state
    from agent.status_file import STALE_AFTER, status_path
    from agent.uplink_state import state_path

    path = args.config or DEFAULT_CONFIG
    if not os.path.exists(path):
        print(
            "fieldlink status: no config %s (give --config FILE, or --broker HOST:PORT)" % path,
            file=sys.stderr,
        )
        return 2
    try:
        config = load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    state_file = status_path(config.outbox.path)
    if state_file is None:
        print(
            "fieldlink status: the outbox of %s is in memory: the agent keeps no state file" % path,
            file=sys.stderr,
        )
        return NO_AGENT
    disk = disk_of(os.path.dirname(os.path.abspath(config.outbox.path)))
    state = read_state(state_file)
    if state is None:
        print(
            "fieldlink status: no agent running for %s (no state file %s)" % (path, state_file),
            file=sys.stderr,
        )
        return _no_state(disk)
    if not state.get("running") or not _pid_alive(state.get("pid")):
        why = "stopped" if not state.get("running") else "pid %s is gone" % state.get("pid")
        print(
            "fieldlink status: no agent running for %s (%s at %s; state in %s)"
            % (path, why, stamp(float(state.get("updated") or 0)), state_file),
            file=sys.stderr,
        )
        return _no_state(disk)
    state["source"] = "local"
    state["stale_after"] = STALE_AFTER
    state["disk"] = disk
    # the uplink's own state file (agent/uplink_state.py), written the moment the connection changes:
    # fresher than the state above, renewed every STATUS_EVERY s
    uplink_file = state_path(config.outbox.path)
    uplink = read_state(uplink_file) if uplink_file else None
    if uplink is not None and uplink.get("pid") == state.get("pid"):
        broker = state.setdefault("broker", {})
        for key in ("connected", "endpoint", "since"):
            if uplink.get(key) is not None:
                broker[key] = uplink[key]
    return _print(state, args, out)


def _no_state(disk: dict) -> int:
    """No running agent's state: NO_AGENT, unless the disk itself is in trouble, which an agent started
    since could not have written its state on either (then 1, a problem, saying so)."""
    trouble = disk_problem(disk)
    if trouble is None:
        return NO_AGENT
    print("fieldlink status: %s; an agent started since could not have written its state either" % trouble,
          file=sys.stderr)
    return 1


def disk_problem(disk: dict) -> str | None:
    """What is wrong with the outbox's file system (`disk_of`), or None."""
    if disk.get("read_only"):
        return ("the file system of %s is read-only (the kernel does this after disk errors): the agent "
                "cannot store packs or its state" % disk["folder"])
    if disk and disk.get("free", DISK_LOW) < DISK_LOW:
        return "the disk of %s is full (%d bytes free): the agent cannot store packs or its state" % (
            disk["folder"], disk["free"])
    return None


def disk_of(folder: str) -> dict:
    """The file system holding the outbox, as the gateway sees it now: {"folder", "read_only", "free"}
    (bytes an unprivileged writer may still use); {} when it cannot be looked at. A full or read-only
    disk stops the agent's state file too, so `status` looks for itself."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return {}
    return {"folder": folder, "read_only": bool(st.f_flag & os.ST_RDONLY), "free": st.f_bavail * st.f_frsize}


def run_remote(args: Any, out: TextIO) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.commands.monitor import parse_broker
    from protocols import birth as birth_msg
    from protocols import cbor
    from protocols.errors import ProtocolError

    host, port = parse_broker(args.broker)
    found: dict[tuple, dict] = {}  # (site, gateway) -> {"status": map, "health": map}
    bad: list[str] = []

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4 or not msg.payload:
            return
        entry = found.setdefault((parts[1], parts[2]), {})
        try:
            if parts[3] == "status":
                raw = cbor.loads(bytes(msg.payload))
                # a gateway from before the status/inventory split publishes its birth here
                entry["status"] = birth_msg.check(birth_msg.status_of(raw) if isinstance(raw, dict) else raw)
            elif parts[3] == "health":
                value = cbor.loads(bytes(msg.payload))
                if isinstance(value, dict):
                    entry["health"] = value
        except (ProtocolError, ValueError, TypeError, KeyError) as exc:
            bad.append("%s: %s" % (msg.topic, exc))

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not getattr(reason, "is_failure", False):
            for leaf in ("status", "health"):
                client.subscribe("%s/%s/%s/%s" % (args.prefix, args.site, args.gateway, leaf), qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=True)
    client.on_message = on_message
    client.on_connect = on_connect
    if args.username:
        client.username_pw_set(args.username, args.password)
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        print("fieldlink status: cannot reach the broker %s:%d: %s" % (host, port, exc), file=sys.stderr)
        return 1
    deadline = time.monotonic() + max(0.5, args.timeout)
    try:
        while time.monotonic() < deadline:
            client.loop(0.1)
            if found and all("health" in e for e in found.values()):
                break
            if (
                time.monotonic() > deadline - args.timeout + 2.0
                and found
                and all(e.get("status", {}).get("online") is False for e in found.values())
            ):
                break  # every gateway's status is its last will: no health will come
    finally:
        client.disconnect()
    if not found:
        print(
            "fieldlink status: no gateway %s/%s on %s:%d (no retained status)"
            % (args.site, args.gateway, host, port),
            file=sys.stderr,
        )
        return NO_AGENT
    code = 0
    for (site, gateway), entry in sorted(found.items()):
        status = entry.get("status")
        if status is not None and status.get("online") is False:
            print(
                "fieldlink status: %s/%s is offline (its last will is the retained status)" % (site, gateway),
                file=sys.stderr,
            )
            code = max(code, NO_AGENT)
            continue
        if "health" not in entry:
            print(
                "fieldlink status: %s/%s: no health message within %.0f s" % (site, gateway, args.timeout),
                file=sys.stderr,
            )
            code = max(code, 1)
            continue
        state = from_health(status, entry["health"], "%s:%d" % (host, port))
        code = max(code, _print(state, args, out))
    return code


def run(args: Any, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.broker:
        return run_remote(args, out)
    return run_local(args, out)
