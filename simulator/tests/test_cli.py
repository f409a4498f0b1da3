"""`fieldlink sim` as a real subprocess: ports file, a poll over the pty, SIGINT, clean exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import serial
from pymodbus.client import ModbusSerialClient

from protocols import dlt645
from simulator.control import SimClient
from simulator.tests.conftest import read_frame, read_silence

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
        # every bus is also served over RFC 2217 and raw TCP on loopback
        meters = buses["meters"]
        assert meters["rfc2217"].startswith("rfc2217://127.0.0.1:") and meters["socket"].startswith("socket://")
        e645 = next(d for d in meters["devices"] if d["protocol"] == "dlt645")
        request = dlt645.read_request(e645["address"], "00010000")
        with serial.serial_for_url(meters["rfc2217"], baudrate=2400, parity="E", timeout=3) as port:
            port.write(request)
            frame = read_frame(port, dlt645.Dlt645FrameReader(), timeout=10)
            assert frame is not None and dlt645.parse_read_reply(frame, "00010000")  # type: ignore[arg-type]
            port.apply_settings({"baudrate": 9600, "parity": "N"})  # the acceptance case: a wrong line
            port.reset_input_buffer()
            port.write(request)
            assert read_silence(port, 1.0) == b""
            with SimClient(info["control"]) as sim:
                client = next(c for c in sim.line("meters")["clients"] if c["name"] == "rfc2217")
            assert client["client"] == "9600 8N1" and client["bus"] == "2400 8E1"
            assert client["counts"]["to_devices"]["bytes"] == 2 * len(request)
            assert client["counts"]["to_devices"]["dropped"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err  # docs/cli.md: interrupted
    assert "street" in out and street["path"] in out and meters["rfc2217"] in out
    assert ports.exists() and keep.read_text() == "mine"


def test_bad_scenario_exits_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[bus]]\nname = 'x'\n")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "sim", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bad.toml" in proc.stderr and "bus[0].device" in proc.stderr
