"""Latency that adapts (issue #12 item 3), at the wire with a real Mosquitto: an idle uplink publishes a
poll's readings at once; packs grow while a PUBACK is awaited and while the broker is away.

Nothing here asserts a time: the batch age is set to an hour, so a reading that arrives at all before
the test's deadline was published because the uplink was idle, not because its pack grew old. The
latency figures themselves come from `make bench` (docs/benchmarks.md).
"""

from __future__ import annotations

import time

import cbor2
import pytest

from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.uplink import Uplink
from hil_tests.broker import Subscriber, broker_or_skip

INVENTORY = [{"id": "lamp-%d" % i, "kind": "lamp", "model": "generic-lamp", "protocol": "modbus",
              "address": i, "points": [{"name": "dim", "unit": "/"}, {"name": "on", "unit": ""}]}
             for i in range(1, 5)]
T0 = 1_700_000_000


@pytest.fixture
def broker():
    b = broker_or_skip(persistence=True)
    yield b
    b.close()


@pytest.fixture
def sub(broker):
    s = Subscriber(broker, client_id="latency-sub", persistent=True)
    yield s
    s.close()


def make_uplink(broker, tmp_path, max_records: int = 200, linger: float = 0.25) -> Uplink:
    config = Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=3600),
        broker=BrokerConfig(host=broker.host, port=broker.port, reconnect_min=0.1, reconnect_max=0.5),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite"), inflight=5),
        batch=BatchConfig(max_records=max_records, max_age=3600.0, linger=linger),
    )
    return Uplink(config, INVENTORY)


def poll(lamp: int, t: float) -> list:
    """One lamp's poll: its two points at one time."""
    return [("lamp-%d" % lamp, "dim", lamp / 10, t), ("lamp-%d" % lamp, "on", True, t)]


def packs(sub) -> list[list]:
    return [cbor2.loads(p) for p in sub.on("data")]


def count(sub) -> int:
    return sum(len(p) for p in packs(sub))


def test_an_idle_uplink_publishes_each_poll_at_once(broker, sub, tmp_path):
    uplink = make_uplink(broker, tmp_path)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        for i in range(1, 5):
            uplink.submit(poll(i, T0 + i))
            # the batch age is an hour: only the idle rule can publish it
            assert sub.wait_for(lambda i=i: count(sub) == 2 * i, 10), "poll %d was not published" % i
            assert sub.wait_for(lambda: uplink.idle, 10)
    finally:
        uplink.stop()
    got = packs(sub)
    assert len(got) == 4 and all(len(p) == 2 for p in got), got  # one pack per poll


def test_fresh_polls_linger_together_and_an_old_reading_sends_the_pack(broker, sub, tmp_path):
    """`[batch] linger`: fresh readings wait (here an hour, so nothing else can send them) for the polls
    that end meanwhile; a reading already older than the linger makes the pack go at once, the fresh
    readings with it."""
    uplink = make_uplink(broker, tmp_path, linger=3600.0)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected and uplink.idle, 10)
        now = time.time()
        uplink.submit(poll(1, now))
        uplink.submit(poll(2, now))
        assert uplink.batcher.pending == 4  # not sent: the linger holds them
        uplink.submit(poll(3, now - 7200))  # the end of a long poll, two hours late
        assert sub.wait_for(lambda: count(sub) == 6, 10)
    finally:
        uplink.stop()
    assert [len(p) for p in packs(sub)] == [6]  # three polls, one pack


def test_packs_grow_while_the_broker_is_away_and_go_out_when_it_returns(broker, sub, tmp_path):
    uplink = make_uplink(broker, tmp_path)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        broker.stop()
        assert sub.wait_for(lambda: not uplink.connected, 10)
        for i in range(40):
            uplink.submit(poll(i % 4 + 1, T0 + i))
        assert uplink.batcher.pending == 80  # offline: nothing closed the pack (an hour's age, 200 records)
        broker.start()
        assert sub.wait_for(lambda: count(sub) == 80, 30)
    finally:
        uplink.stop()
    assert len(packs(sub)) == 1, [len(p) for p in packs(sub)]  # 40 polls, one pack


def test_under_load_readings_gather_while_a_puback_is_awaited(broker, sub, tmp_path):
    uplink = make_uplink(broker, tmp_path, max_records=50)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        for i in range(2000):  # as fast as this thread goes: far faster than a PUBACK comes back
            uplink.submit(poll(i % 4 + 1, T0 + i))
        assert sub.wait_for(lambda: count(sub) == 4000, 60)
        assert sub.wait_for(lambda: uplink.publisher.stats()["records_published"] == 4000, 10)
    finally:
        uplink.stop()
    sizes = [len(p) for p in packs(sub)]
    print("\n2000 polls submitted back to back: %d packs, largest %d readings" % (len(sizes), max(sizes)))
    assert len(sizes) < 2000 / 4, "packs grew under load"
    assert max(sizes) == 50  # the record limit closed packs while PUBACKs were awaited


def test_adaptive_off_keeps_packs_to_the_batch_limits(broker, sub, tmp_path):
    """batch.adaptive = false (a metered link): an idle uplink keeps the open pack until a limit closes it."""
    uplink = make_uplink(broker, tmp_path, max_records=6)
    uplink.config.batch.adaptive = False
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        uplink.submit(poll(1, T0))
        uplink.submit(poll(2, T0 + 1))
        time.sleep(1.0)  # an adaptive uplink would have sent both by now (the test above)
        assert count(sub) == 0 and uplink.batcher.pending == 4
        uplink.submit(poll(3, T0 + 2))  # the sixth reading: max_records closes the pack
        assert sub.wait_for(lambda: count(sub) == 6, 10)
    finally:
        uplink.stop()
    assert len(packs(sub)) == 1
