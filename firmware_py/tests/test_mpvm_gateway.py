"""The real main loop under genuine MicroPython against the shared simulator and a real Mosquitto.

`fieldlink sim demo` serves two RS-485 buses on ptys: street lamps, a Modbus meter and a pressure
sensor (9600 8N1), a DL/T 645 meter and a CJ/T 188 water meter (2400 8E1). The firmware polls both
UARTs and publishes; every reading on the broker must be what the simulator says the device answered
(ground truth over its control channel). During the run a lamp goes silent and comes back (comms
alarm raised, then cleared), commands arrive on …/cmd (Modbus write with read-back, a signed CJ/T 188
valve command, its replay, an unsigned and an expired one, a retained one, refusals, garbage), a
threshold rule fires and clears, and the TCP connection is cut once (last will, then online again
with the session kept: no inventory and no subscription the second time).
"""

import os
import threading
import time
import zlib

import pytest

from firmware_py.tests import mpvm
from firmware_py.tests.simsite import Simulator, SimulatorMissing
from hil_tests import cddl
from hil_tests.broker import broker_or_skip
from protocols import birth, cbor, cose, senml

pytestmark = mpvm.vm_module()

RUN = """
import json, hostio, asyncio
import hw_host
from firmware_py import app

def make():
    cfg = json.load(open('/config.json'))
    return app.Firmware(cfg, hw_host.Host())

gw = make()
async def chaos():
    await asyncio.sleep_ms(%(drop_at)d)
    hostio.tcp_drop_all()
asyncio.create_task(chaos())
await gw.main(run_ms=%(run_ms)d)
hostio.emit(json.dumps({"made": gw.counters, "pending": gw.ring.pending(), "errors": gw.stats,
    "online": list(gw.online), "remote": gw.remote.stats()}))
"""


