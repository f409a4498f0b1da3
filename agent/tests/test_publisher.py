"""The publisher at the wire, with a real Mosquitto: birth and will, alarms, health, commands."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import zlib

import cbor2
import pytest

from agent.command_gate import CommandGate
from agent.command_store import IdStore
from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.publisher import backoff_delay
from agent.uplink import Uplink
from hil_tests.broker import Subscriber

INVENTORY = [{"id": "lamp-1", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus", "address": "1",
              "points": [{"name": "dim", "unit": "/", "resolution": 0.01}]}]


@pytest.fixture
def sub(broker):
    s = Subscriber(broker, persistent=False)
    yield s
    s.close()


def make_config(broker, tmp_path, **gateway) -> Config:
    return Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", **gateway),
        broker=BrokerConfig(host=broker.host, port=broker.port, reconnect_min=0.1, reconnect_max=0.5),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite"), inflight=5),
        batch=BatchConfig(max_records=10, max_age=0.1),
    )


@pytest.fixture
def uplink(broker, sub, tmp_path):
    u = Uplink(make_config(broker, tmp_path, health_interval=0.3), INVENTORY)
    u.start()
    assert sub.wait_for(lambda: u.connected, 10)
    yield u
    u.stop()


def publish_cmd(sub, payload: bytes) -> None:
    sub.client.publish("fieldlink/s1/gw1/cmd", payload, qos=1).wait_for_publish(5)


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in range(10)]
    for n, d in enumerate(delays):
        cap = min(60.0, 2.0**n)
        assert cap / 2 <= d <= cap
    assert len({round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}) > 1


def test_status_and_inventory_are_retained_and_stop_publishes_offline(broker, sub, uplink):
    assert sub.wait_for(lambda: sub.on("status") and sub.on("inventory"), 5)
    status = sub.decoded("status")[0]
    inventory = sub.on("inventory")[0]
    assert status["online"] is True and status["inventory"] == zlib.crc32(inventory)
    assert status["seq"] == uplink.seq and status["session"] >= 1 and abs(status["time"] - time.time()) < 60
    assert len(sub.on("status")[0]) < 100, "the status is small"
    inv = cbor2.loads(inventory)
    assert inv["payload"] == "senml" and inv["seq"] == status["seq"] and "online" not in inv
    assert inv["devices"][0]["id"] == "lamp-1" and inv["devices"][0]["points"][0]["unit"] == "/"
    assert "fieldlink" in inv["versions"] and "paho-mqtt" in inv["versions"]
    uplink.stop()
    assert sub.wait_for(lambda: len(sub.on("status")) == 2, 5)
    assert sub.decoded("status")[-1] == {"online": False, "gateway": "gw1", "site": "s1",
                                         "seq": status["seq"], "session": status["session"]}
    late = Subscriber(broker, client_id="late", persistent=False)  # the retained message is the offline one
    try:
        assert late.wait_for(lambda: late.on("status") and late.on("inventory"), 5)
        assert cbor2.loads(late.on("status")[0])["online"] is False
        assert late.on("inventory") == [inventory], "the inventory stays retained"
    finally:
        late.close()


def test_last_will_is_offline_when_the_agent_dies(broker, sub, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.tests.uplink_driver", "--broker", broker.url,
         "--outbox", str(tmp_path / "o.sqlite"), "--count", "100000", "--rate", "50"],
        stdout=subprocess.DEVNULL)
    try:
        assert sub.wait_for(lambda: sub.on("data"), 10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sub.wait_for(lambda: any(not m["online"] for m in sub.decoded("status")), 10)
    finally:
        proc.kill()
        proc.wait(10)
    statuses = sub.decoded("status")
    assert statuses[0]["online"] is True and statuses[-1] == {
        "online": False, "gateway": "gw1", "site": "s1", "seq": statuses[0]["seq"],
        "session": statuses[0]["session"]}


def test_device_state_raises_and_clears_a_comms_alarm(sub, uplink):
    uplink.device_state("lamp-1", True, "")  # first report online: nothing to say
    uplink.device_state("lamp-1", False, "no answer at unit 1 on bus rs485-1")
    uplink.device_state("lamp-1", False, "still no answer")  # no change: no second alarm
    uplink.device_state("lamp-1", True, "answers again")
    assert sub.wait_for(lambda: len(sub.on("alarm")) == 2, 5)
    raised, cleared = sub.decoded("alarm")
    assert raised["device"] == "lamp-1" and raised["kind"] == "comms" and raised["state"] == "raised"
    assert raised["value"] == "no answer at unit 1 on bus rs485-1" and isinstance(raised["time"], int)
    assert cleared["state"] == "cleared"


def test_packs_carry_their_content_type_on_mqtt_5(broker, sub, uplink):
    """Every pack from the outbox says what it is (MQTT 5 Content Type), the data packs SenML-CBOR and
    the alarms CBOR; the properties object is shared between publishes, so each one is checked."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    seen: list[tuple[str, str | None]] = []
    lock = threading.Lock()
    subscribed = threading.Event()

    def on_message(client, userdata, msg):
        with lock:
            seen.append((msg.topic.rsplit("/", 1)[-1], getattr(msg.properties, "ContentType", None)))

    v5 = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="v5-subscriber", protocol=mqtt.MQTTv5)
    v5.on_message = on_message
    v5.on_connect = lambda c, u, f, r, p: c.subscribe("fieldlink/s1/gw1/#", qos=1)
    v5.on_subscribe = lambda *a: subscribed.set()
    v5.connect(broker.host, broker.port, keepalive=10)
    v5.loop_start()
    try:
        assert subscribed.wait(10)
        assert uplink.publisher.stats()["protocol"] == "5"
        for i in range(3):  # three packs, one at a time
            uplink.submit([("lamp-1", "dim", 0.5, 1710498030 + i)])
            assert sub.wait_for(lambda n=i + 1: len(sub.on("data")) == n, 10)
        uplink.device_state("lamp-1", True, "")
        uplink.device_state("lamp-1", False, "no answer")
        assert sub.wait_for(lambda: len(sub.on("alarm")) == 1, 5)
        assert sub.wait_for(lambda: sum(1 for leaf, _ in list(seen) if leaf in ("data", "alarm")) == 4, 5)
    finally:
        v5.loop_stop()
        v5.disconnect()
    with lock:
        packs = [(leaf, ct) for leaf, ct in seen if leaf in ("data", "alarm")]
    assert sorted(packs) == [("alarm", "application/cbor")] + [("data", "application/senml+cbor")] * 3


