"""Line emulator: the wire time of RS-485 bytes, inter-frame silences and reply delays.

A character is start + data bits + parity + stop bits (2400 8E1: 11 bits, 4.58 ms). A reply starts
no earlier than the end of the request on the wire plus the turnaround: Modbus t3.5 (1.75 ms above
19200 baud) plus the device's own turnaround, DL/T 645 and CJ/T 188 the meter's reply delay
(20..500 ms per DL/T 645 §5.3.3). Replies go out at the line rate. In instant mode all of it is 0.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

from protocols import registry
from simulator.uart import Framing

#: (write(bytes) -> bytes written, data, seconds after the start each byte is complete, or None)
Delivery = tuple[Callable[[bytes], int], bytes, "list[float] | None"]


PARITIES = {"N": "none", "E": "even", "O": "odd"}


class LineError(ValueError):
    """A line specification that cannot be understood, e.g. "2400 8X1"."""


def parse_line(spec: str) -> tuple[int, int, str, int]:
    """'2400 8E1' -> (2400, 8, 'E', 1)."""
    parts = str(spec).split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 3:
        raise LineError("line %r: expected baud and framing, such as '2400 8E1' or '9600 8N1'" % (spec,))
    baud = int(parts[0])
    bits, parity, stop = parts[1][0], parts[1][1].upper(), parts[1][2]
    if baud < 50 or baud > 4000000:
        raise LineError("line %r: baud %d is out of range" % (spec, baud))
    if bits not in "5678" or parity not in PARITIES or stop not in "12":
        raise LineError("line %r: framing must be <data bits 5-8><N|E|O><stop bits 1|2>" % (spec,))
    return baud, int(bits), parity, int(stop)


class Line:
    """Timing of one bus."""

    def __init__(self, baud: int = 9600, bytesize: int = 8, parity: str = "N", stopbits: int = 1,
                 instant: bool = False, reply_delay: float | None = None, turnaround: float = 0.0) -> None:
        self.baud = baud
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.instant = instant
        self.bits_per_char = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        self.char_time = self.bits_per_char / float(baud)
        self.t35 = 3.5 * self.char_time if baud <= 19200 else 0.00175
        self.reply_delay = 0.05 if reply_delay is None else float(reply_delay)
        self.turnaround = float(turnaround)

    @classmethod
    def from_spec(cls, spec: str, **kw: object) -> Line:
        baud, bytesize, parity, stopbits = parse_line(spec)
        return cls(baud, bytesize, parity, stopbits, **kw)  # type: ignore[arg-type]

    @property
    def framing(self) -> str:
        return "%d%s%d" % (self.bytesize, self.parity, self.stopbits)

    @property
    def settings(self) -> Framing:
        """The devices' UART settings on this line (for the bit-level model in simulator/uart.py)."""
        return Framing(self.baud, self.bytesize, self.parity, float(self.stopbits))

    def describe(self) -> str:
        return "%d %s%s" % (self.baud, self.framing, " (instant)" if self.instant else "")

    def wire_time(self, nbytes: int) -> float:
        return 0.0 if self.instant else nbytes * self.char_time

    def reply_gap(self, protocol: str) -> float:
        """Silence between the end of a request and the first byte of the reply."""
        if self.instant:
            return 0.0
        if registry.family(protocol).silence_framed:  # Modbus RTU: t3.5 delimits the request
            return self.t35 + self.turnaround
        return min(0.5, max(0.02, self.reply_delay))

    def silence_gap(self) -> float:
        """The silence that ends a frame of a silence-framed protocol (Modbus RTU t3.5, at least 50 ms
        here: a pty delivers bytes in bursts)."""
        return max(self.t35, 0.05)

    def frame_gap(self, protocol: str) -> float:
        """A silence this long ends a partial request (the reader drops it)."""
        if registry.family(protocol).silence_framed:
            return self.silence_gap()
        return 0.5

    def deliver(self, targets: list[Delivery], start: float, stop: threading.Event) -> None:
        """Write each target's bytes as they arrive: byte i of a target at `start` + its offsets[i]
        (offsets None: i + 1 characters of this line), all at once in instant mode (after `start`)."""
        pending = []
        for write, data, offsets in targets:
            if not data:
                continue
            if self.instant:
                due = [0.0] * len(data)
            elif offsets is None:
                due = [(i + 1) * self.char_time for i in range(len(data))]
            else:
                due = list(offsets)
            pending.append(_Pending(write, data, due))
        while pending and not stop.is_set():
            now = time.monotonic()
            if now < start:
                time.sleep(min(start - now, 0.05))
                continue
            for item in pending:
                item.write_due(now - start)
            pending = [item for item in pending if item.sent < len(item.data)]
            if pending:
                next_at = min(item.due[item.sent] for item in pending)
                time.sleep(max(0.001, min(0.02, start + next_at - time.monotonic())))

    def send(self, fd: int, data: bytes, start: float, stop: threading.Event) -> int:
        """Write `data` to a non-blocking fd so that byte i leaves at start + i * char time."""
        sent = [0]

        def write(chunk: bytes) -> int:
            n = write_all(fd, chunk, stop)
            sent[0] += n
            return n

        self.deliver([(write, data, None)], start, stop)
        return sent[0]


class _Pending:
    """One listener's bytes of a transmission, each due at its offset."""

    def __init__(self, write: Callable[[bytes], int], data: bytes, due: list[float]) -> None:
        self.write = write
        self.data = data
        self.due = due
        self.sent = 0

    def write_due(self, elapsed: float) -> None:
        upto = self.sent
        while upto < len(self.data) and self.due[upto] <= elapsed:
            upto += 1
        if upto > self.sent:
            written = self.write(self.data[self.sent:upto])
            # a client that takes less is gone (or not reading): it loses the rest
            self.sent = upto if written >= upto - self.sent else len(self.data)


def write_all(fd: int, data: bytes, stop: threading.Event, patience: float = 1.0) -> int:
    """Write to a non-blocking fd; gives up (dropping the rest) after `patience` s of a full buffer."""
    view = memoryview(data)
    sent = 0
    deadline = time.monotonic() + patience
    while sent < len(data) and not stop.is_set():
        try:
            sent += os.write(fd, view[sent:])
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            select.select([], [fd], [], 0.05)
        except OSError:
            break
    return sent
