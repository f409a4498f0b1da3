"""Street lighting at the wire: `fieldlink run` as a subprocess, the simulator's lamps on ptys, a real
Mosquitto (or none), and the simulator's ground truth for what each lamp did when.

* With the broker unreachable all along, a schedule (steps a few seconds ahead, in UTC) switches the
  simulated lamps off, on and dimmed, and off again at the configured seconds: the simulator's truth
  just before each step is the old state and a little after it the new one. When the broker comes back,
  every switching arrives on `…/event`, in order (kept in the outbox meanwhile).
* `fieldlink send --device GROUP` dims every lamp of a group and prints a result per lamp; with
  `--no-readback` the lamps' bus gets one broadcast.
* `fieldlink send --schedule FILE` (signed with the gateway's key) replaces the schedule; the lamps follow
  the new steps, and `--restore` brings the config's back.

Run with `-rA` or `-s` to see the timings measured.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil_tests import cddl
from hil_tests.broker import Mosquitto, Subscriber, find_mosquitto, free_port
from hil_tests.link import ROOT, Process, SimSite, sim_agent_config, start_agent, wait_until
from hil_tests.test_agent_e2e import FAST

pytestmark = pytest.mark.slow

SCENARIO = """\
[site]
name = "hillight"
seed = 1414
speed = 1.0
utc_offset = 0

[[bus]]
name = "street"
line = "19200 8N1"

