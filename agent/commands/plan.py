"""`fieldlink plan FILE`: the poll plan of a config (requests per bus and cycle, line time, utilisation)
without touching a bus."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from agent.config import validate
from agent.planner import BusPlan, plan_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="gateway config (TOML)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _ms(seconds: float) -> str:
    return "%.1f ms" % (seconds * 1000)


def plan_dict(plans: list[BusPlan]) -> list[dict]:
    out = []
    for bp in plans:
        out.append({
            "bus": bp.bus.name, "port": bp.bus.port, "line": bp.line_text, "requests": bp.requests,
            "cycle_ms": round(bp.cycle_time * 1000, 3), "worst_cycle_ms": round(bp.worst_time * 1000, 3),
            "utilisation": round(bp.utilisation, 6),
            "devices": [{
                "id": dp.device.id, "profile": dp.profile.model, "address": dp.device.address,
                "interval": dp.device.interval, "cycle_ms": round(dp.cycle_time * 1000, 3),
                "requests": [{"describe": r.describe(), "line_ms": round(r.line_time * 1000, 3),
                              "points": [p.name for p, _ in r.points]} for r in dp.requests],
            } for dp in bp.devices],
        })
    return out


def print_plan(plans: list[BusPlan], out: Any = sys.stdout) -> None:
    for bp in plans:
        bus = bp.bus
        print("bus %s  %s  %s  timeout %d ms  turnaround %d ms  pause %d ms"
              % (bus.name, bus.port, bp.line_text, bus.timeout_ms, bus.turnaround_ms, bus.pause_ms), file=out)
        if not bp.devices:
            print("  (no devices)", file=out)
            continue
        for dp in bp.devices:
            d = dp.device
            print("  device %s  %s  address %s  every %g s  %d request%s  %s"
                  % (d.id, dp.profile.model, d.address, d.interval, len(dp.requests),
                     "" if len(dp.requests) == 1 else "s", _ms(dp.cycle_time)), file=out)
            for r in dp.requests:
                print("    %-9s %s" % (_ms(r.line_time), r.describe()), file=out)
        print("  cycle: %d request%s, %s line time (%s if every device times out); utilisation %.1f %%"
              % (bp.requests, "" if bp.requests == 1 else "s", _ms(bp.cycle_time), _ms(bp.worst_time),
                 bp.utilisation * 100), file=out)
        print(file=out)


def run(args: Any) -> int:
    config, issues, _warnings = validate(args.file)
    if config is None:
        for issue in issues:
            print(issue, file=sys.stderr)
        return 2
    plans = plan_config(config)
    if args.json:
        json.dump(plan_dict(plans), sys.stdout, indent=2)
        print()
    else:
        print_plan(plans)
    for issue in issues:  # only poll-plan problems reach here
        print(issue, file=sys.stderr)
    return 1 if issues else 0
