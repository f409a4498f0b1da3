"""Street lighting on the board, under genuine MicroPython, against the simulator's lamps on a pty.

`fieldlink sim` serves four generic lamps (Modbus RTU, 9600 8N1) on one pty; the board's config is
compiled by `fieldlink firmware config` with the gateway's place, its time zone (Asia/Shanghai, as a
compiled offset table), a group and one schedule of clock-time steps a few seconds ahead.

* With no broker at all while the steps come, the board switches the lamps at the configured seconds
  (the simulator's truth, sampled every 0.1 s, changes within SWITCH_WITHIN after each step and never
  before it); a lamp that reboots for a few seconds (offline, back at its power-on state) is put right
  when it answers again; a lamp whose short reboot goes unnoticed is put right from its readings
  (`reset`); a write refused by a lamp raises a `schedule` alarm, cleared by the next step's write; a
  failed lamp left dark while its schedule wants it on raises a `lighting` alarm ("dark"), cleared when
  the schedule wants it off. When the broker comes back every `…/event` arrives from the ring, in order
  with the data, and `…/health` carries each device's online state, last answer and L1P3 facts.
* Group commands on the board: a group dim as one broadcast (`readback` false), a group dim with
  read-back on a bus that also has other devices, a whole group refused for one device's value, a
  signed group switch, a true/false write to the lamps' on/off register, and a schedule command
  refused with the reason.

Run with `-s` to see the switching delays measured.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
import time

import pytest

from firmware_py.tests import mpvm
from firmware_py.tests.simsite import Simulator, SimulatorMissing
from hil_tests import cddl
from hil_tests.broker import Mosquitto, Subscriber, find_mosquitto, free_port
from hil_tests.sample_configs import PLACE, lamp_scenario
from protocols import cbor, cose

pytestmark = mpvm.vm_module()

SCENARIO = lamp_scenario("fwlight", 4, "9600 8N1", 1.0, speed=1.0)
LAMPS = ["lamp-01", "lamp-02", "lamp-03", "lamp-04"]
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
#: a step's writes must reach the lamps within this many seconds on a busy machine
SWITCH_WITHIN = 2.5
KEY = bytes(range(40, 72))
RUN = """
import json, hostio
import hw_host
from firmware_py import app

def make():
    cfg = json.load(open('/config.json'))
    return app.Firmware(cfg, hw_host.Host())

gw = make()
await gw.main(run_ms=%(run_ms)d)
hostio.emit(json.dumps({"made": gw.counters, "pending": gw.ring.pending(), "dropped": gw.ring.dropped,
    "online": list(gw.online),
    "lighting": gw.lighting.stats() if gw.lighting is not None else None}))
"""


def hms(instant: float) -> str:
    """A POSIX instant as the schedule's local HH:MM:SS (Asia/Shanghai)."""
    return dt.datetime.fromtimestamp(instant, SHANGHAI).strftime("%H:%M:%S")


def schedule_toml(steps: list[tuple[float, str]], alarm_after: float = 2) -> str:
    text = ('\n[groups]\nstreet = ["lamp-01", "lamp-02", "lamp-03", "lamp-04"]\n\n[[schedules]]\n'
            'name = "street"\ngroup = "street"\n')
    for at, values in steps:
        text += '\n[[schedules.steps]]\nat = "%s"\nset = {%s}\n' % (hms(at), values)
    return text + "\n[lighting]\nalarm_after = %s\n" % alarm_after


def state(sim: Simulator, device: str, wall: float) -> tuple[bool, float]:
    values = sim.client.truths(device, wall=wall)  # type: ignore[union-attr]
    return bool(values["on"]), round(float(values["dim"]), 2)


def write_scenario(tmp: str) -> str:
    path = os.path.join(tmp, "fwlight.toml")
    with open(path, "w") as f:
        f.write(SCENARIO)
    return path


