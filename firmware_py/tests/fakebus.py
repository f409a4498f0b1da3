"""A Modbus RTU bus on a pty with many identical meters (the heap test's 16 devices, 100 points).

The devices answer FC 3/4 from fixed register images derived from their unit address. The
end-to-end test uses the shared simulator instead (firmware_py/tests/simsite.py).
"""

from __future__ import annotations

import os
import select
import struct
import threading
import tty

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


class FakeBus:
    def __init__(self, units: list[int]) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.units = {u: registers(u) for u in units}
        self.served = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeBus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _run(self) -> None:
        reader = modbus.RtuFrameReader("request")
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.1)
            if not r:
                continue
            try:
                chunk = os.read(self.master, 512)
            except OSError:
                return
            for unit, pdu in reader.feed(chunk):
                regs = self.units.get(unit)
                if regs is None:
                    continue
                req = modbus.parse_request(pdu)
                table = "holding" if req.function == 3 else "input"
                values = [regs[(table, req.address + i)] for i in range(req.count)]
                os.write(self.master, modbus.rtu_frame(unit, modbus.read_response(req.function, values)))
                self.served += 1
