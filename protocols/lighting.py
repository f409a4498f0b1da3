"""The lighting rules the agent and the board share, so both gateways switch, retry, alarm and record
alike: the agent's lighting task (agent/lighting/runner.py) and the board's (firmware_py/lighting.py)
run protocols/schedule.py for *when*, and this module for *how*. Pure; the shared dialect.

* `ordered(values, control)`: the order one device's points are written. A lamp's control point goes
  last when it switches on (its dim level is set before it lights) and first when it switches off.
* `same(value, wanted, tolerance)`: a reading is what was written (within half the point's step), or
  the device lost its state (a reboot back to its power-on state) and is written again, at most once
  per `RESET_GAP` seconds.
* A write that fails raises a `schedule` alarm (value: the error; cleared with `APPLIED`) and is tried
  again `RETRY_AFTER` seconds later, or when the device answers again. A device known to be offline
  is not written: `not_written(why)` is its result in the event.
* `LightWatch`: a lamp whose lit point (its power above `lit_above`) differs from what its schedule
  wants of its control point for `alarm_after` seconds raises a `lighting` alarm: `BURNING` (lit while
  it should be off: burning by day) or `DARK`; cleared with `AS_SCHEDULED`.
* `event(...)`: the `…/event` map of one application (docs/payload.md §6).
"""

RETRY_AFTER = 60  # s: a failed write is tried again after this long (or when the device answers again)
RESET_GAP = 60  # s: a device is put right after losing its state at most once per this long
ALARM_AFTER = 300  # s: default [lighting] alarm_after

SCHEDULE = "schedule"  # alarm kind: a schedule's write to a device failed (point null)
LIGHTING = "lighting"  # alarm kind: a lamp's light differs from its schedule (point: its control point)
APPLIED = "applied"  # a schedule alarm's value when cleared
BURNING = "burning"
DARK = "dark"
AS_SCHEDULED = "as_scheduled"
#: why a schedule's state was written (the event's reason)
REASONS = ("start", "change", "online", "reset", "replaced", "retry")


def ordered(values: dict, control: object) -> list:
    """[(point, value)] of `values` in writing order: `control` last when it switches on, first when
    it switches off; the other points in name order."""
    names = sorted(values)
    items = [(p, values[p]) for p in names if p != control]
    if control in values:
        if values[control]:  # type: ignore[index]
            items.append((control, values[control]))  # type: ignore[index]
        else:
            items.insert(0, (control, values[control]))  # type: ignore[index]
    return items


def _number(value: object) -> bool:
    t = type(value)
    return t is int or t is float or t is bool


def same(value: object, wanted: object, tolerance: float) -> bool:
    """True when a reading `value` is the `wanted` value (numbers and true/false within `tolerance`:
    half the point's step, since the register rounds what is written)."""
    if _number(value) and _number(wanted):
        return abs(float(value) - float(wanted)) <= tolerance  # type: ignore[arg-type]
    return value == wanted


def tolerance(scale: object) -> float:
    """Half a step of a point with `scale` (a register holds multiples of it)."""
    step = abs(scale) if type(scale) is int or type(scale) is float else 0.0  # type: ignore[arg-type]
    return max(step / 2.0, 1e-9)


def not_written(why: str) -> dict:
    """The device result of a device the schedule did not write because it is offline."""
    return {"ok": False, "value": None,
            "error": "not written: device offline (%s); it is put right when it answers" % why}


def event(schedule: str, step: int, at: str, due: int, now: int, reason: str, state: dict,
          results: dict) -> dict:
    """The `…/event` map of one application of schedule `schedule` (step 1-based, as written)."""
    return {"kind": "schedule", "schedule": schedule, "step": step, "at": at, "due": due, "time": now,
            "reason": reason, "set": dict(state), "devices": results}


class LightWatch:
    """Whether one lamp's light matches its schedule: `reading` says when a `lighting` alarm is raised
    or cleared. A difference counts from the first reading after the schedule's state was written
    (`written()`), so a lamp that is switching is no alarm; times are the readings' own."""

    def __init__(self, control: object, lit: str, lit_above: float, alarm_after: float) -> None:
        self.control = control  # the control point (what the schedule wants), or None
        self.lit = lit  # the point that shows whether the lamp burns
        self.lit_above = lit_above
        self.alarm_after = alarm_after
        self.raised = None  # type: str | None  # BURNING or DARK while an alarm is raised
        self.since = None  # type: float | None  # reading time the current difference started
        self.settled = 0.0  # reading time of the first reading after the state was written
        self.fresh = True  # the next reading starts the grace period

    def written(self) -> None:
        """The schedule's state was (re)written: a difference counts from the next reading on."""
        self.fresh = True
        self.since = None

    def reading(self, value: object, when: float, wanted: object) -> "tuple | None":
        """A reading of the lit point at `when`; `wanted` is the schedule's control value (None: the
        lamp has no schedule for its control point). (alarm value, raised) to send, or None."""
        if type(value) is bool or not (type(value) is int or type(value) is float):
            return None
        if self.fresh:
            self.fresh = False
            self.settled = when
        if wanted is None:
            self.since = None
            if self.raised is not None:
                self.raised = None
                return (AS_SCHEDULED, False)
            return None
        lit = value > self.lit_above  # type: ignore[operator]
        if lit == bool(wanted):
            self.since = None
            if self.raised is not None:
                self.raised = None
                return (AS_SCHEDULED, False)
            return None
        start = when if when > self.settled else self.settled
        if self.since is None:
            self.since = start
        kind = BURNING if lit else DARK
        if self.raised == kind:
            return None
        if self.raised is not None:  # burning turned dark (or back): clear first, count afresh
            self.raised = None
            self.since = start
            return (AS_SCHEDULED, False)
        if when - self.since >= self.alarm_after:  # type: ignore[operator]
            self.raised = kind
            return (kind, True)
        return None
