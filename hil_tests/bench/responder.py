"""A Modbus RTU device on a pseudo-terminal that answers every FC03 request at once, for the poll benchmark.

    python -m hil_tests.bench.responder      # prints the pty path, serves until stdin closes or SIGTERM;
                                             # a line "move" on stdin: a new pty, its path printed

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


class Device:
    """The simulated device: the pty it answers on and the ptys it set aside (kept open, see `move`)."""

    def __init__(self) -> None:
        self.aside: list[int] = []
        self.master, self.slave = self.quiet_pty()
        self.dropped = 0

    def quiet_pty(self, listen: float = 1.5, tries: int = 8) -> tuple[int, int]:
        """A pty nobody else writes to. One on which bytes arrive before any client of ours opened it
        was opened by a stale program (one that kept the path of a closed pty and reopens it): it is
        kept open, so that program goes on talking to nobody, and another is taken."""
        for _ in range(tries):
            master, slave = os.openpty()
            tty.setraw(slave)
            ready, _, _ = select.select([master], [], [], listen)
            if not ready:
                return master, slave
            self.aside += [master, slave]
        raise SystemExit("responder: every pty taken was written to by another program")

    def move(self) -> None:
        """Set the current pty aside (another program opened it) and answer on a new one."""
        self.aside += [self.master, self.slave]
        self.master, self.slave = self.quiet_pty()

    def path(self) -> str:
        return os.ttyname(self.slave)

    def serve(self) -> None:
        """Answer requests until stdin closes; a line "move" on stdin moves to a new pty (path on stdout)."""
        buf = b""
        while True:
            ready, _, _ = select.select([self.master, sys.stdin], [], [])
            if sys.stdin in ready:
                line = sys.stdin.readline()
                if not line:
                    return
                self.move()
                buf = b""
                print(self.path(), flush=True)
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                continue  # EIO while no client has the pty open
            while len(buf) >= 8:
                frame, buf = buf[:8], buf[8:]
                try:
                    unit, pdu = modbus.rtu_parse(frame)
                    request = modbus.parse_request(pdu)
                except ProtocolError:
                    self.dropped += 1
                    buf = b""
                    break
                if unit != UNIT or request.function != 3 or request.address != ADDRESS:
                    self.dropped += 1
                    continue
                values = [(i + 1) & 0xFFFF for i in range(request.count)]
                os.write(self.master, modbus.rtu_frame(UNIT, modbus.read_response(3, values)))

    def close(self) -> None:
        for fd in [self.slave, self.master, *self.aside]:
            os.close(fd)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    device = Device()
    print(device.path(), flush=True)
    try:
        device.serve()
    finally:
        device.close()
    if device.dropped:
        print("responder: %d requests dropped" % device.dropped, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
