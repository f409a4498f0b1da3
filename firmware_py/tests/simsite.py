"""The shared simulator for the firmware tests: `fieldlink sim` on ptys, its site compiled for the board.

    with Simulator("demo", tmp) as sim:          # stopped by PID at the end
        cfg = sim.firmware_config(broker_port, rules=[...])   # path of the compiled JSON
        sim.client.truth("lamp-01", "dim", wall=t)             # ground truth over the control channel
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from firmware_py.tests.mpvm import ROOT


class SimulatorMissing(Exception):
    pass


class Simulator:
    def __init__(self, scenario: str, tmp: str) -> None:
        self.scenario = scenario
        self.tmp = tmp
        self.ports_file = os.path.join(tmp, "ports.json")
        self.proc: subprocess.Popen | None = None
        self.client = None
        self.ports: dict = {}
        self.cache: dict = {}

    def __enter__(self) -> Simulator:
        try:
            from simulator.control import SimClient
        except ImportError as exc:
            raise SimulatorMissing("simulator not importable: %s" % exc) from None
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "sim", self.scenario, "--instant",
                                      "--ports-file", self.ports_file], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.ports_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.close()
                raise SimulatorMissing("fieldlink sim did not start: %s" % err[-500:])
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written in one go, but give the writer a moment
        with open(self.ports_file) as f:
            self.ports = json.load(f)
        self.client = SimClient(self.ports["control"])
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def firmware_config(self, broker_port: int, interval: float = 1.0, timeout_ms: int = 100,
                        health: float = 2.0, rules: list[dict] | None = None, extra: str = "",
                        gateway: str = "", ring_slots: int = 16) -> str:
        """`fieldlink sim-config` for this site, tuned for a short test, compiled for the board;
        `gateway` is added to its [gateway] table, `extra` at the end."""
        from agent.config import load_config
        from agent.firmware.config import compile_config, dumps

        toml = os.path.join(self.tmp, "site.toml")
        out = subprocess.run([sys.executable, "-m", "agent.cli", "sim-config", self.ports_file, "--broker",
                              "127.0.0.1:%d" % broker_port, "--interval", str(interval), "--timeout-ms",
                              str(timeout_ms), "--outbox", os.path.join(self.tmp, "o.sqlite")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        head = 'payload = "senml"\nhealth_interval = %s\n%s' % (health, gateway)
        text = out.stdout.replace('payload = "senml"\n', head)
        text = text.replace("port = %d\n" % broker_port,
                            "port = %d\nkeepalive = 10\nreconnect_min = 0.2\nreconnect_max = 1.0\n"
                            % broker_port, 1)
        for rule in rules or []:
            text += "\n[[rules]]\n" + "".join("%s = %s\n" % (k, json.dumps(v)) for k, v in rule.items())
        text += extra
        with open(toml, "w") as f:
            f.write(text)
        compiled = compile_config(load_config(toml), board="host", ring_slots=ring_slots, ring_slot_size=1024)
        path = os.path.join(self.tmp, "fw.json")
        with open(path, "w") as f:
            f.write(dumps(compiled))
        return path

    def truth(self, device: str, point: str, wall: float) -> object:
        key = (device, point, wall)
        if key not in self.cache:
            self.cache[key] = self.client.truth(device, point, wall=wall)
        return self.cache[key]

    def matches(self, device: str, point: str, value: object, t: float, span: float = 2.5) -> bool:
        """True when `value`, stamped at whole second `t`, is what the device answered at some moment
        of [t, t + span] (the stamp is taken before the request; a meter bus may take a while)."""
        samples = [self.truth(device, point, t + k * 0.25) for k in range(int(span * 4) + 1)]
        for s in samples:
            if s == value:
                return True
            if isinstance(s, (int, float)) and isinstance(value, (int, float)) and not isinstance(s, bool) \
                    and abs(s - value) <= 1e-9 * max(1.0, abs(s)):
                return True
        numbers = [s for s in samples if isinstance(s, (int, float)) and not isinstance(s, bool)]
        if len(numbers) == len(samples) and isinstance(value, (int, float)):  # a counter between samples
            return min(numbers) <= value <= max(numbers)
        return False
