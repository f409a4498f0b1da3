"""The virtual bus (agent/link/virtual.py): the same driver bytes as on a wire, timeouts on a virtual
clock, and the bus found by its name like python-can's virtual interface."""

from __future__ import annotations

import time

import pytest

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import make_driver
from agent.link import LinkClosed, LinkTimeout, open_link
from agent.link.virtual import VirtualClock
from agent.tests.conftest import METER_REGISTERS, TEST_METER
from agent.tests.fakes import FakeModbus
from hil_tests.buses import VirtualBus
from protocols import modbus
from protocols.profiles import parse_profile

METER = parse_profile(TEST_METER)


def test_reads_on_a_virtual_bus_are_the_wire_bytes_and_values(virtual_bus: VirtualBus) -> None:
    virtual_bus.devices[7] = FakeModbus(METER_REGISTERS)
    bus = BusConfig(name="line1", port=virtual_bus.path, baud=9600, parity="E", timeout_ms=200)
    driver = make_driver(DeviceConfig(id="m", bus="line1", profile="test-meter", address="7"), METER, bus)
    with open_link(bus) as link:
        values: dict = {}
        for request in driver.requests:
            values.update(driver.read(link, request).values)
    assert values == {"voltage": 230.1, "current": 5.12, "power": -200, "energy": 3600000, "setpoint": 50,
                      "relay": False}
    assert bytes(virtual_bus.received[:8]) == modbus.rtu_frame(7, bytes.fromhex("0300000004"))


def test_a_silent_device_times_out_on_the_virtual_clock(virtual_bus: VirtualBus) -> None:
    device = FakeModbus(METER_REGISTERS)
    device.dead = True
    virtual_bus.devices[1] = device
    bus = BusConfig(name="line1", port=virtual_bus.path, timeout_ms=5000)
    pdu = modbus.read_request(3, 0, 1)
    with open_link(bus) as link:
        before_virtual, before_real = virtual_bus.clock(), time.monotonic()
        with pytest.raises(LinkTimeout, match="no reply within 5000 ms"):
            link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())
        waited_virtual = virtual_bus.clock() - before_virtual
        waited_real = time.monotonic() - before_real
    assert waited_virtual >= 5.0  # the whole response timeout passed on the bus's clock ...
    assert waited_real < 2.5  # ... and not on the machine's: half of it would already be a wait


def test_an_unknown_virtual_bus_is_a_closed_port() -> None:
    with pytest.raises(LinkClosed, match="no such virtual bus"):
        open_link(BusConfig(name="x", port="virtual://nowhere")).open()


def test_the_clock_moves_only_when_someone_waits() -> None:
    clock = VirtualClock(10.0)
    assert clock() == 10.0
    clock.sleep(0.25)
    clock.advance(-1)  # time never runs backwards
    assert clock() == 10.25
