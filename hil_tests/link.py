"""The HIL link and the processes of the end-to-end suite and the demo.

The suite talks to field devices over one *link*, chosen with ``--hil-link`` or ``HIL_LINK``:

* ``sim`` (default): ``fieldlink sim SCENARIO --instant --ports-file F`` as a subprocess; the agent
  polls its pseudo-terminals, and the tests read ground truth and inject faults on its control channel;
* a device path (``/dev/ttyUSB0``) or a pyserial URL (``socket://host:port``, ``rfc2217://…``): a real
  rig. Its agent config is a template given with ``--hil-rig-config`` / ``HIL_RIG_CONFIG`` (see
  docs/hil.md); tests that need ground truth or fault injection skip (`SIM_ONLY`).

Every process started here runs in its own session and is stopped by its PID: SIGTERM, a wait, then
SIGKILL. Nothing is found or stopped by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
SIM_ONLY = "needs the simulator's control channel"
RIG_TOKENS = ("{link}", "{broker_host}", "{broker_port}", "{outbox}")


@dataclass(frozen=True)
class Target:
    """What the HIL suite talks to (`--hil-link`): `sim`, a serial device path or a pyserial URL."""

    spec: str = "sim"

    @property
    def is_sim(self) -> bool:
        return self.spec == "sim"

    @property
    def kind(self) -> str:
        if self.is_sim:
            return "sim"
        return "serial" if "://" not in self.spec else self.spec.split("://", 1)[0]


def parse_link(spec: str | None) -> Target:
    """`sim` (also for an empty value), a device path, or a pyserial URL such as `socket://host:port`."""
    text = (spec or "").strip() or "sim"
    if text == "sim":
        return Target()
    if "://" not in text and not text.startswith("/"):
        raise ValueError("--hil-link wants `sim`, a device path (/dev/ttyUSB0) or a URL "
                         "(socket://host:port), not %r" % text)
    return Target(text)


class Process:
    """A child process in its own session (no terminal signals reach it), stopped by its PID."""

    def __init__(self, name: str, argv: list[str], log_path: str | None = None, cwd: str = ROOT,
                 new_session: bool = True, stdout: IO[Any] | int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log: IO[Any] | None = open(log_path, "ab") if log_path else None
        out: IO[Any] | int | None = stdout if stdout is not None else (self._log or subprocess.DEVNULL)
        err: IO[Any] | int | None = self._log or subprocess.DEVNULL
        if stdout is not None and self._log is None:
            err = None  # share the caller's stderr
        self.popen = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      start_new_session=new_session, env=env)
        self.pid = self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM by PID, wait up to `timeout`, then SIGKILL; returns the exit status."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL by PID: no clean-up of any kind in the child."""
        return self._signal(signal.SIGKILL, 10.0)

    def interrupt(self, timeout: float = 15.0) -> int:
        return self._signal(signal.SIGINT, timeout)

    def _signal(self, sig: int, timeout: float) -> int:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.popen.returncode)

    def log(self) -> str:
        if not self.log_path:
            return ""
        if self._log is not None:
            self._log.flush()
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __repr__(self) -> str:
        return "Process(%s, pid %d)" % (self.name, self.pid)


