"""DL/T 645 relay control (C=1C) at the wire: `{device, action: "relay_trip" | "relay_close"}` commands
through the scheduler against a fake meter that checks its password; refused actions send nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent.config import load_config
from agent.scheduler import Scheduler
from agent.tests.conftest import METER_REGISTERS, write_config
from agent.tests.fakes import FakeMeter645, FakeModbus
from hil_tests.buses import VirtualBus
from protocols import dlt645

GOOD, WRONG = "000000000101", "000000000102"
PASSWORD = "02123456"
VOLTS = dlt645.encode_value(230.1, "XXX.X")


class RelayMeter(FakeMeter645):
    """A meter with a relay: C=1C with its password trips (1A) or closes (1B/1C); else DC, ERR 04."""

    def __init__(self, address: str, password: str) -> None:
        FakeMeter645.__init__(self, address, {"02010100": VOLTS})
        self.password = bytes.fromhex(password)
        self.relay = "closed"
        self.relay_requests: list[tuple] = []

    def handle(self, frame: Any) -> bytes | None:
        if frame.control != 0x1C or not dlt645.address_matches(frame.address, self.address):
            return super().handle(frame)
        action, until, password, operator = dlt645.parse_relay_request(frame)
        self.relay_requests.append((action, until, password, operator))
        if password != self.password:
            return dlt645.abnormal_reply(self.address, 0x04, control=0x1C)
        self.relay = "open" if action == dlt645.RELAY_TRIP else "closed"
        return dlt645.relay_reply(self.address, preamble=2)


def config(tmp: str, meter_port: str, modbus_port: str) -> str:
    return write_config(tmp, """
format = 1
profiles = ["profiles"]

[gateway]
site = "test-site"
id = "gw1"

[outbox]
path = "outbox.sqlite"

[[buses]]
name = "meters"
port = "%s"
baud = 19200
parity = "E"
timeout_ms = 150

[[buses]]
name = "line1"
port = "%s"
baud = 9600
parity = "E"
timeout_ms = 150

[[devices]]
id = "good"
bus = "meters"
profile = "dlt645-1p"
address = "%s"
interval = 0.2
points = ["voltage"]
options = { password = "%s", operator = "00000001" }

[[devices]]
id = "wrong"
bus = "meters"
profile = "dlt645-1p"
address = "%s"
interval = 0.2
points = ["voltage"]
options = { password = "02999999" }

[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 0.2
points = ["voltage"]
""" % (meter_port, modbus_port, GOOD, PASSWORD, WRONG))


@pytest.fixture
def site(tmp_path, profile_dir):  # type: ignore[no-untyped-def]
    meters, line = VirtualBus("dlt645"), VirtualBus()
    meters.devices["good"] = RelayMeter(GOOD, PASSWORD)
    meters.devices["wrong"] = RelayMeter(WRONG, PASSWORD)
    line.devices[1] = FakeModbus(METER_REGISTERS)
    scheduler = Scheduler(load_config(config(str(tmp_path), meters.path, line.path)), lambda r: None)
    scheduler.start()
    try:
        time.sleep(0.3)
        yield scheduler, meters, line
    finally:
        scheduler.stop()
        meters.close()
        line.close()


def relay_frames(fake: VirtualBus) -> list[dlt645.Frame]:
    return [f for f in dlt645.Dlt645FrameReader().feed(bytes(fake.received)) if f.control == 0x1C]


def test_trip_and_close_with_the_meter_password(site) -> None:  # type: ignore[no-untyped-def]
    scheduler, meters, _ = site
    meter = meters.devices["good"]
    before = time.localtime()[:6]
    ack = scheduler.command({"device": "good", "action": "relay_trip"})
    assert ack == {"ok": True, "error": None, "value": None}  # no relay-state DI to read back
    assert meter.relay == "open"
    action, until, password, operator = meter.relay_requests[-1]
    assert (action, password, operator) == (dlt645.RELAY_TRIP, bytes.fromhex(PASSWORD), b"\0\0\0\1")
    assert until > before  # a deadline ahead of now, in local time
    ack = scheduler.command({"device": "good", "action": "relay_close"})
    assert ack["ok"] is True and meter.relay == "closed"
    assert meter.relay_requests[-1][0] == dlt645.RELAY_CLOSE_DIRECT
    assert [f.address for f in relay_frames(meters)] == [GOOD, GOOD]


def test_wrong_password_gives_an_error_ack_and_leaves_the_relay(site) -> None:  # type: ignore[no-untyped-def]
    scheduler, meters, _ = site
    ack = scheduler.command({"device": "wrong", "action": "relay_trip"})
    assert ack["ok"] is False and ack["value"] is None
    assert "abnormal" in ack["error"] and "password error or not authorised" in ack["error"], ack
    assert "relay_trip" in ack["error"] and "02999999" not in ack["error"]
    assert meters.devices["wrong"].relay == "closed"
    assert len(meters.devices["wrong"].relay_requests) == 1  # sent once, not retried


@pytest.mark.parametrize("cmd, words", [
    ({"device": "good", "action": "relay_pulse"}, ('no action "relay_pulse"', "relay_trip, relay_close")),
    ({"device": "good", "action": 7}, ("no action 7",)),
    ({"device": "m1", "action": "relay_trip"}, ('no action "relay_trip"', "test-meter", "(none)")),
])
def test_actions_the_profile_does_not_list_send_nothing(site, cmd, words) -> None:  # type: ignore[no-untyped-def]
    scheduler, meters, _ = site
    commands = {name: w.counters["commands"] for name, w in scheduler.workers.items()}
    ack = scheduler.command(cmd)
    assert ack["ok"] is False and ack["value"] is None, ack
    for word in words:
        assert word in ack["error"], (word, ack["error"])
    assert relay_frames(meters) == []
    assert {name: w.counters["commands"] for name, w in scheduler.workers.items()} == commands


def test_no_configured_password_is_refused_before_the_bus(site) -> None:  # type: ignore[no-untyped-def]
    scheduler, meters, _ = site
    _, driver = scheduler.drivers["good"]
    del driver.options["password"]
    ack = scheduler.command({"device": "good", "action": "relay_trip"})
    assert ack["ok"] is False and "needs the meter's password" in ack["error"], ack
    assert relay_frames(meters) == [] and meters.devices["good"].relay == "closed"


def test_malformed_password_is_refused_before_the_bus(site) -> None:  # type: ignore[no-untyped-def]
    scheduler, meters, _ = site
    _, driver = scheduler.drivers["good"]
    driver.options["password"] = "12zz"
    ack = scheduler.command({"device": "good", "action": "relay_trip"})
    assert ack["ok"] is False and "password/operator option" in ack["error"] and "12zz" not in ack["error"]
    assert relay_frames(meters) == []
