"""The outbox under faults at the wire: `fieldlink run` subprocesses polling the simulator, a real Mosquitto,
an independent subscriber (cbor2 + RFC 8428, hil_tests.test_agent_e2e.Wire), and real file-system faults:

1. a second agent on the same outbox is refused (exit 1, "outbox PATH is in use by pid N"); the outbox
   folder is 0700 and its files 0600;
2. SIGTERM with the open pack full of readings and a meter poll in flight: exit 0 within 5 s, 0 readings
   lost (the agent's count, the wire and the simulator's own count of answered requests agree);
3. a full disk (a small tmpfs, filled up): polling goes on, packs are published from memory, no reconnect
   storm, no resends, one log line when it starts and one when it ends, recovery by itself, 0 lost;
   with a small memory bound the readings dropped are counted exactly;
4. a read-only file system (the tmpfs remounted ro between two runs): the agent runs and publishes from
   memory, and stores again when the file system is made writable;
5. a damaged page in the outbox file: every readable pack is published, the lost ones are counted exactly;
6. the outbox file deleted under a running agent: noticed within one batch, nothing lost.

The tmpfs tests need root (mount); they skip without it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hil_tests.broker import Mosquitto
from hil_tests.link import Process, SimSite, sim_agent_config, start_agent, wait_until
from hil_tests.test_agent_e2e import FAST, Wire, outbox_records, stopped_readings

pytestmark = pytest.mark.slow

STOP_LIMIT = 5.0  # seconds from SIGTERM to exit (issue #10)


@pytest.fixture
def procs() -> Iterator[list[Process]]:
    """Processes a test starts; teardown stops the live ones by PID, newest first."""
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


class SmallDisk:
    """A tmpfs of `size` mounted on a folder of the test's own: fill it, free it, remount it ro/rw."""

    def __init__(self, path: str, size: str) -> None:
        self.path = path
        self.filler = os.path.join(path, "filler")
        os.makedirs(path, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here: %s" % done.stderr.strip())

    def fill(self) -> int:
        """Take every free byte with a filler file; returns how many bytes it took."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            block = b"\0" * 4096
            while True:
                try:
                    written += os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        os.unlink(self.filler)

    def remount(self, mode: str) -> None:
        done = subprocess.run(["mount", "-o", "remount,%s" % mode, self.path], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stderr

    def unmount(self) -> None:
        done = subprocess.run(["umount", self.path], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", self.path], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Any) -> Iterator[Callable[[str], SmallDisk]]:
    """`small_disk("4m")` mounts a tmpfs; each one is unmounted at teardown (after the test's processes)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mounted: list[SmallDisk] = []

    def make(size: str) -> SmallDisk:
        disk = SmallDisk(str(tmp_path / ("disk%d" % len(mounted))), size)
        mounted.append(disk)
        return disk

    yield make
    for disk in mounted:
        disk.unmount()


def agent_config(site: SimSite, broker: Mosquitto, workdir: str, path: str, **sections: dict) -> str:
    """An agent config for the simulated site (FAST settings, then `sections`) with its outbox at `path`."""
    settings = {k: dict(v) for k, v in FAST.items()}
    for section, values in sections.items():
        settings.setdefault(section, {}).update(values)
    return sim_agent_config(site.ports_file, os.path.join(workdir, "agent.toml"), broker.url, path,
                            settings=settings)


def start(procs: list[Process], config: str, log: str) -> Process:
    agent = start_agent(config, log)
    procs.append(agent)
    return agent


def wait_birth(agent: Process, wire: Wire, births: int = 1, timeout: float = 20.0) -> None:
    def born() -> bool:
        return sum(1 for m in wire.sub.decoded("status") if isinstance(m, dict) and m.get("online")) >= births

    ok = wait_until(lambda: not agent.alive or born(), timeout)
    assert agent.alive, "the agent exited (%s):\n%s" % (agent.returncode, agent.log()[-3000:])
    assert ok, "no birth within %.0f s:\n%s" % (timeout, agent.log()[-3000:])


def sigterm(agent: Process) -> tuple[int, float, int]:
    """SIGTERM; (exit status, seconds to exit, readings the agent says it made)."""
    began = time.monotonic()
    rc = agent.stop(timeout=30)
    took = time.monotonic() - began
    return rc, took, stopped_readings(agent.log())


def last_health(wire: Wire) -> dict:
    found = [h for h in wire.health() if isinstance(h, dict)]
    assert found, "no …/health message"
    return found[-1]


def meta(path: str) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta")}
    finally:
        db.close()


def lines(log: str, pattern: str) -> list[str]:
    return [s for s in log.splitlines() if re.search(pattern, s)]


# ------------------------------------------------------------------------------------- the lock
def test_second_agent_on_the_same_outbox_is_refused_and_files_are_private(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        tmp_path: Any) -> None:
    site = sim_site("demo")
    wire = Wire(mosquitto, "outbox-lock")
    wires.append(wire)
    state = str(tmp_path / "state")  # not there yet: the agent makes it
    outbox = os.path.join(state, "outbox.sqlite")
    old = os.umask(0o022)  # a usual umask: the agent must not rely on it
    try:
        config = agent_config(site, mosquitto, str(tmp_path), outbox)
        first = start(procs, config, str(tmp_path / "first.log"))
        wait_birth(first, wire)
        assert wait_until(lambda: len(wire.unique()) >= 10, 20)
    finally:
        os.umask(old)
    began = time.monotonic()
    second = start(procs, config, str(tmp_path / "second.log"))
    ended = wait_until(lambda: not second.alive, 30)
    took = time.monotonic() - began
    said = second.log()
    assert ended, "a second agent on the same outbox kept running:\n%s" % said[-2000:]
    rc = second.wait(5)
    print("\nsecond agent: exit %d after %.1f s: %s" % (rc, took, said.strip().splitlines()[-1]))
    assert rc == 1, said
    assert "outbox %s is in use by pid %d" % (outbox, first.pid) in said
    assert first.alive, "the first agent must keep running"
    births = [m for m in wire.sub.decoded("status") if isinstance(m, dict) and m.get("online")]
    assert len(births) == 1, "the refused agent must not have connected: %s" % births
    count = len(wire.unique())
    assert wait_until(lambda: len(wire.unique()) > count + 5, 10), "the first agent stopped publishing"

    modes = {name: stat.S_IMODE(os.stat(os.path.join(state, name)).st_mode) for name in os.listdir(state)}
    print("modes: folder %04o, %s" % (stat.S_IMODE(os.stat(state).st_mode),
                                      ", ".join("%s %04o" % kv for kv in sorted(modes.items()))))
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    assert {"outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm", "outbox.sqlite.lock"} <= set(modes)
    assert all(mode == 0o600 for mode in modes.values()), modes
    rc, _, made = sigterm(first)
    assert rc == 0
    assert made > 0


# ----------------------------------------------------------------------------------------- SIGTERM
#: The demo site's devices at addresses no other test uses: a process left over from another test that
#: still polls a recycled pseudo-terminal gets no answer from these devices, so the simulator's count of
#: answered requests is ours alone.
SIGTERM_SITE = """\
[site]
name = "sigterm"
seed = 7310
speed = 1.0
utc_offset = 8

[[bus]]
name = "street"
line = "9600 8N1"

[[bus.device]]
id = "lamp-{n:02}"
count = 4
profile = "generic-lamp"
address = 171
params = { dim = 0.8 }

[[bus.device]]
id = "feeder-meter"
profile = "dtsu666"
address = 181

[[bus.device]]
id = "mains-pressure"
profile = "pressure-sensor"
address = 191

[[bus]]
name = "meters"
line = "2400 8E1"
reply_delay = 0.03

[[bus.device]]
id = "flat-777-power"
profile = "dlt645-3p"
address = "990000000777"

[[bus.device]]
id = "flat-777-water"
profile = "cjt188-water"
address = "99000000000777"
"""


def agent_errors(log: str) -> int:
    """Failed transactions the agent counted, from its `event=stopped ... errors=kind:n,...` line."""
    found = re.findall(r"event=stopped polls=\d+ readings=\d+ errors=(\S+)", log)
    assert found, "the agent did not log event=stopped"
    return 0 if found[-1] == "none" else sum(int(kv.split(":")[1]) for kv in found[-1].split(","))


def test_sigterm_with_a_full_open_pack_and_a_poll_in_flight_loses_nothing(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        tmp_path: Any) -> None:
    """Real line timing (2400 baud meters: the meter bus is busy nearly all the time), packs closed only
    after 60 s or 10,000 readings (`batch.adaptive = false`: an idle uplink would publish each poll at
    once): every reading is in the open pack when the signal comes, in the middle of the three-phase
    meter's poll.

    The oracle is the simulator: every request it answered either became readings with that request's
    own time (on the wire or left in the outbox) or is one of the failed transactions the agent counted
    (a reply late or torn on a loaded machine). A reading made and then dropped on the way out is
    neither (on main: 3 answered requests of the poll in flight)."""
    scenario = str(tmp_path / "sigterm.toml")
    with open(scenario, "w") as f:
        f.write(SIGTERM_SITE)
    site = sim_site(scenario, instant=False)
    wire = Wire(mosquitto, "outbox-sigterm")
    wires.append(wire)
    outbox = str(tmp_path / "outbox.sqlite")
    config = agent_config(site, mosquitto, str(tmp_path), outbox,
                          batch={"max_age": 60.0, "max_records": 10000, "max_bytes": 1048576,
                                 "adaptive": False})
    agent = start(procs, config, str(tmp_path / "agent.log"))
    wait_birth(agent, wire)
    ids = [d["id"] for d in site.devices()]
    meters = [d["id"] for d in site.devices("meters")]

    def buffered() -> int:
        health = [h for h in wire.health() if isinstance(h, dict)]
        return int(health[-1]["readings"]["buffered"]) if health else 0

    def answered_by_all() -> bool:
        counts = site.client.counters()["devices"]
        return all(counts[d]["answered"] >= (2 if d in meters else 5) for d in ids)

    assert wait_until(lambda: buffered() >= 100 and answered_by_all(), 40), "the open pack did not fill"
    from agent.config import load_config
    from agent.planner import plan_config

    per_poll = {d.device.id: len(d.requests) for bus in plan_config(load_config(config)) for d in bus.devices}
    meter = "flat-777-power"
    assert per_poll[meter] >= 5

    def mid_poll() -> bool:
        return site.client.counters(meter)["devices"][meter]["answered"] % per_poll[meter] not in (0, 1)

    assert wait_until(mid_poll, 30, step=0.02), "never caught the meter in the middle of a poll"
    in_poll = site.client.counters(meter)["devices"][meter]["answered"] % per_poll[meter]
    rc, took, made = sigterm(agent)
    answered = site.client.counters()["devices"]
    assert rc == 0, agent.log()[-3000:]
    left = outbox_records(outbox)
    assert wait_until(lambda: len(set(wire.unique()) | left) >= made, 15)
    got = set(wire.unique()) | left
    per_device = {d: len({t for name, t in got if name.startswith("gw1:%s/" % d)}) for d in ids}
    errors = agent_errors(agent.log())
    total_answered = sum(answered[d]["answered"] for d in ids)
    print("\nSIGTERM with %d readings in the open pack and %s in its poll (%d of %d requests answered): "
          "exit %d after %.2f s; made %d, on the wire %d unique, left in the outbox %d, lost %d; requests "
          "answered by the simulator %d = %d with readings + %d failed transactions; per device %s"
          % (buffered(), meter, in_poll, per_poll[meter], rc, took, made, len(set(wire.unique())), len(left),
             made - len(got), total_answered, sum(per_device.values()), errors,
             {d: (per_device[d], answered[d]["answered"]) for d in ids}))
    assert len(got) == made, "lost %d readings" % (made - len(got))
    assert total_answered == sum(per_device.values()) + errors, \
        "requests answered by the simulator that became neither readings nor counted errors"
    assert took < STOP_LIMIT, "the agent took %.2f s to stop" % took
    log = agent.log()
    assert "mqtt: disconnected (offline status published)" in log
    offline = [m for m in wire.sub.decoded("status") if isinstance(m, dict) and m.get("online") is False]
    assert offline, "no offline status before the disconnect"


# ------------------------------------------------------------------------------------- full disk
def outbox_run(site: SimSite, broker: Mosquitto, procs: list[Process], wires: list[Wire], tmp_path: Any,
               path: str, name: str, **sections: dict) -> tuple[Process, Wire]:
    wire = Wire(broker, "outbox-%s" % name)
    wires.append(wire)
    config = agent_config(site, broker, str(tmp_path), path, **sections)
    agent = start(procs, config, str(tmp_path / ("%s.log" % name)))
    wait_birth(agent, wire)
    assert wait_until(lambda: len(wire.unique()) >= 10, 20), "nothing published:\n%s" % agent.log()[-2000:]
    return agent, wire


def test_full_disk_keeps_polling_publishes_from_memory_and_recovers(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        small_disk: Callable[[str], SmallDisk], tmp_path: Any) -> None:
    disk = small_disk("8m")
    outbox = os.path.join(disk.path, "fieldlink", "outbox.sqlite")
    site = sim_site("demo")
    agent, wire = outbox_run(site, mosquitto, procs, wires, tmp_path, outbox, "full")
    # 1. the broker goes away (a backlog builds up in the file), then the disk fills up: packs are held in
    # memory, polling goes on
    mosquitto.stop()
    assert wait_until(lambda: len(outbox_records(outbox)) >= 30, 20)
    filled = disk.fill()
    assert wait_until(lambda: bool(lines(agent.log(), "outbox .*: the disk is full \\(")), 20), \
        agent.log()[-2000:]
    time.sleep(3.0)
    # 2. the broker comes back, the disk is still full: everything is published from memory
    mosquitto.start()
    back = time.time()
    assert wait_until(lambda: any(t > back + 1.0 for _, t in wire.unique()), 20)
    assert wait_until(lambda: any(h.get("time", 0) >= back + 2 for h in wire.health()), 10)
    during = last_health(wire)
    # what a technician sees from a desk (the state file beside the outbox cannot be written either)
    remote = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--broker", mosquitto.url, "--json",
                             "--timeout", "30"], capture_output=True, text=True, timeout=60)
    local = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--config",
                            os.path.join(str(tmp_path), "agent.toml"), "--json"],
                           capture_output=True, text=True, timeout=60)
    time.sleep(4.0)  # a while with PUBACKs arriving while no delete can be written
    # 3. space again: the agent stores what it holds by itself
    disk.free()
    freed = time.time()
    assert wait_until(lambda: bool(lines(agent.log(), "writable again")), 30), agent.log()[-2000:]
    assert wait_until(lambda: any(h.get("time", 0) >= freed + 1 and h["outbox"]["state"] == "ok"
                                  for h in wire.health()), 20)
    after = last_health(wire)
    rc, took, made = sigterm(agent)
    left = outbox_records(outbox)
    assert wait_until(lambda: len(set(wire.unique()) | left) >= made, 15)
    got = set(wire.unique()) | left
    log = agent.log()
    full_lines = lines(log, "outbox .*: the disk is full \\(")
    recovered = lines(log, "writable again")
    records = wire.records()
    duplicates = len(records) - len({(r.name, r.time) for r in records})
    mqtt = after["mqtt"]
    print("\nfull disk (%d bytes of filler): during %s; after %s; made %d, unique on the wire %d, left %d, "
          "lost %d; duplicates on the wire %d; connects %d, packs resent %d, puback timeouts %d; log: %d "
          "'disk is full' line(s), %d 'writable again'"
          % (filled, {k: during["outbox"][k] for k in ("state", "held_packs", "unsaved_deletes")},
             {k: after["outbox"][k] for k in ("state", "held_packs", "packs")}, made, len(set(wire.unique())),
             len(left), made - len(got), duplicates, mqtt["connects"], mqtt["packs_resent"],
             mqtt["puback_timeouts"], len(full_lines), len(recovered)))
    assert rc == 0 and took < STOP_LIMIT
    assert during["outbox"]["state"] == "disk_full" and "full" in during["outbox"]["error"]
    report = json.loads(remote.stdout or "{}")
    assert remote.returncode == 1 and any(p.startswith("outbox disk_full: the disk is full (")
                                          for p in report.get("problems", [])), (remote.stdout, remote.stderr)
    report = json.loads(local.stdout or "{}")  # on the gateway: the disk itself is looked at
    assert local.returncode == 1 and any(p.startswith("the disk of %s is full (" % os.path.dirname(outbox))
                                         for p in report.get("problems", [])), (local.stdout, local.stderr)
    assert during["connected"] is True and during["readings"]["dropped"] == 0
    assert during["outbox"]["unsaved_deletes"] > 0, "the backlog's PUBACKs wait for the disk"
    assert len(got) == made, "lost %d readings" % (made - len(got))
    assert after["readings"]["dropped"] == 0 and after["outbox"]["memory_dropped_records"] == 0
    assert len(full_lines) == 1 and len(recovered) == 1, "one line per change of state:\n%s" % (
        "\n".join(full_lines + recovered))
    assert mqtt["connects"] == 2, "a reconnect storm: %d connects" % mqtt["connects"]
    assert mqtt["puback_timeouts"] == 0
    window_records = 20 * 200  # inflight packs x batch records: the most a reconnect may resend
    assert duplicates <= window_records


