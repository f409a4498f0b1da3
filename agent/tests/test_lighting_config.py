"""The lighting and indicator keys of a config, through `fieldlink check-config` (file, line, key, what is
expected), and what they become in the birth's device inventory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.config import load_config, validate
from agent.gateway import inventory
from hil_tests.sample_configs import EVENING, bus, group, lamp, schedule, site_head
from protocols import birth

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEAD = site_head() + "\n" + bus() + """
[[buses]]
name = "meters"
port = "/dev/ttyFAKE1"
baud = 2400
parity = "E"

""" + lamp(1) + "\n" + lamp(2, extra="lights = 2\n") + """
[[devices]]
id = "flat-1"
bus = "meters"
profile = "dlt645-1p"
address = "000000000101"
interval = 60

[[devices]]
id = "water-1"
bus = "meters"
profile = "cjt188-water"
address = "00000000000101"
interval = 60
serves = {households = 24}

[[devices]]
id = "feeder"
bus = "lamps"
profile = "dtsu666"
address = 10

[[devices]]
id = "mains"
bus = "lamps"
profile = "pressure-sensor"
address = 20
serves = {network = "water", length_m = 1800.5}
"""

GOOD = HEAD + "\n" + group("main_street", ["lamp-01", "lamp-02"]) + "\n" \
    + schedule("main street", EVENING, group="main_street") + """
[lighting]
alarm_after = 120
"""


def write(tmp_path, text: str) -> str:
    path = os.path.join(str(tmp_path), "site.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def check_config(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", "check-config", path], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_a_lighting_config_loads(tmp_path):
    path = write(tmp_path, GOOD)
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    config = load_config(path)
    g = config.gateway
    assert (g.latitude, g.longitude, g.timezone) == (36.6512, 117.1201, "Asia/Shanghai")
    assert config.groups == {"main_street": ["lamp-01", "lamp-02"]}
    assert [s["name"] for s in config.schedules] == ["main street"]
    assert config.lighting.alarm_after == 120
    assert config.lighting.store == os.path.join(str(tmp_path), "schedules.json")  # beside the outbox


def test_the_inventory_carries_serves_and_lights_with_their_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    devices = {d["id"]: d for d in inventory(config)}
    assert devices["lamp-01"]["lights"] == 1 and "serves" not in devices["lamp-01"]
    assert devices["lamp-02"]["lights"] == 2
    assert devices["flat-1"]["serves"] == {"households": 1}  # a DL/T 645 meter: one household
    assert devices["water-1"]["serves"] == {"households": 24}  # as configured
    assert devices["feeder"]["serves"] == {"households": 0}  # a Modbus meter: none by default
    assert devices["mains"]["serves"] == {"network": "water", "length_m": 1800.5}
    assert "lights" not in devices["mains"]
    msg = birth.decode(birth.encode(birth.make_inventory("gw1", "street", inventory(config))))
    assert {d["id"]: d.get("serves") for d in msg["devices"]}["water-1"] == {"households": 24}


def line_of(text: str, needle: str, after: str = "") -> int:
    """The 1-based line of the first `needle` after the first `after`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


@pytest.mark.parametrize("tail, needle, key, message", [
    ("""
[[schedules]]
name = "a"
group = "main_street"
[[schedules.steps]]
at = "sunset+10"
set = {on = true}
""", 'at = "sunset+10"', "schedules[0].steps[0].at",
     "schedule 'a', step 1, key 'at': 'sunset+10': after sunset comes +Nm or -Nm (minutes), e.g. sunset-10m"),
    ("""
[[schedules]]
name = "a"
group = "side_street"
[[schedules.steps]]
at = "18:00"
set = {on = true}
""", 'group = "side_street"', "schedules[0].group",
     "schedule 'a', key 'group': no group 'side_street' in [groups]"),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01"]
[[schedules.steps]]
at = "18:00"
set = {dim = 50}
""", "set = {dim = 50}", "schedules[0].steps[0].set",
     "schedule 'a', step 1, key 'set': device lamp-01 (profile generic-lamp): 50 is above the maximum 1 "
     "of point dim"),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01"]
[[schedules.steps]]
at = "18:00"
set = {power = 10}
""", "set = {power = 10}", "schedules[0].steps[0].set",
     "schedule 'a', step 1, key 'set': device lamp-01 (profile generic-lamp): point power is not writable"),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01"]
[[schedules.steps]]
at = "18:00"
set = {onn = true}
""", "set = {onn = true}", "schedules[0].steps[0].set",
     "schedule 'a', step 1, key 'set': device lamp-01 (profile generic-lamp) has no point \"onn\" "
     "(did you mean \"on\"?)"),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01", "lamp-09"]
[[schedules.steps]]
at = "18:00"
set = {on = true}
""", 'devices = ["lamp-01", "lamp-09"]', "schedules[0].devices",
     "schedule 'a', key 'devices': no device \"lamp-09\""),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01"]
[[schedules.steps]]
at = "18:00"
days = "weekdays"
set = {on = true}
""", 'days = "weekdays"', "schedules[0].steps[0].days",
     "'weekdays' is not a day (mon, tue, wed, thu, fri, sat, sun) or a range such as mon-fri"),
    ("""
