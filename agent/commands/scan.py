"""`fieldlink scan`: find the device addresses on a bus.

A protocol whose device steps have a wildcard read-address (DL/T 645, CJ/T 188) asks it first
(answered when one meter is on the bus); `--sweep FROM-TO` (and the others always: Modbus units
1-247 by default) probes each address in turn with a short timeout, through the steps' `probe`.
A progress bar runs on stderr; the found addresses go to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands.read import add_link_arguments, cli_bus, load_cli_profile
from agent.drivers import error_kind, run_step
from agent.link import Link, LinkClosed, LinkError, LinkTimeout, open_link
from protocols import registry
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


def _probe(link: Link, steps: Any, opts: Any, address: str, hint: Any) -> str | None:
    """What the device at `address` answered to the protocol's probe; None when it was silent."""
    try:
        return str(run_step(link, steps.reader, opts, steps.probe(address, opts, hint, 1)))
    except ExceptionResponse as exc:
        return "answers (exception %02X: %s)" % (exc.code, exc.meaning)
    except AbnormalReply as exc:
        return "answers (error reply: %s)" % exc.meaning
    except (CrcError, FrameError) as exc:
        return "garbled reply (%s)" % error_kind(exc)
    except LinkTimeout:
        return None


def _wildcard(link: Link, steps: Any, opts: Any) -> tuple[str | None, str]:
    """(address, note) from the wildcard read-address; address None when nobody or several answered."""
    try:
        address, note = run_step(link, steps.reader, opts, steps.wildcard(opts, 1))
        return str(address), str(note)
    except LinkTimeout:
        return None, "no meter answered the wildcard read-address"
    except ProtocolError as exc:
        return None, "garbled answers to the wildcard read-address (several meters?): %s" % exc


def run(args: Any) -> int:
    family = registry.family(args.protocol)
    steps = registry.device(args.protocol)
    profile = load_cli_profile(args) if family.default_profile or args.profile else None
    if args.timeout_ms is None:
        args.timeout_ms = family.scan_timeout_ms
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
        entry = {"protocol": args.protocol}
        entry.update(family.compiled_entry(profile.options if profile is not None else {}, tcp))
        opts = steps.options(entry)
        wildcard = hasattr(steps, "wildcard")
        if wildcard:
            address, note = _wildcard(link, steps, opts)
            if address is not None:
                found.append((address, "answered the wildcard read-address" + (", " + note if note else "")))
            elif not args.sweep:
                print("fieldlink scan: %s; use --sweep FROM-TO to probe addresses one by one" % note,
                      file=sys.stderr)
        if not wildcard or args.sweep:
            try:
                default = (family.sweep[0], 255) if tcp else family.sweep
                addresses = _range(args.sweep, default)
            except ValueError as exc:
                print("fieldlink scan: --sweep: %s; expected FROM-TO such as 1-30" % exc, file=sys.stderr)
                return 2
            bar = Progress(len(addresses))
            seen = {a for a, _ in found}
            for i, n in enumerate(addresses):
                label = family.address_label(n)
                hint = family.probe_hint(profile, args.register)
                note_ = None if label in seen else _probe(link, steps, opts, label, hint)
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
