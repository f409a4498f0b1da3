"""agent/system_clock.py: the kernel's NTP state in health (`clock.synced`) and on `fieldlink status`."""

from __future__ import annotations

import ctypes
import sys
import time

import pytest

from agent import system_clock
from agent.commands.status import from_health, render, verdict
from agent.tests.test_status import state


@pytest.mark.parametrize("answer, synced", [
    (0, True),  # TIME_OK
    (1, True),  # TIME_INS: a leap second is coming; synchronized
    (4, True),  # TIME_WAIT
    (system_clock.TIME_ERROR, False),  # STA_UNSYNC: no NTP daemon has set it
    (-1, None),  # the call failed
])
def test_adjtimex_answers_map_to_synced(monkeypatch, answer, synced) -> None:
    seen: list = []

    def fake(buf):
        seen.append(bytes(buf.raw))
        return answer

    monkeypatch.setattr(system_clock, "_libc", [fake])
    assert system_clock.kernel_synced("linux") is synced
    assert seen == [bytes(512)]  # modes 0: the call only reads, it never sets the clock


def test_where_the_kernel_cannot_say_it_is_unknown(monkeypatch) -> None:
    assert system_clock.kernel_synced("darwin") is None and system_clock.kernel_synced("win32") is None

    def broken(buf):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(system_clock, "_libc", [broken])
    assert system_clock.kernel_synced("linux") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_the_real_call_agrees_with_the_kernels_status_word() -> None:
    """On this machine: the answer is a verdict, and it is the STA_UNSYNC bit of the same struct timex
    (at byte 40 on 64-bit Linux: modes, offset, freq, maxerror, esterror, then status)."""
    synced = system_clock.kernel_synced()
    assert synced in (True, False)
    if ctypes.sizeof(ctypes.c_long) == 8:
        buf = ctypes.create_string_buffer(512)
        ctypes.CDLL(None).adjtimex(buf)
        status = int.from_bytes(buf.raw[40:44], sys.byteorder)
        unsynced = status & (0x0040 | 0x1000)  # STA_UNSYNC, STA_CLOCKERR
        assert synced == (not unsynced), status


def test_status_shows_the_clocks_sync_without_calling_it_a_problem() -> None:
    """A site may run without NTP on purpose (an RTC, an isolated network): shown on the screen with
    what to do, the exit code stays what the rest says."""
    now = time.time()
    for synced, line in ((True, "  clock   synchronized (NTP)"),
                         (False, "  clock   NOT synchronized: the kernel does not count it set by NTP")):
        s = state(now)
        s["clock_synced"] = synced
        lines = render(s, now).splitlines()
        assert any(x.startswith(line) for x in lines), lines
        assert lines.index(next(x for x in lines if x.startswith("  clock"))) == 2  # after the broker
        assert verdict(s, now) == (0, [])
    s = state(now)
    s["clock_synced"] = None  # not Linux, or a board
    assert not [x for x in render(s, now).splitlines() if x.startswith("  clock")]


def test_an_agents_health_read_from_a_broker_carries_it() -> None:
    now = time.time()
    health = {"gateway": "gw1", "site": "lab", "time": int(now), "connected": True,
              "clock": {"synced": False}}
    s = from_health({"online": True}, health, "b:1883")
    assert s["clock_synced"] is False and s["clock_set"] is None
    assert "  clock   NOT synchronized" in render(s, now)


class Clocks:
    """A wall clock and a monotonic clock that tests move: `tick` moves both (time passing, with NTP's
    slewing), `step` only the wall clock (a daemon or `date -s` setting it)."""

    def __init__(self) -> None:
        self.wall_now = 1_700_000_000.0  # the old clock (fake-hwclock's last save)
        self.mono_now = 50.0

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def tick(self, seconds: float, slew: float = 0.0) -> None:
        self.wall_now += seconds + slew
        self.mono_now += seconds

    def step(self, by: float) -> None:
        self.wall_now += by