[[schedules]]
name = "a"
devices = ["lamp-01"]
[[schedules.steps]]
at = "18:00"
set = {on = true}
[[schedules]]
name = "b"
group = "main_street"
[[schedules.steps]]
at = "19:00"
set = {on = false}
""", 'name = "b"', "schedules[1].steps",
     "schedule 'b': point on of device lamp-01 is already set by schedule 'a'; expected one schedule"),
])
def test_bad_schedules_name_file_line_and_key(tmp_path, tail, needle, key, message):
    text = HEAD + '\n[groups]\nmain_street = ["lamp-01", "lamp-02"]\n' + tail
    path = write(tmp_path, text)
    result = check_config(path)
    assert result.returncode == 2  # docs/cli.md: wrong input
    line = line_of(text, needle, after="[groups]")
    if key == "schedules[1].steps":
        line = line_of(text, "[[schedules.steps]]", after='name = "b"')
    expected = "%s:%d: %s: " % (path, line, key)
    found = [x for x in result.stderr.splitlines() if x.startswith(expected)]
    assert found and message in found[0], "want %s...%s\n--- got:\n%s" % (expected, message, result.stderr)


@pytest.mark.parametrize("edit, needle, key, message", [
    (('timezone = "Asia/Shanghai"', 'timezone = "Asia/Jinan"'), 'timezone = "Asia/Jinan"', "gateway.timezone",
     "unknown time zone 'Asia/Jinan' (an IANA name such as Asia/Shanghai"),
    (("latitude = 36.6512\n", ""), "[gateway]", "gateway.latitude",
     "missing; latitude, longitude and timezone go together"),
    (("latitude = 36.6512", "latitude = 96.5"), "latitude = 96.5", "gateway.latitude",
     "expected a number -90..90, got 96.5"),
    (('serves = {households = 24}', 'serves = {households = -3}'), "serves = {households = -3}",
     "devices[3].serves.households", "expected a whole number of households >= 0, got -3"),
    (('serves = {network = "water", length_m = 1800.5}', 'serves = {network = "steam", length_m = 1}'),
     'serves = {network = "steam"', "devices[5].serves.network", 'expected one of "water", "power", "gas"'),
    (('serves = {network = "water", length_m = 1800.5}', 'serves = {network = "water"}'),
     'serves = {network = "water"}', "devices[5].serves.length_m",
     "missing; network and length_m go together"),
    (('lights = 2', 'lights = 0'), "lights = 0", "devices[1].lights", "expected an integer 1..100000, got 0"),
    (('serves = {households = 24}', 'lights = 4'), "lights = 4", "devices[3].lights",
     'applies to lamps; profile "cjt188-water" is a water_meter'),
    (('serves = {network = "water", length_m = 1800.5}', 'serves = {households = 3}'),
     "serves = {households = 3}",
     "devices[5].serves.households", 'applies to meters; profile "pressure-sensor" is a pressure'),
])
def test_bad_place_and_indicator_keys_name_file_line_and_key(tmp_path, edit, needle, key, message):
    text = GOOD.replace(*edit)
    path = write(tmp_path, text)
    result = check_config(path)
    assert result.returncode == 2  # docs/cli.md: wrong input
    expected = "%s:%d: %s: " % (path, line_of(text, needle), key)
    found = [x for x in result.stderr.splitlines() if x.startswith(expected)]
    assert found and message in found[0], "want %s...%s\n--- got:\n%s" % (expected, message, result.stderr)


@pytest.mark.parametrize("groups, message", [
    ('lamp-01 = ["lamp-02"]', 'group "lamp-01" has the name of a device'),
    ('street = ["lamp-01", "lamp-1"]', 'no device "lamp-1" (did you mean "lamp-01"?)'),
    ('street = ["lamp-01", "lamp-01"]', "device lamp-01 is listed twice"),
    ("street = []", "expected a non-empty list of device ids"),
])
def test_bad_groups(tmp_path, groups, message):
    text = HEAD + "\n[groups]\n" + groups + "\n"
    path = write(tmp_path, text)
    _config, issues, _ = validate(path)
    assert issues, "accepted"
    assert issues[0].line == len(text.splitlines()) and issues[0].key.startswith("groups.")
    assert message in issues[0].message, issues[0]


def test_schedules_need_the_gateways_place(tmp_path):
    text = GOOD.replace("latitude = 36.6512\nlongitude = 117.1201\ntimezone = \"Asia/Shanghai\"\n", "")
    path = write(tmp_path, text)
    _config, issues, _ = validate(path)
    assert [(i.line, i.key) for i in issues] == [(3, "gateway")]
    assert "schedules need the gateway's place" in issues[0].message


def test_the_boards_inventory_carries_the_same_serves_and_lights(tmp_path):
    """`fieldlink firmware-config` compiles the board's inventory on the host: the same indicator fields
    as the agent's, and the CRC-32 every status names is the inventory's own."""
    import json
    import zlib

    import cbor2

    path = write(tmp_path, GOOD)
    out = os.path.join(str(tmp_path), "config.json")
    result = subprocess.run([sys.executable, "-m", "agent.cli", "firmware-config", path, "-o", out], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        compiled = json.load(f)
    data = bytes.fromhex(compiled["inventory"])
    assert compiled["inventory_crc"] == zlib.crc32(data)
    board = cbor2.loads(data)
    agent = {d["id"]: d for d in inventory(load_config(path))}
    for device in board["devices"]:
        assert device.get("serves") == agent[device["id"]].get("serves"), device["id"]
        assert device.get("lights") == agent[device["id"]].get("lights"), device["id"]
    assert {d["id"]: d.get("serves") for d in board["devices"]}["water-1"] == {"households": 24}