[[bus.device]]
id = "lamp-{n:02}"
count = 3
profile = "generic-lamp"
address = 1
params = { dim = 1.0, rated_power = 100 }
"""
LAMPS = ["lamp-01", "lamp-02", "lamp-03"]
KEY = "00" * 31 + "07"
#: a step's writes must reach the lamps within this many seconds on a busy machine
SWITCH_WITHIN = 3.0


def hms(instant: float) -> str:
    return dt.datetime.fromtimestamp(instant, dt.UTC).strftime("%H:%M:%S")


def lighting_tail(steps: list[tuple[int, str]], key_file: str | None = None) -> str:
    """[groups], one schedule of clock-time steps (UTC) and [lighting] for the generated config."""
    text = ('\n[groups]\nstreet = ["lamp-01", "lamp-02", "lamp-03"]\n\n[[schedules]]\nname = "street"\n'
            'group = "street"\n')
    for at, values in steps:
        text += '\n[[schedules.steps]]\nat = "%s"\nset = {%s}\n' % (hms(at), values)
    text += "\n[lighting]\nalarm_after = 600\n"
    if key_file is not None:
        text += '\n[commands]\nkey_file = "%s"\n' % key_file
    return text


def place(text: str) -> str:
    return text.replace("[gateway]\n", '[gateway]\nlatitude = 36.6512\nlongitude = 117.1201\n'
                        'timezone = "UTC"\n', 1)


def write_scenario(workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "hillight.toml")
    with open(path, "w") as f:
        f.write(SCENARIO)
    return path


def state(sim: SimSite, device: str, wall: float) -> tuple[bool, float]:
    values = sim.client.truths(device, wall=wall)
    return bool(values["on"]), round(float(values["dim"]), 2)


@pytest.fixture
def lighting_site(sim_site: Callable[..., SimSite], tmp_path: Any) -> SimSite:
    return sim_site(write_scenario(str(tmp_path / "scenario")))


def test_broker_unreachable_all_night_the_schedule_still_switches_the_lamps(lighting_site: SimSite,
                                                                           tmp_path: Any) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto); CI installs it")
    sim = lighting_site
    broker = Mosquitto(port=free_port(), persistence=True)
    agent: Process | None = None
    sub: Subscriber | None = None
    try:
        # a platform subscriber with a persistent session, registered before the outage: what the gateway
        # publishes after the broker returns is queued for it even if it reconnects later than the gateway
        broker.start()
        sub = Subscriber(broker, client_id="hil-lighting-platform", persistent=True)
        sub.close()
        broker.stop()
        base = math.ceil(time.time()) + 8  # the agent needs a few seconds to start
        steps = [(base, "on = true, dim = 0.8"), (base + 6, "dim = 0.4"), (base + 12, "on = false")]
        config = sim_agent_config(sim.ports_file, str(tmp_path / "agent.toml"), broker.url,
                                  str(tmp_path / "outbox.sqlite"), interval=0.5, timeout_ms=500,
                                  settings=FAST)
        with open(config) as f:
            text = place(f.read()) + lighting_tail(steps)
        with open(config, "w") as f:
            f.write(text)
        agent = start_agent(config, str(tmp_path / "agent.log"))
        assert wait_until(lambda: not agent.alive or time.time() > base + 12 + SWITCH_WITHIN + 1, 60)
        assert agent.alive, agent.log()[-3000:]
        assert "mqtt: connected" not in agent.log()
        report = []
        # at start-up step 3 is in force (yesterday's): off, dim 0.4 (from step 2); then each step in turn
        states = [(False, 0.4), (True, 0.8), (True, 0.4), (False, 0.4)]
        for (at, _values), was, want in zip(steps, states[:-1], states[1:], strict=True):
            for device in LAMPS:
                before, after = state(sim, device, at - 0.5), state(sim, device, at + SWITCH_WITHIN)
                report.append((hms(at), device, before, after))
                assert (before, after) == (was, want), (device, hms(at), before, after, agent.log()[-2000:])
            # when every lamp showed the new state, in tenths of a second: never before the step
            moment = next(t / 10 for t in range(int(at * 10) - 5, int((at + SWITCH_WITHIN) * 10) + 1)
                          if all(state(sim, d, t / 10) == want for d in LAMPS))
            print("\nstep %s: all %d lamps %s %.1f s after the configured second"
                  % (hms(at), len(LAMPS), want, moment - at))
            assert moment >= at, "switched before the step"
        print("simulator truth around each step: %s" % report)
        # the broker returns: the start-up write and the three switchings arrive on …/event, in order
        broker.start()
        sub = Subscriber(broker, client_id="hil-lighting-platform", persistent=True)
        assert sub.wait_for(lambda: len(sub.decoded("event")) >= 4, 30), agent.log()[-3000:]  # type: ignore[union-attr]
        events = sub.decoded("event")
        assert [(e["reason"], e["step"], e["due"]) for e in events] == [
            ("start", 3, base + 12 - 86400), ("change", 1, base), ("change", 2, base + 6),
            ("change", 3, base + 12)]
        assert all(r["ok"] for e in events for r in e["devices"].values())
        assert sorted(events[2]["devices"]) == LAMPS and events[2]["set"] == {"on": True, "dim": 0.4}
        assert events[1]["set"] == {"on": True, "dim": 0.8} and events[3]["set"] == {"on": False, "dim": 0.4}
        for payload in sub.on("event"):  # the spec the board's events follow too (pycddl)
            cddl.validate("event", payload)
        rc = agent.stop(timeout=20)
        assert rc == 0, agent.log()[-3000:]
    finally:
        if agent is not None:
            agent.stop(timeout=20)
        if sub is not None:
            sub.close()
        broker.close()


# ----------------------------------------------------------------------------- commands via the broker
class Street:
    """Simulator + Mosquitto + agent with a key, for the group and schedule commands."""

    def __init__(self, sim: SimSite, broker: Mosquitto, agent: Process, config: str, key_file: str) -> None:
        self.sim, self.broker, self.agent, self.config, self.key_file = sim, broker, agent, config, key_file

    def send(self, *args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "agent.cli", "send", "--broker", self.broker.url, "--site", "hillight",
                "--gateway", "gw1", "--key-file", self.key_file, "--timeout", "15", *args]
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def street(sim_site: Callable[..., SimSite], tmp_path: Any) -> Iterator[Street]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed here (apt-get install mosquitto); CI installs it")
    sim = sim_site(write_scenario(str(tmp_path / "scenario")))
    key_file = str(tmp_path / "gw1.key")
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (KEY + "\n").encode())
    os.close(fd)
    broker = Mosquitto().start()
    agent: Process | None = None
    try:
        base = math.ceil(time.time())
        steps = [(base - 3600, "on = true, dim = 1.0")]  # on all day, from an hour ago
        config = sim_agent_config(sim.ports_file, str(tmp_path / "agent.toml"), broker.url,
                                  str(tmp_path / "outbox.sqlite"), interval=0.5, timeout_ms=500,
                                  settings=FAST)
        with open(config) as f:
            text = place(f.read()) + lighting_tail(steps, key_file)
        with open(config, "w") as f:
            f.write(text)
        agent = start_agent(config, str(tmp_path / "agent.log"))
        assert wait_until(lambda: not agent.alive or "event=schedule_applied" in agent.log(), 30), agent.log()
        assert agent.alive, agent.log()[-3000:]
        assert wait_until(lambda: "mqtt: connected" in agent.log(), 30), agent.log()[-3000:]
        yield Street(sim, broker, agent, config, key_file)
        assert agent.stop(timeout=20) == 0, agent.log()[-3000:]
    finally:
        if agent is not None:
            agent.stop(timeout=20)
        broker.close()


def test_fieldlink_send_to_a_group_dims_every_lamp(street: Street) -> None:
    done = street.send("--device", "street", "--point", "dim", "--value", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": ok, 3 devices"), done.stdout
    assert lines[1:] == ["  %s: ok, value 0.3" % d for d in LAMPS], done.stdout
    for device in LAMPS:
        assert street.sim.client.truth(device, "dim") == pytest.approx(0.3)
    before = {d: c["writes"] for d, c in street.sim.client.counters()["devices"].items()}
    done = street.send("--device", "street", "--point", "dim", "--value", "0.7", "--no-readback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1:] == ["  %s: ok, value null (broadcast)" % d for d in LAMPS], \
        done.stdout
    assert wait_until(lambda: all(street.sim.client.truth(d, "dim") == pytest.approx(0.7) for d in LAMPS), 5)
    after = {d: c["writes"] for d, c in street.sim.client.counters()["devices"].items()}
    assert {d: after[d] - before[d] for d in LAMPS} == dict.fromkeys(LAMPS, 1)
    assert "event=broadcast point=dim" in street.agent.log()
    refused = street.send("--device", "street", "--point", "dim", "--value", "3")
    assert refused.returncode == 1 and "3 is above the maximum 1 of point dim" in refused.stdout


def test_a_signed_schedule_command_replaces_the_schedule_and_restore_brings_it_back(street: Street,
                                                                                  tmp_path: Any) -> None:
    at = math.ceil(time.time()) + 5
    path = str(tmp_path / "evening.toml")
    with open(path, "w") as f:
        f.write('name = "street"\n\n[[steps]]\nat = "%s"\nset = {on = false}\n\n[[steps]]\nat = "%s"\n'
                'set = {on = true, dim = 0.5}\n' % (hms(at), hms(at - 7200)))
    done = street.send("--device", "street", "--schedule", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"schedule": "street"' in done.stdout and '"devices": 3' in done.stdout, done.stdout
    # in force now: the replacement's step 2 (two hours ago): dimmed to 0.5; at `at`: off
    assert wait_until(lambda: all(street.sim.client.truth(d, "dim") == pytest.approx(0.5) for d in LAMPS), 5)
    assert wait_until(lambda: time.time() > at + SWITCH_WITHIN, 15)
    for device in LAMPS:
        assert state(street.sim, device, at - 0.5)[0] is True
        assert state(street.sim, device, at + SWITCH_WITHIN)[0] is False
    store = os.path.join(os.path.dirname(street.config), "schedules.json")
    assert oct(os.stat(store).st_mode & 0o777) == "0o600"
    unsigned = subprocess.run([sys.executable, "-m", "agent.cli", "send", "--broker", street.broker.url,
                               "--site", "hillight", "--gateway", "gw1", "--device", "street", "--restore",
                               "street"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert unsigned.returncode == 1 and "refused unsigned" in unsigned.stdout
    done = street.send("--device", "street", "--restore", "street")
    assert done.returncode == 0, done.stdout + done.stderr
    assert wait_until(lambda: all(street.sim.client.truth(d, "on") for d in LAMPS), 5)  # the config's: on
