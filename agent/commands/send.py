"""`fieldlink send`: build a command, sign it when given a key, publish it, wait for its ack, print it.

    fieldlink send --broker HOST:PORT --site S --gateway G --device D
                   (--action NAME | --point P --value V [--no-readback] | --read P
                    | --schedule FILE | --restore NAME)
                   [--key-file F] [--ttl SECONDS] [--id ID]
                   [--prefix P] [--timeout SECONDS] [--username U --password P]

`--device` may name a group of the gateway's config: the ack then carries one result per device, and
each is printed on its own line. `--no-readback` lets a group write go out as one Modbus broadcast per
bus where the profile allows it. `--schedule FILE` replaces (or adds) the lighting schedule of FILE for
the device or group (FILE: TOML with `name` and `[[steps]]`, as a `[[schedules]]` table without group
or devices); `--restore NAME` drops such a replacement so the config's schedule NAME runs again.

With `--key-file` (the gateway's key file, 0600; its first key signs) the command goes out as a
COSE_Mac0 (protocols/cose.py, kid = the gateway id in the protected header) with `exp` = now + ttl
(default 60 s). Without it the plain command map is sent (`exp` only with `--ttl`). Values parse like
JSON where they can (numbers, true/false) and are text otherwise: `--value 0.3`, `--value true`,
`--value closed`, `--value '"1"'` (the text "1").

Exit status: 0 the gateway acked ok; 1 it refused or failed, or no ack came within `--timeout`
(default 10 s), or the broker could not be reached; 2 bad arguments (including an unusable key file).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from typing import Any

from agent.commands.monitor import parse_broker

__all__ = ["add_arguments", "build", "parse_value", "run"]

DEFAULT_TTL = 60


def parse_value(text: str) -> Any:
    """A command value from the command line: a JSON number, true/false, a JSON string, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, (bool, int, float, str)):
        return value
    return text


def build(args: argparse.Namespace, key: bytes | None, now: float) -> tuple[dict, bytes]:
    """The command map and the bytes to publish (signed when `key` is given)."""
    from protocols import cbor, cose

    cmd: dict[str, Any] = {"id": args.id if args.id is not None else "send-%s" % secrets.token_hex(4),
                           "device": args.device}
    if args.action is not None:
        cmd["action"] = args.action
    elif args.read is not None:
        cmd["point"] = args.read
        cmd["action"] = "read"
    elif getattr(args, "schedule", None) is not None:
        cmd["action"] = "schedule"
        cmd["value"] = args.schedule_value
    elif getattr(args, "restore", None) is not None:
        cmd["action"] = "schedule"
        cmd["value"] = {"name": args.restore, "restore": True}
    else:
        cmd["point"] = args.point
        cmd["value"] = parse_value(args.value)
        if getattr(args, "no_readback", False):
            cmd["readback"] = False
    ttl = args.ttl if args.ttl is not None else (DEFAULT_TTL if key is not None else None)
    if ttl is not None:
        cmd["exp"] = int(now) + int(ttl)
    payload = cbor.dumps(cmd)
    if key is not None:
        payload = cose.sign(payload, key, args.gateway.encode())
    return cmd, payload


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text) from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError("expected a number of seconds > 0, got %r" % text)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, metavar="HOST:PORT",
                        help="MQTT broker (port 1883 if left out)")
    parser.add_argument("--site", required=True)
    parser.add_argument("--gateway", required=True, help="gateway id (also the kid of a signed command)")
    parser.add_argument("--device", required=True)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--action", metavar="NAME",
                      help="an action the device's profile lists (relay_trip ...)")
    what.add_argument("--point", metavar="P", help="write point P (with --value)")
    what.add_argument("--read", metavar="P", help="read point P now")
    what.add_argument("--schedule", metavar="FILE",
                      help="replace the lighting schedule of FILE (TOML: name, [[steps]]) for device/group")
    what.add_argument("--restore", metavar="NAME",
                      help="drop the replacement of schedule NAME (the config's runs again)")
    parser.add_argument("--no-readback", action="store_true",
                        help="a group write without read-back: one Modbus broadcast per bus where allowed")
    parser.add_argument("--value", metavar="V", help="the value to write: a number, true/false or text")
    parser.add_argument("--key-file", metavar="F", help="the gateway's command key file: sign the command")
    parser.add_argument("--ttl", type=_positive, metavar="SECONDS",
                        help="exp = now + SECONDS (default %d s when signing, none otherwise)" % DEFAULT_TTL)
    parser.add_argument("--id", metavar="ID", help="command id (default: send-<random>)")
    parser.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for the ack (default 10)")
    parser.add_argument("--username")
    parser.add_argument("--password")


