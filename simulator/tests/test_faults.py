"""Every fault kind, switched on and off while the site runs, observed at the wire."""

from __future__ import annotations

import contextlib
import time

import pytest

from protocols import cjt188, dlt645, modbus
from protocols.errors import AbnormalReply, CrcError
from simulator.control import SimClient
from simulator.tests.conftest import LAMPS_AND_METER, METERS, open_port, read_frame, read_silence

ECHO_PDU = modbus.write_register_request(1, 50)  # lamp dim 50 %: the reply echoes it, byte for byte


def collect(port, n: int, timeout: float = 3.0) -> bytes:  # type: ignore[no-untyped-def]
    """Read n bytes, or what arrives before the timeout."""
    deadline = time.monotonic() + timeout
    out = b""
    while len(out) < n and time.monotonic() < deadline:
        out += port.read(max(1, min(n - len(out), port.in_waiting or 1)))
    return out


@contextlib.contextmanager
def on_street(make_site, scenario: str):  # type: ignore[no-untyped-def]
    """A site of `scenario` with a client on its bus "street" and its control channel, both closed after."""
    site = make_site(scenario)
    port = open_port(site, "street", timeout=0.2)
    control = SimClient(site.describe()["control"])
    try:
        yield site, port, control
    finally:
        control.close()
        port.close()


@pytest.fixture
def street(make_site):  # type: ignore[no-untyped-def]
    with on_street(make_site, LAMPS_AND_METER) as opened:
        yield opened


def echo(port, unit: int = 1, timeout: float = 1.0) -> bytes:  # type: ignore[no-untyped-def]
    port.reset_input_buffer()
    port.write(modbus.rtu_frame(unit, ECHO_PDU))
    return collect(port, 8, timeout)


