"""The compiled config: the contract between `fieldlink firmware config` (host) and the board.

One JSON object (docs/flashing.md, "The compiled config"), written by agent/firmware/config.py and
read by firmware_py/inventory.py; both call `check(cfg)`, so a config the board would misread is
refused on the laptop with the same words. Per-point data sits once in shared tables (`names`,
`specs`, `wspecs`) that devices refer to by index.

    format    FORMAT
    gateway   {site, id, prefix, payload, health, base_name}
    broker    {host, port, client_id, username, password, keepalive, reconnect_min, reconnect_max,
               probe_interval, probe_window, persistent_session}
    ring {path, slots, slot_size}; batch {max_records, max_age, max_bytes}; inflight; watchdog_ms
    buses     [{name, port, baud, parity, bytesize, stopbits, timeout_ms, turnaround_ms, pause_ms,
                uart, tx, rx, de}]
    names     [point name]
    specs     [decode spec]: [name index, the protocol's arguments] (Family.decode_spec)
    devices   [{id, bus (index), protocol, address, interval, requests: [[frame hex, [spec index]]],
                and the protocol's own keys (Family.compiled_entry: DL/T 645 followup, version,
                credentials; CJ/T 188 options)}]
    wspecs    [write spec]: [name index, min, max, values, the protocol's arguments (Family.write_spec)]
    writes    [[device index, wspec index, switching 0/1, broadcast 0/1]]
    actions   [[device index, action name]]
    rules     [[device index, name index, kind, above, below, hysteresis]]
    groups    [[group name, [device index, ...]]]
    lamps     [[device index, control name index | -1, control writable 0/1, fault alarm armed 0/1,
                lit name index | -1, lit_above]]
    lighting  (only with schedules) {latitude, longitude, alarm_after,
                schedules: [{name, devices: [device id, ...], steps: [{at, set, days?}]}]}
    zone      (with schedules, and with actions and [gateway] timezone) the gateway's time zone compiled
              to an offset table (protocols/zone.py's JSON form): the schedules' local time and a relay
              command's deadline, the meter's local time; one copy for both
    clock_floor  POSIX seconds, the day before the config was compiled: the board's clock reads
              earlier only when it was not set since power-up (firmware_py/clock.py; optional)
    inventory the retained inventory as CBOR (hex); inventory_crc its CRC-32; seq its sequence number
              (the status and the will are small maps the board makes per connection)

A device entry also carries `broadcast_ms` when its protocol can broadcast (Family.broadcast): how
long the line stays idle after a broadcast.

`options(entry)` gives a device's step options (the protocol's `device.options`), the same on both
sides.
"""

from protocols import registry

# the layout; a board refuses any other (4 came in two kinds, one with groups, lamps, lighting and
# writes' broadcast, one with the inventory apart from the status; 5 holds both; 6 has one time zone,
# top-level, where 5 had lighting.zone and a second copy for relay deadlines)
FORMAT = 6


class CompiledError(ValueError):
    """A compiled config that breaks the contract: says where."""


def _fail(where: str, text: str) -> None:
    raise CompiledError("config.json: %s: %s" % (where, text))


def _list(cfg: dict, key: str) -> list:
    v = cfg.get(key, [])
    if type(v) is not list:
        _fail(key, "expected a list")
    return v  # type: ignore[no-any-return]


def _index(where: str, v: object, n: int) -> None:
    if type(v) is not int or not 0 <= v < n:  # type: ignore[operator]
        _fail(where, "expected an index below %d, got %r" % (n, v))


def _hex(where: str, v: object) -> None:
    if type(v) is not str or len(v) % 2:  # type: ignore[arg-type]
        _fail(where, "expected hex text")


