"""Commands on the board: check a command from …/cmd, queue it for its bus, run it, ack the result.

The checks and their texts are the agent's: the command rules of protocols/commands.py (signatures,
expiry, at-most-once ids, refusal texts), the profile's own `Point.check_write` and the protocol's
device steps (`check_action`), so both gateways refuse the same commands the same way; a refused
command sends nothing. Writes, reads and actions (DL/T 645 relay trip / close) run on the bus task
between two polls (firmware_py/poller.py) through the device steps. A command whose `device` names a
group of the config goes to firmware_py/groups.py (loaded only when the config has groups). A hand
write of a point a lighting schedule sets is told to the lighting task (it holds until the next
step). Schedule commands (`action` "schedule") are refused: a board runs the schedules of its
config.json.

`Remote` keeps the rules' state on the board:

    remote = Remote(cfg.get("commands"), gateway_id, "/cmdids.cbor")
    cmd = remote.open(payload, retained, rt.now())   # a Command, or raises Refused (ack its text)
    remote.check(cmd, switching, rt.now())           # signature policy, expiry, clock; None, or the
                                                     # original ack (bytes) of a repeat
    remote.begin(cmd, rt.now())                      # remembered, in flash, before the bus runs it
    remote.finish(cmd.id, ack_bytes)                 # the ack it finished with, in flash

The compiled config carries `commands`: {"signed": "switching" | "all" | "none", "keys": [64 hex
characters, ...], "id_window": seconds, "queue": commands waiting per bus}. The keys stay in this
object and are never printed. A retained delivery is never run. A command with `exp` is refused while
the board's clock is not set (before 2020: no NTP yet). The ids (at most `LIMIT`) are written to a small
file as one CBOR list after every change: write a temporary file, then rename it over the old one, so
a power cut leaves the old list or the new one.
"""

import binascii
import os

from firmware_py import clock, rt
from protocols import cbor
from protocols import commands as rules
from protocols.commands import IdMemory, Refused
from protocols.errors import ProtocolError, WriteRefused, error_kind

ACTION_VALID_S = 300  # a relay command is valid at the meter until now + this (local time)
MAX_WAITING = 4  # deliveries from …/cmd waiting to be checked
MAX_ACKS = 8  # encoded acks waiting for the uplink

LIMIT = 32  # ids remembered on the board (the ones that expire first are forgotten beyond that)
COUNTERS = ("received", "queued", "done", "failed", "repeats", "refused")
NO_VALUE = "point has no value (not read)"
NO_CLOCK = ("the board's clock is not set (no NTP since power-up): the meter would get a validity time "
            "that has passed; nothing was sent")
SCHEDULE = "schedule"  # the action that replaces a lighting schedule on the agent
NO_SCHEDULE_COMMANDS = ("this gateway is a board: it runs the schedules compiled into its config.json; "
                        "change [[schedules]] in the config and flash it again (fieldlink firmware flash)")


def checked(inv, d: int, ni: int, point, value) -> tuple:
    """(write spec, None) when device `d` may be written `value` at `point` (name index `ni`), else
    (write spec or None, the reason): the profile's own Point.check_write, as the agent checks."""
    from protocols.profiles import Point

    ws = inv.writes.get(d << 16 | ni) if ni >= 0 else None
    spec: dict
    if ws is None:
        spec = {"name": point}
    else:
        spec = inv.steps(d).point_spec(ws[4:])  # e.g. the register grid: no rounding on the wire
        spec.update({"name": point, "writable": True, "min": ws[1], "max": ws[2], "values": ws[3]})
    return ws, Point(spec).check_write(value)


def failure(exc) -> str:
    """The error text of a failed write, read or action (as the agent's acks)."""
    if isinstance(exc, WriteRefused):
        return str(exc)
    if isinstance(exc, ProtocolError):
        return "%s: %s" % (error_kind(exc), exc)
    return "command failed: %s" % exc


