"""Lighting schedules on the board: the agent's lighting task (agent/lighting/runner.py) in asyncio,
running the same code: protocols/schedule.py says which step is in force and when the next comes (the
zone compiled by the host, protocols/zone.py), protocols/lighting_run.py (the run's state machine, the
agent's too) what is written when, retried, alarmed and recorded; this module carries its decisions out
on the board's buses, ring and alarms. It needs no network: the board switches its lamps all night on
its own clock.

* At boot, and whenever the step in force changes, the state in force is written to every device of
  the schedule through its bus task, between two polls, each point read back (a lamp's control point
  last when it switches on, first when it switches off).
* A device that answers again after it was reported offline gets the state in force again
  (`online`), so does one whose reading of a scheduled point shows it lost its state (`reset`, at
  most once a minute); a device known to be offline is not written, and is put right when it answers.
* A failed write raises a `schedule` alarm, is tried again a minute later and clears the alarm when it
  succeeds; a lamp whose lit point disagrees with its schedule for `alarm_after` seconds raises a
  `lighting` alarm (burning by day, dark at night).
* A hand write (a command) of a scheduled point holds until the next step.
* Every application is an `…/event` record in the flash ring, in order with the data and alarms.
* While the board's clock is not set (firmware_py/clock.py: no NTP since power-up) it writes
  nothing: it cannot know which step is in force. `…/health` → `lighting.clock_set` says so.

The compiled config's `lighting` (agent/firmware/config.py) carries the place and the schedules with
their groups resolved to device ids; its top-level `zone` the time zone (the app builds one Zone for
the schedules and relay deadlines); `lamps` the control and lit points.
"""

from firmware_py import clock, log, rt
from firmware_py.commands import checked, failure
from protocols import cbor, lighting
from protocols.compiled import CompiledError
from protocols.lighting_run import COUNTERS, IDLE_RECHECK, Machine, Run
from protocols.schedule import Place, ScheduleError, parse_schedule


class Apply:
    """A bus job (firmware_py/poller.py runs `run(bus)`): one application's writes on one bus."""

    def __init__(self, task, app, devices: list) -> None:
        self.task = task
        self.app = app
        self.devices = devices

    async def run(self, bus) -> None:
        task = self.task
        inv = task.inv
        results: dict = {}
        for d in self.devices:
            read_back: dict = {}
            error = None
            for point, value in task.machine.values(self.app, d, task.control(d)):
                ni = inv.find_name(point)
                ws, error = checked(inv, d, ni, point, value)
                if error is not None:
                    break
                try:
                    read_back[point] = await bus.write(inv, d, ws, value)
                except Exception as exc:
                    error = failure(exc)
                    break
            results[d] = {"ok": error is None, "error": error, "value": read_back or None}
        task.bus_done(self.app, results)