def test_no_answer_and_clear(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    clean = modbus.rtu_frame(1, ECHO_PDU)
    assert echo(port) == clean
    control.fault("lamp-1", "no_answer")
    assert echo(port, 1, 0.3) == b""
    assert echo(port, 2) == modbus.rtu_frame(2, ECHO_PDU)  # the neighbour still answers
    assert control.counters("lamp-1")["devices"]["lamp-1"]["silent"] == 1
    control.clear("lamp-1", "no_answer")
    assert echo(port) == clean


def test_no_answer_at_a_rate_is_seeded(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "no_answer", rate=0.5)
    answered = sum(1 for _ in range(12) if echo(port, 1, 0.2))
    assert 1 <= answered <= 11


def test_late_answer(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "late", delay=0.5)
    t0 = time.monotonic()
    port.write(modbus.rtu_frame(1, ECHO_PDU))
    assert collect(port, 8, 3.0) == modbus.rtu_frame(1, ECHO_PDU)
    assert time.monotonic() - t0 >= 0.45


def test_bad_crc(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "bad_crc")
    reply = echo(port)
    assert len(reply) == 8 and reply[:6] == modbus.rtu_frame(1, ECHO_PDU)[:6]
    reader = modbus.RtuFrameReader()
    assert reader.feed(reply) == [] and any(isinstance(e, CrcError) for e in reader.take_errors())


def test_bit_flips(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("bus:street", "bit_flip", rate=0.2)  # a noisy line: every device suffers
    replies = [echo(port, unit) for unit in (1, 2, 3)]
    assert all(r != modbus.rtu_frame(u, ECHO_PDU) for r, u in zip(replies, (1, 2, 3)))
    control.clear("bus:street")
    assert echo(port) == modbus.rtu_frame(1, ECHO_PDU)


def test_truncated_frames(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "truncate", keep=0.5)
    port.write(modbus.rtu_frame(1, ECHO_PDU))
    assert read_silence(port, 0.3) == modbus.rtu_frame(1, ECHO_PDU)[:4]


def test_noise_burst(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "noise", length=6)
    port.write(modbus.rtu_frame(1, ECHO_PDU))
    got = collect(port, 14)
    assert len(got) == 14 and got.endswith(modbus.rtu_frame(1, ECHO_PDU))


def test_wrong_address_answers(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("lamp-1", "wrong_address", address=7)
    assert echo(port) == modbus.rtu_frame(7, ECHO_PDU)


def test_modbus_exception(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("meter", "exception", code=6)
    port.write(modbus.rtu_frame(10, modbus.read_request(3, 0x2006, 2)))
    assert collect(port, 5) == modbus.rtu_frame(10, modbus.exception_response(3, 6))


def test_reboot_silence_then_counters_reset(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    hours_before = control.truth("lamp-2", "burn_hours")
    assert hours_before > 3600  # type: ignore[operator]
    control.fault("lamp-2", "reboot", duration=0.5)
    assert echo(port, 2, 0.3) == b""
    time.sleep(0.5)
    assert echo(port, 2) == modbus.rtu_frame(2, ECHO_PDU)
    assert control.truth("lamp-2", "burn_hours") < 3600  # type: ignore[operator]


@pytest.mark.parametrize("kind,bit", [("lamp_failure", 0), ("cable_fault", 1), ("over_temperature", 2)])
def test_lamp_faults_on_the_wire(street, kind: str, bit: int) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    read = modbus.read_request(4, 0, 9)

    def registers() -> list:
        port.reset_input_buffer()
        port.write(modbus.rtu_frame(3, read))
        _unit, pdu = modbus.rtu_parse(collect(port, 23))
        return modbus.parse_response(read, pdu)  # type: ignore[return-value]

    assert registers()[8] == 0 and registers()[2] > 0
    control.fault("lamp-3", kind)
    regs = registers()
    assert regs[8] == 1 << bit and regs[2] == 0  # fault bit set, the lamp is dark
    assert control.truth("lamp-3", kind) is True
    control.clear("lamp-3", kind)
    assert registers()[8] == 0


def test_door_open_on_cabinet(street) -> None:  # type: ignore[no-untyped-def]
    _site, port, control = street
    control.fault("cabinet", "door_open")
    port.write(modbus.rtu_frame(20, modbus.read_request(2, 0, 3)))
    _unit, pdu = modbus.rtu_parse(collect(port, 6))
    assert modbus.parse_response(modbus.read_request(2, 0, 3), pdu) == [True, False, False]


def test_meter_abnormal_replies_and_battery(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    with open_port(site, "meters") as port, SimClient(site.describe()["control"]) as control:
        control.fault("e1", "abnormal", code=0x04)
        port.write(dlt645.read_request("000000000161", "00010000"))
        frame = read_frame(port, dlt645.Dlt645FrameReader())
        with pytest.raises(AbnormalReply) as err:
            dlt645.parse_read_reply(frame, "00010000")  # type: ignore[arg-type]
        assert err.value.code == 0x04
        control.fault("w1", "abnormal", code=0x07)
        port.write(cjt188.read_request(0x10, "00000000123456", ser=3))
        frame = read_frame(port, cjt188.Cjt188FrameReader())
        with pytest.raises(AbnormalReply) as err:
            cjt188.parse_reply(frame, cjt188.DI_901F, 3)  # type: ignore[arg-type]
        assert err.value.code == 0x07
        control.clear("w1")
        control.fault("w1", "battery_low")
        port.write(cjt188.read_request(0x10, "00000000123456", ser=4))
        fields = cjt188.parse_901f(read_frame(port, cjt188.Cjt188FrameReader()), 0x10, 4)  # type: ignore[arg-type]
        assert fields["battery_low"] is True


def test_leak_lowers_pressure_on_the_wire(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site("""
[[bus]]
name = "mains"
instant = true
[[bus.device]]
id = "p"
profile = "pressure-sensor"
address = 1
""")
    with open_port(site, "mains") as port, SimClient(site.describe()["control"]) as control:
        def pressure() -> float:
            port.write(modbus.rtu_frame(1, modbus.read_request(4, 0, 1)))
            _unit, pdu = modbus.rtu_parse(collect(port, 7))
            return modbus.parse_response(modbus.read_request(4, 0, 1), pdu)[0] * 100.0  # type: ignore[index]

        before = pressure()
        control.fault("p", "leak", drop=80000)
        assert pressure() < before - 70000
        assert control.devices()[0]["faults"]["leak"]["drop"] == 80000


def test_bad_fault_requests_are_refused(street) -> None:  # type: ignore[no-untyped-def]
    _site, _port, control = street
    from simulator.control import SimError

    with pytest.raises(SimError, match="unknown fault kind"):
        control.fault("lamp-1", "gremlins")
    with pytest.raises(SimError, match="rate"):
        control.fault("lamp-1", "no_answer", rate=2)
    with pytest.raises(SimError, match="not on a bus"):
        control.fault("bus:street", "lamp_failure")
    with pytest.raises(SimError, match="cannot leak"):
        control.fault("lamp-1", "leak")
    with pytest.raises(SimError, match="use exception"):
        control.fault("lamp-1", "abnormal")


def test_a_late_device_does_not_hold_its_neighbours(street) -> None:  # type: ignore[no-untyped-def]
    """The master gives up on a late device and asks the next one: that one answers at once, and the
    late reply comes when it is due (hil_tests/test_agent_faults.py's late lamp: its neighbours went
    unanswered while the simulator waited to send the late reply)."""
    _site, port, control = street
    control.fault("lamp-1", "late", delay=0.8)
    port.reset_input_buffer()
    t0 = time.monotonic()
    port.write(modbus.rtu_frame(1, ECHO_PDU))
    assert read_silence(port, 0.1) == b""  # the master's response timeout: nothing yet
    port.write(modbus.rtu_frame(2, ECHO_PDU))
    assert collect(port, 8, 0.5) == modbus.rtu_frame(2, ECHO_PDU)
    assert time.monotonic() - t0 < 0.7  # the neighbour's reply came before the late one was due
    assert collect(port, 8, 3.0) == modbus.rtu_frame(1, ECHO_PDU)
    assert time.monotonic() - t0 >= 0.75


CLASH = """
[[bus]]
name = "street"
line = "9600 8N1"
instant = true
address_clash = true
[[bus.device]]
id = "lamp-1"
profile = "generic-lamp"
address = 1
[[bus.device]]
id = "lamp-2"
profile = "generic-lamp"
address = 1
[[bus.device]]
id = "lamp-3"
profile = "generic-lamp"
address = 2
"""


def test_late_colliding_replies_do_not_hold_the_bus(make_site) -> None:  # type: ignore[no-untyped-def]
    """Two devices at one address, both late: their colliding reply comes when due, and a neighbour
    asked meanwhile answers at once (the collision was sent from the request's thread, holding the bus)."""
    with on_street(make_site, CLASH) as (_site, port, control):
        for lamp in ("lamp-1", "lamp-2"):
            control.fault(lamp, "late", delay=0.8)
        port.reset_input_buffer()
        t0 = time.monotonic()
        port.write(modbus.rtu_frame(1, ECHO_PDU))
        assert read_silence(port, 0.1) == b""
        port.write(modbus.rtu_frame(2, ECHO_PDU))
        assert collect(port, 8, 0.5) == modbus.rtu_frame(2, ECHO_PDU)
        assert time.monotonic() - t0 < 0.7
        assert collect(port, 8, 3.0) == modbus.rtu_frame(1, ECHO_PDU)  # the same reply twice: AND is itself
        assert time.monotonic() - t0 >= 0.75
        assert control.counters()["buses"]["street"]["collisions"] == 1
