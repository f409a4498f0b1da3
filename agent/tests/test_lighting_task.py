"""The lighting task on real bytes: lamps are Modbus servers on os.openpty() ptys (agent/tests/fakes.py),
the gateway polls and writes them through its bus owners, and the task's clock is injected so that a
whole night passes in a second. What is checked is what the lamps' registers were written, when (by
the injected clock), and what the task reported (events, alarms, health).

Covered: a schedule across midnight (DST-free Shanghai), the night clocks go forward and back (Berlin,
against zoneinfo), polar day and night (Longyearbyen), start-up inside a step, a clock set back and
forward, a lamp that comes back after an outage or lost its state, a write that fails (schedule alarm,
retry, cleared), a hand override, the burning-by-day alarm, a schedule replaced by command and kept
across a restart, and a night with the broker unreachable (events committed to the outbox).
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading
import time
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest

from agent.config import load_config
from agent.gateway import Gateway
from agent.tests.fakes import FakeModbus
from hil_tests import sample_configs
from hil_tests.buses import PtyBus
from hil_tests.sample_configs import steps_text
from protocols import modbus, solar

ON, DIM, POWER = 0, 1, 2  # holding registers on/dim, input register power (0.1 W)


def lamp_server(on: int = 0, dim: int = 100, power: int = 0) -> FakeModbus:
    """A generic-lamp as the profile reads it: holding 0-1, input 0-8."""
    inputs = {0: 2300, 1: 0, 2: power, 3: 0, 4: 0, 5: 0, 6: 0, 7: 250, 8: 0}
    return FakeModbus(registers={ON: on, DIM: dim}, inputs=inputs)


class StubbornLamp(FakeModbus):
    """A lamp that refuses writes (exception 4, server device failure) while `refuse` is set."""

    refuse = True

    def handle(self, pdu: bytes) -> bytes | None:
        if self.refuse and pdu[:1] in (b"\x06", b"\x10"):
            return modbus.exception_response(pdu[0], 4)
        return FakeModbus.handle(self, pdu)


class Clock:
    """The lighting task's wall clock, moved by the test."""

    def __init__(self, start: float) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now


class Uplink:
    """Stands in for agent.uplink.Uplink: records readings, events and alarms."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict] = []
        self.alarms: list[tuple] = []
        self.states: list[tuple] = []
        self.getters: dict[str, Any] = {}
        self.commands: Any = None

    def start(self) -> None:
        pass

    def stop(self, flush: bool = True, drain: float = 0.0, timeout: float = 0.0) -> None:
        pass

    def submit(self, readings: list[Any] | tuple[Any, ...]) -> None:
        pass

    def send_ack(self, payload: bytes, ran: bool = False) -> None:
        pass

    def device_state(self, device: str, online: bool, reason: str = "") -> None:
        with self.lock:
            self.states.append((device, online))

    def alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
              when: float | None = None) -> None:
        with self.lock:
            self.alarms.append((device, point, kind, value, raised))

    def event(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)

    def add_counters(self, name: str, getter: Any) -> None:
        self.getters[name] = getter


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def utc(zone: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """POSIX seconds of a local wall time in an IANA zone (fold 0, as the schedule resolves it)."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=zoneinfo.ZoneInfo(zone)).timestamp())


CONFIG = """\
format = 1

[gateway]
site = "street"
id = "gw1"
latitude = {latitude}
longitude = {longitude}
timezone = "{timezone}"

[broker]
host = "127.0.0.1"
port = {port}
reconnect_min = 0.2
reconnect_max = 1

[outbox]
path = "outbox.sqlite"

[commands]
signed = "none"

[lighting]
alarm_after = {alarm_after}

[[buses]]
name = "lamps"
port = "{path}"
baud = 19200
timeout_ms = 1000

[groups]
street = [{members}]
{devices}
[[schedules]]
name = "street"
group = "street"
{steps}"""