def test_paho_formats_only_the_log_lines_the_publisher_reads():
    """paho's debug line per packet (PUBLISH with its properties, each PUBACK) is not formatted at all;
    its errors and warnings still reach `on_log` (the publisher keeps the last one for its messages)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.mqtt_client import Client

    class Loud:
        def __str__(self) -> str:
            raise AssertionError("a debug line was formatted")

    lines: list[tuple[int, str]] = []
    client = Client(CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv5, candidates=[],
                    timeout=1.0)
    client.on_log = lambda c, u, level, text: lines.append((level, text))
    for level in (mqtt.MQTT_LOG_DEBUG, mqtt.MQTT_LOG_INFO, mqtt.MQTT_LOG_NOTICE):
        client._easy_log(level, "Sending PUBLISH properties=%s", Loud())
    client._easy_log(mqtt.MQTT_LOG_WARNING, "a warning %d", 1)
    client._easy_log(mqtt.MQTT_LOG_ERR, "an error: %s", "tlsv1 alert unknown ca")
    assert lines == [(mqtt.MQTT_LOG_WARNING, "a warning 1"),
                     (mqtt.MQTT_LOG_ERR, "an error: tlsv1 alert unknown ca")]


def test_the_shared_content_type_properties_pack_as_fresh_ones():
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.mqtt_client import content_type

    for value in ("application/senml+cbor", "application/cbor", "application/senml+cbor"):
        fresh = Properties(PacketTypes.PUBLISH)
        fresh.ContentType = value
        shared = content_type(value)
        assert shared is content_type(value) and shared.ContentType == value  # type: ignore[attr-defined]
        assert shared.pack() == shared.pack() == fresh.pack()
        assert str(shared) == str(fresh)


def test_health_carries_the_counters(sub, uplink):
    uplink.add_counters("polls", lambda: 7)
    uplink.add_counters("errors", lambda: {"timeout": 2, "crc": 1})
    uplink.add_counters("broken", lambda: 1 / 0)
    uplink.submit([("lamp-1", "dim", 0.5, 1710498030 + i) for i in range(25)])
    assert sub.wait_for(lambda: any(h["readings"]["published"] == 25 for h in sub.decoded("health")), 10)
    h = sub.decoded("health")[-1]
    assert h["polls"] == 7 and h["errors"] == {"timeout": 2, "crc": 1} and "error" in h["broken"]
    assert h["connected"] is True and h["uptime"] >= 0
    assert h["readings"]["made"] == 25 and h["readings"]["buffered"] == 0 and h["readings"]["dropped"] == 0
    assert h["outbox"]["packs"] == 0 and h["outbox"]["fsync"] == "normal"
    assert h["mqtt"]["connects"] == 1


def test_health_is_retained_for_a_later_subscriber(broker, sub, uplink):
    assert sub.wait_for(lambda: sub.decoded("health"), 10)
    late = Subscriber(broker, topic="fieldlink/+/+/health", client_id="late", persistent=False)
    try:
        assert late.wait_for(lambda: late.messages, 10)
        _topic, payload, retained = late.messages[0]
        assert retained and cbor2.loads(payload)["gateway"] == "gw1"
    finally:
        late.close()


class FakeScheduler:
    """Stands in for agent.scheduler.Scheduler: runs every command at once on the caller's thread."""

    def __init__(self, handle):
        self.handle = handle
        self.seen = []

    def switching(self, cmd):
        return cmd.get("action") == "relay_trip"

    def submit(self, cmd, done, before=None):
        self.seen.append(cmd)
        if before is not None:
            before()
        try:
            result = self.handle(cmd)
        except Exception as exc:
            result = {"ok": False, "error": "command failed: %s" % exc}
        done(result)
        return None


