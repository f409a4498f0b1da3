"""Test buses around the in-memory `VirtualBus` (agent/link/virtual.py): the one set of fake-bus code
for the agent's, the board's and the end-to-end tests.

* `VirtualBus` itself (in memory, virtual clock) for drivers, scheduler and rules;
* `PtyBus`: the same devices behind a real pseudo-terminal, answered by a thread, for what needs real
  bytes on a tty: the serial link, `fieldlink` subprocesses, the firmware under the MicroPython VM.
  A PtyBus owns its pty from creation to `close()`; a test that hands its path to a process stops that
  process before closing the bus, so no process ever talks to a recycled /dev/pts number;
* `VirtualUart`: the board's UART adapter interface (`write`, `readinto`) on a VirtualBus, for the
  firmware's UartBus under CPython.

Devices are the tests' own doubles (agent/tests/fakes.py, firmware_py/tests/*): `handle(frame)`, a
Modbus unit registered under its unit number handling the request PDU. A subclass may instead
override `answer(frame)` (and `reader()`) to serve a whole line itself.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from typing import Any, Self

from agent.link.virtual import VirtualBus
from simulator.pty import open_pty

__all__ = ["PtyBus", "VirtualBus", "VirtualUart"]


class PtyBus(VirtualBus):
    """A virtual bus behind one pty pair: a process opens `path`; a thread answers for the devices."""

    def __init__(self, protocol: str = "modbus", start: bool = True) -> None:
        VirtualBus.__init__(self, protocol)
        self.master, self.slave, self.path = open_pty()  # a number no stray process holds
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ptybus", daemon=True)
        self._closed = False
        if start:
            self._thread.start()

    def reader(self) -> Any:
        """The request frame reader (the protocol's server side)."""
        return self.steps.request_reader()

    def _serve(self) -> None:
        reader = self.reader()
        while not self._stop.is_set():
            try:
                if not select.select([self.master], [], [], 0.05)[0]:
                    continue
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            self.received.extend(chunk)
            for frame in reader.feed(chunk):
                reply = self.answer(frame)
                if reply:
                    try:
                        os.write(self.master, reply)
                    except OSError:
                        return
            reader.take_errors()

    def __enter__(self) -> Self:
        if not self._thread.is_alive() and not self._closed:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop answering and close both ends (the path is then free for the system to reuse)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        VirtualBus.close(self)


class VirtualUart:
    """The board's UART adapter (hw.Board.uart) on a virtual bus: replies arrive with the write."""

    def __init__(self, bus: VirtualBus) -> None:
        self.bus = bus
        self.pending = b""

    async def write(self, frame: Any) -> None:
        self.pending += self.bus.feed(bytes(frame))

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n
