"""Config that cannot silently lose data, and errors that never show a secret.

`fieldlink check-config` (a real subprocess) refuses nan, inf, zero and negative intervals and timeouts,
topic levels a broker would drop or misroute, a `$` prefix and duplicate device ids, each with
FILE:LINE: KEY. Every key in SECRET_KEYS is tried with wrong types and wrong values: its value appears in
no output of `check-config` or `run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from agent.config import validate
from agent.config_checks import BATCH, BROKER, DEVICE, GATEWAY, OUTBOX, RULE
from agent.config_keys import SECRET_KEYS, Checker, is_secret
from agent.tests.conftest import write_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASE = """\
format = 1

[gateway]
site = "s1"
id = "gw1"
health_interval = 60

[broker]
host = "127.0.0.1"
port = 1883
reconnect_min = 1
reconnect_max = 60
puback_timeout = 30
keepalive = 30

[outbox]
path = "outbox.sqlite"

[batch]
max_age = 5.0

[[buses]]
name = "meters"
port = "/dev/ttyFAKE0"
baud = 2400
parity = "E"
timeout_ms = 800

[[devices]]
id = "m1"
bus = "meters"
profile = "dlt645-1p"
address = "000000000101"
interval = 60

[[rules]]
device = "m1"
point = "voltage"
above = 250
hysteresis = 5
"""

#: (section table in BASE, key, the line of that key in BASE)
LINES = {("gateway", "health_interval"): 6, ("broker", "reconnect_min"): 11, ("broker", "reconnect_max"): 12,
         ("broker", "puback_timeout"): 13, ("broker", "keepalive"): 14, ("batch", "max_age"): 20,
         ("buses", "timeout_ms"): 27, ("devices", "interval"): 34, ("rules", "hysteresis"): 40}
KEY_TEXT = {"buses": "buses[0]", "devices": "devices[0]", "rules": "rules[0]"}


def fieldlink(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def with_value(text: str, section: str, key: str, value: str) -> str:
    """BASE with `key = value` replaced in `section` (the key is written there already)."""
    lines = text.splitlines()
    number = LINES[(section, key)]
    assert lines[number - 1].startswith(key + " ="), lines[number - 1]
    lines[number - 1] = "%s = %s" % (key, value)
    return "\n".join(lines) + "\n"


def errors_of(tmp_path, text: str, name: str = "site.toml") -> list[str]:
    path = write_config(str(tmp_path), text, name)
    _config, issues, _warnings = validate(path)
    return [str(i) for i in issues]


def test_base_config_is_valid(tmp_path):
    assert errors_of(tmp_path, BASE) == []


#: every interval, age and timeout: (section, key)
TIMES = [("gateway", "health_interval"), ("broker", "reconnect_min"), ("broker", "reconnect_max"),
         ("broker", "puback_timeout"), ("broker", "keepalive"), ("batch", "max_age"), ("buses", "timeout_ms"),
         ("devices", "interval")]


@pytest.mark.parametrize(("section", "key"), TIMES, ids=["%s.%s" % t for t in TIMES])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.0", "-1", "-0.5"])
def test_no_interval_or_timeout_may_be_nan_infinite_zero_or_negative(tmp_path, section, key, value):
    path = os.path.join(str(tmp_path), "site.toml")
    found = errors_of(tmp_path, with_value(BASE, section, key, value))
    where = "%s:%d: %s.%s: " % (path, LINES[(section, key)], KEY_TEXT.get(section, section), key)
    assert any(e.startswith(where) for e in found), "%s = %s accepted or misplaced: %s" % (key, value, found)


def test_every_number_key_refuses_nan_and_infinity():
    """Structural: every spec built with number() (today and tomorrow) refuses nan and ±inf."""
    checked = 0
    for table in (GATEWAY, BROKER, OUTBOX, BATCH, DEVICE, RULE):
        for text, check in table.values():
            if not text.startswith("a number"):
                continue
            for bad in (float("nan"), float("inf"), float("-inf")):
                with pytest.raises(ValueError):
                    check(bad)
            checked += 1
    assert checked >= 9


def test_check_config_refuses_nan_interval_and_sys_prefix_naming_file_line_key(tmp_path):
    """The acceptance test: a real `fieldlink check-config`, exit 2 (bad input), FILE:LINE: KEY on stderr."""
    text = with_value(BASE, "devices", "interval", "nan")
    text = text.replace('id = "gw1"\n', 'id = "gw1"\nprefix = "$SYS"\n')
    path = write_config(str(tmp_path), text)
    done = fieldlink("check-config", path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    prefix = next(s for s in lines if ": gateway.prefix: " in s)
    interval = next(s for s in lines if ": devices[0].interval: " in s)
    assert prefix.startswith("%s:6: gateway.prefix: " % path) and "$SYS" in prefix and "drop" in prefix
    assert interval.startswith("%s:35: devices[0].interval: " % path) and "nan" in interval
    run = fieldlink("run", path)  # the agent refuses to start on it too, before touching anything
    assert run.returncode == 2 and ": gateway.prefix: " in run.stderr
    assert not os.path.exists(os.path.join(str(tmp_path), "outbox.sqlite"))


BAD_PREFIXES = ["$SYS", "$share/g/x", "a//b", "/a", "a/", "a/+/b", "city#", "a\\u0000b", "a b", "a\\u0007b",
                ""]


@pytest.mark.parametrize("prefix", BAD_PREFIXES)
def test_prefix_levels_that_a_broker_would_drop_or_misroute_are_refused(tmp_path, prefix):
    text = BASE.replace('id = "gw1"\n', 'id = "gw1"\nprefix = "%s"\n' % prefix)
    found = errors_of(tmp_path, text)
    assert any(": gateway.prefix: expected a topic prefix" in e for e in found), found
    assert all("\x00" not in e and "\x07" not in e for e in found), "control characters are escaped"


@pytest.mark.parametrize("prefix", ["fieldlink", "city/north", "utility-a/lighting.v2"])
def test_good_prefixes(tmp_path, prefix):
    assert errors_of(tmp_path, BASE.replace('id = "gw1"\n', 'id = "gw1"\nprefix = "%s"\n' % prefix)) == []


BAD_LEVELS = [("site", ""), ("site", "north/east"), ("site", "a+b"), ("id", "#"), ("id", "gw\\u0000"),
              ("id", "$SYS"), ("site", "a b")]


@pytest.mark.parametrize(("key", "value"), BAD_LEVELS)
def test_site_and_gateway_id_are_single_clean_topic_levels(tmp_path, key, value):
    old = 'site = "s1"' if key == "site" else 'id = "gw1"'
    found = errors_of(tmp_path, BASE.replace(old, '%s = "%s"' % (key, value)))
    line = 4 if key == "site" else 5
    assert any(e.startswith("%s:%d: gateway.%s: expected a name" % (os.path.join(str(tmp_path), "site.toml"),
                                                                       line, key)) for e in found), found


def test_duplicate_device_ids_name_both_lines(tmp_path):
    text = BASE + '\n[[devices]]\nid = "m1"\nbus = "meters"\nprofile = "dlt645-1p"\n' \
        'address = "000000000102"\n'
    found = errors_of(tmp_path, text)
    want = r":43: devices\[1\]\.id: device \"m1\" is already defined at line 29"
    assert any(re.search(want, e) for e in found), found


# --------------------------------------------------------------------------------------- secrets
SECRET = "Sup3r-S3cret-99"
HEX_SECRET = "7e57c0de"


BROKER_AT = 'host = "127.0.0.1"\n'
DEVICE_AT = 'address = "000000000101"\ninterval = 60\n'


def broker_with(lines: str) -> str:
    return BASE.replace(BROKER_AT, BROKER_AT + lines)


def endpoints_with(entries: str) -> str:
    return BASE.replace(BROKER_AT + "port = 1883\n", "endpoints = [%s]\n" % entries)


def device_with(lines: str, modbus: bool = False) -> str:
    text = BASE.replace(DEVICE_AT, DEVICE_AT + lines)
    if modbus:  # a lamp controller: no password option at all
        text = text.replace('profile = "dlt645-1p"\naddress = "000000000101"',
                            'profile = "generic-lamp"\naddress = 7')
        text = text.replace('point = "voltage"', 'point = "dim"')
    return text


def secret_cases() -> list[tuple[str, str, str, str]]:
    """(case, secret text to look for, config text, KEY expected in the error) for every secret key."""
    cases = []
    user = 'username = "gw1"\n'
    for pattern in SECRET_KEYS:
        if pattern == ("broker", "password"):
            key = "broker.password"
            cases += [
                ("broker.password as an integer", "98765432",
                 broker_with(user + "password = 98765432\n"), key),
                ("broker.password as a list", SECRET,
                 broker_with(user + 'password = ["%s"]\n' % SECRET), key),
                ("broker.password as a table", SECRET,
                 broker_with(user + 'password = { value = "%s" }\n' % SECRET), key),
                ("broker.password without username", SECRET, broker_with('password = "%s"\n' % SECRET), key),
                ("broker.password unterminated", SECRET, broker_with(user + 'password = "%s\n' % SECRET), ""),
            ]
        elif pattern == ("devices", "*", "options", "password"):
            key = "devices[0].options.password"
            cases += [
                ("options.password not hex", SECRET,
                 device_with('options = { password = "%s" }\n' % SECRET), key),
                ("options.password as an integer", "12345678",
                 device_with("options = { password = 12345678 }\n"), key),
                ("options.password too short", HEX_SECRET[:6],
                 device_with('options = { password = "%s" }\n' % HEX_SECRET[:6]), key),
                ("options.password on a Modbus device", HEX_SECRET,
                 device_with('options = { password = "%s" }\n' % HEX_SECRET, modbus=True), key),
            ]
        elif pattern == ("broker", "endpoints", "*", "password"):
            key = "broker.endpoints[0].password"
            url = 'url = "mqtt://127.0.0.1:1883"'
            cases += [
                ("endpoint password as an integer", "98765432",
                 endpoints_with('{%s, username = "gw1", password = 98765432}' % url), key),
                ("endpoint password as a list", SECRET,
                 endpoints_with('{%s, username = "gw1", password = ["%s"]}' % (url, SECRET)), key),
                ("endpoint password without username", SECRET,
                 endpoints_with('{%s, password = "%s"}' % (url, SECRET)), key),
                ("endpoint password in the URL", SECRET,
                 endpoints_with('"mqtt://gw1:%s@127.0.0.1:1883"' % SECRET), "broker.endpoints[0]"),
            ]
        else:  # a new secret key needs its cases here
            raise AssertionError("no test cases for secret key %s" % (pattern,))
    return cases


CASES = secret_cases()


@pytest.mark.parametrize(("case", "secret", "text", "key"), CASES, ids=[c[0] for c in CASES])
def test_no_output_ever_shows_a_secret(tmp_path, case, secret, text, key):
    path = write_config(str(tmp_path), text)
    check = fieldlink("check-config", path)
    run = fieldlink("run", path)
    for what, done in (("check-config", check), ("run", run)):
        output = done.stdout + done.stderr
        assert done.returncode != 0, "%s: `fieldlink %s` accepted it:\n%s" % (case, what, output)
        assert secret not in output, "%s: `fieldlink %s` printed the secret:\n%s" % (case, what, output)
        first = next(s for s in done.stderr.splitlines() if s.startswith(path + ":"))
        assert re.match(re.escape(path) + r":\d+: " + re.escape(key), first), (case, first)


def test_every_secret_key_has_cases():
    covered = {c[3] for c in CASES}
    assert "broker.password" in covered and "devices[0].options.password" in covered
    assert "broker.endpoints[0].password" in covered
    assert is_secret(("broker", "endpoints", 1, "password"))
    assert is_secret(("devices", 3, "options", "password"))
    assert not is_secret(("devices", 3, "options", "operator"))


def test_a_check_that_would_print_a_secret_cannot():
    """Structural: even a careless message naming the value is scrubbed by the Checker."""
    ck = Checker("site.toml", {}, {"broker": {"password": SECRET},
                                   "devices": [{"options": {"password": HEX_SECRET}}]})
    ck.error(("broker", "password"), "expected something else than %r or %s" % (SECRET, SECRET))
    ck.warn(("gateway",), "the meter password %s looks weak" % HEX_SECRET)
    text = "\n".join(str(i) for i in ck.issues + ck.warnings)
    assert SECRET not in text and HEX_SECRET not in text and "not shown" in text


def test_config_repr_shows_no_secret(tmp_path):
    text = endpoints_with('"mqtt://127.0.0.1:1883", {url = "mqtt://127.0.0.2", password = "%s-2"}' % SECRET)
    text = text.replace("[broker]\n", '[broker]\nusername = "gw1"\npassword = "%s"\n' % SECRET)
    text = text.replace(DEVICE_AT, DEVICE_AT + 'options = { password = "%s" }\n' % HEX_SECRET)
    config, issues, _ = validate(write_config(str(tmp_path), text))
    assert not issues and config is not None
    assert SECRET not in repr(config) and HEX_SECRET not in repr(config)
    assert config.broker.password == SECRET and config.devices[0].options["password"] == HEX_SECRET
    first, second = config.broker.endpoint_list()
    assert first.password == SECRET and second.password == SECRET + "-2" and second.username == "gw1"


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("0.25", True), ("60", True), ("-0.1", False),
                                           ("61", False), ("nan", False), ('"fast"', False)])
def test_batch_linger_is_zero_to_a_minute(tmp_path, value, ok):
    """`[batch] linger` (seconds an idle uplink holds a fresh reading for the polls that end meanwhile):
    0 publishes each poll at once; a bad value names the file, the line and the key."""
    text = BASE.replace("max_age = 5.0\n", "max_age = 5.0\nlinger = %s\n" % value)
    found = errors_of(tmp_path, text)
    if ok:
        assert found == []
    else:
        where = "%s:21: batch.linger: " % os.path.join(str(tmp_path), "site.toml")
        assert any(e.startswith(where) for e in found), found


def test_batch_linger_is_read_from_the_file(tmp_path):
    from agent.config import load_config

    path = write_config(str(tmp_path), BASE.replace("max_age = 5.0\n", "max_age = 5.0\nlinger = 0.5\n"))
    assert load_config(path).batch.linger == 0.5
    assert load_config(write_config(str(tmp_path), BASE, "plain.toml")).batch.linger == 0.25
