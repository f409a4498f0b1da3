"""`fieldlink sim SCENARIO`: run a simulated site until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from simulator.scenario import ScenarioError, load, shipped_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario",
                        help="scenario TOML file, or a shipped one: %s" % ", ".join(shipped_names()))
    parser.add_argument("--speed", type=float, default=None,
                        help="simulated seconds per wall second (default: the scenario's, else 1)")
    parser.add_argument("--instant", action="store_true",
                        help="no wire time or reply delays on any bus (fast tests)")
    parser.add_argument("--ports-file", metavar="FILE", default=None,
                        help="write the buses, their devices and the control address as JSON to FILE")
    parser.add_argument("--control", metavar="HOST:PORT", default=None,
                        help="control channel address (default: the scenario's, else 127.0.0.1 on any port)")
    parser.add_argument("--start", type=float, default=None, metavar="POSIX",
                        help="simulated start time in POSIX seconds (default: the scenario's, else now)")


def run(args: argparse.Namespace) -> int:
    from simulator.site import Site

    try:
        scenario = load(args.scenario)
        site = Site(scenario, speed=args.speed, instant=True if args.instant else None,
                    control=args.control, start=args.start)
    except (ScenarioError, ValueError, OSError) as exc:
        print("fieldlink sim: %s" % exc, file=sys.stderr)
        return 2
    stop = threading.Event()
    interrupted: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            interrupted.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        site.start()
        info = site.describe()
        print("site %s: %d buses, %d devices, speed %g, control %s"
              % (info["site"], len(site.buses), len(site.devices), site.clock.speed, info["control"]))
        for bus in site.buses:
            tcp = bus.tcp_address
            print("  %-12s %-22s %-18s %3d devices%s" % (
                bus.name, bus.device_path or "(no pty)", bus.line.describe(), len(bus.devices),
                "  tcp %s:%d" % tcp if tcp else ""))
            print("  %-12s %s  %s" % ("", bus.describe()["rfc2217"], bus.describe()["socket"]))
        if args.ports_file:
            site.write_ports_file(args.ports_file)
            print("ports file: %s" % args.ports_file)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        print("stopping")
    except OSError as exc:
        print("fieldlink sim: %s" % exc, file=sys.stderr)
        return 1
    finally:
        site.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 130 if interrupted else 0  # docs/cli.md: Ctrl-C is 130, SIGTERM (a service stop) 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="fieldlink sim")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
