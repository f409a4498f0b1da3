"""What the gateway knows about each lamp: its control, fault and lit points, whether it counts as
"intelligent" for the L1P3 indicator, and whether its light matches its schedule.

A lamp (a device whose profile kind is `lamp`) is *intelligent* — controlled, monitored and
fault-alarmed — when the gateway reports it online, its control point is writable and its fault alarm
is armed: a `[[rules]]` entry of kind `fault` on its fault point. The control point is the profile's
point with `"role": "control"` (else `on`), the fault point the one with `"role": "fault"` (else
`lamp_failure`), the lit point the one with `"role": "lit"`: the lamp burns when that reading is above
its `lit_above` (the generic lamp: power above 1 W).

`LightWatch` (protocols/lighting.py, shared with the board) compares each reading of a lamp's lit point
with what its schedule wants and says when a `lighting` alarm is raised ("burning": lit while the
schedule wants it off, burning by day; "dark": not lit while it wants it on) or cleared
("as_scheduled"). A difference must last `alarm_after` seconds, counted from the first reading after the
schedule's state was last written, so a lamp that is switching is not an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config_model import Config
from protocols.lighting import AS_SCHEDULED as CLEARED
from protocols.lighting import BURNING, DARK, LightWatch

__all__ = ["BURNING", "CLEARED", "DARK", "LampFacts", "LightWatch", "lamp_facts", "light_watch"]


@dataclass(frozen=True)
class LampFacts:
    """One lamp's points for the lighting code and its static L1P3 facts."""

    device: str
    control: str | None  # the control point (writable), or None when the profile has none
    control_writable: bool
    fault: str | None  # the fault point
    fault_alarm_armed: bool  # a fault rule watches the fault point
    lit: str | None  # the point that shows whether the lamp burns (polled), or None
    lit_above: float = 0.0


def lamp_facts(config: Config) -> dict[str, LampFacts]:
    """LampFacts of every device of kind `lamp` in the config, by id."""
    armed = {(r.device, r.point) for r in config.rules if r.kind == "fault"}
    out = {}
    for device in config.devices:
        profile = config.profiles[device.profile]
        if profile.kind != "lamp":
            continue
        polled = set(device.points if device.points is not None else profile.point_names())
        control = profile.role_point("control")
        fault = profile.role_point("fault")
        lit = profile.role_point("lit")
        if lit is not None and (lit.name not in polled or lit.lit_above is None):
            lit = None
        out[device.id] = LampFacts(
            device=device.id,
            control=control.name if control is not None else None,
            control_writable=bool(control is not None and control.writable),
            fault=fault.name if fault is not None else None,
            fault_alarm_armed=fault is not None and (device.id, fault.name) in armed,
            lit=lit.name if lit is not None else None,
            lit_above=float(lit.lit_above) if lit is not None else 0.0,
        )
    return out


def light_watch(facts: LampFacts, alarm_after: float) -> LightWatch | None:
    """The LightWatch of a lamp whose lit point is polled, else None."""
    if facts.lit is None:
        return None
    return LightWatch(facts.control, facts.lit, facts.lit_above, alarm_after)
