"""What every behaviour model shares: deterministic noise, daily curves, an event timeline.

A model's quantities are pure functions of (seed, simulated time, events). Instantaneous quantities
are evaluated at the step that contains the time; counters are the exact integral of a rate over the
timeline's segments (state changes at their exact event times), so an energy counter always equals
the integral of the power the device reported.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Iterator
from typing import ClassVar

from simulator.clock import quantise

DAY = 86400.0
MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, name: str) -> int:
    """A stable per-device (or per-purpose) seed from a site seed and a name."""
    return mix64((seed & MASK64) ^ (zlib.crc32(name.encode()) << 20)) & 0x7FFFFFFF


def noise(seed: int, key: str, k: int) -> float:
    """Deterministic noise in [-1, 1) for (seed, key, step index k)."""
    h = mix64((mix64(seed ^ zlib.crc32(key.encode())) + (k & MASK64)) & MASK64)
    return (h >> 11) / float(1 << 52) - 1.0


def uniform(seed: int, key: str, low: float, high: float) -> float:
    """A deterministic constant in [low, high) for (seed, key): per-device variation."""
    return low + (noise(seed, key, 0) + 1.0) * 0.5 * (high - low)


class DailyCurve:
    """g(t) = c0 + sum(a * cos(2 pi n (t_local - peak) / DAY)), with its exact integral."""

    def __init__(self, c0: float, terms: list[tuple[float, int, float]], utc_offset: float = 0.0) -> None:
        # terms: (amplitude, harmonic n, peak hour of that harmonic)
        self.c0 = c0
        self.terms = [(a, n, peak * 3600.0 - utc_offset * 3600.0) for a, n, peak in terms]

    def __call__(self, t: float) -> float:
        g = self.c0
        for a, n, phase in self.terms:
            g += a * math.cos(2.0 * math.pi * n * (t - phase) / DAY)
        return g

    def integral(self, a: float, b: float) -> float:
        """The exact integral of g over [a, b] (seconds)."""
        total = self.c0 * (b - a)
        for amp, n, phase in self.terms:
            w = 2.0 * math.pi * n / DAY
            total += amp / w * (math.sin(w * (b - phase)) - math.sin(w * (a - phase)))
        return total


class Timeline:
    """State changes of one device at exact simulated times (writes, injected faults, reboots)."""

    def __init__(self, initial: dict) -> None:
        self.initial = dict(initial)
        self.times: list[float] = []
        self.changes: list[tuple[str, object]] = []

    def add(self, t: float, key: str, value: object) -> float:
        """Record `key = value` from time t on (never before the last change); returns the time used."""
        if self.times and t < self.times[-1]:
            t = self.times[-1]
        self.times.append(t)
        self.changes.append((key, value))
        return t

    def state_at(self, t: float) -> dict:
        """The state in force at time t."""
        state = dict(self.initial)
        for i in range(bisect.bisect_right(self.times, t)):
            key, value = self.changes[i]
            state[key] = value
        return state

    def segments(self, a: float, b: float) -> Iterator[tuple[float, float, dict]]:
        """(start, end, state) pieces covering [a, b] in which the state is constant."""
        if b <= a:
            return
        state = dict(self.initial)
        start = a
        for t, (key, value) in zip(self.times, self.changes):
            if t > a:
                if t >= b:
                    break
                if t > start:
                    yield start, t, dict(state)
                    start = t
            state[key] = value
        yield start, b, state

    def last(self, key: str, t: float) -> float | None:
        """The time of the last change of `key` at or before t."""
        found = None
        for i in range(bisect.bisect_right(self.times, t)):
            if self.changes[i][0] == key:
                found = self.times[i]
        return found


class Model:
    """A device kind's behaviour. Subclasses set the vocabulary and the physics."""

    kind = ""
    quantities: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()  # quantities that integrate a rate (subset of quantities)
    state_defaults: ClassVar[dict] = {}
    writable: tuple[str, ...] = ()  # state keys a client may write

    def __init__(self, seed: int, params: dict, start: float, utc_offset: float = 8.0) -> None:
        self.seed = seed
        self.params = dict(params)
        self.start = start
        self.utc_offset = utc_offset
        self.setup()

    def setup(self) -> None:
        """Derive per-device constants from the seed and params."""

    def param(self, name: str, default: float, spread: float = 0.0) -> float:
        """A parameter from the scenario, or `default` varied by +-spread (fraction) from the seed."""
        if name in self.params:
            return float(self.params[name])
        return default * (1.0 + spread * noise(self.seed, "param." + name, 0))

    def initial_state(self) -> dict:
        state = {"leak": 0.0, "reset": 0}
        state.update(self.state_defaults)
        for key in self.writable:
            if key in self.params:
                state[key] = self.params[key]
        return state

    def initial_counter(self, name: str) -> float:
        """The counter reading at the simulation start."""
        return 0.0

    def instant(self, name: str, t: float, state: dict) -> object:
        """An instantaneous quantity at step time t with the state in force."""
        raise KeyError(name)

    def rate_integral(self, name: str, state: dict, a: float, b: float) -> float:
        """Integral over [a, b] of the rate feeding counter `name`, with a constant state."""
        raise KeyError(name)

    def derived(self, name: str, t: float, get) -> object:  # type: ignore[no-untyped-def]
        """A quantity computed from others: `get(name, t)` reads one at time t."""
        raise KeyError(name)

    def jitter(self, key: str, t: float, amplitude: float) -> float:
        """Step noise of the given amplitude for quantity `key` at time t."""
        return amplitude * noise(self.seed, key, int(quantise(t)))

    def local_hour(self, t: float) -> float:
        return ((t + self.utc_offset * 3600.0) % DAY) / 3600.0
