"""Host tools: the config compiler, the build and the flash plan (no board needed)."""

import json
import os
import sys
import tempfile
import zlib

import pytest

from agent.cli import main as fieldlink
from agent.firmware import build, flash
from firmware_py.tests.site import write_site


def test_firmware_config_cli_compiles_and_rejects(tmp_path, capsys):
    out = write_site(str(tmp_path), "/dev/ttyS9", 1883, [1, 2])
    cfg = json.load(open(out))
    assert [d["id"] for d in cfg["devices"]] == ["m1", "m2"]
    frame = bytes.fromhex(cfg["devices"][0]["requests"][0][0])
    from protocols import modbus

    unit, pdu = modbus.rtu_parse(frame)
    assert unit == 1 and pdu[0] in (3, 4)
    # shared tables: one decode spec per point of the model, whatever the number of devices
    assert cfg["names"][cfg["specs"][cfg["devices"][1]["requests"][0][1][0]][0]] == "setpoint"
    assert len(cfg["specs"]) == 7 and len(cfg["wspecs"]) == 1
    assert cfg["writes"] == [[0, 0, 0, 0], [1, 0, 0, 0]]  # [device, write spec, switching, broadcast]
    assert cfg["wspecs"][0] == [0, 0, 100, None, "holding", 0, "u16", "ABCD", 1, 0]
    assert cfg["batch"]["max_bytes"] <= cfg["ring"]["slot_size"] - 19
    toml = str(tmp_path / "site.toml")
    rc = fieldlink(["firmware-config", toml, "--board", "rp2040", "--bus-pins", "rs485a=1:8:9:-",
                    "-o", str(tmp_path / "x.json")])
    assert rc == 0
    x = json.load(open(tmp_path / "x.json"))
    assert x["buses"][0]["uart"] == 1 and x["buses"][0]["de"] is None and x["safe_pin"] == 22
    assert "ntp_host" not in x  # MicroPython's default server
    assert fieldlink(["firmware-config", toml, "--ntp-host", "10.1.2.3", "-o", str(tmp_path / "y.json")]) == 0
    assert json.load(open(tmp_path / "y.json"))["ntp_host"] == "10.1.2.3"  # the site's own NTP server
    with open(toml, "a") as f:
        f.write('[[devices]]\nid = "bad"\nbus = "nope"\nprofile = "fw-meter"\naddress = 3\n')
    assert fieldlink(["firmware-config", toml]) == 2  # docs/cli.md: a config it cannot compile is wrong input
    assert "nope" in capsys.readouterr().err


def test_build_bundle(tmp_path, capsys):
    sizes = build.build(str(tmp_path / "b"))
    assert "firmware_py/ring.mpy" in sizes and "protocols/modbus/__init__.mpy" in sizes and "main.py" in sizes
    assert "protocols/modbus/device.mpy" in sizes and "protocols/registry.mpy" in sizes
    assert not any(k.endswith("family.mpy") for k in sizes)  # host-side answers stay on the host
    assert not any("hw_host" in k or "build" in k or "tests" in k for k in sizes)
    with open(tmp_path / "b" / "firmware_py" / "ring.mpy", "rb") as f:
        head = f.read(2)
    assert head == b"M\x06"  # bytecode v6: MicroPython 1.22 and later
    assert "total" in capsys.readouterr().out