class Lighting:
    """The schedules of one board; `run` is its task, the poller and commands call the hooks."""

    def __init__(self, spec: dict, zone, inv, buses: list, poller, alarms, packs, max_event: int) -> None:
        self.inv = inv
        self.buses = buses
        self.poller = poller
        self.alarms = alarms
        self.packs = packs
        self.max_event = max_event  # bytes an event record may have (a ring slot)
        self.zone = zone  # protocols/zone.Zone, the config's top-level zone (the app builds it once)
        try:
            place = Place(spec["latitude"], spec["longitude"], zone)
        except ValueError as exc:
            raise CompiledError("config.json: lighting: %s" % exc) from None
        self.alarm_after = spec["alarm_after"]
        self.watched = bytearray(inv.count)  # 1: the poller tells this task of the device's readings
        self.scheduled = bytearray(len(inv.names))  # 1: a name index some schedule sets
        runs = []
        schedules = spec["schedules"]
        for i in range(len(schedules)):
            raw = schedules[i]
            try:
                schedule = parse_schedule(raw)
            except ScheduleError as exc:
                raise CompiledError("config.json: lighting.schedules[%d]: %s" % (i, exc)) from None
            devices = []
            for device in raw["devices"]:
                d = inv.find_device(device)
                if d < 0:
                    raise CompiledError("config.json: lighting.schedules[%d]: no device %r" % (i, device))
                devices.append(d)
                self.watched[d] = 1
            schedule.devices = None  # the ids stay in the inventory: the run keeps device indexes
            for p in schedule.points:
                ni = inv.find_name(p)
                if ni >= 0:
                    self.scheduled[ni] = 1
            runs.append(Run(schedule, devices))
        watches: dict = {}  # device -> protocols.lighting.LightWatch of a lamp whose lit point is polled
        self.lit: dict = {}  # device -> name index of its lit point
        for d in inv.lamps:
            lamp = inv.lamps[d]
            if lamp[3] >= 0:
                watches[d] = lighting.LightWatch(self.control(d), inv.names[lamp[3]].decode(), lamp[4],
                                                 self.alarm_after)
                self.lit[d] = lamp[3]
                self.watched[d] = 1
        self.counters: dict = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.counters["errors"] = 0
        self.machine = Machine(place, self.counters, self._tolerance, self._offline, self._bus_of,
                               inv.device_id, watches)
        self.machine.set_runs(runs)
        self.clock_set = False
        self.wake = False
        self.epoch = rt.now()  # written_at counts from here (small integers cost no heap)

    def control(self, d: int):
        """The control point (name) of device `d` when it is a lamp, else None."""
        lamp = self.inv.lamps.get(d)
        if lamp is None or lamp[0] < 0:
            return None
        return self.inv.names[lamp[0]].decode()

    # -- the machine's questions and decisions ----------------------------------------------------

    def _tolerance(self, d: int, point: str) -> float:
        inv = self.inv
        ws = inv.writes.get(d << 16 | inv.find_name(point))
        scale = inv.steps(d).point_spec(ws[4:]).get("scale", 1) if ws is not None else 1
        return lighting.tolerance(scale)

    def _offline(self, d: int):
        """None when device `d` may be written; why not when it does not answer (it would only cost
        its bus the timeouts)."""
        if self.poller.online[d]:
            return None
        return self.poller.last_error[d] or "no answer"

    def _bus_of(self, d: int) -> int:
        return self.inv.bus[d]

    def _carry_out(self) -> None:
        """Carry out the machine's decisions: bus jobs, alarms and events into the ring, log lines."""
        self.machine.carry_out(self._write, self._alarm, self._event, log.log)

    def _write(self, app, b: int, devices: list) -> None:
        self.buses[b].jobs.append(Apply(self, app, devices))

    def _alarm(self, d: int, point, kind: str, value, raised: bool, when) -> None:
        self.alarms.alarm(d, point, kind, value, raised, rt.now() if when is None else when)

    def _event(self, app) -> None:
        """The application's `…/event` record(s) into the ring, after the readings made before it."""
        self._record(app, app.run.change, [d for d in app.run.devices if d in app.results], rt.now())

    # -- the clock ------------------------------------------------------------------------------

    def tick(self, now: int) -> int:
        """Bring every schedule up to `now` and queue the writes that are due; seconds until the next
        thing to do (a change, a retry)."""
        wait = self.machine.tick(now, IDLE_RECHECK)
        self._carry_out()
        return wait

    def bus_done(self, app, results: dict) -> None:
        """An Apply job finished on its bus: results by device index."""
        now = rt.now()
        self.machine.bus_done(app, results, now, now - self.epoch)
        self._carry_out()
        self.wake = True

    def _record(self, app, change, devices: list, now: int) -> None:
        """One event for `devices`; halves the devices over two events while it does not fit a slot."""
        inv = self.inv
        results = {}
        for d in devices:
            results[inv.device_id(d)] = app.results[d]
        data = cbor.dumps(lighting.event(app.run.schedule.name, change.index + 1, change.step.at,
                                         change.instant, now, app.reason, app.state, results))
        if len(data) + 1 <= self.max_event or len(devices) < 2:
            try:
                self.packs.add_event(data)
            except ValueError as exc:  # one device's result beyond a slot: counted, never fatal
                self.counters["errors"] += 1
                log.error("event not stored: %s" % exc)
            return
        half = len(devices) // 2
        self._record(app, change, devices[:half], now)
        self._record(app, change, devices[half:], now)

    # -- what the poller and the commands report --------------------------------------------------

    def device_state(self, d: int, online: bool) -> None:
        """Device `d` stopped answering, or answers again after that: then it gets the state in force."""
        if self.machine.device_state(d, online):
            self.wake = True

    def reading(self, d: int, ni: int, value, when: int) -> None:
        """A reading of a watched device: a scheduled point that differs from what was written (the
        device lost its state) is written again; a lamp's lit point is compared with its schedule."""
        if not self.scheduled[ni] and self.lit.get(d) != ni:
            return  # no point a schedule sets nor a lit point: nothing to decode
        point = self.inv.names[ni].decode()
        # the poller's `when` is the board's now (one clock): no second reading of it
        if self.machine.reading(d, point, value, when, when - self.epoch, when):
            self.wake = True
        self._carry_out()

    def command_queued(self, d: int, ni: int) -> None:
        """A command is about to write point `ni` of device `d` by hand: until it finished, readings
        of a scheduled point are no lost state."""
        if ni >= 0 and self.scheduled[ni]:
            self.machine.command_queued(d, self.inv.names[ni].decode())

    def command_done(self, d: int, ni: int, value, ok: bool) -> None:
        """The hand write finished: when it succeeded, it holds until the schedule's next step."""
        if ni >= 0 and self.scheduled[ni]:
            now = rt.now()
            self.machine.command_done(d, self.inv.names[ni].decode(), value, ok, now - self.epoch)
            self._carry_out()

    # -- health -------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """`…/health` → `lighting`, with the agent's keys where the board has the same."""
        machine = self.machine
        out: dict = dict(self.counters)
        schedules = {}
        for run in machine.runs:
            schedules[run.schedule.name] = machine.describe(run)
        out["schedules"] = schedules
        out["lamps_alarmed"] = machine.lamps_alarmed()
        out["clock_set"] = self.clock_set
        out["zone_expired"] = self.clock_set and self.zone.expired(rt.now())
        return out

    # -- the task -----------------------------------------------------------------------------------

    async def run(self, beats: list, slot: int, running) -> None:
        """The lighting task: ticks on the board's clock until `running()` is False; `beats[slot]`
        shows the watchdog it makes progress. Checks every second, every 100 ms in the second
        before a change (the writes start within about 0.1 s of the step's second)."""
        wait = 0
        while running():
            beats[slot] = rt.ticks_ms()
            now = rt.now()
            if not clock.is_set(now):
                if self.clock_set or not wait:
                    log.warning("lighting: the clock is not set; no schedule is applied until it is")
                self.clock_set = False
                wait = 1
                await rt.sleep_ms(1000)
                continue
            self.clock_set = True
            self.wake = False
            try:
                wait = self.tick(now)
            except Exception as exc:  # a bug must not end the street's schedule: try again soon
                self.counters["errors"] += 1
                log.error("lighting failed: %r" % (exc,))
                wait = 5
            step = 100 if wait <= 1 else 1000
            left = step
            while left > 0 and not self.wake and running():
                await rt.sleep_ms(100)
                left -= 100
