"""A command flood at the wire: `fieldlink run`, the simulator and a real Mosquitto (issue #10, item 4).

* 500 commands of 1 MB each, then 10,000 small reads, all for one device on the `street` bus;
* right after the flood, one valid read for a device on the `meters` bus.

What must hold (measured, reported with `-s`; no tight timing is asserted):

* the agent's RSS (/proc/PID/status VmRSS, sampled every 50 ms) stays within 20 MB of its idle RSS;
* every 1 MB command is refused before it is decoded ("over the limit of 4096 bytes");
* the street bus never holds more than `[commands] queue` (32) commands: the excess is acked `busy`;
* the meters command is served while the street bus is still working through its queue (acks of street
  commands that ran arrive after it): a flooded bus never delays another one. Its latency (publish to ack)
  is printed; issue #10 names 2 s as the figure to meet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest

from hil_tests.link import SIM_ONLY, Target, wait_until
from hil_tests.test_agent_faults import Bench, start_bench

pytestmark = pytest.mark.slow

SCENARIO = """\
[site]
name = "hilflood"
seed = 77
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

[[bus]]
name = "meters"
line = "19200 8E1"

[[bus.device]]
id = "flat-101-water"
profile = "cjt188-water"
address = "00000000000101"
"""

BIG, BIG_SIZE, SMALL = 500, 1_000_000, 10_000
RSS_BOUND = 20 * 1024 * 1024


def rss(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for pid %d" % pid)


class Sampler:
    """The peak RSS of a process, sampled every 50 ms on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


class Acks:
    """A paho client on `…/ack` that records (arrival time, ack) of every ack."""

    def __init__(self, bench: Bench, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.seen: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood-acks")
        self.client.on_message = self._on
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(bench.broker.host, bench.broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert ready.wait(10)

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        ack = cbor2.loads(msg.payload)
        with self.lock:
            self.seen.append((time.time(), ack))

    def of(self, predicate: Any) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, a) for t, a in self.seen if predicate(a)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def bench(hil_link: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    if not hil_link.is_sim:
        pytest.skip("%s (--hil-link=%s)" % (SIM_ONLY, hil_link.spec))
    yield from start_bench(str(tmp_path_factory.mktemp("flood")), SCENARIO, name="flood")


def test_a_flood_of_commands_stays_bounded_and_other_buses_go_on(bench: Bench) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    bench.settle()
    with bench.feed.sub.lock:
        status = next(t for t, _, _ in bench.feed.sub.messages if t.endswith("/status"))
    base = status.rsplit("/", 1)[0]
    acks = Acks(bench, base + "/ack")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood-platform")
    pub.max_inflight_messages_set(100)
    pub.connect(bench.broker.host, bench.broker.port)
    pub.loop_start()
    try:
        time.sleep(1.0)
        idle = rss(bench.agent.pid)
        sampler = Sampler(bench.agent.pid)
        began = time.time()
        filler = "x" * BIG_SIZE
        for i in range(BIG):
            pub.publish(base + "/cmd", cbor2.dumps({"id": "big-%d" % i, "device": "lamp-01", "point": "dim",
                                                    "value": filler}, canonical=True), qos=1)
        big_sent = time.time()
        reads = [cbor2.dumps({"id": "s-%d" % i, "device": "lamp-01", "action": "read", "point": "dim"},
                             canonical=True) for i in range(SMALL)]
        infos = [pub.publish(base + "/cmd", payload, qos=1) for payload in reads]
        for info in infos:
            info.wait_for_publish(120)
        small_sent = time.time()
        read = {"id": "other-bus", "device": "flat-101-water", "action": "read", "point": "volume"}
        other = pub.publish(base + "/cmd", cbor2.dumps(read, canonical=True), qos=1)
        other.wait_for_publish(30)
        other_sent = time.time()
        assert wait_until(lambda: acks.of(lambda a: a["id"] == "other-bus"), 120), bench.agent.log()[-3000:]
        other_at, other_ack = acks.of(lambda a: a["id"] == "other-bus")[0]
        # the flood winds down: every command taken, and every queued one finished
        def settled() -> bool:
            c = bench.feed.health(after=time.time() - 1.5)["commands"]
            return c["received"] >= BIG + SMALL + 1 and c["queued"] == c["done"] + c["failed"]

        assert wait_until(settled, 120, step=0.5), bench.feed.messages("health")[-1]["commands"]
        peak = sampler.stop()
    finally:
        pub.disconnect()
        pub.loop_stop()
        acks.close()
    big = acks.of(lambda a: str(a["id"]).startswith("big-"))
    small = acks.of(lambda a: str(a["id"]).startswith("s-"))
    ran = [(t, a) for t, a in small if a["ok"]]
    busy = [(t, a) for t, a in small if not a["ok"] and "commands waiting" in str(a["error"])]
    ran_after = [t for t, _ in ran if t > other_at]
    health = bench.feed.health(after=time.time())
    print("\nflood: %d x %d B sent in %.1f s, %d small in %.1f s; agent RSS idle %.1f MB, peak %.1f MB "
          "(+%.1f MB)"
          "\n  1 MB commands acked: %d (refused: %s)"
          "\n  small: %d acked, %d ran, %d busy; street bus queue bound %s"
          "\n  other bus: acked %.2f s after its publish (%.2f s after the flood was sent): %s;"
          " %d street commands ran after it"
          "\n  health commands: %s; mqtt acks_dropped %s"
          % (BIG, BIG_SIZE, big_sent - began, SMALL, small_sent - big_sent, idle / 2**20, peak / 2**20,
             (peak - idle) / 2**20, len(big), big[0][1]["error"] if big else None, len(small), len(ran),
             len(busy), 32, other_at - other_sent, other_at - small_sent, other_ack, len(ran_after),
             health["commands"], health["mqtt"]["acks_dropped"]))
    bench.assert_alive()
    assert peak - idle < RSS_BOUND, "RSS grew by %.1f MB" % ((peak - idle) / 2**20)
    assert other_ack["ok"] is True, other_ack

    def size(cmd_id: str) -> int:
        body = {"id": cmd_id, "device": "lamp-01", "point": "dim", "value": filler}
        return len(cbor2.dumps(body, canonical=True))

    assert big and all(a["error"] == "command of %d bytes is over the limit of 4096 bytes" % size(a["id"])
                       for _, a in big)
    assert busy, "the street bus never said busy"
    assert ran_after, "the other bus's command waited for the whole street queue"
    assert health["commands"]["refused_by"]["too_large"] == BIG
