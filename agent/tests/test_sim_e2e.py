"""Against the simulator: `fieldlink sim` on ptys, `fieldlink sim-config`, the gateway polling it, a
device that stops answering (fault injected through the control channel) and comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from agent.config import load_config
from agent.gateway import Gateway
from agent.tests.fakes import RecordingUplink
from hil_tests.link import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def simulator(tmp_path):
    pytest.importorskip("simulator.cli")
    ports = os.path.join(str(tmp_path), "ports.json")
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "sim", "demo", "--instant",
                             "--ports-file", ports],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_until(lambda: os.path.exists(ports), 20):
            pytest.skip("simulator did not start")
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_gateway_polls_the_simulated_site_and_backs_off_a_silent_lamp(tmp_path, simulator):
    from simulator.control import SimClient

    out = os.path.join(str(tmp_path), "agent.toml")
    result = subprocess.run([sys.executable, "-m", "agent.cli", "sim-config", simulator, "--interval", "1",
                             "--timeout-ms", "200", "--outbox", os.path.join(str(tmp_path), "o.sqlite"),
                             "-o", out], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = load_config(out)
    with open(simulator) as f:
        ports = json.load(f)
    ids = [d["id"] for b in ports["buses"] for d in b["devices"]]
    uplink = RecordingUplink()
    gateway = Gateway(config, uplink=uplink, backoff_max=1.0)
    gateway.start()
    try:
        assert wait_until(lambda: all(uplink.count(i) for i in ids), 20), uplink.states
        with SimClient(ports["control"]) as sim:
            assert dict((r[1], r[2]) for r in uplink.readings if r[0] == "lamp-01")["dim"] == \
                pytest.approx(sim.truth("lamp-01", "dim"))
            sim.fault("lamp-02", "no_answer")
            assert wait_until(lambda: ("lamp-02", False) in [s[:2] for s in uplink.states], 15), uplink.states
            start = time.time()
            time.sleep(3.0)
            # the neighbours keep their 1 s rate while lamp-02 is silent
            assert uplink.count("lamp-01", start) >= 2 and uplink.count("lamp-03", start) >= 2
            assert uplink.count("lamp-02", start) == 0
            sim.clear("lamp-02")
            assert wait_until(lambda: uplink.states[-1][:2] == ("lamp-02", True), 15), uplink.states
        ack = gateway.scheduler.command({"device": "lamp-03", "point": "dim", "value": 0.5})
        assert ack["ok"] is True and ack["value"] == pytest.approx(0.5), ack
        refused = gateway.scheduler.command({"device": "lamp-03", "point": "voltage", "value": 1})
        assert refused["ok"] is False and "not writable" in refused["error"]
    finally:
        gateway.stop()
    counters = uplink.counters["errors"]()
    assert counters["timeout"] >= 1
