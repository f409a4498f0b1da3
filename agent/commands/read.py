"""`fieldlink read`: read points from one device on a port and print them with units.

    fieldlink read --port /dev/ttyUSB0 --protocol dlt645 --address 000000000161 [--point voltage_a]
    fieldlink read --port /dev/ttyUSB0 --protocol modbus --profile generic-lamp --address 3 -v
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.config import find_profile, normalise_address
from agent.config_model import BusConfig, DeviceConfig
from agent.diagnosis import Where, explain
from agent.drivers import Driver, error_kind, make_driver
from agent.link import LinkClosed, LinkError, LinkTimeout, open_link
from agent.units import show
from protocols import registry
from protocols.errors import ProtocolError
from protocols.profiles import Profile, ProfileError


def add_link_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, help="device path or URL (socket://host:port, tcp://host:502)")
    parser.add_argument("--protocol", required=True, choices=registry.names())
    parser.add_argument("--profile", help="device profile (default per protocol; needed for modbus)")
    parser.add_argument("--baud", type=int, help="baud rate (default: the profile's, else 9600 / 2400)")
    parser.add_argument("--parity", choices=("N", "E", "O"), help="parity (default: the profile's)")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), help="stop bits (default: the profile's)")
    parser.add_argument("--timeout-ms", type=int, default=1000, help="response timeout (default 1000 ms)")
    parser.add_argument("--profiles-dir", action="append", default=[], help="extra folder of profiles")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_link_arguments(parser)
    parser.add_argument("--address", required=True, help="unit (modbus) or meter address as printed")
    parser.add_argument("--point", action="append", default=[], metavar="NAME",
                        help="point to read (repeat; default all points of the profile)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the raw frames in hex")
    parser.add_argument("--retries", type=int, default=1,
                        help="tries again after no reply (default 1); then the device is reported dead")
    parser.add_argument("--si", action="store_true", help="show SenML units (J, W, m3/s) as on the wire")


def load_cli_profile(args: Any) -> Profile:
    model = args.profile or registry.family(args.protocol).default_profile
    if model is None:
        raise SystemExit("fieldlink: --profile is needed for %s (which register map to read)" % args.protocol)
    try:
        profile = find_profile(model, args.profiles_dir)
    except ProfileError as exc:
        raise SystemExit("fieldlink: %s" % exc) from None
    if registry.folder(profile.protocol) != registry.folder(args.protocol):
        raise SystemExit("fieldlink: profile %s speaks %s, not %s" % (model, profile.protocol, args.protocol))
    return profile


def cli_bus(args: Any, profile: Profile) -> BusConfig:
    baud, parity = registry.family(args.protocol).link
    link = profile.link or {}
    return BusConfig(name="cli", port=args.port, baud=args.baud or link.get("baud", baud),
                     parity=args.parity or link.get("parity", parity),
                     stopbits=args.stopbits or link.get("stopbits", 1), timeout_ms=args.timeout_ms)


def cli_driver(args: Any, profile: Profile, bus: BusConfig, address: str) -> Driver:
    device = DeviceConfig(id="device", bus=bus.name, profile=profile.model, address=address)
    return make_driver(device, profile, bus)


def read_with_retries(driver: Driver, link: Any, request: Any, retries: int) -> Any:
    """`driver.read`, tried again up to `retries` times after no reply (a timeout); other errors at once."""
    for attempt in range(max(0, retries) + 1):
        try:
            return driver.read(link, request)
        except LinkTimeout:
            if attempt >= retries:
                raise
    raise AssertionError("unreachable")


def _hex(data: bytes) -> str:
    return data.hex(" ").upper()


def run(args: Any) -> int:
    profile = load_cli_profile(args)
    bus = cli_bus(args, profile)
    tcp = args.port.lower().startswith("tcp://")
    if registry.family(args.protocol).is_wildcard(args.address):
        address = args.address.upper()  # wildcard: the one meter on the bus
    else:
        try:
            address = normalise_address(profile.protocol, args.address, tcp)
        except ValueError as exc:
            print("fieldlink read: --address %s: expected %s" % (args.address, exc), file=sys.stderr)
            return 2
    names = args.point or profile.point_names()
    for name in names:
        if not profile.has_point(name):
            print("fieldlink read: profile %s has no point %r; expected one of: %s"
                  % (profile.model, name, ", ".join(profile.point_names())), file=sys.stderr)
            return 2
    driver = cli_driver(args, profile, bus, address)
    link = open_link(bus)
    if args.verbose:
        link.trace = lambda direction, data: print("  %s %s" % (direction, _hex(data)))
    try:
        link.open()
    except LinkClosed as exc:
        print("fieldlink read: %s" % exc, file=sys.stderr)
        return 1
    failures = 0
    where = Where.of(bus, address, profile)
    print("%s %s at %s on %s (%s)" % (profile.protocol, profile.model, address, args.port, where.line))
    width = max(len(n) for n in names)
    dead: BaseException | None = None
    skipped = 0
    try:
        wanted = set(names)
        for request in driver.requests:
            mine = [p for p, _ in request.points if p.name in wanted]
            if not mine:
                continue
            if dead is not None:  # a silent device gets no more of the line: one timeout, not one per point
                failures += len(mine)
                skipped += len(mine)
                continue
            try:
                result = read_with_retries(driver, link, request, args.retries)
            except (LinkError, ProtocolError) as exc:
                failures += len(mine)
                for p in mine:
                    print("%-*s  ERROR %s: %s" % (width, p.name, error_kind(exc), exc))
                print("  likely cause: %s" % explain(exc, where), file=sys.stderr)
                if isinstance(exc, (LinkClosed, LinkTimeout)):
                    dead = exc
                continue
            for name, value in result.values:
                if name in wanted:
                    point = profile.point(name)
                    number, unit = show(value, point.unit, point.resolution, args.si, name)
                    print("%-*s  %s%s" % (width, name, number, " " + unit if unit else ""))
            for name, quality in result.bad:
                if name in wanted:
                    failures += 1
                    print("%-*s  BAD %s" % (width, name, quality))
            if link.echoed:
                print("  note: our own request came back before the reply (the adapter hears itself: DE/RE)",
                      file=sys.stderr)
        if skipped:
            print("%d more point%s not read: the device did not answer (above)"
                  % (skipped, "s"[:skipped != 1]))
    finally:
        link.close()
    return 1 if failures else 0