def check(cfg: object) -> None:
    """Nothing when `cfg` keeps the contract; CompiledError naming the key at fault."""
    if type(cfg) is not dict:
        raise CompiledError("config.json: expected a JSON object")
    if cfg.get("format") != FORMAT:  # type: ignore[attr-defined]
        raise CompiledError("config.json is format %r, this firmware reads format %d: compile it again "
                            "with this release's `fieldlink firmware-config`" % (cfg.get("format"), FORMAT))  # type: ignore[attr-defined]
    for key in ("gateway", "broker", "ring", "batch"):
        if type(cfg.get(key)) is not dict:  # type: ignore[attr-defined]
            _fail(key, "expected an object")
    for key in ("site", "id", "prefix", "base_name"):
        if type(cfg["gateway"].get(key)) is not str:  # type: ignore[index]
            _fail("gateway." + key, "expected text")
    if "ntp_host" in cfg and type(cfg["ntp_host"]) is not str:  # type: ignore[operator,index]
        _fail("ntp_host", "expected text")
    if "clock_floor" in cfg and type(cfg["clock_floor"]) is not int:  # type: ignore[operator,index]
        _fail("clock_floor", "expected POSIX seconds (an integer)")
    if "zone" in cfg and type(cfg["zone"]) is not dict:  # type: ignore[operator,index]
        _fail("zone", "expected a compiled time zone {name, until, changes}")
    buses = _list(cfg, "buses")  # type: ignore[arg-type]
    for i in range(len(buses)):
        if type(buses[i]) is not dict or type(buses[i].get("name")) is not str:
            _fail("buses[%d]" % i, "expected an object with a name")
    names = _list(cfg, "names")  # type: ignore[arg-type]
    for i in range(len(names)):
        if type(names[i]) is not str:
            _fail("names[%d]" % i, "expected text")
    specs = _list(cfg, "specs")  # type: ignore[arg-type]
    for i in range(len(specs)):
        if type(specs[i]) is not list or not specs[i]:
            _fail("specs[%d]" % i, "expected a non-empty list")
        _index("specs[%d][0]" % i, specs[i][0], len(names))
    devices = _list(cfg, "devices")  # type: ignore[arg-type]
    for i in range(len(devices)):
        d = devices[i]
        where = "devices[%d]" % i
        if type(d) is not dict or type(d.get("id")) is not str:
            _fail(where, "expected an object with an id")
        _index(where + ".bus", d.get("bus"), len(buses))
        try:
            registry.folder(d.get("protocol"))
        except registry.UnknownProtocol as exc:
            _fail(where + ".protocol", str(exc))
        if type(d.get("address")) is not str:
            _fail(where + ".address", "expected text")
        if type(d.get("interval")) not in (int, float) or d["interval"] <= 0:
            _fail(where + ".interval", "expected a positive number of seconds")
        requests = d.get("requests")
        if type(requests) is not list:
            _fail(where + ".requests", "expected a list")
        for r in range(len(requests)):
            req = requests[r]
            at = "%s.requests[%d]" % (where, r)
            if type(req) is not list or len(req) != 2 or type(req[1]) is not list:
                _fail(at, "expected [frame hex, [spec index, ...]]")
            _hex(at + "[0]", req[0])
            for k in req[1]:
                _index(at + "[1]", k, len(specs))
    wspecs = _list(cfg, "wspecs")  # type: ignore[arg-type]
    for i in range(len(wspecs)):
        if type(wspecs[i]) is not list or len(wspecs[i]) < 4:
            _fail("wspecs[%d]" % i, "expected [name, min, max, values, ...]")
        _index("wspecs[%d][0]" % i, wspecs[i][0], len(names))
    for key, n in (("writes", len(wspecs)), ("actions", -1), ("rules", len(names))):
        rows = _list(cfg, key)  # type: ignore[arg-type]
        for i in range(len(rows)):
            row = rows[i]
            if type(row) is not list or len(row) < 2:
                _fail("%s[%d]" % (key, i), "expected a list")
            _index("%s[%d][0]" % (key, i), row[0], len(devices))
            if n >= 0:
                _index("%s[%d][1]" % (key, i), row[1], n)
            elif type(row[1]) is not str:
                _fail("%s[%d][1]" % (key, i), "expected an action name")
    _check_groups(cfg, len(devices), len(names))  # type: ignore[arg-type]
    if "lighting" in cfg:  # type: ignore[operator]
        _check_lighting(cfg["lighting"])  # type: ignore[index]
        if "zone" not in cfg:  # type: ignore[operator]
            _fail("zone", "lighting schedules need the gateway's compiled time zone")
    _hex("inventory", cfg.get("inventory"))  # type: ignore[attr-defined]
    for key, top in (("inventory_crc", 0xFFFFFFFF), ("seq", 0xFFFFFFFF)):
        v = cfg.get(key)  # type: ignore[attr-defined]
        if type(v) is not int or not 0 <= v <= top:  # type: ignore[operator]
            _fail(key, "expected an integer 0..%d" % top)


def _check_groups(cfg: dict, ndevices: int, nnames: int) -> None:
    groups = _list(cfg, "groups")
    for i in range(len(groups)):
        g = groups[i]
        if type(g) is not list or len(g) != 2 or type(g[0]) is not str or type(g[1]) is not list:
            _fail("groups[%d]" % i, "expected [name, [device index, ...]]")
        for d in g[1]:
            _index("groups[%d][1]" % i, d, ndevices)
    lamps = _list(cfg, "lamps")
    for i in range(len(lamps)):
        row = lamps[i]
        if type(row) is not list or len(row) != 6:
            _fail("lamps[%d]" % i, "expected [device, control, writable, armed, lit, lit_above]")
        _index("lamps[%d][0]" % i, row[0], ndevices)
        for k in (1, 4):
            if row[k] != -1:
                _index("lamps[%d][%d]" % (i, k), row[k], nnames)


def _check_lighting(lighting: object) -> None:
    if type(lighting) is not dict:
        _fail("lighting", "expected an object")
    for key in ("latitude", "longitude", "alarm_after"):
        if type(lighting.get(key)) not in (int, float):  # type: ignore[attr-defined]
            _fail("lighting." + key, "expected a number")
    schedules = lighting.get("schedules")  # type: ignore[attr-defined]
    if type(schedules) is not list or not schedules:
        _fail("lighting.schedules", "expected a non-empty list")
    for i in range(len(schedules)):  # type: ignore[arg-type]
        s = schedules[i]  # type: ignore[index]
        if type(s) is not dict or type(s.get("name")) is not str or type(s.get("devices")) is not list:
            _fail("lighting.schedules[%d]" % i, "expected {name, devices, steps}")


def options(entry: dict) -> object:
    """The step options of a compiled device entry (its protocol's `device.options`)."""
    return registry.device(entry["protocol"]).options(entry)
