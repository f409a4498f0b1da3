"""Where a command that passed the gate goes: one device's bus owner, every bus of a group, or the
lighting task (a schedule). The command gate (agent/command_gate.py) calls `switching` and `submit`
here as it would on the Scheduler, so signatures, expiry and at-most-once apply to a group or schedule
command as a whole: one id, one ack.

A **group command** names a `[groups]` entry as its `device` and writes (or reads) one point on every
device of the group. Every device's own checks (profile: point, writable, range) pass before anything
is queued, or the whole command is refused; every bus involved must have room in its queue, or it is
refused `busy`. Then each bus owner gets one job with its devices of the group, in the group's order,
and orders the writes between two poll transactions. The ack carries one result per device
(docs/payload.md §6). With `"readback": false`, a bus whose every device is in the group and of one
profile that marks the point `"broadcast": true` (a Modbus RTU line) is written with one broadcast to
unit 0 (no reply, no read-back) instead of one write per device.

A **schedule command** (`action` "schedule") replaces or restores a lighting schedule
(agent/lighting/runner.py); it is acked once the new schedule is on disk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from protocols.commands import group_outcome

__all__ = ["Dispatcher"]

log = logging.getLogger("fieldlink.commands")

SCHEDULE_ACTION = "schedule"


class Dispatcher:
    """Routes commands to the Scheduler (one device), to every bus of a group, or to the lighting task."""

    def __init__(self, scheduler: Any, groups: dict[str, list[str]], lighting: Any = None) -> None:
        self.scheduler = scheduler
        self.groups = groups
        self.lighting = lighting

    # -- what the command gate asks --------------------------------------------------------------

    def switching(self, cmd: dict) -> bool:
        """A schedule command switches lamps (at its steps); a group command switches when its point does
        on any device of the group."""
        if cmd.get("action") == SCHEDULE_ACTION:
            return True
        device = cmd.get("device")
        if isinstance(device, str) and device in self.groups:
            return any(self.scheduler.switching(dict(cmd, device=d)) for d in self.groups[device])
        return bool(self.scheduler.switching(cmd))

    def submit(self, cmd: dict, done: Callable[[dict], None],
               before: Callable[[], None] | None = None) -> dict | None:
        """As Scheduler.submit: None when accepted (`done(ack fields)` follows), else the refusal fields."""
        if cmd.get("action") == SCHEDULE_ACTION:
            return self._schedule(cmd, done, before)
        device = cmd.get("device")
        if isinstance(device, str) and device in self.groups:
            return self._group(device, cmd, done, before)
        return self._single(cmd, done, before)

    # -- one device ------------------------------------------------------------------------------

    def _single(self, cmd: dict, done: Callable[[dict], None],
                before: Callable[[], None] | None) -> dict | None:
        device, point = cmd.get("device"), cmd.get("point")
        watched = (self.lighting is not None and cmd.get("action", "write") == "write" and "value" in cmd
                   and isinstance(device, str) and isinstance(point, str)
                   and self.lighting.scheduled(device, point))
        if not watched:
            result: dict | None = self.scheduler.submit(cmd, done, before)
            return result
        lighting = self.lighting
        lighting.command_queued(device, point)

        def finished(fields: dict) -> None:
            lighting.command_done(device, point, cmd["value"], bool(fields.get("ok")))
            done(fields)

        refused: dict | None = self.scheduler.submit(cmd, finished, before)
        if refused is not None:
            lighting.command_done(device, point, cmd["value"], False)
        return refused

    # -- a schedule ------------------------------------------------------------------------------

    def _schedule(self, cmd: dict, done: Callable[[dict], None],
                  before: Callable[[], None] | None) -> dict | None:
        if self.lighting is None:
            return {"ok": False, "error": "this gateway runs no lighting schedules", "value": None}
        if before is not None:
            before()
        done(self.lighting.replace(cmd))
        return None

    # -- a group ---------------------------------------------------------------------------------

    def _group(self, group: str, cmd: dict, done: Callable[[dict], None],
               before: Callable[[], None] | None) -> dict | None:
        action = cmd.get("action", "write")
        point = cmd.get("point")
        if action not in ("write", "read"):
            return {"ok": False, "value": None,
                    "error": "group %s: a group command writes or reads a point; action %r is for one device"
                    % (group, action)}
        readback = cmd.get("readback", True)
        if not isinstance(readback, bool):
            return {"ok": False, "value": None,
                    "error": "readback must be true or false, not %r" % (readback,)}
        members = self.groups[group]
        jobs: dict[str, tuple[Any, list[tuple[str, Callable[[Any], Any]]]]] = {}
        for device in members:
            prepared = self.scheduler.prepare(dict(cmd, device=device))
            if isinstance(prepared, dict):  # one device refuses: nothing is written anywhere
                return {"ok": False, "value": None, "reason": prepared.get("reason", "device"),
                        "error": "group %s, device %s: %s" % (group, device, prepared.get("error"))}
            worker, run = prepared
            jobs.setdefault(worker.name, (worker, []))[1].append((device, run))
        for worker, _ in jobs.values():
            full = worker.full()
            if full is not None:
                return full
        if before is not None:
            before()
        watched = []
        if action == "write" and self.lighting is not None and isinstance(point, str):
            watched = [d for d in members if self.lighting.scheduled(d, point)]
            for device in watched:
                self.lighting.command_queued(device, point)
        collect = _Collect(group, members, len(jobs), self._finish_group(cmd, watched, done))
        for worker, runs in jobs.values():
            broadcast = None
            if action == "write" and not readback:
                broadcast = self._broadcaster(worker, [d for d, _ in runs], str(point))
            job = _broadcast_job(broadcast, [d for d, _ in runs], str(point), cmd.get("value")) \
                if broadcast is not None else _each_job(runs)
            names = [d for d, _ in runs]
            if not worker.offer(job, collect.bus_done(names)):
                collect.bus_done(names)(None, RuntimeError(worker.busy()["error"]))
        log.info("event=group_command group=%s devices=%d buses=%d action=%s point=%s", group, len(members),
                 len(jobs), action, point)
        return None

    def _finish_group(self, cmd: dict, watched: list[str],
                      done: Callable[[dict], None]) -> Callable[[dict], None]:
        def finish(fields: dict) -> None:
            if watched and self.lighting is not None:
                results = fields.get("value") or {}
                for device in watched:
                    ok = bool(results.get(device, {}).get("ok"))
                    self.lighting.command_done(device, str(cmd.get("point")), cmd.get("value"), ok)
            done(fields)

        return finish

    def _broadcaster(self, worker: Any, names: list[str], point: str) -> Any:
        """The driver that may broadcast `point` to every device of this bus, or None: every device on
        the bus is in `names`, all of one profile, whose driver allows a broadcast of the point."""
        if sorted(worker.devices) != sorted(names):
            return None
        drivers = [self.scheduler.drivers[d][1] for d in names]
        first = drivers[0]
        if any(d.profile.model != first.profile.model for d in drivers):
            return None
        if first.broadcast_refusal(point) is not None:
            return None
        return first


class _Collect:
    """The per-bus results of one group command, acked once every bus has finished."""

    def __init__(self, group: str, members: list[str], buses: int, done: Callable[[dict], None]) -> None:
        self.group = group
        self.members = members
        self.left = buses
        self.done = done
        self.results: dict[str, dict] = {}
        self.lock = threading.Lock()

    def bus_done(self, names: list[str]) -> Callable[[Any, BaseException | None], None]:
        def finished(results: Any, exc: BaseException | None) -> None:
            from agent.scheduler import outcome

            with self.lock:
                if exc is not None:
                    error = outcome(None, exc)["error"]
                    for name in names:
                        self.results[name] = {"ok": False, "error": error, "value": None}
                else:
                    self.results.update(results)
                self.left -= 1
                if self.left > 0:
                    return
                fields = group_outcome(self.members, self.results)
            self.done(fields)

        return finished


def _each_job(runs: list[tuple[str, Callable[[Any], Any]]]) -> Callable[[Any], dict]:
    """One bus's devices of a group, written (or read) one after the other, each with its read-back."""
    def job(link: Any) -> dict:
        from agent.scheduler import outcome

        results = {}
        for device, run in runs:
            try:
                value = run(link)
            except Exception as exc:
                results[device] = outcome(None, exc)
                continue
            results[device] = outcome(value, None)
        return results

    return job


def _broadcast_job(driver: Any, names: list[str], point: str, value: Any) -> Callable[[Any], dict]:
    """One broadcast for every device of the bus: each result says so, with no value read back."""
    def job(link: Any) -> dict:
        driver.broadcast(link, point, value)
        log.info("bus=%s event=broadcast point=%s value=%r devices=%d", driver.bus.name, point, value,
                 len(names))
        return {d: {"ok": True, "error": None, "value": None, "broadcast": True} for d in names}

    return job