class Rig:
    """Lamps on a pty, a gateway polling them, its lighting task ticked by the test's clock."""

    def __init__(self, tmp: str, steps: str, start: float, lamps: int = 2, timezone: str = "Asia/Shanghai",
                 latitude: float = 36.6512, longitude: float = 117.1201, alarm_after: float = 300,
                 servers: list[FakeModbus] | None = None, real_uplink: bool = False, port: int = 1,
                 symlink: bool = False) -> None:
        self.tmp = tmp
        self.bus = PtyBus()
        bus_path = self.bus.path
        if symlink:  # as /dev/serial/by-id/…: the adapter can be unplugged and come back as another pty
            bus_path = os.path.join(tmp, "ttyUSB0")
            os.symlink(self.bus.path, bus_path)
        self.bus_path = bus_path
        self.lamps = servers or [lamp_server() for _ in range(lamps)]
        ids = ["lamp-%02d" % (i + 1) for i in range(len(self.lamps))]
        for i, server in enumerate(self.lamps):
            self.bus.devices[i + 1] = server
        devices = "".join('\n[[devices]]\nid = "%s"\nbus = "lamps"\nprofile = "generic-lamp"\naddress = %d\n'
                          'interval = 0.2\n' % (d, i + 1) for i, d in enumerate(ids))
        devices += '\n[[rules]]\ndevice = "lamp-01"\npoint = "lamp_failure"\nkind = "fault"\n'
        self.path = os.path.join(tmp, "site.toml")
        with open(self.path, "w") as f:
            f.write(CONFIG.format(latitude=latitude, longitude=longitude, timezone=timezone, port=port,
                                  alarm_after=alarm_after, path=bus_path,
                                  members=", ".join('"%s"' % d for d in ids), devices=devices, steps=steps))
        self.ids = ids
        self.clock = Clock(start)
        self.real_uplink = real_uplink
        self.gateway = self._gateway()

    def _gateway(self) -> Gateway:
        config = load_config(self.path)
        uplink = None if self.real_uplink else Uplink()
        gateway = Gateway(config, uplink=uplink, lighting_options={"clock": self.clock, "recheck": 1e9},
                          offline_after=2, backoff_max=0.5)
        for worker in gateway.scheduler.workers.values():
            worker.link.reopen_min = 0.05
            worker.link.reopen_max = 0.2
        return gateway

    def replug(self, servers: list[FakeModbus]) -> None:
        """The adapter comes back (another pty behind the same path), with these devices behind it. The
        old bus must be closed already (closing it twice could close a recycled file descriptor)."""
        self.bus = PtyBus()
        for i, server in enumerate(servers):
            self.bus.devices[i + 1] = server
        self.lamps = servers
        if os.path.lexists(self.bus_path):
            os.unlink(self.bus_path)
        os.symlink(self.bus.path, self.bus_path)

    @property
    def task(self) -> Any:
        return self.gateway.lighting

    @property
    def uplink(self) -> Any:
        return self.gateway.uplink

    def start(self, thread: bool = False) -> Rig:
        if not thread:
            self.task.start = lambda: None  # the test ticks the task itself
        self.gateway.start()
        return self

    def restart(self) -> None:
        self.gateway.stop()
        self.gateway = self._gateway()
        self.start()

    def tick(self, at: float | None = None) -> float:
        if at is not None:
            self.clock.now = float(at)
        return self.task.tick(self.clock.now)

    def events(self) -> list[dict]:
        with self.uplink.lock:
            return list(self.uplink.events)

    def settle(self, count: int) -> list[dict]:
        """Wait until `count` events were recorded (the writes of each application finished)."""
        assert wait_for(lambda: len(self.events()) >= count), (count, self.events())
        return self.events()

    def registers(self) -> list[tuple[int, int]]:
        return [(s.holding[ON], s.holding[DIM]) for s in self.lamps]

    def close(self) -> None:
        self.gateway.stop()
        self.bus.close()


@pytest.fixture
def rigs(tmp_path) -> Iterator[Any]:
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        rig = Rig(str(tmp_path), *args, **kwargs)
        made.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in made:
            rig.close()


NIGHT = steps_text(sample_configs.NIGHT)


