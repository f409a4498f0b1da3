"""What generic code asks of a protocol: the `Family` base class and the planned request.

Each protocol folder (protocols/modbus/, protocols/dlt645/, protocols/cjt188/) holds its codec
(`__init__.py`), its sans-I/O device steps (`device.py`, shared by agent and board) and a
`family.py` whose `Family` subclass answers every question the generic host code used to answer
with `if protocol == ...`: the profile point schema, the option specs, address normalisation, link
defaults, the planner's grouping of points into requests and their sizes on the line, the compiled
form of a device for the board, and where the simulator's server lives. `protocols/registry.py`
maps a protocol name to its folder; `registry.family(name)` returns the answers.

A `Family` is built once per registered name: variants of one folder (dlt645 and dlt645_1997) are
one class, told apart by `self.name`. Pure code: it runs on MicroPython as well.
"""

from protocols.errors import EncodingError


class Option:
    """A protocol option a device may set in the config: its type, range and whether it is secret.

    `kind` is "int" (whole number in `low`..`high`), "hex4" (8 hex digits as a string), "bool",
    "text", "table" or "any"; a secret option's value is never echoed in an error."""

    def __init__(self, kind: str = "any", low: int = 0, high: int = 0, secret: bool = False) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.secret = secret

    def check(self, value: object) -> "str | None":
        """None when `value` fits, else what was expected (without the value of a secret)."""
        if self.kind == "int":
            if type(value) is not int or not self.low <= value <= self.high:  # bools are no integers here
                return "expected an integer up to %d" % self.high
        elif self.kind == "hex4":
            if type(value) is not str or len(value) != 8 or not _hex(value):
                return "expected 8 hex digits as a string (such as \"00000000\")"
        elif self.kind == "bool":
            if type(value) is not bool:
                return "expected true or false"
        return None


def _hex(text: str) -> bool:
    for ch in text:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


class PlannedRequest:
    """One transaction of a poll cycle: the points it reads and its size on the line.

    `points` is a list of (Point, offset in the reply: registers or bits for Modbus, bytes of the
    value for a DL/T 645 block member). Protocol-specific fields: Modbus `function`, `table`,
    `address`, `count`; meters `di` (DL/T 645: printed text; CJ/T 188: int)."""

    def __init__(self, device: str, protocol: str, points: list, function: int = 0, table: str = "",
                 address: int = 0, count: int = 0, di: object = None, request_bytes: int = 0,
                 reply_bytes: int = 0) -> None:
        self.device = device
        self.protocol = protocol
        self.points = points
        self.function = function
        self.table = table
        self.address = address
        self.count = count
        self.di = di
        self.request_bytes = request_bytes
        self.reply_bytes = reply_bytes
        self.line_time = 0.0  # seconds, typical (the device answers)
        self.worst_time = 0.0  # seconds, when the device does not answer (response timeout)

    def describe(self) -> str:
        from protocols import registry

        return registry.family(self.protocol).describe(self)

    def __repr__(self) -> str:
        return "PlannedRequest(%r, %r, %s)" % (self.device, self.protocol,
                                               ", ".join(p.name for p, _ in self.points))


def number(v: object) -> object:
    """A float that is a whole number as an int (compact JSON for the board)."""
    if type(v) is float and v == int(v):  # type: ignore[arg-type]
        return int(v)  # type: ignore[arg-type]
    return v


NO_OPTIONS: dict = {}


