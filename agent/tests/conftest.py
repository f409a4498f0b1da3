"""Fixtures for the acquisition tests: buses of fake devices (in memory or on a pty), a test profile
folder, config files, a real Mosquitto on a free loopback port."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator

import pytest

from hil_tests.broker import Mosquitto, broker_or_skip
from hil_tests.buses import PtyBus, VirtualBus

TEST_METER = {
    "model": "test-meter",
    "kind": "electricity_meter",
    "protocol": "modbus",
    "link": {"baud": 9600, "parity": "E", "stopbits": 1},
    "options": {"max_registers": 125, "max_gap": 4},
    "points": [
        {"name": "voltage", "unit": "V", "scale": 0.1, "table": "holding", "address": 0, "type": "u16"},
        {"name": "current", "unit": "A", "scale": 0.01, "table": "holding", "address": 1, "type": "u16"},
        {"name": "power", "unit": "W", "table": "holding", "address": 2, "type": "s32"},
        {"name": "energy", "unit": "J", "scale": 3600, "table": "holding", "address": 10, "type": "u32"},
        {"name": "setpoint", "unit": "%", "table": "holding", "address": 20, "type": "u16",
         "writable": True, "min": 0, "max": 100},
        {"name": "relay", "unit": "", "table": "coil", "address": 0, "writable": True},
    ],
}

METER_REGISTERS = {0: 2301, 1: 512, 2: 0xFFFF, 3: 0xFF38, 10: 0, 11: 1000, 20: 50}


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own (skipped where none is installed, a failure under CI); a module
    that needs the broker's persistence defines its own `broker` fixture."""
    b = broker_or_skip()
    yield b
    b.close()


@pytest.fixture
def profile_dir(tmp_path: os.PathLike) -> str:
    d = os.path.join(str(tmp_path), "profiles")
    os.makedirs(d)
    with open(os.path.join(d, "test-meter.json"), "w") as f:
        json.dump(TEST_METER, f)
    return d


@pytest.fixture
def fake_bus() -> Iterator[PtyBus]:
    """A Modbus bus behind a real pty, owned for the whole test."""
    bus = PtyBus("modbus")
    yield bus
    bus.close()


@pytest.fixture
def virtual_bus() -> Iterator[VirtualBus]:
    """A Modbus bus in memory (`virtual://...`), on its own virtual clock."""
    with VirtualBus("modbus") as bus:
        yield bus


def write_config(directory: str, body: str, name: str = "site.toml") -> str:
    """Write a config file (dedented) and return its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(body).lstrip())
    return path


def basic_config(tmp: str, port: str, devices: str = "", bus_extra: str = "") -> str:
    return write_config(tmp, textwrap.dedent("""
        format = 1
        profiles = ["profiles"]

        [gateway]
        site = "test-site"
        id = "gw1"

        [outbox]
        path = "outbox.sqlite"

        [[buses]]
        name = "line1"
        port = "%s"
        baud = 9600
        parity = "E"
        timeout_ms = 150
        %s
        """) % (port, bus_extra) + textwrap.dedent(devices))
