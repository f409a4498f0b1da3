"""Bus and device faults at the wire: `fieldlink run` as a subprocess against the simulator and a real
Mosquitto, observed by a subscriber that decodes with cbor2 and the RFC 8428 rules (hil_tests.test_agent_e2e).

One simulator, broker and agent serve the whole module (a small purpose-built site, `SCENARIO`); every
test clears all faults and waits until every device is online and publishing before it starts. A test
injects one fault on one device for a few seconds, clears it, and checks:

* the agent process is still running;
* the expected error kind grew in `…/health` (`errors`: timeout, crc, frame, exception, abnormal, …);
* every reading that arrived during the test equals the simulator's ground truth at its time (or at the
  1 s step before), so corrupted frames never became readings;
* the device's bus neighbours kept publishing, and raised no `comms` alarm;
* a device that went offline raised a `comms` alarm, cleared after the fault was cleared;
* after clearing, the faulty device publishes (correct) readings again.

Behaviour faults: `lamp_failure` shows in the lamp's fault point and raises then clears a `fault` alarm
(a `[[rules]]` entry of kind "fault" in the generated config); `leak` drops the pressure a sensor reports.

Run with `-rA` or `-s` to see what each test measured.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from hil_tests.broker import Mosquitto, Subscriber, broker_or_skip
from hil_tests.link import SIM_ONLY, Process, SimSite, Target, sim_agent_config, start_agent, wait_until
from hil_tests.test_agent_e2e import BASE, FAST, Record, resolve, same

pytestmark = pytest.mark.slow

#: A small site: three lamps and a pressure sensor on a Modbus bus; a DL/T 645 meter and a CJ/T 188 water
#: meter on a meter bus. The meter bus runs at 19200 8E1 (a pty carries bytes, not bits; the simulator is
#: instant) so that its poll cycle fits in the 0.5 s interval and a silent meter goes offline within seconds.
SCENARIO = """\
[site]
name = "hilfaults"
seed = 4242
speed = 1.0
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-{n:02}"
count = 3
profile = "generic-lamp"
address = 1
params = { dim = 0.8, rated_power = 100 }

[[bus.device]]
id = "mains-pressure"
profile = "pressure-sensor"
address = 20

[[bus]]
name = "meters"
line = "19200 8E1"

[[bus.device]]
id = "flat-101-power"
profile = "dlt645-1p"
address = "000000000101"

[[bus.device]]
id = "flat-101-water"
profile = "cjt188-water"
address = "00000000000101"
"""

#: Poll every 0.5 s with a 50 ms timeout: a silent device is retried after max(interval, 10 timeouts) =
#: 0.5 s, doubling, so it is offline ~1.5 s after its first failure and back ~2 s after it answers again.
INTERVAL = 0.5
TIMEOUT_MS = 50
FAULT_LAMP = "lamp-03"
RULES = """
[[rules]]
device = "%s"
point = "lamp_failure"
kind = "fault"
""" % FAULT_LAMP


# ------------------------------------------------------------------------------------------ the wire
class Feed:
    """An incremental cbor2 consumer of everything under `fieldlink/#` (each message decoded once)."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.sub = Subscriber(broker, client_id=client_id, persistent=True)
        self._lock = threading.Lock()
        self._seen = 0
        self._records: list[Record] = []
        self._by_leaf: dict[str, list[Any]] = {}

    def _update(self) -> None:
        import cbor2

        with self._lock:
            with self.sub.lock:
                fresh = self.sub.messages[self._seen:]
                self._seen += len(fresh)
            now = time.time()
            for topic, payload, _ in fresh:
                leaf = topic.rsplit("/", 1)[-1]
                try:
                    message = cbor2.loads(payload)
                except Exception as exc:  # a message the platform could not decode is a failure
                    message = {"undecodable": repr(exc), "payload": payload}
                self._by_leaf.setdefault(leaf, []).append(message)
                if leaf == "data":
                    self._records += resolve(message, now)

    def records(self, since: float = 0.0, device: str | None = None) -> list[Record]:
        """Readings with a time >= `since`, optionally of one device (by its `<device>/` prefix)."""
        self._update()
        prefix = "%s%s/" % (BASE, device) if device else BASE
        with self._lock:
            return [r for r in self._records if r.time >= since and r.name.startswith(prefix)]

    def messages(self, leaf: str) -> list[Any]:
        self._update()
        with self._lock:
            return list(self._by_leaf.get(leaf, []))

    def count(self, leaf: str) -> int:
        self._update()
        with self._lock:
            return len(self._by_leaf.get(leaf, []))

    def health(self, after: float = 0.0, timeout: float = 10.0) -> dict:
        """The first `…/health` map whose time is >= `after` (waits for it)."""
        found: list[dict] = []

        def fresh() -> bool:
            found[:] = [h for h in self.messages("health")
                        if isinstance(h, dict) and h.get("time", 0) >= after]
            return bool(found)

        assert wait_until(fresh, timeout), "no …/health message after %.1f within %.0f s" % (after, timeout)
        return found[0]

    def close(self) -> None:
        self.sub.close()


