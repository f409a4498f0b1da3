"""CJ/T 188 water meters at the wire, with our own codec: 901F reads, valve control, addressing."""

from __future__ import annotations

import pytest

from protocols import cjt188
from simulator.tests.conftest import METERS, open_port, read_frame, read_silence


def ask(port, request: bytes):  # type: ignore[no-untyped-def]
    port.reset_input_buffer()
    port.write(request)
    frame = read_frame(port, cjt188.Cjt188FrameReader())
    assert frame is not None, "no reply"
    return frame


def test_read_901f_and_valve(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(METERS)
    meter = site.device("w1")
    with open_port(site, "meters") as port:
        fields = cjt188.parse_901f(ask(port, cjt188.read_request(0x10, "00000000123456", ser=7)), 0x10, 7)
        assert fields["quality"] == "good" and fields["valve"] == "open"
        assert fields["flow_total"] == pytest.approx(meter.truth("volume", site.clock.now()))
        assert fields["time"][:3] == (2024, 6, 1)
        reply = ask(port, cjt188.valve_request(0x10, "00000000123456", "close", ser=8))
        assert cjt188.decode_status(*cjt188.parse_write_reply(reply, cjt188.DI_VALVE, 8))["valve"] == "closed"
        fields = cjt188.parse_901f(ask(port, cjt188.read_request(0x10, "00000000123456", ser=9)), 0x10, 9)
        assert fields["valve"] == "closed"
        now = site.clock.now()
        assert meter.quantity("flow", now) == 0.0
        assert meter.quantity("volume", now + 3600) == meter.quantity("volume", now + 2)  # closed: no flow
        # another meter type or address: silence
        port.write(cjt188.read_request(0x30, "00000000123456"))
        port.write(cjt188.read_request(0x10, "00000000654321"))
        assert read_silence(port, 0.3) == b""
        # wildcard type and address reach the one water meter
        reply = ask(port, cjt188.read_request(cjt188.WILDCARD_TYPE, cjt188.WILDCARD, ser=1))
        assert reply.address == "00000000123456"
        # an abbreviated address (AA bytes) reaches it too; one whose digits differ does not
        assert ask(port, cjt188.read_request(0x10, "AAAAAAAA123456", ser=2)).address == "00000000123456"
        port.write(cjt188.read_request(0x10, "AAAAAAAA123457"))
        assert read_silence(port, 0.3) == b""
        # wrong_address: the reply comes from the next address
        meter.inject("wrong_address")
        assert ask(port, cjt188.read_request(0x10, "00000000123456", ser=3)).address == "00000000123457"


def test_heat_meter(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site("""
[[bus]]
name = "heat"
instant = true
[[bus.device]]
id = "h"
profile = "cjt188-heat"
address = "00000000000020"
""")
    meter = site.device("h")
    with open_port(site, "heat") as port:
        fields = cjt188.parse_901f(ask(port, cjt188.read_request(0x20, "00000000000020", ser=2)), 0x20, 2)
    now = site.clock.now()
    assert fields["quality"] == "good"
    assert fields["heat_total"] * 3600000 == pytest.approx(meter.truth("heat_energy", now))
    assert fields["supply_temp"] - fields["return_temp"] == pytest.approx(
        meter.truth("supply_temperature", now) - meter.truth("return_temperature", now))  # type: ignore[operator]
    # heat power = rho c Q dT, and heat energy integrates it
    q = meter.quantity("flow_rate", now)
    dt = meter.quantity("supply_temperature", now) - meter.quantity("return_temperature", now)  # type: ignore[operator]
    assert dt > 0 and meter.quantity("heat_power", now) == pytest.approx(4.19e6 * q * dt)  # type: ignore[operator]