def wait_until(predicate: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class SimSite:
    """`fieldlink sim SCENARIO --ports-file F` as a subprocess, with its ports and control client.

        site = SimSite("demo", workdir).start()
        site.ports        # the ports file: buses, their pty paths and devices, the control address
        site.client       # simulator.control.SimClient (truth, truths, fault, clear, ...)
        site.stop()
    """

    def __init__(self, scenario: str, workdir: str, instant: bool = True, speed: float | None = None) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.instant = instant
        self.speed = speed
        os.makedirs(workdir, exist_ok=True)
        self.ports_file = os.path.join(workdir, "ports.json")
        self.log_path = os.path.join(workdir, "sim.log")
        self.proc: Process | None = None
        self.ports: dict = {}
        self._client: Any = None

    def start(self, timeout: float = 30.0) -> SimSite:
        if os.path.exists(self.ports_file):
            os.unlink(self.ports_file)
        argv = [PYTHON, "-m", "agent.cli", "sim", self.scenario, "--ports-file", self.ports_file]
        if self.instant:
            argv.append("--instant")
        if self.speed is not None:
            argv += ["--speed", "%g" % self.speed]
        self.proc = Process("simulator", argv, self.log_path)
        if not wait_until(lambda: os.path.exists(self.ports_file) or not self.proc.alive,  # type: ignore[union-attr]
                          timeout):
            self.stop()
            raise RuntimeError("the simulator wrote no ports file within %.0f s: %s" % (timeout, self.log()))
        if not self.proc.alive:
            log = self.log()
            self.stop()
            raise RuntimeError("the simulator exited: %s" % log)
        with open(self.ports_file) as f:
            self.ports = json.load(f)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def control(self) -> str:
        return str(self.ports["control"])

    @property
    def client(self) -> Any:
        """The control channel client (opened on first use, closed by `stop`)."""
        if self._client is None:
            from simulator.control import SimClient

            self._client = SimClient(self.control)
        return self._client

    def devices(self, bus: str | None = None) -> list[dict]:
        """The simulated devices (id, protocol, address, profile, kind), optionally of one bus."""
        return [d for b in self.ports.get("buses", []) if bus is None or b["name"] == bus
                for d in b.get("devices", [])]

    def bus_of(self, device: str) -> str:
        return next(b["name"] for b in self.ports["buses"] if any(d["id"] == device for d in b["devices"]))

    def log(self) -> str:
        return self.proc.log()[-3000:] if self.proc else ""

    def stop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None
        if self.proc is not None:
            self.proc.stop()


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def set_keys(text: str, settings: dict[str, dict[str, object]]) -> str:
    """Set `section.key = value` in a TOML text of simple `[section]` tables (replace or insert)."""
    lines = text.splitlines()
    for section, values in settings.items():
        header = "[%s]" % section
        if header not in (s.strip() for s in lines):
            lines += ["", header] + ["%s = %s" % (k, toml_value(v)) for k, v in values.items()]
            continue
        start = next(i for i, s in enumerate(lines) if s.strip() == header)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        for key, value in values.items():
            entry = "%s = %s" % (key, toml_value(value))
            found = next((i for i in range(start + 1, end) if lines[i].split("=")[0].strip() == key), None)
            if found is not None:
                lines[found] = entry
            else:
                lines.insert(start + 1, entry)
                end += 1
    return "\n".join(lines) + "\n"


def sim_agent_config(ports_file: str, path: str, broker: str, outbox: str, interval: float = 1.0,
                     timeout_ms: int = 200, gateway: str = "gw1",
                     settings: dict[str, dict[str, object]] | None = None) -> str:
    """Write an agent config for a running simulator with `fieldlink sim-config`, then `settings`."""
    argv = [PYTHON, "-m", "agent.cli", "sim-config", ports_file, "--broker", broker, "--outbox", outbox,
            "--interval", "%g" % interval, "--timeout-ms", str(timeout_ms), "--gateway", gateway, "-o", path]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError("fieldlink sim-config failed (%d): %s" % (done.returncode, done.stderr))
    if settings:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(set_keys(text, settings))
    return path


def rig_agent_config(template: str, link: Target, path: str, broker: str, outbox: str,
                     settings: dict[str, dict[str, object]] | None = None) -> str:
    """Fill a real rig's config template: {link} {broker_host} {broker_port} {outbox} are replaced."""
    host, _, port = broker.rpartition(":")
    with open(template) as f:
        text = f.read()
    for token, value in zip(RIG_TOKENS, (link.spec, host, port, outbox), strict=True):
        text = text.replace(token, value)
    if settings:
        text = set_keys(text, settings)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_agent(config: str, log_path: str, level: str = "INFO") -> Process:
    """`fieldlink run CONFIG` as a subprocess, its log (stderr) appended to `log_path`."""
    return Process("agent", [PYTHON, "-m", "agent.cli", "run", config, "--log-level", level], log_path)


__all__ = [
    "ROOT",
    "SIM_ONLY",
    "Process",
    "SimSite",
    "Target",
    "parse_link",
    "rig_agent_config",
    "set_keys",
    "sim_agent_config",
    "start_agent",
    "wait_until",
]
