"""`fieldlink monitor`: subscribe to a broker and show decoded readings live.

    fieldlink monitor --broker HOST[:PORT] [--site S] [--gateway G] [--once N] [--json]
                      [--username U --password P] [--tls | --ca-file CA [--cert-file C --key-file K]]

Subscribes to ``<prefix>/<site|+>/<gateway|+>/#``, keeps each gateway's birth (units, aliases, payload
profile), decodes SenML-CBOR and compact packs with our codecs and shows a table (device, point, value,
unit, age) redrawn in place on a terminal, or one line per reading otherwise (``--json``: JSON lines).
Alarms, status changes and command acks are shown too. A payload that does not decode is counted and
shown as an error line; it never stops the monitor.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.commands.display import show_value
from agent.units import show
from protocols import birth as birth_msg
from protocols import cbor, compact, senml
from protocols.errors import ProtocolError

_REDRAW = 0.25  # seconds between terminal redraws


@dataclass
class Row:
    """The latest reading of one point."""

    gateway: str
    device: str
    point: str
    value: Any
    unit: str
    time: float
    received: float


@dataclass
class MonitorState:
    """Everything the monitor knows, fed by `handle(topic, payload)`; no I/O."""

    prefix: str = "fieldlink"
    births: dict = field(default_factory=dict)  # (site, gateway) -> latest birth map
    tables: dict = field(default_factory=dict)  # (site, gateway, seq) -> (AliasTable, units)
    rows: dict = field(default_factory=dict)  # full name -> Row
    health: dict = field(default_factory=dict)  # (site, gateway) -> latest health map
    status: dict = field(default_factory=dict)  # (site, gateway) -> "online" | "offline"
    resolution: dict = field(default_factory=dict)  # (site, gateway, device, point) -> its resolution
    si: bool = False  # show SenML units as on the wire (else units people read: kWh, kW, m³/h ...)
    packs: int = 0
    records: int = 0
    errors: int = 0
    last_error: str = ""

    def handle(self, topic: str, payload: bytes, now: float) -> list[dict]:
        """Decode one message; return events: {"kind": "reading"|"alarm"|"status"|"ack"|"health"|"error"}."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.prefix:
            return []
        _, site, gateway, leaf = parts
        key = (site, gateway)
        try:
            if leaf == "data":
                self.packs += 1
                return self._data(key, payload, now)
            if leaf == "status":
                return self._status(key, payload)
            if leaf in ("alarm", "ack", "health", "cmd"):
                msg = cbor.loads(payload)
                if not isinstance(msg, dict):
                    raise ProtocolError("%s is not a CBOR map" % leaf)
                if leaf == "health":
                    self.health[key] = msg
                return [{"kind": leaf, "site": site, "gateway": gateway, "message": msg}]
        except (ProtocolError, ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            self.errors += 1
            self.last_error = "%s: %s" % (topic, exc)
            return [{"kind": "error", "site": site, "gateway": gateway, "topic": topic, "error": str(exc)}]
        return []

    def _status(self, key: tuple, payload: bytes) -> list[dict]:
        if not payload:  # a cleared retained message
            return []
        msg = birth_msg.decode(payload)
        self.status[key] = "online" if msg["online"] else "offline"
        if msg["online"]:
            self.births[key] = msg
            for device in msg.get("devices", []):
                for point in device.get("points", []):
                    self.resolution[(*key, device.get("id"), point.get("name"))] = point.get("resolution")
            self.tables[(*key, msg["seq"])] = (birth_msg.alias_table(msg), birth_msg.units(msg))
        return [{"kind": "status", "site": key[0], "gateway": key[1], "message": msg}]

    def _data(self, key: tuple, payload: bytes, now: float) -> list[dict]:
        items = cbor.loads(payload)
        if isinstance(items, list) and items and isinstance(items[0], int) and not isinstance(items[0], bool):
            seq = items[1] if len(items) > 1 else None
            entry = self.tables.get((*key, seq))
            if entry is None:
                raise ProtocolError("compact pack for birth seq %r, but no such birth seen from %s/%s"
                                    % (seq, key[0], key[1]))
            records = compact.resolve(items, entry[0], now)
            units = entry[1]
        else:
            records = senml.resolve(items, now)  # type: ignore[arg-type]
            birth = self.births.get(key)
            entry = self.tables.get((*key, birth["seq"])) if birth else None
            units = entry[1] if entry else {}
        base = self.births.get(key, {}).get("base_name", "")
        events = []
        for rec in records:
            name = rec["n"]
            local = name[len(base):] if base and name.startswith(base) else name
            device, _, point = local.rpartition("/") if "/" in local else (local, "", "")
            unit = rec.get("u") or units.get((device, point), "")
            value = next((rec[k] for k in ("v", "vs", "vb", "vd") if k in rec), rec.get("s"))
            row = Row(key[1], device, point, value, unit, rec["t"], now)
            self.rows[name] = row
            self.records += 1
            shown, shown_unit = show(value, unit, self.resolution.get((*key, device, point)), self.si, point)
            events.append({"kind": "reading", "site": key[0], "gateway": key[1], "name": name,
                           "device": device, "point": point, "value": value, "unit": unit, "time": rec["t"],
                           "shown": shown, "shown_unit": shown_unit})
        return events


def show_age(seconds: float) -> str:
    if seconds < 120:
        return "%ds" % max(0, seconds)
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    return "%dh" % (seconds // 3600)


def line(event: dict) -> str:
    """One plain-text line for an event."""
    where = "%s/%s" % (event["site"], event["gateway"])
    kind = event["kind"]
    if kind == "reading":
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["time"]))
        return "%s %s %s/%s = %s %s" % (stamp, where, event["device"], event["point"],
                                        event.get("shown", show_value(event["value"])),
                                        event.get("shown_unit", event["unit"]))
    if kind == "error":
        return "! %s: bad payload: %s" % (event["topic"], event["error"])
    msg = event["message"]
    if kind == "status":
        return "* %s %s (birth seq %s)" % (where, "online" if msg["online"] else "OFFLINE", msg.get("seq"))
    if kind == "alarm":
        return "ALARM %s %s %s %s %s: %s" % (where, msg.get("state", ""), msg.get("kind", ""),
                                             msg.get("device", ""), msg.get("point") or "",
                                             show_value(msg.get("value")))
    if kind == "ack":
        return "ack %s id=%s ok=%s %s" % (where, msg.get("id"), msg.get("ok"), msg.get("error") or "")
    return "%s %s %s" % (kind, where, msg)