class Remote:
    def __init__(self, spec, gateway_id: str, path: str) -> None:
        spec = spec or {}
        self.mode = spec.get("signed", "switching")
        self.keys = [binascii.unhexlify(k) for k in spec.get("keys", ())]
        self.id_window = int(spec.get("id_window", 86400))
        self.queue = int(spec.get("queue", 4))
        self.max_bytes = int(spec.get("max_bytes", 4096))
        self.gateway_id = gateway_id
        self.path = path
        self.memory = IdMemory(LIMIT)
        self.counters: dict = {}
        for k in COUNTERS:
            self.counters[k] = 0
        self.refused_by: dict = {}
        self.load()

    # -- flash --------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                rows = cbor.loads(f.read())
        except Exception:  # none yet (OSError), or torn (CborError): start empty
            return
        if type(rows) is list:
            self.memory.load(rows, 0)  # every id, whatever the clock reads now (`begin`)

    def save(self) -> None:
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(cbor.dumps(self.memory.rows()))
        try:
            os.rename(tmp, self.path)
        except OSError:  # a port whose rename does not replace: remove, then rename
            try:
                os.remove(self.path)
            except OSError:
                pass
            os.rename(tmp, self.path)

    # -- the rules ------------------------------------------------------------------------------
    def refuse(self, reason: str) -> None:
        self.counters["refused"] += 1
        self.refused_by[reason] = self.refused_by.get(reason, 0) + 1

    def open(self, data, retained: bool, now: int):
        """The command in `data` (a delivery on …/cmd), or Refused."""
        self.counters["received"] += 1
        if len(data) > self.max_bytes:
            raise Refused("too_large", rules.refusal("too_large", len(data), self.max_bytes),
                          rules.recover_id(bytes(data[:70])))
        if retained:
            raise Refused("retained", rules.refusal("retained"), rules.peek_id(bytes(data)))
        return rules.open_command(bytes(data), self.keys, self.gateway_id)

    def check(self, cmd, switching: bool, now: int):
        """Refused when the policy or the expiry rules it out; the original ack (bytes; b"" while it
        runs) when it is a repeat; None for a command to run."""
        rules.check_policy(cmd, self.mode, switching, now, self.id_window, clock.floor())
        prior = self.memory.check(cmd)
        if prior is not None:
            self.counters["repeats"] += 1
        return prior

    def begin(self, cmd, now: int) -> None:
        # Ids are forgotten only when the memory is full (the one that expires first goes), never
        # because the clock passed their time: the clock is the board's weakest part (unset after
        # power-up, then set by NTP, which a forged answer can move days ahead and back), and an id
        # forgotten in such a jump would let a replay of its command run again.
        self.memory.begin(cmd, rules.remember_until(cmd, now, self.id_window))
        self.save()
        self.counters["queued"] += 1

    def forget(self, cmd_id) -> None:
        self.memory.forget(cmd_id)
        self.save()

    def finish(self, cmd_id, ok: bool, ack: bytes) -> None:
        self.memory.finish(cmd_id, ack)
        self.save()
        self.counters["done" if ok else "failed"] += 1

    def stats(self) -> dict:
        out: dict = dict(self.counters)
        out["refused_by"] = dict(self.refused_by)
        out["signed"] = self.mode
        out["keys"] = len(self.keys)
        out["ids"] = len(self.memory.entries)
        out["ids_evicted"] = self.memory.evicted
        return out