def test_memory_hold_bound_counts_every_reading_it_drops(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        small_disk: Callable[[str], SmallDisk], tmp_path: Any) -> None:
    disk = small_disk("8m")
    outbox = os.path.join(disk.path, "outbox.sqlite")
    site = sim_site("demo")
    agent, wire = outbox_run(site, mosquitto, procs, wires, tmp_path, outbox, "bound",
                             outbox={"memory_bytes": 4096})
    mosquitto.stop()
    disk.fill()
    assert wait_until(lambda: bool(lines(agent.log(), "memory hold .* is full")), 30), agent.log()[-2000:]
    time.sleep(2.0)
    disk.free()
    assert wait_until(lambda: bool(lines(agent.log(), "writable again")), 30), agent.log()[-2000:]
    mosquitto.start()
    rc, _, made = sigterm(agent)
    assert rc == 0
    left = outbox_records(outbox)
    counters = meta(outbox)
    counted = counters["memory_dropped_records"]
    assert wait_until(lambda: len(set(wire.unique()) | left) + counted >= made, 20)
    got = set(wire.unique()) | left
    print("\nmemory hold of 4096 bytes, broker down and disk full: made %d, arrived or stored %d, dropped "
          "and counted %d (%d packs); unaccounted %d"
          % (made, len(got), counted, counters["memory_dropped_packs"], made - len(got) - counted))
    assert counted > 0
    assert len(got) + counted == made, "every reading is delivered or counted as dropped"
    assert len(lines(agent.log(), "memory hold .* is full")) == 1


