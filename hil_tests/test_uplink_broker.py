"""Store and forward at the wire: a real Mosquitto, the agent as a subprocess, a cbor2 subscriber.

The agent is `agent.tests.uplink_driver` (Uplink with numbered readings) until `fieldlink run` exists.
Reading i is dev<i % 4>/n = i at time T0 + i: a consumer deduplicates by (name, time) and checks that
every stream arrives complete and in order.
"""

from __future__ import annotations

import ast
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from hil_tests.broker import Mosquitto, Subscriber, broker_or_skip

pytestmark = pytest.mark.slow

T0 = 1_700_000_000
DEVICES = 4


class Driver:
    """The agent stand-in as a subprocess; follows its `committed N` lines."""

    def __init__(self, broker: Mosquitto, outbox: str, **options: object) -> None:
        argv = [sys.executable, "-m", "agent.tests.uplink_driver", "--broker", broker.url, "--outbox", outbox,
                "--devices", str(DEVICES)]
        for key, value in options.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        self.committed = 0
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self.lines.append(text.strip())
            m = re.match(r"committed (\d+)", text)
            if m:
                self.committed = int(m.group(1))

    def wait_committed(self, n: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.committed < n:
            assert self.proc.poll() is None, "driver ended early: %s" % self.lines[-3:]
            assert time.monotonic() < deadline, "driver committed only %d of %d" % (self.committed, n)
            time.sleep(0.02)

    def wait(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout)
        self.reader.join(5)
        return rc

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        rc = self.wait(10)
        return rc

    def counters(self) -> dict:
        line = next(t for t in reversed(self.lines) if t.startswith("counters "))
        return ast.literal_eval(line[len("counters "):])


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Mosquitto:
    """The conftest broker: persistence on, queues sized for outages."""
    return mosquitto


def streams(readings) -> dict[str, list[int]]:
    """Per stream, the values in arrival order after deduplication by (name, time)."""
    seen: set = set()
    out: dict[str, list[int]] = {}
    for name, value, t in readings:
        if (name, t) in seen:
            continue
        seen.add((name, t))
        assert value == t - T0, "value and time disagree for %s" % name
        out.setdefault(name, []).append(value)
    return out


def assert_complete_and_ordered(readings, expected: range, window_records: int) -> None:
    got = streams(readings)
    values = sorted(v for vs in got.values() for v in vs)
    missing = sorted(set(expected) - set(values))
    assert not missing, "%d readings lost, first %s" % (len(missing), missing[:10])
    for name, vs in got.items():
        assert vs == sorted(vs), "stream %s out of order" % name
    duplicates = len(readings) - sum(len(vs) for vs in got.values())
    assert duplicates <= window_records, "%d duplicates exceed the in-flight window" % duplicates


def test_broker_outage_loses_nothing(broker, tmp_path):
    """Readings keep coming while the broker is down for 2 s; the outbox grows, then drains in order."""
    sub = Subscriber(broker, client_id="platform")  # a persistent session, as docs/broker.md asks
    count, batch, inflight = 3000, 10, 20
    driver = Driver(broker, str(tmp_path / "o.sqlite"), count=count, rate=1000, batch=batch,
                    inflight=inflight, drain_timeout=30)
    try:
        driver.wait_committed(600)
        broker.stop()
        stopped_at = driver.committed
        time.sleep(2.0)
        backlog_from = driver.committed
        broker.start()
        assert driver.wait(60) == 0, driver.lines[-3:]
        assert backlog_from - stopped_at >= 1000, "the outage must overlap the submissions"
        assert sub.wait_for(lambda: len(streams(sub.readings())) == DEVICES and
                            sum(map(len, streams(sub.readings()).values())) >= count, 20)
    finally:
        sub.close()
        if driver.proc.poll() is None:
            driver.kill()
    readings = sub.readings()
    assert_complete_and_ordered(readings, range(count), inflight * batch)
    counters = driver.counters()
    assert counters["readings"]["dropped"] == 0 and counters["mqtt"]["connects"] >= 2
    assert counters["mqtt"]["packs_resent"] <= inflight * counters["mqtt"]["disconnects"]
    print("outage: %d readings, %d submitted while the broker was down, %d duplicates"
          % (count, backlog_from - stopped_at, len(readings) - count))


@pytest.mark.parametrize(("broker_down", "fsync"), [(False, "normal"), (True, "full")])
def test_sigkill_loses_nothing_committed(broker, tmp_path, broker_down, fsync):
    """SIGKILL mid-run (with the broker up: in-flight packs; down: a backlog), then restart."""
    sub = Subscriber(broker, client_id="platform")
    outbox = str(tmp_path / "o.sqlite")
    first = Driver(broker, outbox, count=100000, rate=2000, batch=10, inflight=20, fsync=fsync)
    try:
        first.wait_committed(800)
        if broker_down:
            broker.stop()
            target = first.committed + 800
            first.wait_committed(target)
        first.kill()
        committed = first.committed
        if broker_down:
            broker.start()
        second = Driver(broker, outbox, start=500000, count=10, batch=10, fsync=fsync, drain_timeout=30)
        assert second.wait(60) == 0, second.lines[-3:]
        assert sub.wait_for(lambda: set(range(committed)) <= {v for _, v, _ in sub.readings()}, 20)
    finally:
        sub.close()
    readings = [r for r in sub.readings() if r[1] < 500000]
    assert_complete_and_ordered([r for r in readings if r[1] < committed], range(committed), 20 * 10)
    print("sigkill (broker %s, fsync %s): %d committed readings, all delivered"
          % ("down" if broker_down else "up", fsync, committed))


def test_outbox_bound_drops_oldest_and_health_counts_it(broker, tmp_path):
    """Broker down from the start, outbox bounded to ~4 kB: the newest packs survive, drops are counted."""
    sub = Subscriber(broker, client_id="platform")  # its persistent session outlives the outage
    broker.stop()
    count = 2000
    driver = Driver(broker, str(tmp_path / "o.sqlite"), count=count, rate=20000, batch=10,
                    max_bytes=4000, health_interval=0.2, drain_timeout=30)
    try:
        driver.wait_committed(count)
        broker.start()
        assert driver.wait(60) == 0, driver.lines[-3:]
        assert sub.wait_for(lambda: sub.readings() and max(v for _, v, _ in sub.readings()) == count - 1, 10)
        assert sub.wait_for(lambda: sub.on("health"), 5)
    finally:
        sub.close()
        if driver.proc.poll() is None:
            driver.kill()
    values = sorted({v for _, v, _ in sub.readings()})
    lowest = values[0]
    assert values == list(range(lowest, count)), "what survives is a contiguous run of the newest"
    health = sub.decoded("health")[-1]  # published on the broker while the backlog drained
    assert health["readings"]["dropped"] == lowest > 0
    assert health["outbox"]["dropped_records"] == lowest and health["outbox"]["dropped_packs"] == lowest // 10
    assert driver.counters()["readings"]["dropped"] == lowest
    print("bound: %d of %d readings kept, %d dropped and counted" % (count - lowest, count, lowest))


def test_slow_subscriber_gets_everything_from_a_properly_sized_broker(broker, tmp_path):
    """1,500 packs in a burst to a subscriber that needs 2 ms per message: nothing lost."""
    assert_slow_subscriber(broker, tmp_path, expect_all=True)


def test_default_sized_queue_drops_to_a_slow_subscriber(tmp_path):
    """The counter-example docs/broker.md warns about (queue of 100 here, Mosquitto's default 1,000)."""
    small = broker_or_skip(max_queued_messages=100)
    try:
        assert_slow_subscriber(small, tmp_path, expect_all=False)
    finally:
        small.close()


def assert_slow_subscriber(broker: Mosquitto, tmp_path, expect_all: bool) -> None:
    count = 1500
    sub = Subscriber(broker, client_id="slow", persistent=False, delay=0.002)
    try:
        driver = Driver(broker, str(tmp_path / "o.sqlite"), count=count, rate=100000, batch=1,
                        inflight=50, drain_timeout=30)
        assert driver.wait(60) == 0, driver.lines[-3:]  # every pack got its PUBACK
        if expect_all:
            sub.wait_for(lambda: len(sub.on("data")) >= count, 15)
        else:  # until nothing more arrives for 0.5 s
            seen = -1
            while seen != len(sub.on("data")):
                seen = len(sub.on("data"))
                time.sleep(0.5)
    finally:
        sub.close()
    got = {v for _, v, _ in sub.readings()}
    if expect_all:
        assert got == set(range(count))
    else:
        assert len(got) < count, "expected the small queue to drop messages"
        print("queue of 100: the slow subscriber got %d of %d PUBACKed packs" % (len(got), count))


def test_monitor_shows_what_the_agent_sends(broker, tmp_path):
    """`fieldlink monitor --once N --json` decodes the agent's packs (compact profile, aliases)."""
    marker = Subscriber(broker, client_id="marker", persistent=False)
    marker.client.publish("fieldlink/s0/g0/status", b"\xa0", qos=1, retain=True).wait_for_publish(5)
    marker.close()
    mon = subprocess.Popen([sys.executable, "-m", "agent.cli", "monitor", "--broker", broker.url, "--json",
                            "--once", "5", "--timeout", "30"], stdout=subprocess.PIPE, text=True)
    assert mon.stdout is not None
    assert "s0/g0/status" in mon.stdout.readline()  # the retained marker: the monitor has subscribed
    driver = Driver(broker, str(tmp_path / "o.sqlite"), count=50, batch=10, payload="compact")
    try:
        assert driver.wait(60) == 0
        out, _ = mon.communicate(timeout=30)
    finally:
        mon.kill()
    assert mon.returncode == 0

    events = [json.loads(t) for t in out.splitlines()]
    assert not any(e["kind"] == "error" for e in events), events
    readings = [e for e in events if e["kind"] == "reading"]
    assert sorted(e["value"] for e in readings) == list(range(50))
    assert all(e["unit"] == "count" and e["time"] == T0 + e["value"] for e in readings)
    assert any(e["kind"] == "inventory" and e["message"]["payload"] == "compact" for e in events)
    assert any(e["kind"] == "status" and e["message"]["online"] for e in events)
