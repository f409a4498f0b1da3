"""What every benchmark shares: process CPU and memory from /proc, the machine, printing, a broker tap."""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from agent.os_thread import kernel_names
from hil_tests.link import ROOT

TICKS = os.sysconf("SC_CLK_TCK")
PEERS_DIR = os.path.join(ROOT, ".peers")
TB_PYTHON = os.path.join(PEERS_DIR, "tb", "bin", "python")
NOT_INSTALLED = "peer not installed: run make bench-peers"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of proc(5))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of process `pid` by its kernel name (the agent names its threads:
    agent/os_thread.py; threads of one name are summed), from /proc/PID/task/*/schedstat (nanoseconds on a
    CPU, not the 10 ms ticks of /proc/PID/stat)."""
    out: dict[str, float] = {}
    for tid, name in kernel_names(pid).items():
        try:
            with open("/proc/%d/task/%d/schedstat" % (pid, tid)) as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
        out[name] = out.get(name, 0.0) + ns / 1e9
    return out


def wake_cost(pause: float, rounds: int) -> float:
    """µs of CPU the same pure-Python work (SenML-encoding a pack of 40 readings) takes when the thread
    slept `pause` s before it (0: back to back): on a machine whose caches and clocks go cold while a
    thread sleeps, work done right after a wake-up costs more, and every agent transaction is such work."""
    from protocols import senml

    readings = [("lamp-%02d" % (i // 4), ("voltage", "current", "power", "level")[i % 4], 230.5 + i,
                 1765000000.0 + i // 4) for i in range(40)]
    senml.encode(readings, "gw1:")
    spent = 0.0
    for _ in range(rounds):
        if pause:
            time.sleep(pause)
        began = time.thread_time()
        senml.encode(readings, "gw1:")
        spent += time.thread_time() - began
    return spent / rounds * 1e6


def wake_costs(quick: bool) -> str:
    """One line: `wake_cost` back to back and after 1, 10 and 30 ms asleep, with the ratio to back to back."""
    rounds = 20 if quick else 200
    warm = wake_cost(0.0, rounds)
    parts = ["%.1f µs back to back" % warm]
    for pause in (0.001, 0.01, 0.03):
        cold = wake_cost(pause, rounds)
        parts.append("%.1f µs after %g ms asleep (%.2fx)" % (cold, pause * 1000, cold / warm if warm else 0))
    return "the same work (a SenML pack of 40 readings) costs " + ", ".join(parts)


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of `pid` in KiB (VmRSS, VmHWM)."""
    now = peak = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return now, peak


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine() -> list[str]:
    """Lines that say where and with what the figures were measured."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mosq = "?"
    from hil_tests.broker import find_mosquitto

    binary = find_mosquitto()
    if binary:
        import subprocess

        out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10).stdout
        mosq = out.splitlines()[0].replace("mosquitto version ", "") if out else "?"
    tb = tb_version()
    versions = (sys.version.split()[0], pkg_version("fieldlink"), pkg_version("paho-mqtt"),
                pkg_version("pyserial"), pkg_version("pymodbus"), pkg_version("cbor2"), mosq,
                tb or "(not installed)")
    return [
        "machine: %s, %d cores, %s, load average %s (at start)" % (cpu, os.cpu_count() or 0,
                                                                   platform.platform(), load_average()),
        "versions: Python %s, FieldLink %s, paho-mqtt %s, pyserial %s, pymodbus %s, cbor2 %s, Mosquitto %s, "
        "ThingsBoard IoT Gateway %s" % versions,
    ]


def tb_version() -> str | None:
    """The ThingsBoard gateway version in its own venv (make bench-peers), or None."""
    if not os.access(TB_PYTHON, os.X_OK):
        return None
    import subprocess

    done = subprocess.run([TB_PYTHON, "-c", "from importlib.metadata import version as v; "
                           "print(v('thingsboard-gateway'), v('pymodbus'))"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    tb, pymodbus = done.stdout.split()
    return "%s (with pymodbus %s)" % (tb, pymodbus)


def say(text: str) -> None:
    """Progress while a long run measures (stderr, so stdout stays the report)."""
    print("  .. %s" % text, file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def ratio(ours: float, theirs: float | None) -> str:
    if theirs is None or theirs != theirs or not theirs:
        return "-"
    return "%.2fx" % (ours / theirs)


@dataclass
class Message:
    arrived: float  # time.time() when the subscriber got it
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Tap:
    """A paho subscriber on `topic` that keeps every message with its arrival time."""

    host: str
    port: int
    topic: str = "#"
    client_id: str = "bench-tap"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.connect(self.host, self.port, keepalive=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("bench subscriber got no SUBACK from %s:%d" % (self.host, self.port))

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        arrived = time.time()
        with self.lock:
            self.messages.append(Message(arrived, msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, suffix: str, since: float = 0.0) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic.endswith(suffix) and m.arrived >= since]

    def wait_for(self, suffix: str, count: int, timeout: float, since: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.on(suffix, since)) >= count:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