def gate_for(uplink, tmp_path, handle):
    scheduler = FakeScheduler(handle)
    gate = CommandGate(uplink.config, scheduler, IdStore(str(tmp_path / "ids.sqlite")), uplink.send_ack)
    uplink.commands = gate
    return gate, scheduler


def test_commands_get_acks(sub, uplink, tmp_path):
    def handle(cmd):
        if cmd["point"] == "boom":
            raise RuntimeError("bus rs485-1 is gone")
        if cmd["point"] != "dim":
            return {"ok": False, "error": "point %s is not writable" % cmd["point"]}
        return {"ok": True, "value": cmd["value"]}

    gate, scheduler = gate_for(uplink, tmp_path, handle)
    for i, point in enumerate(["dim", "energy", "boom"]):
        publish_cmd(sub, cbor2.dumps({"id": i, "device": "lamp-1", "point": point, "value": 0.5}))
    assert sub.wait_for(lambda: len(sub.on("ack")) == 3, 5)
    acks = {a["id"]: a for a in sub.decoded("ack")}
    assert acks[0] == {"id": 0, "ok": True, "error": None, "value": 0.5}
    assert acks[1]["ok"] is False and "not writable" in acks[1]["error"]
    assert acks[2]["ok"] is False and "bus rs485-1 is gone" in acks[2]["error"]
    assert len(scheduler.seen) == 3
    # the same command again: its original ack, nothing run; another command under id 0: refused
    publish_cmd(sub, cbor2.dumps({"id": 0, "device": "lamp-1", "point": "dim", "value": 0.5}))
    publish_cmd(sub, cbor2.dumps({"id": 0, "device": "lamp-1", "point": "dim", "value": 0.9}))
    assert sub.wait_for(lambda: len(sub.on("ack")) == 5, 5)
    again, other = sub.decoded("ack")[3:]
    assert again == acks[0] and len(scheduler.seen) == 3
    assert other["ok"] is False and "already used" in other["error"]
    assert gate.stats()["repeats"] == 1 and gate.stats()["refused_by"] == {"duplicate_id": 1}


