"""`fieldlink modbus`: raw register access for a device no profile knows, like mbpoll.

    fieldlink modbus PORT --unit N [--baud B --parity P --stopbits S]
                     read holding|input|coils|discrete START COUNT
                     [--type u16|s16|u32|s32|f32 --order ABCD|CDAB|BADC|DCBA]
    fieldlink modbus PORT --unit N write holding START VALUE... [--type ... --order ...]
    fieldlink modbus PORT --unit N write coils START 1 0 1

PORT is a device path, `rfc2217://`, `socket://` or `tcp://HOST:PORT` (Modbus TCP). START is the
register number on the wire (0-based, as in the request frame; mbpoll's -r counts from 1), decimal or
0x hex. A 32-bit
type takes two registers per value: COUNT counts values. Exit 0 done, 1 no reply / an exception, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.config_model import BusConfig
from agent.diagnosis import Where, explain
from agent.drivers import run_step
from agent.link import LinkClosed, LinkError, open_link
from protocols import modbus, points
from protocols.errors import EncodingError, ProtocolError
from protocols.modbus import device as steps

TABLES = {
    "holding": modbus.READ_HOLDING_REGISTERS,
    "input": modbus.READ_INPUT_REGISTERS,
    "coils": modbus.READ_COILS,
    "discrete": modbus.READ_DISCRETE_INPUTS,
}
TYPES = ("u16", "s16", "u32", "s32", "f32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "port", metavar="PORT", help="device path or URL (rfc2217://, socket://, tcp://host:502)"
    )
    parser.add_argument("--unit", type=int, required=True, help="Modbus unit (slave id) 1-247")
    parser.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N", help="parity (default N)")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1, help="stop bits (default 1)")
    parser.add_argument("--timeout-ms", type=int, default=1000, help="response timeout (default 1000 ms)")
    parser.add_argument("--type", choices=TYPES, default="u16", help="register type (default u16)")
    parser.add_argument(
        "--order",
        choices=points.ORDERS,
        default="ABCD",
        help="byte/word order of 32-bit values (default ABCD: big-endian)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print the raw frames in hex")
    parser.add_argument("action", choices=("read", "write"))
    parser.add_argument("table", choices=tuple(TABLES))
    parser.add_argument(
        "start", type=lambda text: int(text, 0), metavar="START", help="first register or coil (0-based)"
    )
    parser.add_argument(
        "values", nargs="+", metavar="COUNT|VALUE", help="read: how many values; write: the values"
    )


def _requests(args: Any) -> tuple[bytes, Any]:
    """(request PDU, how to show the reply) from the arguments; ValueError/EncodingError when wrong."""
    width = points.register_count(args.type)
    if args.action == "read":
        if len(args.values) != 1:
            raise ValueError("read takes one COUNT")
        count = int(args.values[0])
        if count < 1:
            raise ValueError("COUNT must be at least 1")
        if args.table in ("coils", "discrete"):
            return modbus.read_request(TABLES[args.table], args.start, count), None
        return modbus.read_request(TABLES[args.table], args.start, count * width), width
    if args.table == "coils":
        bits = [_bit(v) for v in args.values]
        if len(bits) == 1:
            return modbus.write_coil_request(args.start, bits[0]), None
        return modbus.write_coils_request(args.start, bits), None
    if args.table != "holding":
        raise ValueError("only holding registers and coils can be written")
    registers: list[int] = []
    for text in args.values:
        value: int | float = float(text) if args.type == "f32" else int(text, 0)
        registers += points.encode(value, args.type, args.order)
    if len(registers) == 1:
        return modbus.write_register_request(args.start, registers[0]), None
    return modbus.write_registers_request(args.start, registers), None


def _bit(text: str) -> bool:
    if text.lower() in ("1", "on", "true"):
        return True
    if text.lower() in ("0", "off", "false"):
        return False
    raise ValueError("a coil is 1 or 0, not %r" % text)


def run(args: Any) -> int:
    tcp = args.port.lower().startswith("tcp://")
    try:
        if not 0 <= args.unit <= modbus.MAX_UNIT:
            raise ValueError("--unit must be 0-247")
        pdu, width = _requests(args)
    except (ValueError, EncodingError) as exc:
        print("fieldlink modbus: %s" % exc, file=sys.stderr)
        return 2
    bus = BusConfig(
        name="modbus",
        port=args.port,
        baud=args.baud,
        parity=args.parity,
        stopbits=args.stopbits,
        timeout_ms=args.timeout_ms,
    )
    link = open_link(bus)
    if args.verbose:
        link.trace = lambda direction, data: print("  %s %s" % (direction, data.hex(" ").upper()))
    where = Where.of(bus, str(args.unit))
    try:
        link.open()
        reply = run_step(
            link,
            steps.reader,
            1 if tcp else None,
            steps.exchange(args.unit, 1 if tcp else None, pdu, 1),
        )
        values = modbus.parse_response(pdu, reply)
    except LinkClosed as exc:
        print("fieldlink modbus: %s" % exc, file=sys.stderr)
        return 1
    except (LinkError, ProtocolError) as exc:
        print("fieldlink modbus: %s" % exc, file=sys.stderr)
        print("  likely cause: %s" % explain(exc, where), file=sys.stderr)
        return 1
    finally:
        link.close()
    if args.action == "write":
        print("written: %s %d..%d" % (args.table, args.start, args.start + max(1, _written(pdu)) - 1))
        return 0
    assert isinstance(values, list)
    if width is None:
        for i, bit in enumerate(values):
            print("[%d] %d" % (args.start + i, 1 if bit else 0))
        return 0
    for i in range(0, len(values), width):
        value = points.decode(values[i : i + width], args.type, args.order)
        raw = " ".join("%04X" % r for r in values[i : i + width])
        shown = "%.7g" % value if isinstance(value, float) else str(value)
        print("[%d] %s  (0x%s)" % (args.start + i, shown, raw.replace(" ", " 0x")))
    return 0


def _written(pdu: bytes) -> int:
    if pdu[0] in (modbus.WRITE_SINGLE_COIL, modbus.WRITE_SINGLE_REGISTER):
        return 1
    return int.from_bytes(pdu[3:5], "big")