# ------------------------------------------------------------------------------- read-only disk
def test_read_only_file_system_publishes_from_memory_and_stores_when_writable(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        small_disk: Callable[[str], SmallDisk], tmp_path: Any) -> None:
    disk = small_disk("8m")
    outbox = os.path.join(disk.path, "outbox.sqlite")
    site = sim_site("demo")
    agent, wire = outbox_run(site, mosquitto, procs, wires, tmp_path, outbox, "ro1")
    rc, _, made_first = sigterm(agent)
    assert rc == 0
    disk.remount("ro")  # a file system that went read-only (the kernel does this after errors)
    try:
        config = os.path.join(str(tmp_path), "agent.toml")
        agent = start(procs, config, str(tmp_path / "ro2.log"))
        wait_birth(agent, wire, births=2)
        began = time.time()
        assert wait_until(lambda: any(t > began + 1.0 for _, t in wire.unique()), 20), agent.log()[-2000:]
        assert wait_until(lambda: any(h.get("time", 0) >= began + 1 for h in wire.health()), 10)
        during = last_health(wire)
        # on the gateway: the state file (beside the outbox) is the first run's; status says why
        local = subprocess.run([sys.executable, "-m", "agent.cli", "status", "--config", config],
                               capture_output=True, text=True, timeout=60)
    finally:
        disk.remount("rw")
    assert wait_until(lambda: bool(lines(agent.log(), "writable again")), 30), agent.log()[-2000:]
    rc, took, made = sigterm(agent)
    left = outbox_records(outbox)
    assert wait_until(lambda: len(set(wire.unique()) | left) >= made_first + made, 15)
    got = set(wire.unique()) | left
    print("\nread-only file system: health while read-only %s; made %d + %d, arrived or stored %d; exit %d "
          "after %.1f s" % ({k: during["outbox"][k] for k in ("state", "error", "held_packs")}, made_first,
                           made, len(got), rc, took))
    assert during["outbox"]["state"] in ("read_only", "cannot_open"), during["outbox"]
    assert local.returncode == 1 and "the file system of %s is read-only" % disk.path in local.stderr, (
        local.returncode, local.stdout, local.stderr)
    assert rc == 0 and len(got) == made_first + made


