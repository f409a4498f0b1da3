"""The CLI as real subprocesses against fake devices on ptys: read, scan, run (SIGTERM), sim-config."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from agent.tests.conftest import METER_REGISTERS, basic_config, write_config
from agent.tests.fakes import FakeMeter645, FakeModbus
from hil_tests.buses import PtyBus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fieldlink(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True,
                          text=True,
                          timeout=timeout)


def test_read_modbus_prints_values_with_units_and_hex_when_verbose(fake_bus, profile_dir):
    fake_bus.devices[5] = FakeModbus(METER_REGISTERS)
    result = fieldlink("read", "--port", fake_bus.path, "--protocol", "modbus", "--profile", "test-meter",
                       "--profiles-dir", profile_dir, "--address", "5", "--point", "voltage",
                       "--point", "power",
                       "--verbose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "modbus test-meter at 5 on %s (9600 8E1)" % fake_bus.path
    assert "  tx 05 03 00 00 00 04 45 8D" in lines
    assert "voltage  230.1 V" in lines and "power    -0.200 kW" in lines  # units people read


def test_read_dlt645_reports_unavailable_points():
    fake = PtyBus("dlt645")
    try:
        fake.devices["m"] = FakeMeter645("000000000161", {"02010100": bytes.fromhex("0123"),
                                                          "02020100": bytes.fromhex("FFFFFF")})
        result = fieldlink("read", "--port", fake.path, "--protocol", "dlt645", "--address", "161",
                           "--point", "voltage_a", "--point", "current_a", "--point", "energy_import",
                           "--timeout-ms", "300")
        assert result.returncode == 1
        out = result.stdout
        assert "dlt645 dlt645-3p at 000000000161 on %s (2400 8E1)" % fake.path in out
        assert "voltage_a      230.1 V" in out
        assert "current_a      BAD not_available" in out
        assert "energy_import  ERROR abnormal: " in out
    finally:
        fake.close()


def test_scan_finds_modbus_units_with_a_progress_bar_only_on_a_terminal(fake_bus):
    for unit in (3, 17):
        fake_bus.devices[unit] = FakeModbus({0: 1})
    result = fieldlink("scan", "--port", fake_bus.path, "--protocol", "modbus", "--sweep", "1-20",
                       "--timeout-ms", "40")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["3  answers", "17  answers"]
    assert "\r" not in result.stderr and "[#" not in result.stderr  # a log or a pipe gets plain lines
    # stderr on a terminal (a pty we own for the whole run): the bar is drawn there
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "scan", "--port", fake_bus.path,
                                 "--protocol", "modbus", "--sweep", "1-20", "--timeout-ms", "40"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=slave, text=True)
        out, _ = proc.communicate(timeout=60)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                break
            chunk = os.read(master, 65536)
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0 and out.splitlines() == ["3  answers", "17  answers"]
    assert b"\r[" in seen and b"[##############################] 20/20 found 2" in seen


def test_scan_dlt645_uses_the_wildcard_read_address():
    fake = PtyBus("dlt645")
    try:
        fake.devices["m"] = FakeMeter645("000000000161", {})
        result = fieldlink("scan", "--port", fake.path, "--protocol", "dlt645", "--timeout-ms", "300")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["000000000161  answered the wildcard read-address"]
    finally:
        fake.close()


def test_run_polls_into_the_outbox_and_exits_cleanly_on_sigterm(tmp_path, profile_dir, fake_bus):
    fake_bus.devices[1] = FakeModbus(METER_REGISTERS)
    path = basic_config(str(tmp_path), fake_bus.path, """
[broker]
host = "127.0.0.1"
port = 9

[batch]
max_age = 0.2

[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 0.2
points = ["voltage", "power"]
""")
    log_path = os.path.join(str(tmp_path), "run.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", path], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "device=m1 event=online" not in open(log_path).read():
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = open(log_path).read()
    assert "bus=line1 device=m1 event=online reason='answering'" in text
    assert "event=signal signal=SIGTERM" in text and "event=stopped polls=" in text
    db = sqlite3.connect(os.path.join(str(tmp_path), "outbox.sqlite"))
    try:
        rows = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    assert rows >= 1


def test_run_rejects_a_bad_config_with_its_errors(tmp_path):
    path = write_config(str(tmp_path), "format = 1\n[gateway]\nsite = \"s\"\nid = \"g\"\nbogus = 1\n")
    result = fieldlink("run", path)
    assert result.returncode == 2
    assert result.stderr.startswith("%s:5: gateway.bogus: unknown key; expected one of: site, " % path)


def test_sim_config_writes_a_config_check_config_accepts(tmp_path):
    ports = {"scenario": "/x/demo.toml", "site": "demo site", "buses": [
        {"name": "rs485-1", "path": "/dev/ttyFAKE1", "baud": 2400, "parity": "E", "stopbits": 1, "devices": [
            {"id": "em-1", "protocol": "dlt645", "address": "000000000161", "profile": "dlt645-3p"},
            {"id": "wm-1", "protocol": "cjt188", "address": "12345678901234", "profile": "cjt188-water"}]},
        {"name": "net", "path": None, "tcp": "127.0.0.1:5020", "devices": []}]}
    ports_file = os.path.join(str(tmp_path), "ports.json")
    with open(ports_file, "w") as f:
        json.dump(ports, f)
    out = os.path.join(str(tmp_path), "agent.toml")
    result = fieldlink("sim-config", ports_file, "--broker", "127.0.0.1:1884", "--gateway", "gw7", "-o", out)
    assert result.returncode == 0, result.stderr
    text = open(out).read()
    assert 'site = "demo-site"' in text and 'port = "tcp://127.0.0.1:5020"' in text
    check = fieldlink("check-config", out)
    assert check.returncode == 0, check.stderr
    assert "OK (2 buses, 2 devices, 0 rules)" in check.stdout


@pytest.mark.parametrize("args", [["read", "--port", "/dev/nonexistent-tty", "--protocol", "dlt645",
                                   "--address", "1"]])
def test_read_on_a_missing_port_says_so(args):
    result = fieldlink(*args)
    assert result.returncode == 1
    assert "cannot open /dev/nonexistent-tty" in result.stderr
