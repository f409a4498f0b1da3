"""Alarm rules on readings: thresholds with hysteresis, and fault/leak flags. Pure logic, no I/O.

Shared by the agent and the firmware. A rule watches one point of one device; `RuleSet.check`
returns the transitions (raised or cleared) that a batch of readings causes, so an alarm is sent
once when it starts and once when it ends, not with every reading.
"""

KINDS = ("threshold", "fault", "leak")


class Rule:
    """One alarm condition on (device, point).

    With `above` and/or `below`, the alarm is raised when the value goes above `above` or below
    `below`, and cleared only once it is back inside by at least `hysteresis`. Without either (kinds
    `fault` and `leak`), a true or non-zero value raises it and a false or zero value clears it.
    """

    def __init__(self, device: str, point: str, kind: str = "threshold", above: float | None = None,
                 below: float | None = None, hysteresis: float = 0.0) -> None:
        if kind not in KINDS:
            raise ValueError("rule kind %r is not one of %s" % (kind, ", ".join(KINDS)))
        if kind == "threshold" and above is None and below is None:
            raise ValueError("a threshold rule on %s/%s needs above or below" % (device, point))
        self.device = device
        self.point = point
        self.kind = kind
        self.above = above
        self.below = below
        self.hysteresis = hysteresis or 0.0
        self.active = False

    def _condition(self, value: object) -> bool | None:
        if isinstance(value, (str, bytes)):
            return None  # text values carry no threshold meaning
        number = float(value)  # type: ignore[arg-type]
        if self.above is None and self.below is None:
            return number != 0
        slack = self.hysteresis if self.active else 0.0
        if self.above is not None and number > self.above - slack:
            return True
        if self.below is not None and number < self.below + slack:
            return True
        return False

    def update(self, value: object) -> bool | None:
        """True when `value` raises the alarm, False when it clears it, None when nothing changes."""
        condition = self._condition(value)
        if condition is None or condition == self.active:
            return None
        self.active = condition
        return condition


class RuleSet:
    """The rules of a gateway, indexed by (device, point)."""

    def __init__(self, rules: list) -> None:
        self.rules = {}  # type: dict
        for rule in rules:
            self.rules.setdefault((rule.device, rule.point), []).append(rule)

    def check(self, readings: list) -> list:
        """Transitions caused by `readings` [(device, point, value, time)], in order.

        Each is (rule, value, raised, time).
        """
        out = []  # type: list
        if not self.rules:
            return out
        for device, point, value, time in readings:
            for rule in self.rules.get((device, point), ()):
                change = rule.update(value)
                if change is not None:
                    out.append((rule, value, change, time))
        return out
