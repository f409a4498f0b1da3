"""The agent at the wire: `fieldlink run` as a subprocess, polling the link (the simulator's ptys by
default, see hil_tests/link.py), publishing to a real Mosquitto, observed by a subscriber that decodes
with cbor2 and the RFC 8428 resolution rules alone (never our codecs).

1. values arrive with the right names and units and equal the simulator's ground truth;
2. the broker stopped for a while and restarted: nothing lost;
3. the agent killed with SIGKILL mid-run and restarted: nothing that was committed is lost;
4. a dead device does not slow its bus neighbours;
5. bad configs give the right message (file, line, key; non-zero exit; nothing published).

Each test prints what it measured (run with `-rA` or `-s` to see it); docs/hil.md summarises them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from agent.os_thread import kernel_name, kernel_names
from hil_tests.broker import Mosquitto, Subscriber
from hil_tests.link import (
    PYTHON,
    ROOT,
    Process,
    SimSite,
    Target,
    rig_agent_config,
    sim_agent_config,
    start_agent,
    wait_until,
)

pytestmark = pytest.mark.slow

GATEWAY = "gw1"
BASE = GATEWAY + ":"
#: health every second, packs closed after 0.5 s, quick reconnects: keeps every test well under a minute
FAST: dict[str, dict[str, object]] = {"gateway": {"health_interval": 1}, "batch": {"max_age": 0.5},
        "broker": {"reconnect_min": 0.5, "reconnect_max": 1.0, "keepalive": 5}}
PROFILES = os.path.join(ROOT, "protocols", "profiles")


# ------------------------------------------------------------------------------------------ the wire
@dataclass(frozen=True)
class Record:
    """One resolved SenML record: full name, unit (record/base unit, else the birth's), value, time."""

    name: str
    unit: str | None
    value: Any
    time: float


def resolve(pack: Any, now: float) -> list[Record]:
    """RFC 8428 §4.6 on a cbor2-decoded pack (integer labels, Table 4): base fields carry forward."""
    assert isinstance(pack, list), "a SenML pack is an array, got %r" % type(pack)
    out = []
    bn, bt, bu, bv, bs, bver = "", 0, None, 0, None, None
    for rec in pack:
        assert isinstance(rec, dict), rec
        assert not any(isinstance(k, str) and k.endswith("_") for k in rec), "must-understand label"
        version = rec.get(-1, 10)
        assert version <= 10 and (bver is None or bver == version), "one version <= 10 per pack"
        bver = version
        bn, bt, bu = rec.get(-2, bn), rec.get(-3, bt), rec.get(-4, bu)
        bv, bs = rec.get(-5, bv), rec.get(-6, bs)
        t = bt + rec.get(6, 0)
        if t < 2 ** 28:  # relative to now
            t += now
        kinds = [k for k in (2, 3, 4, 8) if k in rec]
        if 2 in rec:  # §6: a number converts to binary64; cbor2 gives a decimal fraction (tag 4) as Decimal
            value = bv + (float(rec[2]) if isinstance(rec[2], Decimal) else rec[2])
        elif kinds:
            value = rec[kinds[0]]
        else:
            assert 5 in rec or bs is not None, "a record without a value or a sum: %r" % rec
            value = (bs or 0) + rec.get(5, 0)
        assert len(kinds) <= 1, "more than one value field: %r" % rec
        out.append(Record(bn + rec.get(0, ""), rec.get(1, bu), value, t))
    return out


class Wire:
    """The independent consumer: a persistent-session subscriber (hil_tests.broker) + cbor2 + RFC 8428."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.sub = Subscriber(broker, client_id=client_id, persistent=True)

    def records(self) -> list[Record]:
        now = time.time()
        return [r for pack in self.sub.decoded("data") for r in resolve(pack, now)]

    def unique(self) -> dict[tuple[str, float], Record]:
        """By (full name, time): the dedup rule of docs/payload.md."""
        return {(r.name, r.time): r for r in self.records()}

    def birth(self) -> dict:
        """The latest inventory (retained on …/inventory): devices, points, units, base name."""
        inventories = [m for m in self.sub.decoded("inventory") if isinstance(m, dict)]
        assert inventories, "no inventory on …/inventory"
        return inventories[-1]

    def alarms(self) -> list[dict]:
        return self.sub.decoded("alarm")

    def health(self) -> list[dict]:
        return self.sub.decoded("health")

    def times(self, device: str, point: str | None = None) -> list[float]:
        """Distinct reading times of a device (one per answered request), or of one of its points (one
        per poll)."""
        if point is not None:
            name = "%s%s/%s" % (BASE, device, point)
            return sorted({r.time for r in self.records() if r.name == name})
        prefix = "%s%s/" % (BASE, device)
        return sorted({r.time for r in self.records() if r.name.startswith(prefix)})

    def close(self) -> None:
        self.sub.close()


def unit_of(birth: dict) -> dict[str, str]:
    """`<device>/<point>` -> unit, from the birth's inventory."""
    return {"%s/%s" % (d["id"], p["name"]): p["unit"] for d in birth["devices"] for p in d["points"]}


def stopped_readings(log: str) -> int:
    """Readings the agent made, from its last `event=stopped ... readings=N` log line."""
    found = re.findall(r"event=stopped polls=\d+ readings=(\d+)", log)
    assert found, "the agent did not log event=stopped:\n%s" % log[-2000:]
    return int(found[-1])


def outbox_records(path: str) -> set[tuple[str, float]]:
    """(full name, time) of every reading committed in the outbox file, decoded with cbor2."""
    import cbor2

    if not os.path.exists(path):
        return set()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT topic, payload, records FROM outbox ORDER BY id").fetchall()
    finally:
        db.close()
    out: set[tuple[str, float]] = set()
    now = time.time()
    for topic, payload, records in rows:
        if not topic.endswith("/data"):
            continue  # alarms travel through the outbox too
        recs = resolve(cbor2.loads(payload), now)
        assert len(recs) == records, "outbox row says %d records, the pack holds %d" % (records, len(recs))
        out.update((r.name, r.time) for r in recs)
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or \
            not isinstance(b, (int, float)):
        return bool(a == b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def procs() -> Iterator[list[Process]]:
    """Every process a test starts goes here; teardown stops the live ones by PID, newest first."""
    started: list[Process] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def wires() -> Iterator[list[Wire]]:
    opened: list[Wire] = []
    yield opened
    for wire in opened:
        wire.close()


class Rig:
    """The devices under test: a simulated site (default) or a real rig behind --hil-link."""

    def __init__(self, link: Target, sim: SimSite | None, template: str | None) -> None:
        self.link = link
        self.sim = sim
        self.template = template

    def config(self, path: str, broker: Mosquitto, outbox: str, **kw: Any) -> str:
        settings = {k: dict(v) for k, v in FAST.items()}
        for section, values in kw.pop("settings", {}).items():
            settings.setdefault(section, {}).update(values)
        if self.sim is not None:
            return sim_agent_config(self.sim.ports_file, path, broker.url, outbox, settings=settings, **kw)
        assert self.template is not None
        return rig_agent_config(self.template, self.link, path, broker.url, outbox, settings)

    @staticmethod
    def devices(config: str) -> list[str]:
        import tomllib

        with open(config, "rb") as f:
            return [d["id"] for d in tomllib.load(f).get("devices", [])]


@pytest.fixture
def rig(hil_link: Target, hil_rig_config: str | None, request: pytest.FixtureRequest) -> Rig:
    """For tests that need no ground truth: the simulated `demo` site, or the real rig's config template."""
    if hil_link.is_sim:
        return Rig(hil_link, request.getfixturevalue("sim_site")("demo"), None)
    if not hil_rig_config:
        pytest.skip("a real link (%s) needs its agent config template: --hil-rig-config FILE "
                    "(or HIL_RIG_CONFIG); see docs/hil.md" % hil_link.spec)
    return Rig(hil_link, None, hil_rig_config)


def start(procs: list[Process], config: str, log: str) -> Process:
    agent = start_agent(config, log)
    procs.append(agent)
    return agent


def wait_connected(agent: Process, wire: Wire, timeout: float = 20.0) -> None:
    ok = wait_until(lambda: not agent.alive or bool(wire.sub.on("status")), timeout)
    assert agent.alive, "the agent exited (%s):\n%s" % (agent.returncode, agent.log()[-3000:])
    assert ok, "no status within %.0f s:\n%s" % (timeout, agent.log()[-3000:])


def stop_agent(agent: Process) -> int:
    rc = agent.stop(timeout=20)
    assert rc == 0, "the agent exited %s on SIGTERM:\n%s" % (rc, agent.log()[-3000:])
    return stopped_readings(agent.log())


# ------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("scenario", ["demo", "dlt698"])  # dlt698: DL/T 698.45 meters beside DL/T 645
def test_values_arrive_with_names_units_and_ground_truth(sim_site: Callable[..., SimSite],
                                                         mosquitto: Mosquitto, procs: list[Process],
                                                         wires: list[Wire], tmp_path: Any,
                                                         scenario: str) -> None:
    site = sim_site(scenario)
    wire = Wire(mosquitto, "e2e-truth")
    wires.append(wire)
    config = sim_agent_config(site.ports_file, str(tmp_path / "agent.toml"), mosquitto.url,
                              str(tmp_path / "outbox.sqlite"), settings=FAST)
    agent = start(procs, config, str(tmp_path / "agent.log"))
    wait_connected(agent, wire)
    # each bus owner and the uplink's threads by name in the kernel (`top -H`, `ps -L`), one per bus
    buses = site.ports["buses"]
    named = {"fieldlink-mqtt", "fieldlink-batch"} | {kernel_name("bus-" + b["name"]) for b in buses}
    assert wait_until(lambda: named <= set(kernel_names(agent.pid).values()), 10), \
        (named, kernel_names(agent.pid))
    assert len([t for t in kernel_names(agent.pid).values() if t.startswith("bus-")]) == len(buses)
    ids = [d["id"] for d in site.devices()]
    started = time.monotonic()
    # two polls of every device at least (a 2400-baud meter bus is polled every few seconds)
    def polled_twice() -> list[str]:
        return [i for i in ids if len(set(wire.times(i))) < 2]

    assert wait_until(lambda: not polled_twice() and time.monotonic() - started > 4, 60), \
        "devices without two polls: %s" % polled_twice()
    made = stop_agent(agent)
    assert wait_until(lambda: len(wire.unique()) >= made, 15), (len(wire.unique()), made)

    # names and units: the birth's inventory is the simulated site, its units are the profiles' SenML units
    birth = wire.birth()
    assert birth["base_name"] == BASE and birth["payload"] == "senml"
    assert sorted(d["id"] for d in birth["devices"]) == sorted(ids)
    for dev in birth["devices"]:
        with open(os.path.join(PROFILES, dev["model"] + ".json")) as f:
            profile = {p["name"]: p for p in json.load(f)["points"]}
        assert dev["model"] == next(d["profile"] for d in site.devices() if d["id"] == dev["id"])
        assert {p["name"]: p["unit"] for p in dev["points"]} == {n: p["unit"] for n, p in profile.items()}
    units = unit_of(birth)
    records = list(wire.unique().values())
    assert len(records) == made, "unique readings on the wire %d != made %d" % (len(records), made)
    for r in records:
        assert r.name.startswith(BASE), r
        local = r.name[len(BASE):]
        assert local in units, "%s is not in the birth" % r.name
        assert r.unit in (None, units[local]), r
    polled = {r.name[len(BASE):] for r in records}
    missing = sorted(set(units) - polled)
    assert not missing, "points declared in the birth that never arrived: %s" % missing

    # values: the simulator's truth at the reading's time, or at the step before (the device answered
    # a little before the reply was timestamped, and device values change in STEP = 1 s steps)
    client = site.client
    cache: dict[tuple[str, float], dict] = {}

    def truths(device: str, wall: float) -> dict:
        key = (device, wall)
        if key not in cache:
            cache[key] = client.truths(device, wall=wall)
        return cache[key]

    exact = previous = 0
    wrong = []
    for r in records:
        device, point = r.name[len(BASE):].split("/", 1)
        if same(r.value, truths(device, r.time)[point]):
            exact += 1
        elif same(r.value, truths(device, r.time - 1.0)[point]):
            previous += 1
        else:
            wrong.append((r.name, r.time, r.value, truths(device, r.time)[point]))
    values: dict[str, set] = {}
    for r in records:
        values.setdefault(r.name, set()).add(repr(r.value))
    moving = sum(1 for v in values.values() if len(v) > 1)
    print("\nground truth: %d readings of %d points on %d devices (%d points changed value during the run); "
          "%d equal truth at their time, %d at the step before, %d wrong"
          % (len(records), len(polled), len(ids), moving, exact, previous, len(wrong)))
    assert not wrong, wrong[:10]
    assert exact >= 0.9 * len(records), (exact, previous)
    assert moving >= 5, "too few values changed for the comparison to mean much"


def test_broker_outage_loses_nothing(rig: Rig, mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
                                     tmp_path: Any) -> None:
    outage = 4.0
    wire = Wire(mosquitto, "e2e-outage")
    wires.append(wire)
    outbox = str(tmp_path / "outbox.sqlite")
    config = rig.config(str(tmp_path / "agent.toml"), mosquitto, outbox)
    agent = start(procs, config, str(tmp_path / "agent.log"))
    wait_connected(agent, wire)
    assert wait_until(lambda: len(wire.unique()) >= 10, 20), "too few readings before the outage"
    down = time.time()
    mosquitto.stop()
    time.sleep(outage)
    mosquitto.start()
    up = time.time()
    # running normally again: readings made after the restart arrive
    assert wait_until(lambda: any(t > up + 1.0 for _, t in wire.unique()), 20), \
        "nothing arrived after the broker restart:\n%s" % agent.log()[-2000:]
    made = stop_agent(agent)
    left = outbox_records(outbox)
    arrived = wait_until(lambda: len(wire.unique()) + len(left) >= made, 20)
    unique = wire.unique()
    during = sum(1 for _, t in unique if down <= t <= up)
    connects = agent.log().count("mqtt: connected to")
    print("\nbroker outage %.1f s: made %d, arrived %d unique (%d messages with duplicates), %d made during "
          "the outage, %d left in the outbox, lost %d; agent connected %d times"
          % (up - down, made, len(unique), len(wire.records()), during, len(left),
             made - len(unique) - len(left), connects))
    assert arrived and len(unique) + len(left) == made
    assert not left, "the agent stopped with %d readings still in its outbox" % len(left)
    assert during >= 1, "the agent made no readings while the broker was down"
    assert connects >= 2


def test_sigkill_loses_nothing_committed(rig: Rig, mosquitto: Mosquitto, procs: list[Process],
                                         wires: list[Wire], tmp_path: Any) -> None:
    wire = Wire(mosquitto, "e2e-sigkill")
    wires.append(wire)
    outbox = str(tmp_path / "outbox.sqlite")
    config = rig.config(str(tmp_path / "agent.toml"), mosquitto, outbox)
    log = str(tmp_path / "agent.log")

    # 1. killed mid-run with the broker up but not answering (SIGSTOP): packs are committed and in flight
    agent = start(procs, config, log)
    wait_connected(agent, wire)
    assert wait_until(lambda: len(wire.unique()) >= 10, 20)
    assert mosquitto.proc is not None
    broker_pid = mosquitto.proc.pid
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)
        assert agent.kill() == -9
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    committed_up = outbox_records(outbox)
    before_up = set(wire.unique())

    # 2. restarted on the same outbox; killed again with the broker down and a backlog committed
    agent = start(procs, config, log)
    assert wait_until(lambda: committed_up <= set(wire.unique()) and len(wire.unique()) > len(before_up) + 10,
                      20), "after the first restart: %d committed readings missing" % len(committed_up -
                                                                                            set(wire.unique()))
    mosquitto.stop()
    time.sleep(3.0)
    assert agent.kill() == -9
    committed_down = outbox_records(outbox)
    assert committed_down, "no backlog was committed while the broker was down"

    # 3. broker back, agent restarted: everything committed at either kill arrives
    mosquitto.start()
    agent = start(procs, config, log)
    committed = committed_up | committed_down
    ok = wait_until(lambda: committed <= set(wire.unique()), 30)
    made_last = stop_agent(agent)
    unique = set(wire.unique())
    lost = committed - unique
    print("\nSIGKILL: %d readings committed and unacknowledged at the kill with the broker frozen, %d at the "
          "kill with the broker down (backlog); after restarts %d unique readings arrived (%d messages), "
          "committed lost %d; the last run made %d, outbox left %d"
          % (len(committed_up), len(committed_down), len(unique), len(wire.records()), len(lost), made_last,
             len(outbox_records(outbox))))
    assert ok and not lost, sorted(lost)[:10]
    assert committed_up, "nothing was in flight at the first kill"


def test_dead_device_does_not_slow_its_neighbours(sim_site: Callable[..., SimSite], mosquitto: Mosquitto,
                                                  procs: list[Process], wires: list[Wire],
                                                  tmp_path: Any) -> None:
    site = sim_site("demo")
    dead = "lamp-02"
    bus = site.bus_of(dead)
    neighbours = [d["id"] for d in site.devices(bus) if d["id"] != dead]
    wire = Wire(mosquitto, "e2e-dead")
    wires.append(wire)
    interval, timeout_ms = 1.0, 250
    config = sim_agent_config(site.ports_file, str(tmp_path / "agent.toml"), mosquitto.url,
                              str(tmp_path / "outbox.sqlite"), interval=interval, timeout_ms=timeout_ms,
                              settings=FAST)
    agent = start(procs, config, str(tmp_path / "agent.log"))
    wait_connected(agent, wire)
    assert wait_until(lambda: all(wire.times(d) for d in [*neighbours, dead]), 20)
    t0 = time.time()
    time.sleep(4.0)
    site.client.fault(dead, "no_answer")
    t1 = time.time()
    # offline is reported after 3 failed polls, retried after max(interval, 10 timeouts), doubling
    raised = wait_until(lambda: any(a.get("device") == dead and a.get("state") == "raised"
                                    for a in wire.alarms()), 15)
    time.sleep(max(0.0, t1 + 8.0 - time.time()))
    t2 = time.time()
    site.client.clear(dead)
    stop_agent(agent)
    time.sleep(1.0)

    def rate(times: list[float], a: float, b: float) -> float:
        return len([t for t in times if a <= t < b]) / (b - a)

    def max_gap(times: list[float], a: float, b: float) -> float:
        inside = [t for t in times if a <= t < b]
        return max((y - x for x, y in itertools.pairwise(inside)), default=b - a)

    first = {d["id"]: d["points"][0]["name"] for d in wire.birth()["devices"]}  # one reading per poll
    lines = []
    for d in neighbours:
        times = wire.times(d, first[d])
        before, during = rate(times, t0, t1), rate(times, t1 + 0.5, t2)
        gap = max_gap(times, t1 + 0.5, t2)
        lines.append("%s %.2f -> %.2f polls/s (max gap %.2f s)" % (d, before, during, gap))
        assert during >= 0.8 * before, "%s slowed down while %s was dead: %s" % (d, dead, lines[-1])
        assert gap <= 2.5 * interval, lines[-1]
    dead_during = rate(wire.times(dead), t1 + 0.5, t2)
    assert len(lines) == len(neighbours) >= 2
    print("\ndead device %s (no_answer, timeout %d ms, interval %g s) for %.1f s; neighbours on bus %s: %s; "
          "%s answered %.2f/s while dead; comms alarm raised: %s"
          % (dead, timeout_ms, interval, t2 - t1, bus, "; ".join(lines), dead, dead_during, raised))
    assert dead_during == 0
    assert raised, "no comms alarm for %s: %s" % (dead, wire.alarms())


BASE_CONFIG = """\
format = 1

[gateway]
site = "bench"
id = "gw1"

[broker]
host = "127.0.0.1"
port = {port}

[outbox]
path = "{outbox}"

[[buses]]
name = "street"
port = "/dev/ttyHIL-nonexistent0"
baud = 9600
timeout_ms = 200

[[buses]]
name = "meters"
port = "/dev/ttyHIL-nonexistent1"
baud = 2400
parity = "E"

[[devices]]
id = "lamp-01"
bus = "street"
profile = "generic-lamp"
address = 1
interval = 5

[[devices]]
id = "flat-101-power"
bus = "meters"
profile = "dlt645-3p"
address = "000000000101"
interval = 60
"""

#: (what is broken, old text, new text, expected line, expected key, words the message must hold)
BAD_CONFIGS = [
    ("misspelt key", 'id = "gw1"\n', 'id = "gw1"\nhelth_interval = 5\n', 6, "gateway.helth_interval",
     ["unknown key", "health_interval"]),
    ("wrong type", "interval = 5\n", 'interval = "fast"\n', 31, "devices[0].interval",
     ["expected", '"fast"']),
    ("unknown profile", 'profile = "generic-lamp"', 'profile = "generic-lampp"', 29, "devices[0].profile",
     ["generic-lamp"]),
    ("unknown bus", 'bus = "meters"', 'bus = "meter"', 35, "devices[1].bus", ['"meter"', "meters"]),
    ("impossible poll plan", "interval = 60\n", "interval = 0.5\n", 38, "devices[1].interval", ["0.5"]),
    ("TOML syntax", "[[buses]]\nname = \"street\"", "[[buses]\nname = \"street\"", 14, "", ["TOML"]),
]


def test_bad_configs_give_file_line_key(mosquitto: Mosquitto, wires: list[Wire], tmp_path: Any) -> None:
    good = str(tmp_path / "good.toml")
    with open(good, "w") as f:
        f.write(BASE_CONFIG.format(port=mosquitto.port, outbox=tmp_path / "outbox.sqlite"))
    fieldlink = [PYTHON, "-m", "agent.cli"]
    ok = subprocess.run([*fieldlink, "check-config", good], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    wire = Wire(mosquitto, "e2e-badconfig")
    wires.append(wire)
    seen = []
    for what, old, new, line, key, words in BAD_CONFIGS:
        text = BASE_CONFIG.format(port=mosquitto.port, outbox=tmp_path / "outbox.sqlite")
        assert text.count(old) >= 1, what
        path = str(tmp_path / ("bad-%s.toml" % what.replace(" ", "-")))
        with open(path, "w") as f:
            f.write(text.replace(old, new, 1))
        prefix = "%s:%d: %s" % (path, line, key)
        for command in ("check-config", "run"):
            began = time.monotonic()
            done = subprocess.run([*fieldlink, command, path], cwd=ROOT, capture_output=True, text=True,
                                  timeout=60)
            took = time.monotonic() - began
            first = next((s for s in done.stderr.splitlines() if s.startswith(path + ":")), "")
            assert done.returncode != 0, "%s: `fieldlink %s` exited 0" % (what, command)
            assert first.startswith(prefix), "%s: `fieldlink %s` said %r, expected %r…" % (
                what, command, done.stderr, prefix)
            for word in words:
                assert word in first, "%s: %r lacks %r" % (what, first, word)
            seen.append("%s/%s rc=%d %.1fs" % (what, command, done.returncode, took))
        seen[-1] += ": " + first[len(path):]
    time.sleep(0.5)
    assert not wire.sub.messages, "a run on a bad config published %d messages" % len(wire.sub.messages)
    assert not os.path.exists(tmp_path / "outbox.sqlite"), "a bad config created the outbox"
    print("\nbad configs:\n  " + "\n  ".join(seen))