class Collector:
    def __init__(self, port: int, topic: str, client_id: str = "collector") -> None:
        import paho.mqtt.client as mqtt

        self.msgs: list = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def _on(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload), msg.retain, time.time()))

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()

    def of(self, leaf):
        with self.lock:
            return [m for m in self.msgs if m[0].endswith("/" + leaf)]

    def wait(self, leaf, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.of(leaf):
                return True
            time.sleep(0.05)
        return False


def summary_devices(sim) -> int:
    return sum(len(b["devices"]) for b in sim.ports["buses"])


def command(col, topic, **cmd):
    col.client.publish(topic, cbor.dumps(cmd), qos=1)
    time.sleep(0.15)


KEY = bytes(range(7, 39))


def signed(ttl=60, **cmd):
    """A COSE_Mac0 of the command, exp = now + ttl, for gateway gw1."""
    return cose.sign(cbor.dumps(dict(cmd, exp=int(time.time()) + ttl)), KEY, b"gw1")


def key_config(tmp_path) -> str:
    path = os.path.join(str(tmp_path), "gw1.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(KEY.hex() + "\n")
    return '\n[commands]\nkey_file = "%s"\n' % path


def test_firmware_against_the_simulator(tmp_path):
    broker = broker_or_skip()
    errors: list = []
    try:
        with Simulator("demo", str(tmp_path)) as sim:
            rules = [{"device": "lamp-03", "point": "dim", "below": 0.6, "hysteresis": 0.05}]
            cfg = sim.firmware_config(broker.port, interval=1.0, timeout_ms=100, rules=rules,
                                      extra=key_config(tmp_path))
            col = Collector(broker.port, "fieldlink/demo/gw1/#")
            cmd_topic = "fieldlink/demo/gw1/cmd"
            valve = signed(id="c6", device="flat-101-water", point="valve", value="closed")
            # left retained before the board connects: delivered with the retain flag, never run
            left = signed(id="r1", device="flat-101-water", point="valve", value="open")
            col.client.publish(cmd_topic, left, qos=1, retain=True).wait_for_publish(5)

            def director():
                try:
                    assert col.wait("status"), "no status"
                    time.sleep(0.3)
                    sim.client.fault("lamp-02", "no_answer")
                    command(col, cmd_topic, id="c1", device="lamp-03", point="dim", value=0.5)
                    command(col, cmd_topic, id="c2", device="lamp-03", point="voltage", value=1)
                    command(col, cmd_topic, id="c3", device="lamp-03", point="dim", value=1.5)
                    command(col, cmd_topic, id="c4", device="nope", point="dim", value=1)
                    col.client.publish(cmd_topic, b"\xff\x00 not cbor", qos=1)
                    time.sleep(0.15)
                    command(col, cmd_topic, id="u6", device="flat-101-water", point="valve", value="closed")
                    expired = signed(ttl=-5, id="x6", device="flat-101-water", point="valve", value="closed")
                    col.client.publish(cmd_topic, expired, qos=1)
                    col.client.publish(cmd_topic, valve, qos=1)
                    time.sleep(1.5)
                    col.client.publish(cmd_topic, valve, qos=1)  # replayed
                    time.sleep(0.15)
                    command(col, cmd_topic, id="c7", device="feeder-meter", action="read", point="frequency")
                    time.sleep(3.5)
                    sim.client.clear("lamp-02")
                    command(col, cmd_topic, id="c8", device="lamp-03", point="dim", value=0.7)
                except Exception as exc:  # reported by the main thread
                    errors.append(exc)

            t = threading.Thread(target=director, daemon=True)
            t.start()
            res = mpvm.run(RUN % {"run_ms": 12000, "drop_at": 6000}, files={"/config.json": cfg})
            t.join(5)
            col.client.publish(cmd_topic, b"", qos=1, retain=True).wait_for_publish(5)
            time.sleep(0.5)
            col.close()
            assert not errors, errors
            assert res.returncode == 0, res.stderr[-3000:]
            summary = res.values()[-1]
            # the console log a technician sees on the USB serial (log_level "info" by default)
            console = [ln for ln in res.stdout.splitlines() if ln.startswith("fieldlink: ")]
            assert console[0] == "fieldlink: INFO boot gw1 (demo): 2 buses, %d devices" % summary_devices(sim)
            assert "fieldlink: INFO broker 127.0.0.1:%d connected" % broker.port in console
            assert any(ln.startswith("fieldlink: WARNING bus street: lamp-02 offline: no reply to 3 polls")
                       for ln in console), console
            assert "fieldlink: INFO bus street: lamp-02 online again" in console
            assert any(ln.startswith("fieldlink: WARNING broker 127.0.0.1:%d: connection lost" % broker.port)
                       for ln in console), console  # the dropped connection

            # data: every reading of every device is what the simulator answered
            records = []
            for _topic, payload, _r, _w in col.of("data"):
                records += senml.decode(payload)
            devices = {d["id"] for b in sim.ports["buses"] for d in b["devices"]}
            seen: dict = {}
            wrong = []
            for r in records:
                device, point = r["n"].split(":", 1)[1].split("/")
                value = r.get("v", r.get("vs", r.get("vb")))
                seen.setdefault(device, set()).add(point)
                if not sim.matches(device, point, value, r["t"]):
                    wrong.append((device, point, value, r["t"], sim.truth(device, point, r["t"])))
            assert not wrong, wrong[:10]
            assert set(seen) == devices, (sorted(seen), summary)
            assert {"energy_import", "voltage_a", "frequency"} <= seen["flat-101-power"]  # DL/T 645
            tariffs = {"energy_import_total"} | {"energy_import_t%d" % i for i in range(1, 5)}
            assert tariffs <= seen["flat-101-power"], seen["flat-101-power"]  # the 0001FF00 block
            assert {"volume", "valve", "battery_low"} <= seen["flat-101-water"]  # CJ/T 188
            assert len(records) > 300, len(records)

            # commands: acks as the agent sends them
            acks = {a["id"]: a for a in (cbor.loads(p) for _t, p, _r, _w in col.of("ack"))}
            when = {cbor.loads(p)["id"]: w for _t, p, _r, w in col.of("ack")}
            assert acks["c1"] == {"id": "c1", "ok": True, "error": None, "value": 0.5}
            assert acks["c2"]["ok"] is False and acks["c2"]["error"] == "point voltage is not writable"
            assert acks["c3"]["error"] == "1.5 is above the maximum 1 of point dim"
            assert acks["c4"]["error"] == "unknown device 'nope'"
            assert acks["c6"] == {"id": "c6", "ok": True, "error": None, "value": "closed"}
            c6 = [cbor.loads(p) for _t, p, _r, _w in col.of("ack") if cbor.loads(p)["id"] == "c6"]
            assert c6 == [acks["c6"], acks["c6"]]  # the replay got the original ack; the valve moved once
            assert acks["u6"]["error"] == ("write valve of flat-101-water is refused unsigned: this gateway "
                                           "wants switching commands signed (COSE_Mac0)")
            assert acks["x6"]["ok"] is False and acks["x6"]["error"].startswith("command expired at")
            assert acks["r1"] == {"id": "r1", "ok": False, "error": "retained commands are not executed",
                                  "value": None}
            assert summary["remote"]["refused_by"]["retained"] >= 1 and summary["remote"]["repeats"] == 1
            assert acks["c7"]["ok"] is True and sim.matches("feeder-meter", "frequency", acks["c7"]["value"],
                                                            int(when["c7"]) - 3, 4.0)
            assert acks["c8"]["ok"] is True and acks["c8"]["value"] == 0.7
            assert summary["made"]["commands_bad"] == 1 and summary["made"]["commands"] >= 11
            assert sim.client.truth("lamp-03", "dim") == pytest.approx(0.7)
            assert sim.client.truth("flat-101-water", "valve") == "closed"

            # alarms: comms for the silent lamp (raised, cleared), the dim rule (raised, cleared)
            alarms = [cbor.loads(p) for _t, p, _r, _w in col.of("alarm")]
            comms = [(a["device"], a["state"]) for a in alarms if a["kind"] == "comms"]
            assert comms == [("lamp-02", "raised"), ("lamp-02", "cleared")], alarms
            raised = next(a for a in alarms if a["kind"] == "comms")
            assert raised["point"] is None and raised["value"] == "no reply to 3 polls (timeout)"
            rule = [(a["point"], a["state"], a["value"]) for a in alarms if a["kind"] == "threshold"]
            assert rule == [("dim", "raised", 0.5), ("dim", "cleared", 0.7)], alarms
            assert set(alarms[0]) == {"device", "point", "kind", "value", "n", "state", "time"}
            numbers = [a["n"] for a in alarms]
            assert numbers == sorted(set(numbers)), "every alarm has its own number, increasing"
            assert summary["online"] == [1] * len(devices)

        # status (retained, online); after the dropped connection its will (offline, same connection number),
        # then online again with the next number; offline at the clean stop. The inventory went out once:
        # after the drop the broker still held our session and the inventory (persistent session).
        status = [birth.decode(p) for _t, p, _r, _w in col.of("status")]
        assert [s["online"] for s in status] == [True, False, True, False], status
        first, will, again, stop = status
        assert will["session"] == first["session"] < again["session"] == stop["session"]
        inventories = col.of("inventory")
        assert len(inventories) == 1
        data = inventories[0][1]
        late = Collector(broker.port, "fieldlink/demo/gw1/inventory", "late")  # retained: a late one gets it
        try:
            assert late.wait("inventory") and late.of("inventory")[0][1] == data
        finally:
            late.close()
        assert first["inventory"] == again["inventory"] == zlib.crc32(data)
        assert [d["id"] for d in birth.decode(data)["devices"]] == [d["id"] for b in sim.ports["buses"]
                                                                   for d in b["devices"]]
        assert abs(first["time"] - time.time()) < 30
        health = [cbor.loads(p) for _t, p, _r, _w in col.of("health")]
        assert health and health[-1]["polls"] > 0 and health[-1]["errors"]["timeout"] > 0
        # a data pack published at once leaves on its PUBACK from RAM: fewer records reached the flash
        # ring by the last health than were published by then (the drop's backlog, the alarms and events
        # and late PUBACKs are written; until 2026-12-08 every record was, before it was published)
        last = col.of("health")[-1][3]
        published = {p for leaf in ("data", "alarm", "event") for _t, p, _r, w in col.of(leaf) if w <= last}
        written = health[-1]["outbox"]["written_packs"]
        print("\nboard: %d records published by the last health, %d of them written to the flash ring"
              % (len(published), written))
        assert written < len(published), (written, len(published))
        street = next(b for b in sim.ports["buses"] if b["name"] == "street")
        assert set(health[-1]["buses"]["street"]["devices"]) == {d["id"] for d in street["devices"]}
        # the board's messages follow the same spec files as the agent's (pycddl)
        for leaf, spec in (("status", "status"), ("inventory", "inventory"), ("data", "senml"),
                           ("health", "health"), ("alarm", "alarm"), ("ack", "ack")):
            sent = [p for _t, p, _r, _w in col.of(leaf) if p]
            assert sent, leaf
            for payload in sent:
                cddl.validate(spec, payload)
        # hardware contract: DE pins of both buses high and low around every UART write; watchdog fed
        host = res.host
        assert host["pins"]["%2"][1] == host["pins"]["%2"][0] > 0
        assert host["pins"]["%6"][1] == host["pins"]["%6"][0] > 0
        assert host["wdt_feeds"] > 10 and host["wdt_max_gap_ms"] < host["wdt_timeout"]
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
    finally:
        broker.close()
