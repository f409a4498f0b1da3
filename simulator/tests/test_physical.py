"""Faults of the physical line: A/B swapped, no termination, an echoing adapter, two masters.

Most buses here have no pty (pty = false) and are reached through their serial device servers: the raw
TCP port runs at the bus's settings, the RFC 2217 port at the client's."""

from __future__ import annotations

import time

import pytest
import serial

from protocols import modbus
from protocols.errors import ProtocolError
from simulator.control import SimClient, SimError
from simulator.scenario import ScenarioError, parse
from simulator.tests.conftest import open_port, open_url, read_frame, wait_for
from simulator.wire import reflection_ber

BUS = """
[[bus]]
name = "street"
line = "9600 8N1"
instant = true
pty = %(pty)s
%(extra)s
[[bus.device]]
id = "lamp"
profile = "generic-lamp"
address = 1
params = {on = false, burn_hours_start = 6553, rated_power = 100}   # constant registers
"""
READ = modbus.read_request(4, 3, 4)
REQUEST = modbus.rtu_frame(1, READ)
REGISTERS = [0x0007, 0xFFD0, 0x0000, 0xFFFA]
REPLY = modbus.rtu_frame(1, bytes([4, 8]) + b"".join(r.to_bytes(2, "big") for r in REGISTERS))


def bus(extra: str = "", pty: bool = False) -> str:
    return BUS % {"pty": "true" if pty else "false", "extra": extra}


