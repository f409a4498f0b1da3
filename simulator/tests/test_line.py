"""The line emulator: bytes take their wire time at the bus's baud and framing; instant mode does not."""

from __future__ import annotations

import time

import pytest

from protocols import dlt645, modbus
from simulator.line import Line, LineError, parse_line
from simulator.tests.conftest import open_port, read_frame

BUS = """
[[bus]]
name = "slow"
line = "2400 8E1"
instant = %s
reply_delay = 0.3
[[bus.device]]
id = "lamp"
profile = "generic-lamp"
address = 1
[[bus.device]]
id = "meter"
profile = "dlt645-3p"
address = "000000000001"
"""


def test_line_arithmetic() -> None:
    assert parse_line("2400 8E1") == (2400, 8, "E", 1)
    line = Line.from_spec("2400 8E1")
    assert line.bits_per_char == 11 and line.char_time == pytest.approx(11 / 2400)
    assert line.t35 == pytest.approx(3.5 * 11 / 2400)
    assert Line.from_spec("115200 8N1").t35 == pytest.approx(0.00175)
    assert Line.from_spec("9600 8N1").wire_time(10) == pytest.approx(10 * 10 / 9600)
    assert Line.from_spec("9600 8N1", instant=True).wire_time(10) == 0
    assert Line(reply_delay=0.001).reply_gap("dlt645") == 0.02  # DL/T 645: 20..500 ms
    with pytest.raises(LineError):
        parse_line("2400 8X1")


def modbus_round_trip(site) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(seconds from request to the whole reply, seconds from first to last reply byte)."""
    read = modbus.read_request(4, 0, 9)  # 8-byte request, 23-byte reply
    with open_port(site, "slow", timeout=0.05) as port:
        t0 = time.monotonic()
        port.write(modbus.rtu_frame(1, read))
        got, first = b"", 0.0
        while len(got) < 23 and time.monotonic() - t0 < 5:
            chunk = port.read(1)
            if chunk and not got:
                first = time.monotonic()
            got += chunk
        end = time.monotonic()
    assert modbus.rtu_parse(got)[0] == 1
    return end - t0, end - first


def test_2400_baud_takes_its_wire_time_and_instant_does_not(make_site) -> None:  # type: ignore[no-untyped-def]
    char = 11 / 2400
    expected = (8 + 3.5 + 23) * char  # request on the wire, t3.5, reply on the wire: 158 ms
    timed, spread = modbus_round_trip(make_site(BUS % "false"))
    assert 0.8 * expected <= timed < expected + 2.0
    assert spread >= 0.7 * 22 * char  # the reply's bytes arrive at line rate, not in one lump
    fast = make_site(BUS % "true")
    instant = min(modbus_round_trip(fast)[0] for _ in range(3))
    assert instant < timed


def test_dlt645_reply_delay(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(BUS % "false")
    with open_port(site, "slow") as port:
        t0 = time.monotonic()
        port.write(dlt645.read_request("000000000001", "00010000"))
        frame = read_frame(port, dlt645.Dlt645FrameReader())
        elapsed = time.monotonic() - t0
    assert frame is not None
    assert elapsed >= 0.3 + 0.8 * (20 + 20) * 11 / 2400  # request with FE, reply delay, reply
