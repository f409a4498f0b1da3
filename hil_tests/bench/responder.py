"""A Modbus RTU device on a pseudo-terminal that answers every FC03 request at once, for the poll benchmark.

    python -m hil_tests.bench.responder      # prints the pty path, serves until stdin closes or SIGTERM

It answers unit 201's "read holding registers" at address 1000 and up with the registers' offsets + 1
(register 1000 holds 1), so every client sees the same bytes with the same (zero) device delay; anything
else is dropped and counted on stderr at exit. It runs in its own process so the clients' CPU time is
theirs alone. A rare unit and address: on a shared machine another program that kept the path of a
closed pty may open the same /dev/pts/N when it is reused, and poll it with its own requests.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import tty

from protocols import modbus
from protocols.errors import ProtocolError

UNIT = 201
ADDRESS = 1000


def serve(master: int) -> int:
    """Answer requests on `master` until stdin closes; returns how many requests were dropped."""
    buf = b""
    dropped = 0
    while True:
        ready, _, _ = select.select([master, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 64):
            return dropped
        if master not in ready:
            continue
        try:
            buf += os.read(master, 4096)
        except OSError:
            continue  # EIO while no client has the pty open
        while len(buf) >= 8:
            frame, buf = buf[:8], buf[8:]
            try:
                unit, pdu = modbus.rtu_parse(frame)
                request = modbus.parse_request(pdu)
            except ProtocolError:
                dropped += 1
                buf = b""
                break
            if unit != UNIT or request.function != 3 or request.address != ADDRESS:
                dropped += 1
                continue
            values = [(i + 1) & 0xFFFF for i in range(request.count)]
            os.write(master, modbus.rtu_frame(UNIT, modbus.read_response(3, values)))


def main() -> int:
    master, slave = os.openpty()
    tty.setraw(slave)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(os.ttyname(slave), flush=True)
    try:
        dropped = serve(master)
    finally:
        os.close(slave)
        os.close(master)
    if dropped:
        print("responder: %d requests dropped" % dropped, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
