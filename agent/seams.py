"""The typed seams between the agent's layers: what the scheduler hands up, what the gateway needs of
an uplink, what the uplink needs of a publisher. `typing.Protocol` classes, so a test double (such as
agent/tests/uplink_driver.py) is checked against the same contract as the real part.

    scheduler --Sink/Events/QualityReport--> gateway --Uplink--> uplink --Publisher--> MQTT
    MQTT --payload--> publisher --CommandTaker.take--> command gate --> scheduler.submit
                      gateway <--send_ack(ack bytes)-- command gate
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["CommandHandler", "CommandTaker", "Events", "Publisher", "QualityReport", "Reading", "Sink",
           "Uplink"]

#: (device, point, value, POSIX time)
Reading = tuple[str, str, Any, float]
#: fresh readings of one poll, from a bus owner
Sink = Callable[[list[Reading]], None]
#: a device's comms state changed: (device, online, reason)
Events = Callable[[str, bool, str], None]
#: a point's quality changed: (device, point, quality text or None when good again, time)
QualityReport = Callable[[str, str, "str | None", float], None]
#: a command map in, its ack fields {ok, error, value} out
CommandHandler = Callable[[dict], dict]


class CommandTaker(Protocol):
    """Where `…/cmd` payloads go (agent/command_gate.py: CommandGate)."""

    def take(self, payload: bytes, retained: bool = False) -> None: ...


class Uplink(Protocol):
    """What the gateway needs of its uplink (agent/uplink.py: batcher, outbox, publisher, health)."""

    commands: CommandTaker | None

    def start(self) -> None: ...

    def stop(self, flush: bool = True, drain: float = 2.0, timeout: float = 1.0) -> None: ...

    def submit(self, readings: list[Reading] | tuple[Reading, ...]) -> None: ...

    def device_state(self, device_id: str, online: bool, reason: str = "") -> None: ...

    def alarm(self, device: str, point: str | None, kind: str, value: Any, raised: bool,
              when: float | None = None) -> None: ...

    def event(self, event: dict) -> None: ...

    def add_counters(self, name: str, getter: Callable[[], Any]) -> None: ...

    def send_ack(self, payload: bytes, ran: bool = False) -> None: ...


class Publisher(Protocol):
    """What the uplink needs of its MQTT side (agent/publisher.py)."""

    connected: bool
    topic_data: str
    commands: CommandTaker | None

    def start(self) -> None: ...

    def stop(self, drain: float = 0.0, timeout: float = 5.0) -> None: ...

    def wake(self) -> None: ...

    def publish_alarm(self, alarm: dict) -> int: ...

    def publish_event(self, event: dict) -> int: ...

    def stats(self) -> dict: ...

    def wait_idle(self, timeout: float) -> bool: ...

    def send_ack(self, payload: bytes, ran: bool = False) -> None: ...