def key_config(tmp: str) -> str:
    path = os.path.join(tmp, "gw1.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(KEY.hex() + "\n")
    return '\n[commands]\nkey_file = "%s"\n' % path


def row(alarm: dict) -> tuple:
    """(device, point, state, value) of an alarm record."""
    return alarm["device"], alarm["point"], alarm["state"], alarm["value"]


def at(moment: float) -> None:
    """Sleep until wall time `moment`."""
    time.sleep(max(0.0, moment - time.time()))


def test_the_board_switches_its_lamps_on_schedule_without_a_broker(tmp_path):
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto); CI installs it")
    tmp = str(tmp_path)
    broker = Mosquitto(port=free_port(), persistence=True)
    subs: list[Subscriber] = []
    errors: list = []
    try:
        # the platform's persistent session, registered before the outage: what the board publishes
        # when the broker returns is queued for it however the reconnects interleave
        broker.start()
        Subscriber(broker, topic="fieldlink/fwlight/gw1/#", client_id="platform", persistent=True).close()
        broker.stop()
        with Simulator(write_scenario(tmp), tmp) as sim:
            client = sim.client
            assert client is not None
            base = math.ceil(time.time()) + 10  # the board boots and applies the state in force first
            steps = [(base, "on = true, dim = 0.8"), (base + 8, "dim = 0.4"), (base + 16, "on = false")]
            rules = [{"device": "lamp-04", "point": "lamp_failure", "kind": "fault"}]
            # a ring that holds the night's packs: events share it with the data (oldest dropped first)
            cfg = sim.firmware_config(broker.port, interval=0.5, timeout_ms=100, rules=rules,
                                      extra=schedule_toml(steps), gateway=PLACE, ring_slots=160)
            compiled = json.load(open(cfg))
            assert compiled["zone"]["name"] == "Asia/Shanghai"
            assert compiled["lighting"]["schedules"][0]["devices"] == LAMPS
            client.fault("lamp-04", "lamp_failure")  # dark whatever it is told

            def director() -> None:
                try:
                    at(base + 2)
                    client.fault("lamp-03", "reboot", duration=5.0)  # offline, back at on / dim 1.0
                    at(base + 7)
                    client.fault("lamp-02", "exception", code=4)  # refuses every request
                    at(base + 9.5)
                    client.clear("lamp-02", "exception")
                    at(base + 11)
                    client.fault("lamp-01", "reboot", duration=0.3)  # too short to be seen offline
                    at(base + 19)
                    broker.start()  # the network is back after the night: the platform takes it all
                    subs.append(Subscriber(broker, topic="fieldlink/fwlight/gw1/#", client_id="platform",
                                           persistent=True))
                except Exception as exc:  # reported by the main thread
                    errors.append(exc)

            thread = threading.Thread(target=director, daemon=True)
            thread.start()
            run_ms = int((base + 32 - time.time()) * 1000)
            res = mpvm.run(RUN % {"run_ms": run_ms}, files={"/config.json": cfg}, timeout=run_ms / 1000 + 120)
            thread.join(10)
            assert not errors, errors
            assert res.returncode == 0, res.stderr[-3000:]
            summary = res.values()[-1]
            assert summary["made"]["connects"] >= 1, summary  # the broker came back at base + 19 ...
            assert summary["made"]["connect_failures"] > 10, summary  # ... and was away before
            assert summary["dropped"] == 0, summary  # the ring held everything

            # the simulator's truth: lamp-01 follows every step at its second, never before it; lamp-02
            # steps 1 and 3 (it refuses step 2's write)
            states = [(False, 0.4), (True, 0.8), (True, 0.4), (False, 0.4)]  # step 3 in force at boot
            delays = []
            for (when, _values), was, want in zip(steps, states[:-1], states[1:], strict=True):
                for device in ("lamp-01", "lamp-02"):
                    if device == "lamp-02" and when == base + 8:
                        assert state(sim, device, when + SWITCH_WITHIN) == was  # refused: unchanged
                        continue
                    assert state(sim, device, when - 0.3) == (states[1] if device == "lamp-02" and
                                                              when == base + 16 else was), (device, hms(when))
                    moment = next((t / 10 for t in range(int(when * 10) - 3, int((when + SWITCH_WITHIN) * 10))
                                   if state(sim, device, t / 10) == want), None)
                    assert moment is not None, (device, hms(when), state(sim, device, when + SWITCH_WITHIN),
                                                res.stdout[-3000:])
                    assert moment >= when, "%s switched before the step at %s" % (device, hms(when))
                    delays.append(moment - when)
            print("\nboard: lamps switched %.1f .. %.1f s after the configured second (%d switchings)"
                  % (min(delays), max(delays), len(delays)))

            sub = subs[0]
            assert sub.wait_for(lambda: any(e["reason"] == "change" and e["step"] == 3
                                            for e in sub.decoded("event")), 20), res.stdout[-3000:]
            events = sub.decoded("event")
            reasons = [(e["reason"], e["step"]) for e in events]

            # at boot: yesterday's step 3 in force, with step 2's dim; then each step at its instant
            assert events[0]["reason"] == "start" and events[0]["step"] == 3, reasons
            assert events[0]["set"] == {"on": False, "dim": 0.4} and events[0]["due"] == base + 16 - 86400
            assert events[0]["time"] < base, "the board was not up before the first step"
            changes = [e for e in events if e["reason"] == "change"]
            assert [(e["step"], e["due"], e["at"]) for e in changes] == [
                (1, base, hms(base)), (2, base + 8, hms(base + 8)), (3, base + 16, hms(base + 16))], reasons
            assert changes[0]["set"] == {"on": True, "dim": 0.8}
            assert changes[2]["set"] == {"on": False, "dim": 0.4}
            first = changes[0]["devices"]
            assert first["lamp-01"] == {"ok": True, "error": None, "value": {"on": 1, "dim": 0.8}}, first

            # lamp-03 rebooted for 5 s: offline, then written the state in force when it answered
            online = [e for e in events if e["reason"] == "online"]
            assert [sorted(e["devices"]) for e in online] == [["lamp-03"]], reasons
            assert online[0]["devices"]["lamp-03"]["ok"] is True
            back = online[0]["time"]
            assert state(sim, "lamp-03", back + 1.5) == ((True, 0.8) if back < base + 8 else (True, 0.4))

            # lamp-02 refused the step-2 write: schedule alarm raised, cleared by step 3's write
            assert changes[1]["devices"]["lamp-02"]["ok"] is False
            assert changes[1]["devices"]["lamp-02"]["error"].startswith("exception"), changes[1]
            alarms = sub.decoded("alarm")
            sched = [row(a) for a in alarms if a["kind"] == "schedule"]
            assert sched[0][:3] == ("lamp-02", None, "raised") and sched[0][3].startswith("exception")
            assert sched[1:] == [("lamp-02", None, "cleared", "applied")], sched

            # lamp-01's short reboot went unnoticed by the poll, not by its readings: reset
            resets = [e for e in events if e["reason"] == "reset"]
            assert [sorted(e["devices"]) for e in resets] == [["lamp-01"]], reasons
            assert state(sim, "lamp-01", base + 15) == (True, 0.4)

            # lamp-04 failed: dark while wanted on (lighting alarm after 2 s), as scheduled once off
            light = [row(a) for a in alarms if a["kind"] == "lighting"]
            assert light == [("lamp-04", "on", "raised", "dark"),
                             ("lamp-04", "on", "cleared", "as_scheduled")]
            raised = next(a for a in alarms if a["kind"] == "lighting")
            assert base + 2 <= raised["time"] <= base + 8, (raised, base)

            # the ring kept the order: every event after the readings made before it
            order = []
            for topic, payload, _retain in list(sub.messages):
                if topic.endswith("/event"):
                    order.append(("event", cbor.loads(payload)["time"]))
                elif topic.endswith("/data"):
                    pack = cbor.loads(payload)
                    bt = pack[0].get(-3, 0)
                    order.append(("data", max(bt + r.get(6, 0) for r in pack)))
            for i, (kind, when) in enumerate(order):
                if kind == "event":
                    assert all(t <= when for k, t in order[:i] if k == "data"), (i, when, order[:i][-3:])

            # health: each device's online state, last answer and a lamp's L1P3 facts; lighting counters
            assert sub.decoded("health"), "no health after the broker came back"
            health = sub.decoded("health")[-1]
            devices = health["buses"]["street"]["devices"]
            assert sorted(devices) == LAMPS and "devices" not in health  # one per-device shape
            for device in LAMPS:
                entry = devices[device]
                assert entry["online"] is True and abs(entry["last_ok"] - time.time()) < 30, entry
                assert entry["reason"] == "answering" and 0 < entry["since"] <= entry["last_ok"], entry
                assert entry["control_writable"] is True
                assert entry["fault_alarm_armed"] is (device == "lamp-04"), entry
            lighting = health["lighting"]
            assert lighting["clock_set"] is True and lighting["zone_expired"] is False
            assert lighting["schedules"]["street"]["step"] == 3 and lighting["resets"] == 1
            assert lighting["schedules"]["street"]["next"] == base + 86400, lighting
            assert summary["lighting"]["writes_failed"] >= 1 and summary["online"] == [1, 1, 1, 1]
            # the board's events, alarms and health follow the spec files the agent's do (pycddl)
            for leaf in ("event", "alarm", "health"):
                for payload in sub.on(leaf):
                    cddl.validate(leaf, payload)
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
    finally:
        for sub in subs:
            sub.close()
        broker.close()


