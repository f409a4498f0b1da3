"""Water devices: household meters with a valve, pipeline flow, pressure, level and quality.

Demand follows a daily curve with a night-time minimum; an injected leak adds a constant flow
(state `leak`, m3/s) and lowers pipeline pressure (state `leak_drop`, Pa); a closed valve stops
all flow through a meter, leak included.
"""

from __future__ import annotations

import datetime
import math
from typing import ClassVar

from simulator.devices.base import DAY, DailyCurve, Model, uniform


def demand_curve(seed_shift: float, utc_offset: float, night: float) -> DailyCurve:
    """Household-style demand: morning and evening peaks, minimum `night` (fraction of mean) at 3 am."""
    # 1 + a1 cos(w (t - 15h)) + a2 cos(2w (t - 9h)) has its minimum near 3 am: 1 - a1 - a2
    a1 = (1.0 - night) * 0.7
    a2 = (1.0 - night) * 0.3
    return DailyCurve(1.0, [(a1, 1, 15.0 + seed_shift), (a2, 2, 9.0 + seed_shift)], utc_offset)


def settlement_time(t: float, utc_offset: float) -> float:
    """Midnight (local) of the 1st of the month containing t: the meters' settlement day."""
    local = datetime.datetime.fromtimestamp(t + utc_offset * 3600.0, datetime.UTC)
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.timestamp() - utc_offset * 3600.0


class WaterMeter(Model):
    """A household cold-water (or gas) meter with a motorised valve: CJ/T 188."""

    kind = "water_meter"
    quantities = ("volume", "volume_settlement", "flow", "valve", "battery_low", "time")
    counters = ("volume",)
    state_defaults: ClassVar[dict] = {"valve": "open", "battery_low": False}
    writable = ("valve",)

    def setup(self) -> None:
        # about 0.3 m3/day for a household: 3.5e-6 m3/s mean
        self.mean_flow = self.param("mean_flow", 0.3 / DAY, 0.5)
        self.curve = demand_curve(uniform(self.seed, "shift", -0.7, 0.7), self.utc_offset,
                                  self.param("night_fraction", 0.05))

    def initial_counter(self, name: str) -> float:
        return round(self.param("volume_start", uniform(self.seed, "v0", 10.0, 900.0)), 2)

    def _flowing(self, state: dict) -> bool:
        return state.get("valve", "open") == "open"

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        if not self._flowing(state):
            return 0.0
        return self.mean_flow * self.curve.integral(a, b) + float(state.get("leak", 0.0)) * (b - a)

    def instant(self, name: str, t: float, state: dict) -> object:
        if name == "flow":
            if not self._flowing(state):
                return 0.0
            return self.mean_flow * self.curve(t) + float(state.get("leak", 0.0))
        if name == "valve":
            return state.get("valve", "open")
        if name == "battery_low":
            return bool(state.get("battery_low", False))
        if name == "time":
            return t
        raise KeyError(name)

    def derived(self, name: str, t: float, get) -> object:  # type: ignore[no-untyped-def]
        if name == "volume_settlement":
            return get("volume", max(self.start, settlement_time(t, self.utc_offset)))
        raise KeyError(name)


class FlowMeter(Model):
    """An ultrasonic pipeline flow meter (district metering): flow, velocity, cumulative volume."""

    kind = "flow_meter"
    quantities = ("flow", "velocity", "volume", "temperature")
    counters = ("volume",)

    def setup(self) -> None:
        self.mean_flow = self.param("mean_flow", 0.02, 0.3)  # m3/s (72 m3/h)
        self.diameter = self.param("diameter", 0.2)  # m
        self.curve = demand_curve(uniform(self.seed, "shift", -0.5, 0.5), self.utc_offset,
                                  self.param("night_fraction", 0.35))

    def initial_counter(self, name: str) -> float:
        return round(self.param("volume_start", uniform(self.seed, "v0", 1e4, 9e5)), 1)

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        return self.mean_flow * self.curve.integral(a, b) + float(state.get("leak", 0.0)) * (b - a)

    def instant(self, name: str, t: float, state: dict) -> object:
        flow = self.mean_flow * self.curve(t) + float(state.get("leak", 0.0))
        if name == "flow":
            return flow
        if name == "velocity":
            return flow / (math.pi * self.diameter * self.diameter / 4.0)
        if name == "temperature":
            return 14.0 + 2.0 * math.sin(2 * math.pi * t / DAY) + self.jitter("temperature", t, 0.05)
        raise KeyError(name)


class PressureSensor(Model):
    """Pipeline pressure: highest at night (low demand), lowered by head loss and by a leak."""

    kind = "pressure"
    quantities = ("pressure", "temperature")

    def setup(self) -> None:
        self.static = self.param("pressure", 400000.0, 0.1)  # Pa (4 bar)
        self.loss = self.param("head_loss", 0.12)  # fraction lost at mean demand
        self.curve = demand_curve(uniform(self.seed, "shift", -0.5, 0.5), self.utc_offset, 0.3)

    def instant(self, name: str, t: float, state: dict) -> object:
        if name == "pressure":
            p = self.static * (1.0 - self.loss * self.curve(t) / 1.7) - float(state.get("leak_drop", 0.0))
            return max(0.0, p + self.jitter("pressure", t, 300.0))
        if name == "temperature":
            return 14.0 + 2.0 * math.sin(2 * math.pi * t / DAY) + self.jitter("temperature", t, 0.05)
        raise KeyError(name)


