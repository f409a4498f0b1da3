"""Commands on the board: check a command from …/cmd, queue it for its bus, ack the result.

The checks and their texts are the agent's (agent/publisher.py, agent/scheduler.py), the profile's
own `Point.check_write` and the protocol's device steps (`check_action`), so both gateways refuse
the same commands the same way; a refused command sends nothing. Writes, reads and actions (DL/T 645
relay trip / close) run on the bus task between two polls (firmware_py/poller.py).
"""

from firmware_py import rt
from protocols import cbor
from protocols.errors import ProtocolError, WriteRefused, error_kind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACTION_VALID_S = 300  # a relay command is valid at the meter until now + this (local time)
MAX_WAITING = 4  # raw commands from …/cmd waiting to be checked
MAX_ACKS = 8  # encoded acks waiting for the uplink


class Commands:
    """The command inbox and the acks waiting for the uplink."""

    def __init__(self, inv, buses: list, counters: dict) -> None:
        self.inv = inv
        self.buses = buses
        self.counters = counters
        self.inbox: list = []  # raw payloads from …/cmd
        self.acks: list = []  # encoded acks
        self.connected = lambda: True  # the uplink says whether an ack can go out

    def received(self, payload) -> None:
        """A payload from …/cmd (the MQTT client's callback): kept until the uplink checks it."""
        if len(self.inbox) < MAX_WAITING:
            self.inbox.append(bytes(payload))
        else:
            self.counters["commands_bad"] += 1

    def take_waiting(self) -> None:
        """Check every waiting command (a bug in one must not take the uplink down)."""
        while self.inbox:
            data = self.inbox.pop(0)
            try:
                self.take(data)
            except Exception as exc:
                self.counters["commands_bad"] += 1
                print("fieldlink: command failed:", repr(exc))

    def take(self, data) -> None:
        """Check a command from …/cmd: a refusal is acked now; a write, read or action waits for its bus."""
        self.counters["commands"] += 1
        try:
            cmd: Any = cbor.loads(data)
        except Exception:
            self.counters["commands_bad"] += 1
            return
        if type(cmd) is not dict:
            self.counters["commands_bad"] += 1
            return
        cid = cmd.get("id")
        if type(cid) is not int and type(cid) is not str:
            self.counters["commands_bad"] += 1
            return
        device = cmd.get("device")
        point = cmd.get("point")
        action = cmd.get("action", "write")
        if type(device) is not str:
            return self.ack(cid, False, "command needs a device (text)")
        if type(point) is not str and type(action) is not str:
            return self.ack(cid, False, "command needs a point or an action (text)")
        inv = self.inv
        d = inv.find_device(device)
        if d < 0:
            return self.ack(cid, False, "unknown device %r" % (device,))
        bus = self.buses[inv.bus[d]]
        if action != "read" and action != "write":  # an action the profile lists (DL/T 645 relay)
            try:
                bus.check_action(inv, d, action)
            except WriteRefused as exc:
                return self.ack(cid, False, str(exc))
            return bus.jobs.append((cid, d, -1, action, None, False))
        if type(point) is not str:
            return self.ack(cid, False, "command needs a point name")
        ni = inv.find_name(point)
        if action == "read":
            return bus.jobs.append((cid, d, ni, None, None, True))
        if "value" not in cmd:
            return self.ack(cid, False, "write command needs a value")
        value = cmd["value"]
        from protocols.profiles import Point

        ws = inv.writes.get(d << 16 | ni) if ni >= 0 else None
        spec: dict
        if ws is None:
            spec = {"name": point}
        else:
            spec = inv.steps(d).point_spec(ws[4:])  # e.g. the register grid: no rounding on the wire
            spec.update({"name": point, "writable": True, "min": ws[1], "max": ws[2], "values": ws[3]})
        reason = Point(spec).check_write(value)
        if reason is not None:
            return self.ack(cid, False, reason)
        bus.jobs.append((cid, d, ni, ws, value, False))

    async def run_job(self, bus, job) -> None:
        cid, d, ni, ws, value, read = job
        inv = self.inv
        try:
            if read:
                got: list = []
                for r in inv.requests(d):
                    await bus.request(inv, d, r, lambda _d, spec, v, _t: got.append((spec, v)), 0)
                for spec, v in got:
                    if inv.specs[spec][0] == ni:
                        return self.ack(cid, True, None, v)
                return self.ack(cid, False, "point has no value (not read)")
            if ni < 0:  # an action: its validity deadline in the board's local time
                v = await bus.action(inv, d, ws, rt.localtime(rt.now() + ACTION_VALID_S))
            else:
                v = await bus.write(inv, d, ws, value)
            self.ack(cid, True, None, v)
        except WriteRefused as exc:
            self.ack(cid, False, str(exc))
        except ProtocolError as exc:
            self.ack(cid, False, "%s: %s" % (error_kind(exc), exc))
        except Exception as exc:  # as the agent: an error ack, the poller goes on
            self.ack(cid, False, "command failed: %s" % exc)

    def ack(self, cid, ok: bool, error, value=None) -> None:
        if len(self.acks) >= MAX_ACKS or not self.connected():
            self.counters["acks_dropped"] += 1
            return
        self.acks.append(cbor.dumps({"id": cid, "ok": ok, "error": error, "value": value}))