# ------------------------------------------------------------------------------ a damaged page
def test_damaged_page_every_readable_pack_is_published_and_the_loss_counted(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        tmp_path: Any) -> None:
    site = sim_site("demo")
    outbox = str(tmp_path / "outbox.sqlite")
    agent, wire = outbox_run(site, mosquitto, procs, wires, tmp_path, outbox, "damage1",
                             batch={"max_records": 5})
    mosquitto.stop()  # a backlog of small packs builds up
    assert wait_until(lambda: len(outbox_records(outbox)) >= 1500, 60)
    rc, _, made = sigterm(agent)
    assert rc == 0
    before = set(wire.unique())
    stored = outbox_records(outbox)
    db = sqlite3.connect(outbox)
    leaves = [(int(p), int(n)) for p, n in db.execute(
        "SELECT pageno, ncell FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY pageno")]
    db.close()
    page, cells = leaves[len(leaves) // 2]
    with open(outbox, "r+b") as f:  # one bad sector in the middle of the backlog
        f.seek((page - 1) * 4096)
        f.write(b"\x5a" * 4096)
    mosquitto.start()
    config = os.path.join(str(tmp_path), "agent.toml")
    agent = start(procs, config, str(tmp_path / "damage2.log"))
    assert wait_until(lambda: any(h.get("outbox", {}).get("corrupt_resets") for h in wire.health()), 20)
    assert wait_until(lambda: not outbox_records(outbox) - set(wire.unique()), 30)
    health = [h for h in wire.health() if h.get("outbox", {}).get("corrupt_resets")][-1]
    rc, _, made_again = sigterm(agent)
    assert rc == 0
    arrived = set(wire.unique()) - before
    lost = stored - set(wire.unique())
    counted = health["outbox"]["lost_records"]
    aside = [n for n in os.listdir(str(tmp_path)) if ".corrupt-" in n]
    print("\ndamaged page %d of %d leaves: %d readings were stored, %d arrived after the restart (plus %d "
          "new), %d lost; health: lost_packs %d, lost_records %d, readings.dropped %d; moved aside: %s"
          % (page, len(leaves), len(stored), len(arrived & stored), made_again, len(lost),
             health["outbox"]["lost_packs"], counted, health["readings"]["dropped"], aside))
    assert aside, "the damaged file is kept"
    assert lost, "the damaged page held packs"
    assert counted == len(lost), "the loss is counted exactly"
    assert health["readings"]["dropped_by"]["unreadable"] == len(lost)
    # the page held `cells` packs of at most 5 readings (batch.max_records): no more than that is lost
    assert len(lost) <= cells * 5, "only the damaged page's packs are lost (%d packs on it)" % cells
    assert made > 0


# ------------------------------------------------------------------------------ a deleted file
def test_deleted_outbox_is_noticed_within_one_batch(
        sim_site: Callable[..., SimSite], mosquitto: Mosquitto, procs: list[Process], wires: list[Wire],
        tmp_path: Any) -> None:
    site = sim_site("demo")
    outbox = str(tmp_path / "state" / "outbox.sqlite")
    agent, wire = outbox_run(site, mosquitto, procs, wires, tmp_path, outbox, "deleted")
    mosquitto.stop()  # packs wait in the file that is about to go
    time.sleep(1.5)
    for ext in ("", "-wal", "-shm"):
        os.remove(outbox + ext)
    deleted = time.monotonic()
    assert wait_until(lambda: bool(lines(agent.log(), "was deleted while in use")), 10)
    noticed = time.monotonic() - deleted
    assert os.path.exists(outbox) and stat.S_IMODE(os.stat(outbox).st_mode) == 0o600
    mosquitto.start()
    rc, _, made = sigterm(agent)
    left = outbox_records(outbox)
    assert wait_until(lambda: len(set(wire.unique()) | left) >= made, 15)
    got = set(wire.unique()) | left
    print("\ndeleted outbox noticed after %.2f s (batch max_age %s s); made %d, arrived or stored %d"
          % (noticed, FAST["batch"]["max_age"], made, len(got)))
    assert rc == 0 and len(got) == made
    assert noticed < 5.0
