"""The retained ``status`` message: birth (online, inventory, units, aliases) and last will (offline).

Both are CBOR maps with text keys, meant for humans and tools as much as for the platform. Fields are
documented in docs/payload.md section "Birth and will"; in short:

    online    true (birth) / false (will)
    gateway   gateway id                     site      site id
    seq       birth sequence number; the will and every compact pack carry the same number
    time      POSIX seconds (integer) when the birth was made (birth only)
    versions  {"fieldlink": "0.1.0", ...} software versions (birth only)
    payload   "senml" | "compact": the profile of this gateway's ``data`` topic (birth only)
    base_name SenML base name of every record, e.g. "gw-01:" (birth only)
    devices   [{id, kind, model, protocol, address, alias, points: [{name, unit, alias, resolution?}],
               serves?: {households?, network?, length_m?}, lights?}]  (serves, lights: the indicators')

``alias_table`` turns a birth into the lookup tables the compact profile encodes and decodes with.
Shared dialect: runs on CPython 3.11+ and MicroPython 1.22+.
"""

from protocols import cbor
from protocols.errors import EncodingError, SenmlError
from protocols.senml import check_name, is_number

PROFILES = ("senml", "compact")
DIVIDE = 0  # value = n / factor (resolution 1/factor, e.g. 0.1 -> 10): exact for values on the grid
MULTIPLY = 1  # value = n * factor (integer resolution, e.g. 1 or 36000)
GENERIC = 2  # value = n * resolution (any other step; approximate)
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._"
NETWORKS = ("water", "power", "gas")  # what a network sensor's serves.network may name


def scaling(resolution: object) -> tuple | None:
    """(kind, factor) for a point's ``resolution``; None when the point has none."""
    if resolution is None:
        return None
    if not is_number(resolution) or not resolution > 0 or resolution - resolution != 0:  # type: ignore[operator]
        raise EncodingError("resolution must be a positive finite number, got %r" % (resolution,))
    r: float = resolution  # type: ignore[assignment]
    if r >= 1 and r == int(r):
        return MULTIPLY, int(r)
    if r < 1:
        inverse = round(1 / r)
        if inverse >= 1 and 1 / inverse == r:
            return DIVIDE, inverse
    return GENERIC, r


def _ident(x: object, what: str) -> str:
    if type(x) is not str or not x:
        raise EncodingError("%s must be non-empty text, got %r" % (what, x))
    for c in x:
        if c not in _ID_CHARS:
            raise EncodingError("%s %r has %r; use A-Z a-z 0-9 - . _" % (what, x, c))
    return x


def _alias(x: object, what: str) -> int:
    if type(x) is not int or x < 0 or x >= 1 << 32:
        raise EncodingError("%s alias must be an unsigned integer, got %r" % (what, x))
    return x


def _text(x: object, what: str) -> str:
    if type(x) is not str:
        raise EncodingError("%s must be text, got %r" % (what, x))
    return x


def _point(p: object, index: int, where: str) -> dict:
    if type(p) is not dict:
        raise EncodingError("%s point %d must be a map, got %r" % (where, index, p))
    name = _ident(p.get("name"), "%s point %d name" % (where, index))
    out: dict = {"name": name, "unit": _text(p.get("unit", ""), "%s/%s unit" % (where, name))}
    out["alias"] = _alias(p.get("alias", index), "%s/%s" % (where, name))
    if p.get("resolution") is not None:
        out["resolution"] = p["resolution"]
        scaling(p["resolution"])
    return out


def _device(d: object, index: int) -> dict:
    if type(d) is not dict:
        raise EncodingError("device %d must be a map, got %r" % (index, d))
    ident = _ident(d.get("id"), "device %d id" % index)
    where = "device %s" % ident
    address = d.get("address", "")
    if type(address) is not str and type(address) is not int:
        raise EncodingError("%s address must be text or an integer, got %r" % (where, address))
    out: dict = {"id": ident, "address": address}
    for key in ("kind", "model", "protocol"):
        out[key] = _text(d.get(key, ""), "%s %s" % (where, key))
    out["alias"] = _alias(d.get("alias", index), where)
    points = d.get("points", [])
    if type(points) is not list:
        raise EncodingError("%s points must be a list" % where)
    out["points"] = [_point(p, i, where) for i, p in enumerate(points)]
    _unique([p["name"] for p in out["points"]], "%s point name" % where)
    _unique([p["alias"] for p in out["points"]], "%s point alias" % where)
    if d.get("serves") is not None:
        out["serves"] = _serves(d["serves"], where)
    if d.get("lights") is not None:
        lights = d["lights"]
        if type(lights) is not int or lights < 1:
            raise EncodingError("%s lights must be a whole number >= 1, got %r" % (where, lights))
        out["lights"] = lights
    return out


def _serves(serves: object, where: str) -> dict:
    """A device's `serves`: households (uint), and network with length_m (metres) together."""
    if type(serves) is not dict:
        raise EncodingError("%s serves must be a map, got %r" % (where, serves))
    out: dict = {}
    for key in serves:
        if key not in ("households", "network", "length_m"):
            raise EncodingError("%s serves has unknown key %r (households, network, length_m)" % (where, key))
    if "households" in serves:
        n = serves["households"]
        if type(n) is not int or n < 0:
            raise EncodingError("%s serves.households must be a whole number >= 0, got %r" % (where, n))
        out["households"] = n
    if ("network" in serves) != ("length_m" in serves):
        raise EncodingError("%s serves: network and length_m go together" % where)
    if "network" in serves:
        if serves["network"] not in NETWORKS:
            raise EncodingError("%s serves.network must be one of %s, got %r"
                                % (where, ", ".join(NETWORKS), serves["network"]))
        length = serves["length_m"]
        if not is_number(length) or length - length != 0 or length < 0:  # type: ignore[operator]
            raise EncodingError("%s serves.length_m must be a finite number >= 0, got %r" % (where, length))
        out["network"] = serves["network"]
        out["length_m"] = length
    return out