def table(state: MonitorState, now: float, width: int = 100) -> str:
    """The live table as text (for the terminal redraw)."""
    out = ["%-16s %-22s %-22s %16s %-8s %6s" % ("gateway", "device", "point", "value", "unit", "age")]
    for name in sorted(state.rows):
        r = state.rows[name]
        site = next((k[0] for k in state.births if k[1] == r.gateway), "")
        resolution = state.resolution.get((site, r.gateway, r.device, r.point))
        value, unit = show(r.value, r.unit, resolution, state.si, r.point)
        out.append("%-16s %-22s %-22s %16s %-8s %6s" % (r.gateway[:16], r.device[:22], r.point[:22],
                                                          value[:16], unit[:8], show_age(now - r.time)))
    for key in sorted(state.status):
        h = state.health.get(key, {})
        readings = h.get("readings", {}) if isinstance(h, dict) else {}
        out.append("%s/%s %s  buffered=%s dropped=%s" % (
            key[0], key[1], state.status[key], readings.get("buffered", "?"), readings.get("dropped", "?")))
    out.append("packs %d  readings %d  errors %d %s" % (state.packs, state.records, state.errors,
                                                          state.last_error[:width]))
    return "\n".join(out)


def parse_broker(text: str, default_port: int = 1883) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not port:
        return text, default_port
    if not port.isdigit():
        raise argparse.ArgumentTypeError("--broker wants HOST[:PORT], got %r" % text)
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True,
                        help="HOST[:PORT] of the MQTT broker (default port 1883, 8883 with TLS)")
    parser.add_argument("--site", default="+", help="only this site")
    parser.add_argument("--gateway", default="+", help="only this gateway")
    parser.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    parser.add_argument("--once", type=int, metavar="N", help="exit after N data packs")
    parser.add_argument("--timeout", type=float,
                        help="stop after this many seconds (with --once: exit 1 if N packs did not come)")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines")
    parser.add_argument("--si", action="store_true", help="SenML units as on the wire (J, W, m3/s)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--tls", action="store_true", help="TLS with the system CA store")
    parser.add_argument("--ca-file", help="TLS, checking the broker against this CA (PEM); implies --tls")
    parser.add_argument("--cert-file", help="client certificate (PEM) for brokers that require one")
    parser.add_argument("--key-file", help="key of --cert-file (PEM), if not in the same file")


