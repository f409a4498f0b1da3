"""Group commands against the simulator (in this process, on ptys): the command bytes go through the
command gate exactly as from the broker, the gateway's bus owners write the simulated lamps, and the
simulator's ground truth and counters say what reached each lamp.

* a group write reaches every lamp of the group, one ack with a result (value read back) per lamp;
* with `readback` false, a bus whose every device is in the group, all one profile marking the point
  `broadcast`, gets one Modbus broadcast (unit 0): each simulated lamp counts a write it did not answer
  (`silent`), no lamp answers it, and the bus owner ran one command; a bus with a device outside the
  group (or another profile) is written lamp by lamp instead;
* one device that would refuse (no such point) refuses the whole command: nothing is written anywhere;
* a group command runs at most once (its repeat gets the same ack, nothing is written again), and a
  group write of a switching point is refused unsigned under the default policy.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest

from agent.config import load_config
from agent.gateway import Gateway
from hil_tests.sample_configs import lamp_scenario
from protocols import cose

SCENARIO = lamp_scenario("groups", 3, "19200 8N1", 0.8) + """
[[bus]]
name = "park"
line = "19200 8N1"

[[bus.device]]
id = "park-{n:02}"
count = 2
profile = "generic-lamp"
address = 1
params = { dim = 0.8, rated_power = 100 }

[[bus.device]]
id = "park-pressure"
profile = "pressure-sensor"
address = 20
"""

CONFIG = """\
format = 1

[gateway]
site = "groups"
id = "gw1"

[outbox]
path = "outbox.sqlite"

[commands]
key_file = "gw1.key"

[[buses]]
name = "street"
port = "{street}"
baud = 19200
timeout_ms = 100

[[buses]]
name = "park"
port = "{park}"
baud = 19200
timeout_ms = 100

[groups]
street = ["lamp-01", "lamp-02", "lamp-03"]
park = ["park-01", "park-02"]
all = ["lamp-01", "lamp-02", "lamp-03", "park-01", "park-02"]
mixed = ["park-01", "park-pressure"]
{devices}"""

KEY = bytes(range(32))
LAMPS = ["lamp-01", "lamp-02", "lamp-03", "park-01", "park-02"]


class Acks:
    """Stands in for agent.uplink.Uplink: keeps the acks the gate publishes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acks: list[dict] = []
        self.commands: Any = None

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        with self.lock:
            self.acks.append(cbor2.loads(payload))

    def of(self, cmd_id: str) -> list[dict]:
        with self.lock:
            return [a for a in self.acks if a["id"] == cmd_id]

    def start(self) -> None:
        pass

    def stop(self, flush: bool = True, drain: float = 0.0, timeout: float = 0.0) -> None:
        pass

    def submit(self, readings: list[Any] | tuple[Any, ...]) -> None:
        pass

    def device_state(self, device: str, online: bool, reason: str = "") -> None:
        pass

    def alarm(self, *args: Any, **kwargs: Any) -> None:
        pass

    def event(self, event: dict) -> None:
        pass

    def add_counters(self, name: str, getter: Any) -> None:
        pass


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


