"""Plausibility of readings: the range a point's value can physically have, and rules over time.

A profile point may carry (docs/architecture.md, "Device profiles"):

    "plausible": {"min": 0, "max": 500}                  # the voltage of a 230 V meter
    "plausible": {"min": 0, "rule": "non_decreasing"}    # an energy or volume register

A value outside the range, NaN or infinite is implausible. Under ``non_decreasing`` a value below the
last good one is implausible too, and the last good value stays the reference. Only when
``REBASE_AFTER`` readings in a row are below the reference and do not decrease among themselves (a
meter that really was cleared or replaced) does the newest of them become the new reference and count
as good again. Text and on/off values are not checked.

The caller turns "implausible" into the point's quality (``IMPLAUSIBLE``): the value is not published,
a ``quality`` alarm is raised once, and the next good value clears it. Pure logic shared by the agent
and the firmware: no I/O, no clock; a `Plausible` holds three numbers of state.
"""

RULES = ("non_decreasing",)
KEYS = ("min", "max", "rule")
REBASE_AFTER = 3
IMPLAUSIBLE = "implausible"
_INF = float("inf")


def _finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and value not in (_INF, -_INF)


def check_spec(spec: object) -> str | None:
    """None when `spec` is a valid ``plausible`` object of a profile point, else what is wrong."""
    if not isinstance(spec, dict) or not spec:
        return 'plausible must be an object with min, max or rule, such as {"min": 0, "max": 500}'
    for key in spec:
        if key not in KEYS:
            return "plausible: unknown key %r (expected min, max, rule)" % (key,)
    for key in ("min", "max"):
        if key in spec and not _finite(spec[key]):
            return "plausible: %s must be a finite number, not %r" % (key, spec[key])
    if "min" in spec and "max" in spec and spec["min"] > spec["max"]:
        return "plausible: min %r is above max %r" % (spec["min"], spec["max"])
    if "rule" in spec and spec["rule"] not in RULES:
        return "plausible: rule %r is not one of %s" % (spec["rule"], ", ".join(RULES))
    return None


class Plausible:
    """The plausibility check of one point of one device, with the state its rule needs."""

    def __init__(self, low: float | None = None, high: float | None = None, rule: str | None = None) -> None:
        self.low = low
        self.high = high
        self.rule = rule
        self.last = None  # type: float | None  # the last good value: the reference of non_decreasing
        self.below = 0  # readings in a row below the reference, not decreasing among themselves
        self.below_last = None  # type: float | None

    def check(self, value: object) -> bool:
        """True when `value` is plausible (it becomes the last good value), False when it is not."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        if not _finite(value) or (self.low is not None and value < self.low) \
                or (self.high is not None and value > self.high):
            self.below = 0  # out of range: no evidence for a counter that started again
            self.below_last = None
            return False
        if self.rule == "non_decreasing" and self.last is not None and value < self.last:
            if self.below_last is not None and value < self.below_last:
                self.below = 0  # still going down: a glitch, not a counter that started again
            self.below += 1
            self.below_last = value
            if self.below < REBASE_AFTER:
                return False
        self.below = 0
        self.below_last = None
        self.last = value
        return True


def from_spec(spec: dict) -> Plausible:
    """A `Plausible` for a ``plausible`` object already checked with `check_spec`."""
    return Plausible(spec.get("min"), spec.get("max"), spec.get("rule"))


def for_points(points: list) -> dict:
    """{point name: Plausible} for the points (profile `Point` objects) that carry a ``plausible`` spec."""
    out = {}
    for point in points:
        spec = getattr(point, "plausible", None)
        if spec:
            out[point.name] = from_spec(spec)
    return out