def test_retained_and_oversized_commands_are_refused(sub, uplink, tmp_path):
    _gate, scheduler = gate_for(uplink, tmp_path, lambda cmd: {"ok": True, "value": None})
    retained = cbor2.dumps({"id": "r1", "device": "lamp-1", "point": "dim", "value": 0.1})
    sub.client.publish("fieldlink/s1/gw1/cmd", retained, qos=1, retain=True).wait_for_publish(5)
    # the retained message is delivered live (retain 0 on MQTT 3.1.1) and again, flagged, on resubscribe
    assert sub.wait_for(lambda: len(sub.on("ack")) >= 1, 5)
    big = cbor2.dumps({"id": "big", "device": "lamp-1", "point": "dim", "value": "x" * 5000}, canonical=True)
    publish_cmd(sub, big)
    assert sub.wait_for(lambda: any(a["id"] == "big" for a in sub.decoded("ack")), 5)
    sub.client.publish("fieldlink/s1/gw1/cmd", b"", qos=1, retain=True).wait_for_publish(5)  # clear it
    acks = {a["id"]: a for a in sub.decoded("ack")}
    assert acks["big"]["ok"] is False and acks["big"]["error"] == (
        "command of %d bytes is over the limit of 4096 bytes" % len(big))
    assert [c["id"] for c in scheduler.seen] in ([], ["r1"])


def test_garbage_on_cmd_gets_an_error_ack_or_a_counter(sub, uplink, tmp_path):
    gate, _ = gate_for(uplink, tmp_path, lambda cmd: {"ok": True, "value": cmd.get("value")})
    truncated = cbor2.dumps({"id": 9, "device": "lamp-1", "point": "dim", "value": 0.5}, canonical=True)[:15]
    publish_cmd(sub, truncated)  # id recoverable
    publish_cmd(sub, b"\xff\xfe\xfd")  # nothing recoverable
    publish_cmd(sub, cbor2.dumps([1, 2, 3]))  # not a map
    publish_cmd(sub, cbor2.dumps({"id": 10, "device": "lamp-1"}))  # neither point nor action
    publish_cmd(sub, cbor2.dumps({"id": 11, "device": "lamp-1", "action": "reboot"}))  # still alive
    assert sub.wait_for(lambda: len(sub.on("ack")) == 3, 5)
    acks = {a["id"]: a for a in sub.decoded("ack")}
    assert acks[9]["ok"] is False and "not valid CBOR" in acks[9]["error"]
    assert acks[10]["ok"] is False and "point or an action" in acks[10]["error"]
    assert acks[11]["ok"] is True
    stats = gate.stats()
    assert stats["received"] == 5 and stats["refused"] == 4, stats
    assert stats["refused_by"] == {"not_cbor": 2, "not_command": 1, "no_target": 1}, stats


def test_alarms_are_numbered_across_restarts(broker, sub, tmp_path):
    """`n` identifies an alarm: a consumer drops one it has seen (an alarm in flight when a connection broke
    is sent again, byte for byte). The number goes on after a restart (it is kept in the outbox file)."""
    for run in range(2):
        u = Uplink(make_config(broker, tmp_path), INVENTORY)
        u.start()
        try:
            assert sub.wait_for(lambda u=u: u.connected, 10)
            u.alarm("lamp-1", "dim", "threshold", 0.9, True)
            u.alarm("lamp-1", "dim", "threshold", 0.5, False)
            assert sub.wait_for(lambda run=run: len(sub.on("alarm")) == 2 * (run + 1), 10)
        finally:
            u.stop()
    assert [a["n"] for a in sub.decoded("alarm")] == [1, 2, 3, 4]
