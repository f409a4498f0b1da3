"""The request planner: merging, gaps, limits, single-point mode, line times; `fieldlink plan`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.config_model import BusConfig, DeviceConfig
from agent.planner import plan_device
from agent.tests.conftest import TEST_METER, basic_config
from protocols.profiles import load_profile, parse_profile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
METER = parse_profile(TEST_METER)
BUS = BusConfig(name="b", port="/dev/null", baud=9600, parity="E")


def describe(device: DeviceConfig, profile=METER, bus=BUS) -> list[str]:
    return [r.describe() for r in plan_device(device, profile, bus).requests]


def test_adjacent_registers_merge_and_gaps_up_to_max_gap_are_filled():
    dev = DeviceConfig(id="d", bus="b", profile="test-meter", address="1")
    assert describe(dev) == [
        "FC03 holding 0..3 (4 regs): voltage, current, power",
        "FC03 holding 10..11 (2 regs): energy",   # gap of 6 > max_gap 4
        "FC03 holding 20..20 (1 regs): setpoint",
        "FC01 coil 0..0 (1 bits): relay",
    ]
    dev.options = {"max_gap": 7}
    assert describe(dev)[:2] == ["FC03 holding 0..11 (12 regs): voltage, current, power, energy",
                                 "FC03 holding 20..20 (1 regs): setpoint"]
    dev.options = {"max_gap": 20}
    assert describe(dev)[0] == "FC03 holding 0..20 (21 regs): voltage, current, power, energy, setpoint"


def test_max_registers_override_and_single_point_mode():
    dev = DeviceConfig(id="d", bus="b", profile="test-meter", address="1", max_registers=3,
                       points=["voltage", "current", "power"])
    # power (2 registers at 2..3) would make 4 > 3
    assert describe(dev) == ["FC03 holding 0..1 (2 regs): voltage, current",
                             "FC03 holding 2..3 (2 regs): power"]
    dev = DeviceConfig(id="d", bus="b", profile="test-meter", address="1", single_point_requests=True,
                       points=["voltage", "current", "power"])
    assert len(describe(dev)) == 3


def test_modbus_line_time_matches_protocol_facts_3_5():
    # read 10 holding registers at 9600 8E1: 33 characters + 2 x t3.5 = 45.833 ms
    profile = parse_profile({"model": "ten", "kind": "lamp", "protocol": "modbus", "points": [
        {"name": "r%d" % i, "address": i} for i in range(10)]})
    dev = DeviceConfig(id="d", bus="b", profile="ten", address="1")
    plan = plan_device(dev, profile, BUS)
    assert len(plan.requests) == 1
    assert plan.requests[0].line_time == pytest.approx(0.0458333, abs=1e-6)
    fast = BusConfig(name="b", port="/dev/null", baud=115200, parity="E")
    assert plan_device(dev, profile, fast).requests[0].line_time == pytest.approx(0.006651, abs=1e-6)
    slow = BusConfig(name="b", port="/dev/null", baud=9600, parity="E", turnaround_ms=10, pause_ms=5)
    assert plan_device(dev, profile, slow).requests[0].line_time == pytest.approx(
        0.0378125 + 0.0040104 + 0.010 + 0.005, abs=1e-6)


def test_dlt645_line_time_matches_protocol_facts_1_8():
    profile = load_profile("dlt645-3p")
    dev = DeviceConfig(id="m", bus="b", profile="dlt645-3p", address="000000000161", points=["energy_import"])
    bus = BusConfig(name="b", port="/dev/null", baud=2400, parity="E")
    (request,) = plan_device(dev, profile, bus).requests
    assert (request.request_bytes, request.reply_bytes) == (20, 20)
    assert request.line_time == pytest.approx(0.2033333, abs=1e-6)  # 40 chars x 4.583 ms + Td 20 ms


def test_plan_command_prints_requests_line_time_and_utilisation(tmp_path, profile_dir):
    devices = """
[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 1
"""
    path = basic_config(str(tmp_path), "/dev/ttyDOESNOTEXIST", devices)
    result = subprocess.run([sys.executable, "-m", "agent.cli", "plan", path], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == ("bus line1  /dev/ttyDOESNOTEXIST  9600 baud 8E1  timeout 150 ms  turnaround 0 ms  "
                      "pause 0 ms")
    assert out[1].startswith("  device m1  test-meter  address 1  every 1 s  4 requests  ")
    assert out[2].endswith("FC03 holding 0..3 (4 regs): voltage, current, power")
    assert out[6].startswith("  cycle: 4 requests, ")
    assert "utilisation" in out[6]
