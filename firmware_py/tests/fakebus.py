"""Fake devices on ptys: `PtyServer` (the serving thread), and a Modbus RTU bus with many identical
meters (the heap test's 16 devices, 100 points).

The devices answer FC 3/4 from fixed register images derived from their unit address. The
end-to-end test uses the shared simulator instead (firmware_py/tests/simsite.py).
"""

from __future__ import annotations

import os
import select
import struct
import threading
import tty
from typing import Any, Self

from protocols import modbus


def registers(unit: int) -> dict:
    """(table, address) -> register value for the fw-meter profile of the tests."""
    regs = {}
    f32 = struct.unpack(">2H", struct.pack(">f", 1000.5 + unit))
    u32 = 36000 + unit
    values = {0: 2300 + unit, 1: 0xFFFF, 2: (-1500 - unit) & 0xFFFF, 3: f32[0], 4: f32[1],
              10: u32 & 0xFFFF, 11: u32 >> 16, 12: 5000 + unit, 13: (-900 + unit) & 0xFFFF}
    for addr in range(0, 130):
        regs[("input", addr)] = values.get(addr, 0)
        regs[("holding", addr)] = 40 + unit if addr == 0 else 0
    return regs


class PtyServer:
    """A device side on a pty, answering in a thread; stopped and closed on exit.

    Subclasses give the frame reader (`reader()`) and the answer to one frame (`answer(frame)`,
    bytes or None for silence)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def reader(self) -> Any:
        raise NotImplementedError

    def answer(self, frame: Any) -> bytes | None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _run(self) -> None:
        reader = self.reader()
        while not self.stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 512)
            except OSError:
                return
            for frame in reader.feed(chunk):
                reply = self.answer(frame)
                if reply is not None:
                    os.write(self.master, reply)


class FakeBus(PtyServer):
    def __init__(self, units: list[int]) -> None:
        PtyServer.__init__(self)
        self.units = {u: registers(u) for u in units}
        self.served = 0

    def reader(self) -> Any:
        return modbus.RtuFrameReader("request")

    def answer(self, frame: Any) -> bytes | None:
        unit, pdu = frame
        regs = self.units.get(unit)
        if regs is None:
            return None
        req = modbus.parse_request(pdu)
        table = "holding" if req.function == 3 else "input"
        values = [regs[(table, req.address + i)] for i in range(req.count)]
        self.served += 1
        return modbus.rtu_frame(unit, modbus.read_response(req.function, values))
