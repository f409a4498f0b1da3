"""Behaviour models, one per device kind (the profile's `kind`)."""

from __future__ import annotations

from simulator.devices.base import Model
from simulator.devices.electricity import ElectricityMeter
from simulator.devices.lighting import Cabinet, Lamp
from simulator.devices.water import (
    FlowMeter,
    HeatMeter,
    LevelSensor,
    PressureSensor,
    WaterMeter,
    WaterQuality,
)

MODELS: dict[str, type[Model]] = {
    "electricity_meter": ElectricityMeter,
    "water_meter": WaterMeter,
    "gas_meter": WaterMeter,
    "heat_meter": HeatMeter,
    "lamp": Lamp,
    "cabinet": Cabinet,
    "level": LevelSensor,
    "pressure": PressureSensor,
    "water_quality": WaterQuality,
    "flow_meter": FlowMeter,
}

__all__ = ["MODELS", "Model"]
