"""A simulated device: a profile, an address, a behaviour model with its timeline, faults, counters.

`quantity(name, t)` is the model's value at simulated time t (SenML units); `truth(point, t)` is what
the device answers for a profile point at t, passed through the protocol's own encoding, i.e.
exactly what a correct client decodes (`codec value * scale + offset`).
"""

from __future__ import annotations

import threading

from protocols import registry
from protocols.profiles import Profile
from simulator.clock import Clock, quantise
from simulator.devices import MODELS
from simulator.devices.base import Model, Timeline, derive_seed
from simulator.faults import MODEL_KINDS, FaultError, FaultSet, check


class DeviceError(ValueError):
    """A request to a device that cannot be met (unknown point, value not allowed...)."""


class Device:
    """One virtual field device on a bus."""

    def __init__(self, id: str, profile: Profile, address: object, clock: Clock, seed: int,
                 params: dict | None = None, utc_offset: float = 8.0) -> None:
        model_class = MODELS.get(profile.kind)
        if model_class is None:
            raise DeviceError("device %s: kind %r (profile %s) is not simulated"
                              % (id, profile.kind, profile.model))
        self.id = id
        self.profile = profile
        self.protocol = profile.protocol
        self.address = address
        self.clock = clock
        self.seed = seed
        self.params = dict(params or {})
        if profile.kind == "electricity_meter" and "phases" not in self.params:
            three = any(p.name in ("voltage_b", "current_b") or p.di in ("02010200", "B612")
                        for p in profile.points)
            self.params["phases"] = 3 if three else 1
        self.model: Model = model_class(seed, self.params, clock.start, utc_offset)
        self.timeline = Timeline(self.model.initial_state())
        self.faults = FaultSet(derive_seed(seed, "faults"))
        self.model_faults: dict[str, dict] = {}
        self.lock = threading.RLock()
        self.counts = {"requests": 0, "answered": 0, "silent": 0, "exceptions": 0, "writes": 0}
        from simulator.servers import make_server

        self.server = make_server(self)

    # ------------------------------------------------------------------ values
    def quantity(self, name: str, t: float) -> object:
        """The model's value of quantity `name` at simulated time t (SenML units)."""
        with self.lock:
            return self._quantity(name, t)

    def _quantity(self, name: str, t: float) -> object:
        tq = quantise(t)
        model = self.model
        if name in model.counters:
            return self._counter(name, t, tq)
        try:
            return model.derived(name, tq, self._quantity)
        except KeyError:
            pass
        if name not in model.quantities:
            raise DeviceError("device %s (%s) has no quantity %r" % (self.id, model.kind, name))
        return model.instant(name, tq, self.timeline.state_at(t))

    def _counter(self, name: str, t: float, tq: float) -> float:
        reset = self.timeline.last("reset", t)  # a reset within the current step already shows
        if reset is None:
            total, since = self.model.initial_counter(name), self.model.start
        else:
            total, since = 0.0, reset
        for a, b, state in self.timeline.segments(since, tq):
            total += self.model.rate_integral(name, state, a, b)
        return total

    def truth(self, point: str, t: float) -> object:
        """What the device answers for profile point `point` at simulated time t, as a client decodes it."""
        if not self.profile.has_point(point):
            raise DeviceError("device %s (%s) has no point %r" % (self.id, self.profile.model, point))
        with self.lock:
            return self.server.point_value(self.profile.point(point), t)

    def state(self, t: float) -> dict:
        with self.lock:
            return self.timeline.state_at(t)

    def down(self, t: float) -> bool:
        """True while the device is rebooting (it answers nothing)."""
        with self.lock:
            return float(self.timeline.state_at(t).get("down_until", 0.0)) > t  # type: ignore[arg-type]

    # ------------------------------------------------------------------ changes
    def write(self, key: str, value: object, t: float | None = None) -> float:
        """Set a writable state (on, dim, valve, relay, contactor_N) from simulated time t (now)."""
        if key not in self.model.writable:
            raise DeviceError("device %s (%s): %r is not writable (writable: %s)"
                              % (self.id, self.model.kind, key, ", ".join(self.model.writable) or "none"))
        if t is None:
            t = self.clock.now()
        with self.lock:
            self.counts["writes"] += 1
            return self.timeline.add(t, key, value)

    def inject(self, kind: str, params: dict | None = None, t: float | None = None) -> dict:
        """Switch a fault on (wire and device faults at once, model faults from simulated time t)."""
        if kind not in MODEL_KINDS:
            error_reply = registry.family(self.protocol).error_reply
            if kind in ("exception", "abnormal") and kind != error_reply:
                raise FaultError("device %s speaks %s, whose devices refuse a request with an %s reply, not "
                                 "an %s (use %s)" % (self.id, self.protocol, error_reply, kind, error_reply))
            return self.faults.set(kind, params or {})
        checked = check(kind, params or {})
        if t is None:
            t = self.clock.now()
        with self.lock:
            if kind == "reboot":
                t = self.timeline.add(t, "down_until", t + float(checked["duration"]))
                if not checked.get("keep_counters"):
                    self.timeline.add(t, "reset", t)
                initial = self.model.initial_state()
                for key in self.model.writable:
                    self.timeline.add(t, key, initial.get(key))
                return checked
            if kind == "leak":
                if self.model.kind not in ("water_meter", "gas_meter", "flow_meter", "pressure", "level",
                                           "water_quality"):
                    raise FaultError("device %s (%s) cannot leak" % (self.id, self.model.kind))
                t = self.timeline.add(t, "leak", float(checked["rate"]))
                self.timeline.add(t, "leak_drop", float(checked["drop"]))
                self.timeline.add(t, "leak_level_rate", float(checked["level_rate"]))
                self.timeline.add(t, "leak_since", t)
            else:
                self.timeline.add(t, kind, True)
            self.model_faults[kind] = checked
        return checked

    def clear(self, kind: str | None = None, t: float | None = None) -> None:
        """Switch one fault (or all) off."""
        if t is None:
            t = self.clock.now()
        kinds = [kind] if kind is not None else list(self.model_faults) + list(self.faults.listing())
        with self.lock:
            for k in kinds:
                if k in MODEL_KINDS:
                    if self.model_faults.pop(k, None) is None:
                        continue
                    if k == "leak":
                        t = self.timeline.add(t, "leak", 0.0)
                        self.timeline.add(t, "leak_drop", 0.0)
                        self.timeline.add(t, "leak_since", None)
                    elif k != "reboot":
                        self.timeline.add(t, k, False)
                else:
                    self.faults.clear(k)

    def fault_listing(self) -> dict:
        with self.lock:
            out = self.faults.listing()
            out.update({k: dict(v) for k, v in self.model_faults.items()})
            return out

    def describe(self) -> dict:
        """id, protocol, address, profile, kind: what the ports file and the control channel list."""
        return {"id": self.id, "protocol": self.protocol, "address": self.address,
                "profile": self.profile.model, "kind": self.profile.kind}

    def __repr__(self) -> str:
        return "Device(%r, %s, %r)" % (self.id, self.profile.model, self.address)


def device_seed(site_seed: int, device_id: str, override: int | None = None) -> int:
    """The seed of a device: its own from the scenario, or derived from the site seed and its id."""
    return int(override) if override is not None else derive_seed(site_seed, device_id)
