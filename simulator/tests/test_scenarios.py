"""Every shipped scenario starts and stops cleanly; bad scenarios say which file and key is wrong."""

from __future__ import annotations

import os
import threading
import tomllib

import pytest

from simulator.scenario import ScenarioError, load, parse, shipped_names
from simulator.site import Site


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_four_scenarios_ship() -> None:
    assert {"street", "block", "pumphouse", "demo"} <= set(shipped_names())


@pytest.mark.parametrize("name", ["street", "block", "pumphouse", "demo"])
def test_scenario_starts_and_stops_cleanly(name: str) -> None:
    threads, fds = threading.active_count(), open_fds()
    site = Site(load(name), instant=True, start=1717200000.0)
    site.start()
    try:
        info = site.describe()
        assert info["control"] and all(os.path.exists(b["path"]) for b in info["buses"])
        for device in site.devices.values():
            values = [device.truth(p, site.clock.now()) for p in device.profile.point_names()]
            assert None not in values
    finally:
        site.stop()
    assert threading.active_count() == threads
    assert open_fds() == fds


def test_scenario_sizes() -> None:
    street = load("street")
    assert sum(len(b.devices) for b in street.buses) == 42
    kinds = [d.profile for b in street.buses for d in b.devices]
    assert kinds.count("generic-lamp") == 40 and "lighting-cabinet" in kinds and "dtsu666" in kinds
    block = load("block")
    assert len(block.buses) == 4
    profiles = [d.profile for b in block.buses for d in b.devices]
    assert sum(p.startswith("dlt645") for p in profiles) == 48 and profiles.count("cjt188-water") == 48


@pytest.mark.parametrize("text,where", [
    ("[[bus]]\nname = 'a'\n", "bus[0].device"),
    ("[site]\nspeed = -1\n[[bus]]\n[[bus.device]]\nid='x'\nprofile='dtsu666'\naddress=1\n", "site.speed"),
    ("[[bus]]\nline = '2400 8Q1'\n[[bus.device]]\nid='x'\nprofile='dtsu666'\naddress=1\n", "bus[0].line"),
    ("[[bus]]\n[[bus.device]]\nid='x'\nprofile='dtsu666'\naddress=1\nfaults=[{kind='gremlin'}]\n",
     "bus[0].device[0].faults[0]"),
    ("[[bus]]\n[[bus.device]]\nid='x'\nprofile='dtsu666'\naddress=1\ncolour='red'\n",
     "bus[0].device[0].colour"),
])
def test_bad_scenarios_name_the_key(text: str, where: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(tomllib.loads(text), "bad.toml")
    assert err.value.where == where and str(err.value).startswith("bad.toml: ")


def test_bad_devices_name_the_device() -> None:
    text = "[[bus]]\n[[bus.device]]\nid='x'\nprofile='no-such-model'\naddress=1\n"
    with pytest.raises(ScenarioError, match=r"bus\[0\]\.device\[0\] \(x\)\.profile"):
        Site(parse(tomllib.loads(text), "bad.toml"))
    text = "[[bus]]\n[[bus.device]]\nid='a'\nprofile='dtsu666'\naddress=1\n[[bus.device]]\nid='b'\n" \
           "profile='generic-lamp'\naddress=1\n"
    with pytest.raises(ScenarioError, match="already used by a"):
        Site(parse(tomllib.loads(text), "bad.toml"))
    text = "[[bus]]\n[[bus.device]]\nid='m'\nprofile='dtsu666'\naddress=300\n"
    with pytest.raises(ScenarioError, match=r"outside 1\.\.247"):
        Site(parse(tomllib.loads(text), "bad.toml"))


@pytest.mark.parametrize("day", ["2026-03-20", "2026-06-21", "2026-12-07"])
def test_the_faults_clash_bus_never_reads_clean(day: str) -> None:
    """docs/troubleshooting.md shows pressure-a offline: its replies and pressure-b's (same address) meet
    on the line as their AND (simulator/bus.py `collision`). When that AND is one of the two replies the
    read is clean and the guide's example is wrong; with the two sensors' pressures close it was, at some
    times of day (359 s of 2026-12-07), so hil_tests/test_troubleshooting.py could fail by the clock.
    Every 10 s of a day, in three seasons: the AND is never a frame with a right CRC."""
    import calendar
    import time

    from protocols import modbus
    from simulator.bus import collision

    site = Site(load(os.path.join(os.path.dirname(__file__), "..", "scenarios", "faults.toml")), instant=True)
    a, b = site.devices["pressure-a"], site.devices["pressure-b"]
    read = (22, modbus.read_request(4, 0, 2))  # what the agent asks: pressure and temperature
    start = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    clean = []
    for t in range(start, start + 86400, 10):
        line = collision([a.server.handle(read, t), b.server.handle(read, t)])
        if modbus.crc16(line[:-2]) == int.from_bytes(line[-2:], "little"):
            clean.append(time.strftime("%H:%M:%S", time.gmtime(t)))
    assert not clean, "clean reads of the clash bus at %s UTC" % clean[:10]
