"""`fieldlink scan`: find the device addresses on a bus.

A protocol whose device steps have a wildcard read-address (DL/T 645, CJ/T 188) asks it first
(answered when one meter is on the bus); `--sweep FROM-TO` (and the others always: Modbus units
1-247 by default) probes each address in turn with a short timeout, through the steps' `probe`.
A progress bar runs on stderr when it is a terminal (nothing otherwise); the found addresses go to
stdout. `--auto` repeats the scan at every common line setting on the open port (through RFC 2217 the
device server's UART follows) and prints the settings that answer. Ctrl-C prints what was found so far
and exits 130.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands.read import add_link_arguments, cli_bus, load_cli_profile
from agent.diagnosis import line_text
from agent.drivers import error_kind, run_step
from agent.link import Link, LinkClosed, LinkError, LinkTimeout, open_link
from agent.link.serial_link import is_pty
from protocols import registry
from protocols.errors import AbnormalReply, CrcError, ExceptionResponse, FrameError, ProtocolError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_link_arguments(parser)
    parser.set_defaults(timeout_ms=None)
    parser.add_argument(
        "--sweep", metavar="FROM-TO", help="probe each address in the range (default for modbus: 1-247)"
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="try the common line settings (1200-115200 baud; 8N1, 8E1, 8O1, 8N2) and print "
        "those that answer with the addresses found (--baud/--parity narrow the search)",
    )
    parser.add_argument(
        "--register",
        type=int,
        default=0,
        help="modbus: holding register to probe (default 0; any reply counts)",
    )


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
        self.out.write(
            "\r[%s%s] %d/%d found %d  %s   "
            % ("#" * filled, "." * (self.width - filled), done, self.total, found, current)
        )
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


AUTO_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
AUTO_FRAMINGS = (("N", 1), ("E", 1), ("O", 1), ("N", 2))  # 8N1, 8E1, 8O1, 8N2
AUTO_SWEEP = "1-10"  # Modbus units probed at each setting under --auto, unless --sweep says otherwise


def _scan(
    link: Link,
    steps: Any,
    opts: Any,
    family: Any,
    profile: Any,
    args: Any,
    tcp: bool,
    found: list[tuple[str, str]],
    progress: bool,
    quiet: bool = False,
) -> int | None:
    """The wildcard read-address and/or the sweep on an open link, appending to `found` as it goes;
    an exit code when the input was wrong, else None."""
    if hasattr(steps, "wildcard"):
        address, note = _wildcard(link, steps, opts)
        if address is not None:
            found.append((address, "answered the wildcard read-address" + (", " + note if note else "")))
        elif not args.sweep and not quiet:
            print(
                "fieldlink scan: %s; use --sweep FROM-TO to probe addresses one by one" % note,
                file=sys.stderr,
            )
        if not args.sweep:
            return None
    try:
        default = (family.sweep[0], 255) if tcp else family.sweep
        addresses = _range(args.sweep, default)
    except ValueError as exc:
        print("fieldlink scan: --sweep: %s; expected FROM-TO such as 1-30" % exc, file=sys.stderr)
        return 2
    bar = Progress(len(addresses)) if progress else None
    seen = {a for a, _ in found}
    try:
        for i, n in enumerate(addresses):
            label = family.address_label(n)
            hint = family.probe_hint(profile, args.register)
            note_ = None if label in seen else _probe(link, steps, opts, label, hint)
            if note_ is not None:
                found.append((label, note_))
            if bar is not None:
                bar.update(i + 1, len(found), label)
    finally:
        if bar is not None:
            bar.finish()
    return None


def _settings(args: Any) -> list[tuple[int, str, int]]:
    bauds = [args.baud] if args.baud else list(AUTO_BAUDS)
    framings = [(args.parity, args.stopbits or 1)] if args.parity else list(AUTO_FRAMINGS)
    return [(b, p, s) for b in bauds for p, s in framings]


def _auto(
    link: Any,
    steps: Any,
    opts: Any,
    family: Any,
    profile: Any,
    args: Any,
    answered: list[tuple[str, list[tuple[str, str]]]],
) -> int | None:
    """--auto: the scan at every common setting, on the open port (RFC 2217 changes the server's UART)."""
    settings = _settings(args)
    progress = sys.stderr.isatty()
    for i, (baud, parity, stopbits) in enumerate(settings):
        text = line_text(baud, parity, stopbits)
        if progress:
            sys.stderr.write(
                "\r[%d/%d] trying %-9s answered at %d settings   "
                % (i + 1, len(settings), text, len(answered))
            )
            sys.stderr.flush()
        link.reconfigure(baud, parity, stopbits)
        found: list[tuple[str, str]] = []
        rc = _scan(link, steps, opts, family, profile, args, False, found, False, quiet=True)
        if rc is not None:
            return rc
        real = [(a, n) for a, n in found if not n.startswith("garbled")]
        if real:
            answered.append((text, real))
            if progress:
                sys.stderr.write("\n")
            print("%s: %s" % (text, ", ".join("%s (%s)" % (a, n) for a, n in real)), flush=True)
    if progress:
        sys.stderr.write("\n")
    return None


def run(args: Any) -> int:
    family = registry.family(args.protocol)
    steps = registry.device(args.protocol)
    profile = load_cli_profile(args) if family.default_profile or args.profile else None
    if args.timeout_ms is None:
        args.timeout_ms = family.scan_timeout_ms
    bus = cli_bus(args, profile) if profile is not None else None
    if bus is None:
        from agent.config_model import BusConfig

        bus = BusConfig(
            name="scan",
            port=args.port,
            baud=args.baud or 9600,
            parity=args.parity or "N",
            stopbits=args.stopbits or 1,
            timeout_ms=args.timeout_ms,
        )
    tcp = args.port.lower().startswith("tcp://")
    if args.auto and tcp:
        print(
            "fieldlink scan: --auto tries serial line settings; %s is Modbus TCP" % args.port, file=sys.stderr
        )
        return 2
    if args.auto and not args.sweep and not hasattr(steps, "wildcard"):
        args.sweep = AUTO_SWEEP
    link = open_link(bus)
    try:
        link.open()
    except LinkClosed as exc:
        print("fieldlink scan: %s" % exc, file=sys.stderr)
        return 1
    found: list[tuple[str, str]] = []
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    entry = {"protocol": args.protocol}
    entry.update(family.compiled_entry(profile.options if profile is not None else {}, tcp))
    opts = steps.options(entry)
    try:
        if args.auto:
            if "://" not in args.port and is_pty(args.port):
                print(
                    "fieldlink scan: note: %s is a pseudo-terminal, which carries bytes whatever the "
                    "settings: every setting answers here (the simulator's rfc2217:// port shows mismatches)"
                    % args.port,
                    file=sys.stderr,
                )
            rc = _auto(link, steps, opts, family, profile, args, answered)
        else:
            rc = _scan(link, steps, opts, family, profile, args, tcp, found, sys.stderr.isatty())
        if rc is not None:
            return rc
    except KeyboardInterrupt:
        link.close()
        _report(found, answered, args.auto)
        print("fieldlink scan: interrupted; the above is what was found so far", file=sys.stderr)
        return 130
    except (LinkError, ProtocolError) as exc:
        print("fieldlink scan: %s" % exc, file=sys.stderr)
        return 1
    finally:
        link.close()
    where = args.port if tcp else "%s (%s)" % (args.port, line_text(bus.baud, bus.parity, bus.stopbits))
    return _report(found, answered, args.auto, where)


def _report(found: list[tuple[str, str]], answered: list, auto: bool, where: str = "") -> int:
    """Print the result; 0 something answered, 1 nothing did."""
    if auto:
        if not answered:
            print(
                "fieldlink scan: no setting got an answer (1200-115200 baud, 8N1 8E1 8O1 8N2): check the "
                "wiring (A/B), power, and the protocol",
                file=sys.stderr,
            )
            return 1
        print("settings that answer: %s" % ", ".join(text for text, _ in answered))
        return 0
    for address, note in found:
        print("%s  %s" % (address, note))
    if not found:
        print(
            "fieldlink scan: no device found on %s: check the wiring (A/B, ground) and power, and the baud "
            "rate and parity (`--auto` tries the common settings)" % where,
            file=sys.stderr,
        )
        return 1
    return 0
