"""Safe-mode boot under genuine MicroPython: boot.py decides, main.py starts nothing in safe mode.

The VM has no `machine` module; a stand-in reads the pin levels the host was told to hold low
(the runner's --pin-low, through hostio.Pin), so the real boot.py runs unchanged.
"""

import json
import os

import pytest

from firmware_py.tests import mpvm

pytestmark = mpvm.vm_module()

MACHINE = """
import hostio

class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 2

    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n

    def value(self, v=None):
        return hostio.Pin(self.n).value()
"""
BOOT = """
import sys, json, hostio
sys.path.insert(0, '/')
import boot
hostio.emit(json.dumps(boot.SAFE))
"""
MAIN = """
import sys, json, hostio
sys.path.insert(0, '/')
import main
hostio.emit(json.dumps(sorted(m for m in sys.modules if m.startswith('firmware_py'))))
"""
FW = os.path.join(mpvm.ROOT, "firmware_py")


def boot(tmp_path, config: dict | None, safe_file: bool = False, pins_low=(), code: str = BOOT):
    machine = tmp_path / "machine.py"
    machine.write_text(MACHINE)
    files = {"/boot.py": os.path.join(FW, "boot.py"), "/main.py": os.path.join(FW, "main.py"),
             "/machine.py": str(machine)}
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        files["/config.json"] = str(tmp_path / "config.json")
    if safe_file:
        (tmp_path / "safe").write_text("")
        files["/safe"] = str(tmp_path / "safe")
    res = mpvm.run(code, files=files, pins_low=list(pins_low), timeout=30)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.parametrize("config, safe_file, pins_low, safe", [
    ({"safe_pin": 22}, False, (), False),  # normal boot
    ({"safe_pin": 22}, False, (22,), True),  # RP2040: GP22 held to GND at reset
    ({"safe_pin": 0}, False, (0,), True),  # ESP32: BOOT button (GPIO 0) held
    ({"safe_pin": 22}, False, (0,), False),  # another pin low: no effect
    ({"safe_pin": 22}, True, (), True),  # the /safe file
    (None, False, (), True),  # no config: nothing to run
])
def test_boot_decides_safe_mode(tmp_path, config, safe_file, pins_low, safe):
    assert boot(tmp_path, config, safe_file, pins_low).values() == [safe]


def test_main_starts_nothing_in_safe_mode(tmp_path):
    res = boot(tmp_path, {"safe_pin": 22}, True, (), MAIN)
    assert "fieldlink: safe mode" in res.stdout
    assert res.values() == [[]]  # not even the gateway's modules were imported
    assert res.host["wdt_timeout"] == 0 and res.host["tcp_connects"] == 0  # no watchdog armed
