"""`fieldlink sim` as a real subprocess: ports file, a poll over the pty, SIGINT, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from pymodbus.client import ModbusSerialClient

from simulator.control import SimClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fieldlink_sim_runs_until_interrupted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ports = tmp_path / "ports.json"
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "sim", "demo", "--instant", "--speed", "10",
         "--ports-file", str(ports)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ports.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert ports.exists(), proc.stderr.read() if proc.poll() is not None else "no ports file"  # type: ignore[union-attr]
        info = json.loads(ports.read_text())
        buses = {b["name"]: b for b in info["buses"]}
        street = buses["street"]
        assert street["baud"] == 9600 and street["framing"] == "8N1" and os.path.exists(street["path"])
        assert buses["meters"]["framing"] == "8E1" and buses["meters"]["parity"] == "E"
        meter = next(d for d in street["devices"] if d["profile"] == "dtsu666")
        assert meter["protocol"] == "modbus" and isinstance(meter["address"], int)
        client = ModbusSerialClient(port=street["path"], baudrate=9600, timeout=3, retries=2)
        assert client.connect()
        rr = client.read_holding_registers(0x2006, count=2, device_id=meter["address"])
        client.close()
        assert not rr.isError()
        volts = client.convert_from_registers(rr.registers, client.DATATYPE.FLOAT32) * 0.1  # type: ignore[operator]
        assert 200 < volts < 245
        with SimClient(info["control"]) as sim:
            assert sim.counters(meter["id"])["devices"][meter["id"]]["answered"] >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "street" in out and street["path"] in out
    assert ports.exists() and keep.read_text() == "mine"


def test_bad_scenario_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[bus]]\nname = 'x'\n")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "sim", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bad.toml" in proc.stderr and "bus[0].device" in proc.stderr
