"""Behaviour models: deterministic from a seed, counters equal the integral of what is reported."""

from __future__ import annotations

import math

import pytest

from protocols.profiles import load_profile
from simulator.clock import Clock
from simulator.device import Device
from simulator.tests.conftest import START

DAY = 86400.0


def device(profile: str, seed: int = 1, address: object = 1, **params: object) -> Device:
    return Device("d", load_profile(profile), address, Clock(START, 1.0), seed, params)


def integrate(f, a: float, b: float, step: float) -> float:  # type: ignore[no-untyped-def]
    """Trapezoid rule over [a, b]."""
    n = round((b - a) / step)
    total = 0.5 * (f(a) + f(b))
    for i in range(1, n):
        total += f(a + i * step)
    return total * step


@pytest.mark.parametrize("profile", ["dtsu666", "dlt645-3p", "dlt645-1p"])
def test_energy_is_the_integral_of_power(profile: str) -> None:
    meter = device(profile, seed=11, address=1 if profile == "dtsu666" else "000000000001")
    a, b = START + 3600, START + 3600 + DAY

    def power(t: float) -> float:
        return float(meter.quantity("power", t))  # type: ignore[arg-type]

    energy = float(meter.quantity("energy_import", b)) - float(meter.quantity("energy_import", a))  # type: ignore[arg-type]
    assert energy == pytest.approx(integrate(power, a, b, 60.0), rel=1e-4)
    # and through the wire encoding: the kWh register advances by the integrated kW
    point = "energy_import"
    reported = float(meter.truth(point, b)) - float(meter.truth(point, a))  # type: ignore[arg-type]
    assert reported == pytest.approx(energy, abs=2 * 36000)  # two steps of 0.01 kWh


def test_counters_only_increase_and_follow_the_daily_curve() -> None:
    meter = device("dtsu666", seed=3)
    last = -1.0
    powers = []
    for i in range(0, 48):
        t = START + i * 1800
        e = float(meter.quantity("energy_import", t))  # type: ignore[arg-type]
        assert e >= last
        last = e
        powers.append(float(meter.quantity("power", t)))  # type: ignore[arg-type]
    assert max(powers) > 2.5 * min(powers) > 0  # evening peak vs night minimum


def test_lamp_energy_and_burn_hours_follow_its_state() -> None:
    lamp = device("generic-lamp", seed=5, rated_power=100.0)
    t0 = START
    e0 = lamp.quantity("energy", t0)
    h0 = lamp.quantity("burn_hours", t0)
    lamp.write("dim", 0.5, t0 + 100)
    lamp.write("on", False, t0 + 400)
    t1 = t0 + 1000
    p_full, p_half = 100.0, 100.0 * (0.1 + 0.9 * 0.5)
    assert lamp.quantity("energy", t1) - e0 == pytest.approx(100 * p_full + 300 * p_half)  # type: ignore[operator]
    assert lamp.quantity("burn_hours", t1) - h0 == pytest.approx(400)  # type: ignore[operator]
    assert lamp.quantity("power", t1) == 0 and lamp.quantity("current", t1) == 0
    lamp.write("on", True, t1)
    lamp.inject("lamp_failure", t=t1 + 10)
    assert lamp.quantity("power", t1 + 20) == 0
    assert lamp.truth("lamp_failure", t1 + 20) is True and lamp.truth("faults", t1 + 20) == 1
    assert lamp.truth("dim", t1) == pytest.approx(0.5)


def test_water_night_minimum_and_leak() -> None:
    meter = device("ultrasonic-flow", seed=9)
    local = [(h, float(meter.quantity("flow", START + ((h - 8) % 24) * 3600))) for h in range(24)]  # type: ignore[arg-type]
    night = min(f for h, f in local if 1 <= h <= 5)
    day = max(f for h, f in local if 7 <= h <= 21)
    assert night < 0.6 * day
    assert min(local, key=lambda x: x[1])[0] in (2, 3, 4)  # minimum night flow around 3 am
    pressure = device("pressure-sensor", seed=9)
    t = START + 5000
    before = float(pressure.quantity("pressure", t))  # type: ignore[arg-type]
    pressure.inject("leak", {"drop": 50000}, t + 10)
    meter.inject("leak", {"rate": 0.01}, t + 10)
    assert float(pressure.quantity("pressure", t + 20)) < before - 40000  # type: ignore[arg-type]
    assert float(meter.quantity("flow", t + 20)) > float(meter.quantity("flow", t)) + 0.009  # type: ignore[arg-type]
    pressure.clear("leak", t + 30)
    assert float(pressure.quantity("pressure", t + 40)) > before - 5000  # type: ignore[arg-type]


def test_deterministic_from_seed_and_time() -> None:
    a, b, c = device("dtsu666", seed=42), device("dtsu666", seed=42), device("dtsu666", seed=43)
    for t in (START, START + 12345.6, START + 5 * DAY):
        for p in ("voltage_a", "power", "energy_import", "frequency"):
            assert a.truth(p, t) == b.truth(p, t)
    assert a.truth("power", START) != c.truth("power", START)
    # values are quantised to the 1 s step
    assert a.quantity("voltage_a", START + 10.1) == a.quantity("voltage_a", START + 10.9)


def test_reboot_resets_counters() -> None:
    lamp = device("generic-lamp", seed=2)
    t = START + 100
    lamp.write("dim", 0.2, t)
    assert lamp.quantity("burn_hours", t) > 1000  # type: ignore[operator]
    lamp.inject("reboot", {"duration": 5}, t + 10)
    assert lamp.down(t + 12) and not lamp.down(t + 16)
    assert lamp.quantity("burn_hours", t + 20) == pytest.approx(10)  # counting again from the reboot
    assert lamp.quantity("dim", t + 20) == 1.0  # power-on default


def test_water_quality_ranges() -> None:
    probe = device("water-quality", seed=4)
    for h in range(0, 24, 3):
        t = START + h * 3600
        assert 6.5 < probe.truth("ph", t) < 8.5  # type: ignore[operator]
        assert 0 <= probe.truth("turbidity", t) < 1  # type: ignore[operator]
        assert 0.0002 < probe.truth("chlorine", t) < 0.001  # type: ignore[operator]
        assert 0.01 < probe.truth("conductivity", t) < 0.1  # type: ignore[operator]
        assert math.isfinite(probe.truth("temperature", t))  # type: ignore[arg-type]
