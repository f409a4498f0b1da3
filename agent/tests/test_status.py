"""`fieldlink status --config` reading the state file a running agent keeps beside its outbox (written
here as the agent writes it, with this test's pid standing for the agent's), and its exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from agent.config import load_config
from agent.status_file import StatusFile, status_path
from agent.tests.conftest import basic_config
from agent.uplink_state import StateFile, state_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def state(now: float, online: bool = True, connected: bool = True) -> dict:
    return {
        "format": 1,
        "running": True,
        "started": now - 3700,
        "site": "test-site",
        "gateway": "gw1",
        "broker": {"connected": connected, "since": now - 600, "url": "127.0.0.1:1883", "endpoint": None},
        "outbox": {"packs": 2, "bytes": 900, "records": 40, "dropped": 0},
        "buses": {
            "line1": {
                "port": "/dev/ttyUSB0",
                "line": "2400 8E1",
                "port_up": True,
                "polls": 90,
                "polls_per_s": 0.5,
                "errors": {"crc": 2},
                "echoes": 0,
                "line_errors": 3,
            }
        },
        "devices": {
            "m1": {
                "bus": "line1",
                "online": True,
                "since": now - 3600,
                "reason": "answering",
                "last_ok": now - 4,
                "failing_points": {"energy_import_t4": "implausible"},
                "alarms": [
                    {
                        "point": "voltage_a",
                        "kind": "threshold",
                        "value": 253.1000061035156,
                        "unit": "V",
                        "resolution": 0.1,
                        "since": now - 60,
                    }
                ],
            },
            "m2": {
                "bus": "line1",
                "online": online,
                "since": now - 125,
                "reason": "answering"
                if online
                else "no reply to 3 polls (timeout: line1: no reply within 150 ms)",
                "last_ok": now - 130,
                "failing_points": {},
                "alarms": [],
            },
        },
    }


def write(config_path: str, data: dict) -> str:
    config = load_config(config_path)
    path = status_path(config.outbox.path)
    assert path is not None
    assert StatusFile(path, lambda: data).write(data)
    assert os.stat(path).st_mode & 0o777 == 0o600
    return path


def test_status_reads_the_state_file_and_follows_the_exit_codes(tmp_path, profile_dir) -> None:
    config = basic_config(str(tmp_path), "/dev/ttyUSB0")
    assert status("--config", config).returncode == 3  # no state file: no agent
    now = time.time()
    path = write(config, state(now))
    done = status("--config", config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("gateway test-site/gw1  up 61 min  pid %d" % os.getpid())
    assert lines[1] == "  broker  connected to 127.0.0.1:1883 for 10 min"
    assert lines[2] == "  outbox  2 packs, 40 readings waiting, 0 dropped"
    assert lines[3] == "bus line1  /dev/ttyUSB0  2400 8E1  0.50 polls/s  crc 2"
    assert re.fullmatch(r"  m1 {19}online   last reading \d+ s ago", lines[4])  # 4 s when written
    assert "      point energy_import_t4: implausible" in lines
    assert "      ALARM threshold voltage_a = 253.1 V since" in done.stdout  # no float noise
    assert lines[-1] == "status: all well"

    write(config, state(now, online=False))
    done = status("--config", config)
    assert done.returncode == 1
    assert (
        "  m2                   OFFLINE since" in done.stdout
        and "(2 min ago): no reply to 3 polls" in done.stdout
    )
    report = json.loads(status("--config", config, "--json").stdout)
    assert report["exit"] == 1 and report["problems"][0].startswith("m2 offline since ")

    write(config, state(now, connected=False))
    done = status("--config", config)
    assert done.returncode == 1 and "broker  NOT connected since" in done.stdout

    # an SD card gone read-only: the packs are held in memory; the technician sees it and the exit says so
    broken = state(now)
    broken["outbox"].update(state="read_only", error="attempt to write a readonly database", held_packs=7,
                            sync_failures=3)
    write(config, broken)
    done = status("--config", config)
    assert done.returncode == 1, done.stdout
    assert ("  outbox  2 packs, 40 readings waiting, 0 dropped  DISK READ ONLY: 7 packs held in memory, "
            "3 failed fsyncs") in done.stdout.splitlines()
    assert ("outbox read_only: the file system is read-only (attempt to write a readonly database): new "
            "packs are held in memory (7 now) and lost if the power goes") in done.stdout
    write(config, state(now, connected=False))

    # the uplink's own state file, written by the publisher's StateFile (agent/uplink_state.py) the moment
    # the connection changes, names the endpoint in use
    StateFile(state_path(load_config(config).outbox.path)).write(
        {"connected": True, "endpoint": "mqtts://b.example:8883", "since": time.time() - 300})
    done = status("--config", config)
    assert done.returncode == 0 and "connected to mqtts://b.example:8883 for 5 min" in done.stdout

    # minutes, not seconds: the subprocess may start late on a busy machine
    now = time.time()
    stale = state(now)
    write(config, stale)
    data = json.load(open(path))
    data["updated"] = now - 300
    with open(path, "w") as f:
        json.dump(data, f)
    done = status("--config", config)
    assert done.returncode == 1 and "has not renewed its state for 5 min" in done.stdout

    stopped = state(now)
    stopped["running"] = False
    write(config, stopped)
    done = status("--config", config)
    assert done.returncode == 3 and "no agent running" in done.stderr and "stopped" in done.stderr


def test_the_state_from_the_health_parts_it_reads_equals_the_state_from_the_whole_map(
        tmp_path, profile_dir) -> None:
    """A status round asks the uplink for `HEALTH_PARTS` only (not every counter, the scheduler's whole map
    three times): the state it builds is the one the whole health map gives, figure for figure."""
    from agent.gateway import Gateway
    from agent.status_file import HEALTH_PARTS, build

    devices = "".join(
        '\n[[devices]]\nid = "m%d"\nbus = "line1"\nprofile = "dlt645-1p"\n'
        'address = "00000000000%d"\n' % (i, i)
        for i in (1, 2))
    config = load_config(basic_config(str(tmp_path), "/dev/ttyFAKE0", devices))
    gateway = Gateway(config)
    uplink = gateway.uplink
    outbox = uplink.outbox  # type: ignore[attr-defined]
    publisher = uplink.publisher  # type: ignore[attr-defined]
    try:
        # a figure that is not its default in every part the state shows
        outbox.max_bytes = 50
        outbox.put("t", b"x" * 100, records=5)  # larger than max_bytes: dropped, counted
        outbox.max_bytes = 10_000
        outbox.put("t", b"y" * 20, records=3)
        publisher.connected = True
        publisher._endpoint = config.broker.endpoint_list()[0]
        publisher._since = 1796560001.0

        whole = uplink.counters  # type: ignore[attr-defined]
        part = uplink.counters_of(HEALTH_PARTS)  # type: ignore[attr-defined]
        assert set(part) == {"gateway", "site", "time", "uptime", *HEALTH_PARTS}
        assert set(whole) > set(part)  # polls, errors, buses, commands were not collected
        counters = gateway.scheduler.counters()
        state_part = build(config, counters, part, {}, 5.0, {"line1": 0.5}, 1.0)
        assert state_part == build(config, counters, whole, {}, 5.0, {"line1": 0.5}, 1.0)
        assert state_part["outbox"] == {"packs": 1, "bytes": 20, "records": 3, "dropped": 5, "state": "ok",
                                        "error": None, "held_packs": 0, "sync_failures": 0}
        assert state_part["broker"]["connected"] is True and state_part["broker"]["since"] == 1796560001.0
        assert state_part["broker"]["endpoint"] == whole["mqtt"]["endpoint"] is not None
        assert set(state_part["devices"]) == {"m1", "m2"}

        state_of_round = gateway._status()  # what the status thread writes
        assert state_of_round["outbox"] == state_part["outbox"]
        assert state_of_round["broker"] == state_part["broker"]
    finally:
        publisher.connected = False
        outbox.close()


def test_a_clock_that_is_not_set_is_a_problem() -> None:
    """A Pi without a clock battery and without NTP reads 1970: readings would carry that time (the
    gateway's own state, or its health read from a broker at a desk whose clock is right)."""
    from agent.commands.status import verdict

    now = time.time()
    fine = state(now)
    assert verdict(fine, now) == (0, [])
    unset = state(now)
    unset["updated"] = 600.0
    code, problems = verdict(unset, now)
    assert code == 1 and problems == [
        "the gateway's clock is not set (it reads 1970-01-01 00:10 UTC): readings carry that time and "
        "commands with an expiry are refused; set it by NTP (on a Pi: timedatectl set-ntp true)"]


def test_a_boards_clock_that_it_says_is_not_set_is_a_problem() -> None:
    """An RP2040 starts its clock at 2021-01-01: a time no fixed year tells from a set clock. The board
    judges by its config's floor (firmware_py/clock.py) and says so in its health (`clock.set`)."""
    from agent.commands.status import from_health, verdict

    now = time.time()
    board_clock: dict = {"set": False, "floor": int(now) - 86400, "mended": 0, "unmended": 0,
                         "waiting": False}
    health = {"gateway": "fw-01", "site": "lab", "time": 1609459260, "connected": True, "clock": board_clock}
    code, problems = verdict(from_health({"online": True}, health, "b:1883"), now)
    assert code == 1 and problems == [
        "the board's clock is not set (it reads 2021-01-01 00:01 UTC): NTP has not answered since power-up; "
        "schedules wait, relay commands and commands with an expiry are refused, and readings are stamped "
        "from 2000-01-01 until NTP answers (then mended); check its network's NTP server (--ntp-host)"]
    board_clock["waiting"] = True  # connected, its readings wait in the ring for NTP (firmware_py/uplink.py)
    _code, problems = verdict(from_health({"online": True}, health, "b:1883"), now)
    assert "(then mended; they wait for it in the board's ring now, up to 10 min); check" in problems[0]
    board_clock["set"] = True
    health["time"] = int(now)
    assert verdict(from_health({"online": True}, health, "b:1883"), now) == (0, [])
