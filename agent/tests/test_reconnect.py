"""Reconnects at the wire (issue #12 items 4-5, issue #15 item 2): a relay between the uplink and a real
Mosquitto counts every byte and records every MQTT packet in both directions, and cuts connections.

What is checked is what crosses the wire: a reconnect with nothing changed costs under 1 KB (no
SUBSCRIBE, no inventory: the broker reports our session present), an inventory that changed or a broker
that lost our session gets everything again, the subscription comes back before the backlog, a command
queued for our session while we were away runs once, a DNS name's addresses are tried in turn, a stale
will is answered, and on MQTT 5 a retained command is refused even when it was published while we were
subscribed. No time is asserted here (`make bench` measures how fast).
"""

from __future__ import annotations

import json
import os
import socket
import time

import cbor2
import pytest

from agent.command_gate import CommandGate
from agent.command_store import IdStore
from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.private import read_state
from agent.uplink import Uplink
from agent.uplink_state import state_path
from hil_tests.broker import Subscriber, broker_or_skip
from hil_tests.relay import Relay, publish_topic

T0 = 1_700_000_000


def lamps(n: int) -> list[dict]:
    points = [{"name": p, "unit": u} for p, u in (("dim", "/"), ("on", ""), ("power", "W"), ("voltage", "V"),
                                                  ("energy", "J"))]
    return [{"id": "lamp-%02d" % i, "kind": "lamp", "model": "generic-lamp", "protocol": "modbus",
             "address": i, "points": points}
            for i in range(1, n + 1)]


@pytest.fixture
def broker():
    b = broker_or_skip(persistence=True)
    yield b
    b.close()


@pytest.fixture
def relay(broker):
    r = Relay(broker.host, broker.port)
    yield r
    r.close()


@pytest.fixture
def sub(broker):
    s = Subscriber(broker, client_id="reconnect-sub", persistent=True)
    yield s
    s.close()


def config(tmp_path, port: int, host: str = "127.0.0.1", **broker) -> Config:
    return Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=3600),
        broker=BrokerConfig(host=host, port=port, reconnect_min=0.2, reconnect_max=1.0, probe_interval=0.4,
                            **broker),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite"), inflight=5),
        batch=BatchConfig(max_records=50, max_age=0.2),
    )