def _json(event: dict) -> str:
    def default(x: object) -> object:
        return x.hex() if isinstance(x, bytes) else str(x)

    return json.dumps(event, default=default, sort_keys=True)


def run(args: argparse.Namespace, out: TextIO | None = None, stop: threading.Event | None = None) -> int:
    """Monitor until --once/--timeout, Ctrl-C, or `stop` is set (for callers running it on a thread)."""
    out = out or sys.stdout
    ca_file, cert_file = getattr(args, "ca_file", None), getattr(args, "cert_file", None)
    tls = bool(args.tls or ca_file or cert_file)
    host, port = parse_broker(args.broker, 8883 if tls else 1883)
    state = MonitorState(prefix=args.prefix, si=bool(getattr(args, "si", False)))
    live = out.isatty() and not args.json
    events: list[dict] = []
    alerts: deque[str] = deque(maxlen=8)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        events.extend(state.handle(msg.topic, bytes(msg.payload), time.time()))

    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            if str(reason) not in refused:  # once per reason; it retries
                refused.append(str(reason))
                print("fieldlink monitor: %s:%d refused the connection: %s (check --username/--password)"
                      % (host, port, reason), file=sys.stderr)
            return
        client.subscribe("%s/%s/%s/#" % (args.prefix, args.site, args.gateway), qos=1)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=True)
    client.on_message = on_message
    client.on_connect = on_connect
    if args.username:
        client.username_pw_set(args.username, args.password)
    if tls:
        try:
            client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=getattr(args, "key_file", None))
        except (OSError, ssl.SSLError) as exc:
            print("fieldlink monitor: cannot use the TLS files (--ca-file %s, --cert-file %s): %s"
                  % (ca_file, cert_file, exc), file=sys.stderr)
            return 2
    client.reconnect_delay_set(1, 10)
    try:
        client.connect(host, port, keepalive=30)
    except ssl.SSLCertVerificationError as exc:
        print("fieldlink monitor: the certificate of %s:%d was not accepted: %s (--ca-file %s)"
              % (host, port, exc.verify_message, ca_file or "system CAs"), file=sys.stderr)
        return 2
    except OSError as exc:
        print("fieldlink monitor: cannot connect to %s:%d: %s" % (host, port, exc), file=sys.stderr)
        return 1  # docs/cli.md: a problem found (the broker is unreachable)
    started = time.monotonic()
    last_draw = 0.0
    try:
        while stop is None or not stop.is_set():
            rc = client.loop(0.1)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                time.sleep(0.5)
                try:
                    client.reconnect()
                except OSError:
                    pass
            if live:
                alerts.extend(line(e) for e in events if e["kind"] in ("alarm", "status", "ack", "error"))
                if (events and time.monotonic() - last_draw >= _REDRAW) or time.monotonic() - last_draw > 1.0:
                    out.write("\x1b[H\x1b[2J" + table(state, time.time()) + "\n" + "\n".join(alerts) + "\n")
                    out.flush()
                    last_draw = time.monotonic()
                events.clear()
            else:
                for e in events:
                    if e["kind"] == "health" and not args.json:
                        continue
                    out.write((_json(e) if args.json else line(e)) + "\n")
                out.flush()
                events.clear()
            if args.once is not None and state.packs >= args.once:
                return 0
            if args.timeout is not None and time.monotonic() - started > args.timeout:
                if refused and state.packs == 0:
                    return 1  # the broker never let us in: say so in the exit status too
                if args.once is None:
                    return 0
                print("fieldlink monitor: %d of %d packs within %.0f s" % (state.packs, args.once or 0,
                                                                           args.timeout), file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.disconnect()
    return 0


__all__ = ["MonitorState", "add_arguments", "line", "parse_broker", "run", "table"]
