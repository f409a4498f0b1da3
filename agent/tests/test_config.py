"""Config loading and `fieldlink check-config`: right values, and errors naming file, line and key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.config import ConfigError, load_config, scan_lines, validate
from agent.tests.conftest import basic_config, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_config(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", "check-config", path], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


DEVICE = """
[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 5
points = ["voltage", "current"]
"""


def test_valid_config_loads_with_defaults_and_normalised_values(tmp_path, profile_dir):
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE)
    config = load_config(path)
    assert config.gateway.site == "test-site" and config.gateway.prefix == "fieldlink"
    assert config.outbox.path == os.path.join(str(tmp_path), "outbox.sqlite")  # relative to the file
    bus = config.buses[0]
    assert (bus.name, bus.port, bus.baud, bus.parity, bus.timeout_ms, bus.line) == \
        ("line1", "/dev/ttyFAKE0", 9600, "E", 150, 11)
    dev = config.devices[0]
    assert (dev.id, dev.address, dev.interval, dev.points, dev.line) == \
        ("m1", "1", 5, ["voltage", "current"], 19)
    assert config.profiles["test-meter"].model == "test-meter"
    assert config.topic("data") == "fieldlink/test-site/gw1/data"


def test_scan_lines_maps_tables_arrays_and_keys():
    text = '\n'.join([
        'format = 1',                      # 1
        '[gateway]',                       # 2
        'site = "a"  # comment',           # 3
        'tags = [',                        # 4
        '  "x = 1",',                      # 5  (inside a value, not a key)
        ']',                               # 6
        '[[devices]]',                     # 7
        'id = "d1"',                       # 8
        '[[devices]]',                     # 9
        '"id" = "d2"',                     # 10
        'options = { max_gap = 0 }',       # 11
        '[devices.extra]',                 # 12
        'note = """',                      # 13
        'k = v',                           # 14 (inside a string)
        '"""',                             # 15
        'z = 2',                           # 16
    ])
    lines = scan_lines(text)
    assert lines[("format",)] == 1
    assert lines[("gateway", "site")] == 3
    assert lines[("gateway", "tags")] == 4
    assert ("gateway", "x") not in lines
    assert lines[("devices", 0)] == 7 and lines[("devices", 0, "id")] == 8
    assert lines[("devices", 1)] == 9 and lines[("devices", 1, "id")] == 10
    assert lines[("devices", 1, "options")] == 11
    assert lines[("devices", 1, "extra")] == 12
    assert ("devices", 1, "extra", "k") not in lines
    assert lines[("devices", 1, "extra", "z")] == 16


BAD = """\
format = 2
profiles = ["profiles"]

[gateway]
site = "s1"
id = "gw 1"
helth_interval = 30

[broker]
port = "1883"

[[buses]]
name = "line1"
port = "/dev/ttyFAKE0"
baud = 9601
parity = "E"

[[buses]]
name = "net"
port = "tcp://10.0.0.5:502"

[[devices]]
id = "m1"
bus = "line1"
profile = "test-meter"
address = 1
interval = 5

[[devices]]
id = "m2"
bus = "line1"
profile = "test-meter"
address = 1
points = ["voltage", "curent"]

[[devices]]
id = "m1"
bus = "line9"
profile = "test-meterr"
address = 2

[[devices]]
id = "m4"
bus = "net"
profile = "dlt645-3p"
address = "000000000161"

[[devices]]
id = "m5"
bus = "line1"
profile = "test-meter"
address = 300
single_point_requests = "yes"
"""


def test_check_config_reports_every_error_with_file_line_key_and_expectation(tmp_path, profile_dir):
    path = write_config(str(tmp_path), BAD)
    result = check_config(path)
    assert result.returncode == 2  # docs/cli.md: wrong input
    lines = result.stderr.splitlines()
    expected = [
        '%s:1: format: expected format = 1 (the version this agent reads), got 2',
        '%s:7: gateway.helth_interval: unknown key; did you mean "health_interval"? expected one of: '
        'site, id, prefix, payload, health_interval, latitude, longitude, timezone, district',
        '%s:6: gateway.id: expected a name of letters, digits, _ - . (not starting with _ - .), '
        'at most 64 characters, got "gw 1"',
        '%s:10: broker.port: expected an integer 1..65535, got "1883"',
        '%s:15: buses[0].baud: expected one of 300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, '
        '57600, 115200, 230400, got 9601',
        '%s:33: devices[1].address: address 1 is already used on bus "line1" by device "m1" (line 22); '
        'expected a unique address per bus',
        '%s:34: devices[1].points: point "curent" is not in profile "test-meter" (did you mean "current"?); '
        'expected one of: voltage, current, power, energy, setpoint, relay',
        '%s:37: devices[2].id: device "m1" is already defined at line 22; expected a unique id',
        '%s:38: devices[2].bus: no bus named "line9"; expected one of the [[buses]] names (line1, net)',
        '%s:44: devices[3].bus: profile "dlt645-3p" speaks dlt645, which needs a serial bus; bus "net" is '
        'Modbus TCP (tcp://10.0.0.5:502); expected a serial bus',
        '%s:53: devices[4].single_point_requests: expected true or false, got "yes"',
        '%s:52: devices[4].address: expected a Modbus unit address 1..247, got 300',
    ]
    for line in expected:
        assert line % path in lines, "missing: %s\n--- got:\n%s" % (line % path, result.stderr)
    profile_line = [x for x in lines if x.startswith("%s:39: devices[2].profile:" % path)]
    assert profile_line and 'no profile "test-meterr" (did you mean "test-meter"?)' in profile_line[0]
    assert lines[-1] == "%s: %d errors" % (path, len(expected) + 1)


