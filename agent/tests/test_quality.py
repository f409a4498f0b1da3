"""Point quality: a DL/T 645 point that answers "not available" (all FF) or with bad BCD is no reading;
it raises one `quality` alarm, its neighbours keep publishing, and it clears when the value is good again.

At the scheduler (fake meters on a pty) and at the wire (the gateway with its real uplink, a real
Mosquitto, a cbor2 subscriber, and `fieldlink monitor` showing the alarms).
"""

from __future__ import annotations

import argparse
import io
import os
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from agent.commands import monitor
from agent.commands.monitor import MonitorState, line
from agent.config import load_config
from agent.gateway import Gateway
from agent.scheduler import Scheduler
from agent.tests.fakes import FakeMeter645
from hil_tests.broker import Subscriber, broker_or_skip
from hil_tests.buses import VirtualBus
from protocols import cbor, dlt645

VOLTAGE, CURRENT, ENERGY = "02010100", "02020100", "00010000"
NOT_AVAILABLE = b"\xff\xff"  # XXX.X: two bytes of FF
BAD_BCD = b"\x1a\x23"  # a nibble A: not BCD


def meter_values(volts: float = 230.1) -> dict[str, bytes]:
    return {VOLTAGE: dlt645.encode_value(volts, "XXX.X"),
            CURRENT: dlt645.encode_value(5.125, "XXX.XXX", signed=True),
            ENERGY: dlt645.encode_value(1234.56, "XXXXXX.XX")}


def config_file(directory: str, port: str, broker_port: int = 1883) -> str:
    """Two single-phase meters polled every 0.2 s; packs close after 0.2 s; health every 1 s."""
    text = textwrap.dedent("""
        format = 1

        [gateway]
        site = "q-site"
        id = "gw1"
        health_interval = 1

        [broker]
        host = "127.0.0.1"
        port = {broker_port}
        reconnect_min = 0.2
        reconnect_max = 0.5

        [outbox]
        path = "outbox.sqlite"

        [batch]
        max_age = 0.2

        [[buses]]
        name = "line1"
        port = "{port}"
        baud = 115200
        parity = "E"
        timeout_ms = 150

        [[devices]]
        id = "m1"
        bus = "line1"
        profile = "dlt645-1p"
        address = "000000000001"
        interval = 0.2
        points = ["voltage", "current", "energy_import"]

        [[devices]]
        id = "m2"
        bus = "line1"
        profile = "dlt645-1p"
        address = "000000000002"
        interval = 0.2
        points = ["voltage"]
        """)
    path = os.path.join(directory, "site.toml")
    with open(path, "w") as f:
        f.write(text.replace("{port}", port).replace("{broker_port}", str(broker_port)))
    return path


@pytest.fixture
def meters() -> Iterator[tuple[VirtualBus, FakeMeter645, FakeMeter645]]:
    bus = VirtualBus("dlt645")
    m1 = FakeMeter645("000000000001", meter_values())
    m2 = FakeMeter645("000000000002", meter_values(229.8))
    bus.devices.update({"m1": m1, "m2": m2})
    yield bus, m1, m2
    bus.close()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


class Recorder:
    def __init__(self) -> None:
        self.readings: list = []
        self.quality: list = []
        self.lock = threading.Lock()

    def sink(self, readings: list) -> None:
        with self.lock:
            self.readings.extend(readings)

    def on_quality(self, device: str, point: str, quality: str | None, when: float) -> None:
        with self.lock:
            self.quality.append((device, point, quality, when))

    def count(self, device: str, point: str, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for r in self.readings if r[:2] == (device, point) and r[3] >= since)


def test_scheduler_reports_quality_transitions_once_and_counts_bad_points(tmp_path, meters):
    bus, m1, _ = meters
    path = config_file(str(tmp_path), bus.path)
    rec = Recorder()
    scheduler = Scheduler(load_config(path), rec.sink, quality=rec.on_quality)
    scheduler.start()
    try:
        assert wait_for(lambda: rec.count("m1", "voltage") >= 2)
        m1.values[VOLTAGE] = BAD_BCD
        flipped = time.time()
        assert wait_for(lambda: rec.quality)
        # several bad polls later: still exactly one transition, neighbours still read
        assert wait_for(lambda: rec.count("m1", "current", flipped) >= 5)
        snap = scheduler.counters()["buses"]["line1"]["devices"]["m1"]
        assert snap["bad_by_point"]["voltage"] >= 4 and snap["quality"] == {"voltage": "bad_bcd"}
        assert rec.quality == [("m1", "voltage", "bad_bcd", pytest.approx(time.time(), abs=5))]
        m1.values[VOLTAGE] = NOT_AVAILABLE  # still bad, another reason: no new transition
        time.sleep(0.5)
        assert len(rec.quality) == 1
        m1.values[VOLTAGE] = dlt645.encode_value(231.0, "XXX.X")
        assert wait_for(lambda: len(rec.quality) == 2)
        assert rec.quality[1][:3] == ("m1", "voltage", None)
        time.sleep(0.3)
        assert len(rec.quality) == 2
    finally:
        scheduler.stop()
    bad_from = rec.quality[0][3]
    good_from = rec.quality[1][3]
    voltages = [r for r in rec.readings if r[:2] == ("m1", "voltage")]
    assert not [r for r in voltages if bad_from <= r[3] < good_from], "no reading while the point is bad"
    assert [r[2] for r in voltages if r[3] >= good_from][:1] == [231.0]
    snap = scheduler.counters()["buses"]["line1"]["devices"]
    assert snap["m1"]["quality"] == {} and snap["m1"]["bad_points"] == snap["m1"]["bad_by_point"]["voltage"]
    assert snap["m2"]["bad_by_point"] == {}