class Commands:
    """The command inbox and the acks waiting for the uplink."""

    def __init__(self, inv, buses: list, counters: dict, remote: Remote, zone=None) -> None:
        self.inv = inv
        self.zone = zone  # the meters' local time (protocols/zone.Zone), for relay deadlines; None: UTC
        self.buses = buses
        self.counters = counters
        self.remote = remote
        self.inbox: list = []  # (payload, retained) from …/cmd
        self.acks: list = []  # encoded acks
        self.connected = lambda: True  # the uplink says whether an ack can go out
        self.lighting = None  # the lighting task (firmware_py/lighting.py), told of hand writes

    def received(self, payload, retained: bool = False) -> None:
        """A delivery on …/cmd (the MQTT client's callback): kept until the uplink checks it."""
        if len(self.inbox) < MAX_WAITING:
            self.inbox.append((bytes(payload), retained))
        else:
            self.counters["commands_bad"] += 1

    def take_waiting(self) -> None:
        """Check every waiting command (a bug in one must not take the uplink down)."""
        while self.inbox:
            data, retained = self.inbox.pop(0)
            try:
                self.take(data, retained)
            except Exception as exc:
                self.counters["commands_bad"] += 1
                print("fieldlink: command failed:", repr(exc))

    def take(self, data, retained: bool = False) -> None:
        """Check a command: a refusal or a repeat is acked now; a write, read or action waits for its
        bus, at most `queue` per bus."""
        self.counters["commands"] += 1
        remote = self.remote
        now = rt.now()
        try:
            cmd = remote.open(data, retained, now)
        except Refused as exc:
            return self.refuse(exc)
        cid = cmd.id
        device = cmd.device
        point = cmd.point
        action = cmd.fields.get("action", "write")
        inv = self.inv
        d = inv.find_device(device)
        g = inv.find_group(device) if d < 0 else -1
        ni = inv.find_name(point)
        marked = False
        if ni >= 0:
            for m in (inv.groups[g][1] if g >= 0 else ((d,) if d >= 0 else ())):
                if (m << 16 | ni) in inv.switching:
                    marked = True
        try:  # a schedule switches lamps at its steps: signed, as on the agent
            prior = remote.check(cmd, action == SCHEDULE or rules.is_switching(action, marked), now)
        except Refused as exc:
            return self.refuse(exc)
        if prior is not None:
            if prior:
                self.ack_raw(prior)  # a repeat: the original ack again, nothing runs
            return
        if action == SCHEDULE:
            return self.ack(cid, False, NO_SCHEDULE_COMMANDS)
        if g >= 0:
            from firmware_py import groups

            return groups.take(self, cmd, g, ni, action, now)
        if d < 0:
            return self.ack(cid, False, rules.refusal("unknown_device", repr(device)))
        bus = self.buses[inv.bus[d]]
        if action != "read" and action != "write":  # an action the profile lists (DL/T 645 relay)
            try:
                bus.check_action(inv, d, action)
            except WriteRefused as exc:
                return self.ack(cid, False, str(exc))
            self.queue(bus, cmd, (cid, d, -1, action, None, False), now)
            return
        if type(point) is not str:
            return self.ack(cid, False, rules.refusal("no_point"))
        if action == "read":
            self.queue(bus, cmd, (cid, d, ni, None, None, True), now)
            return
        if "value" not in cmd.fields:
            return self.ack(cid, False, rules.refusal("no_value"))
        value = cmd.fields["value"]
        ws, reason = checked(inv, d, ni, point, value)
        if reason is not None:
            return self.ack(cid, False, reason)
        if self.queue(bus, cmd, (cid, d, ni, ws, value, False), now) and self.lighting is not None:
            self.lighting.command_queued(d, ni)

    def refuse(self, exc) -> None:
        """A refusal: counted by reason, acked when the command had an id (else counted as bad)."""
        self.remote.refuse(exc.reason)
        if rules.valid_id(exc.cmd_id):
            self.ack(exc.cmd_id, False, exc.text)
        else:
            self.counters["commands_bad"] += 1

    def queue(self, bus, cmd, job, now: int) -> bool:
        """Onto the bus's job list unless `queue` jobs already wait (busy, acked); remembered in flash
        first. True when queued."""
        if len(bus.jobs) >= self.remote.queue:
            self.remote.refuse("busy")
            self.ack(cmd.id, False, rules.refusal("busy", bus.name, len(bus.jobs)))
            return False
        self.remote.begin(cmd, now)
        bus.jobs.append(job)
        return True

    async def read_point(self, bus, d: int, ni: int) -> tuple:
        """Read device `d` now: (True, the value of point `ni`), or (False, None) when it has none."""
        inv = self.inv
        got: list = []
        for r in inv.requests(d):
            await bus.request(inv, d, r, lambda _d, spec, v, _t: got.append((spec, v)), 0)
        for spec, v in got:
            if inv.specs[spec][0] == ni:
                return True, v
        return False, None

    async def run_job(self, bus, job) -> None:
        cid, d, ni, ws, value, read = job
        inv = self.inv
        ok = False
        try:
            if read:
                found, v = await self.read_point(bus, d, ni)
                if not found:
                    return self.done(cid, False, NO_VALUE)
            elif ni < 0:  # an action: its validity deadline in the board's local time
                now = rt.now()
                if not clock.is_set(now):
                    return self.done(cid, False, NO_CLOCK)
                until = now + ACTION_VALID_S
                if self.zone is not None:
                    until = self.zone.local(until)
                v = await bus.action(inv, d, ws, rt.localtime(until))
            else:
                v = await bus.write(inv, d, ws, value)
            ok = True
            self.done(cid, True, None, v)
        except Exception as exc:  # as the agent: an error ack, the poller goes on
            self.done(cid, False, failure(exc))
        if not read and ni >= 0 and self.lighting is not None:
            self.lighting.command_done(d, ni, value, ok)

    def done(self, cid, ok: bool, error, value=None) -> None:
        """A command finished: its ack is kept with its id in flash, then sent."""
        ack = rules.ack_bytes(cid, ok, error, value)
        try:
            self.remote.finish(cid, ok, ack)
        except OSError as exc:
            print("fieldlink: command id store:", exc.args[0] if exc.args else exc)
        self.ack_raw(ack)

    def ack_raw(self, ack: bytes) -> None:
        if len(self.acks) >= MAX_ACKS or not self.connected():
            self.counters["acks_dropped"] += 1
            return
        self.acks.append(ack)

    def ack(self, cid, ok: bool, error, value=None) -> None:
        self.ack_raw(cbor.dumps({"id": cid, "ok": ok, "error": error, "value": value}))