def point_of(record: Record) -> tuple[str, str]:
    device, point = record.name[len(BASE):].split("/", 1)
    return device, point


# --------------------------------------------------------------------------------------- the bench
#: how long before a reading's stamp `Bench.wrong_readings` asks the truth (s): at the stamp, a whole step
#: before, then every 10 ms of that second
TRUTH_BACK = (0.0, 1.0, *(k / 100 for k in range(1, 100)))


@dataclass
class Bench:
    """One simulator + Mosquitto + `fieldlink run` for a module; `feed` sees everything published."""

    sim: SimSite
    broker: Mosquitto
    feed: Feed
    agent: Process
    config: str
    interval: float
    truth_cache: dict[tuple[str, float], dict] = field(default_factory=dict)

    @property
    def client(self) -> Any:
        return self.sim.client

    def devices(self, bus: str | None = None) -> list[str]:
        return [d["id"] for d in self.sim.devices(bus)]

    def truths(self, device: str, wall: float) -> dict:
        key = (device, wall)
        if key not in self.truth_cache:
            self.truth_cache[key] = self.client.truths(device, wall=wall)
        return self.truth_cache[key]

    def wrong_readings(self, records: list[Record]) -> tuple[int, list[tuple]]:
        """(readings checked, the ones equal to the truth at no instant of the second before their time).

        The device takes a value when the request reaches it, the agent stamps it after the reply: the
        truth to compare with is the one at some instant up to a second before the stamp. The truth at the
        stamp or a whole step before (the simulator's values change in 1 s steps) is asked first; only when
        neither matches, every 10 ms of that second, since a write in it changes the truth mid-step (a
        reading taken just after a dim, stamped just after the next step began, matches neither)."""
        wrong = []
        for r in records:
            device, point = point_of(r)
            if any(same(r.value, self.truths(device, r.time - back)[point]) for back in TRUTH_BACK):
                continue
            wrong.append((r.name, r.time, r.value, self.truths(device, r.time)[point]))
        return len(records), wrong

    def alarms(self, start: int = 0) -> list[dict]:
        return self.feed.messages("alarm")[start:]

    def assert_alive(self) -> None:
        assert self.agent.alive, "the agent died (exit %s):\n%s" % (
            self.agent.returncode, self.agent.log()[-4000:])

    def clear_all(self) -> None:
        for device in self.devices():
            self.client.clear(device)
        for bus in self.sim.ports["buses"]:
            self.client.clear("bus:%s" % bus["name"])

    def offline(self) -> list[str]:
        """Devices whose latest `comms` alarm is raised (the agent reports them offline)."""
        state: dict[str, str] = {}
        for a in self.feed.messages("alarm"):
            if isinstance(a, dict) and a.get("kind") == "comms":
                state[str(a.get("device"))] = str(a.get("state"))
        return sorted(d for d, s in state.items() if s == "raised")

    def settle(self, timeout: float = 20.0) -> None:
        """Every device online (no `comms` alarm left raised) and publishing recent readings."""
        self.assert_alive()
        begin = time.time()
        ids = self.devices()

        def silent() -> list[str]:
            return [d for d in ids if not self.feed.records(begin - 1.0, d)]

        ok = wait_until(lambda: not self.offline() and not silent(), timeout, step=0.1)
        self.assert_alive()
        assert ok, "the site did not settle within %.0f s: offline %s, silent %s\n%s" % (
            timeout, self.offline(), silent(), self.agent.log()[-3000:])


