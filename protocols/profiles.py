"""Device profiles: what varies by device model, as data (JSON files in protocols/profiles/).

A profile names the protocol, the link defaults and every point: where it lives on the device
(Modbus table/address/type, DL/T 645 DI and format, CJ/T 188 reply field, DL/T 698.45 OAD and
array element), how the raw value
scales to a SenML unit, and whether a command may write it and within which range.

A point may carry `"plausible": {"min": .., "max": .., "rule": "non_decreasing"}`: the values it can
physically have (protocols/plausible.py); a reading outside them is not published but raises a `quality`
alarm "implausible".

Actions (`"actions": [{"name": "relay_trip"}, ...]`) are the commands other than point writes that a
model allows; which names a protocol can carry out is its family's `actions` (protocols/registry.py;
DL/T 645-2007: relay trip / close, C=1C). What a point of each protocol must carry is checked by the
protocol's family (`Family.check_point`).
A writable point marked `"switching": true` switches supply (a lamp on/off, a valve, a contactor): with
the default `[commands] signed = "switching"` a command may write it only when signed, as the relay
actions (protocols/commands.py).

Lamps (docs/lighting.md): a point's `"role"` says what it is to the lighting code: `"control"` (the
writable point that switches the lamp), `"fault"` (the lamp's fault, watched by a `fault` rule) or
`"lit"` (a reading that shows whether the lamp burns: lit when above `"lit_above"`, e.g. its power). A
writable point marked `"broadcast": true` may be written by one broadcast to every device of a bus
when a group command allows it (only protocols whose family says `broadcast`: Modbus RTU, unit 0).

`parse_profile` only checks a decoded dict; `load_profile` reads the packaged JSON file (the one
deliberate file read in protocols/: profiles are data shipped beside the code).
"""

import json

from protocols import registry

KINDS = (
    "electricity_meter",
    "water_meter",
    "gas_meter",
    "heat_meter",
    "lamp",
    "cabinet",
    "level",
    "pressure",
    "water_quality",
    "flow_meter",
)
TABLES = ("holding", "input", "coil", "discrete")
_INF = float("inf")
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."

_POINT_KEYS = (
    "name", "unit", "scale", "offset", "resolution", "writable", "min", "max", "values", "description",
    "switching", "plausible", "role", "lit_above", "broadcast",
)  # and the keys of every protocol's points (Family.point_keys)
#: what a point may be to the lighting code (docs/lighting.md)
ROLES = ("control", "fault", "lit")
_PROFILE_KEYS = (
    "model", "kind", "vendor", "description", "protocol", "link", "options", "points", "source", "actions",
)
_ACTION_KEYS = ("name", "description")