class LevelSensor(Model):
    """Reservoir (daily fill and draw-down) or river (slow swell) level in metres."""

    kind = "level"
    quantities = ("level", "temperature")

    def setup(self) -> None:
        self.mode = str(self.params.get("mode", "reservoir"))
        self.mean = self.param("level", 4.0, 0.1)
        self.swing = self.param("swing", 0.6 if self.mode == "reservoir" else 0.3)
        self.period = DAY if self.mode == "reservoir" else 7 * DAY
        self.phase = uniform(self.seed, "phase", 0.0, 1.0)

    def instant(self, name: str, t: float, state: dict) -> object:
        if name == "level":
            # a reservoir fills at night and is drawn down by day; a leak drains it (m/s)
            x = 2 * math.pi * (t / self.period + self.phase)
            level = self.mean + self.swing * math.sin(x) + self.jitter("level", t, 0.003)
            since = state.get("leak_since")
            if since is not None and float(state.get("leak", 0.0)) > 0:
                level -= float(state.get("leak_level_rate", 1e-4)) * max(0.0, t - float(since))  # type: ignore[arg-type]
            return max(0.0, level)
        if name == "temperature":
            return 12.0 + 3.0 * math.sin(2 * math.pi * t / DAY) + self.jitter("temperature", t, 0.05)
        raise KeyError(name)


class WaterQuality(Model):
    """A multi-parameter probe: pH, turbidity (NTU), residual chlorine, conductivity, temperature."""

    kind = "water_quality"
    quantities = ("ph", "turbidity", "chlorine", "conductivity", "temperature")

    def setup(self) -> None:
        self.ph = self.param("ph", 7.3, 0.02)
        self.turbidity = self.param("turbidity", 0.3, 0.3)  # NTU
        self.chlorine = self.param("chlorine", 0.0005, 0.2)  # kg/m3 (0.5 mg/L)
        self.conductivity = self.param("conductivity", 0.05, 0.2)  # S/m (500 uS/cm)

    def instant(self, name: str, t: float, state: dict) -> object:
        day = math.sin(2 * math.pi * t / DAY)
        leak = float(state.get("leak", 0.0)) > 0
        if name == "ph":
            return self.ph + 0.05 * day + self.jitter("ph", t, 0.01)
        if name == "turbidity":
            base = self.turbidity * (1.0 + 0.2 * day) + self.jitter("turbidity", t, 0.02)
            return max(0.0, base + (4.0 if leak else 0.0))  # intrusion through a leak
        if name == "chlorine":
            return max(0.0, self.chlorine * (1.0 - 0.15 * day) + self.jitter("chlorine", t, 0.00002))
        if name == "conductivity":
            return self.conductivity * (1.0 + 0.03 * day) + self.jitter("conductivity", t, 0.0003)
        if name == "temperature":
            return 14.0 + 2.0 * day + self.jitter("temperature", t, 0.05)
        raise KeyError(name)


class HeatMeter(Model):
    """A district-heating meter (CJ/T 188 T=20): flow through the flat, supply/return temperatures,
    heat power = rho c Q dT, heat energy and volume the exact integrals, working time in seconds."""

    kind = "heat_meter"
    quantities = ("heat_energy", "heat_energy_settlement", "heat_power", "flow_rate", "volume",
                  "supply_temperature", "return_temperature", "working_time", "valve", "battery_low")
    counters = ("heat_energy", "volume", "working_time")
    state_defaults: ClassVar[dict] = {"valve": "open", "battery_low": False}
    RHO_C = 4.19e6  # J / (m3 K), water

    def setup(self) -> None:
        self.mean_flow = self.param("mean_flow", 0.25 / 3600.0, 0.3)  # m3/s (0.25 m3/h)
        self.supply = self.param("supply_temperature", 60.0, 0.05)
        self.delta = self.param("delta_t", 15.0, 0.1)
        self.curve = demand_curve(uniform(self.seed, "shift", -0.5, 0.5), self.utc_offset, 0.4)

    def initial_counter(self, name: str) -> float:
        if name == "working_time":
            return round(self.param("hours_start", uniform(self.seed, "h0", 1000.0, 30000.0))) * 3600.0
        if name == "volume":
            return round(self.param("volume_start", uniform(self.seed, "v0", 10.0, 900.0)), 2)
        return round(self.param("energy_start", uniform(self.seed, "e0", 100.0, 9000.0)), 2) * 3600000.0

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        if name == "working_time":
            return b - a
        flow = self.mean_flow * self.curve.integral(a, b)
        return flow if name == "volume" else flow * self.RHO_C * self.delta

    def instant(self, name: str, t: float, state: dict) -> object:
        flow = self.mean_flow * self.curve(t)
        if name == "flow_rate":
            return flow
        if name == "heat_power":
            return flow * self.RHO_C * self.delta
        if name == "supply_temperature":
            return self.supply
        if name == "return_temperature":
            return self.supply - self.delta
        if name in ("valve", "battery_low"):
            return state.get(name, False if name == "battery_low" else "open")
        raise KeyError(name)

    def derived(self, name: str, t: float, get) -> object:  # type: ignore[no-untyped-def]
        if name == "heat_energy_settlement":
            return get("heat_energy", max(self.start, settlement_time(t, self.utc_offset)))
        raise KeyError(name)
