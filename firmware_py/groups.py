"""Group commands on the board: a command whose `device` names a group of the config writes (or reads)
one point on every device of the group, with one ack that carries one result per device, as the
agent's (agent/dispatch.py, docs/commands.md).

Every device's own checks (firmware_py/commands.py: `checked`, the profile's Point.check_write) pass
before anything is queued, or the whole command is refused and nothing is written; every bus involved
must have room for one more job, or it is refused `busy`. Each bus then gets one job with its devices
of the group, in the group's order, run between two polls. With `"readback": false`, a bus whose
every device is in the group, of one model whose profile marks the point `"broadcast"`, is written by
one broadcast (the protocol's `broadcast` frame: Modbus unit 0, which no device answers) and the line
then stays idle for the device's `broadcast_ms`; its devices' results say `"broadcast": true`.

Loaded only when a command names a group: a site without groups pays nothing for it.
"""

from firmware_py import log
from firmware_py.commands import checked, failure
from protocols import commands as rules

READ = "read"
WRITE = "write"


class Collect:
    """The results of one group command from its buses; acked once every bus has finished."""

    def __init__(self, commands, cmd_id, members: list, buses: int) -> None:
        self.commands = commands
        self.cmd_id = cmd_id
        self.members = members  # device ids, in the group's order
        self.left = buses
        self.results: dict = {}

    def bus_done(self, results: dict) -> None:
        self.results.update(results)
        self.left -= 1
        if self.left <= 0:
            fields = rules.group_outcome(self.members, self.results)
            self.commands.done(self.cmd_id, fields["ok"], fields["error"], fields["value"])


class GroupJob:
    """One bus's devices of a group command (a bus job: firmware_py/poller.py runs `run(bus)`)."""

    def __init__(self, commands, collect: Collect, devices: list, ni: int, value, read: bool,
                 broadcast: bool) -> None:
        self.commands = commands
        self.collect = collect
        self.devices = devices
        self.ni = ni
        self.value = value
        self.read = read
        self.broadcast = broadcast

    async def run(self, bus) -> None:
        commands = self.commands
        inv = commands.inv
        results: dict = {}
        try:
            if self.broadcast:
                await self._broadcast(bus)
                for d in self.devices:
                    results[inv.device_id(d)] = {"ok": True, "error": None, "value": None, "broadcast": True}
            else:
                for d in self.devices:
                    results[inv.device_id(d)] = await self._one(bus, d)
        except Exception as exc:  # the bus job must end: every device not done fails with the reason
            text = failure(exc)
            for d in self.devices:
                results.setdefault(inv.device_id(d), {"ok": False, "error": text, "value": None})
        if not self.read and commands.lighting is not None:
            for d in self.devices:
                result = results[inv.device_id(d)]
                commands.lighting.command_done(d, self.ni, self.value, result["ok"])
        self.collect.bus_done(results)

    async def _one(self, bus, d: int) -> dict:
        inv = self.commands.inv
        try:
            if self.read:
                found, v = await self.commands.read_point(bus, d, self.ni)
                if not found:
                    return {"ok": False, "error": "point has no value (not read)", "value": None}
            else:
                v = await bus.write(inv, d, inv.writes[d << 16 | self.ni], self.value)
        except Exception as exc:
            return {"ok": False, "error": failure(exc), "value": None}
        return {"ok": True, "error": None, "value": v}

    async def _broadcast(self, bus) -> None:
        inv = self.commands.inv
        d = self.devices[0]
        ws = inv.writes[d << 16 | self.ni]
        frame = inv.steps(d).broadcast(inv.options[d], inv.names[self.ni].decode(), ws[4:], self.value)
        await bus.broadcast(frame, inv.broadcast_ms[d])
        log.info("bus %s: broadcast %s = %r to %d devices" % (bus.name, inv.names[self.ni].decode(),
                                                              self.value, len(self.devices)))


def can_broadcast(inv, bus, members: bytes, ni: int) -> bool:
    """True when one broadcast may write point `ni` on `bus`: every device of the bus is in the group,
    all of one model, the profile marks the point for broadcast, the protocol can (broadcast_ms) and
    its steps allow it on this line and point."""
    devices = bus.devices
    if not devices:
        return False
    model = inv.models[devices[0]]
    for d in devices:
        if d not in members or inv.models[d] != model or (d << 16 | ni) not in inv.broadcast \
                or d not in inv.broadcast_ms:
            return False
    d = devices[0]
    ws = inv.writes[d << 16 | ni]
    return inv.steps(d).broadcast_refusal(inv.options[d], inv.names[ni].decode(), ws[4:]) is None


def take(commands, cmd, g: int, ni: int, action, now: int) -> None:
    """A checked, not repeated command for group `g`: refused (acked) or queued on its buses."""
    inv = commands.inv
    name, members = inv.groups[g]
    cid = cmd.id
    point = cmd.point
    if action != WRITE and action != READ:
        return commands.ack(cid, False, "group %s: a group command writes or reads a point; action %r is "
                                        "for one device" % (name, action))
    if type(point) is not str:
        return commands.ack(cid, False, rules.refusal("no_point"))
    read = action == READ
    value = None
    readback = cmd.fields.get("readback", True)
    if readback is not True and readback is not False:
        return commands.ack(cid, False, "readback must be true or false, not %r" % (readback,))
    if not read:
        if "value" not in cmd.fields:
            return commands.ack(cid, False, rules.refusal("no_value"))
        value = cmd.fields["value"]
    jobs: dict = {}  # bus index -> [device, ...] in the group's order
    for d in members:
        reason = None if read else checked(inv, d, ni, point, value)[1]
        if reason is not None:  # one device refuses: nothing is written anywhere
            return commands.ack(cid, False, "group %s, device %s: %s" % (name, inv.device_id(d), reason))
        jobs.setdefault(inv.bus[d], []).append(d)
    for b in jobs:
        bus = commands.buses[b]
        if len(bus.jobs) >= commands.remote.queue:
            commands.remote.refuse("busy")
            return commands.ack(cid, False, rules.refusal("busy", bus.name, len(bus.jobs)))
    commands.remote.begin(cmd, now)
    collect = Collect(commands, cid, [inv.device_id(d) for d in members], len(jobs))
    lighting = commands.lighting
    for b, devices in jobs.items():
        bus = commands.buses[b]
        broadcast = not read and readback is False and can_broadcast(inv, bus, members, ni)
        bus.jobs.append(GroupJob(commands, collect, devices, ni, value, read, broadcast))
        if not read and lighting is not None:
            for d in devices:
                lighting.command_queued(d, ni)
    log.info("group command %r: group %s, %d devices on %d buses" % (cid, name, len(members), len(jobs)))
