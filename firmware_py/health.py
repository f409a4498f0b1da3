"""The board's health map on `…/health` (the agent's keys where the board has the same counters)."""

import gc

from firmware_py import clock, rt
from protocols import cbor
from protocols.quality import QUALITY

ERRORS = ("timeout", "crc", "frame", "exception", "abnormal", "decode", "quality")


def points_health(fw) -> dict:
    """Per bus, as the agent's health (docs/cddl/health.cddl): bad answers per point so far, the points
    bad now, and each device's state (`device_state`)."""
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
        devices = {}
        for d in bus.devices:
            devices[inv.device_id(d)] = device_state(fw, d)
        out[bus.name] = {"bad_points": counts, "quality": bad, "devices": devices}
    return out


def device_state(fw, d: int) -> dict:
    """Device `d` as the agent's `buses.<bus>.devices` entry: online (None before its first answer or
    silence), since (POSIX seconds it last changed, 0: not yet), reason (why), last_ok (POSIX seconds of
    its last answer, 0: never), and a lamp's L1P3 facts."""
    poller = fw.poller
    seen = poller.last_seen[d]
    entry = {"online": None if (poller.online[d] and not seen) else bool(poller.online[d]),
             "since": poller.since[d], "reason": poller.reason[d] or "", "last_ok": seen}
    lamp = fw.inv.lamps.get(d)
    if lamp is not None:
        entry["control_writable"] = bool(lamp[1])
        entry["fault_alarm_armed"] = bool(lamp[2])
    return entry


def health(fw) -> bytes:
    """The health map of firmware `fw` (firmware_py/app.py), CBOR-encoded."""
    ring = fw.ring
    c = fw.counters
    client = fw.uplink.client
    now = rt.now()
    msg = {
        "gateway": fw.gateway_id, "site": fw.site, "time": now,
        "clock": {"set": clock.is_set(now), "floor": clock.floor(), "mended": c["mended"],
                  "unmended": c["unmended"], "waiting": fw.uplink.waiting},
        "uptime": rt.ticks_diff(rt.ticks_ms(), fw.started) // 1000, "connected": client.connected,
        "readings": {"made": c["made"], "published": c["packs"], "buffered": fw.packs.writer.count,
                     "dropped": ring.dropped},
        "outbox": {"packs": ring.pending(), "bytes": ring.used_bytes(),
                   "max_bytes": ring.slots * ring.max_payload, "dropped_packs": ring.dropped,
                   "corrupt_skipped": ring.skipped, "written_packs": ring.written},
        "mqtt": {"connects": c["connects"], "disconnects": c["disconnects"],
                 "connect_failures": c["connect_failures"], "packs_published": c["packs"],
                 "pings": client.pings, "commands": c["commands"], "commands_bad": c["commands_bad"],
                 "acks": c["acks"], "acks_dropped": c["acks_dropped"],
                 "oversized_dropped": client.oversized, "reconnect_ms": fw.uplink.backoff.last_ms,
                 "inventories": c["inventories"], "subscribes": c["subscribes"],
                 "session": fw.uplink.session_no, "session_present": client.session_present},
        "polls": fw.stats["polls"],
        "errors": {k: fw.stats.get(k, 0) for k in ERRORS},
        "alarms": c["alarms"],
        "commands": fw.remote.stats(),
        "devices_offline": fw.inv.count - sum(fw.poller.online),
        "points_bad": sum(1 for q in fw.alarms.quality if q),
        "buses": points_health(fw),
        "mem_free": gc.mem_free(),
    }
    if fw.lighting is not None:
        msg["lighting"] = fw.lighting.stats()
    return cbor.dumps(msg)
