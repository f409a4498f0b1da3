"""The bus scheduler at the wire: neighbours of a dead device keep their rate, backoff and offline
transitions, commands between transactions, a vanished port."""

from __future__ import annotations

import os
import threading
import time

from agent.config import load_config
from agent.scheduler import Scheduler
from agent.tests.conftest import METER_REGISTERS, basic_config
from agent.tests.fakes import FakeModbus
from hil_tests.buses import PtyBus


def device_block(dev_id: str, address: int, interval: float, points: str = '["voltage"]') -> str:
    return """
[[devices]]
id = "%s"
bus = "line1"
profile = "test-meter"
address = %d
interval = %s
points = %s
""" % (dev_id, address, interval, points)


class Recorder:
    def __init__(self) -> None:
        self.readings: list = []
        self.events: list = []
        self.lock = threading.Lock()

    def sink(self, readings: list) -> None:
        with self.lock:
            self.readings.extend(readings)

    def event(self, device: str, online: bool, reason: str) -> None:
        with self.lock:
            self.events.append((device, online, reason))

    def count(self, device: str) -> int:
        with self.lock:
            return sum(1 for r in self.readings if r[0] == device)


def run_for(config, seconds: float, recorder: Recorder, **kw) -> Scheduler:
    scheduler = Scheduler(config, recorder.sink, recorder.event, **kw)
    scheduler.start()
    try:
        time.sleep(seconds)
    finally:
        scheduler.stop()
    return scheduler


def test_a_dead_device_does_not_slow_its_neighbour(tmp_path, profile_dir, fake_bus):
    fake_bus.devices[1] = FakeModbus(METER_REGISTERS)
    blocks = device_block("good", 1, 0.1)
    path = basic_config(str(tmp_path), fake_bus.path, blocks)
    alone = Recorder()
    run_for(load_config(path), 2.0, alone)

    path = basic_config(str(tmp_path), fake_bus.path, blocks + device_block("dead", 2, 0.1))
    with_dead = Recorder()
    scheduler = run_for(load_config(path), 2.0, with_dead)
    base, rate = alone.count("good"), with_dead.count("good")
    assert base >= 10
    assert rate >= 0.7 * base, "neighbour polled %d times with a dead device, %d without" % (rate, base)
    counters = scheduler.counters()["buses"]["line1"]["devices"]
    assert counters["dead"]["errors"]["timeout"] <= 2   # backed off: 0.15 s timeouts, first retry 1.5 s later
    assert with_dead.count("dead") == 0


def test_backoff_offline_and_back_online(tmp_path, profile_dir, fake_bus):
    device = FakeModbus(METER_REGISTERS)
    device.dead = True
    fake_bus.devices[3] = device
    path = basic_config(str(tmp_path), fake_bus.path, device_block("m3", 3, 0.05),
                        bus_extra="").replace("timeout_ms = 150", "timeout_ms = 20")
    config = load_config(path)
    recorder = Recorder()
    scheduler = Scheduler(config, recorder.sink, recorder.event, offline_after=2, backoff_max=0.4)
    scheduler.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not recorder.events:
            time.sleep(0.02)
        assert recorder.events and recorder.events[0][:2] == ("m3", False)
        assert "no reply to 2 polls (timeout:" in recorder.events[0][2]
        # retries are spaced out: 0.2 s, 0.4 s (capped) ...
        times = [t for t, _ in device.requests]
        assert len(times) == 2 and times[1] - times[0] >= 0.18
        device.dead = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(recorder.events) < 2:
            time.sleep(0.02)
        assert recorder.events[1] == ("m3", True, "answering")
        before = recorder.count("m3")
        time.sleep(0.3)
        assert recorder.count("m3") >= before + 3   # back at its own 50 ms rate
    finally:
        scheduler.stop()
    readings = [r for r in recorder.readings if r[0] == "m3"]
    assert all(r[1] == "voltage" and r[2] == 230.1 for r in readings)
    stamps = [r[3] for r in readings]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 5


