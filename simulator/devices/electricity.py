"""Electricity meters: a daily load curve per phase, power factor, voltage, frequency, energy.

Quantities (SenML units): voltage_a/b/c and voltage_ab/bc/ca V, current_a/b/c A,
power_a/b/c and power W, reactive_power var,
apparent_power VA, power_factor /, frequency Hz, temperature Cel, energy_import J (the integral of
power), energy_export J, energy J (combined active = import - export), relay ("closed"/"open").
A single-phase meter (params.phases = 1) reports phase A only; B and C read 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

from simulator.devices.base import DailyCurve, Model, uniform

KWH = 3600000.0


class ElectricityMeter(Model):
    kind = "electricity_meter"
    quantities = (
        "voltage_a", "voltage_b", "voltage_c", "current_a", "current_b", "current_c",
        "power_a", "power_b", "power_c", "power", "reactive_power", "apparent_power",
        "power_factor", "frequency", "temperature", "energy_import", "energy_export", "energy",
        "relay", "voltage", "current", "voltage_ab", "voltage_bc", "voltage_ca",
    )
    counters = ("energy_import",)
    state_defaults: ClassVar[dict] = {"relay": "closed"}
    writable = ("relay",)

    def setup(self) -> None:
        self.phases = int(self.params.get("phases", 3))
        default_load = 3000.0 if self.phases == 1 else 12000.0
        self.mean_power = self.param("mean_power", default_load, 0.4)
        self.nominal_voltage = self.param("voltage", 220.0)
        self.pf = min(0.99, self.param("power_factor", 0.94, 0.03))
        shift = uniform(self.seed, "shift", -1.0, 1.0)
        # evening peak, morning shoulder, night minimum (about 0.3 of the mean)
        self.curve = DailyCurve(
            1.0, [(0.45, 1, 19.0 + shift), (0.2, 2, 8.0 + shift)], self.utc_offset
        )
        if self.phases == 1:
            self.split = (1.0, 0.0, 0.0)
        else:
            a = uniform(self.seed, "split.a", 0.28, 0.38)
            b = uniform(self.seed, "split.b", 0.28, 0.38)
            self.split = (a, b, 1.0 - a - b)

    def initial_counter(self, name: str) -> float:
        return round(self.param("energy_start", uniform(self.seed, "e0", 1000.0, 20000.0))) * KWH

    def derived(self, name: str, t: float, get) -> object:  # type: ignore[no-untyped-def]
        if name == "energy":
            return get("energy_import", t) - get("energy_export", t)
        raise KeyError(name)

    def _power(self, t: float, state: dict) -> float:
        if state.get("relay") == "open":
            return 0.0
        return self.mean_power * self.curve(t)

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        if state.get("relay") == "open":
            return 0.0
        return self.mean_power * self.curve.integral(a, b)

    def _voltage(self, phase: int, t: float) -> float:
        if phase >= self.phases:
            return 0.0
        v = self.nominal_voltage * (1.0 + 0.01 * math.sin(2 * math.pi * (t / 86400.0 + phase / 3.0)))
        return v + self.jitter("voltage.%d" % phase, t, 0.6)

    def instant(self, name: str, t: float, state: dict) -> object:
        p = self._power(t, state)
        pf = self.pf + 0.01 * math.sin(2 * math.pi * t / 43200.0)
        if name in ("voltage_a", "voltage_b", "voltage_c", "voltage"):
            return self._voltage(0 if name == "voltage" else "abc".index(name[-1]), t)
        if name in ("voltage_ab", "voltage_bc", "voltage_ca"):
            # two phase voltages 120 degrees apart: |Ux - Uy| = sqrt(x^2 + y^2 + x y)
            x = self._voltage("abc".index(name[-2]), t)
            y = self._voltage("abc".index(name[-1]), t)
            return math.sqrt(x * x + y * y + x * y)
        if name in ("power_a", "power_b", "power_c"):
            return p * self.split["abc".index(name[-1])]
        if name in ("current_a", "current_b", "current_c", "current"):
            i = 0 if name == "current" else "abc".index(name[-1])
            v = self._voltage(i, t)
            return p * self.split[i] / (v * pf) if v > 0 else 0.0
        if name == "power":
            return p
        if name == "power_factor":
            return pf if p > 0 else 1.0
        if name == "apparent_power":
            return p / pf
        if name == "reactive_power":
            return p * math.tan(math.acos(pf))
        if name == "frequency":
            return 50.0 + 0.03 * math.sin(2 * math.pi * t / 900.0) + self.jitter("frequency", t, 0.005)
        if name == "temperature":
            return 25.0 + 5.0 * self.curve(t) / 1.65 + self.jitter("temperature", t, 0.2)
        if name == "energy_export":
            return round(self.param("export_start", 0.0)) * KWH
        if name == "relay":
            return state.get("relay", "closed")
        raise KeyError(name)