def _unique(values: list, what: str) -> None:
    seen: dict = {}
    for v in values:
        if v in seen:
            raise EncodingError("%s %r is declared twice" % (what, v))
        seen[v] = True


def make_birth(gateway: str, site: str, devices: list, time: int, seq: int = 0, payload: str = "senml",
               versions: dict | None = None, base_name: str | None = None) -> dict:
    """The birth map. Devices and points without an ``alias`` get their list position."""
    msg = {
        "online": True, "gateway": gateway, "site": site, "seq": seq, "time": time,
        "versions": versions if versions is not None else {}, "payload": payload,
        "base_name": base_name if base_name is not None else "%s:" % gateway, "devices": devices,
    }
    return check(msg)


def make_will(gateway: str, site: str, seq: int = 0) -> dict:
    """The last-will map, registered at connect time with the same ``seq`` as the birth that follows."""
    return check({"online": False, "gateway": gateway, "site": site, "seq": seq})


def check(msg: object) -> dict:
    """Validate a birth or will map; return it normalised (defaults filled). ``EncodingError`` if bad."""
    if type(msg) is not dict:
        raise EncodingError("a status message is a map, got %s" % type(msg).__name__)
    online = msg.get("online")
    if type(online) is not bool:
        raise EncodingError("status field online must be true or false, got %r" % (online,))
    out = {"online": online, "gateway": _ident(msg.get("gateway"), "gateway"),
           "site": _ident(msg.get("site"), "site"), "seq": _alias(msg.get("seq"), "birth seq")}
    if not online:
        return out
    time = msg.get("time")
    if not is_number(time) or time - time != 0:  # type: ignore[operator]
        raise EncodingError("birth time must be POSIX seconds, got %r" % (time,))
    versions = msg.get("versions", {})
    if type(versions) is not dict:
        raise EncodingError("birth versions must be a map of text, got %r" % (versions,))
    for k in versions:
        _text(k, "versions key")
        _text(versions[k], "version of %s" % k)
    payload = msg.get("payload")
    if payload not in PROFILES:
        raise EncodingError("birth payload must be 'senml' or 'compact', got %r" % (payload,))
    base_name = _text(msg.get("base_name"), "base_name")
    devices = msg.get("devices")
    if type(devices) is not list:
        raise EncodingError("birth devices must be a list, got %r" % (devices,))
    devs = [_device(d, i) for i, d in enumerate(devices)]
    _unique([d["id"] for d in devs], "device id")
    _unique([d["alias"] for d in devs], "device alias")
    for d in devs:
        for p in d["points"]:
            try:
                check_name("%s%s/%s" % (base_name, d["id"], p["name"]))
            except SenmlError as exc:
                raise EncodingError("birth: %s" % exc) from None
    out.update({"time": time, "versions": versions, "payload": payload, "base_name": base_name,
                "devices": devs})
    return out


def encode(msg: dict) -> bytes:
    """Deterministic CBOR for a birth or will map (validated first)."""
    return cbor.dumps(check(msg))


def decode(data: bytes) -> dict:
    """Birth or will map from CBOR ``data``; ``CborError`` or ``EncodingError`` if malformed."""
    return check(cbor.loads(data))


def units(birth: dict) -> dict:
    """``{(device, point): unit}`` for every point of a birth that declares a unit."""
    out = {}
    for d in birth.get("devices", ()):
        for p in d["points"]:
            if p.get("unit"):
                out[(d["id"], p["name"])] = p["unit"]
    return out


class AliasTable:
    """Lookup tables of one birth for the compact profile.

    ``by_name[device] = (device_alias, {point: (point_alias, scaling)})`` serves the encoder;
    ``by_alias[device_alias] = (device, {point_alias: (point, unit, scaling)})`` serves the decoder.
    """

    def __init__(self, seq: int, base_name: str) -> None:
        self.seq = seq
        self.base_name = base_name
        self.by_name: dict = {}
        self.by_alias: dict = {}


def alias_table(birth: dict) -> AliasTable:
    """Build the compact-profile alias tables from a birth map."""
    birth = check(birth)
    if not birth["online"]:
        raise EncodingError("a will message declares no aliases")
    table = AliasTable(birth["seq"], birth["base_name"])
    for d in birth["devices"]:
        enc: dict = {}
        dec: dict = {}
        for p in d["points"]:
            scale = scaling(p.get("resolution"))
            enc[p["name"]] = (p["alias"], scale)
            dec[p["alias"]] = (p["name"], p["unit"], scale)
        table.by_name[d["id"]] = (d["alias"], enc)
        table.by_alias[d["alias"]] = (d["id"], dec)
    return table


__all__ = ["NETWORKS", "PROFILES", "AliasTable", "alias_table", "check", "decode", "encode", "make_birth",
           "make_will", "scaling", "units"]
