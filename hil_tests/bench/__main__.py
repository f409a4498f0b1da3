"""`make bench`: FieldLink side by side with its peers, every row of issue #12, each in one run, as ratios.

    .venv/bin/python -m hil_tests.bench [--quick] [--only ROW ...] [--dir DIR]

Rows (docs/benchmarks.md says how each is measured): codec (payload sizes of a meter batch, CBOR and
Modbus codec speed), poll (client CPU per Modbus poll on a pty: FieldLink, pymodbus, bare pyserial), cpu
(agent CPU end to end on the street site vs pymodbus reads, flat out and paced at the agent's schedule,
and the ThingsBoard gateway, payload bytes; the same at the planned rate with the simulator's line
timing; then the agent at full bus rate vs pymodbus flat out),
latency (reading -> broker at field rates on the demo and street sites, payload bytes), throughput
(readings/s through the durable outbox), reconnect (broker outage: back online, status and inventory
bytes per reconnect), scale (10..400 devices: CPU, RSS, inventory and payload bytes). The report goes to
stdout, progress to stderr.
`--quick` is a smoke run (short windows, small counts): the rows are all there, the figures are not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time

from hil_tests.bench import codec, e2e, poll
from hil_tests.bench.common import load_average, machine, ratio, say, wake_costs
from hil_tests.bench.e2e import print_sizes
from hil_tests.link import ROOT

ROWS = ("codec", "poll", "cpu", "latency", "throughput", "reconnect", "scale")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hil_tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: every row, short windows")
    parser.add_argument("--only", nargs="+", choices=ROWS, metavar="ROW",
                        help="run only these rows (%s)" % ", ".join(ROWS))
    parser.add_argument("--dir", default=os.path.join(ROOT, ".bench"),
                        help="work folder for configs, outboxes and logs (default .bench/, emptied first)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: every run's broker, simulator and agent are stopped by their PIDs
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows = args.only or ROWS
    quick = args.quick
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    began = time.monotonic()
    print("FieldLink benchmarks%s" % (" (--quick: smoke run, figures not meaningful)" if quick else ""))
    for line in machine():
        print(line)
    if "codec" in rows:
        codec.report(2 if quick else 7)
    if "poll" in rows:
        say("poll CPU on a pty")
        poll.report(200 if quick else 3000, 1 if quick else 3)
    if "cpu" in rows:
        print("\nThis machine after a sleep: %s" % wake_costs(quick))
        e2e.street_cpu(args.dir, 3.0 if quick else 30.0)
        e2e.street_planned_line_timed(args.dir, 3.0 if quick else 30.0)
        e2e.street_full_rate(args.dir, 3.0 if quick else 30.0)
    if "latency" in rows:
        seconds = 12.0 if quick else 60.0
        print("\nReading -> broker latency at field rates (line timing on, polls every 5 s or what fits, "
              "default batching), %g s per site" % seconds)
        print("  %-10s %9s %9s %9s %9s %9s" % ("site", "readings", "per s", "p50 s", "p99 s", "max s"))
        runs = {site: e2e.latency(site, args.dir, seconds) for site in ("demo", "street")}
        for site, (_, _, polls) in runs.items():
            print("  %s polls: %s" % (site, polls))
        print("  goal (issue #12, item 3): p99 <= 0.5 s on the demo and street sites")
        published = {site: (sizes, steps) for site, (sizes, steps, _) in runs.items()}
        print("\nPayload bytes per reading at field rates (same packs: SenML-CBOR as published, the rest "
              "computed from the decoded readings)")
        for site, (sizes, steps) in published.items():
            print_sizes(site, sizes)
            if steps:
                tb = sizes.per("tb")
                print("    what each SenML choice of issue #12 saves, same packs (B/reading, vs TB JSON):")
                before = None
                for step, size, count in steps:
                    per = size / count
                    saved = "" if before is None else "saves %5.2f" % (before - per)
                    print("      %-64s %6.2f %6s %s" % (step, per, ratio(per, tb), saved))
                    if not step.startswith("(not taken)"):
                        before = per
        print("  goal (issue #12, item 1): SenML-CBOR <= 0.8x ThingsBoard JSON on the street and demo sites; "
              "compact <= 0.25x")
    if "throughput" in rows:
        print("\nReadings/s under load with the durable outbox (40 lamps' readings submitted as fast as "
              "possible)")
        e2e.throughput(args.dir, 5000 if quick else 100000)
    if "reconnect" in rows:
        print("\nBack online after the broker returns (street site, default reconnect settings)")
        e2e.reconnect(args.dir, [1.0] if quick else [5.0, 5.0, 5.0, 20.0, 20.0, 20.0])
    if "scale" in rows:
        seconds = 10.0 if quick else 30.0
        print("\nHow costs grow with devices (generic-lamp sites, 100 per 9600-baud bus, simulator without "
              "line timing, every lamp polled every 10 s, %g s windows)" % seconds)
        e2e.scale(args.dir, [10, 100] if quick else [10, 40, 100, 400], seconds)
    print("\ndone in %.0f s; load average now %s; logs in %s" % (time.monotonic() - began, load_average(),
                                                                 os.path.relpath(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