def test_impossible_poll_plan_is_reported_on_the_interval(tmp_path, profile_dir):
    devices = "".join("""
[[devices]]
id = "m%d"
bus = "line1"
profile = "test-meter"
address = %d
interval = %s
""" % (i, i, "0.1" if i == 3 else "10") for i in range(1, 6))
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", devices, bus_extra="pause_ms = 5")
    _config, issues, _ = validate(path)
    assert len(issues) == 1
    issue = issues[0]
    assert (issue.line, issue.key) == (38, "devices[2].interval")
    assert issue.message.startswith('impossible poll plan on bus "line1": one poll cycle needs about ')
    assert 'device "m3" polls every 0.1 s; expected an interval of at least' in issue.message


def test_missing_sections_and_syntax_errors(tmp_path):
    path = write_config(str(tmp_path), '[gateway]\nsite = "a"\n')
    try:
        load_config(path)
    except ConfigError as exc:
        messages = [str(i) for i in exc.issues]
    assert "%s:1: format: missing; expected format = 1 at the top of the file" % path in messages
    assert "%s:1: gateway.id: missing; expected a name of letters, digits, _ - . " \
        "(not starting with _ - .), " \
        "at most 64 characters" % path in messages
    path = write_config(str(tmp_path), 'format = 1\n[gateway]\nsite = "a\n', name="broken.toml")
    result = check_config(path)
    assert result.returncode == 2
    assert result.stderr.startswith("%s:3: (file): TOML syntax error: " % path)


def test_check_config_ok_and_profile_link_warning(tmp_path, profile_dir):
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE.replace('"line1"', '"line1"'),
                        bus_extra="")
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "%s: OK (1 bus, 1 device, 0 rules)" % path
    path2 = write_config(str(tmp_path), open(path).read().replace('parity = "E"', 'parity = "N"'), "n.toml")
    result = check_config(path2)
    assert result.returncode == 0
    assert '%s:21: devices[0].bus: profile "test-meter" expects parity E by default; ' \
        'bus "line1" has baud 9600 ' \
        'parity N stopbits 1 (warning)' % path2 in result.stderr


def test_a_bad_line_setting_gives_one_error_and_no_misleading_warning(tmp_path, profile_dir):
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE)
    path = write_config(str(tmp_path), open(path).read().replace('parity = "E"', 'parity = "even"'), "e.toml")
    result = check_config(path)
    assert result.returncode == 2
    assert 'buses[0].parity: expected one of "N", "E", "O", got "even"' in result.stderr
    assert "(warning)" not in result.stderr, result.stderr  # not "bus has parity N": that was a fallback


def test_tls_files_and_rules_are_checked(tmp_path, profile_dir):
    extra = DEVICE + """
[[rules]]
device = "m1"
point = "power"
above = 100

[[rules]]
device = "m9"
point = "voltage"
"""
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", extra)
    with open(path, "a") as f:
        f.write('\n[broker]\ntls = true\nca_file = "ca.pem"\n')
    _config, issues, _ = validate(path)
    got = {(i.key, i.message) for i in issues}
    assert ("rules[0].point",
            'device "m1" does not poll point "power"; expected one of: voltage, current') in got
    assert ("rules[1].device", 'no device "m9"; expected the id of a [[devices]] entry') in got
    assert ("broker.ca_file", "file %s not found; expected a readable PEM file"
            % os.path.join(str(tmp_path), "ca.pem")) in got


def test_the_shipped_example_is_valid():
    result = check_config(os.path.join(ROOT, "agent", "examples", "site.toml"))
    assert result.returncode == 0, result.stderr
    assert "OK (3 buses, 6 devices, 2 rules)" in result.stdout


