"""`fieldlink sim fleet`: the traffic of many gateways from one process, and what it achieved.

    fieldlink sim fleet --gateways N --devices M --interval S --broker HOST:PORT
                        [--payload senml|compact] [--seconds T] [--mix mixed|street|block|pump]
                        [--prefix P] [--health-interval S] [--inflight N] [--connect-rate R]
                        [--drop-every S] [--key-file F] [--signed switching|all|none]
                        [--username U --password P] [--json FILE] [--quiet]

Each simulated gateway is what the agent would be with M devices polled every S seconds: one MQTT
connection with its will, the retained status and inventory, packs made by the agent's batcher, retained
health, alarms, and acks to commands on `…/cmd` (docs/scaling.md). It runs T seconds after every gateway
is connected (default: until Ctrl-C), then stops as the agent stops, and prints messages/s, readings/s,
publish latency (p50/p99), CPU and whether the load was sustained.

Exit status (docs/cli.md): 0 done (1 with --require-sustained when it was not); 2 bad arguments or the
open-file limit cannot be raised; 1 the broker could not be reached by every gateway; 130 after Ctrl-C
(SIGINT: it stops as the agent stops and prints what it measured first; SIGTERM: the same, exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import sys

from agent.commands.monitor import parse_broker

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateways", type=int, required=True, metavar="N", help="simulated gateways")
    parser.add_argument("--devices", type=int, required=True, metavar="M", help="devices per gateway")
    parser.add_argument("--interval", type=float, default=60.0, metavar="S",
                        help="poll interval of every device, seconds (default 60)")
    parser.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker (default port 1883)")
    parser.add_argument("--payload", choices=("senml", "compact"), default="senml",
                        help="the gateways' payload profile (default senml)")
    parser.add_argument("--seconds", type=float, default=None, metavar="T",
                        help="run this long after every gateway connected (default: until Ctrl-C)")
    parser.add_argument("--mix", choices=("mixed", "street", "block", "pump"), default="mixed",
                        help="kind of site of every gateway (default mixed: street, street, block, block, "
                             "pump)")
    parser.add_argument("--prefix", default="fieldlink", help="topic prefix (default fieldlink)")
    parser.add_argument("--health-interval", type=float, default=60.0, metavar="S",
                        help="seconds between health messages of a gateway (default 60)")
    parser.add_argument("--inflight", type=int, default=20, metavar="N",
                        help="packs awaiting PUBACK per gateway, as [outbox] inflight (default 20)")
    parser.add_argument("--connect-rate", type=float, default=200.0, metavar="R",
                        help="new connections per second at start (default 200)")
    parser.add_argument("--drop-every", type=float, default=0.0, metavar="S",
                        help="drop the connection of a random gateway every S seconds without DISCONNECT, "
                             "so the broker publishes its will; it reconnects as the agent does "
                             "(default: never)")
    parser.add_argument("--key-file", metavar="F",
                        help="command key file every simulated gateway checks signatures with "
                             "([commands] key_file)")
    parser.add_argument("--signed", choices=("switching", "all", "none"), default="switching",
                        help="which commands must be signed, as [commands] signed (default switching)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--seed", type=int, default=1, help="random seed (phases, drops; default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the measured figures as JSON to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the result")
    parser.add_argument("--require-sustained", action="store_true",
                        help="exit 1 when the load was not sustained (for benchmarks)")


def _commands_config(args: argparse.Namespace):  # -> CommandsConfig
    from agent.command_keys import read_keys
    from agent.config_model import CommandsConfig

    keys = read_keys(args.key_file) if args.key_file else []
    return CommandsConfig(signed=args.signed, key_file=args.key_file, keys=keys)


def check_counts(args: argparse.Namespace) -> str | None:
    if args.gateways < 1 or args.devices < 1:
        return "--gateways and --devices must be at least 1"
    if not args.interval > 0 or (args.seconds is not None and args.seconds < 0):
        return "--interval must be above 0 and --seconds at least 0"
    if args.inflight < 1 or not args.connect_rate > 0:
        return "--inflight must be at least 1 and --connect-rate above 0"
    return None


def run_engine(models: list, args: argparse.Namespace, seconds: float | None, polls: bool = True,
               out=None, signals: list | None = None):  # -> Stats
    """Run the engine on `models` until `seconds` pass or SIGINT/SIGTERM; returns its Stats. The signal
    that stopped it, if any, is appended to `signals`."""
    from agent.fleet.engine import Engine, Options

    out = out or sys.stdout
    host, port = parse_broker(args.broker)
    got = signals if signals is not None else []
    options = Options(host=host, port=port, inflight=getattr(args, "inflight", 20),
                      connect_rate=getattr(args, "connect_rate", 200.0),
                      drop_every=getattr(args, "drop_every", 0.0), username=args.username,
                      password=args.password,
                      seed=args.seed, progress=None if getattr(args, "quiet", True) else
                      (lambda text: print(text, file=out, flush=True)))
    engine = Engine(models, options)

    async def main():  # -> Stats
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, functools.partial(_stop, stop, got, sig))
        try:
            return await engine.run(seconds, polls=polls, stop=stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())


def _stop(stop: asyncio.Event, got: list, sig: int) -> None:
    got.append(sig)
    stop.set()


def run(args: argparse.Namespace) -> int:
    from agent.fleet.engine import raise_fd_limit
    from agent.fleet.model import GatewayModel
    from agent.fleet.mqtt import MqttError
    from agent.fleet.sites import fleet_configs

    problem = check_counts(args)
    try:
        parse_broker(args.broker)
    except argparse.ArgumentTypeError as exc:
        problem = str(exc)
    if problem:
        print("fieldlink sim fleet: %s" % problem, file=sys.stderr)
        return 2
    try:
        raise_fd_limit(args.gateways + 64)
        commands = _commands_config(args)
    except (OSError, ValueError) as exc:
        print("fieldlink sim fleet: %s" % exc, file=sys.stderr)
        return 2
    import time

    configs = fleet_configs(args.gateways, args.devices, args.interval, payload=args.payload,
                            prefix=args.prefix, health_interval=args.health_interval, mix=args.mix,
                            commands=commands)
    models = [GatewayModel(c, seed=args.seed * 100_003 + i, clock=time.time, monotonic=time.monotonic,
                           run_later=lambda delay, fn: None) for i, c in enumerate(configs)]
    points = sum(len(d.points) for m in models for d in m.devices.values())
    print("fleet: %d gateways x %d devices (%d points) every %g s, payload %s, broker %s, mix %s"
          % (args.gateways, args.devices, points, args.interval, args.payload, args.broker, args.mix),
          flush=True)
    signals: list = []
    try:
        stats = run_engine(models, args, args.seconds, signals=signals)
    except MqttError as exc:
        print("fieldlink sim fleet: %s" % exc, file=sys.stderr)
        return 1
    print(stats.summary(), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            figures = stats.as_dict() | {"payload": args.payload, "mix": args.mix}
            json.dump(figures, f, indent=1, sort_keys=True)
    if signal.SIGINT in signals:
        return 130
    return 1 if args.require_sustained and not stats.sustained else 0
