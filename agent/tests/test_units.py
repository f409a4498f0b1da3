"""Units people read (agent/units.py) and the diagnosis texts (agent/diagnosis.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.diagnosis import Where, explain
from agent.link.base import LinkClosed, LinkTimeout
from agent.units import DISPLAY, show, show_text
from protocols.errors import AbnormalReply, CrcError, ExceptionResponse, FrameError


@pytest.mark.parametrize(("value", "unit", "resolution", "point", "expected"), [
    (3_600_000_000, "J", 36000, "energy_import", ("1000.00", "kWh")),
    (229.8999938964844, "V", 0.1, "voltage_a", ("229.9", "V")),       # float32 noise is gone
    (17.46500015258789, "A", 0.001, "current_a", ("17.465", "A")),
    (10628.1, "W", 0.1, "active_power", ("10.6281", "kW")),
    (-200, "W", None, "power", ("-0.200", "kW")),                     # a whole watt keeps its resolution
    (0.001, "m3/s", 2.777777778e-08, "flow_rate", ("3.6000", "m³/h")),
    (228.06, "m3", 0.01, "volume", ("228.06", "m³")),
    (399600, "Pa", 100, "pressure", ("399.6", "kPa")),
    (1_600_000, "Pa", 100, "pressure", ("1.6000", "MPa")),
    (49.7, "Cel", 0.1, "temperature", ("49.7", "°C")),
    (0.8, "/", 0.01, "dim", ("80", "%")),
    (0.925, "/", 0.001, "power_factor", ("0.925", "")),               # a ratio stays a ratio
    (1, "/", 1, "on", ("1", "")),
    (34650000, "s", 360, "burn_hours", ("9625.0", "h")),
    (0.0005, "kg/m3", 1e-05, "chlorine", ("0.50", "mg/L")),
    (0.0512, "S/m", 0.0001, "conductivity", ("512", "µS/cm")),
    (7.2, "pH", 0.01, "ph", ("7.20", "pH")),
    (True, "", None, "lamp_failure", ("true", "")),
    ("open", "", None, "valve", ("open", "")),
])
def test_display_units(value, unit, resolution, point, expected) -> None:
    assert show(value, unit, resolution, point=point) == expected


def test_si_keeps_the_senml_unit_rounded_to_the_resolution() -> None:
    assert show(229.8999938964844, "V", 0.1, si=True) == ("229.9", "V")
    assert show(3_600_000_000, "J", 36000, si=True) == ("3600000000", "J")
    assert show_text(0.8, "/", 0.01, si=True, point="dim") == "0.80 /"
    assert show_text(3_600_000_000, "J", 36000) == "1000.00 kWh"


@given(st.sampled_from(sorted(u for u in DISPLAY if u not in ("Pa", "/"))),
       st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
       st.sampled_from([0.001, 0.01, 0.1, 1, 10, 100, 3600, 36000]))
def test_shown_value_is_the_converted_value_to_half_a_step(unit, value, resolution) -> None:
    shown_unit, factor = DISPLAY[unit]
    number, text_unit = show(value, unit, resolution)
    assert text_unit == shown_unit
    assert abs(float(number) - value * factor) <= resolution * abs(factor) / 2 * 1.000001 + 1e-9


BUS = SimpleNamespace(port="rfc2217://127.0.0.1:4000", baud=9600, parity="N", stopbits=1, bytesize=8)
METER = SimpleNamespace(link={"baud": 2400, "parity": "E", "stopbits": 1})


def timeout(received: int = 0, echoed: bool = False) -> LinkTimeout:
    exc = LinkTimeout("cli: no reply within 1000 ms")
    exc.received = received
    exc.echoed = echoed
    return exc


def test_no_reply_names_port_settings_address_and_the_profiles_settings() -> None:
    text = explain(timeout(), Where.of(BUS, "000000000101", METER))
    assert text.startswith("no reply at all from address 000000000101 on rfc2217://127.0.0.1:4000 (9600 8N1)")
    assert "wiring" in text and "powered" in text
    assert "the line runs 9600 8N1 but the profile says 2400 8E1" in text and "baud rate or parity" in text
    same = explain(timeout(), Where.of(SimpleNamespace(**dict(vars(BUS), baud=2400, parity="E")), "1", METER))
    assert "or the baud rate / parity (2400 8E1 here)" in same and "scan --auto" in same


def test_each_kind_of_failure_has_its_likely_cause() -> None:
    where = Where.of(BUS, "3", None, "lamp-03")
    assert "garbled or torn reply" in explain(timeout(received=5), where)
    assert "baud rate or parity" in explain(timeout(received=5), where)
    assert "DE/RE" in explain(timeout(received=8, echoed=True), where)
    crc = explain(CrcError("bad CRC"), where)
    assert "steady rate" in crc and "termination" in crc and "noise" in crc and "collide" in crc
    assert "baud rate or parity" in explain(FrameError("bad start byte"), where)
    clash = explain(FrameError("reply from another meter 000000000102"), where)
    assert "two devices share an address" in clash
    refused = explain(ExceptionResponse(3, 2), where)
    assert "answered and refused" in refused and "settings are right" in refused
    assert "answered with an error" in explain(AbnormalReply(2, "no data requested"), where)
    locked = explain(LinkClosed("cannot open /dev/ttyUSB0: Could not exclusively lock port"), where)
    assert "in use by another program" in locked
    tcp = explain(timeout(), Where.of(SimpleNamespace(port="tcp://10.0.0.5:502"), "7"))
    assert "Modbus TCP" in tcp and "unit 7" in tcp
