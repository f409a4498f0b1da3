"""An idle agent sleeps until something is due (issue #12, the CPU rows), at the wire with a real
Mosquitto: the network thread waits on the broker's socket and a wake-up, the batch thread until the
open pack's age; a committed pack, a new pack's deadline and stop each end those waits at once, and a
stream of polls costs the network thread about one turn per pack (close and publish it, read the last
one's PUBACK) and the batch thread none.

No time is asserted: each test either counts the threads' turns over a quiet stretch (a polling loop
makes dozens, a load can only make fewer) or stretches the longest wait to an hour, so that what it
waits for arrives before the deadline only because the wake-up under test happened.
"""

from __future__ import annotations

import threading
import time

import cbor2
import pytest

from agent import outbox as outbox_mod
from agent import publisher as publisher_mod
from agent import uplink as uplink_mod
from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.publisher import Publisher
from agent.tests.test_outbox_faults import inserted
from agent.uplink import Uplink
from hil_tests.broker import Subscriber

INVENTORY = [{"id": "lamp-1", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus",
              "address": 1, "points": [{"name": "dim", "unit": "/"}, {"name": "on", "unit": ""}]}]
T0 = 1_700_000_000
HOUR = 3600.0


@pytest.fixture
def sub(broker):
    s = Subscriber(broker, client_id="idle-sub")
    yield s
    s.close()


def make_uplink(broker, tmp_path, max_age: float = HOUR, adaptive: bool = True) -> Uplink:
    config = Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=3600),
        broker=BrokerConfig(host=broker.host, port=broker.port, reconnect_min=0.1, reconnect_max=0.5),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite")),
        batch=BatchConfig(max_age=max_age, adaptive=adaptive),
    )
    return Uplink(config, INVENTORY)


def poll(t: float) -> list:
    return [("lamp-1", "dim", 0.5, t), ("lamp-1", "on", True, t)]


def count(sub) -> int:
    return sum(len(cbor2.loads(p)) for p in sub.on("data"))


def count_turns(monkeypatch) -> dict:
    """Counts, from now on, the network loop's turns (`loop`) and the batch thread's (`batch`)."""
    turns = {"loop": 0, "batch": 0}
    loop, sleep_for = Publisher._turn, Uplink._sleep_for

    def counted_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        turns["loop"] += 1
        return loop(self, *args, **kwargs)

    def counted_sleep_for(self):  # type: ignore[no-untyped-def]
        turns["batch"] += 1
        return sleep_for(self)

    monkeypatch.setattr(Publisher, "_turn", counted_loop)
    monkeypatch.setattr(Uplink, "_sleep_for", counted_sleep_for)
    return turns


def test_an_idle_uplink_wakes_about_once_a_second(broker, sub, tmp_path, monkeypatch):
    """Connected, nothing to send: over 3 s the network loop turns a few times (it used to turn every
    50 ms: 60 times) and the batch thread not at all (every 100 ms: 30 times)."""
    turns = count_turns(monkeypatch)
    uplink = make_uplink(broker, tmp_path)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.idle and uplink.publisher.stats()["inflight"] == 0, 10)
        time.sleep(0.5)  # the health message and status go out, their PUBACKs come back
        before = dict(turns)
        time.sleep(3.0)
        loop_turns, batch_turns = turns["loop"] - before["loop"], turns["batch"] - before["batch"]
    finally:
        uplink.stop()
    assert loop_turns <= 3.0 / publisher_mod.IDLE_WAIT + 3, loop_turns
    assert batch_turns <= 3.0 / uplink_mod._IDLE + 2, batch_turns


def test_a_committed_pack_wakes_the_network_thread(broker, sub, tmp_path, monkeypatch):
    """With the network thread's longest sleep set to an hour, a poll of an idle uplink reaches the
    broker only because committing its pack wakes the thread."""
    monkeypatch.setattr(publisher_mod, "IDLE_WAIT", HOUR)
    uplink = make_uplink(broker, tmp_path)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.idle, 10)
        for i in range(3):
            uplink.submit(poll(T0 + i))
            assert sub.wait_for(lambda i=i: count(sub) == 2 * (i + 1), 30), "poll %d did not go out" % i
            assert sub.wait_for(lambda: uplink.idle, 30)
    finally:
        uplink.stop()


