"""`fieldlink scan`: find the device addresses on a bus.

DL/T 645 and CJ/T 188 first ask the wildcard read-address (answered when one meter is on the bus);
`--sweep FROM-TO` (and Modbus always, units 1-247 by default) probes each address in turn with a
short timeout. A progress bar runs on stderr; the found addresses go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands.read import add_link_arguments, cli_bus, load_cli_profile
from agent.drivers import error_kind
from agent.link import Link, LinkClosed, LinkError, LinkTimeout, open_link
from protocols import cjt188, dlt645, modbus
from protocols.errors import AbnormalReply, CrcError, ExceptionResponse, FrameError, ProtocolError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_link_arguments(parser)
    parser.set_defaults(timeout_ms=None)
    parser.add_argument("--sweep", metavar="FROM-TO",
                        help="probe each address in the range (default for modbus: 1-247)")
    parser.add_argument("--register", type=int, default=0,
                        help="modbus: holding register to probe (default 0; any reply counts)")


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, out: Any = sys.stderr, width: int = 30) -> None:
        self.total = max(1, total)
        self.out = out
        self.width = width
        self.done = 0

    def update(self, done: int, found: int, current: str) -> None:
        self.done = done
        filled = self.width * done // self.total
        self.out.write("\r[%s%s] %d/%d found %d  %s   " % ("#" * filled, "." * (self.width - filled), done,
                                                           self.total, found, current))
        self.out.flush()

    def finish(self) -> None:
        self.out.write("\n")
        self.out.flush()


def _range(text: str | None, default: tuple[int, int]) -> range:
    if not text:
        return range(default[0], default[1] + 1)
    low, _, high = text.partition("-")
    start, end = int(low), int(high or low)
    if end < start:
        raise ValueError("empty range %s" % text)
    if end - start > 100000:
        raise ValueError("range %s is too long (at most 100000 addresses)" % text)
    return range(start, end + 1)


def _probe_modbus(link: Link, unit: int, register: int, tcp: bool) -> str | None:
    pdu = modbus.read_request(3, register, 1)
    try:
        if tcp:
            from agent.link.tcp_link import MbapFrameReader

            frame = link.transact(modbus.tcp_frame(unit, unit, pdu), MbapFrameReader(),
                                  accept=lambda f: f[0] == unit)
            reply = frame[2]
        else:
            frame = link.transact(modbus.rtu_frame(unit, pdu), modbus.RtuFrameReader("response"),
                                  accept=lambda f: f[0] == unit)
            reply = frame[1]
        modbus.parse_response(pdu, reply)
        return "answers"
    except ExceptionResponse as exc:
        return "answers (exception %02X: %s)" % (exc.code, exc.meaning)
    except (CrcError, FrameError) as exc:
        return "garbled reply (%s)" % error_kind(exc)
    except LinkTimeout:
        return None


def _probe_meter(link: Link, protocol: str, address: str, profile: Any) -> str | None:
    try:
        if protocol == "cjt188":
            meter_type = int(profile.options.get("meter_type", 0x10))
            request = cjt188.read_request(meter_type, address, 0x901F, 0, profile.options.get("di_order",
                                                                                           "lo_first"))
            link.transact(request, cjt188.Cjt188FrameReader(), accept=lambda f: f.is_reply)
        else:
            version = 1997 if protocol == "dlt645_1997" else 2007
            di = profile.points[0].di
            link.transact(dlt645.read_request(address, di, version), dlt645.Dlt645FrameReader(),
                          accept=lambda f: f.is_reply)
        return "answers"
    except AbnormalReply as exc:
        return "answers (error reply: %s)" % exc.meaning
    except (CrcError, FrameError) as exc:
        return "garbled reply (%s)" % error_kind(exc)
    except LinkTimeout:
        return None


def _wildcard(link: Link, protocol: str) -> tuple[str | None, str]:
    """(address, note) from the wildcard read-address; address None when nobody or several answered."""
    try:
        if protocol == "cjt188":
            frame = link.transact(cjt188.read_address_request(), cjt188.Cjt188FrameReader(),
                                  accept=lambda f: f.is_reply)
            return frame.address, "meter type %02X" % frame.meter_type
        frame = link.transact(dlt645.read_address_request(), dlt645.Dlt645FrameReader(),
                              accept=lambda f: f.is_reply)
        return dlt645.parse_read_address_reply(frame), ""
    except LinkTimeout:
        return None, "no meter answered the wildcard read-address"
    except ProtocolError as exc:
        return None, "garbled answers to the wildcard read-address (several meters?): %s" % exc


def run(args: Any) -> int:
    profile = load_cli_profile(args) if args.protocol != "modbus" or args.profile else None
    if args.timeout_ms is None:
        args.timeout_ms = 100 if args.protocol == "modbus" else 600
    bus = cli_bus(args, profile) if profile is not None else None
    if bus is None:
        from agent.config_model import BusConfig

        bus = BusConfig(name="scan", port=args.port, baud=args.baud or 9600, parity=args.parity or "N",
                        stopbits=args.stopbits or 1, timeout_ms=args.timeout_ms)
    tcp = args.port.lower().startswith("tcp://")
    link = open_link(bus)
    try:
        link.open()
    except LinkClosed as exc:
        print("fieldlink scan: %s" % exc, file=sys.stderr)
        return 1
    found: list[tuple[str, str]] = []
    try:
        if args.protocol != "modbus":
            address, note = _wildcard(link, args.protocol)
            if address is not None:
                found.append((address, "answered the wildcard read-address" + (", " + note if note else "")))
            elif not args.sweep:
                print("fieldlink scan: %s; use --sweep FROM-TO to probe addresses one by one" % note,
                      file=sys.stderr)
        if args.protocol == "modbus" or args.sweep:
            try:
                default = (1, 255 if tcp else 247) if args.protocol == "modbus" else (1, 1)
                addresses = _range(args.sweep, default)
            except ValueError as exc:
                print("fieldlink scan: --sweep: %s; expected FROM-TO such as 1-30" % exc, file=sys.stderr)
                return 2
            bar = Progress(len(addresses))
            seen = {a for a, _ in found}
            for i, n in enumerate(addresses):
                if args.protocol == "modbus":
                    label = str(n)
                    note_ = _probe_modbus(link, n, args.register, tcp)
                else:
                    width = 14 if args.protocol == "cjt188" else 12
                    label = str(n).zfill(width)
                    note_ = None if label in seen else _probe_meter(link, args.protocol, label, profile)
                if note_ is not None:
                    found.append((label, note_))
                bar.update(i + 1, len(found), label)
            bar.finish()
    except (LinkError, ProtocolError) as exc:
        print("fieldlink scan: %s" % exc, file=sys.stderr)
        return 1
    finally:
        link.close()
    for address, note in found:
        print("%s  %s" % (address, note))
    if not found:
        print("fieldlink scan: no device found", file=sys.stderr)
        return 1
    return 0