def test_across_midnight_in_a_zone_without_dst_startup_inside_a_step(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    rig = rigs(NIGHT, start).start()
    wait = rig.tick()
    first = rig.settle(1)[0]
    assert first["reason"] == "start" and first["step"] == 1 and first["at"] == "22:00"
    assert first["due"] == utc("Asia/Shanghai", 2026, 3, 10, 22, 0)  # tonight's 22:00, already passed
    assert first["set"] == {"on": True, "dim": 1.0}
    assert all(r["ok"] and r["value"] == {"on": 1, "dim": 1.0} for r in first["devices"].values()), first
    assert rig.registers() == [(1, 100), (1, 100)]
    off_at = utc("Asia/Shanghai", 2026, 3, 11, 2, 0)
    assert wait == off_at - start  # it sleeps until the next change: 02:00 after midnight
    assert rig.tick(off_at - 1) == 1
    time.sleep(0.3)
    assert len(rig.events()) == 1 and rig.registers() == [(1, 100), (1, 100)]  # nothing before the step
    rig.tick(off_at)
    second = rig.settle(2)[1]
    assert (second["reason"], second["step"], second["due"]) == ("change", 2, off_at)
    assert second["set"] == {"on": False, "dim": 1.0}  # completed from the step before
    assert rig.registers() == [(0, 100), (0, 100)]
    assert rig.tick() == utc("Asia/Shanghai", 2026, 3, 11, 22, 0) - off_at


def test_a_clock_set_back_and_forward_changes_the_step_in_force(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 11, 3, 0)  # off since 02:00
    rig = rigs(NIGHT, start).start()
    rig.tick()
    assert rig.settle(1)[0]["set"]["on"] is False and rig.registers()[0][0] == 0
    rig.tick(utc("Asia/Shanghai", 2026, 3, 10, 23, 0))  # NTP sets the clock back into the night
    assert rig.settle(2)[1]["reason"] == "change" and rig.registers()[0][0] == 1
    rig.tick(utc("Asia/Shanghai", 2026, 3, 14, 12, 0))  # and days forward: off again
    later = rig.settle(3)[2]
    assert later["due"] == utc("Asia/Shanghai", 2026, 3, 14, 2, 0) and rig.registers()[0][0] == 0


@pytest.mark.parametrize("day, local_at", [
    ((2026, 3, 29), (2026, 3, 29, 3, 30)),   # 02:30 does not happen: read before the change, 03:30 CEST
    ((2026, 10, 25), (2026, 10, 25, 2, 30)),  # 02:30 happens twice: the first, still CEST
])
def test_dst_nights_switch_at_the_instant_zoneinfo_gives(rigs, day: tuple[int, int, int],
                                                          local_at: tuple[int, int, int, int, int]):
    steps = """
[[schedules.steps]]
at = "02:30"
set = {dim = 0.5}

[[schedules.steps]]
at = "12:00"
set = {dim = 1.0}
"""
    year, month, date = day
    midnight = utc("Europe/Berlin", year, month, date)
    rig = rigs(steps, midnight, lamps=1, timezone="Europe/Berlin", latitude=52.52, longitude=13.405).start()
    expected = utc("Europe/Berlin", *local_at)
    if day[1] == 3:  # zoneinfo with fold 0 reads the missing 02:30 with the offset before: 01:30 UTC
        assert expected == utc("UTC", year, month, date, 1, 30)
    wait = rig.tick()
    rig.settle(1)
    assert midnight + wait == expected
    rig.tick(expected)
    event = rig.settle(2)[1]
    assert event["due"] == expected and rig.registers() == [(0, 50)]


def test_polar_day_and_night_keep_the_last_sun_step(rigs):
    steps = """
[[schedules.steps]]
at = "sunset"
set = {on = true}

[[schedules.steps]]
at = "sunrise"
set = {on = false}
"""
    zone = "Arctic/Longyearbyen"
    june = utc(zone, 2026, 6, 21, 12, 0)
    rig = rigs(steps, june, lamps=1, timezone=zone, latitude=78.2232, longitude=15.6267).start()
    wait = rig.tick()
    event = rig.settle(1)[0]
    # midnight sun since April: the step in force is the last sunrise, months ago; the lamp stays off
    assert event["step"] == 2 and event["set"] == {"on": False} and rig.registers()[0][0] == 0
    assert dt.datetime.fromtimestamp(event["due"], zoneinfo.ZoneInfo(zone)).month == 4
    nxt = rig.task.stats()["schedules"]["street"]["next"]
    assert dt.datetime.fromtimestamp(nxt, zoneinfo.ZoneInfo(zone)).month == 8  # the first sunset
    assert wait == nxt - june
    december = utc(zone, 2026, 12, 21, 12, 0)
    rig.tick(december)
    event = rig.settle(2)[1]
    assert event["set"] == {"on": True} and rig.registers()[0][0] == 1  # polar night: on since October
    assert dt.datetime.fromtimestamp(event["due"], zoneinfo.ZoneInfo(zone)).month in (10, 11)


def test_startup_inside_a_sun_step_writes_it_with_the_sun_instant(rigs):
    steps = """
[[schedules.steps]]
at = "sunset-10m"
set = {on = true, dim = 0.8}

[[schedules.steps]]
at = "sunrise+15m"
set = {on = false}
"""
    start = utc("Asia/Shanghai", 2026, 6, 21, 21, 0)
    rig = rigs(steps, start).start()
    rig.tick()
    event = rig.settle(1)[0]
    sunset = solar.sun_event(2026, 6, 21, 36.6512, 117.1201, solar.SUNSET)
    assert isinstance(sunset, int) and event["due"] == sunset - 600
    assert rig.registers() == [(1, 80), (1, 80)]


def test_a_lamp_back_after_an_outage_or_a_short_reboot_is_put_right(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    rig = rigs(NIGHT, start).start(thread=True)
    rig.settle(1)
    assert rig.registers() == [(1, 100), (1, 100)]
    lamp = rig.lamps[1]
    lamp.dead = True
    assert wait_for(lambda: ("lamp-02", False) in rig.uplink.states)
    lamp.holding.update({ON: 0, DIM: 100})  # it rebooted dark (a power-on state of its own)
    lamp.dead = False

    def written(reason: str) -> list[dict]:
        return [e for e in rig.events() if e["reason"] == reason and "lamp-02" in e["devices"]]

    assert wait_for(lambda: written("online")), rig.events()
    assert list(written("online")[0]["devices"]) == ["lamp-02"]  # only the lamp that came back
    assert wait_for(lambda: rig.registers()[1] == (1, 100))
    lamp.holding[DIM] = 40  # a reboot too short to be noticed offline: the next poll shows it
    assert wait_for(lambda: written("reset")), rig.events()
    assert list(written("reset")[0]["devices"]) == ["lamp-02"]
    assert wait_for(lambda: rig.registers()[1] == (1, 100))
    assert rig.task.stats()["resets"] >= 1


def test_a_bus_whose_port_comes_back_gets_the_state_in_force_again(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    rig = rigs(NIGHT, start, symlink=True).start(thread=True)
    rig.settle(1)
    assert rig.registers() == [(1, 100), (1, 100)]
    rig.bus.close()  # the USB adapter is unplugged: the port is gone, every lamp offline
    os.unlink(rig.bus_path)
    assert wait_for(lambda: {("lamp-01", False), ("lamp-02", False)} <= set(rig.uplink.states))
    rig.replug([lamp_server(on=0, dim=100), lamp_server(on=0, dim=100)])  # the lamps lost power too: dark

    def online() -> set[str]:
        return {d for e in rig.events() if e["reason"] == "online" for d in e["devices"]}

    assert wait_for(lambda: online() == {"lamp-01", "lamp-02"}), rig.events()
    assert wait_for(lambda: rig.registers() == [(1, 100), (1, 100)])
    assert rig.gateway.scheduler.counters()["buses"]["lamps"]["port_down"] == 1


def test_a_failed_write_raises_a_schedule_alarm_is_retried_and_clears(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    stubborn = StubbornLamp(registers={ON: 0, DIM: 100},
                            inputs={0: 2300, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 250, 8: 0})
    rig = rigs(NIGHT, start, servers=[lamp_server(), stubborn]).start()
    rig.tick()
    event = rig.settle(1)[0]
    assert event["devices"]["lamp-01"]["ok"] is True
    failed = event["devices"]["lamp-02"]
    assert failed["ok"] is False and failed["error"].startswith("exception:"), failed
    assert ("lamp-02", None, "schedule", failed["error"], True) in rig.uplink.alarms
    assert rig.tick(start + 59) == 1  # tried again a minute later, not before
    time.sleep(0.2)
    assert len(rig.events()) == 1
    rig.tick(start + 60)
    retry = rig.settle(2)[1]
    assert retry["reason"] == "retry" and list(retry["devices"]) == ["lamp-02"]
    assert sum(1 for a in rig.uplink.alarms if a[2] == "schedule" and a[4]) == 1  # raised once
    stubborn.refuse = False
    rig.tick(start + 120)
    assert rig.settle(3)[2]["devices"]["lamp-02"]["ok"] is True
    assert ("lamp-02", None, "schedule", "applied", False) in rig.uplink.alarms
    assert stubborn.holding[ON] == 1


def test_a_hand_write_holds_until_the_next_step(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    rig = rigs(NIGHT, start).start(thread=True)
    rig.settle(1)
    acks: list[dict] = []
    refused = rig.gateway.dispatcher.submit({"device": "lamp-01", "point": "dim", "value": 0.3}, acks.append)
    assert refused is None and wait_for(lambda: acks) and acks[0]["ok"], acks
    time.sleep(1.0)  # five polls: the schedule does not take it back
    assert rig.registers()[0] == (1, 30) and len(rig.events()) == 1
    assert rig.task.stats()["schedules"]["street"]["overrides"] == ["lamp-01"]
    rig.clock.now = utc("Asia/Shanghai", 2026, 3, 11, 2, 0)
    rig.task._wake.set()
    rig.settle(2)
    assert rig.registers()[0] == (0, 100)  # the next step writes the whole state again


def test_burning_by_day_raises_then_clears_a_lighting_alarm(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 11, 12, 0)  # day: off since 02:00
    lit = lamp_server(on=0, power=700)  # the lamp burns although its on register says off
    rig = rigs(NIGHT, start, servers=[lit], alarm_after=0.5).start()
    rig.tick()
    rig.settle(1)

    def lighting() -> list[tuple]:
        with rig.uplink.lock:
            return [a for a in rig.uplink.alarms if a[2] == "lighting"]

    assert wait_for(lambda: lighting())
    assert lighting() == [("lamp-01", "on", "lighting", "burning", True)]
    lit.inputs[POWER] = 0  # someone mended the relay
    assert wait_for(lambda: len(lighting()) == 2)
    assert lighting()[1] == ("lamp-01", "on", "lighting", "as_scheduled", False)
    rig.tick(utc("Asia/Shanghai", 2026, 3, 11, 22, 0))  # night: on, but it stays dark
    rig.settle(2)
    assert wait_for(lambda: len(lighting()) == 3)
    assert lighting()[2] == ("lamp-01", "on", "lighting", "dark", True)


def test_health_reports_each_device_and_the_lamps_l1p3_facts(rigs):
    rig = rigs(NIGHT, utc("Asia/Shanghai", 2026, 3, 10, 23, 0)).start()
    assert wait_for(lambda: all(d["online"] for d in rig.gateway.device_health().values()))
    # one per-device shape: each bus's `devices` in …/health, a lamp's entry with its L1P3 facts
    buses = rig.gateway._bus_counters()
    health = {d: e for bus in buses.values() for d, e in bus["devices"].items()}
    assert health == rig.gateway.device_health()
    assert health["lamp-01"]["control_writable"] is True and health["lamp-01"]["fault_alarm_armed"] is True
    assert health["lamp-02"]["fault_alarm_armed"] is False  # no fault rule on its lamp_failure point
    assert abs(health["lamp-02"]["last_ok"] - time.time()) < 5
    assert health["lamp-02"]["online"] is True and health["lamp-02"]["since"] > 0


def test_a_schedule_replaced_by_command_is_kept_across_a_restart_and_restored(rigs):
    start = utc("Asia/Shanghai", 2026, 3, 10, 23, 0)
    rig = rigs(NIGHT, start).start()
    rig.tick()
    rig.settle(1)
    acks: list[dict] = []
    value = {"name": "street", "steps": [{"at": "20:00", "set": {"on": True, "dim": 0.6}},
                                         {"at": "01:00", "set": {"on": False}}]}
    assert rig.gateway.dispatcher.submit({"id": "c-1", "device": "street", "action": "schedule",
                                          "value": value}, acks.append) is None
    assert acks[0]["ok"] is True, acks
    assert acks[0]["value"] == {"schedule": "street", "devices": 2, "step": 1,
                                "next": utc("Asia/Shanghai", 2026, 3, 11, 1, 0)}
    store = rig.gateway.config.lighting.store
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    rig.tick()
    assert rig.settle(2)[1]["reason"] == "replaced" and rig.registers() == [(1, 60), (1, 60)]
    bad: list[dict] = []
    rig.gateway.dispatcher.submit({"id": "c-2", "device": "street", "action": "schedule",
                                   "value": {"name": "street",
                                             "steps": [{"at": "20:00", "set": {"dim": 2}}]}},
                                  bad.append)
    assert bad[0]["ok"] is False and "2 is above the maximum 1 of point dim" in bad[0]["error"]
    rig.restart()
    assert rig.task.stats()["schedules"]["street"]["source"] == "command"
    rig.tick(utc("Asia/Shanghai", 2026, 3, 11, 1, 30))
    assert rig.settle(1)[0]["due"] == utc("Asia/Shanghai", 2026, 3, 11, 1, 0)  # the replacement's 01:00
    restored: list[dict] = []
    rig.gateway.dispatcher.submit({"id": "c-3", "device": "street", "action": "schedule",
                                   "value": {"name": "street", "restore": True}}, restored.append)
    assert restored[0]["ok"] is True and rig.task.stats()["schedules"]["street"]["source"] == "config"
    rig.tick()
    assert rig.settle(2)[1]["due"] == utc("Asia/Shanghai", 2026, 3, 10, 22, 0)  # the config's step again


def test_a_night_with_the_broker_unreachable_switches_and_keeps_every_event(rigs):
    """The broker never answers (a closed port): the lamps still switch at each step, and each switching
    is committed to the outbox for `…/event`, in order, for when the broker is back."""
    import socket
    import sqlite3

    import cbor2

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    steps = """
[[schedules.steps]]
at = "sunset-10m"
set = {on = true, dim = 1.0}

[[schedules.steps]]
at = "23:30"
set = {dim = 0.5}

[[schedules.steps]]
at = "sunrise+15m"
set = {on = false}
"""
    zone = "Asia/Shanghai"
    noon = utc(zone, 2026, 6, 20, 12, 0)
    rig = rigs(steps, noon, real_uplink=True, port=port).start()
    sunset = solar.sun_event(2026, 6, 20, 36.6512, 117.1201, solar.SUNSET)
    sunrise = solar.sun_event(2026, 6, 21, 36.6512, 117.1201, solar.SUNRISE)
    assert isinstance(sunset, int) and isinstance(sunrise, int)
    night = [(noon, (0, 50)), (sunset - 600, (1, 100)), (utc(zone, 2026, 6, 20, 23, 30), (1, 50)),
             (sunrise + 900, (0, 50))]
    for at, registers in night:
        wait = rig.tick(at)
        assert wait_for(lambda r=registers: rig.registers() == [r, r]), (at, rig.registers())
        assert wait > 0
        # the writes of this step are done (the task's own thread would launch the next as they finish)
        assert wait_for(lambda: not any(r.pending for r in rig.task.running.values()))
    assert not rig.gateway.uplink.connected
    db = sqlite3.connect(rig.gateway.config.outbox.path)
    try:
        assert wait_for(lambda: db.execute("SELECT COUNT(*) FROM outbox WHERE topic LIKE '%/event'")
                        .fetchone()[0] == 4)
        rows = db.execute("SELECT payload FROM outbox WHERE topic = 'fieldlink/street/gw1/event' ORDER BY id")
        events = [cbor2.loads(r[0]) for r in rows]
    finally:
        db.close()
    morning = solar.sun_event(2026, 6, 20, 36.6512, 117.1201, solar.SUNRISE)  # the step in force at noon
    assert isinstance(morning, int)
    assert [(e["reason"], e["step"], e["due"]) for e in events] == [
        ("start", 3, morning + 900), ("change", 1, sunset - 600),
        ("change", 2, utc(zone, 2026, 6, 20, 23, 30)), ("change", 3, sunrise + 900)]
    assert all(r["ok"] for e in events for r in e["devices"].values())