def test_command_waits_at_most_one_transaction(tmp_path, profile_dir, fake_bus):
    device = FakeModbus(METER_REGISTERS, delay=0.05)
    fake_bus.devices[1] = device
    # a continuously busy bus: one device, four requests per cycle, no idle time
    path = basic_config(str(tmp_path), fake_bus.path, device_block("m1", 1, 0.2, points="[" + ", ".join(
        '"%s"' % p for p in ("voltage", "energy", "setpoint", "relay")) + "]"))
    recorder = Recorder()
    scheduler = Scheduler(load_config(path), recorder.sink, recorder.event)
    scheduler.start()
    try:
        time.sleep(0.3)
        waits = []
        for value in (10, 20, 30):
            start = time.monotonic()
            ack = scheduler.command({"device": "m1", "point": "setpoint", "value": value})
            waits.append(time.monotonic() - start)
            assert ack == {"ok": True, "error": None, "value": value}
        refused = scheduler.command({"device": "m1", "point": "setpoint", "value": 1000})
        assert refused["ok"] is False and "above the maximum 100" in refused["error"]
        assert scheduler.command({"device": "x", "point": "p", "value": 1})["ok"] is False
    finally:
        scheduler.stop()
    # a command = the transaction in progress (<= ~0.06 s) + write + read-back (~0.12 s)
    assert max(waits) < 0.6, waits
    assert ("m1", "setpoint", 30) in [r[:3] for r in recorder.readings]


def test_a_vanished_port_marks_devices_offline_and_polling_resumes(tmp_path, profile_dir):
    link_path = os.path.join(str(tmp_path), "ttyUSB0")
    first = PtyBus()
    first.devices[1] = FakeModbus(METER_REGISTERS)
    os.symlink(first.path, link_path)
    path = basic_config(str(tmp_path), link_path, device_block("m1", 1, 0.05))
    recorder = Recorder()
    scheduler = Scheduler(load_config(path), recorder.sink, recorder.event)
    for worker in scheduler.workers.values():
        worker.link.reopen_min = 0.05
        worker.link.reopen_max = 0.2
    scheduler.start()
    second = None
    try:
        time.sleep(0.3)
        first.close()
        os.unlink(link_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(recorder.events) < 2:
            time.sleep(0.02)
        assert [e[:2] for e in recorder.events] == [("m1", True), ("m1", False)]
        assert "port %s unavailable" % link_path in recorder.events[1][2]
        second = PtyBus()
        second.devices[1] = FakeModbus(METER_REGISTERS)
        os.symlink(second.path, link_path)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(recorder.events) < 3:
            time.sleep(0.02)
        assert recorder.events[2][:2] == ("m1", True)
        before = recorder.count("m1")
        time.sleep(0.3)
        assert recorder.count("m1") > before
        bus = scheduler.counters()["buses"]["line1"]
        assert bus["port_down"] == 1 and bus["link"]["opens"] == 2
    finally:
        scheduler.stop()
        if second is not None:
            second.close()


class Batches(Recorder):
    """Also keeps each `sink` call apart, with when it came."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[float, list]] = []

    def sink(self, readings: list) -> None:
        super().sink(readings)
        with self.lock:
            self.batches.append((time.monotonic(), list(readings)))


def slow_poll(tmp_path, fake_bus, within: float | None, monkeypatch) -> tuple[Batches, FakeModbus]:
    """One poll of four single-point requests, each answered after 0.15 s (a meter on a slow line)."""
    import agent.scheduler

    if within is not None:
        monkeypatch.setattr(agent.scheduler, "DELIVER_WITHIN", within)
    device = FakeModbus(METER_REGISTERS, delay=0.15)
    fake_bus.devices[1] = device
    points = '["voltage", "energy", "setpoint", "relay"]'
    block = device_block("m1", 1, 60, points=points) + "single_point_requests = true\n"
    recorder = Batches()
    scheduler = Scheduler(load_config(basic_config(str(tmp_path), fake_bus.path, block)), recorder.sink,
                          recorder.event)
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(recorder.readings) < 4:
            time.sleep(0.02)
    finally:
        scheduler.stop()
    return recorder, device


def test_a_long_poll_hands_on_what_it_read_before_it_ends(tmp_path, profile_dir, fake_bus, monkeypatch):
    recorder, device = slow_poll(tmp_path, fake_bus, None, monkeypatch)
    assert len(recorder.readings) == 4 and len(device.requests) == 4
    assert len(recorder.batches) >= 2, recorder.batches
    first_handed_on = recorder.batches[0][0]
    assert first_handed_on < device.requests[-1][0], "the first readings went out before the last request"
    assert sorted(r[1] for r in recorder.readings) == ["energy", "relay", "setpoint", "voltage"]


def test_without_the_latency_rule_a_poll_is_handed_on_once(tmp_path, profile_dir, fake_bus, monkeypatch):
    recorder, _ = slow_poll(tmp_path, fake_bus, 60.0, monkeypatch)
    assert [len(b) for _, b in recorder.batches] == [4]