class ProfileError(Exception):
    """A profile that is not valid: names the profile, the point and the key at fault."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__("%s: %s" % (source, message))  # MicroPython has no Exception.__init__


def valid_name(name: object) -> bool:
    """True for a device or point name usable in a SenML record name."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return False
    if name[0] in "_-.":
        return False
    for ch in name:
        if ch not in NAME_CHARS:
            return False
    return True


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Point:
    """One readable (and maybe writable) value of a device model."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.name = spec["name"]
        self.unit = spec.get("unit", "")
        self.scale = spec.get("scale", 1)
        self.offset = spec.get("offset", 0)
        self.resolution = spec.get("resolution")
        self.writable = spec.get("writable", False)
        self.min = spec.get("min")
        self.max = spec.get("max")
        self.values = spec.get("values")
        self.description = spec.get("description", "")
        # a write switches supply (a lamp on/off, a valve, a contactor): signed commands only by default
        self.switching = spec.get("switching", False)
        # lamps: "control", "fault" or "lit" (lit when the reading is above lit_above); None otherwise
        self.role = spec.get("role")
        self.lit_above = spec.get("lit_above")
        # one broadcast may write it to every device of a bus at once (Family.broadcast)
        self.broadcast = spec.get("broadcast", False)
        # Modbus
        self.table = spec.get("table", "holding")
        self.address = spec.get("address", 0)
        self.type = spec.get("type", "u16")
        self.order = spec.get("order", "ABCD")
        # DL/T 645
        self.di = spec.get("di")
        self.format = spec.get("format")
        self.signed = spec.get("signed", False)
        self.block_index = spec.get("block_index")  # member of a block DI (FF); None: a single item
        # CJ/T 188
        self.field = spec.get("field")
        # DL/T 698.45: the attribute's OAD and, for an array read whole, the element (1-based)
        self.oad = spec.get("oad")
        self.element = spec.get("element")
        # {"min", "max", "rule"}: what the value can physically be (protocols/plausible.py)
        self.plausible = spec.get("plausible")

    def register_count(self) -> int:
        """How many 16-bit registers (or bits, for coil/discrete tables) the point spans."""
        if self.table in ("coil", "discrete"):
            return 1
        from protocols import points

        return points.register_count(self.type)

    def check_write(self, value: object) -> str | None:
        """None when a command may write `value` to this point, else the reason it may not."""
        if not self.writable:
            return "point %s is not writable" % self.name
        if self.values is not None:
            if value not in self.values:
                return "point %s accepts only %s, not %r" % (self.name, self.values, value)
            return None
        if isinstance(value, bool):
            if self.table == "coil" or self.type.startswith("bit"):
                return None
            if not (self.scale == 1 and self.offset == 0 and self.min == 0 and self.max == 1):
                # true/false is 1/0 only on an on/off register (0..1, unscaled), never a level or a ratio
                return "point %s needs a number, not %r" % (self.name, value)
            value = int(value)
        if not _number(value):
            return "point %s needs a number, not %r" % (self.name, value)
        if value != value or value in (_INF, -_INF):  # NaN passes every comparison below
            return "point %s needs a finite number, not %r" % (self.name, value)
        if self.min is not None and value < self.min:  # type: ignore[operator]
            return "%r is below the minimum %r of point %s" % (value, self.min, self.name)
        if self.max is not None and value > self.max:  # type: ignore[operator]
            return "%r is above the maximum %r of point %s" % (value, self.max, self.name)
        if self.table == "coil" or self.type.startswith("bit"):
            if value not in (0, 1):
                return "point %s is on/off (0 or 1, true or false), not %r" % (self.name, value)
        elif self.type[:1] in "usb" and not self.type.startswith("str"):
            # an integer register: the value must sit on its grid, or the write would round it
            steps = (value - self.offset) / self.scale  # type: ignore[operator]
            if abs(steps - round(steps)) > 1e-5 * max(1.0, abs(steps)):
                return "%r is not a multiple of the step %r of point %s" % (value, self.scale, self.name)
        return None

    def __repr__(self) -> str:
        return "Point(%r)" % self.name


class Profile:
    """A device model: protocol, link defaults, options and points."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.model = data["model"]
        self.kind = data["kind"]
        self.vendor = data.get("vendor", "")
        self.description = data.get("description", "")
        self.protocol = data["protocol"]
        self.link = data.get("link", {})
        self.options = data.get("options", {})
        self.points = [Point(p) for p in data["points"]]
        self.actions = [dict(a) for a in data.get("actions", [])]
        self._by_name = {}
        for p in self.points:
            self._by_name[p.name] = p

    def point(self, name: str) -> Point:
        """The point called `name`; KeyError when the model has none."""
        return self._by_name[name]

    def has_point(self, name: str) -> bool:
        return name in self._by_name

    def point_names(self) -> list:
        return [p.name for p in self.points]

    def has_action(self, name: object) -> bool:
        """True when the profile lists the action `name` (such as "relay_trip")."""
        return any(a["name"] == name for a in self.actions)

    def action_names(self) -> list:
        return [a["name"] for a in self.actions]

    def role_point(self, role: str) -> "Point | None":
        """The point with `role` ("control", "fault", "lit"); for a profile that marks none, the point
        named `on` (control) or `lamp_failure` (fault); else None."""
        for p in self.points:
            if p.role == role:
                return p
        fallback = {"control": "on", "fault": "lamp_failure"}.get(role)
        if fallback is not None and fallback in self._by_name:
            return self._by_name[fallback]
        return None

    def __repr__(self) -> str:
        return "Profile(%r)" % self.model


def _protocol_keys() -> tuple:
    """(every protocol's point keys, key -> title of the protocol that alone may carry it)."""
    keys: list = []
    owner: dict = {}
    for name in registry.names():
        fam = registry.family(name)
        for key in fam.point_keys:
            if key not in keys:
                keys.append(key)
        for key in fam.exclusive_keys:
            owner.setdefault(key, (fam.folder, fam.title))
    return keys, owner


def _check_point(source: str, protocol: str, index: int, spec: object) -> None:
    where = "points[%d]" % index
    if not isinstance(spec, dict):
        raise ProfileError(source, "%s must be an object" % where)
    name = spec.get("name")
    if not valid_name(name):
        raise ProfileError(source, "%s: name %r must be letters, digits, _ - . " % (where, name))
    where = "point %s" % name
    fam = registry.family(protocol)
    keys, owner = _protocol_keys()
    for key in spec:
        if key not in _POINT_KEYS and key not in keys:
            raise ProfileError(source, "%s: unknown key %r" % (where, key))
    for key in ("scale", "offset", "resolution", "min", "max"):
        if key in spec and not _number(spec[key]):
            raise ProfileError(source, "%s: %s must be a number" % (where, key))
    if "writable" in spec and not isinstance(spec["writable"], bool):
        raise ProfileError(source, "%s: writable must be true or false" % where)
    if "switching" in spec and not isinstance(spec["switching"], bool):
        raise ProfileError(source, "%s: switching must be true or false" % where)
    if spec.get("switching") and not spec.get("writable"):
        raise ProfileError(source, "%s: switching applies to writable points only" % where)
    if "unit" in spec and not isinstance(spec["unit"], str):
        raise ProfileError(source, "%s: unit must be a string" % where)
    if "plausible" in spec:
        from protocols.plausible import check_spec

        problem = check_spec(spec["plausible"])
        if problem is not None:
            raise ProfileError(source, "%s: %s" % (where, problem))
    _check_lamp_keys(source, fam, where, spec)
    for key in spec:
        if key in owner and owner[key][0] != fam.folder:
            raise ProfileError(source, "%s: %s is for %s points only" % (where, key, owner[key][1]))
    problem = fam.check_point(spec)
    if problem is not None:
        raise ProfileError(source, "%s: %s" % (where, problem))