def test_monitor_line_for_a_quality_alarm():
    st = MonitorState()
    raised = cbor.dumps({"device": "m1", "point": "voltage", "kind": "quality", "value": "not_available",
                         "state": "raised", "time": 1710498000})
    (e,) = st.handle("fieldlink/s/g/alarm", raised, 0.0)
    assert line(e) == "ALARM s/g raised quality m1 voltage: not_available"
    cleared = cbor.dumps({"device": "m1", "point": "voltage", "kind": "quality", "value": "good",
                          "state": "cleared", "time": 1710498060})
    (e,) = st.handle("fieldlink/s/g/alarm", cleared, 0.0)
    assert line(e) == "ALARM s/g cleared quality m1 voltage: good"


def test_not_available_point_at_the_wire(tmp_path, meters):
    """All-FF for m1/voltage: one `quality` alarm on …/alarm, no m1/voltage readings, m1's other points and
    m2 still published, per-point bad counts in …/health; good again: the alarm clears. `fieldlink monitor`
    shows both alarms."""
    bus, m1, _ = meters
    broker = broker_or_skip()
    sub = gateway = None
    watcher: threading.Thread | None = None
    stop_monitor = threading.Event()
    try:
        path = config_file(str(tmp_path), bus.path, broker.port)
        sub = Subscriber(broker, client_id="platform", persistent=False)
        parser = argparse.ArgumentParser()
        monitor.add_arguments(parser)
        args = parser.parse_args(["--broker", broker.url, "--site", "q-site", "--timeout", "30"])
        out = io.StringIO()
        watcher = threading.Thread(target=monitor.run, args=(args, out, stop_monitor), daemon=True)
        watcher.start()
        gateway = Gateway(load_config(path), backoff_max=1.0)
        gateway.start()

        def names(since: float = 0.0) -> set[str]:
            return {n for n, _, t in sub.readings() if t >= since}

        def alarms() -> list[dict]:
            return [a for a in sub.decoded("alarm") if a["kind"] == "quality"]

        assert sub.wait_for(lambda: {"gw1:m1/voltage", "gw1:m2/voltage"} <= names(), 15)
        m1.values[VOLTAGE] = NOT_AVAILABLE
        flipped = time.time()
        assert sub.wait_for(lambda: alarms(), 10), sub.decoded("alarm")
        raised_at = time.time()
        bad_from = flipped + 0.3  # a request in flight when the value changed may still read it
        # a few more polls with the point still bad
        assert sub.wait_for(lambda: sum(1 for n, _, t in sub.readings()
                                        if n == "gw1:m1/current" and t >= max(bad_from, raised_at)) >= 5, 10)

        def bad_in_health() -> bool:
            for h in sub.decoded("health"):
                line1 = h.get("buses", {}).get("line1", {})
                if line1.get("bad_points", {}).get("m1", {}).get("voltage", 0) >= 3:
                    return line1.get("quality") == {"m1": {"voltage": "not_available"}}
            return False

        assert sub.wait_for(bad_in_health, 10), sub.decoded("health")[-1:]
        m1.values[VOLTAGE] = dlt645.encode_value(231.5, "XXX.X")
        good_at = time.time()
        assert sub.wait_for(lambda: len(alarms()) >= 2, 10), alarms()
        assert sub.wait_for(lambda: "gw1:m1/voltage" in names(good_at), 10)
        time.sleep(0.3)
        found = alarms()
        assert [(a["device"], a["point"], a["kind"], a["value"], a["state"]) for a in found] == [
            ("m1", "voltage", "quality", "not_available", "raised"),
            ("m1", "voltage", "quality", "good", "cleared")], found
        assert int(flipped) <= found[0]["time"] <= raised_at + 1 and found[1]["time"] >= int(good_at)
        readings = sub.readings()
        window = [(n, v) for n, v, t in readings if bad_from <= t < good_at]
        assert "gw1:m1/voltage" not in {n for n, _ in window}, "no reading while not available"
        for name in ("gw1:m1/current", "gw1:m1/energy_import", "gw1:m2/voltage"):
            assert sum(1 for n, _ in window if n == name) >= 3, "neighbour %s kept publishing" % name
        assert [v for n, v, t in readings if n == "gw1:m1/voltage" and t >= good_at][:1] == [231.5]
        assert wait_for(lambda: "cleared quality m1 voltage: good" in out.getvalue(), 5), out.getvalue()
        assert "ALARM q-site/gw1 raised quality m1 voltage: not_available" in out.getvalue()
    finally:
        if gateway is not None:
            gateway.stop()
        if sub is not None:
            sub.close()
        broker.close()
        stop_monitor.set()
        if watcher is not None:
            watcher.join(5)
