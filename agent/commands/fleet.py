"""`fieldlink fleet report`: the smart-city indicators of every gateway under a topic prefix.

    fieldlink fleet report --broker HOST:PORT --totals FILE [--stale HOURS] [--json] [--csv FILE]
                           [--plot FILE.png] [--prefix P] [--username U --password P] [--timeout S]

Reads the retained status, inventory and health of every gateway (agent/fleet/report.py says how it
knows it has them all), joins them with the city's totals (docs/indicators.md) and prints L1P3, L1P9 and
L2P4 with their stars and what the next star needs, for the city and each district of the totals file. A
device
that has not reported for `--stale` hours (default 24) counts for nothing.

Exit status (docs/cli.md): 0 done; 1 the broker could not be reached or refused us; 2 bad arguments, a
bad totals file or an output file that cannot be written; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from agent.commands.monitor import parse_broker

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="fleet_command", metavar="COMMAND")
    rep = sub.add_parser("report", help="the smart-city indicators (L1P3, L1P9, L2P4) from the broker",
                         description="the smart-city indicators (L1P3, L1P9, L2P4) of every gateway under "
                                     "the prefix, with stars and what the next star needs "
                                     "(docs/indicators.md)")
    rep.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker (default port 1883)")
    rep.add_argument("--totals", required=True, metavar="FILE",
                     help="the city's totals (TOML: public_lights, households, network_length_m, "
                          "[districts.X])")
    rep.add_argument("--stale", type=float, default=24.0, metavar="HOURS",
                     help="a device not reporting for this long counts for nothing (default 24)")
    rep.add_argument("--json", action="store_true", help="print the report as JSON")
    rep.add_argument("--csv", metavar="FILE", help="also write one row per scope, indicator and part to FILE")
    rep.add_argument("--plot", metavar="FILE.png", help="also draw coverage by district (needs matplotlib)")
    rep.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    rep.add_argument("--username")
    rep.add_argument("--password")
    rep.add_argument("--timeout", type=float, default=60.0, metavar="S",
                     help="give up when the broker is still sending after S seconds (default 60)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "fleet_command", None) != "report":
        print("fieldlink fleet: a command is needed: report (fieldlink fleet report --help)", file=sys.stderr)
        return 2
    return report(args)


def _unwritable(path: str | None) -> str | None:
    """Why `path` cannot be written (its folder missing or not writable, or a folder itself), or None."""
    if not path:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "%s is a folder, not a file" % path
    if not os.path.isdir(folder):
        return "cannot write %s: folder %s does not exist" % (path, folder)
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "cannot write %s: permission denied" % path
    return None


def report(args: argparse.Namespace) -> int:
    from agent.fleet import report as rep
    from agent.fleet.indicators import TotalsError, load_totals
    from agent.fleet.mqtt import MqttError
    from agent.fleet.view import FleetView

    if not args.stale > 0:
        print("fieldlink fleet report: --stale must be a number of hours above 0", file=sys.stderr)
        return 2
    try:
        totals = load_totals(args.totals)
    except TotalsError as exc:
        print("fieldlink fleet report: %s" % exc, file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("fieldlink fleet report: --plot needs matplotlib (pip install 'fieldlink[plot]')",
                  file=sys.stderr)
            return 2
    try:
        host, port = parse_broker(args.broker)
    except argparse.ArgumentTypeError as exc:
        print("fieldlink fleet report: %s" % exc, file=sys.stderr)
        return 2
    for path in (args.csv, args.plot):  # before the broker: a file we cannot write is wrong input
        problem = _unwritable(path)
        if problem:
            print("fieldlink fleet report: %s" % problem, file=sys.stderr)
            return 2
    view = FleetView(prefix=args.prefix)
    try:
        collected = asyncio.run(rep.collect(view, host, port, args.username, args.password,
                                            timeout=args.timeout))
    except (OSError, MqttError, TimeoutError) as exc:
        print("fieldlink fleet report: broker %s:%d: %s" % (host, port, exc or type(exc).__name__),
              file=sys.stderr)
        return 1
    now = time.time()
    began = time.monotonic()
    scopes = rep.compute(view, totals, now, args.stale)
    took = time.monotonic() - began
    if args.json:
        out = rep.as_dict(scopes, view, now, args.stale)
        out["collected"] = {"seconds": round(collected.seconds, 3), "messages": collected.messages,
                            "complete": collected.marker, "compute_seconds": round(took, 3)}
        print(json.dumps(out, indent=1, sort_keys=True))
    else:
        print(rep.text(scopes, view, now, args.stale))
        print("\n%d messages collected in %.1f s%s; computed in %.2f s" % (
            collected.messages, collected.seconds,
            "" if collected.marker else " (no end marker came back: stopped after 3 s without a message; "
            "may the report publish to fieldlink-report/#?)", took))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            f.write(rep.csv_text(scopes))
    if args.plot:
        rep.plot(scopes, args.plot)
    return 0