def wait(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def kinds(packets, direction: str | None = None) -> list[str]:
    return [p[2] for p in packets if direction is None or p[1] == direction]


def published(packets, leaf: str) -> list:
    return [p for p in packets
            if p[2] == "PUBLISH" and p[1] == "up" and publish_topic(p[4]).endswith("/" + leaf)]


def test_a_reconnect_with_nothing_changed_costs_under_a_kilobyte(tmp_path, relay, broker, sub):
    inventory = lamps(40)
    uplink = Uplink(config(tmp_path, relay.port), inventory)
    uplink.start()
    try:
        assert wait(lambda: uplink.connected and uplink.publisher.stats()["inventories"] == 1)
        assert wait(lambda: sub.on("inventory"))
        first = relay.bytes()
        cut = time.time()
        relay.cut()
        assert wait(lambda: uplink.publisher.stats()["connects"] == 2)
        assert wait(lambda: len(sub.on("status")) >= 3)  # online, the will of the cut one, online again
        time.sleep(0.5)  # whatever else this reconnect sends has crossed by now
        again = relay.packets(cut)
        cost = relay.bytes(cut)
        stats = uplink.publisher.stats()
    finally:
        uplink.stop()
    print("\nfirst connect (40 lamps): %s B; reconnect: %s B, packets %s" % (first, cost, kinds(again)))
    assert first["up"] > 8_000, "the first connect carries the inventory (about 240 B per lamp)"
    assert "SUBSCRIBE" not in kinds(again) and not published(again, "inventory"), kinds(again)
    assert cost["up"] + cost["down"] < 1024, cost
    assert stats["inventories"] == 1 and stats["subscribes"] == 1 and stats["session_present"] is True


def test_a_changed_inventory_or_a_broker_that_lost_our_session_gets_it_again(tmp_path, broker, sub):
    uplink = Uplink(config(tmp_path, broker.port), lamps(2))
    uplink.start()
    assert wait(lambda: uplink.publisher.stats()["inventories"] == 1)
    uplink.stop()
    uplink = Uplink(config(tmp_path, broker.port), lamps(2))  # a restart with nothing changed
    uplink.start()
    try:
        assert wait(lambda: uplink.connected)
        assert uplink.publisher.stats()["inventories"] == 0 and uplink.publisher.stats()["subscribes"] == 0
    finally:
        uplink.stop()
    uplink = Uplink(config(tmp_path, broker.port), lamps(3))  # a lamp was added
    uplink.start()
    try:
        assert wait(lambda: uplink.publisher.stats()["inventories"] == 1)
        assert wait(lambda: len(cbor2.loads(sub.on("inventory")[-1])["devices"]) == 3)
        assert uplink.publisher.stats()["subscribes"] == 0  # the session (and its subscriptions) was kept
        broker.kill()  # a broker that loses its store: killed, its persistence file removed
        for name in os.listdir(broker.dir):
            if name.endswith(".db"):
                os.unlink(os.path.join(broker.dir, name))
        broker.start()
        assert wait(lambda: uplink.publisher.stats()["connects"] == 2)
        assert wait(lambda: uplink.publisher.stats()["inventories"] == 2)  # session gone: sent again
        stats = uplink.publisher.stats()
    finally:
        uplink.stop()
    assert stats["session_present"] is False and stats["subscribes"] == 1


def test_the_subscription_comes_back_before_the_backlog(tmp_path, broker):
    uplink = Uplink(config(tmp_path, 1), lamps(2))  # never started: the readings wait in the outbox
    uplink.submit([("lamp-01", "dim", i / 100, T0 + i) for i in range(60)])
    uplink.batcher.flush()
    assert len(uplink.outbox) >= 2
    uplink.outbox.close()
    with Relay(broker.host, broker.port) as relay:
        uplink = Uplink(config(tmp_path, relay.port), lamps(2))
        uplink.start()
        try:
            assert wait(lambda: uplink.connected and len(uplink.outbox) == 0)
            packets = relay.packets()
        finally:
            uplink.stop()
    order = [(p[1], p[2], publish_topic(p[4]) if p[2] == "PUBLISH" else "") for p in packets]
    suback = next(i for i, p in enumerate(order) if p[1] == "SUBACK")
    first_data = next(i for i, p in enumerate(order) if p[2].endswith("/data"))
    assert order[0][1] == "CONNECT" and order[1][1] == "CONNACK" and order[2][1] == "SUBSCRIBE", order[:4]
    assert suback < first_data, order[:12]


def commands_that_run(uplink, tmp_path) -> list:
    """Gives the uplink a command gate whose scheduler runs every command at once (ok) and notes its id
    in the list returned."""
    ran: list = []

    class Scheduler:
        def switching(self, cmd):
            return False

        def submit(self, cmd, done, before=None):
            ran.append(cmd["id"])
            if before is not None:
                before()
            done({"ok": True, "value": cmd.get("value")})

    uplink.commands = CommandGate(uplink.config, Scheduler(), IdStore(str(tmp_path / "ids.sqlite")),
                                  uplink.send_ack)
    return ran


def test_a_command_queued_for_our_session_while_away_runs_once(tmp_path, relay, broker, sub):
    uplink = Uplink(config(tmp_path, relay.port), lamps(2))
    ran = commands_that_run(uplink, tmp_path)
    uplink.start()
    try:
        assert wait(lambda: uplink.connected)
        relay.close_door()
        relay.cut()
        assert wait(lambda: not uplink.connected)
        cmd = cbor2.dumps({"id": "while-away", "device": "lamp-01", "point": "dim", "value": 0.4})
        sub.client.publish("fieldlink/s1/gw1/cmd", cmd, qos=1).wait_for_publish(5)  # queued in our session
        time.sleep(0.5)
        assert ran == []
        relay.open_door()
        assert wait(lambda: any(a["id"] == "while-away" for a in sub.decoded("ack")))
        time.sleep(0.5)
        stats = uplink.publisher.stats()
    finally:
        uplink.stop()
    assert ran == ["while-away"], ran
    assert [a["id"] for a in sub.decoded("ack")] == ["while-away"]
    assert stats["session_present"] is True and stats["subscribes"] == 1


def test_a_dns_name_with_several_addresses_is_tried_address_by_address(tmp_path, broker):
    def resolve(host, port, family, kind):
        assert host == "cluster.test"
        return [(socket.AF_INET, kind, 6, "", ("127.0.0.2", port)),  # nothing listens there: refused
                (socket.AF_INET, kind, 6, "", (broker.host, port))]

    uplink = Uplink(config(tmp_path, broker.port, host="cluster.test"), lamps(1))
    uplink.publisher.resolve = resolve  # type: ignore[attr-defined]
    uplink.start()
    try:
        assert wait(lambda: uplink.connected)
        mqtt = uplink.counters["mqtt"]

        def written():  # the state file follows the connection on its own beat
            found = read_state(state_path(uplink.config.outbox.path) or "")
            return found if found and found.get("connected") is True else None
        assert wait(lambda: written() is not None)
        state = written()
    finally:
        uplink.stop()
    assert mqtt["endpoint"] == "mqtt://cluster.test:%d" % broker.port
    assert mqtt["address"] == "127.0.0.1:%d" % broker.port and mqtt["protocol"] == "5"
    assert mqtt["endpoints"][mqtt["endpoint"]]["state"] == "in use"
    assert state is not None and state["endpoint"] == mqtt["endpoint"] and state["connected"] is True
    assert state["address"] == mqtt["address"] and json.dumps(state)


def test_a_stale_will_that_replaced_our_status_is_answered_with_online(tmp_path, broker, sub):
    uplink = Uplink(config(tmp_path, broker.port), lamps(1))
    uplink.start()
    try:
        assert wait(lambda: uplink.connected)
        assert wait(lambda: sub.on("status"))
        time.sleep(2.5)  # a late will arrives well after we are online
        stale = cbor2.dumps({"online": False, "gateway": "gw1", "site": "s1", "seq": uplink.seq,
                             "session": 0}, canonical=True)
        sub.client.publish("fieldlink/s1/gw1/status", stale, qos=1, retain=True).wait_for_publish(5)
        assert wait(lambda: uplink.publisher.stats()["status_reasserted"] == 1)
        late = Subscriber(broker, client_id="late", persistent=False)
        try:
            assert wait(lambda: late.on("status"))
            retained = cbor2.loads(late.on("status")[0])
        finally:
            late.close()
    finally:
        uplink.stop()
    assert retained["online"] is True and retained["session"] == uplink.publisher._session_no  # type: ignore[attr-defined]


@pytest.mark.parametrize("version,runs", [("auto", False), ("3.1.1", True)])
def test_a_retained_command_published_while_subscribed(tmp_path, broker, sub, version, runs):
    """MQTT 5 "retain as published": the live delivery of a retained command is flagged and refused.
    On MQTT 3.1.1 that delivery is unflagged and runs once (docs/commands.md, the residual risk)."""
    uplink = Uplink(config(tmp_path, broker.port, mqtt_version=version), lamps(1))
    ran = commands_that_run(uplink, tmp_path)
    uplink.start()
    try:
        assert wait(lambda: uplink.connected and uplink.publisher._suback_mid is None)  # type: ignore[attr-defined]
        cmd = cbor2.dumps({"id": "r1", "device": "lamp-01", "point": "dim", "value": 0.3})
        sub.client.publish("fieldlink/s1/gw1/cmd", cmd, qos=1, retain=True).wait_for_publish(5)
        assert wait(lambda: sub.on("ack"))
        sub.client.publish("fieldlink/s1/gw1/cmd", b"", qos=1, retain=True).wait_for_publish(5)
        protocol = uplink.counters["mqtt"]["protocol"]
    finally:
        uplink.stop()
    (ack,) = sub.decoded("ack")
    assert protocol == ("5" if version == "auto" else "3.1.1")
    if runs:
        assert ack["ok"] is True and ran == ["r1"]
    else:
        assert ack == {"id": "r1", "ok": False, "error": "retained commands are not executed", "value": None}
        assert ran == []


def test_a_broker_that_takes_few_publishes_at_once_is_not_overrun(tmp_path):
    """MQTT 5 Receive Maximum (Mosquitto's max_inflight_messages, HiveMQ's 10 by default): never more QoS 1
    publishes unacknowledged than the broker said in CONNACK, whatever outbox.inflight says."""
    broker = broker_or_skip(max_inflight_messages=5)
    try:
        with Relay(broker.host, broker.port) as relay:
            cfg = config(tmp_path, relay.port)
            cfg.batch.max_records = 2  # many small packs: a window of 20 would have 20 out at once
            cfg.outbox.inflight = 20
            uplink = Uplink(cfg, lamps(4))
            uplink.start()
            try:
                assert wait(lambda: uplink.connected)
                for i in range(400):
                    uplink.submit([("lamp-%02d" % (i % 4 + 1), "dim", 0.5, T0 + i)])
                assert wait(lambda: uplink.publisher.stats()["records_published"] == 400, 30)
                stats = uplink.publisher.stats()
                packets = relay.packets()
            finally:
                uplink.stop()
    finally:
        broker.close()
    outstanding = peak = 0
    for _t, direction, kind, _length, _body, first in packets:
        if kind == "PUBLISH" and direction == "up" and first & 0x06:
            outstanding += 1
            peak = max(peak, outstanding)
        elif kind == "PUBACK" and direction == "down":
            outstanding -= 1
    assert stats["connects"] == 1 and stats["protocol"] == "5"
    assert 1 < peak <= 5, peak
