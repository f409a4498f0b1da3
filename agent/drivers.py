"""The device driver: a device config and its profile in, transactions on a link out.

There is one driver for every protocol. What a read, a write or an action does on the wire is the
protocol's sans-I/O device steps (`protocols/<protocol>/device.py`, the same code the board runs),
found through the registry; this module only runs them over a `Link`: each step yields a frame and
which reply is its answer, the link sends it and reads the reply (LinkTimeout, CRC and frame errors
are thrown back into the step). The request frames and decode specs are those `fieldlink
firmware-config` compiles for the board (`Family.request_frame`, `Family.decode_spec`), so agent
and board read a device the same way.
"""

from __future__ import annotations

import time
from typing import Any

from agent.link.base import Link, LinkClosed, LinkError, LinkTimeout
from agent.planner import PlannedRequest, device_options, plan_device
from protocols import errors, registry
from protocols.errors import ProtocolError, WriteRefused
from protocols.profiles import Point, Profile
from protocols.scaling import scaled as _scaled

__all__ = ["Driver", "ReadResult", "WriteRefused", "error_kind", "make_driver", "run_step", "scaled"]


class ReadResult:
    """What one transaction gave: good values and the points that came back without one."""

    __slots__ = ("bad", "values")

    def __init__(self, values: list[tuple[str, Any]] | None = None,
                 bad: list[tuple[str, str]] | None = None) -> None:
        self.values = [] if values is None else values  # (point, value)
        self.bad = [] if bad is None else bad  # (point, quality / reason)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadResult) and (self.values, self.bad) == (other.values, other.bad)

    def __repr__(self) -> str:
        return "ReadResult(values=%r, bad=%r)" % (self.values, self.bad)


class Prepared:
    """One planned request worked out once: what its device step needs on every poll (the protocol's
    `prepare(address, opts, frame, specs)`), its point names, and (frame, accept) when it is a plain
    read (the protocol's `plain_read`: one exchange of a fixed frame, a Modbus RTU read), else None."""

    __slots__ = ("names", "plain", "request", "step")

    def __init__(self, request: PlannedRequest, step: Any, names: list[str], plain: Any = None) -> None:
        self.request = request
        self.step = step
        self.names = names
        self.plain = plain


def error_kind(exc: BaseException) -> str:
    """The counter a failure is booked under: timeout and port (the link's), then the codecs' kinds
    (protocols.errors.error_kind, shared with the board)."""
    if isinstance(exc, LinkTimeout):
        return "timeout"
    if isinstance(exc, LinkClosed):
        return "port"
    return errors.error_kind(exc)


def scaled(raw: Any, point: Point) -> Any:
    """The published value of a point: codec value * scale + offset (protocols/scaling.py)."""
    return _scaled(raw, point.scale, point.offset)