def test_an_open_pack_closes_at_its_age_not_at_the_longest_sleep(broker, sub, tmp_path, monkeypatch):
    """Adaptive batching off, batch age 0.3 s, the batch thread's longest sleep an hour: the pack goes
    out at its age because with no pack open the thread sleeps no longer than the batch age. Published at
    once and acknowledged, neither pack is ever written to the outbox file (agent/outbox.py)."""
    monkeypatch.setattr(uplink_mod, "_IDLE", HOUR)
    uplink = make_uplink(broker, tmp_path, max_age=0.3, adaptive=False)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        time.sleep(0.5)  # the batch thread is asleep with no pack open
        uplink.submit(poll(T0))
        assert sub.wait_for(lambda: count(sub) == 2, 30)
        uplink.submit(poll(T0 + 1))  # and again: the next pack gets its own deadline
        assert sub.wait_for(lambda: count(sub) == 4, 30)
        assert sub.wait_for(lambda: len(uplink.outbox) == 0, 10)
        assert inserted(uplink.config.outbox.path) == 0
    finally:
        uplink.stop()


def test_stop_wakes_both_sleeping_threads(broker, sub, tmp_path, monkeypatch):
    """Both threads asleep for up to an hour: stop still ends them (inside its join timeouts), having
    flushed the open pack and published it."""
    monkeypatch.setattr(publisher_mod, "IDLE_WAIT", HOUR)
    monkeypatch.setattr(uplink_mod, "_IDLE", HOUR)
    uplink = make_uplink(broker, tmp_path, adaptive=False)
    uplink.start()
    assert sub.wait_for(lambda: uplink.connected, 10)
    time.sleep(0.5)
    uplink.submit(poll(T0))  # an hour's batch age: only stop's flush sends it
    names = {"fieldlink-mqtt", "fieldlink-batch"}
    threads = [t for t in threading.enumerate() if t.name in names]
    assert {t.name for t in threads} == names
    uplink.stop()
    assert not any(t.is_alive() for t in threads)
    assert sub.wait_for(lambda: count(sub) == 2, 10)


def test_a_stream_of_polls_costs_one_network_turn_per_pack_and_a_batch_turn_a_second(broker, sub, tmp_path,
                                                                                    monkeypatch):
    """Polls every 50 ms for 5 s on an idle uplink (linger 0.25 s): the network thread closes a pack a
    linger after the last one and publishes it in the same turn, and reads that pack's PUBACK in the turn
    of the next pack rather than waking for it; no poll wakes it and the batch thread (batch age an hour)
    turns only to look whether the pack in flight is still unacknowledged (agent/outbox.py: an idle
    uplink's packs are written only then), once a `sync_every` (1 s) after the oldest such pack, which is
    at most a linger old: about once a second for all the packs of that second. It used to take the batch
    thread two turns per pack (the pack opening, its due time) and the network thread two (the pack, its
    PUBACK). A command sent meanwhile is still taken."""
    turns = count_turns(monkeypatch)
    class Gate:
        def __init__(self) -> None:
            self.taken: list = []

        def take(self, payload, retained=False):  # type: ignore[no-untyped-def]
            self.taken.append(payload)

    uplink = make_uplink(broker, tmp_path)
    uplink.commands = gate = Gate()
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.idle and uplink.publisher.stats()["inflight"] == 0, 10)
        time.sleep(0.5)  # the health message and status go out, their PUBACKs come back
        before, packs_before = dict(turns), len(sub.on("data"))
        written_before = inserted(uplink.config.outbox.path)
        for i in range(100):
            uplink.submit(poll(time.time()))
            if i == 50:
                sub.client.publish(uplink.config.topic("cmd"), b"\xa0", qos=1)
            time.sleep(0.05)
        assert sub.wait_for(lambda: count(sub) == 200, 30)
        assert sub.wait_for(lambda: uplink.idle and uplink.publisher.stats()["inflight"] == 0, 10)
        loop_turns, batch_turns = turns["loop"] - before["loop"], turns["batch"] - before["batch"]
        packs = len(sub.on("data")) - packs_before
        written = inserted(uplink.config.outbox.path) - written_before
        assert sub.wait_for(lambda: gate.taken == [b"\xa0"], 10)  # read at the next pack's turn
    finally:
        uplink.stop()
    assert written == 0, "%d of %d packs were written to the outbox file" % (written, packs)
    print("\n100 polls: %d packs, %d network turns, %d batch turns" % (packs, loop_turns, batch_turns))
    assert packs < 100  # polls were packed together
    # its longest sleep, and the look at the unwritten pack once a `sync_every` after the oldest one (at
    # most a linger old then): one turn serves every pack of a period
    looks = 5.5 / (outbox_mod.SYNC_EVERY - uplink.config.batch.linger)
    assert batch_turns <= 5.5 / uplink_mod._IDLE + looks + 2, batch_turns
    # one per pack, plus: the first pack's opening, its PUBACK and the last one's (no pack follows to
    # read them with), the command, a stall of this thread longer than the linger (the stream stops,
    # the next poll wakes the network thread; a busy machine), and the IDLE_WAIT turns of 5.5 s
    assert loop_turns <= 1.25 * packs + 8 + 5.5 / publisher_mod.IDLE_WAIT, (loop_turns, packs)
