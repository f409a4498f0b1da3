"""Alarm rules in the running gateway: a real poll over a virtual bus raises and clears a threshold alarm."""

from __future__ import annotations

from agent.config import load_config
from agent.gateway import Gateway
from agent.tests.conftest import METER_REGISTERS, basic_config
from agent.tests.fakes import FakeModbus, RecordingUplink
from hil_tests.link import wait_until

RULES = """
[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 0.05
points = ["voltage"]

[[rules]]
device = "m1"
point = "voltage"
above = 240.0
hysteresis = 5.0
"""


def test_threshold_rule_raises_and_clears_once_each(tmp_path, profile_dir, virtual_bus) -> None:  # type: ignore[no-untyped-def]
    device = FakeModbus(dict(METER_REGISTERS))  # voltage register 0 = 230.1 V
    virtual_bus.devices[1] = device
    config = load_config(basic_config(str(tmp_path), virtual_bus.path, RULES))
    uplink = RecordingUplink()
    gateway = Gateway(config, uplink=uplink)
    gateway.start()
    try:
        assert wait_until(lambda: len(uplink.readings) >= 3, 5.0)
        assert uplink.alarms == []
        device.holding[0] = 2453  # 245.3 V: above 240
        assert wait_until(lambda: len(uplink.alarms) == 1, 5.0)
        device.holding[0] = 2380  # 238.0 V: inside the hysteresis band, still raised
        n = len(uplink.readings)
        assert wait_until(lambda: len(uplink.readings) >= n + 3, 5.0)
        assert len(uplink.alarms) == 1
        device.holding[0] = 2340  # 234.0 V: below 240 - 5, cleared
        assert wait_until(lambda: len(uplink.alarms) == 2, 5.0)
    finally:
        gateway.stop()
    raised, cleared = uplink.alarms
    assert raised[:5] == ("m1", "voltage", "threshold", 245.3, True)
    assert cleared[:5] == ("m1", "voltage", "threshold", 234.0, False)
    assert raised[5] is not None and cleared[5] > raised[5]
