"""Polling on the board: one task per bus, devices in turn when due, jobs between polls.

Readings go into the pack (firmware_py/packs.py) and through the threshold rules; a device that stops
answering is backed off and raises a `comms` alarm, cleared when it answers again: the schedule and
the online/offline rule are protocols/poll.py (the agent's), computed in ticks relative to when a
poll was due so that tick wrap-around does no harm. For the health's `buses.<bus>.devices`, as the
agent's: `last_seen` keeps each device's last answer, `since` when its online state last changed (POSIX
seconds, 0: never) and `reason` why (the comms alarm's text; "answering" from its first answer on).

The lighting task (firmware_py/lighting.py), when there is one, hears of every reading of a device it
watches and of every device that stops answering or answers again. A bus's jobs are commands (tuples,
firmware_py/commands.py) or objects with `run(bus)` (a group command's or a schedule's writes), run
in order between two polls.
"""

import array

from firmware_py import log, rt
from firmware_py.bus import FAILED, OK
from protocols import poll

BACKOFF_MAX_MS = poll.BACKOFF_MAX_S * 1000


class Poller:
    """Poll schedule and comms state of every device; readings to `packs`, alarms to `alarms`."""

    def __init__(self, inv, buses: list, packs, alarms, commands, counters: dict) -> None:
        self.inv = inv
        self.buses = buses
        self.packs = packs
        self.alarms = alarms
        self.commands = commands
        self.counters = counters
        n = inv.count
        self.due = [0] * n
        self.failures = bytearray(n)
        self.online = bytearray(b"\x01" * n)
        self.last_error: list = [None] * n
        self.last_seen = array.array("I", bytes(4 * n))  # POSIX seconds of the last answer; 0: never
        self.since = array.array("I", bytes(4 * n))  # POSIX seconds online last changed; 0: not yet
        self.reason: list = [None] * n  # why it is online or offline (shared strings while answering)
        self.lighting = None  # the lighting task (firmware_py/lighting.py), when there is one

    def sink(self, d: int, spec: int, value, now: int) -> None:
        """One reading: into the current pack, then through the device's rules."""
        inv = self.inv
        ni = inv.specs[spec][0]
        if not self.packs.add(inv.ids[d], inv.names[ni], value, now):
            return
        self.counters["made"] += 1
        if inv.ruled[d]:
            self.alarms.check_rules(d, ni, value, now)
        lighting = self.lighting
        if lighting is not None and lighting.watched[d]:
            lighting.reading(d, ni, value, now)

    async def poll_device(self, bus, d: int) -> None:
        """One poll cycle of device `d`; schedules the next, with backoff while it is silent."""
        inv = self.inv
        answered = False
        failed = False
        for r in inv.requests(d):
            outcome = await bus.request(inv, d, r, self.sink, rt.now(), True)
            if outcome == OK:
                answered = True
            elif outcome == FAILED:
                answered = True  # the device is there; it refused or garbled this request
                failed = True
                self.last_error[d] = "error"
            else:
                self.last_error[d] = "timeout"
                break  # a silent device gets no more of the line this cycle
        interval = inv.interval_ms[d]
        t = rt.ticks_ms()
        if answered:
            self.failures[d] = 0
            now = rt.now()
            first = not self.last_seen[d]
            self.last_seen[d] = now
            if not self.online[d]:
                self.online[d] = 1
                self.since[d] = now
                self.reason[d] = poll.online_reason(failed)
                log.info("bus %s: %s online again" % (bus.name, inv.device_id(d)))
                self.alarms.alarm(d, None, "comms", self.reason[d], False, now)
                if self.lighting is not None:
                    self.lighting.device_state(d, True)
            elif first:  # known online from its first answer on (null before, as on the agent)
                self.since[d] = now
                self.reason[d] = poll.online_reason(failed)
            due = self.due[d]
            self.due[d] = rt.ticks_add(due, poll.next_due(0, interval, rt.ticks_diff(t, due)))
            return
        if self.failures[d] < 255:
            self.failures[d] += 1
        fails = self.failures[d]
        if poll.offline_now(fails) and self.online[d]:
            self.online[d] = 0
            reason = poll.offline_reason(fails, self.last_error[d])
            self.since[d] = rt.now()
            self.reason[d] = reason
            log.warning("bus %s: %s offline: %s" % (bus.name, inv.device_id(d), reason))
            self.alarms.alarm(d, None, "comms", reason, True, rt.now())
            if self.lighting is not None:
                self.lighting.device_state(d, False)
        self.due[d] = rt.ticks_add(t, poll.retry_delay(fails, interval, bus.timeout_ms, BACKOFF_MAX_MS))

    async def run_jobs(self, bus) -> None:
        """The bus's waiting jobs, in order: commands, group commands, schedules' writes."""
        while bus.jobs:
            job = bus.jobs.pop(0)
            if type(job) is tuple:
                await self.commands.run_job(bus, job)
            else:
                await job.run(bus)

    async def poll_bus(self, bus, beats: list, slot: int, running) -> None:
        """The task of one bus: due devices in turn, its commands between them, until `running()` is
        False; `beats[slot]` shows the watchdog it makes progress."""
        while running():
            now_ms = rt.ticks_ms()
            beats[slot] = now_ms
            idle = True
            for d in bus.devices:
                await self.run_jobs(bus)
                if rt.ticks_diff(now_ms, self.due[d]) >= 0:
                    await self.poll_device(bus, d)
                    beats[slot] = rt.ticks_ms()
                    idle = False
            await self.run_jobs(bus)
            self.packs.commit_if_old()
            if idle:
                await rt.sleep_ms(20)
