"""Street lighting: single-lamp controllers and lighting cabinets (contactors per circuit).

A lamp draws power only when it is on and healthy: P = rated * (0.1 + 0.9 * dim) with dim 0..1.
Lamp failure, a cable fault or over-temperature (which trips the driver) make it dark. Burn time
(s) and energy (J) are the exact integrals of "lit" and of power. Writes to `on` and `dim` take
effect at once; a reboot brings the lamp back to its power-on state (on, dim 1.0).
"""

from __future__ import annotations

from typing import ClassVar

from simulator.devices.base import Model, uniform

FAULT_BITS = {"lamp_failure": 0, "cable_fault": 1, "over_temperature": 2, "door_open": 3}


def fault_word(state: dict) -> int:
    word = 0
    for name, bit in FAULT_BITS.items():
        if state.get(name):
            word |= 1 << bit
    return word


class Lamp(Model):
    kind = "lamp"
    quantities = (
        "on", "dim", "voltage", "current", "power", "energy", "burn_hours", "temperature",
        "faults", "lamp_failure", "cable_fault", "over_temperature", "lit",
    )
    counters = ("energy", "burn_hours")
    state_defaults: ClassVar[dict] = {"on": True, "dim": 1.0}
    writable = ("on", "dim")

    def setup(self) -> None:
        self.rated = self.param("rated_power", 100.0, 0.03)  # W (an LED luminaire)
        self.nominal_voltage = self.param("voltage", 230.0)

    def initial_counter(self, name: str) -> float:
        hours = round(self.param("burn_hours_start", uniform(self.seed, "h0", 100.0, 20000.0)))
        if name == "burn_hours":
            return hours * 3600.0
        return round(hours * self.rated * 0.8) * 3600.0  # Wh -> J, at a typical 80 % dim

    def lit(self, state: dict) -> bool:
        return bool(state.get("on")) and not (
            state.get("lamp_failure") or state.get("cable_fault") or state.get("over_temperature")
        )

    def _power(self, state: dict) -> float:
        if not self.lit(state):
            return 0.0
        dim = min(1.0, max(0.0, float(state.get("dim", 1.0))))
        return self.rated * (0.1 + 0.9 * dim)

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        if name == "burn_hours":
            return (b - a) if self.lit(state) else 0.0
        return self._power(state) * (b - a)

    def instant(self, name: str, t: float, state: dict) -> object:
        if name == "on":
            return bool(state.get("on"))
        if name == "dim":
            return float(state.get("dim", 1.0))
        if name == "lit":
            return self.lit(state)
        if name == "voltage":
            if state.get("cable_fault"):
                return 0.0
            return self.nominal_voltage + self.jitter("voltage", t, 1.5)
        if name == "power":
            return self._power(state)
        if name == "current":
            p = self._power(state)
            return p / (self.nominal_voltage * 0.96) if p else 0.0
        if name == "temperature":
            if state.get("over_temperature"):
                return 92.0
            return 25.0 + 0.3 * self._power(state) + self.jitter("temperature", t, 0.3)
        if name == "faults":
            return fault_word(state)
        if name in FAULT_BITS:
            return bool(state.get(name))
        raise KeyError(name)


class Cabinet(Model):
    """A lighting cabinet: up to 8 contactors each feeding a circuit of lamps, three-phase supply."""

    kind = "cabinet"
    quantities = (
        "voltage_a", "voltage_b", "voltage_c", "current_a", "current_b", "current_c", "power",
        "energy", "faults", "door_open", "cable_fault", "over_temperature", "temperature",
        *("contactor_%d" % i for i in range(1, 9)),
    )
    counters = ("energy",)
    writable = tuple("contactor_%d" % i for i in range(1, 9))

    def setup(self) -> None:
        self.circuits = int(self.params.get("circuits", 4))
        self.loads = [
            self.param("circuit_power", 1200.0, 0.2) * (1.0 + 0.1 * uniform(self.seed, "c%d" % i, -1, 1))
            for i in range(self.circuits)
        ]
        self.nominal_voltage = self.param("voltage", 230.0)

    def initial_state(self) -> dict:
        state = Model.initial_state(self)
        for i in range(1, 9):
            key = "contactor_%d" % i
            wanted = self.params.get(key, self.params.get("contactors", True))
            state[key] = bool(wanted) and i <= self.circuits
        return state

    def initial_counter(self, name: str) -> float:
        return round(self.param("energy_start", uniform(self.seed, "e0", 500.0, 9000.0))) * 3600000.0

    def _phase_power(self, state: dict, phase: int) -> float:
        total = 0.0
        for i in range(self.circuits):
            if i % 3 == phase and state.get("contactor_%d" % (i + 1)):
                total += self.loads[i]
        if state.get("cable_fault") and phase == 0:
            total *= 0.5  # a damaged feeder: part of circuit 1 is dark
        return total

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        return sum(self._phase_power(state, ph) for ph in range(3)) * (b - a)

    def instant(self, name: str, t: float, state: dict) -> object:
        if name.startswith("contactor_"):
            return bool(state.get(name))
        if name in ("voltage_a", "voltage_b", "voltage_c"):
            return self.nominal_voltage + self.jitter(name, t, 1.2)
        if name in ("current_a", "current_b", "current_c"):
            return self._phase_power(state, "abc".index(name[-1])) / (self.nominal_voltage * 0.95)
        if name == "power":
            return sum(self._phase_power(state, ph) for ph in range(3))
        if name == "temperature":
            return 70.0 if state.get("over_temperature") else 30.0 + self.jitter("temperature", t, 0.3)
        if name == "faults":
            return fault_word(state)
        if name in FAULT_BITS:
            return bool(state.get(name))
        raise KeyError(name)