def listen(port: serial.Serial, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    out = b""
    while time.monotonic() < deadline:
        out += port.read(max(1, port.in_waiting))
    return out


def poll(port: serial.Serial, seconds: float = 0.3) -> bytes:
    port.write(REQUEST)
    return listen(port, seconds)


def test_ab_swapped_at_run_time(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(bus())
    with open_url(site, "street", timeout=0.02) as port, SimClient(site.describe()["control"]) as control:
        assert poll(port) == REPLY
        control.fault("bus:street", "ab_swapped")
        # the line now rests at space: the client's UART reports one break (Linux: a 0x00 byte)
        assert listen(port, 0.3) == b"\x00"
        assert poll(port, 0.5) == b""  # the lamp's UART sees inverted garbage: no answer
        line = control.line("street")
        assert line["faults"] == {"ab_swapped": {}}
        wire = next(c for c in line["clients"] if c["name"] == "rfc2217")["counts"]
        assert wire["to_client"]["breaks"] == 1
        assert wire["to_devices"]["bytes"] == 2 * len(REQUEST) and wire["to_devices"]["dropped"] >= 2
        assert site.device("lamp").counts["requests"] == 1
        control.clear("bus:street", "ab_swapped")
        assert poll(port) == REPLY


def test_ab_swapped_in_the_scenario_on_the_pty(make_site) -> None:  # type: ignore[no-untyped-def]
    """The agent's own path (the pty) suffers the physical faults too; the pty's settings are the bus's."""
    site = make_site(bus("ab_swapped = true", pty=True))
    with open_port(site, "street", timeout=0.02) as pty, SimClient(site.describe()["control"]) as control:
        assert control.line("street")["faults"] == {"ab_swapped": {}}
        assert poll(pty, 0.5) == b""
        assert site.device("lamp").counts["requests"] == 0
        control.clear("bus:street")
        assert poll(pty) == REPLY


def test_a_swapped_reply_reaches_a_listener_inverted(make_site) -> None:  # type: ignore[no-untyped-def]
    """With `uart_errors = "keep"` the lamp still answers the inverted request now and then; its reply
    reaches the client inverted too: garbage that ends in a break, never a valid frame."""
    site = make_site(bus('ab_swapped = true\nuart_errors = "keep"'))
    with open_url(site, "street", kind="socket", timeout=0.02) as port:
        heard = b"".join(poll(port, 0.2) for _ in range(5))
    wire = site.bus("street").wire_counts()
    assert wire["to_devices"]["breaks"] >= 5  # each request ends in a break at the lamp's UART
    reader = modbus.RtuFrameReader(expect="response")
    assert reader.feed(heard) == [] and REPLY not in heard


def test_unterminated_line_with_a_configured_bit_error_rate(make_site) -> None:  # type: ignore[no-untyped-def]
    rate = 0.002
    site = make_site(bus("termination = false\nbit_error_rate = %g" % rate))
    good = bad = silent = 0
    with open_url(site, "street", kind="socket", timeout=0.02) as port:
        for _ in range(60):
            port.reset_input_buffer()
            heard = poll(port, 0.15)
            if not heard:
                silent += 1
                continue
            reader = modbus.RtuFrameReader(expect="response")
            frames = reader.feed(heard) + (reader.reset() or [])
            for unit, pdu in frames:  # no valid frame decodes to a wrong value
                try:
                    assert unit != 1 or modbus.parse_response(READ, pdu) == REGISTERS
                except ProtocolError:
                    pass
            if heard == REPLY:
                good += 1
            else:
                bad += 1
    wire = site.bus("street").wire_counts()
    bits = 10 * (wire["to_devices"]["bytes"] + wire["to_client"]["bytes"])
    flips = wire["to_devices"]["bit_errors"] + wire["to_client"]["bit_errors"]
    assert 0.4 * rate * bits <= flips <= 2.0 * rate * bits
    # a poll is 80 bits out and 130 back: (1 - 0.002) ** 210 = 66 % come back clean
    assert 25 <= good <= 55 and bad + silent >= 5, (good, bad, silent)
    assert site.device("lamp").counts["requests"] <= 60


def test_unterminated_rate_follows_baud_and_cable_length(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(bus("termination = false"))
    with SimClient(site.describe()["control"]) as control:
        assert control.line("street")["bit_error_rate"] == pytest.approx(reflection_ber(9600, 1000))
        assert control.line("street")["faults"] == {"unterminated": {"cable_length": 1000.0}}
        assert control.fault("bus:street", "unterminated", cable_length=1200) == {"cable_length": 1200}
        assert control.line("street")["bit_error_rate"] == pytest.approx(reflection_ber(9600, 1200))
        control.clear("bus:street", "unterminated")
        assert control.line("street")["bit_error_rate"] == 0.0
        with pytest.raises(SimError, match="bit_error_rate"):
            control.fault("bus:street", "unterminated", bit_error_rate=0.7)
        with pytest.raises(SimError, match="bus:NAME"):
            control.fault("lamp", "ab_swapped")
    assert reflection_ber(2400, 1000) < 1e-12 < reflection_ber(9600, 1000)


def test_an_echoing_adapter_returns_our_own_request_first(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(bus())
    with open_url(site, "street", timeout=0.02) as port, SimClient(site.describe()["control"]) as control:
        control.fault("bus:street", "echo")
        assert poll(port) == REQUEST + REPLY
        control.clear("bus:street", "echo")
        assert poll(port) == REPLY


def test_two_masters_hear_each_other(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(bus())
    with open_url(site, "street", kind="socket", timeout=0.02) as master, \
            open_url(site, "street", timeout=0.02) as other:
        assert wait_for(lambda: len(site.bus("street").accesses()) == 2)
        assert poll(master) == REPLY
        assert listen(other, 0.3) == REQUEST + REPLY  # a request it did not send, and its reply
        other.write(REQUEST)
        assert read_frame(master, modbus.RtuFrameReader(expect="request")) == (1, READ)


@pytest.mark.parametrize("extra,where,message", [
    ('uart_errors = "ignore"', "bus[0].uart_errors", "'drop' or 'keep'"),
    ("rfc2217 = 70000", "bus[0].rfc2217", "0..65535"),
    ("cable_length = 100", "bus[0].cable_length", "termination = false"),
    ("termination = false\nbit_error_rate = 2", "bus[0]", "within 0..0.5"),
    ('link = "/tmp/x"', "bus[0].link", "pty = false"),
    ('ab_swapped = "yes"', "bus[0].ab_swapped", "must be bool"),
    ("tcp = 5020\nsocket = 5020", "bus[0].socket", "already bus[0].tcp"),
])
def test_scenario_keys_are_checked(extra: str, where: str, message: str) -> None:
    import tomllib

    with pytest.raises(ScenarioError) as err:
        parse(tomllib.loads(bus(extra)), "bad.toml")
    assert str(err.value).startswith("bad.toml: %s" % where) and message in str(err.value)
