"""Simulated time: a linear map from wall time, with a speed factor and a fixed step.

Device values are pure functions of simulated time, quantised to `STEP` seconds, so the value a
device answered at wall time `w` is `value(clock.sim(w))` and tests can ask for it afterwards.
"""

from __future__ import annotations

import math
import threading
import time

STEP = 1.0  # simulated seconds between device state updates


def quantise(sim_t: float) -> float:
    """The start of the simulated step that contains `sim_t`."""
    return math.floor(sim_t / STEP) * STEP


class Clock:
    """Simulated POSIX time `start + (wall - wall0) * speed`."""

    def __init__(self, start: float | None = None, speed: float = 1.0, wall0: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive, not %r" % speed)
        self.wall0 = time.time() if wall0 is None else wall0
        self.start = float(math.floor(self.wall0) if start is None else start)
        self.speed = float(speed)
        self._lock = threading.Lock()

    def sim(self, wall: float | None = None) -> float:
        """Simulated time at wall time `wall` (now by default)."""
        if wall is None:
            wall = time.time()
        with self._lock:
            return self.start + (wall - self.wall0) * self.speed

    def now(self) -> float:
        """Simulated time now."""
        return self.sim()

    def wall(self, sim_t: float) -> float:
        """The wall time at which simulated time reaches `sim_t`."""
        with self._lock:
            return self.wall0 + (sim_t - self.start) / self.speed

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on, keeping simulated time continuous."""
        if speed <= 0:
            raise ValueError("speed must be positive, not %r" % speed)
        now = time.time()
        current = self.sim(now)
        with self._lock:
            self.start, self.wall0, self.speed = current, now, float(speed)
