"""`make bench` keeps working: the quick run completes and reports every row of issue #12 (no timing is
asserted: figures from a smoke run on a shared machine mean nothing, docs/benchmarks.md has real ones)."""

import os
import re
import subprocess
import sys

import pytest

from hil_tests.broker import find_mosquitto
from hil_tests.link import ROOT

pytestmark = pytest.mark.slow

ROWS = (
    # codec
    "compact <= 12 B/reading -> met", "SenML-CBOR, units in birth", "ThingsBoard-style", "CBOR encode",
    "CBOR decode", "Modbus RTU build", "Modbus RTU parse",
    # poll CPU on a pty, three clients
    "Client CPU per Modbus RTU poll", "FieldLink link + driver", "sync client",
    "bare pyserial write/read loop",
    # agent CPU end to end and its peers
    "Agent CPU end to end", "FieldLink agent", "pymodbus sync client, reads only",
    "agent CPU per Modbus transaction vs pymodbus reads only", "agent CPU per 1k readings vs ThingsBoard",
    # latency and payload bytes on the demo and street sites
    "Reading -> broker latency", "p99 s", "Payload bytes per reading at field rates",
    "SenML-CBOR as published",
    "compact, same packs", "ThingsBoard gateway JSON, same readings",
    # throughput, reconnect and birth, scale
    "Readings/s under load with the durable outbox", "acknowledged by the broker",
    "Back online after the broker returns", "first new publish", "on status at reconnect",
    "back online: worst",
    "How costs grow with devices", "peak RSS", "birth B",
)


def test_bench_quick_run_reports_every_row(tmp_path: object) -> None:
    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed, but CI must run the benchmark smoke test")
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto)")
    done = subprocess.run([sys.executable, "-m", "hil_tests.bench", "--quick", "--dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ROWS:
        assert row in out, "row %r missing from the report:\n%s" % (row, out)
    # the machine and versions are printed; each site row has numbers
    assert re.search(r"machine: .+ cores", out) and "versions: Python" in out
    for site in ("demo", "street"):
        assert re.search(r"^  %s +\d+ +[\d.]+ +[\d.]+ +[\d.]+" % site, out, re.M), site
    for devices in (10, 100):
        assert re.search(r"^ +%d +[\d.]+ +[\d.]+ " % devices, out, re.M), devices
    # the ThingsBoard gateway is measured when installed, and said to be missing otherwise
    assert "ThingsBoard IoT Gateway 3.8.5" in out or "peer not installed: run make bench-peers" in out