def test_a_step_is_seen_slewing_is_not(caplog) -> None:
    c = Clocks()
    synced = [False]
    watch = system_clock.StepWatch(c.wall, c.mono, lambda: synced[0])
    assert watch.health() == {"synced": False, "steps": 0}
    for _ in range(2000):  # 2000 looks 5 s apart, NTP slewing 0.5 ms per second: 5 s over all, no step
        c.tick(5.0, slew=0.0025)
        assert watch.look(made=10) is None
    assert watch.steps == 0 and watch.last is None
    c.tick(2.0)
    c.step(7200.25)  # NTP sets the clock 2 h forward
    synced[0] = True
    c.tick(3.0)
    with caplog.at_level("WARNING", logger="agent.system_clock"):
        step = watch.look(made=480)
    assert step == {"at": pytest.approx(c.wall_now, abs=0.001), "by": 7200.25, "made": 480, "synced": True}
    assert watch.health() == {"synced": True, "steps": 1, "step": step}
    assert "stepped by +7200.250 s (the kernel now counts it synchronized by NTP)" in caplog.text
    assert "(480 so far)" in caplog.text
    c.tick(5.0)
    assert watch.look(made=500) is None  # seen once
    c.step(-1.5)  # set back by hand (`date -s`): seen too, and kept as the last step
    c.tick(5.0)
    assert watch.look(made=520)["by"] == -1.5  # type: ignore[index]
    assert watch.health()["steps"] == 2 and watch.health()["step"]["made"] == 520
    c.step(0.9)  # below STEP_S: slewing, or a step too small to matter
    c.tick(5.0)
    assert watch.look(made=540) is None and watch.steps == 2


def test_the_uplinks_batch_thread_looks_and_health_carries_the_step(tmp_path, monkeypatch) -> None:
    from agent import uplink as uplink_mod
    from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
    from agent.uplink import Uplink
    from hil_tests.link import wait_until

    monkeypatch.setattr(uplink_mod, "_IDLE", 0.05)  # the batch thread looks every 50 ms here
    config = Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=3600),
        broker=BrokerConfig(host="127.0.0.1", port=1, reconnect_min=60, reconnect_max=60),
        outbox=OutboxConfig(path=str(tmp_path / "outbox.sqlite")),
        batch=BatchConfig(max_age=3600, adaptive=False),
    )
    uplink = Uplink(config, [{"id": "lamp-1", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus",
                              "address": "1", "points": [{"name": "dim", "unit": "%"}]}])
    shift = [0.0]
    uplink.clock_watch = system_clock.StepWatch(lambda: time.time() + shift[0], time.monotonic, lambda: True)
    uplink.health.add("clock", uplink.clock_watch.health)
    uplink.start()
    try:
        uplink.submit([("lamp-1", "dim", 0.5, time.time()), ("lamp-1", "dim", 0.6, time.time())])
        time.sleep(0.2)
        assert uplink.counters["clock"] == {"synced": True, "steps": 0}
        shift[0] = -3600.0  # the clock set an hour back
        assert wait_until(lambda: uplink.counters["clock"]["steps"] == 1, 10, 0.01)
        step = uplink.counters["clock"]["step"]
        assert step["by"] == pytest.approx(-3600.0, abs=0.01) and step["made"] == 2 and step["synced"] is True
    finally:
        uplink.stop(flush=False)


def test_status_shows_the_step_and_how_many_readings_it_touched() -> None:
    now = time.time()
    s = state(now)
    s["clock_synced"] = True
    s["clock_step"] = {"at": now - 60, "by": 7212.6, "made": 480, "synced": True}
    lines = render(s, now).splitlines()
    step = [x for x in lines if x.startswith("  clock   stepped")]
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 60))
    assert step == ["  clock   stepped +2 h 0 min at %s: the readings made before it (of 480 made by then) "
                    "carry the old clock, off by that much" % at], lines
    assert verdict(s, now) == (0, [])  # shown, not a problem: nothing a technician can do on the gateway
    s["clock_step"]["by"] = -1.5
    assert "  clock   stepped -1.5 s at " in render(s, now)
    health = {"gateway": "gw1", "site": "lab", "time": int(now), "connected": True,
              "clock": {"synced": True, "steps": 1,
                        "step": {"at": now, "by": 30.0, "made": 7, "synced": True}}}
    remote = from_health({"online": True}, health, "b:1883")
    assert remote["clock_step"]["by"] == 30.0
    assert "  clock   stepped +30.0 s at " in render(remote, now)
