"""docs/troubleshooting.md stays true: every example block in it is made here by the simulator
(simulator/scenarios/faults.toml: one bus per case, reached through its RFC 2217 port) and checked
against what `fieldlink read`, `fieldlink status` and the `…/health` message show now.

Each block in the guide is marked `<!-- example NAME -->` before its fence. Comparison is by shape:
port numbers, times, counts, values and hex dumps change from run to run, so every number (and every hex
word with a digit) compares as one digit and runs of spaces as one space; every line of the guide's
block must be a line of the output (a line ending in `…` a prefix of one), so a block may keep only the
lines that make its point. `FIELDLINK_WRITE_EXAMPLES=1 pytest hil_tests/test_troubleshooting.py` writes
the whole output of this run into the blocks instead (then trim them and read the diff before committing).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from typing import Any

import pytest
import serial

from hil_tests.link import PYTHON, ROOT, start_agent, wait_until
from protocols import cbor, modbus

pytestmark = pytest.mark.slow

DOC = os.path.join(ROOT, "docs", "troubleshooting.md")
SCENARIO = os.path.join(ROOT, "simulator", "scenarios", "faults.toml")
BLOCK = re.compile(r"(<!-- example (\S+) -->\n```\n)(.*?)(```\n)", re.S)
WRITE = os.environ.get("FIELDLINK_WRITE_EXAMPLES") == "1"


def shape(line: str) -> str:
    line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
    # a CRC or checksum is a value even when its hex digits are all letters (fccb: one 4-digit CRC in 50)
    line = re.sub(r"\b(expected|got|says|computed) [0-9a-fA-F]{2,4}\b", r"\1 0", line)
    line = re.sub(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]+\b", "0", line)  # counts, times, hex dumps, CRCs
    line = re.sub(r"\d+", "0", line)
    return re.sub(r"\s+", " ", line).strip()


def test_shape_hides_every_value() -> None:
    """The guide's examples are compared by shape: counts, times, ports, hex dumps and CRCs differ from
    run to run (a CRC of letters only, such as fccb, made the clash example fail in CI)."""
    doc = "pressure     ERROR crc: response CRC mismatch: expected fff4, got af84 in 1604040c0a007baf84"
    now = "pressure     ERROR crc: response CRC mismatch: expected fccb, got f814 in 160404008a008ff814"
    assert shape(doc) == shape(now)
    assert shape("frame says AB, computed 5C") == shape("frame says 1D, computed FE")
    assert shape("a response header") == "a response header"  # words are kept


def fieldlink(*args: str) -> str:
    done = subprocess.run(
        [PYTHON, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return "\n".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())


def ports_of(site: Any) -> dict[str, str]:
    return {b["name"]: b["rfc2217"] for b in site.ports["buses"]}


class SecondMaster:
    """Another master on a bus: polls Modbus unit 30 through the raw TCP device server, on its own thread."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, timeout=0.2)
        self.stop = threading.Event()
        self.polls = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        request = modbus.rtu_frame(30, modbus.read_request(3, 0, 2))
        while not self.stop.is_set():
            self.port.write(request)
            self.port.read(64)
            self.polls += 1
            self.stop.wait(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.port.close()


def bus_lines(status: str, name: str) -> str:
    """The bus line of `fieldlink status` and the device lines under it."""
    out, inside = [], False
    for line in status.splitlines():
        if line.startswith("bus "):
            inside = line.startswith("bus %s " % name)
        elif line.startswith("status:"):
            inside = False
        if inside:
            out.append(line)
    return "\n".join(out)


def health_of(message: dict, name: str) -> str:
    bus = message["buses"][name]
    keep = {k: bus[k] for k in ("port_up", "errors", "online", "offline", "devices")}
    keep["link"] = {k: v for k, v in bus["link"].items() if k in ("line_errors", "skipped_frames", "echoes")}
    return json.dumps(keep, sort_keys=True, indent=1)


def agent_config(tmp: str, ports: dict[str, str], broker: str) -> str:
    """The gateway as installed with each case's mistake: the wrong baud on meters-a, the wrong parity on
    meters-b, a Modbus unit nobody has on shared."""
    text = [
        "format = 1",
        "[gateway]",
        'site = "faults"',
        'id = "gw1"',
        "health_interval = 1",
        "[broker]",
        'host = "127.0.0.1"',
        "port = %s" % broker.rpartition(":")[2],
        "[outbox]",
        'path = "%s/outbox.sqlite"' % tmp,
    ]
    buses = [
        ("meters-a", 9600, "E", 500),
        ("meters-b", 2400, "N", 500),
        ("swapped", 9600, "N", 300),
        ("long", 9600, "N", 300),
        ("clash", 9600, "N", 300),
        ("shared", 9600, "N", 300),
    ]
    for name, baud, parity, timeout in buses:
        text += [
            "[[buses]]",
            'name = "%s"' % name,
            'port = "%s"' % ports[name],
            "baud = %d" % baud,
            'parity = "%s"' % parity,
            "timeout_ms = %d" % timeout,
        ]
    devices = [
        ("flat-101-power", "meters-a", "dlt645-3p", '"000000000101"'),
        ("flat-102-power", "meters-b", "dlt645-3p", '"000000000102"'),
        ("pump-pressure", "swapped", "pressure-sensor", "20"),
        ("far-pressure", "long", "pressure-sensor", "21"),
        ("pressure-a", "clash", "pressure-sensor", "22"),
        ("tank-level", "shared", "level-sensor", "30"),
        ("tank-level-2", "shared", "level-sensor", "31"),
    ]
    for device, bus, profile, address in devices:
        text += [
            "[[devices]]",
            'id = "%s"' % device,
            'bus = "%s"' % bus,
            'profile = "%s"' % profile,
            "address = %s" % address,
        ]
        if profile == "dlt645-3p":  # a meter at 2400 baud: a few points, polled every 5 s
            text += ['points = ["energy_import", "voltage_a"]', "interval = 5"]
        else:
            text += ["interval = 1"]
    path = os.path.join(tmp, "gateway.toml")
    with open(path, "w") as f:
        f.write("\n".join(text) + "\n")
    return path


def make_examples(site: Any, broker: Any, tmp: str) -> dict[str, str]:
    ports = ports_of(site)
    sockets = {b["name"]: b["socket"] for b in site.ports["buses"]}
    ex: dict[str, str] = {}
    ex["read-no-reply"] = fieldlink(
        "read",
        "--port",
        ports["meters-a"],
        "--protocol",
        "dlt645",
        "--address",
        "000000000199",
        "--point",
        "energy_import",
        "--point",
        "voltage_a",
    )
    ex["read-wrong-baud"] = fieldlink(
        "read",
        "--port",
        ports["meters-a"],
        "--protocol",
        "dlt645",
        "--address",
        "000000000101",
        "--baud",
        "9600",
        "--point",
        "energy_import",
        "--point",
        "voltage_a",
    )
    ex["scan-auto"] = fieldlink(
        "scan", "--port", ports["meters-a"], "--protocol", "dlt645", "--auto", "--parity", "E"
    )
    ex["read-wrong-parity"] = fieldlink(
        "read",
        "--port",
        ports["meters-b"],
        "--protocol",
        "dlt645",
        "--address",
        "000000000102",
        "--parity",
        "N",
        "--point",
        "energy_import",
    )
    ex["read-swapped"] = fieldlink(
        "read",
        "--port",
        ports["swapped"],
        "--protocol",
        "modbus",
        "--profile",
        "pressure-sensor",
        "--address",
        "20",
    )
    ex["read-unterminated"] = "\n".join(
        fieldlink(
            "read",
            "--port",
            ports["long"],
            "--protocol",
            "modbus",
            "--profile",
            "pressure-sensor",
            "--address",
            "21",
            "--retries",
            "0",
        )
        for _ in range(12)
    )
    ex["read-clash"] = fieldlink(
        "read",
        "--port",
        ports["clash"],
        "--protocol",
        "modbus",
        "--profile",
        "pressure-sensor",
        "--address",
        "22",
    )
    master = SecondMaster(sockets["shared"])
    try:
        assert wait_until(lambda: master.polls > 5, 20)
        ex["read-two-masters"] = fieldlink(
            "read",
            "--port",
            ports["shared"],
            "--protocol",
            "modbus",
            "--profile",
            "level-sensor",
            "--address",
            "30",
            "-v",
        )
        config = agent_config(tmp, ports, broker.url)
        health: list[Any] = []
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_message = lambda c, u, m: health.append(cbor.loads(bytes(m.payload)))
        host, _, port = broker.url.rpartition(":")
        client.connect(host, int(port))
        client.subscribe("fieldlink/faults/gw1/health", qos=1)
        client.loop_start()
        agent = start_agent(config, os.path.join(tmp, "agent.log"))
        # the states the guide shows: pressure-a too (its replies collide with pressure-b's, so it is
        # offline once three polls failed, and stays so)
        offline = {"flat-101-power", "flat-102-power", "pump-pressure", "tank-level-2", "pressure-a"}
        try:

            def settled() -> bool:
                if not health:
                    return False
                devices = {d: s for b in health[-1]["buses"].values() for d, s in b["devices"].items()}
                long = health[-1]["buses"]["long"]["errors"]
                clash = health[-1]["buses"]["clash"]["errors"]
                return (
                    all(devices[d]["online"] is False for d in offline)
                    and devices["far-pressure"]["online"]
                    and devices["tank-level"]["online"]
                    and long.get("crc", 0) >= 2
                    and clash.get("crc", 0) >= 3
                    and health[-1]["buses"]["shared"]["errors"].get("frame", 0) >= 1
                )

            if not wait_until(settled, 90):
                # what the simulator did on the clash bus, should pressure-a have been read cleanly
                clash = {d: site.client.counters(d) for d in ("pressure-a", "pressure-b")}
                raise AssertionError("not settled: health %s\nsimulator, clash bus: %s\n%s" % (
                    json.dumps(health[-1] if health else None, sort_keys=True), clash, agent.log()[-3000:]))
            status = fieldlink("status", "--config", config)
            last = health[-1]
        finally:
            agent.stop()
            client.loop_stop()
            client.disconnect()
    finally:
        master.close()
    for case, bus in (
        ("wrong-baud", "meters-a"),
        ("wrong-parity", "meters-b"),
        ("swapped", "swapped"),
        ("unterminated", "long"),
        ("clash", "clash"),
        ("two-masters", "shared"),
    ):
        ex["status-" + case] = bus_lines(status, bus)
        ex["health-" + case] = health_of(last, bus)
    ex["status-summary"] = status.splitlines()[-1]
    return ex


def check_block(name: str, block: str, output: str) -> list[str]:
    """The lines of the guide's block that the output does not show (by shape)."""
    if name.startswith("health-"):
        doc, live = json.loads(block), json.loads(output)
        missing = []
        if set(doc) != set(live):
            missing.append("keys %s != %s" % (sorted(doc), sorted(live)))
        for device, state in doc.get("devices", {}).items():
            if live.get("devices", {}).get(device, {}).get("online") != state["online"]:
                missing.append("%s online %s" % (device, state["online"]))
        for kind in doc.get("errors", {}):
            if kind not in live.get("errors", {}):
                missing.append("errors.%s" % kind)
        return missing
    shapes = [shape(line) for line in output.splitlines()]
    missing = []
    for line in block.splitlines():
        want = shape(line)
        if want.endswith("…"):
            if not any(s.startswith(want[:-1].rstrip()) for s in shapes):
                missing.append(line)
        elif want and want not in shapes:
            missing.append(line)
    return missing


def test_the_troubleshooting_examples_are_what_the_tools_show(
    sim_site: Any, mosquitto: Any, tmp_path: Any
) -> None:
    site = sim_site(SCENARIO)
    examples = make_examples(site, mosquitto, str(tmp_path))
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    names = [m.group(2) for m in BLOCK.finditer(text)]
    assert set(names) == set(examples), "guide blocks %s, made %s" % (sorted(names), sorted(examples))
    if WRITE:
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(
                BLOCK.sub(lambda m: m.group(1) + examples[m.group(2)].rstrip("\n") + "\n" + m.group(4), text)
            )
        return
    wrong = {}
    for m in BLOCK.finditer(text):
        missing = check_block(m.group(2), m.group(3), examples[m.group(2)])
        if missing:
            wrong[m.group(2)] = (missing, examples[m.group(2)])
    assert not wrong, "\n\n".join(
        "%s: not shown now: %s\nnow:\n%s" % (k, v[0], v[1]) for k, v in wrong.items()
    )
    # and the facts the guide draws from them
    assert "9600 8E1 but the profile says 2400 8E1" in examples["read-wrong-baud"]
    assert "2400 8N1 but the profile says 2400 8E1" in examples["read-wrong-parity"]
    assert "2400 8E1: 000000000101" in examples["scan-auto"]
    assert "ERROR crc" in examples["read-clash"] and "collide" in examples["read-clash"]
    assert "ERROR crc" in examples["read-unterminated"] and re.search(
        r"^pressure\s+\d", examples["read-unterminated"], re.M
    )
