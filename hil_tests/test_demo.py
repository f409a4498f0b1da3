"""`make demo` as a user runs it: `python -m hil_tests.demo`, stopped by its timer or by Ctrl-C.

Checks that the monitor showed readings of every device of simulator/scenarios/demo.toml (waiting for
them with a deadline, then Ctrl-C: a busy machine only makes it later) and that no process the demo
started (broker, simulator, agent, monitor) outlives it, whether its timer or Ctrl-C stopped it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from hil_tests.broker import find_mosquitto
from hil_tests.link import PYTHON, ROOT

pytestmark = pytest.mark.slow

CHILDREN = ("mosquitto", "simulator", "agent", "monitor")


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed, but CI must run the demo test (.ci/run installs it)")
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto)")


def pids(output: str) -> dict[str, int]:
    """The PIDs the demo announced: `demo: <name> pid <N>…`."""
    found = dict(re.findall(r"^demo: (\w+) pid (\d+)", output, re.M))
    return {name: int(pid) for name, pid in found.items() if name in CHILDREN}


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def shown_devices(output: str) -> set[str]:
    """Devices with at least one reading line `… demo/gw1 <device>/<point> = <value> <unit>`."""
    return set(re.findall(r"^\S+ \S+ \S+/gw1 ([\w.-]+)/[\w.-]+ = ", output, re.M))


def reap(output: str) -> None:
    """Stop, by PID, any child the demo announced that is still running (only after a failed demo: the
    tests assert that none survives), so a failure never leaves a simulator or monitor behind."""
    for pid in pids(output).values():
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not alive(pid):
                break
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)


def demo_devices(work: str) -> set[str]:
    with open(os.path.join(work, "ports.json")) as f:
        ports = json.load(f)
    return {d["id"] for b in ports["buses"] for d in b["devices"]}


def test_demo_shows_every_device_and_leaves_nothing_running(tmp_path: Any) -> None:
    work = str(tmp_path / "demo")
    began = time.monotonic()
    proc = subprocess.Popen([PYTHON, "-m", "hil_tests.demo", "--seconds", "15", "--dir", work], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output = ""
    try:
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            output += proc.communicate(timeout=10)[0] or ""
    took = time.monotonic() - began
    started = pids(output)
    survivors = {name: pid for name, pid in started.items() if alive(pid)}
    reap(output)
    assert proc.returncode == 0, output[-3000:]
    assert set(started) == set(CHILDREN), output[:2000]
    shown = shown_devices(output)
    assert shown, output[-3000:]  # every device shows: test_demo_ctrl_c_... waits for all of them
    assert not survivors, "still running after the demo: %s" % survivors
    assert "logs: " in output
    for log in ("agent.log", "sim.log", "mosquitto.log", "agent.toml"):
        assert os.path.exists(os.path.join(work, log)), log
    print("\ndemo: %d reading lines for %d devices in %.1f s; children %s all gone"
          % (len(re.findall(r" = ", output)), len(shown), took, started))


def test_demo_ctrl_c_stops_everything_it_started(tmp_path: Any) -> None:
    work = str(tmp_path / "demo")
    proc = subprocess.Popen([PYTHON, "-m", "hil_tests.demo", "--dir", work, "--instant"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.append(text)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    def every_device_shown() -> bool:
        if not os.path.exists(os.path.join(work, "ports.json")):
            return False
        return demo_devices(work) <= shown_devices("".join(lines))

    try:
        deadline = time.monotonic() + 120  # a deadline, not a duration: it goes on as soon as all show
        while time.monotonic() < deadline and not every_device_shown():
            assert proc.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.1)
        devices = demo_devices(work)
        shown = shown_devices("".join(lines))
        assert len(devices) == 8 and devices <= shown, "no readings shown for %s" % sorted(devices - shown)
        # what a terminal does on Ctrl-C: SIGINT to the foreground process group (demo + monitor)
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(45)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(10)
        survivors = {name: pid for name, pid in pids("".join(lines)).items() if alive(pid)}
        reap("".join(lines))
    output = "".join(lines)
    started = pids(output)
    assert rc == 0, output[-3000:]
    assert set(started) == set(CHILDREN), output[:2000]
    assert all(("%s pid %d stopped" % (n, p)) in output for n, p in started.items()), output[-2000:]
    assert not survivors, "still running after Ctrl-C: %s" % survivors  # (looked at before any reaping)
