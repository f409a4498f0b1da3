"""The compiled config as compact tables: what the gateway keeps of config.json once it has booted.

The decoded JSON is dropped after `Inventory(cfg)`; what stays is flat: per device a few entries in
lists and bytearrays (indexed by device number), the request frames of every device in one `bytes`
with an offset table, the points of each request as indexes into one shared table of decode specs
(`specs`, one entry per distinct point of a model, not per device), and the point names once each.
A reading is then (device index, spec index, value): no per-reading or per-point objects.

Decode specs (from agent/commands/firmware_config.py, config format 3):
    modbus       [name, offset in the reply, type, order, scale, offset]
    dlt645       [name, DI, byte offset in the value, length (0: the whole value), format, signed,
                  scale, offset]; the members of a block DI (0001FF00) share one request
    cjt188       [name, 901F field, scale, offset]
Device options: CJ/T 188 (meter type, status map, unit codes); DL/T 645 follow-ups
(max follow-ups, SEQ of the first C=12, replies end with SEQ (0/1), preamble), one tuple shared by
the devices that have the same.
Writes: [device, write spec, switching (1: a signed command only, per `commands.signed`)].
Write specs: [name, min, max, values, ...] then modbus [table, address, type, order, scale, offset],
cjt188 [field, meter type, DI order, preamble], dlt645 [DI].
Rules: [device, name, kind, above, below, hysteresis], evaluated by the shared protocols/rules.py.
"""

import array
import binascii

FORMAT = 3  # the compiled config's layout this firmware reads; fieldlink firmware-config writes it
PROTOCOLS = ("modbus", "dlt645", "dlt645_1997", "cjt188")
MODBUS = 0
DLT645 = 1
DLT645_1997 = 2
CJT188 = 3


class Inventory:
    """Devices, requests, point specs, writable points and rules of one gateway."""

    def __init__(self, cfg: dict) -> None:
        if cfg.get("format") != FORMAT:
            raise ValueError("config.json is format %r, this firmware reads format %d: compile it again "
                             "with this release's `fieldlink firmware-config`" % (cfg.get("format"), FORMAT))
        self.names = [n.encode() for n in cfg["names"]]
        self.specs = [tuple(s) for s in cfg["specs"]]
        devices = cfg["devices"]
        n = len(devices)
        self.count = n
        self.ids: list = []  # b"<device>/": the front of every record name of the device
        self.bus = bytearray(n)
        self.protocol = bytearray(n)
        self.address: list = []  # Modbus unit (int) or meter address (str)
        self.interval_ms: list = []
        self.options: list = []  # CJ/T 188: (meter type, status map, unit codes); DL/T 645: follow-ups
        shared: dict = {}
        frames = bytearray()
        frame_at = [0]
        pts: list = []
        pts_at = [0]
        req_at = [0]
        for d in devices:
            self.ids.append(d["id"].encode() + b"/")
            self.bus[len(self.ids) - 1] = d["bus"]
            proto = PROTOCOLS.index(d["protocol"])
            self.protocol[len(self.ids) - 1] = proto
            self.address.append(int(d["address"]) if proto == MODBUS else d["address"])
            self.interval_ms.append(int(d["interval"] * 1000))
            o = d.get("options")
            f = d.get("followup")
            if f:
                f = tuple(f)
                f = shared.setdefault(f, f)
            self.options.append((o.get("meter_type"), o.get("status"), o.get("unit_code")) if o else f)
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
        for entry in cfg.get("writes", ()):
            d, w = entry[0], entry[1]
            self.writes[d << 16 | wspecs[w][0]] = wspecs[w]
            if len(entry) > 2 and entry[2]:
                self.switching[d << 16 | wspecs[w][0]] = True
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

    def find_name(self, name) -> int:
        if type(name) is not str:
            return -1
        key = name.encode()
        for i in range(len(self.names)):
            if self.names[i] == key:
                return i
        return -1

    def uses(self, protocol: int) -> bool:
        for p in self.protocol:
            if p == protocol:
                return True
        return False

    def requests(self, d: int) -> range:
        return range(self.req_at[d], self.req_at[d + 1])

    def frame(self, r: int):
        return memoryview(self.frames)[self.frame_at[r] : self.frame_at[r + 1]]