def start_bench(workdir: str, scenario: str, rules: str = "", interval: float = INTERVAL,
                timeout_ms: int = TIMEOUT_MS, name: str = "hil",
                edit: Callable[[str], str] | None = None) -> Iterator[Bench]:
    """Start the simulator (scenario text), Mosquitto and the agent; yield the Bench; stop each by PID.

    `rules` is appended to the generated agent config; `edit` may rewrite its text before the start."""
    os.makedirs(workdir, exist_ok=True)
    scenario_path = os.path.join(workdir, "%s.toml" % name)
    with open(scenario_path, "w") as f:
        f.write(scenario)
    sim = SimSite(scenario_path, os.path.join(workdir, "sim")).start()
    broker: Mosquitto | None = None
    feed: Feed | None = None
    agent: Process | None = None
    bench: Bench | None = None
    try:
        broker = broker_or_skip()
        feed = Feed(broker, "%s-feed" % name)
        config = sim_agent_config(sim.ports_file, os.path.join(workdir, "agent.toml"), broker.url,
                                  os.path.join(workdir, "outbox.sqlite"), interval=interval,
                                  timeout_ms=timeout_ms, settings=FAST)
        with open(config) as f:
            text = f.read() + rules
        with open(config, "w") as f:
            f.write(edit(text) if edit is not None else text)
        agent = start_agent(config, os.path.join(workdir, "agent.log"))
        ok = wait_until(lambda: not agent.alive or bool(feed.sub.on("status")), 20)  # type: ignore[union-attr]
        assert agent.alive, "the agent exited (%s):\n%s" % (agent.returncode, agent.log()[-3000:])
        assert ok, "no birth within 20 s:\n%s" % agent.log()[-3000:]
        bench = Bench(sim, broker, feed, agent, config, interval)
        bench.settle(30)
        yield bench
        agent = bench.agent  # a test may have restarted it (test_agent_signed): stop the one running now
        rc = agent.stop(timeout=20)
        assert rc == 0, "the agent exited %s on SIGTERM:\n%s" % (rc, agent.log()[-3000:])
    finally:
        if bench is not None and bench.agent is not agent:
            bench.agent.stop(timeout=20)  # the current agent, when a test restarted it and then failed
        if agent is not None:
            agent.stop(timeout=20)
        if feed is not None:
            feed.close()
        sim.stop()
        if broker is not None:
            broker.close()