class Bench:
    def __init__(self, tmp: str) -> None:
        from simulator.control import SimClient
        from simulator.scenario import load
        from simulator.site import Site

        scenario = os.path.join(tmp, "groups.toml")
        with open(scenario, "w") as f:
            f.write(SCENARIO)
        self.site = Site(load(scenario), instant=True).start()
        self.sim = SimClient(self.site.describe()["control"])
        devices = ""
        for bus in ("street", "park"):
            for d in self.site.bus(bus).devices:
                devices += ('\n[[devices]]\nid = "%s"\nbus = "%s"\nprofile = "%s"\naddress = %s\n'
                            'interval = 0.3\n' % (d.id, bus, d.profile.model, d.address))
        key = os.path.join(tmp, "gw1.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, (KEY.hex() + "\n").encode())
        os.close(fd)
        path = os.path.join(tmp, "site.toml")
        with open(path, "w") as f:
            f.write(CONFIG.format(street=self.site.bus("street").device_path,
                                  park=self.site.bus("park").device_path, devices=devices))
        self.acks = Acks()
        self.gateway = Gateway(load_config(path), uplink=self.acks)
        self.gateway.start()
        assert wait_for(lambda: all(d["online"] for d in self.gateway.device_health().values()))
        self.seq = 0

    def send(self, signed: bool = True, **cmd: Any) -> dict:
        """Hand a command to the gate as from the broker (signed with the gateway's key); wait for its ack."""
        if "id" not in cmd:
            self.seq += 1
            cmd["id"] = "g-%d" % self.seq
        cmd.setdefault("exp", int(time.time()) + 60)
        payload = cbor2.dumps(cmd, canonical=True)
        if signed:
            payload = cose.sign(payload, KEY, b"gw1")
        before = len(self.acks.of(cmd["id"]))
        self.gateway.commands.take(payload)
        assert wait_for(lambda: len(self.acks.of(cmd["id"])) > before), cmd
        return self.acks.of(cmd["id"])[-1]

    def counters(self) -> dict:
        return self.sim.counters()["devices"]

    def commands_run(self, bus: str) -> int:
        return int(self.gateway.scheduler.workers[bus].counters["commands"])

    def close(self) -> None:
        self.gateway.stop()
        self.sim.close()
        self.site.stop()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Iterator[Bench]:
    pytest.importorskip("simulator.site")
    b = Bench(str(tmp_path_factory.mktemp("groups")))
    try:
        yield b
    finally:
        b.close()


def delta(before: dict, after: dict, key: str) -> dict[str, int]:
    return {d: after[d][key] - before[d][key] for d in after}


def unanswered_requests(before: dict, after: dict) -> dict[str, int]:
    """Requests a device took without answering and without being silenced by a fault: broadcasts."""
    return {d: (after[d]["requests"] - before[d]["requests"])
            - (after[d]["answered"] - before[d]["answered"]) - (after[d]["silent"] - before[d]["silent"])
            for d in after}


def test_a_group_write_dims_every_lamp_with_one_ack_and_a_result_each(bench):
    before = bench.counters()
    ack = bench.send(device="all", point="dim", value=0.4)
    assert ack["ok"] is True and ack["error"] is None, ack
    assert list(ack["value"]) == LAMPS
    for device in LAMPS:
        assert ack["value"][device] == {"ok": True, "error": None, "value": 0.4}
        assert bench.sim.truth(device, "dim") == pytest.approx(0.4)  # simulator truth
    after = bench.counters()
    writes = delta(before, after, "writes")
    assert {d: writes[d] for d in LAMPS} == dict.fromkeys(LAMPS, 1) and writes["park-pressure"] == 0
    assert wait_for(lambda: all(v == 0 for v in unanswered_requests(before, bench.counters()).values()))


def test_without_readback_a_whole_bus_gets_one_broadcast(bench):
    before = bench.counters()
    commands = bench.commands_run("street"), bench.commands_run("park")
    ack = bench.send(device="all", point="dim", value=0.25, readback=False)
    assert ack["ok"] is True, ack
    for device in ("lamp-01", "lamp-02", "lamp-03"):  # the street bus holds only the group's lamps
        assert ack["value"][device] == {"ok": True, "error": None, "value": None, "broadcast": True}
    for device in ("park-01", "park-02"):  # the park bus has a pressure sensor too: lamp by lamp
        assert ack["value"][device] == {"ok": True, "error": None, "value": 0.25}
    for device in LAMPS:
        assert wait_for(lambda d=device: bench.sim.truth(d, "dim") == pytest.approx(0.25)), device
    after = bench.counters()
    writes = delta(before, after, "writes")
    assert {d: writes[d] for d in LAMPS} == dict.fromkeys(LAMPS, 1)
    # the broadcast reached each street lamp as a request it did not answer (by design, not silence); a
    # poll caught between its request and its answer would count too, so read the counters until settled
    want = {"lamp-01": 1, "lamp-02": 1, "lamp-03": 1, "park-01": 0, "park-02": 0}
    assert wait_for(lambda: {d: unanswered_requests(before, bench.counters())[d] for d in LAMPS} == want)
    assert (bench.commands_run("street") - commands[0], bench.commands_run("park") - commands[1]) == (1, 1)


def test_a_group_of_a_bus_with_other_devices_is_never_broadcast(bench):
    before = bench.counters()
    ack = bench.send(device="park", point="dim", value=0.6, readback=False)
    assert ack["ok"] is True and all("broadcast" not in r for r in ack["value"].values()), ack
    # no unit-0 frame on that bus
    assert wait_for(lambda: all(unanswered_requests(before, bench.counters())[d] == 0
                                for d in ("park-01", "park-02", "park-pressure")))


def test_one_device_that_refuses_refuses_the_whole_group(bench):
    before = bench.counters()
    ack = bench.send(device="mixed", point="dim", value=0.5)
    assert ack["ok"] is False and ack["value"] is None
    assert ack["error"] == ('group mixed, device park-pressure: device park-pressure (profile '
                            'pressure-sensor) has no point "dim"')
    assert delta(before, bench.counters(), "writes") == dict.fromkeys(before, 0)  # nothing written anywhere
    ack = bench.send(device="street", point="dim", value=1.5)
    assert ack["ok"] is False and "1.5 is above the maximum 1 of point dim" in ack["error"]
    ack = bench.send(device="street", action="relay_trip")
    assert ack["ok"] is False and "a group command writes or reads a point" in ack["error"]


def test_a_group_command_runs_at_most_once_and_its_switching_needs_a_signature(bench):
    street = ["lamp-01", "lamp-02", "lamp-03"]
    cmd = {"id": "once", "device": "street", "point": "on", "value": False, "exp": int(time.time()) + 60}
    payload = cose.sign(cbor2.dumps(cmd, canonical=True), KEY, b"gw1")
    before = bench.counters()
    bench.gateway.commands.take(payload)
    assert wait_for(lambda: len(bench.acks.of("once")) == 1)
    first = bench.acks.of("once")[0]
    assert first["ok"] is True and not any(bench.sim.truth(d, "on") for d in street), first
    bench.gateway.commands.take(payload)  # a replay: the original ack again, nothing runs
    assert wait_for(lambda: len(bench.acks.of("once")) == 2)
    assert bench.acks.of("once")[1] == first
    time.sleep(0.5)
    writes = delta(before, bench.counters(), "writes")
    assert {d: writes[d] for d in street} == dict.fromkeys(street, 1)
    assert bench.gateway.commands.stats()["repeats"] >= 1
    refused = bench.send(signed=False, device="street", point="on", value=True)
    assert refused["ok"] is False and "refused unsigned" in refused["error"]
    assert not any(bench.sim.truth(d, "on") for d in street)
    dim = bench.send(signed=False, device="street", point="dim", value=0.9)  # dimming is not switching
    assert dim["ok"] is True
    on = bench.send(device="street", point="on", value=True)
    assert on["ok"] is True and all(bench.sim.truth(d, "on") for d in street)
