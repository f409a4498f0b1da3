"""End-to-end runs: a real Mosquitto, a simulated site (`fieldlink sim`), `fieldlink run`, a subscriber.

    with SiteRun("street", workdir, instant=True, interval=1.0) as run:
        run.wait_data()
        window = run.window(seconds)       # agent CPU (/proc), Modbus transactions (simulator counters)
        run.tap.messages                   # everything published, with arrival times

The agent's CPU comes from /proc/PID/stat of the agent process alone; its transactions from the
simulator's own request counters; its readings from what the subscriber decoded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from hil_tests.bench.common import Tap, cpu_seconds, rss_kib, say, thread_cpu
from hil_tests.bench.wire import data_records
from hil_tests.broker import Mosquitto
from hil_tests.link import Process, SimSite, sim_agent_config, start_agent


@dataclass
class Window:
    """What the agent did between two instants."""

    start: float  # time.time()
    end: float
    cpu: float  # agent CPU seconds in the window
    transactions: int  # requests the simulated devices received in the window
    peak_rss_kib: int
    readings: int = 0  # readings whose time lies in the window (counted after they were published)
    threads: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window by agent thread

    def by_thread(self) -> str:
        """Each agent thread's CPU per Modbus transaction, the busiest first."""
        if not self.transactions:
            return "-"
        return ", ".join("%s %.1f µs" % (name, cpu / self.transactions * 1e6)
                         for name, cpu in sorted(self.threads.items(), key=lambda kv: -kv[1])
                         if cpu / self.transactions >= 0.5e-6)

    @property
    def per_1k_readings(self) -> float:
        return self.cpu / self.readings * 1000 if self.readings else float("nan")

    @property
    def per_transaction(self) -> float:
        return self.cpu / self.transactions if self.transactions else float("nan")


def requests(sim: Any) -> int:
    """Requests all simulated devices have received so far."""
    return sum(d["requests"] for d in sim.counters()["devices"].values())


class SiteRun:
    """Broker + simulator + agent + subscriber for one measurement (see module docstring)."""

    def __init__(self, scenario: str, workdir: str, instant: bool, interval: float,
                 settings: dict[str, dict[str, object]] | None = None, persistence: bool = False) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.instant = instant
        self.interval = interval
        self.settings = settings
        self.persistence = persistence
        self.broker: Mosquitto | None = None
        self.site: SimSite | None = None
        self.agent: Process | None = None
        self.tap: Tap | None = None
        self.config = ""

    def __enter__(self) -> SiteRun:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self.broker = Mosquitto(persistence=self.persistence).start()
        self.site = SimSite(self.scenario, self.workdir, instant=self.instant).start(timeout=120)
        self.config = sim_agent_config(self.site.ports_file, os.path.join(self.workdir, "agent.toml"),
                                       self.broker.url, os.path.join(self.workdir, "outbox.sqlite"),
                                       interval=self.interval, timeout_ms=500, settings=self.settings)
        self.tap = Tap(self.broker.host, self.broker.port, "fieldlink/#")
        self.start_agent()

    def start_agent(self) -> None:
        """`fieldlink run` on `config` (again, after `stop_agent`: e.g. with intervals rewritten)."""
        self.agent = start_agent(self.config, os.path.join(self.workdir, "agent.log"), level="WARNING")

    def wait_data(self, packs: int = 1, timeout: float = 60.0) -> None:
        assert self.tap is not None and self.agent is not None
        deadline = time.monotonic() + timeout
        while len(self.tap.on("/data")) < packs:
            if not self.agent.alive:
                raise RuntimeError("the agent exited: %s" % self.agent.log()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError("no data from the agent within %.0f s: %s"
                                   % (timeout, self.agent.log()[-2000:]))
            time.sleep(0.05)

    def window(self, seconds: float, settle: float) -> Window:
        """Measure the agent for `seconds`; then wait `settle` s for the window's readings to be published."""
        assert self.agent is not None and self.site is not None
        sim = self.site.client
        pid = self.agent.pid
        cpu0, threads0, req0, t0 = cpu_seconds(pid), thread_cpu(pid), requests(sim), time.time()
        time.sleep(seconds)
        cpu1, threads1, req1, t1 = cpu_seconds(pid), thread_cpu(pid), requests(sim), time.time()
        peak = rss_kib(pid)[1]
        w = Window(t0, t1, cpu1 - cpu0, req1 - req0, peak,
                   threads={name: cpu - threads0.get(name, 0.0) for name, cpu in threads1.items()})
        time.sleep(settle)
        w.readings = self.readings_between(t0, t1)
        return w

    def readings_between(self, t0: float, t1: float) -> int:
        assert self.tap is not None
        packs = data_records(self.tap.on("/data"))
        return sum(1 for _, records in packs for r in records if t0 <= r.time < t1)

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop(timeout=30)

    def close(self) -> None:
        for step in (self.stop_agent, self._close_tap, self._stop_site, self._close_broker):
            try:
                step()
            except Exception as exc:  # clean up the rest whatever one step did
                say("clean-up: %s" % exc)

    def _close_tap(self) -> None:
        if self.tap is not None:
            self.tap.close()
            self.tap = None

    def _stop_site(self) -> None:
        if self.site is not None:
            self.site.stop()
            self.site = None

    def _close_broker(self) -> None:
        if self.broker is not None:
            self.broker.close()
            self.broker = None


def lamp_scenario(path: str, devices: int, per_bus: int = 100) -> str:
    """A scenario file of `devices` lamp controllers, at most `per_bus` on each 9600 8N1 bus."""
    lines = ["# generated by hil_tests/bench: %d lamp controllers" % devices,
             "[site]", 'name = "lamps-%d"' % devices, "seed = 12", ""]
    left, bus = devices, 0
    while left > 0:
        n = min(left, per_bus)
        bus += 1
        lines += ["[[bus]]", 'name = "lamps-%d"' % bus, 'line = "9600 8N1"', "",
                  "[[bus.device]]", 'id = "b%d-lamp-{n:03}"' % bus, "count = %d" % n,
                  'profile = "generic-lamp"', "address = 1", "params = { rated_power = 100, dim = 0.7 }", ""]
        left -= n
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