@pytest.fixture(scope="module")
def bench(hil_link: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    yield from start_bench(str(tmp_path_factory.mktemp("faults")), SCENARIO, RULES, name="faults")


@pytest.fixture
def clean(bench: Bench) -> Iterator[Bench]:
    """No fault in force and every device online and publishing, before and after the test."""
    bench.clear_all()
    bench.settle()
    try:
        yield bench
    finally:
        bench.clear_all()


# ------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One fault on one device: what must be counted and whether the device must go offline."""

    kind: str
    device: str
    params: dict[str, Any]
    errors: tuple[str, ...]  # at least one of these error kinds must grow in …/health
    offline: bool | None  # True: must go offline (comms alarm); False: must stay online; None: may
    hold: float = 2.0  # seconds the fault stays on (offline cases: until the comms alarm, plus 0.3 s)
    publishes: bool = False  # the device must keep publishing through the fault (it is recoverable)
    line_errors: bool = False  # the buses' link.line_errors in …/health must grow

    @property
    def id(self) -> str:
        return "%s-%s" % (self.kind, self.device)


CASES = [
    Case("no_answer", "lamp-02", {}, ("timeout",), True),
    Case("late", "lamp-02", {"delay": 0.3}, ("timeout",), True),
    Case("bad_crc", "lamp-02", {}, ("crc",), True),
    Case("bit_flip", "lamp-02", {"rate": 0.02}, ("crc", "frame"), None),
    Case("truncate", "lamp-02", {}, ("timeout", "frame"), True),
    # noise before a reply: the frame readers resynchronise past it and the reply is used; the noise is
    # counted in …/health buses.<bus>.link.line_errors, every value must be right and keep coming
    Case("noise", "lamp-02", {"length": 12}, (), None, publishes=True, line_errors=True),
    Case("wrong_address", "lamp-02", {}, ("timeout",), True),  # answers as unit 3: lamp-03's address
    Case("exception", "lamp-02", {"code": 2}, ("exception",), False),
    Case("abnormal", "flat-101-power", {}, ("abnormal",), False),
    Case("abnormal", "flat-101-water", {}, ("abnormal",), False),
    Case("bad_crc", "flat-101-power", {}, ("crc",), True),
    Case("truncate", "flat-101-water", {}, ("timeout", "frame"), True),
    Case("reboot", "lamp-01", {"duration": 3.0}, ("timeout",), True, hold=0.0),
]


def comms(alarms: list[dict], device: str, state: str) -> list[dict]:
    return [a for a in alarms
            if a.get("device") == device and a.get("kind") == "comms" and a.get("state") == state]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault_is_counted_and_never_becomes_a_reading(clean: Bench, case: Case) -> None:
    bench = clean
    dev = case.device
    bus = bench.sim.bus_of(dev)
    neighbours = [d for d in bench.devices(bus) if d != dev]
    began = time.time()
    alarm_start = bench.feed.count("alarm")
    before = bench.feed.messages("health")[-1]  # counters only grow; the settled site is the baseline
    errors_before = dict(before.get("errors", {}))
    counters_before = bench.client.counters(dev)["devices"][dev]

    bench.client.fault(dev, case.kind, **case.params)
    t1 = time.time()
    if case.offline:
        raised = wait_until(lambda: bool(comms(bench.alarms(alarm_start), dev, "raised")), 15)
        assert raised, "%s: no comms alarm for %s within 15 s:\n%s" % (
            case.id, dev, bench.agent.log()[-3000:])
        time.sleep(0.3)
    time.sleep(max(0.0, t1 + case.hold - time.time()))
    bench.client.clear(dev)
    t2 = time.time()

    # back: the faulty device publishes readings stamped after the clear, and any comms alarm is cleared
    def recovered() -> bool:
        if not bench.feed.records(t2 + 0.1, dev):
            return False
        alarms = bench.alarms(alarm_start)
        return len(comms(alarms, dev, "cleared")) >= len(comms(alarms, dev, "raised"))

    back = wait_until(recovered, 20, step=0.1)
    t3 = time.time()
    bench.assert_alive()
    assert back, "%s: %s did not come back within 20 s of the clear (alarms %s)" % (
        case.id, dev, bench.alarms(alarm_start))
    after = bench.feed.health(after=t3)
    bench.assert_alive()
    grew = {k: v - errors_before.get(k, 0) for k, v in after.get("errors", {}).items()
            if v - errors_before.get(k, 0) > 0}
    counters_after = bench.client.counters(dev)["devices"][dev]
    sim_delta = {k: counters_after[k] - counters_before.get(k, 0) for k in counters_after}

    # no wrong value: every reading of every device stamped since the test began equals the truth
    records = bench.feed.records(began - 0.5)
    checked, wrong = bench.wrong_readings(records)
    during = {d: len({r.time for r in records if point_of(r)[0] == d and t1 + 0.2 <= r.time <= t2})
              for d in [dev, *neighbours]}
    alarms = bench.alarms(alarm_start)
    raised_alarms = comms(alarms, dev, "raised")
    print("\n%s %s %s for %.1f s: errors grew %s; simulator %s; polls while faulty %s; %d readings checked, "
          "%d wrong; comms alarms %s; back %.1f s after the clear"
          % (case.kind, dev, case.params, t2 - t1, grew, sim_delta, during, checked, len(wrong),
             [(a["state"], a["value"]) for a in alarms if a.get("device") == dev], t3 - t2))

    assert not wrong, "%s: readings that differ from the ground truth: %s" % (case.id, wrong[:10])
    if case.line_errors:
        def line_errors(health: dict) -> int:
            return sum(bus.get("link", {}).get("line_errors", 0) for bus in health.get("buses", {}).values())

        assert line_errors(after) > line_errors(before), "%s: link.line_errors did not grow" % case.id
    assert not case.errors or set(grew) & set(case.errors), \
        "%s: expected %s to grow in …/health errors, grew %s" % (case.id, case.errors, grew)
    for n in neighbours:
        assert during[n] >= 2, "%s: neighbour %s published only %d polls while %s was faulty" % (
            case.id, n, during[n], dev)
        assert not comms(alarms, n, "raised"), "%s: neighbour %s went offline: %s" % (case.id, n, alarms)
    if case.publishes:
        assert during[dev] >= 0.5 * min(during[n] for n in neighbours), "%s: %s stopped publishing: %s" % (
            case.id, dev, during)
    if case.offline is False:
        assert not raised_alarms, "%s: %s answered (with errors) but was reported offline" % (case.id, dev)
    if raised_alarms:
        cleared = comms(alarms, dev, "cleared")
        assert cleared and cleared[-1]["time"] >= raised_alarms[0]["time"], alarms
    if case.offline:
        assert raised_alarms and any(a["value"] for a in raised_alarms), alarms
    if case.kind in ("bad_crc", "truncate", "no_answer", "late", "wrong_address"):
        assert during[dev] == 0, "%s: %s published %d polls while every reply was bad" % (
            case.id, dev, during[dev])
    if case.kind == "reboot":
        # counters restart from 0 at a reboot: the lamp's energy after it is below the energy before it
        energy = [(r.time, r.value) for r in records if r.name == "%s%s/energy" % (BASE, dev)]
        early = [v for t, v in energy if t < t1]
        late = [v for t, v in energy if t > t2]
        assert early and late and late[-1] < early[-1], energy


def test_lamp_failure_raises_and_clears_fault_alarm(clean: Bench) -> None:
    bench = clean
    dev = FAULT_LAMP
    began = time.time()
    alarm_start = bench.feed.count("alarm")
    bench.client.fault(dev, "lamp_failure")
    t1 = time.time()

    def fault_alarms(state: str) -> list[dict]:
        return [a for a in bench.alarms(alarm_start) if a.get("device") == dev and a.get("kind") == "fault"
                and a.get("point") == "lamp_failure" and a.get("state") == state]

    raised = wait_until(lambda: bool(fault_alarms("raised")), 10)
    time.sleep(1.0)
    bench.client.clear(dev, "lamp_failure")
    t2 = time.time()
    cleared = wait_until(lambda: bool(fault_alarms("cleared")) and bool(bench.feed.records(t2 + 0.6, dev)),
                         10)
    bench.assert_alive()
    records = bench.feed.records(began - 0.5)
    checked, wrong = bench.wrong_readings(records)

    def values(point: str, a: float, b: float) -> list[Any]:
        return [r.value for r in records if r.name == "%s%s/%s" % (BASE, dev, point) and a <= r.time <= b]

    failed_flags, failed_power = values("lamp_failure", t1 + 0.6, t2), values("power", t1 + 0.6, t2)
    ok_flags, ok_power = values("lamp_failure", t2 + 0.6, time.time()), values("power", t2 + 0.6, time.time())
    faults_word = values("faults", t1 + 0.6, t2)
    print("\nlamp_failure on %s for %.1f s: lamp_failure %s -> %s, faults %s, power %s -> %s; fault "
          "alarm raised %s, cleared %s; %d readings checked, %d wrong"
          % (dev, t2 - t1, sorted(set(failed_flags)), sorted(set(ok_flags)), sorted(set(faults_word)),
             sorted(set(failed_power)), sorted(set(ok_power)), fault_alarms("raised"),
             fault_alarms("cleared"), checked, len(wrong)))
    assert not wrong, wrong[:10]
    assert failed_flags and all(bool(v) for v in failed_flags), failed_flags
    assert faults_word and all(int(v) & 1 for v in faults_word), faults_word
    assert failed_power and all(v == 0 for v in failed_power), failed_power
    assert ok_flags and not any(bool(v) for v in ok_flags), ok_flags
    assert ok_power and all(v > 0 for v in ok_power), ok_power
    assert raised, "no fault alarm for %s/lamp_failure: %s" % (dev, bench.alarms(alarm_start))
    assert cleared, "the fault alarm was not cleared: %s" % bench.alarms(alarm_start)
    assert len(fault_alarms("raised")) == 1 and len(fault_alarms("cleared")) == 1, bench.alarms(alarm_start)
    assert fault_alarms("raised")[0]["value"] in (True, 1)


def test_leak_drops_the_pressure(clean: Bench) -> None:
    bench = clean
    dev, drop = "mains-pressure", 60000.0
    began = time.time()
    time.sleep(1.5)
    bench.client.fault(dev, "leak", drop=drop)
    t1 = time.time()
    time.sleep(2.5)
    bench.client.clear(dev, "leak")
    t2 = time.time()
    assert wait_until(lambda: bool(bench.feed.records(t2 + 1.2, dev)), 10)
    bench.assert_alive()
    records = bench.feed.records(began - 0.5)
    checked, wrong = bench.wrong_readings(records)
    pressure = [(r.time, r.value) for r in records if r.name == "%s%s/pressure" % (BASE, dev)]
    before = [v for t, v in pressure if began <= t < t1 - 0.1]
    during = [v for t, v in pressure if t1 + 1.1 <= t <= t2]
    after = [v for t, v in pressure if t > t2 + 1.1]
    print("\nleak on %s (drop %g Pa) for %.1f s: pressure %s -> %s -> %s Pa; %d readings checked, %d wrong"
          % (dev, drop, t2 - t1, sorted(set(before)), sorted(set(during)), sorted(set(after)), checked,
             len(wrong)))
    assert not wrong, wrong[:10]
    assert before and during and after, pressure
    assert max(during) < min(before) - 0.5 * drop, (before, during)
    assert min(after) > max(during) + 0.5 * drop, (during, after)
