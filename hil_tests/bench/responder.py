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


def quiet_pty(listen: float = 1.5, tries: int = 8) -> tuple[int, int, list[int]]:
    """A pty nobody else writes to: (master, slave, fds of ptys set aside).

    A pty on which bytes arrive before any client of ours opened it has been opened by a stale program
    (one that kept the path of a closed pty and reopens it): it is kept open, so that program keeps
    talking to nobody, and another is taken."""
    aside: list[int] = []
    for _ in range(tries):
        master, slave = os.openpty()
        tty.setraw(slave)
        ready, _, _ = select.select([master], [], [], listen)
        if not ready:
            return master, slave, aside
        aside += [master, slave]
    raise SystemExit("responder: every pty taken was written to by another program")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    master, slave, aside = quiet_pty()
    print(os.ttyname(slave), flush=True)
    try:
        dropped = serve(master)
    finally:
        for fd in [slave, master, *aside]:
            os.close(fd)
    if dropped:
        print("responder: %d requests dropped" % dropped, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
