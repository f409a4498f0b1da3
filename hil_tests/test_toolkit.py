"""The technician's toolkit (issue #11) checked from the outside, as a technician would: real
`fieldlink` subprocesses against the simulated demo site, a real Mosquitto, the simulator's RFC 2217 port.

Acceptance: `run --once` exits 0 with every device and 1 naming the one made dead; `status --config`
lists every device online and, after a device is made dead, shows it offline and exits 1 (3 with no
agent); `status --broker` shows the same from the retained status and health; `read` shows energy in
kWh matching the simulator's truth; a DL/T 645 read at 9600 8N1 through RFC 2217 on the 2400 8E1 bus
fails naming baud or parity; `scan --auto` finds 2400 8E1 and the meter's address; `fieldlink modbus`
reads and writes the same registers as pymodbus.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from typing import Any

import pytest

from hil_tests.link import PYTHON, ROOT, sim_agent_config, start_agent, wait_until

pytestmark = pytest.mark.slow

METER = "000000000101"


def fieldlink(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def bus(site: Any, name: str) -> dict:
    return next(b for b in site.ports["buses"] if b["name"] == name)


def status_json(config: str) -> tuple[int, dict]:
    done = fieldlink("status", "--config", config, "--json")
    return done.returncode, (json.loads(done.stdout) if done.stdout.strip() else {})


def test_run_once_and_status_on_the_demo_site(sim_site: Any, mosquitto: Any, tmp_path: Any) -> None:
    site = sim_site("demo")
    devices = {d["id"] for d in site.devices()}
    config = sim_agent_config(site.ports_file, str(tmp_path / "agent.toml"), mosquitto.url,
                              str(tmp_path / "outbox.sqlite"), interval=1.0, timeout_ms=200,
                              settings={"gateway": {"health_interval": 1}})
    once = fieldlink("run", "--once", config)
    assert once.returncode == 0, once.stdout + once.stderr
    assert "all %d devices answered" % len(devices) in once.stdout
    table = once.stdout.splitlines()
    assert table[0].split() == ["device", "point", "value", "unit", "quality"]
    assert {line.split()[0] for line in table[1:-1]} == devices
    assert re.search(r"^flat-101-power\s+energy_import\s+\d+\.\d\d\s+kWh\s+good$", once.stdout, re.M)

    absent = fieldlink("status", "--config", config)
    assert absent.returncode == 3 and "no agent running" in absent.stderr

    agent = start_agent(config, str(tmp_path / "agent.log"))
    try:
        assert wait_until(lambda: status_json(config)[0] == 0 and all(
            d["online"] for d in status_json(config)[1]["devices"].values()), 60), agent.log()
        shown = fieldlink("status", "--config", config)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        for device in devices:
            line = r"^  %s\s+online\s+last reading \d+ s ago$" % re.escape(device)
            assert re.search(line, shown.stdout, re.M)
        assert "broker  connected to" in shown.stdout and shown.stdout.rstrip().endswith("status: all well")
        assert re.search(r"^bus meters  \S+  2400 8E1  \d+\.\d\d polls/s", shown.stdout, re.M)

        remote = fieldlink("status", "--broker", mosquitto.url, "--site", "demo", "--gateway", "gw1",
                           "--timeout", "30", "--json")
        assert remote.returncode == 0, remote.stdout + remote.stderr
        assert {d for d, s in json.loads(remote.stdout)["devices"].items() if s["online"]} == devices

        site.client.fault("lamp-03", "no_answer")
        assert wait_until(lambda: status_json(config)[0] == 1, 60), agent.log()
        shown = fieldlink("status", "--config", config)
        assert shown.returncode == 1
        assert re.search(r"^  lamp-03\s+OFFLINE since .* ago\): no reply to \d+ polls", shown.stdout, re.M)
        assert "status: lamp-03 offline since" in shown.stdout
        others = devices - {"lamp-03"}
        assert all(re.search(r"^  %s\s+online" % re.escape(d), shown.stdout, re.M) for d in others)

        def remote_offline() -> bool:
            done = fieldlink("status", "--broker", mosquitto.url, "--gateway", "gw1", "--timeout", "10",
                             "--json")
            return done.returncode == 1 and json.loads(done.stdout)["devices"]["lamp-03"]["online"] is False

        assert wait_until(remote_offline, 60)
        assert "likely_cause='no reply at all from lamp-03 at address 3" in agent.log()
    finally:
        rc = agent.interrupt(timeout=20)  # Ctrl-C: docs/cli.md says 130
    assert rc == 130, agent.log()
    gone = fieldlink("status", "--config", config)
    assert gone.returncode == 3 and "stopped" in gone.stderr

    once = fieldlink("run", "--once", config)
    assert once.returncode == 1
    assert "7 of 8 devices answered; no answer from: lamp-03" in once.stdout
    assert "FAILED: lamp-03 timeout" in once.stderr
    assert "likely cause: no reply at all from lamp-03" in once.stderr


def test_read_shows_energy_in_kwh_matching_the_simulator(sim_site: Any) -> None:
    site = sim_site("demo")
    path = bus(site, "meters")["path"]
    before = site.client.truth("flat-101-power", "energy_import")
    done = fieldlink("read", "--port", path, "--protocol", "dlt645", "--address", METER, "--parity", "N",
                     "--point", "energy_import", "--point", "voltage_a", "--point", "active_power")
    after = site.client.truth("flat-101-power", "energy_import")
    assert done.returncode == 0, done.stdout + done.stderr
    kwh = float(re.search(r"^energy_import\s+(\d+\.\d\d) kWh$", done.stdout, re.M).group(1))  # type: ignore[union-attr]
    assert round(before / 3.6e6, 2) <= kwh <= round(after / 3.6e6, 2)
    assert re.search(r"^voltage_a\s+\d+\.\d V$", done.stdout, re.M)  # the meter's 0.1 V, no float noise
    assert re.search(r"^active_power\s+\d+\.\d{4} kW$", done.stdout, re.M)
    si = fieldlink("read", "--port", path, "--protocol", "dlt645", "--address", METER, "--parity", "N",
                   "--point", "energy_import", "--si")
    assert re.search(r"^energy_import\s+\d+ J$", si.stdout, re.M), si.stdout


def test_wrong_settings_through_rfc2217_name_baud_or_parity_and_scan_auto_finds_them(sim_site: Any) -> None:
    site = sim_site("demo")
    url = bus(site, "meters")["rfc2217"]
    began = time.monotonic()
    done = fieldlink("read", "--port", url, "--protocol", "dlt645", "--address", METER, "--baud", "9600",
                     "--parity", "N")
    took = time.monotonic() - began
    assert done.returncode == 1
    assert "energy_import" in done.stdout and "ERROR timeout" in done.stdout
    assert "9600 8N1" in done.stderr and "2400 8E1" in done.stderr and "baud rate or parity" in done.stderr
    assert "more points not read: the device did not answer" in done.stdout
    assert took < 15, "a dead meter is reported after its timeout and one retry (took %.1f s)" % took

    scan = fieldlink("scan", "--port", url, "--protocol", "dlt645", "--auto", timeout=300)
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert "2400 8E1: %s (answered the wildcard read-address)" % METER in scan.stdout.splitlines()
    assert scan.stdout.splitlines()[-1] == "settings that answer: 2400 8E1"
    assert "\r" not in scan.stderr  # no progress bar into a pipe


def test_scan_interrupted_prints_what_it_found(sim_site: Any) -> None:
    site = sim_site("demo")
    proc = subprocess.Popen([PYTHON, "-m", "agent.cli", "scan", "--port", bus(site, "street")["rfc2217"],
                             "--protocol", "modbus", "--sweep", "1-247", "--timeout-ms", "150"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # units 1-4 answer at once; 5..9 take 150 ms each: stop it after the first ones surely were probed
        wait_until(lambda: proc.poll() is not None, 4.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert out.splitlines()[:4] == ["1  answers", "2  answers", "3  answers", "4  answers"]
    assert "interrupted; the above is what was found so far" in err and "Traceback" not in err


def test_fieldlink_modbus_reads_and_writes_what_pymodbus_sees(sim_site: Any) -> None:
    from pymodbus.client import ModbusSerialClient

    site = sim_site("demo")
    path = bus(site, "street")["path"]

    def pymodbus_client() -> Any:
        client = ModbusSerialClient(port=path, baudrate=9600, parity="N", stopbits=1, timeout=1)
        assert client.connect()
        return client

    done = fieldlink("modbus", path, "--unit", "1", "write", "holding", "1", "55")
    assert done.returncode == 0 and done.stdout.strip() == "written: holding 1..1", done.stderr
    client = pymodbus_client()
    try:
        got = client.read_holding_registers(0, count=4, device_id=1)
        assert not got.isError() and got.registers[1] == 55
        assert not client.write_register(1, 70, device_id=1).isError()
    finally:
        client.close()
    done = fieldlink("modbus", path, "--unit", "1", "read", "holding", "0", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "[1] 70  (0x0046)"
    assert [int(line.split()[1]) for line in lines] == [got.registers[0], 70, *got.registers[2:4]]

    # float32 of the DTSU666 (ABCD): the value printed is the IEEE 754 value of the raw words printed
    done = fieldlink("modbus", path, "--unit", "10", "read", "holding", "0x2006", "3", "--type", "f32")
    assert done.returncode == 0, done.stderr
    for line in done.stdout.splitlines():
        m = re.match(r"^\[(\d+)\] (\S+)  \(0x([0-9A-F]{4}) 0x([0-9A-F]{4})\)$", line)
        assert m, line
        value = struct.unpack(">f", bytes.fromhex(m.group(3) + m.group(4)))[0]
        assert float(m.group(2)) == pytest.approx(value, rel=1e-6) and 1500 < value < 3000  # 0.1 V units
    assert [int(line[1:].split("]")[0]) for line in done.stdout.splitlines()] == [0x2006, 0x2008, 0x200A]
    # CDAB of the same words is another number: the order is applied
    cdab = fieldlink("modbus", path, "--unit", "10", "read", "holding", "0x2006", "1", "--type", "f32",
                     "--order", "CDAB")
    assert cdab.returncode == 0 and not 1500 < abs(float(cdab.stdout.split()[1])) < 3000

    dead = fieldlink("modbus", path, "--unit", "99", "--timeout-ms", "300", "read", "holding", "0", "1")
    assert dead.returncode == 1 and "no reply at all from address 99" in dead.stderr


def test_journald_priorities_under_systemd(tmp_path: Any) -> None:
    """JOURNAL_STREAM names stderr (as systemd sets it): every log line starts with its priority."""
    config = tmp_path / "agent.toml"
    config.write_text(
        'format = 1\n[gateway]\nsite = "s"\nid = "g"\n[broker]\nhost = "127.0.0.1"\nport = 9\n'
        '[outbox]\npath = "%s"\n[[buses]]\nname = "b"\nport = "/dev/nonexistent-fieldlink"\n'
        '[[devices]]\nid = "m"\nbus = "b"\nprofile = "generic-lamp"\naddress = 1\n' % (tmp_path / "o.sqlite"))
    log = tmp_path / "journal.log"
    with open(log, "w") as err:
        st = os.fstat(err.fileno())
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", str(config)], cwd=ROOT, stderr=err,
                                stdout=subprocess.DEVNULL, env=env)
        try:
            assert wait_until(lambda: "event=port_down" in log.read_text(), 30), log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0  # SIGTERM (systemctl stop) is a clean stop: 0
    lines = [line for line in log.read_text().splitlines() if line]
    assert lines and all(re.match(r"^<[2-7]>", line) for line in lines), lines
    assert any(line.startswith("<4>WARNING fieldlink.bus bus=b port=") for line in lines)
    assert any(line.startswith("<6>INFO ") for line in lines)
    # the same command with stderr elsewhere (a shell inside the unit's environment): plain lines
    plain = fieldlink("run", "--once", str(config), env=dict(os.environ, JOURNAL_STREAM="1:1"))
    assert plain.returncode == 1 and not re.search(r"^<\d>", plain.stderr, re.M)


def test_an_echoing_adapter_is_named(sim_site: Any) -> None:
    """An adapter whose receiver hears its own transmission (DE/RE): the read works, and says so."""
    site = sim_site("demo")
    site.client.fault("bus:street", "echo")
    done = fieldlink("read", "--port", bus(site, "street")["path"], "--protocol", "modbus", "--profile",
                     "pressure-sensor", "--address", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^pressure\s+\d+\.\d kPa$", done.stdout, re.M)
    assert "our own request came back before the reply (the adapter hears itself: DE/RE)" in done.stderr
    silent = fieldlink("read", "--port", bus(site, "street")["path"], "--protocol", "modbus", "--profile",
                       "pressure-sensor", "--address", "99", "--retries", "0", "--timeout-ms", "300")
    assert silent.returncode == 1
    assert "only our own request came back" in silent.stdout and "DE/RE" in silent.stderr


def test_scan_that_finds_nothing_names_port_settings_and_auto(sim_site: Any) -> None:
    site = sim_site("demo")
    url = bus(site, "street")["rfc2217"]
    done = fieldlink("scan", "--port", url, "--protocol", "modbus", "--sweep", "40-42")
    assert done.returncode == 1
    assert "no device found on %s (9600 8N1)" % bus(site, "street")["rfc2217"] in done.stderr
    assert "--auto" in done.stderr
