"""What every device driver shares: the poll plan, result types, scaling and error kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.link.base import Link, LinkClosed, LinkTimeout
from agent.planner import PlannedRequest, device_options, plan_device
from protocols.errors import AbnormalReply, CrcError, EncodingError, ExceptionResponse, FrameError
from protocols.profiles import Point, Profile

__all__ = ["Driver", "ReadResult", "WriteRefused", "error_kind", "scaled"]


class WriteRefused(Exception):
    """A command that may not be executed; nothing was sent to the bus."""


@dataclass
class ReadResult:
    """What one transaction gave: good values and the points that came back without one."""

    values: list[tuple[str, Any]] = field(default_factory=list)  # (point, value)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (point, quality / reason)


def error_kind(exc: BaseException) -> str:
    """The counter a failure is booked under."""
    if isinstance(exc, LinkTimeout):
        return "timeout"
    if isinstance(exc, LinkClosed):
        return "port"
    if isinstance(exc, CrcError):
        return "crc"
    if isinstance(exc, FrameError):
        return "frame"
    if isinstance(exc, ExceptionResponse):
        return "exception"
    if isinstance(exc, AbnormalReply):
        return "abnormal"
    if isinstance(exc, EncodingError):
        return "decode"
    return "other"


def scaled(raw: Any, point: Point) -> Any:
    """The published value: codec value * scale + offset (bools and text pass unchanged)."""
    if isinstance(raw, (bool, str, bytes)) or raw is None:
        return raw
    scale, offset = point.scale, point.offset
    if scale == 1 and offset == 0:
        return raw
    value = raw * scale + offset
    if isinstance(value, float):
        value = round(value, 9)  # 2301 * 0.1 -> 230.1, not 230.10000000000002
        if value.is_integer() and isinstance(raw, int) and isinstance(scale, int) and isinstance(offset, int):
            value = int(value)
    return value


class Driver:
    """Turns a device config and its profile into transactions on a link."""

    protocol = ""

    def __init__(self, device: Any, profile: Profile, bus: Any) -> None:
        self.device = device
        self.profile = profile
        self.bus = bus
        self.options = device_options(device, profile)
        self.tcp = bus.port.lower().startswith("tcp://")
        self.plan = plan_device(device, profile, bus)
        self.requests: list[PlannedRequest] = self.plan.requests

    @property
    def id(self) -> str:
        return str(self.device.id)

    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        """Run one planned request; raises LinkError or ProtocolError when it fails as a whole."""
        raise NotImplementedError

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
        raise WriteRefused("%s devices take no writes" % self.protocol)

    #: the actions this driver can carry out (a profile lists those a model allows)
    actions: tuple[str, ...] = ()

    def check_action(self, name: Any) -> None:
        """Nothing when a command may run action `name` on this device; WriteRefused saying why not."""
        if not self.profile.has_action(name):
            listed = ", ".join(self.profile.action_names()) or "none"
            raise WriteRefused('device %s (profile %s) has no action %s; expected write, read or an action '
                               "the profile lists (%s)"
                               % (self.id, self.profile.model, _quoted(name), listed))
        if name not in self.actions:
            raise WriteRefused("device %s: %s devices cannot carry out action %s"
                               % (self.id, self.protocol, _quoted(name)))

    def action(self, link: Link, name: str) -> Any:
        """Run an action the profile allows (checked first; nothing is sent when refused); the state read
        back, or None when the device has no point for it."""
        self.check_action(name)
        raise WriteRefused("%s devices carry out no actions" % self.protocol)


def _quoted(name: Any) -> str:
    return '"%s"' % name if isinstance(name, str) else repr(name)