def test_meter_password_and_operator_must_be_8_hex_digits_and_the_password_is_never_shown(tmp_path,
                                                                                         profile_dir):
    meters = """
[[devices]]
id = "e%d"
bus = "line1"
profile = "dlt645-1p"
address = "%d"
interval = 10
options = %s
"""
    opts = ['{ password = "02123456", operator = "0000abcd" }', '{ password = "s3cret-pw" }',
            '{ password = 2123456 }', '{ operator = "12345" }']
    body = "".join(meters % (i, 100 + i, o) for i, o in enumerate(opts))
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", body)
    _config, issues, _ = validate(path)
    got = [(i.key, i.message) for i in issues]
    hidden = 'expected 8 hex digits as a string (such as "00000000"); the value is not shown'
    assert got == [("devices[1].options.password", hidden), ("devices[2].options.password", hidden),
                   ("devices[3].options.operator",
                    'expected 8 hex digits as a string (such as "00000000"); got "12345"')], got
    assert not any("s3cret" in m or "2123456" in m for _, m in got)


def test_broker_endpoints_with_tls_for_all_or_per_endpoint(tmp_path, profile_dir):
    for name in ("ca.pem", "ca-b.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE)
    with open(path, "a") as f:
        f.write('\n[broker]\nca_file = "ca.pem"\nusername = "gw1"\npassword = "pw"\nendpoints = [\n'
                '  "mqtts://a.example",\n  {url = "mqtts://[fd00::2]:9883", ca_file = "ca-b.pem"},\n'
                '  {url = "mqtt://c.example", username = "gw1-c", password = "pw-c"},\n]\n'
                "probe_interval = 2\nsession_expiry = 3600\nmqtt_version = \"3.1.1\"\n")
    config = load_config(path)
    a, b, c = config.broker.endpoint_list()
    assert (a.url, a.tls, a.host, a.port, a.ca_file) == ("mqtts://a.example:8883", True, "a.example", 8883,
                                                        str(tmp_path / "ca.pem"))
    assert (b.url, b.host, b.port, b.ca_file) == ("mqtts://[fd00::2]:9883", "fd00::2", 9883,
                                                  str(tmp_path / "ca-b.pem"))
    assert (c.url, c.tls, c.username, c.password) == ("mqtt://c.example:1883", False, "gw1-c", "pw-c")
    assert (a.username, a.password) == ("gw1", "pw")
    assert a.key("ca_file") == "broker.ca_file" and b.key("ca_file") == "broker.endpoints[1].ca_file"
    assert c.key("username") == "broker.endpoints[2].username" and b.key("host") == "broker.endpoints[1]"
    bc = config.broker
    assert (bc.probe_interval, bc.session_expiry, bc.mqtt_version, bc.persistent_session) == (
        2, 3600, "3.1.1", True)


def test_broker_endpoints_errors(tmp_path, profile_dir):
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE)
    with open(path, "a") as f:
        f.write('\n[broker]\nhost = "x"\nca_file = "missing.pem"\nendpoints = ["mqtt://a", "tcp://b", '
                '{url = "mqtt://c", ca_file = "ca.pem"}, {ca_file = "x"}, "mqtt://a:1883", 5]\n'
                'mqtt_version = "4"\n')
    _config, issues, _ = validate(path)
    got = {(i.key, i.message) for i in issues}
    assert ("broker.host", 'host and endpoints are both set; expected one of them (an endpoint is '
            '"mqtt://HOST:PORT" or "mqtts://HOST:PORT" for TLS)') in got
    assert ("broker.endpoints[1]", "unknown scheme 'tcp'; expected mqtt://HOST[:PORT] or "
            'mqtts://HOST[:PORT], got "tcp://b"') in got
    assert ("broker.endpoints[2].ca_file", "ca_file is set but the URL is mqtt://; expected mqtts:// for "
            "TLS") in got
    assert ("broker.endpoints[3].url", "missing; expected a broker URL") in got
    assert ("broker.endpoints[4]", "mqtt://a:1883 is already endpoint 0; expected each endpoint once") in got
    assert ("broker.endpoints[5]", 'expected a URL string (["mqtts://a.example:8883", "mqtt://b.example:1883"])'
            " or a table with url = ..., got 5") in got
    assert ("broker.ca_file", "ca_file is set but no endpoint uses TLS; expected an mqtts:// endpoint") in got
    assert ("broker.mqtt_version", 'expected one of "auto", "5", "3.1.1", got "4"') in got


@pytest.mark.parametrize("value, error", [("0.5", None), ("0", None),
                                          ("-1", "expected a number 0..3600, got -1"),
                                          ('"1s"', 'expected a number 0..3600, got "1s"')])
def test_outbox_sync_every(tmp_path, profile_dir, value, error):
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", DEVICE)
    with open(path) as f:
        text = f.read().replace('path = "outbox.sqlite"', 'path = "outbox.sqlite"\nsync_every = %s' % value)
    with open(path, "w") as f:
        f.write(text)
    if error is None:
        assert load_config(path).outbox.sync_every == float(value)
        return
    result = check_config(path)
    assert result.returncode == 2
    assert "outbox.sync_every: %s" % error in result.stderr, result.stderr
