"""The publisher over a failing outbox and a stalled broker, with a real Mosquitto and a cbor2 subscriber.

Today's bug (issue #10): `Outbox.ack` raising inside paho's on_publish ended the session, and every
reconnect resent the same window. Here the disk fails under a running uplink (errors injected at the
SQLite layer, as in test_outbox_faults.py): one connection, no resends, every reading once.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import cbor2
import pytest

from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.tests.test_outbox_faults import FULL, IO_ERROR, FaultyDisk
from agent.uplink import Uplink
from hil_tests.broker import Subscriber

INVENTORY = [{"id": "dev0", "kind": "flow_meter", "model": "test", "protocol": "modbus", "address": "1",
              "points": [{"name": "n", "unit": "count", "resolution": 1}]}]
T0 = 1_700_000_000


@pytest.fixture
def sub(broker):
    s = Subscriber(broker, client_id="platform", persistent=False)
    yield s
    s.close()


def config(broker, tmp_path, **broker_settings) -> Config:
    return Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=0.5),
        broker=BrokerConfig(host=broker.host, port=broker.port, reconnect_min=0.1, reconnect_max=0.5,
                            **broker_settings),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite"), inflight=5),
        batch=BatchConfig(max_records=10, max_age=0.1),
    )


def values(sub) -> list[int]:
    return [v for name, v, _ in sub.readings() if name == "gw1:dev0/n"]


@pytest.mark.parametrize("fault", [FULL, IO_ERROR], ids=["ENOSPC", "EIO"])
def test_a_failing_disk_under_a_running_uplink_costs_no_reconnect_and_no_resend(
        broker, sub, tmp_path, monkeypatch, caplog, fault):
    disk = FaultyDisk(monkeypatch)
    uplink = Uplink(config(broker, tmp_path), INVENTORY)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        uplink.submit([("dev0", "n", i, T0 + i) for i in range(50)])
        assert sub.wait_for(lambda: len(values(sub)) == 50, 10)
        disk.write_fault = fault  # every INSERT, DELETE and COMMIT fails from now on
        with caplog.at_level(logging.WARNING):
            for start in range(50, 500, 50):
                uplink.submit([("dev0", "n", i, T0 + i) for i in range(start, start + 50)])
                time.sleep(0.1)
            assert sub.wait_for(lambda: len(values(sub)) >= 500, 15), len(values(sub))
            time.sleep(1.0)  # PUBACKs keep coming while no delete can be written
            during = uplink.counters
            disk.write_fault = None
            assert sub.wait_for(lambda: uplink.outbox.state == "ok", 20)
    finally:
        uplink.stop()
    got = values(sub)
    mqtt = during["mqtt"]
    print("\n%s: %d readings published once each; connects %d, resent %d; outbox during the fault %s"
          % (fault[1], len(got), mqtt["connects"], mqtt["packs_resent"],
             {k: during["outbox"][k] for k in ("state", "held_packs", "unsaved_deletes")}))
    assert sorted(got) == list(range(500)), "every reading exactly once"
    assert mqtt["connects"] == 1 and mqtt["disconnects"] == 0 and mqtt["packs_resent"] == 0
    assert during["outbox"]["state"] in ("disk_full", "io_error") and during["readings"]["dropped"] == 0
    assert not [r for r in caplog.records if "unexpected error in the network loop" in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info], "no exception reached the network loop"


def test_a_puback_that_does_not_come_ends_the_session_and_the_window_is_sent_again(broker, sub, tmp_path,
                                                                                    caplog):
    uplink = Uplink(config(broker, tmp_path, puback_timeout=1.0, keepalive=30), INVENTORY)
    uplink.start()
    assert broker.proc is not None
    pid = broker.proc.pid
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        uplink.submit([("dev0", "n", i, T0 + i) for i in range(20)])
        assert sub.wait_for(lambda: len(values(sub)) == 20, 10)
        os.kill(pid, signal.SIGSTOP)  # the broker takes the packets and answers nothing
        try:
            with caplog.at_level(logging.WARNING, logger="agent.publisher"):
                uplink.submit([("dev0", "n", i, T0 + i) for i in range(20, 40)])
                assert sub.wait_for(lambda: uplink.publisher.stats()["puback_timeouts"] >= 1, 10)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert sub.wait_for(lambda: sorted(set(values(sub))) == list(range(40)), 30), values(sub)
        assert sub.wait_for(lambda: uplink.publisher.stats()["connects"] >= 2, 30)
        stats = uplink.publisher.stats()
    finally:
        uplink.stop()
    told = [r.getMessage() for r in caplog.records if "no PUBACK" in r.getMessage()]
    print("\nbroker frozen: %s; %d readings delivered (%d messages); resent %d packs"
          % (told[:1], len(set(values(sub))), len(values(sub)), stats["packs_resent"]))
    assert len(told) == 1 and "broker.puback_timeout" in told[0]
    assert "no PUBACK from broker %s:%d for " % (broker.host, broker.port) in told[0]
    assert stats["packs_resent"] >= 1 and stats["connects"] >= 2


def test_no_puback_timeout_in_normal_operation(broker, sub, tmp_path):
    uplink = Uplink(config(broker, tmp_path, puback_timeout=5.0), INVENTORY)
    uplink.start()
    try:
        assert sub.wait_for(lambda: uplink.connected, 10)
        for start in range(0, 2000, 100):
            uplink.submit([("dev0", "n", i, T0 + i) for i in range(start, start + 100)])
        assert sub.wait_for(lambda: len(values(sub)) == 2000, 20)
        stats = uplink.publisher.stats()
    finally:
        uplink.stop()
    assert stats["puback_timeouts"] == 0 and stats["packs_resent"] == 0 and stats["connects"] == 1
    health = [cbor2.loads(p) for p in sub.on("health")]
    assert health and "dropped_by" in health[-1]["readings"]
