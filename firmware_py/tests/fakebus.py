"""A Modbus RTU bus on a pty (hil_tests/buses.py: PtyBus) with many identical meters (the heap test's
16 devices, 100 points).

The devices answer FC 3/4 from fixed register images derived from their unit address. The
end-to-end test uses the shared simulator instead (firmware_py/tests/simsite.py).
"""

from __future__ import annotations

import struct

from hil_tests.buses import PtyBus
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


class ModbusMeters:
    """Unit `u`'s register image (`registers(u)`): answers FC 3 (holding) and FC 4 (input)."""

    def __init__(self, unit: int, bus: PtyBus) -> None:
        self.regs = registers(unit)
        self.bus = bus

    def handle(self, pdu: bytes) -> bytes | None:
        req = modbus.parse_request(pdu)
        table = "holding" if req.function == 3 else "input"
        values = [self.regs[(table, req.address + i)] for i in range(req.count)]
        self.bus.served += 1
        return modbus.read_response(req.function, values)


class FakeBus(PtyBus):
    """A Modbus RTU line on a pty with one fw-meter per unit of `units`."""

    def __init__(self, units: list[int]) -> None:
        PtyBus.__init__(self, "modbus", start=False)
        self.served = 0
        for u in units:
            self.devices[u] = ModbusMeters(u, self)