def _check_lamp_keys(source: str, fam: object, where: str, spec: dict) -> None:
    """role, lit_above and broadcast of one point."""
    role = spec.get("role")
    if role is not None and role not in ROLES:
        raise ProfileError(source, "%s: role must be one of %s, not %r" % (where, ", ".join(ROLES), role))
    if role == "control" and not spec.get("writable"):
        raise ProfileError(source, "%s: the control point must be writable" % where)
    if role == "lit" and not _number(spec.get("lit_above")):
        raise ProfileError(source, "%s: role lit needs lit_above (a number: lit when the reading is above it)"
                           % where)
    if "lit_above" in spec and role != "lit":
        raise ProfileError(source, "%s: lit_above goes with role lit" % where)
    if "broadcast" in spec:
        if not isinstance(spec["broadcast"], bool):
            raise ProfileError(source, "%s: broadcast must be true or false" % where)
        if spec["broadcast"] and not spec.get("writable"):
            raise ProfileError(source, "%s: broadcast applies to writable points only" % where)
        if spec["broadcast"] and not fam.broadcast:  # type: ignore[attr-defined]
            raise ProfileError(source, "%s: %s devices cannot be written by broadcast" % (
                where, fam.title))  # type: ignore[attr-defined]


def _check_actions(source: str, protocol: str, actions: object) -> None:
    if not isinstance(actions, list):
        raise ProfileError(source, "actions must be a list of objects such as {\"name\": \"relay_trip\"}")
    allowed = registry.family(protocol).actions
    seen = []
    for i, spec in enumerate(actions):
        if not isinstance(spec, dict):
            raise ProfileError(source, "actions[%d] must be an object" % i)
        for key in spec:
            if key not in _ACTION_KEYS:
                raise ProfileError(source, "actions[%d]: unknown key %r" % (i, key))
        name = spec.get("name")
        if name not in allowed:
            raise ProfileError(source, "actions[%d]: %s devices can carry out %s, not %r" % (
                i, protocol, ", ".join(allowed) if allowed else "no actions", name))
        if "description" in spec and not isinstance(spec["description"], str):
            raise ProfileError(source, "action %s: description must be a string" % name)
        if name in seen:
            raise ProfileError(source, "action %s is listed twice" % name)
        seen.append(name)


def parse_profile(data: object, source: str = "<profile>") -> Profile:
    """Check a decoded profile and build it; ProfileError names what is wrong and where."""
    if not isinstance(data, dict):
        raise ProfileError(source, "a profile must be a JSON object")
    for key in data:
        if key not in _PROFILE_KEYS:
            raise ProfileError(source, "unknown key %r" % key)
    for key in ("model", "kind", "protocol", "points"):
        if key not in data:
            raise ProfileError(source, "missing key %r" % key)
    if not valid_name(data["model"]):
        raise ProfileError(source, "model %r must be letters, digits, _ - ." % data["model"])
    try:
        registry.family(data["protocol"])
    except registry.UnknownProtocol as exc:
        raise ProfileError(source, str(exc)) from None
    if data["kind"] not in KINDS:
        raise ProfileError(source, "kind %r is not one of %s" % (data["kind"], ", ".join(KINDS)))
    points = data["points"]
    if not isinstance(points, list) or not points:
        raise ProfileError(source, "points must be a non-empty list")
    seen = {}
    for i, spec in enumerate(points):
        _check_point(source, data["protocol"], i, spec)
        if spec["name"] in seen:
            raise ProfileError(source, "point %s is defined twice" % spec["name"])
        seen[spec["name"]] = True
    if "actions" in data:
        _check_actions(source, data["protocol"], data["actions"])
    for role in ROLES:
        marked = [spec["name"] for spec in points if spec.get("role") == role]
        if len(marked) > 1:
            raise ProfileError(source, "points %s all have role %s; a profile marks one"
                               % (", ".join(marked), role))
    return Profile(data)


def profile_dir() -> str:
    """The folder of the packaged profiles."""
    here = __file__.replace("\\", "/")
    return here[: here.rfind("/")] + "/profiles"


def load_profile(model: str, directory: str | None = None) -> Profile:
    """Read and check `<directory>/<model>.json` (the packaged profiles by default)."""
    path = "%s/%s.json" % (directory or profile_dir(), model)
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError:
        raise ProfileError(path, "no profile for model %r" % model) from None
    except ValueError as exc:
        raise ProfileError(path, "not valid JSON: %s" % exc) from None
    profile = parse_profile(data, path)
    if profile.model != model:
        raise ProfileError(path, "model %r does not match the file name" % profile.model)
    return profile


def list_profiles(directory: str | None = None) -> list:
    """Model names of the profiles in `directory` (the packaged ones by default)."""
    import os

    names = [n[:-5] for n in os.listdir(directory or profile_dir()) if n.endswith(".json")]
    names.sort()
    return names
