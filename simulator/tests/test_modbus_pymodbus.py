"""pymodbus (pinned, an independent client) polls the simulated Modbus devices over the pty."""

from __future__ import annotations

import time

import pytest
from pymodbus.client import ModbusSerialClient

from protocols.profiles import load_profile
from simulator.tests.conftest import LAMPS_AND_METER

F32 = ModbusSerialClient.DATATYPE.FLOAT32


@pytest.fixture
def street(make_site):  # type: ignore[no-untyped-def]
    site = make_site(LAMPS_AND_METER)
    client = ModbusSerialClient(port=site.bus("street").device_path, baudrate=9600, timeout=2, retries=1)
    assert client.connect()
    yield site, client
    client.close()


def bracket(site, device, point, read):  # type: ignore[no-untyped-def]
    """Poll with `read()` and return (value, truth before, truth after) in wall-time terms."""
    before = time.time()
    value = read()
    after = time.time()
    d = site.device(device)
    return value, d.truth(point, site.clock.sim(before)), d.truth(point, site.clock.sim(after))


def test_dtsu666_floats_match_truth(street) -> None:  # type: ignore[no-untyped-def]
    site, client = street
    profile = load_profile("dtsu666")
    for name in ("voltage_a", "current_b", "power", "frequency", "energy_import", "power_factor"):
        p = profile.point(name)

        def read(p=p) -> float:  # type: ignore[no-untyped-def]
            rr = client.read_holding_registers(p.address, count=2, device_id=10)
            assert not rr.isError(), rr
            return client.convert_from_registers(rr.registers, F32) * p.scale  # type: ignore[operator]

        value, lo, hi = bracket(site, "meter", name, read)
        assert value in (pytest.approx(lo), pytest.approx(hi)), (name, value, lo, hi)
    # a block read across the whole voltage/current/power area (gaps read as 0)
    rr = client.read_holding_registers(0x2000, count=0x2E, device_id=10)
    assert not rr.isError() and len(rr.registers) == 0x2E
    va = client.convert_from_registers(rr.registers[6:8], F32) * 0.1  # type: ignore[operator]
    assert 200 < va < 245


def test_lamp_obeys_writes(street) -> None:  # type: ignore[no-untyped-def]
    site, client = street
    rr = client.read_input_registers(0, count=9, device_id=2)
    assert not rr.isError()
    assert rr.registers[2] > 0  # power (0.1 W) while on
    assert not client.write_register(1, 30, device_id=2).isError()  # dim 30 %
    assert site.device("lamp-2").truth("dim", site.clock.now()) == pytest.approx(0.3)
    dimmed = client.read_input_registers(2, count=1, device_id=2).registers[0]
    assert 0 < dimmed < rr.registers[2]
    assert not client.write_registers(0, [0, 50], device_id=2).isError()  # off
    assert client.read_input_registers(2, count=1, device_id=2).registers[0] == 0  # no power when off
    assert site.device("lamp-2").truth("power", site.clock.now()) == 0
    assert site.device("lamp-1").truth("power", site.clock.now()) > 0  # only the addressed lamp
    assert client.read_holding_registers(0, count=2, device_id=2).registers == [0, 50]


def test_refused_writes_and_reads_give_exceptions(street) -> None:  # type: ignore[no-untyped-def]
    _site, client = street
    rr = client.write_register(1, 150, device_id=1)  # dim above 100 %
    assert rr.isError() and rr.exception_code == 3
    rr = client.write_register(5, 1, device_id=1)  # not a writable register
    assert rr.isError() and rr.exception_code == 2
    rr = client.read_holding_registers(0x3000, count=2, device_id=10)  # nothing mapped there
    assert rr.isError() and rr.exception_code == 2


def test_cabinet_coils_and_discrete_inputs(street) -> None:  # type: ignore[no-untyped-def]
    site, client = street
    power_on = client.read_input_registers(6, count=2, device_id=20).registers
    assert not client.write_coil(0, False, device_id=20).isError()
    assert client.read_coils(0, count=4, device_id=20).bits[:4] == [False, True, True, True]
    power_off = client.read_input_registers(6, count=2, device_id=20).registers
    assert power_off[1] < power_on[1] or power_off[0] < power_on[0]
    assert client.read_discrete_inputs(0, count=3, device_id=20).bits[:3] == [False, False, False]
    site.device("cabinet").inject("door_open")
    assert client.read_discrete_inputs(0, count=3, device_id=20).bits[:3] == [True, False, False]