class Driver:
    """Runs a device's protocol steps on a link; knows the device's plan, options and point specs."""

    #: a relay command's validity at the meter: now + this (seconds), in the meter's local time
    action_valid_s = 300
    #: the meters' time zone ([gateway] timezone, an IANA name; set by the scheduler); None: the system's
    timezone: str | None = None

    def __init__(self, device: Any, profile: Profile, bus: Any) -> None:
        self.device = device
        self.profile = profile
        self.bus = bus
        self.protocol = profile.protocol
        self.family = registry.family(profile.protocol)
        self.steps = registry.device(profile.protocol)
        self.options = device_options(device, profile)
        self.tcp = bus.port.lower().startswith("tcp://")
        self.address = str(device.address)
        self.plan = plan_device(device, profile, bus)
        self.requests: list[PlannedRequest] = self.plan.requests
        self.id = str(device.id)
        #: the steps' options for the planned reads, worked out once with the plan (writes and actions
        #: take `opts`, from the device's options as they are at the time)
        self.read_opts = self.opts
        self._prepared: dict[int, Prepared] = {}  # id(request) -> its Prepared (the plan's, made once)
        for request in self.requests:
            self._prepared[id(request)] = self._prepare(request)
        self._seq = 0

    @property
    def opts(self) -> Any:
        """The steps' options, as the board derives them from its compiled device entry."""
        entry = {"protocol": self.protocol}
        entry.update(self.family.compiled_entry(self.options, self.tcp))
        return self.steps.options(entry)

    def _prepare(self, request: PlannedRequest) -> Prepared:
        frame = self.family.request_frame(self.address, self.options, request)
        specs = [self.family.decode_spec(p, off, 0) for p, off in request.points]
        step = self.steps.prepare(self.address, self.read_opts, frame, specs)
        plain_read = getattr(self.steps, "plain_read", None)  # a protocol without plain reads has none
        plain = None if plain_read is None else plain_read(self.read_opts, step)
        return Prepared(request, step, [p.name for p, _ in request.points], plain)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 4) & 0xFFFF  # a step may use seq .. seq + 3
        return self._seq

    def run(self, link: Link, step: Any) -> Any:
        """Drive one step of this device's protocol over `link` (see `run_step`)."""
        return run_step(link, self.steps.reader, self.opts, step)

    # ------------------------------------------------------------------ reads
    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        """Run one planned request; raises LinkError or ProtocolError when it fails as a whole.

        The request's frame and decode are prepared once (`Prepared`); a poll only runs them."""
        names, values, bad = self.read_values(link, request)
        if bad:
            return ReadResult([(n, v) for n, v in zip(names, values, strict=True) if v is not None], bad)
        return ReadResult(list(zip(names, values, strict=True)), bad)

    def read_values(self, link: Link, request: PlannedRequest) -> tuple[list[str], list, list]:
        """`read` before its values are paired with their points: the request's point names, their values
        in the same order (None for a point without one) and those points as (point, why); `names` is the
        plan's own list, not to be changed. The bus owner
        makes readings of them at once (agent/scheduler.py), without the pairs in between."""
        prepared = self._prepared.get(id(request))
        if prepared is None or prepared.request is not request:  # not one of the plan's (fieldlink read)
            prepared = self._prepare(request)
        names = prepared.names
        bad: list[tuple[str, str]] = []

        def why(i: int, text: str) -> None:
            bad.append((names[i], text))

        self._seq = seq = (self._seq + 4) & 0xFFFF  # a step may use seq .. seq + 3
        steps = self.steps
        opts = self.read_opts
        plain = prepared.plain
        if plain is not None:
            # the usual poll (a Modbus RTU read): its one exchange is run here rather than through the
            # step generator, which would only yield this frame and decode the reply the same way
            reply = link.transact(plain[0], steps.reader(opts), accept=plain[1])
            values = steps.decode_reply(prepared.step, reply, why)
        else:
            step = steps.read_prepared(self.id, self.address, opts, prepared.step, seq, why)
            values = run_step(link, steps.reader, opts, step)
        return names, values, bad

    def read_points(self, link: Link, names: list[str]) -> ReadResult:
        """Read the named points (one request each, in plan order) — for `fieldlink read`."""
        wanted = set(names)
        result = ReadResult()
        for request in self.requests:
            if any(p.name in wanted for p, _ in request.points):
                part = self.read(link, request)
                result.values += [(n, v) for n, v in part.values if n in wanted]
                result.bad += [(n, q) for n, q in part.bad if n in wanted]
        return result

    # ------------------------------------------------------------------ commands
    def point(self, name: str) -> Point:
        if not self.profile.has_point(name):
            raise WriteRefused('device %s (profile %s) has no point "%s"'
                               % (self.id, self.profile.model, name))
        return self.profile.point(name)

    def check_write(self, name: str, value: Any) -> Point:
        """The point when a command may write `value` to it; WriteRefused saying why not."""
        point = self.point(name)
        reason = point.check_write(value)
        if reason is not None:
            raise WriteRefused(reason)
        return point

    def write(self, link: Link, name: str, value: Any) -> Any:
        """Write one point (checked first; nothing is sent when refused); returns the value read back."""
        point = self.check_write(name, value)
        try:
            spec = self.family.write_spec(point, self.options)
        except ProtocolError:
            raise WriteRefused("%s devices take no writes" % self.protocol) from None
        return self.run(link, self.steps.write(self.id, self.address, self.opts, name, spec, value,
                                               self._next_seq()))

    def broadcast_refusal(self, name: str) -> str | None:
        """None when point `name` may be written to every device of this bus by one broadcast, else why
        not: the profile marks the point `"broadcast"`, the protocol can broadcast (Family.broadcast)
        and its device steps can on this line and point (`broadcast_refusal`)."""
        if not self.profile.has_point(name):
            return 'profile %s has no point "%s"' % (self.profile.model, name)
        point = self.profile.point(name)
        if not point.broadcast or not self.family.broadcast:
            return "profile %s does not mark point %s for broadcast" % (self.profile.model, name)
        try:
            spec = self.family.write_spec(point, self.options)
        except ProtocolError:
            return "%s devices take no writes" % self.protocol
        reason: str | None = self.steps.broadcast_refusal(self.opts, name, spec)
        return reason

    def broadcast(self, link: Link, name: str, value: Any) -> None:
        """Write `value` to point `name` of every device on the bus at once: one request no device
        answers (the protocol's `broadcast` frame); the line then stays idle for the family's
        `broadcast_idle_ms` (Modbus: the profile's `broadcast_delay_ms`, default 100 ms) so every device
        has acted on it before the next request. Checked first: WriteRefused, nothing sent."""
        point = self.check_write(name, value)
        reason = self.broadcast_refusal(name)
        if reason is not None:
            raise WriteRefused(reason)
        frame = self.steps.broadcast(self.opts, name, self.family.write_spec(point, self.options), value)
        link.send(frame)
        link.hold(self.family.broadcast_idle_ms(self.options) / 1000.0)

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions this protocol can carry out (a profile lists those a model allows)."""
        return tuple(self.family.actions)

    def check_action(self, name: Any) -> None:
        """Nothing when a command may run action `name` on this device; WriteRefused saying why not."""
        if not self.profile.has_action(name):
            listed = ", ".join(self.profile.action_names()) or "none"
            raise WriteRefused('device %s (profile %s) has no action %s; expected write, read or an action '
                               "the profile lists (%s)"
                               % (self.id, self.profile.model, _quoted(name), listed))
        self.steps.check_action(self.id, self.opts, name)

    def action(self, link: Link, name: str) -> Any:
        """Run an action the profile allows (checked first; nothing is sent when refused); the state read
        back, or None when the device has no point for it."""
        self.check_action(name)
        return self.run(link, self.steps.action(self.id, self.address, self.opts, name, self.deadline(),
                                                self._next_seq()))

    def deadline(self, now: float | None = None) -> tuple:
        """(year, month, day, hour, minute, second) until which an action is valid at the meter:
        `action_valid_s` from `now`, in the meters' local time (`timezone`, else the system's)."""
        t = (time.time() if now is None else now) + self.action_valid_s
        if self.timezone is None:
            return tuple(time.localtime(t)[:6])
        import datetime
        import zoneinfo

        return tuple(datetime.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(self.timezone)).timetuple()[:6])


def run_step(link: Link, reader: Any, opts: Any, step: Any) -> Any:
    """Drive one step generator over `link`; its return value. Each exchange gets a new frame reader
    `reader(opts)`; link and protocol errors of an exchange are thrown into the step (which may catch
    them, e.g. for a read-back)."""
    try:
        out = step.send(None)
        while True:
            frame, accept = out
            try:
                reply = link.transact(frame, reader(opts), accept=accept)
            except (LinkError, ProtocolError) as exc:
                out = step.throw(exc)
                continue
            out = step.send(reply)
    except StopIteration as stop:
        return stop.value


def _quoted(name: Any) -> str:
    return '"%s"' % name if isinstance(name, str) else repr(name)


def make_driver(device: Any, profile: Profile, bus: Any) -> Driver:
    """The driver of a device (every protocol: the registry finds its steps)."""
    registry.family(profile.protocol)  # UnknownProtocol names the known ones
    return Driver(device, profile, bus)