def run(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.command_keys import KeyFileError, read_keys
    from protocols import cbor

    if args.point is not None and args.value is None:
        print("fieldlink send: --point needs --value", file=sys.stderr)
        return 2
    if args.point is None and args.value is not None:
        print("fieldlink send: --value goes with --point", file=sys.stderr)
        return 2
    if args.schedule is not None:
        try:
            args.schedule_value = read_schedule(args.schedule)
        except ValueError as exc:
            print("fieldlink send: %s" % exc, file=sys.stderr)
            return 2
    key = None
    if args.key_file:
        try:
            key = read_keys(args.key_file)[0]
        except KeyFileError as exc:
            print("fieldlink send: %s" % exc, file=sys.stderr)
            return 2
    try:
        host, port = parse_broker(args.broker)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print("fieldlink send: %s" % exc, file=sys.stderr)
        return 2
    cmd, payload = build(args, key, time.time())
    base = "%s/%s/%s/" % (args.prefix, args.site, args.gateway)
    acked = threading.Event()
    subscribed = threading.Event()
    found: list[dict] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(base + "ack", qos=1)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = cbor.loads(msg.payload)
        except Exception:
            return
        if isinstance(ack, dict) and ack.get("id") == cmd["id"] and type(ack.get("id")) is type(cmd["id"]):
            found.append(ack)
            acked.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fieldlink-send-%s" % secrets.token_hex(4))
    if args.username:
        client.username_pw_set(args.username, args.password)
    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        print("fieldlink send: cannot connect to broker %s:%d: %s" % (host, port, exc), file=sys.stderr)
        return 1
    client.loop_start()
    try:
        if not subscribed.wait(args.timeout):
            print("fieldlink send: broker %s:%d did not accept the subscription to %sack within %g s"
                  % (host, port, base, args.timeout), file=sys.stderr)
            return 1
        info = client.publish(base + "cmd", payload, qos=1)
        info.wait_for_publish(args.timeout)
        print("sent %s%s %s (%d bytes%s)" % (base, "cmd", _describe(cmd), len(payload),
                                            ", signed" if key is not None else ""), file=sys.stderr)
        if not acked.wait(args.timeout):
            print("no ack for command %s within %g s (is gateway %s of site %s online?)"
                  % (_show(cmd["id"]), args.timeout, args.gateway, args.site))
            return 1
    finally:
        client.disconnect()
        client.loop_stop()
    ack = found[0]
    value: Any = ack.get("value")
    if _group_result(value):
        ok = ack.get("ok") is True
        failed = [d for d, r in value.items() if not r.get("ok")]
        print("ack %s: %s, %d devices%s" % (_show(ack["id"]), "ok" if ok else "failed", len(value),
                                            "" if ok else ": %d failed" % len(failed)))
        for device, result in value.items():
            if result.get("ok"):
                text = "ok, value %s%s" % (json.dumps(result.get("value"), default=repr),
                                           " (broadcast)" if result.get("broadcast") else "")
            else:
                text = "failed: %s" % result.get("error")
            print("  %s: %s" % (device, text))
        return 0 if ok else 1
    if ack.get("ok") is True:
        print("ack %s: ok, value %s" % (_show(ack["id"]), json.dumps(value, default=repr)))
        return 0
    print("ack %s: refused: %s" % (_show(ack["id"]), ack.get("error")))
    return 1


def _group_result(value: Any) -> bool:
    """True for the value of a group command's ack: {device: {ok, error, value}}."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(r, dict) and "ok" in r and "error" in r for r in value.values())


def read_schedule(path: str) -> dict:
    """A schedule command's value from a TOML file (name and [[steps]]); ValueError saying why."""
    import tomllib

    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise ValueError("cannot read schedule file %s: %s" % (path, exc.strerror)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError("schedule file %s: %s" % (path, exc)) from None
    if not isinstance(table.get("name"), str) or not isinstance(table.get("steps"), list):
        raise ValueError("schedule file %s: expected name = \"...\" and [[steps]] tables (at, set, days)"
                         % path)
    return table


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _describe(cmd: dict) -> str:
    return " ".join("%s=%s" % (k, json.dumps(v)) for k, v in cmd.items())
