"""The board's health map on `…/health` (the agent's keys where the board has the same counters)."""

import gc

from firmware_py import rt
from protocols import cbor
from protocols.quality import QUALITY

ERRORS = ("timeout", "crc", "frame", "exception", "abnormal", "decode", "quality")


def points_health(fw) -> dict:
    """Per bus, as the agent's health: bad answers per point so far, the points bad now."""
    inv = fw.inv
    alarms = fw.alarms
    out = {}
    for bus in fw.buses:
        counts: dict = {}
        bad: dict = {}
        for d in bus.devices:
            for r in inv.requests(d):
                for k in range(inv.points_at[r], inv.points_at[r + 1]):
                    if alarms.bad_answers[k]:
                        point = inv.name(inv.points[k])
                        counts.setdefault(inv.device_id(d), {})[point] = alarms.bad_answers[k]
                        if alarms.quality[k]:
                            bad.setdefault(inv.device_id(d), {})[point] = QUALITY[alarms.quality[k]]
        out[bus.name] = {"bad_points": counts, "quality": bad}
    return out


def devices_health(fw) -> dict:
    """Per device, as the agent's `devices`: online (None before its first answer or silence),
    last_seen (POSIX seconds of its last answer, None: never), and a lamp's L1P3 facts."""
    inv = fw.inv
    poller = fw.poller
    out = {}
    for d in range(inv.count):
        seen = poller.last_seen[d]
        entry = {"online": None if (poller.online[d] and not seen) else bool(poller.online[d]),
                 "last_seen": seen or None}
        lamp = inv.lamps.get(d)
        if lamp is not None:
            entry["control_writable"] = bool(lamp[1])
            entry["fault_alarm_armed"] = bool(lamp[2])
        out[inv.device_id(d)] = entry
    return out


def health(fw) -> bytes:
    """The health map of firmware `fw` (firmware_py/app.py), CBOR-encoded."""
    ring = fw.ring
    c = fw.counters
    client = fw.uplink.client
    msg = {
        "gateway": fw.gateway_id, "site": fw.site, "time": rt.now(),
        "uptime": rt.ticks_diff(rt.ticks_ms(), fw.started) // 1000, "connected": client.connected,
        "readings": {"made": c["made"], "published": c["packs"], "buffered": fw.packs.writer.count,
                     "dropped": ring.dropped},
        "outbox": {"packs": ring.pending(), "bytes": ring.used_bytes(),
                   "max_bytes": ring.slots * ring.max_payload, "dropped_packs": ring.dropped,
                   "corrupt_skipped": ring.skipped},
        "mqtt": {"connects": c["connects"], "disconnects": c["disconnects"],
                 "connect_failures": c["connect_failures"], "packs_published": c["packs"],
                 "pings": client.pings, "commands": c["commands"], "commands_bad": c["commands_bad"],
                 "acks": c["acks"], "acks_dropped": c["acks_dropped"],
                 "oversized_dropped": client.oversized, "reconnect_ms": fw.uplink.backoff.last_ms},
        "polls": fw.stats["polls"],
        "errors": {k: fw.stats.get(k, 0) for k in ERRORS},
        "alarms": c["alarms"],
        "commands": fw.remote.stats(),
        "devices_offline": fw.inv.count - sum(fw.poller.online),
        "points_bad": sum(1 for q in fw.alarms.quality if q),
        "buses": points_health(fw),
        "devices": devices_health(fw),
        "mem_free": gc.mem_free(),
    }
    if fw.lighting is not None:
        msg["lighting"] = fw.lighting.stats()
    return cbor.dumps(msg)