def test_flash_dry_run_plan(tmp_path, capsys, monkeypatch):
    write_site(str(tmp_path), "/dev/ttyS9", 1883, [1])
    bundle = tmp_path / "bundle"
    build.build(str(bundle), verbose=False)
    monkeypatch.setattr(flash, "BUNDLE", str(bundle))
    rc = flash.main(["--port", "/dev/ttyUSB7", "--config", str(tmp_path / "site.toml"), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert len(commands) == 1, commands  # one mpremote session for the whole bundle
    assert " + " in commands[0] and "connect /dev/ttyUSB7" in commands[0] and commands[0].endswith("+ reset")
    assert "'firmware_py' in os.listdir('/') or os.mkdir('firmware_py')" in commands[0]  # re-flash works
    assert ":config.json" in out and "<compiled config>" in out and out.strip().endswith("(dry run)")
    copies = commands[0].count(" fs cp ")
    assert commands[0].count("print('flash: [") == copies and "[%d/%d] config.json" % (copies, copies) in out
    assert "umqtt" not in out


def fake_mpremote(tmp_path, script: str) -> list:
    """An executable standing in for mpremote (no board is attached here)."""
    path = tmp_path / "mpremote"
    path.write_text("#!%s\n%s" % (sys.executable, script))
    path.chmod(0o755)
    return [str(path)]


def test_flash_one_session_no_secret_left_and_a_clear_message_without_a_board(tmp_path, capsys, monkeypatch):
    write_site(str(tmp_path), "/dev/ttyS9", 1883, [1])
    bundle = tmp_path / "bundle"
    build.build(str(bundle), verbose=False)
    monkeypatch.setattr(flash, "BUNDLE", str(bundle))
    seen = tmp_path / "seen.json"
    record = ("import json, os, stat, sys\nargs = sys.argv[1:]\n"
              "cfg = next(a for a in args if a.endswith('config.json'))\n"
              "mode = stat.S_IMODE(os.stat(cfg).st_mode)\ntext = open(cfg).read()\n"
              "json.dump({'args': args, 'mode': mode, 'secret': 'hunter22' in text}, open(%r, 'w'))\n"
              % str(seen))
    monkeypatch.setattr(flash, "find_mpremote", lambda: fake_mpremote(tmp_path, record))
    port = tmp_path / "ttyUSB0"
    port.write_text("")
    before = set(os.listdir(tempfile.gettempdir()))
    rc = flash.main(["--port", str(port), "--config", str(tmp_path / "site.toml"), "--",
                     "--wifi-ssid", "street", "--wifi-password", "hunter22"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    got = json.loads(seen.read_text())
    assert got["secret"] and got["mode"] == 0o600 and got["args"].count("+") > 10  # one session
    assert "hunter22" not in out.out + out.err
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [n for n in left if n.startswith("fieldlink-flash-")], left  # the compiled config is gone
    monkeypatch.setattr(flash, "find_mpremote", lambda: fake_mpremote(
        tmp_path, "import sys\nsys.stderr.write('mpremote: no device found\\n')\nsys.exit(1)\n"))
    rc = flash.main(["--port", str(port), "--config", str(tmp_path / "site.toml")])
    assert rc == 1 and "no board answers on %s" % port in capsys.readouterr().err


def test_flash_says_what_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(flash, "find_mpremote", lambda: None)
    assert flash.main(["--port", "/dev/ttyUSB0"]) == 2
    assert "CONFIG" in capsys.readouterr().err
    if os.path.isdir(flash.BUNDLE):
        assert flash.main(["--port", "/dev/ttyUSB0", "--config", "x.toml"]) == 2
        assert "mpremote is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("pins", ["rs485a=2:17:16:4", "rs485a=0:0:1:-"])
def test_pins_parse(pins):
    from agent.firmware.config import _pins

    name, spec = _pins(pins)
    assert name == "rs485a" and spec["uart"] in (0, 2)


def test_inventory_status_and_will_bytes_are_the_agents(tmp_path):
    """The board sends the compiled inventory from flash as it is, and makes its status and will with
    cbor.dumps: byte for byte what protocols.birth encodes (the agent's shapes)."""
    from types import SimpleNamespace

    from agent.config import load_config
    from agent.firmware.config import compile_config
    from firmware_py.uplink import Uplink
    from protocols import __version__ as VERSION
    from protocols import birth

    write_site(str(tmp_path), "/dev/ttyS9", 1883, [1, 2, 7])
    cfg = load_config(str(tmp_path / "site.toml"))
    compiled = compile_config(cfg)
    data = bytes.fromhex(compiled["inventory"])
    inventory = birth.decode(data)
    assert [d["id"] for d in inventory["devices"]] == ["m1", "m2", "m7"] and inventory["seq"] == 0
    assert inventory["versions"] == {"fieldlink": VERSION, "firmware": VERSION}
    assert data == birth.encode(birth.make_inventory("fw-01", "lab", inventory["devices"], 0, "senml",
                                                     inventory["versions"], "fw-01:"))
    assert compiled["inventory_crc"] == zlib.crc32(data) and compiled["seq"] == 0
    board = SimpleNamespace(gateway_id="fw-01", site="lab", seq=0, session_no=(3 << 16) + 2,
                            inventory_crc=compiled["inventory_crc"])
    online = Uplink.status(board, True)  # type: ignore[arg-type]
    t = birth.decode(online)["time"]
    assert online == birth.encode(birth.make_status("fw-01", "lab", 0, (3 << 16) + 2, t, zlib.crc32(data)))
    assert Uplink.status(board, False) == birth.encode(birth.make_will("fw-01", "lab", 0, (3 << 16) + 2))
    assert compiled["broker"]["persistent_session"] is True and compiled["broker"]["probe_interval"] == 1.5




def test_firmware_config_takes_one_plain_endpoint(tmp_path):
    """The board connects to one broker without TLS: one mqtt:// endpoint is its broker, more are refused."""
    from agent.config import load_config
    from agent.firmware.config import FirmwareConfigError, compile_config

    write_site(str(tmp_path), "/dev/ttyS9", 1883, [1])
    toml = tmp_path / "site.toml"
    text = toml.read_text().replace('host = "127.0.0.1"\nport = 1883\n', "endpoints = [%s]\n")
    cases = [('"mqtt://10.0.0.9:1884"', None),
             ('"mqtt://a:1883", "mqtt://b:1883"', "lists 2 brokers; the firmware connects to one"),
             ('"mqtts://a:8883"', r"broker.endpoints\[0\]: the firmware's MQTT client has no TLS")]
    for endpoints, error in cases:
        toml.write_text(text % endpoints)
        config = load_config(str(toml))
        if error is None:
            broker = compile_config(config, board="host")["broker"]
            assert (broker["host"], broker["port"]) == ("10.0.0.9", 1884)
        else:
            with pytest.raises(FirmwareConfigError, match=error):
                compile_config(config, board="host")
