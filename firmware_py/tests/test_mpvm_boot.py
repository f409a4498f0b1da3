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

class UART:   # a UART that does not come up (on a board: OSError from the driver)
    def __init__(self, *args, **kw):
        raise OSError(19)

def reset():
    hostio.emit('"reset"')
    raise SystemExit

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
exec(open('/main.py').read())   # as at boot: main.py runs as __main__
hostio.emit(json.dumps(sorted(m for m in sys.modules if m.startswith('firmware_py'))))
"""
FW = os.path.join(mpvm.ROOT, "firmware_py")


def boot(tmp_path, config: dict | None, safe_file: bool = False, pins_low=(), code: str = BOOT):
    machine = tmp_path / "machine.py"
    machine.write_text(MACHINE)
    sock = tmp_path / "socket.py"  # the VM has none; the board's hw.py imports it (nothing connects)
    sock.write_text("")
    files = {"/boot.py": os.path.join(FW, "boot.py"), "/main.py": os.path.join(FW, "main.py"),
             "/machine.py": str(machine), "/socket.py": str(sock)}
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        files["/config.json"] = str(tmp_path / "config.json")
    if safe_file:
        (tmp_path / "safe").write_text("")
        files["/safe"] = str(tmp_path / "safe")
    res = mpvm.run(code, files=files, pins_low=list(pins_low), timeout=60)
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


START = """
import sys, json, time, hostio
sys.path.insert(0, '/')
import main
t0 = time.ticks_ms()
try:
    main.start(retry_s=0.5)
except SystemExit:
    pass
hostio.emit(json.dumps(time.ticks_diff(time.ticks_ms(), t0)))
"""


def compiled_config(tmp_path) -> dict:
    from firmware_py.tests.test_quality import compiled

    cfg = compiled(str(tmp_path), "/dev/null")
    cfg["safe_pin"] = 22
    return cfg


def test_a_config_of_another_format_waits_at_the_prompt_saying_what_to_do(tmp_path):
    """A config the firmware cannot read fails the same way at every boot: no reset loop; the board
    stays at the prompt (mpremote can copy a new config) and says what to do."""
    cfg = compiled_config(tmp_path)
    cfg["format"] = 5
    res = boot(tmp_path, cfg, code=START)
    out = res.stdout + res.stderr
    assert "config.json is format 5, this firmware reads format" in out, out
    assert "fieldlink: /config.json cannot run on this firmware: compile it again" in out, out
    assert "reset" not in res.values() and "resetting" not in out, out


def test_a_start_that_fails_otherwise_resets_the_board_after_a_wait(tmp_path):
    """A UART that does not come up (or memory, or Wi-Fi hardware) may work after a reset: the board
    prints the error, waits (Ctrl-C time for a technician on the console) and resets itself. Before,
    it stayed at the prompt with no watchdog armed, polling nothing until someone power-cycled it."""
    res = boot(tmp_path, compiled_config(tmp_path), code=START)
    out = res.stdout + res.stderr
    assert "OSError: [Errno 19] ENODEV" in out and "fieldlink: resetting in 0.5 s" in out, out
    values = res.values()
    assert values[0] == "reset" and len(values) == 2, values
    assert values[1] >= 500  # it waited before the reset
    assert res.host["wdt_timeout"] == 0  # nothing was armed: only the reset brings it back


def test_only_errors_of_the_config_itself_keep_the_board_at_the_prompt():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fw_main", os.path.join(FW, "main.py"))
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)  # as a module, not __main__: start() does not run
    from protocols.compiled import CompiledError

    for exc in (CompiledError("config.json: zone: ..."), ValueError("syntax error in JSON"),
                KeyError("buses"), TypeError("a list expected")):
        assert main.config_fault(exc), exc
    for exc in (OSError(19), MemoryError(), RuntimeError("Wi-Fi Unknown Error 0x0101")):
        assert not main.config_fault(exc), exc