class Acks:
    """A platform on the broker: sends commands and collects acks and health."""

    def __init__(self, broker: Mosquitto) -> None:
        self.sub = Subscriber(broker, topic="fieldlink/fwlight/gw1/#", client_id="platform-cmd",
                              persistent=False)
        self.topic = "fieldlink/fwlight/gw1/cmd"

    def send(self, payload: bytes) -> None:
        self.sub.client.publish(self.topic, payload, qos=1)

    def plain(self, **cmd: object) -> None:
        self.send(cbor.dumps(cmd))

    def signed(self, **cmd: object) -> None:
        self.send(cose.sign(cbor.dumps(dict(cmd, exp=int(time.time()) + 60)), KEY, b"gw1"))

    def ack(self, cid: str, timeout: float = 15.0) -> dict:
        def found() -> list:
            return [a for a in self.sub.decoded("ack") if a["id"] == cid]

        assert self.sub.wait_for(found, timeout), "no ack for %s" % cid
        got: dict = found()[0]
        return got


def test_group_commands_and_true_false_writes_on_the_board(tmp_path):
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto); CI installs it")
    tmp = str(tmp_path)
    broker = Mosquitto().start()
    errors: list = []
    acks: dict = {}
    try:
        with Simulator(write_scenario(tmp), tmp) as sim:
            client = sim.client
            assert client is not None
            extra = '\n[groups]\nstreet = ["lamp-01", "lamp-02", "lamp-03", "lamp-04"]\n' \
                    'pair = ["lamp-01", "lamp-02"]\n' + key_config(tmp)
            cfg = sim.firmware_config(broker.port, interval=0.5, timeout_ms=100, extra=extra)
            assert "lighting" not in json.load(open(cfg))  # no schedules: the lighting code is not loaded
            platform = Acks(broker)
            counts: dict = {}

            def director() -> None:
                try:
                    assert platform.sub.wait_for(lambda: platform.sub.on("status"), 30), "no birth"
                    counts["before"] = client.counters()["devices"]
                    platform.plain(id="g1", device="street", point="dim", value=0.3, readback=False)
                    acks["g1"] = platform.ack("g1")
                    counts["after"] = client.counters()["devices"]
                    platform.plain(id="g2", device="pair", point="dim", value=0.6)
                    acks["g2"] = platform.ack("g2")
                    platform.plain(id="g3", device="street", point="dim", value=1.5)
                    platform.plain(id="g4", device="street", point="on", value=False)  # unsigned switching
                    platform.signed(id="g5", device="street", point="on", value=False)
                    acks["g5"] = platform.ack("g5")
                    counts["off"] = {d: client.truth(d, "on") for d in LAMPS}
                    platform.signed(id="c1", device="lamp-01", point="on", value=True)
                    platform.plain(id="c2", device="lamp-01", point="dim", value=True)
                    platform.signed(id="s1", device="street", action="schedule",
                                    value={"name": "street",
                                           "steps": [{"at": "sunset", "set": {"on": True}}]})
                    platform.plain(id="g6", device="street", action="read", point="power")
                    for cid in ("g3", "g4", "c1", "c2", "s1", "g6"):
                        acks[cid] = platform.ack(cid)
                except Exception as exc:  # reported by the main thread
                    errors.append(exc)

            thread = threading.Thread(target=director, daemon=True)
            thread.start()
            res = mpvm.run(RUN % {"run_ms": 25000}, files={"/config.json": cfg})
            thread.join(10)
            platform.sub.close()
            assert not errors, errors
            assert res.returncode == 0, res.stderr[-3000:]

            # one broadcast: every lamp took it (one write each), the ack says so per device
            assert acks["g1"] == {"id": "g1", "ok": True, "error": None, "value": {
                d: {"ok": True, "error": None, "value": None, "broadcast": True} for d in LAMPS}}
            assert {d: counts["after"][d]["writes"] - counts["before"][d]["writes"] for d in LAMPS} == \
                dict.fromkeys(LAMPS, 1)
            assert "broadcast dim = 0.3 to 4 devices" in res.stdout
            # not the whole bus: each lamp of the pair written and read back; the others keep 0.3
            assert acks["g2"]["ok"] is True and acks["g2"]["value"] == {
                d: {"ok": True, "error": None, "value": 0.6} for d in ("lamp-01", "lamp-02")}
            assert [round(float(client.truth(d, "dim")), 2) for d in LAMPS] == [0.6, 0.6, 0.3, 0.3]
            # one device's value out of range refuses the whole group: nothing is written
            assert acks["g3"] == {"id": "g3", "ok": False, "value": None, "error":
                                  "group street, device lamp-01: 1.5 is above the maximum 1 of point dim"}
            assert acks["g4"]["ok"] is False and "refused unsigned" in acks["g4"]["error"], acks["g4"]
            # a signed group switch with read-back: true/false on the on/off register is 0/1
            assert acks["g5"]["ok"] is True and acks["g5"]["value"] == {
                d: {"ok": True, "error": None, "value": 0} for d in LAMPS}
            assert counts["off"] == dict.fromkeys(LAMPS, 0)
            assert acks["c1"] == {"id": "c1", "ok": True, "error": None, "value": 1}
            assert client.truth("lamp-01", "on") == 1
            assert acks["c2"]["error"] == "point dim needs a number, not True"
            assert acks["s1"]["ok"] is False and "runs the schedules compiled into its config.json" in \
                acks["s1"]["error"]
            powers = acks["g6"]["value"]
            assert acks["g6"]["ok"] is True and sorted(powers) == LAMPS
            assert powers["lamp-01"]["value"] > 1 and powers["lamp-02"]["value"] == 0  # on / off
    except SimulatorMissing as exc:
        pytest.skip(str(exc))
    finally:
        broker.close()
