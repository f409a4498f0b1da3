"""docs/cddl/*.cddl against live messages, checked by pycddl (an independent validator): a real agent
(senml and compact payloads) polling the simulated demo site through a real Mosquitto, with a device made
silent and back (comms alarms), a threshold rule, plain and signed commands and their acks. The board's
messages are checked the same way in firmware_py/tests/test_mpvm_gateway.py."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pycddl
import pytest

from hil_tests.cddl import validate
from hil_tests.link import PYTHON, ROOT, sim_agent_config, start_agent, wait_until
from protocols import cbor

pytestmark = pytest.mark.slow
KEY = bytes(range(40, 72))


class Collector:
    """Every message under fieldlink/# (own connection, own thread)."""

    def __init__(self, url: str) -> None:
        import paho.mqtt.client as mqtt

        host, _, port = url.rpartition(":")
        self.msgs: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.connect(host, int(port))
        self.client.subscribe("fieldlink/#", qos=1)
        self.client.loop_start()

    def _on(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload)))

    def of(self, gateway: str, leaf: str) -> list[bytes]:
        with self.lock:
            return [p for t, p in self.msgs if t.endswith("/%s/%s" % (gateway, leaf)) and p]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_live_messages_validate_against_the_cddl_files(sim_site: Any, mosquitto: Any, tmp_path: Any) -> None:
    import subprocess

    site = sim_site("demo")
    key_file = tmp_path / "gw.key"
    fd = os.open(str(key_file), os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(KEY.hex() + "\n")
    settings: dict[str, dict[str, object]] = {"gateway": {"health_interval": 1}, "batch": {"max_age": 0.5},
                "commands": {"key_file": str(key_file)}}
    one = sim_agent_config(site.ports_file, str(tmp_path / "gw1.toml"), mosquitto.url,
                           str(tmp_path / "gw1.sqlite"), interval=1.0, timeout_ms=300, settings=settings)
    with open(one, "a") as f:
        f.write('\n[[rules]]\ndevice = "lamp-01"\npoint = "dim"\nkind = "threshold"\nbelow = 0.6\n')
    # gw2: compact packs, the same site through the simulator's raw TCP device servers (a second master)
    two = sim_agent_config(site.ports_file, str(tmp_path / "gw2.toml"), mosquitto.url,
                           str(tmp_path / "gw2.sqlite"), interval=1.0, timeout_ms=300, gateway="gw2",
                           settings={**settings, "gateway": {"health_interval": 1, "payload": "compact"}})
    text = open(two).read()
    for b in site.ports["buses"]:
        text = text.replace('port = "%s"' % b["path"], 'port = "%s"' % b["socket"])
    with open(two, "w") as f:
        f.write(text)
    col = Collector(mosquitto.url)
    agents = [start_agent(one, str(tmp_path / "gw1.log")), start_agent(two, str(tmp_path / "gw2.log"))]
    try:
        assert wait_until(lambda: all(col.of(g, "data") and col.of(g, "health") for g in ("gw1", "gw2")), 60)
        site.client.fault("lamp-02", "no_answer")
        assert wait_until(lambda: any(alarm_of(p)["kind"] == "comms" for p in col.of("gw1", "alarm")), 60)
        site.client.clear("lamp-02")

        def send(*args: str) -> None:
            done = subprocess.run([PYTHON, "-m", "agent.cli", "send", "--broker", mosquitto.url, "--site",
                                   "demo", "--gateway", "gw1", "--device", "lamp-01", *args], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode in (0, 1) and "ack" in done.stdout.lower() + done.stderr.lower(), done

        send("--point", "dim", "--value", "0.5")            # plain; the threshold rule raises
        send("--point", "on", "--value", "1", "--key-file", str(key_file))   # signed (switching)
        send("--point", "dim", "--value", "7")              # refused: out of range
        send("--point", "dim", "--value", "0.8")            # the rule clears
        assert wait_until(lambda: len(col.of("gw1", "ack")) >= 4 and any(
            alarm_of(p)["kind"] == "threshold" for p in col.of("gw1", "alarm")), 60)
    finally:
        for agent in agents:
            agent.stop()
        time.sleep(0.3)
        col.close()
    checked: dict[str, int] = {}
    for gateway, data in (("gw1", "senml"), ("gw2", "compact")):
        for leaf in ("status", "data", "health", "alarm", "cmd", "ack"):
            for payload in col.of(gateway, leaf):
                name = data if leaf == "data" else leaf
                try:
                    validate(name, payload)
                except pycddl.ValidationError as exc:
                    pytest.fail("%s/%s does not match docs/cddl/%s.cddl: %s\n%r"
                                % (gateway, leaf, name, exc, cbor.loads(payload)))
                checked[name] = checked.get(name, 0) + 1
    signed = [p for p in col.of("gw1", "cmd") if p[:1] == b"\xd1"]  # tag 17
    assert signed, "no signed command seen"
    assert set(checked) == {"status", "senml", "compact", "health", "alarm", "cmd", "ack"}, checked
    # the specs are not vacuous: a wrong message is refused
    for name, bad in (("health", {"gateway": "g"}), ("alarm", {"device": "d", "point": None, "kind": "x",
                                                               "value": 1, "state": "raised", "time": 1}),
                      ("senml", [{2: "text as v"}]),
                      ("ack", {"id": 1, "ok": "yes", "error": None, "value": 1})):
        with pytest.raises(pycddl.ValidationError):
            validate(name, cbor.dumps(bad))


def alarm_of(payload: bytes) -> Any:
    return cbor.loads(payload)


def test_the_event_spec_takes_the_shared_event_and_refuses_a_wrong_one() -> None:
    """docs/cddl/event.cddl against protocols/lighting.py's `event` (what agent and board send); the
    live events are checked in hil_tests/test_agent_lighting.py and test_mpvm_lighting.py."""
    from protocols import lighting

    results = {"lamp-01": {"ok": True, "error": None, "value": {"on": 1, "dim": 0.4}},
               "lamp-02": lighting.not_written("no answer"),
               "lamp-03": {"ok": True, "error": None, "value": None, "broadcast": True}}
    state = {"on": True, "dim": 0.4}
    event = lighting.event("main street", 2, "23:30", 1781992800, 1781992801, "change", state, results)
    validate("event", cbor.dumps(event))
    for bad in (dict(event, reason="whim"), dict(event, set={"on": "yes"}), dict(event, step=-1),
                dict(event, devices={"lamp-01": {"ok": True, "error": None, "value": 3}})):
        with pytest.raises(pycddl.ValidationError):
            validate("event", cbor.dumps(bad))