class Family:
    """The answers of one protocol; subclasses override what differs from these defaults."""

    #: folder under protocols/ (the family), and a readable title
    folder = ""
    title = ""
    #: point keys a profile of this protocol may carry (beyond the common name/unit/scale/...), and
    #: those of them no other protocol's point may carry
    point_keys: tuple = ()
    exclusive_keys: tuple = ()
    #: action names the device steps can carry out (a profile lists those its model allows)
    actions: tuple = ()
    #: protocol options a device may set, name -> Option
    options: dict = NO_OPTIONS
    #: meters: addresses are up to this many digits as printed, zero-filled (0: the family says itself),
    #: and what one is called in an error
    address_digits = 0
    address_what = "an address"
    #: factory serial settings when a profile says none: (baud, parity)
    link = (9600, "N")
    #: the profile `fieldlink read` uses when none is named (None: one must be named)
    default_profile: "str | None" = None
    #: True when the protocol also runs on Modbus TCP (tcp://host:port buses)
    tcp = False
    #: frames are delimited by line silence (Modbus RTU t3.5) rather than by their own bytes
    silence_framed = False
    #: the device's typical delay before it answers (ms), for line-time estimates
    reply_delay_ms = 20
    #: `fieldlink scan`: response timeout (ms) per probe, and the default --sweep range
    scan_timeout_ms = 600
    sweep = (1, 1)
    #: how a device of this protocol refuses a request: "exception" (Modbus) or "abnormal" (meters)
    error_reply = "abnormal"
    #: "module:Class" of the simulator's server for this protocol (host side, imported lazily)
    simulator = ""
    #: households one of its meters serves unless the config says (`serves`; the birth's inventory)
    households = 0
    #: its devices can be written all at once by one broadcast request (a profile point may then be
    #: marked "broadcast"; the device steps' `broadcast` builds the frame)
    broadcast = False

    def __init__(self, name: str) -> None:
        self.name = name

    # -- profiles ---------------------------------------------------------------------------------
    def check_point(self, spec: dict) -> "str | None":
        """None when a profile point is complete for this protocol, else what is wrong."""
        return None

    # -- addresses --------------------------------------------------------------------------------
    def normalise_address(self, address: object, tcp: bool = False) -> str:
        """The canonical text of a device address; ValueError saying what was expected. Meters: up to
        `address_digits` digits as printed, zero-filled on the left."""
        width = self.address_digits
        if not width or (type(address) is not int and type(address) is not str):
            raise ValueError(self.address_what)
        text = str(address).strip()
        if not text.isdigit() or len(text) > width:
            raise ValueError(self.address_what)
        return "0" * (width - len(text)) + text

    def is_wildcard(self, address: str) -> bool:
        """True for an address that any meter on the bus answers (AA..AA)."""
        return self.address_digits > 0 and len(address) > 0 and address.upper() == "A" * len(address)

    def birth_address(self, address: str) -> object:
        """The address as the birth message carries it (docs/payload.md)."""
        return address

    def address_label(self, n: int) -> str:
        """The address `--sweep` probes as number `n`."""
        text = str(n)
        return "0" * (self.address_digits - len(text)) + text if self.address_digits else text

    def config_address(self, address: object) -> str:
        """The address as TOML text in a generated config."""
        return '"%s"' % address

    # -- planning ---------------------------------------------------------------------------------
    def plan(self, device: str, points: list, options: dict, single: bool = False) -> list:
        """The requests of one poll cycle (PlannedRequest, with request/reply sizes in bytes)."""
        raise NotImplementedError

    def describe(self, request: PlannedRequest) -> str:
        return "read %s: %s" % (request.di, ", ".join(p.name for p, _ in request.points))

    # -- the compiled form (protocols/compiled.py) --------------------------------------------------
    def request_frame(self, address: str, options: dict, request: PlannedRequest) -> bytes:
        """The request's frame, ready to send."""
        raise NotImplementedError

    def decode_spec(self, point: object, offset: int, name: int) -> list:
        """How one point decodes from its request's reply: [name index, protocol arguments]."""
        raise NotImplementedError

    def write_spec(self, point: object, options: dict) -> list:
        """How a command writes the point (after the limits the compiler puts in front)."""
        raise EncodingError("%s points cannot be written" % self.name)

    def broadcast_idle_ms(self, options: dict) -> int:
        """How long the line stays idle after a broadcast (ms): the devices act on it and send nothing."""
        return 0

    def compiled_entry(self, options: dict, tcp: bool = False) -> dict:
        """The keys of a compiled device entry beyond the common ones (protocols/compiled.py) that the
        device steps need: `device.options(entry)` turns the entry into the steps' options, on the
        board and in the agent alike."""
        return {}

    # -- fieldlink scan -----------------------------------------------------------------------------
    def probe_hint(self, profile: object, register: int) -> object:
        """What the device steps' `probe` reads (Modbus: the register; meters: from the profile)."""
        return register
