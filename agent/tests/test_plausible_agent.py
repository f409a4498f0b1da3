"""Plausibility in the agent: a DL/T 645 meter on a pty (real frames) whose voltage jumps to 600 V or whose
energy register goes backwards. The value is not published, one `quality` alarm "implausible" is raised
on a real Mosquitto and cleared by the next good value, the bad answers are counted in …/health, and the
energy published never decreases.
"""

from __future__ import annotations

import time

from agent.config import load_config
from agent.gateway import Gateway
from agent.scheduler import Scheduler
from agent.tests.test_quality import (  # noqa: F401  (meters is a fixture)
    ENERGY,
    VOLTAGE,
    Recorder,
    config_file,
    meters,
    wait_for,
)
from hil_tests.broker import Subscriber, broker_or_skip
from protocols import dlt645


def volts(v: float) -> bytes:
    return dlt645.encode_value(v, "XXX.X")


def kwh(v: float) -> bytes:
    return dlt645.encode_value(v, "XXXXXX.XX")


def test_scheduler_refuses_an_implausible_voltage_once_and_counts_it(tmp_path, meters):  # noqa: F811
    bus, m1, _ = meters
    rec = Recorder()
    scheduler = Scheduler(load_config(config_file(str(tmp_path), bus.path)), rec.sink, quality=rec.on_quality)
    scheduler.start()
    try:
        assert wait_for(lambda: rec.count("m1", "voltage") >= 2)
        m1.values[VOLTAGE] = volts(600.0)  # a 230 V meter cannot see 600 V: a bad read, not a surge
        flipped = time.time()
        assert wait_for(lambda: rec.quality)
        assert wait_for(lambda: rec.count("m1", "current", flipped) >= 5)
        snap = scheduler.counters()["buses"]["line1"]["devices"]["m1"]
        assert snap["quality"] == {"voltage": "implausible"} and snap["bad_by_point"]["voltage"] >= 3
        m1.values[VOLTAGE] = volts(231.0)
        assert wait_for(lambda: len(rec.quality) == 2)
    finally:
        scheduler.stop()
    assert [q[:3] for q in rec.quality] == [("m1", "voltage", "implausible"), ("m1", "voltage", None)]
    bad_from, good_from = rec.quality[0][3], rec.quality[1][3]
    voltages = [r for r in rec.readings if r[:2] == ("m1", "voltage")]
    assert not [r for r in voltages if bad_from <= r[3] < good_from], "no reading while implausible"
    assert 600.0 not in [r[2] for r in voltages]
    assert [r[2] for r in voltages if r[3] >= good_from][:1] == [231.0]


def test_energy_going_backwards_at_the_wire(tmp_path, meters):  # noqa: F811
    """A glitch below the last good energy is refused and alarmed; a meter that was really cleared counts
    from 0 again and is accepted after REBASE_AFTER consistent readings."""
    bus, m1, _ = meters
    broker = broker_or_skip()
    sub = gateway = None
    try:
        sub = Subscriber(broker, client_id="platform", persistent=False)
        gateway = Gateway(load_config(config_file(str(tmp_path), bus.path, broker.port)), backoff_max=1.0)
        gateway.start()

        def energy(since: float = 0.0) -> list[float]:
            return [v for n, v, t in sub.readings() if n == "gw1:m1/energy_import" and t >= since]

        def alarms() -> list[tuple]:
            return [(a["point"], a["value"], a["state"]) for a in sub.decoded("alarm")
                    if a["kind"] == "quality"]

        m1.values[ENERGY] = kwh(1234.56)
        assert sub.wait_for(lambda: len(energy()) >= 3, 15)
        m1.values[ENERGY] = kwh(12.34)  # a torn register read: far below the last good value
        assert sub.wait_for(lambda: alarms() == [("energy_import", "implausible", "raised")], 10), alarms()
        m1.values[ENERGY] = kwh(1234.57)
        back = time.time()
        assert sub.wait_for(lambda: len(alarms()) == 2 and energy(back), 10), alarms()
        def bad_energy(h: dict) -> int:
            return int(h.get("buses", {}).get("line1", {}).get("bad_points", {}).get("m1", {})
                       .get("energy_import", 0))

        health_ok = sub.wait_for(lambda: any(bad_energy(h) >= 1 for h in sub.decoded("health")), 10)
        glitch = list(energy())
        # the meter is cleared (a new meter at the same address): 0.00, 0.01, ... after REBASE_AFTER reads
        # the new count is accepted; the alarm tells the platform when
        m1.values[ENERGY] = kwh(0.0)
        cleared_at = time.time()
        assert sub.wait_for(lambda: len(alarms()) == 3, 10), alarms()
        m1.values[ENERGY] = kwh(0.01)
        assert sub.wait_for(lambda: len(alarms()) == 4 and energy(cleared_at), 15), alarms()
        after = energy(cleared_at)
    finally:
        if gateway is not None:
            gateway.stop()
        if sub is not None:
            sub.close()
        broker.close()
    print("\nenergy published around the glitch: %s...; after the meter was cleared: %s; alarms %s"
          % (sorted(set(glitch))[:4], sorted(set(after))[:3], alarms()))
    assert 12.34 * 3.6e6 not in glitch
    assert glitch == sorted(glitch), "energy published never goes down around a glitch"
    assert health_ok
    assert alarms() == [("energy_import", "implausible", "raised"), ("energy_import", "good", "cleared"),
                        ("energy_import", "implausible", "raised"), ("energy_import", "good", "cleared")]
    assert min(after) < 1.0 * 3.6e6, "the cleared meter's count is published once it is consistent"
