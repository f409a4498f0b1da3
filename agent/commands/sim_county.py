"""`fieldlink sim county`: a simulated county's retained status, inventory and health on a broker, and
the truth.

    fieldlink sim county --gateways N --lamps N --meters N --broker HOST:PORT [--seed S]
                         [--truth FILE] [--totals FILE] [--districts K] [--prefix P]
                         [--username U --password P]

Publishes, from one process and through the fleet engine of `fieldlink sim fleet`, the retained
status, inventory and health of N gateways exactly as the agent makes them (agent/fleet/model.py), some
devices not answering and some gateways stale (old health; half of those dropped their connection, so
the broker holds their will as their status), as agent/fleet/county.py describes. Then it disconnects:
the inventories and health stay on the broker, and `fieldlink fleet report` can be run against it any
time in the next hours.

`--truth FILE` gets what every indicator must come out as (JSON, city and districts: counted, total,
exact ratio "n/d", stars) for a report with `--stale 24`; `--totals FILE` the county's totals file.

Exit status (docs/cli.md): 0 published; 1 the broker could not be reached; 2 bad arguments; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time

__all__ = ["add_arguments", "build_models", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateways", type=int, required=True, metavar="N", help="simulated gateways")
    parser.add_argument("--lamps", type=int, required=True, metavar="N", help="street lamps in the county")
    parser.add_argument("--meters", type=int, required=True, metavar="N",
                        help="household meters (electricity, water, gas, a few heat)")
    parser.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker (default port 1883)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the county (default 1)")
    parser.add_argument("--truth", metavar="FILE", help="write the true indicators (JSON) to FILE")
    parser.add_argument("--totals", metavar="FILE", help="write the county's totals (TOML) to FILE")
    parser.add_argument("--districts", type=int, default=5, metavar="K", help="districts (1 to 8, default 5)")
    parser.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    parser.add_argument("--payload", choices=("senml", "compact"), default="senml",
                        help="the gateways' payload profile, said in their inventories (default senml)")
    parser.add_argument("--connect-rate", type=float, default=200.0, metavar="R",
                        help="new connections per second (default 200)")
    parser.add_argument("--username")
    parser.add_argument("--password")


def build_models(plan, now: float, prefix: str = "fieldlink", payload: str = "senml") -> list:
    """One GatewayModel per planned gateway: its devices' answers and ages, its clock `age` behind."""
    from agent.config_model import RuleConfig
    from agent.fleet.model import GatewayModel, make_config
    from agent.fleet.sites import load_profiles
    from protocols import poll

    profiles = load_profiles(sorted({d.model for g in plan.gateways for d in g.devices}))
    models = []
    for i, g in enumerate(plan.gateways):
        rules = [RuleConfig(device=d.id, point="lamp_failure", kind="fault", above=0.5)
                 for d in g.devices if d.lights and d.armed]
        devices = [(d.id, d.model, d.address, d.serves, d.lights) for d in g.devices]
        config = make_config(g.id, g.site, devices, profiles, interval=60.0, prefix=prefix, payload=payload,
                             district=g.district, rules=rules)
        health_time = now - g.age
        model = GatewayModel(config, seed=i, clock=functools.partial(_behind, g.age),
                             monotonic=time.monotonic, run_later=lambda delay, fn: None)
        for d in g.devices:
            device = model.devices[d.id]
            device.online = d.online
            device.answered = d.online
            device.last_seen = None if d.age is None else health_time - d.age
            device.since = int(device.last_seen or 0)  # as far as the county's plan tells
            device.reason = (poll.online_reason(False) if d.online
                             else poll.offline_reason(poll.OFFLINE_AFTER, "timeout: no reply at address %s"
                                                      % d.address))
        models.append(model)
    return models


def _behind(age: float) -> float:
    """A gateway clock `age` seconds behind: the time of a health message sent that long ago."""
    return time.time() - age


def run(args: argparse.Namespace) -> int:
    from agent.commands.monitor import parse_broker
    from agent.fleet.county import plan_county
    from agent.fleet.engine import Engine, Options, raise_fd_limit
    from agent.fleet.mqtt import MqttError

    try:
        host, port = parse_broker(args.broker)
        plan = plan_county(args.gateways, args.lamps, args.meters, seed=args.seed, districts=args.districts)
        raise_fd_limit(min(args.gateways, 4096) + 64)
    except (ValueError, OSError, argparse.ArgumentTypeError) as exc:
        print("fieldlink sim county: %s" % exc, file=sys.stderr)
        return 2
    now = time.time()
    models = build_models(plan, now, args.prefix, args.payload)
    truth = plan.truth()
    street = sum(1 for g in plan.gateways if g.kind == "street")
    print("county: %d gateways (%d street, %d block) in %d districts, %d devices (%d lamps, %d meters); "
          "%d gateways stale, %d of them dropped (their will on the broker)" % (
              len(plan.gateways), street, len(plan.gateways) - street, len(plan.districts),
              truth["devices"], args.lamps, args.meters, sum(1 for g in plan.gateways if g.age),
              sum(1 for g in plan.gateways if g.will)), flush=True)
    engine = Engine(models, Options(host=host, port=port, connect_rate=args.connect_rate,
                                    username=args.username, password=args.password, seed=args.seed))
    drop = {i for i, g in enumerate(plan.gateways) if g.will}
    try:
        stats = asyncio.run(engine.publish_once(drop))
    except (MqttError, OSError) as exc:
        print("fieldlink sim county: broker %s:%d: %s" % (host, port, exc), file=sys.stderr)
        return 1
    sent = sum(stats.message_bytes.values())
    print("published %d status, %d inventory and %d health messages (%.1f MB, retained) in %.1f s; %d "
          "connections dropped" % (stats.messages.get("status", 0), stats.messages.get("inventory", 0),
                                   stats.messages.get("health", 0), sent / 1e6, stats.window, stats.drops),
          flush=True)
    if args.truth:
        with open(args.truth, "w") as f:
            json.dump(truth, f, indent=1, sort_keys=True)
        print("truth: %s" % args.truth)
    if args.totals:
        with open(args.totals, "w") as f:
            f.write(plan.totals_toml())
        print("totals: %s" % args.totals)
    for scope, values in [("city", truth["city"]), *sorted(truth["districts"].items())]:
        print("  %-10s L1P3 %d stars, L1P9 %d stars, L2P4 %d stars" % (
            scope, values["L1P3"]["stars"], values["L1P9"]["stars"], values["L2P4"]["stars"]))
    return 0
