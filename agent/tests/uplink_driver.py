"""A stand-in for `fieldlink run` in the store-and-forward tests: submits numbered readings via Uplink.

    python -m agent.tests.uplink_driver --broker 127.0.0.1:PORT --outbox /tmp/x.sqlite \
        --start 0 --count 1000 --rate 500 --devices 4

Reading i is ``("dev<i % devices>", "n", i, T0 + i)``: every stream (device) is numbered in order and
(name, time) is unique, so a subscriber can check completeness and order. Packs are closed every
`--batch` readings, so after each ``committed <n>`` line on stdout readings ``< n`` are in the outbox.
Ends with ``drained`` (everything acknowledged) or ``timeout``; exit code 0 / 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.uplink import Uplink

T0 = 1_700_000_000


def inventory(devices: int) -> list[dict]:
    return [{"id": "dev%d" % d, "kind": "flow_meter", "model": "test", "protocol": "modbus",
             "address": str(d + 1), "points": [{"name": "n", "unit": "count", "resolution": 1}]}
            for d in range(devices)]


def reading(i: int, devices: int) -> tuple:
    return ("dev%d" % (i % devices), "n", i, T0 + i)


def build_config(args: argparse.Namespace) -> Config:
    host, _, port = args.broker.partition(":")
    return Config(
        path="<driver>",
        gateway=GatewayConfig(site=args.site, id=args.gateway, payload=args.payload,
                              health_interval=args.health_interval),
        broker=BrokerConfig(host=host, port=int(port or 1883), keepalive=5,
                            reconnect_min=0.1, reconnect_max=0.5),
        outbox=OutboxConfig(path=args.outbox, max_bytes=args.max_bytes, fsync=args.fsync,
                            inflight=args.inflight),
        batch=BatchConfig(max_records=args.batch, max_age=0.2, max_bytes=16 * 1024),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="uplink_driver")
    p.add_argument("--broker", required=True)
    p.add_argument("--outbox", required=True)
    p.add_argument("--site", default="s1")
    p.add_argument("--gateway", default="gw1")
    p.add_argument("--payload", default="senml")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--fsync", default="normal")
    p.add_argument("--max-bytes", type=int, default=64 * 1024 * 1024)
    p.add_argument("--health-interval", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    uplink = Uplink(build_config(args), inventory(args.devices))
    uplink.start()
    print("started pid", flush=True)
    step = args.batch
    began = time.monotonic()
    end = args.start + args.count
    for first in range(args.start, end, step):
        last = min(first + step, end)
        uplink.submit([reading(i, args.devices) for i in range(first, last)])
        print("committed %d" % last, flush=True)
        delay = began + (last - args.start) / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    uplink.batcher.flush()
    ok = uplink.publisher.wait_idle(args.drain_timeout)
    print("counters %r" % (uplink.counters,), flush=True)
    print("drained" if ok else "timeout", flush=True)
    uplink.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
