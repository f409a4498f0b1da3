"""Links and drivers at the wire: real bytes on ptys (and a socket for Modbus TCP)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from agent.config_model import BusConfig, DeviceConfig
from agent.drivers import WriteRefused, make_driver
from agent.link import LinkClosed, LinkTimeout, open_link
from agent.tests.conftest import METER_REGISTERS, TEST_METER
from agent.tests.fakes import FakeMeter188, FakeMeter645, FakeModbus
from hil_tests.buses import PtyBus
from protocols import modbus
from protocols.errors import CrcError, ExceptionResponse
from protocols.profiles import load_profile, parse_profile

METER = parse_profile(TEST_METER)


def bus_for(path: str, **kw) -> BusConfig:
    kw.setdefault("timeout_ms", 200)
    return BusConfig(name="line1", port=path, baud=9600, parity="E", **kw)


def test_modbus_rtu_reads_decode_and_scale(fake_bus):
    fake_bus.devices[7] = FakeModbus(METER_REGISTERS)
    bus = bus_for(fake_bus.path)
    driver = make_driver(DeviceConfig(id="m", bus="line1", profile="test-meter", address="7"), METER, bus)
    with open_link(bus) as link:
        values: dict = {}
        for request in driver.requests:
            values.update(driver.read(link, request).values)
    assert values == {"voltage": 230.1, "current": 5.12, "power": -200, "energy": 3600000, "setpoint": 50,
                      "relay": False}
    # on the wire: the first request is FC03 0..3 to unit 7, CRC low byte first
    assert bytes(fake_bus.received[:8]) == modbus.rtu_frame(7, bytes.fromhex("0300000004"))


def test_timeout_exception_and_crc_errors_are_told_apart(fake_bus):
    device = FakeModbus({0: 1})
    fake_bus.devices[1] = device
    bus = bus_for(fake_bus.path, timeout_ms=150)
    with open_link(bus) as link:
        pdu = modbus.read_request(3, 5, 1)
        reply = link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())
        with pytest.raises(ExceptionResponse):
            modbus.parse_response(pdu, reply[1])
        device.dead = True
        start = time.monotonic()
        with pytest.raises(LinkTimeout, match="no reply within 150 ms"):
            link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())
        assert 0.14 < time.monotonic() - start < 1.0
        # a corrupted reply: write a frame with a bad CRC straight from the device side
        frame = bytearray(modbus.rtu_frame(1, modbus.read_response(3, [42])))
        frame[-1] ^= 0xFF
        link.send(modbus.rtu_frame(1, pdu))
        os.write(fake_bus.master, bytes(frame))
        with pytest.raises(CrcError):
            link.read_frame(modbus.RtuFrameReader())


def test_writes_are_checked_and_refused_writes_send_nothing(fake_bus):
    device = FakeModbus(METER_REGISTERS, coils={0: False})
    fake_bus.devices[1] = device
    bus = bus_for(fake_bus.path)
    driver = make_driver(DeviceConfig(id="m", bus="line1", profile="test-meter", address="1"), METER, bus)
    with open_link(bus) as link:
        assert driver.write(link, "setpoint", 80) == 80
        assert device.holding[20] == 80
        assert driver.write(link, "relay", True) is True
        sent = len(fake_bus.received)
        for point, value in (("setpoint", 101), ("voltage", 1), ("nope", 1), ("setpoint", "x")):
            with pytest.raises(WriteRefused):
                driver.write(link, point, value)
        time.sleep(0.1)
        assert len(fake_bus.received) == sent


def test_dlt645_reads_and_not_available_values_are_bad_quality():
    fake = PtyBus("dlt645")
    try:
        fake.devices["m"] = FakeMeter645("000000000161", {
            "00010000": bytes.fromhex("78563412"),   # 123456.78 kWh, low byte first
            "02010100": bytes.fromhex("0123"),       # 230.1 V
            "02020100": bytes.fromhex("FFFFFF"),     # not available
        })
        profile = load_profile("dlt645-3p")
        bus = BusConfig(name="l", port=fake.path, baud=2400, parity="E", timeout_ms=300)
        points = ["energy_import", "voltage_a", "current_a"]
        names = [p.name for p in profile.points if p.di in ("00010000", "02010100", "02020100")]
        assert sorted(names) == sorted(points)
        device = DeviceConfig(id="e", bus="l", profile="dlt645-3p", address="000000000161", points=points)
        driver = make_driver(device, profile, bus)
        with open_link(bus) as link:
            result = driver.read_points(link, points)
        values = dict(result.values)
        assert values["energy_import"] == pytest.approx(123456.78 * profile.point("energy_import").scale)
        assert values["voltage_a"] == pytest.approx(230.1 * profile.point("voltage_a").scale)
        assert result.bad == [("current_a", "not_available")]
        assert fake.devices["m"].requests == ["00010000", "02010100", "02020100"]
    finally:
        fake.close()


def test_cjt188_read_and_valve_command():
    fake = PtyBus("cjt188")
    try:
        meter = FakeMeter188("12345678901234", {"flow_total": 12.34, "flow_total_unit": 0x2C,
                                                "flow_settlement": 10.0, "flow_settlement_unit": 0x2C,
                                                "time": (2024, 3, 15, 10, 20, 30), "valve": "open",
                                                "battery_low": False})
        fake.devices["w"] = meter
        profile = load_profile("cjt188-water")
        bus = BusConfig(name="l", port=fake.path, baud=2400, parity="E", timeout_ms=300)
        device = DeviceConfig(id="w", bus="l", profile="cjt188-water", address="12345678901234")
        driver = make_driver(device, profile, bus)
        assert len(driver.requests) == 1
        with open_link(bus) as link:
            values = dict(driver.read(link, driver.requests[0]).values)
            assert values == {"volume": 12.34, "volume_settlement": 10.0, "valve": "open",
                              "battery_low": False}
            with pytest.raises(WriteRefused):
                driver.write(link, "valve", "half")
            assert driver.write(link, "valve", "closed") == "closed"
        assert meter.fields["valve"] == "closed"
    finally:
        fake.close()


def test_serial_port_that_disappears_is_reopened_when_it_returns(tmp_path):
    link_path = os.path.join(str(tmp_path), "ttyUSB0")   # like a udev symlink /dev/serial/by-id/...
    first = PtyBus()
    first.devices[1] = FakeModbus({0: 1})
    os.symlink(first.path, link_path)
    bus = bus_for(link_path, timeout_ms=150)
    link = open_link(bus)
    link.reopen_min = 0.05
    pdu = modbus.read_request(3, 0, 1)
    try:
        link.open()
        assert link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())[0] == 1
        first.close()          # adapter unplugged: the pty is gone
        os.unlink(link_path)
        with pytest.raises(LinkClosed):
            link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())
        assert not link.is_open
        with pytest.raises(LinkClosed):
            link.ensure_open()   # still gone
        second = PtyBus()     # plugged back in
        second.devices[1] = FakeModbus({0: 2})
        os.symlink(second.path, link_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                link.ensure_open()
                break
            except LinkClosed:
                time.sleep(0.05)
        reply = link.transact(modbus.rtu_frame(1, pdu), modbus.RtuFrameReader())
        assert modbus.parse_response(pdu, reply[1]) == [2]
        assert link.counters["opens"] == 2
        second.close()
    finally:
        link.close()


def test_modbus_tcp_driver_over_a_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    device = FakeModbus(METER_REGISTERS)

    def serve() -> None:
        conn, _ = server.accept()
        buf = b""
        with conn:
            while True:
                data = conn.recv(1024)
                if not data:
                    return
                buf += data
                while len(buf) >= 7 and len(buf) >= modbus.tcp_adu_length(buf[:6]):
                    n = modbus.tcp_adu_length(buf[:6])
                    tid, unit, pdu = modbus.tcp_parse(buf[:n])
                    buf = buf[n:]
                    conn.sendall(modbus.tcp_frame(tid, unit, device.handle(pdu) or b""))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    bus = BusConfig(name="net", port="tcp://127.0.0.1:%d" % port, timeout_ms=500)
    driver = make_driver(DeviceConfig(id="m", bus="net", profile="test-meter", address="1",
                                      points=["voltage", "power"]), METER, bus)
    try:
        with open_link(bus) as link:
            assert dict(driver.read(link, driver.requests[0]).values) == {"voltage": 230.1, "power": -200}
            assert driver.write(link, "setpoint", 12) == 12
    finally:
        server.close()
        thread.join(2)


def test_a_serial_port_has_one_owner(fake_bus):
    """Ports are opened exclusive: a second link (another agent, a stray test) is refused clearly
    instead of stealing half the replies; once the owner closes, the port opens again."""
    bus = bus_for(fake_bus.path)
    first = open_link(bus)
    first.open()
    try:
        with pytest.raises(LinkClosed, match="exclusively lock"):
            open_link(bus).open()
    finally:
        first.close()
    second = open_link(bus)
    second.open()
    second.close()
