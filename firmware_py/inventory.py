"""The compiled config as compact tables: what the gateway keeps of config.json once it has booted.

The decoded JSON is dropped after `Inventory(cfg)`; what stays is flat: per device a few entries in
lists and bytearrays (indexed by device number), the request frames of every device in one `bytes`
with an offset table, the points of each request as indexes into one shared table of decode specs
(`specs`, one entry per distinct point of a model, not per device), and the point names once each.
A reading is then (device index, spec index, value): no per-reading or per-point objects.

The layout is the contract of protocols/compiled.py (checked here at boot, as on the laptop):
decode specs, write specs and each device's step options are what its protocol's device steps
(protocols/<protocol>/device.py) take; step options are one tuple shared by the devices that have
the same. Rules: [device, name, kind, above, below, hysteresis], evaluated by protocols/rules.py.
Writes: [device, write spec, switching (1: a signed command only, per `commands.signed`), broadcast (1:
the profile lets one broadcast write it to every device of a line)].
Groups: [name, [device, ...]] (group commands, schedules' targets). Lamps: [device, control name,
control writable, fault alarm armed, lit name, lit_above] (health and the lighting alarm).
"""

import array
import binascii

from protocols import compiled, registry
from protocols.compiled import FORMAT  # noqa: F401  (the layout this firmware reads)


class Inventory:
    """Devices, requests, point specs, writable points and rules of one gateway."""

    def __init__(self, cfg: dict) -> None:
        compiled.check(cfg)
        self.protocols = registry.names()  # a device's protocol: its index in this list
        self.names = [n.encode() for n in cfg["names"]]
        self.specs = [tuple(s) for s in cfg["specs"]]
        devices = cfg["devices"]
        n = len(devices)
        self.count = n
        self.ids: list = []  # b"<device>/": the front of every record name of the device
        self.bus = bytearray(n)
        self.protocol = bytearray(n)
        self.address: list = []  # Modbus unit or meter address (text)
        self.interval_ms: list = []
        self.options: list = []  # the device steps' options (protocols/<protocol>/device.py: options)
        self.models: list = []  # profile model names (in refusals)
        self.broadcast_ms: dict = {}  # device -> the line's idle time after a broadcast (ms)
        shared: dict = {}
        frames = bytearray()
        frame_at = [0]
        pts: list = []
        pts_at = [0]
        req_at = [0]
        for d in devices:
            self.ids.append(d["id"].encode() + b"/")
            self.bus[len(self.ids) - 1] = d["bus"]
            self.protocol[len(self.ids) - 1] = self.protocols.index(d["protocol"])
            self.address.append(d["address"])
            self.interval_ms.append(int(d["interval"] * 1000))
            o = compiled.options(d)
            try:
                o = shared.setdefault(o, o)  # one copy of equal options (tuples of plain values)
            except TypeError:  # unhashable (a status map): kept per device
                pass
            self.options.append(o)
            self.models.append(d.get("model", ""))
            if "broadcast_ms" in d:
                self.broadcast_ms[len(self.ids) - 1] = d["broadcast_ms"]
            for frame, idx in d["requests"]:
                frames.extend(binascii.unhexlify(frame))
                frame_at.append(len(frames))
                pts.extend(idx)
                pts_at.append(len(pts))
            req_at.append(len(frame_at) - 1)
        self.frames = bytes(frames)
        self.frame_at = array.array("I", frame_at)
        self.points = array.array("H", pts)
        self.points_at = array.array("I", pts_at)
        self.req_at = array.array("H", req_at)
        # writable points: (device << 16 | name) -> write spec (shared between devices of a model)
        wspecs = [tuple(w) for w in cfg.get("wspecs", ())]
        self.writes: dict = {}
        self.switching: dict = {}  # (device << 16 | name) of the writable points that switch supply
        self.broadcast: dict = {}  # (device << 16 | name) of the points a broadcast may write
        for entry in cfg.get("writes", ()):
            d, w = entry[0], entry[1]
            self.writes[d << 16 | wspecs[w][0]] = wspecs[w]
            if len(entry) > 2 and entry[2]:
                self.switching[d << 16 | wspecs[w][0]] = True
            if len(entry) > 3 and entry[3]:
                self.broadcast[d << 16 | wspecs[w][0]] = True
        self.groups = [(g[0], bytes(g[1])) for g in cfg.get("groups", ())]  # (name, device indexes)
        self.lamps: dict = {}  # device -> (control name | -1, writable, armed, lit name | -1, lit_above)
        for row in cfg.get("lamps", ()):
            self.lamps[row[0]] = tuple(row[1:])
        self.actions: dict = {}  # device -> the action names its profile lists (list)
        for d, name in cfg.get("actions", ()):
            self.actions.setdefault(d, []).append(name)
        self.rules: list = []  # (device, name, protocols.rules.Rule)
        self.ruled = bytearray(n)  # devices with at least one rule
        if cfg.get("rules"):
            from protocols.rules import Rule

            for d, ni, kind, above, below, hysteresis in cfg["rules"]:
                rule = Rule(self.device_id(d), self.names[ni].decode(), kind, above, below, hysteresis)
                self.rules.append((d, ni, rule))
                self.ruled[d] = 1

    def device_id(self, d: int) -> str:
        return self.ids[d][:-1].decode()

    def name(self, spec: int) -> str:
        return self.names[self.specs[spec][0]].decode()

    def find_device(self, device_id) -> int:
        """Index of the device called `device_id`; -1 when there is none."""
        if type(device_id) is not str:
            return -1
        key = device_id.encode() + b"/"
        for i in range(self.count):
            if self.ids[i] == key:
                return i
        return -1

    def find_group(self, name) -> int:
        """Index of the group called `name` in `groups`; -1 when there is none."""
        for i in range(len(self.groups)):
            if self.groups[i][0] == name:
                return i
        return -1

    def find_name(self, name) -> int:
        if type(name) is not str:
            return -1
        key = name.encode()
        for i in range(len(self.names)):
            if self.names[i] == key:
                return i
        return -1

    def steps(self, d: int):
        """The device steps (module) of device `d`'s protocol."""
        return registry.device(self.protocols[self.protocol[d]])

    def folder(self, d: int) -> str:
        """Device `d`'s protocol family (dlt645 for dlt645_1997): one frame reader per bus each."""
        return registry.folder(self.protocols[self.protocol[d]])

    def check_action(self, d: int, name) -> None:
        """Nothing when device `d`'s profile lists action `name`; WriteRefused as the agent's."""
        listed = self.actions.get(d, ())
        if name not in listed:
            from protocols.errors import WriteRefused

            what = '"%s"' % name if type(name) is str else repr(name)
            raise WriteRefused("device %s (profile %s) has no action %s; expected write, read or an action "
                               "the profile lists (%s)" % (self.device_id(d), self.models[d], what,
                                                          ", ".join(listed) or "none"))

    def requests(self, d: int) -> range:
        return range(self.req_at[d], self.req_at[d + 1])

    def frame(self, r: int):
        return memoryview(self.frames)[self.frame_at[r] : self.frame_at[r + 1]]
