"""Units people read: the one table of display conversions from SenML units (what the wire carries)
to what a meter's display, a datasheet or a technician uses, and the rounding to a point's resolution.

    show(3.6e9, "J", resolution=36000)            -> ("1000.00", "kWh")
    show(229.8999938964844, "V", resolution=0.1)  -> ("229.9", "V")
    show(0.8, "/", resolution=0.01)               -> ("80", "%")
    show(3.6e9, "J", resolution=36000, si=True)   -> ("3600000000", "J")

The wire stays SenML (SI); only `read`, `monitor`, `status` and `run --once` show these. A point's
`resolution` is in its SenML unit (the profile's, also in the birth message); it is converted with the
value, so the number of decimals shown is the device's own (0.01 kWh, 0.1 V, 0.001 A).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["DISPLAY", "display_unit", "show", "show_text"]

#: SenML unit -> (unit shown, factor: shown = SenML value * factor). Units absent here are shown as
#: they are (V, A, Hz, m, pH, m/s, count ...). "Pa" is the one unit that depends on the value (below).
DISPLAY: dict[str, tuple[str, float]] = {
    "J": ("kWh", 1.0 / 3600000.0),
    "W": ("kW", 1.0 / 1000.0),
    "var": ("kvar", 1.0 / 1000.0),
    "VA": ("kVA", 1.0 / 1000.0),
    "m3": ("m³", 1.0),
    "m3/s": ("m³/h", 3600.0),
    "Cel": ("°C", 1.0),
    "s": ("h", 1.0 / 3600.0),
    "/": ("%", 100.0),
    "kg/m3": ("mg/L", 1000.0),
    "S/m": ("µS/cm", 10000.0),
    "Pa": ("kPa", 1.0 / 1000.0),
}
#: pressures at or above this many Pa are shown in MPa (water mains in kPa, boilers and pumps in MPa)
MPA_FROM = 1000000.0
#: ratios ("/") that people read as ratios, not percentages
RATIO_POINTS = ("power_factor",)


def display_unit(unit: str, value: Any = None, point: str = "", resolution: Any = None) -> tuple[str, float]:
    """(unit shown, factor) for a value in SenML `unit`."""
    if (
        unit == "Pa"
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and abs(value) >= MPA_FROM
    ):
        return "MPa", 1.0 / 1000000.0
    if unit == "/":
        # a ratio shown in % only when it has a fine resolution (dim 0.01); on/off and contactor states
        # (resolution 1 or none) and power factors stay as they are
        if point.endswith(RATIO_POINTS) or not isinstance(resolution, (int, float)) or resolution >= 1:
            return "", 1.0  # a plain number
    return DISPLAY.get(unit, (unit, 1.0))


def _decimals(step: float) -> int:
    """Decimals that show a value on a grid of `step` (0.01 -> 2, 0.1 -> 1, 100 -> 0)."""
    if not step > 0 or math.isinf(step):
        return 0
    return max(0, min(12, math.ceil(-math.log10(step) - 1e-9)))


def _number(value: float, decimals: int | None) -> str:
    if decimals is None:
        text = "%.6g" % value
        return "0" if text == "-0" else text
    text = "%.*f" % (decimals, value)
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text


def show(
    value: Any, unit: str | None, resolution: Any = None, si: bool = False, point: str = ""
) -> tuple[str, str]:
    """(value text, unit text) of one reading for a person; `si` keeps the SenML unit."""
    unit = unit or ""
    if isinstance(value, bool):
        return ("true" if value else "false"), unit
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex(), unit
    if not isinstance(value, (int, float)):
        return str(value), unit
    shown, factor = (unit, 1.0) if si else display_unit(unit, value, point, resolution)
    step = resolution * factor if isinstance(resolution, (int, float)) and resolution > 0 else None
    if step is None and isinstance(value, int):
        step = factor  # a whole number in the SenML unit: its resolution is 1 (-200 W -> -0.200 kW)
    if isinstance(value, int) and factor == 1.0:
        return str(value), shown
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value), shown
    return _number(value * factor, _decimals(step) if step is not None else None), shown


def show_text(value: Any, unit: str | None, resolution: Any = None, si: bool = False, point: str = "") -> str:
    """`show` as one string: "229.9 V", "1000.00 kWh"."""
    number, shown = show(value, unit, resolution, si, point)
    return "%s %s" % (number, shown) if shown else number
