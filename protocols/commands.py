"""The command rules both gateways apply to what arrives on ``…/cmd``: one copy, every refusal text here.

A command is the CBOR map of docs/payload.md (``id``, ``device``, ``point``/``action``, ``value``,
optionally ``exp``), sent as is or as the payload of a COSE_Mac0 (protocols/cose.py) whose kid is
the gateway id. The order in which a gateway applies the rules (docs/commands.md):

1. ``too_large``/``retained`` (the MQTT layer, before decoding);
2. `open_command`: decode, verify a signature when there is one, check the map's shape;
3. `check_policy`: a signature where ``signed`` asks for one (``needs_signature``), ``exp`` present on
   signed commands and not passed, not too far ahead, and a set clock to judge it by;
4. `IdMemory.check`: a repeat gets its original ack again (nothing runs), another command under a
   used id is refused;
5. the device's own checks (profile: writable, range), the bounded bus queue (``busy``), the bus.

An id is remembered from the moment a command passes 2-4 (it is about to run) until its ``exp``, or
``id_window`` seconds for a command without one. Refusals before that are not remembered: whoever
publishes a command that fails its signature must not be able to use up the platform's ids.

Sans-I/O, shared dialect: `now` is passed in; persistence of the id memory is the caller's.
"""

import hashlib

from protocols import cbor, cose
from protocols.errors import ProtocolError

SIGNED_MODES = ("switching", "all", "none")
#: actions that switch supply (DL/T 645 relay); a profile marks switching points with "switching": true
SWITCHING_ACTIONS = ("relay_trip", "relay_close")
#: a clock that reads earlier than 2020-01-01 has not been set (a board after power-up without NTP)
CLOCK_SET_AFTER = 1577836800
DIGEST_SIZE = 16

#: reason -> refusal text (``%`` arguments). Every ack a gateway refuses a command with, before the
#: device's own checks (protocols/profiles.Point.check_write) and the bus, carries one of these.
REFUSALS = {
    "too_large": "command of %d bytes is over the limit of %d bytes",
    "retained": "retained commands are not executed",
    "not_cbor": "command is not valid CBOR: %s",
    "not_command": "command is neither a CBOR map nor a COSE_Mac0 (CBOR tag 17)",
    "bad_cose": "signed command is not a valid COSE_Mac0: %s",
    "bad_alg": "signed command: %s; this gateway accepts only HMAC 256/256 (alg 5) in the protected header",
    "wrong_kid": "signed command is for key id %s, not for this gateway (%s)",
    "bad_tag": "signed command does not verify with the key of gateway %s (forged, or made with another key)",
    "no_key": "signed command, but this gateway has no key to check it with ([commands] key_file)",
    "no_id": "command has no id",
    "no_device": "command needs a device (text)",
    "no_target": "command needs a point or an action (text)",
    "bad_exp": "exp must be POSIX seconds (an integer), not %s",
    "unsigned": "%s is refused unsigned: this gateway wants %s commands signed (COSE_Mac0)",
    "no_exp": "signed command has no exp (POSIX seconds after which it must not run)",
    "no_clock": "command has an expiry but this gateway's clock is not set (it reads %d)",
    "expired": "command expired at %d, %d s ago by this gateway's clock",
    "too_far": "command expires at %d, more than %d s ahead (id_window): its id could not be remembered "
               "that long",
    "duplicate_id": "command id %s was already used by another command; an id runs at most once",
    "unknown_device": "unknown device %s",
    "no_point": "command needs a point name",
    "no_value": "write command needs a value",
    "no_store": "the gateway cannot record the command id (%s); nothing was done",
    "busy": "bus %s already has %d commands waiting; nothing was done, try again later",
    "interrupted": "the gateway stopped while this command was running; its outcome is unknown",
}


def refusal(reason: str, *args: object) -> str:
    """The refusal text of `reason` with its arguments."""
    text = REFUSALS[reason]
    return text % args if args else text


def show(value: object) -> str:
    """A value as refusal texts quote it: text in double quotes, anything else as repr."""
    if isinstance(value, str):
        return '"%s"' % value
    return repr(value)


class Refused(ProtocolError):
    """A command that must not run: `reason` (a REFUSALS key), `text`, and the command's id if known."""

    def __init__(self, reason: str, text: str, cmd_id: object = None) -> None:
        self.reason = reason
        self.text = text
        self.cmd_id = cmd_id
        ProtocolError.__init__(self, text)


def _refuse(reason: str, cmd_id: object, *args: object) -> Refused:
    return Refused(reason, refusal(reason, *args), cmd_id)


def valid_id(value: object) -> bool:
    """A command id: text or an integer (not a bool)."""
    return (type(value) is int) or (type(value) is str)


def ack(cmd_id: object, ok: bool, error: object = None, value: object = None) -> dict:
    """The ack map of docs/payload.md."""
    return {"id": cmd_id, "ok": ok, "error": None if ok else error, "value": value}


def ack_bytes(cmd_id: object, ok: bool, error: object = None, value: object = None) -> bytes:
    return cbor.dumps(ack(cmd_id, ok, error, value))


NOT_RUN = {"ok": False, "error": "not run", "value": None}


def group_outcome(members: list, results: dict) -> dict:
    """The ack fields {ok, error, value} of a group command: `value` has one result per device of
    the group (`results`: device -> {ok, error, value[, broadcast]}), `ok` only when every device's is;
    `error` counts the failures and quotes the first."""
    value = {}
    failed = []
    for d in members:
        r = results.get(d, NOT_RUN)
        value[d] = r
        if not r["ok"]:
            failed.append(d)
    error = None
    if failed:
        error = "%d of %d devices failed: %s: %s%s" % (len(failed), len(members), failed[0],
                                                       value[failed[0]]["error"],
                                                       "; \u2026" if len(failed) > 1 else "")
    return {"ok": not failed, "error": error, "value": value}


class Command:
    """A command map that passed `open_command`: its fields, whether it was signed, its digest."""

    def __init__(self, fields: dict, signed: bool, digest: bytes) -> None:
        self.fields = fields
        self.id = fields["id"]
        self.device = fields["device"]
        self.point = fields.get("point")
        self.action = fields.get("action")
        self.exp = fields.get("exp")
        self.signed = signed
        self.digest = digest

    @property
    def what(self) -> str:
        """How refusal texts name the command: "relay_trip on flat-101-power", "write valve of wm-1"."""
        if isinstance(self.action, str) and self.action not in ("read", "write"):
            return "%s on %s" % (self.action, self.device)
        return "%s %s of %s" % ("read" if self.action == "read" else "write", self.point, self.device)


def recover_id(data: bytes) -> object:
    """Best effort: the id of a damaged command map whose encoding starts with its "id" key, else None.

    A deterministically encoded map sorts the shortest key first, so "id" leads; a truncated or
    damaged command still says whom to refuse. Looks at the first 70 bytes only."""
    if len(data) < 5 or not (0xA1 <= data[0] <= 0xB7 or data[0] == 0xBF) or data[1:4] != b"\x62id":
        return None
    for end in range(5, min(len(data), 4 + 66) + 1):
        try:
            value = cbor.loads(data[4:end])
        except (ProtocolError, ValueError, TypeError, IndexError):
            continue
        return value if valid_id(value) else None
    return None


def _payload_id(payload: bytes) -> object:
    """The id inside an unverified payload, for the ack of its refusal (None when there is none)."""
    try:
        fields = cbor.loads(payload)
    except (ProtocolError, ValueError, TypeError, IndexError, RuntimeError):
        return recover_id(payload)
    if type(fields) is dict and valid_id(fields.get("id")):
        return fields["id"]
    return None


def _raw_payload_id(data: bytes) -> object:
    """The id in the payload of something shaped like a COSE_Mac0 that `cose.decode` refused."""
    try:
        item = cbor.loads(data)
    except ProtocolError:
        return None
    parts = item.value if isinstance(item, cbor.Tag) else None
    if type(parts) is list and len(parts) == 4 and type(parts[2]) is bytes:
        return _payload_id(parts[2])
    return None


def peek_id(data: bytes) -> object:
    """The id of a command (plain or signed) without verifying anything, for a refusal's ack; None
    when there is none to be found."""
    data = bytes(data)
    if cose.is_mac0(data):
        return _raw_payload_id(data)
    return _payload_id(data)


def open_command(data: bytes, keys: list, gateway_id: str) -> Command:
    """Decode a command (plain map, or COSE_Mac0 verified with `keys` for kid `gateway_id`) and check
    its shape. Refused (with the id when it could be found) for anything that is not a command."""
    data = bytes(data)
    digest = hashlib.sha256(data).digest()[:DIGEST_SIZE]
    signed = cose.is_mac0(data)
    if signed:
        try:
            msg = cose.decode(data)
        except cose.CoseError as exc:
            raise _refuse("bad_alg" if exc.reason == "algorithm" else "bad_cose", _raw_payload_id(data),
                          str(exc)) from None
        cmd_id = _payload_id(msg.payload)
        kid = gateway_id.encode()
        if not keys:
            raise _refuse("no_key", cmd_id)
        try:
            payload = cose.verify(data, keys, kid)
        except cose.CoseError as exc:
            if exc.reason == "kid":
                got = msg.kid.decode() if type(msg.kid) is bytes and _printable(msg.kid) else msg.kid
                raise _refuse("wrong_kid", cmd_id, show(got), gateway_id) from None
            raise _refuse("bad_tag", cmd_id, gateway_id) from None
        data = payload
    try:
        fields = cbor.loads(data)
    except (ProtocolError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise _refuse("not_cbor", recover_id(data), exc) from None
    if type(fields) is not dict:
        raise _refuse("not_command", None)
    cmd_id = fields.get("id")
    if not valid_id(cmd_id):
        raise _refuse("no_id", None)
    if type(fields.get("device")) is not str:
        raise _refuse("no_device", cmd_id)
    if type(fields.get("point")) is not str and type(fields.get("action")) is not str:
        raise _refuse("no_target", cmd_id)
    exp = fields.get("exp")
    if exp is not None and type(exp) is not int:
        raise _refuse("bad_exp", cmd_id, show(exp))
    return Command(fields, signed, digest)


def _printable(raw: bytes) -> bool:
    for b in raw:
        if b < 0x20 or b > 0x7E:
            return False
    return True


def is_switching(action: object, point_switching: bool) -> bool:
    """True for a command that switches supply: a relay action, or a write of a point the profile
    marks switching (`point_switching`). Reads never switch."""
    if action in SWITCHING_ACTIONS:
        return True
    if action is not None and action != "write":
        return False
    return point_switching


def needs_signature(mode: str, switching: bool) -> bool:
    """Whether `signed` = `mode` wants this command signed."""
    return mode == "all" or (mode == "switching" and switching)


def check_policy(cmd: Command, mode: str, switching: bool, now: int, id_window: int,
                 clock_floor: int = CLOCK_SET_AFTER) -> None:
    """Refused when the command lacks a signature `mode` asks for, or its `exp` rules it out at `now`;
    a clock earlier than `clock_floor` is not set (a board passes its config's, firmware_py/clock.py)."""
    if not cmd.signed and needs_signature(mode, switching):
        raise _refuse("unsigned", cmd.id, cmd.what, "switching" if mode == "switching" else "all")
    if cmd.signed and cmd.exp is None:
        raise _refuse("no_exp", cmd.id)
    exp = cmd.exp
    if exp is None:
        return
    if now < clock_floor:
        raise _refuse("no_clock", cmd.id, now)
    if now > exp:
        raise _refuse("expired", cmd.id, exp, now - exp)
    if exp - now > id_window:
        raise _refuse("too_far", cmd.id, exp, id_window)


def remember_until(cmd: Command, now: int, id_window: int) -> int:
    """Until when the id of `cmd` is remembered: its exp, else `now` + `id_window`."""
    return cmd.exp if cmd.exp is not None else now + id_window


RUNNING = b""  # the ack of an entry whose command has not finished


class IdMemory:
    """Ids of commands that ran or are running: key -> [digest, until, ack bytes (RUNNING while it runs)].

    Bounded by `limit`: when full, the entry that expires first is forgotten (counted in `evicted`).
    Persistence is the caller's: `rows()` and `load()` give and take [key, digest, until, ack] rows;
    `changed` lists the keys written since the caller last cleared it."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = max(1, limit)
        self.entries: dict = {}
        self.evicted = 0

    @staticmethod
    def key(cmd_id: object) -> bytes:
        """The id as stored: its CBOR encoding (5 and "5" are different ids)."""
        return cbor.dumps(cmd_id)

    def check(self, cmd: Command):
        """None for a new id; the original ack (bytes; RUNNING while it runs) for a repeat of the same
        command; Refused("duplicate_id") for another command under a used id."""
        entry = self.entries.get(self.key(cmd.id))
        if entry is None:
            return None
        if not cose.same_bytes(entry[0], cmd.digest):
            raise _refuse("duplicate_id", cmd.id, show(cmd.id))
        return entry[2]

    def begin(self, cmd: Command, until: int) -> list:
        """Remember `cmd` as running; returns the row to persist."""
        key = self.key(cmd.id)
        if key not in self.entries and len(self.entries) >= self.limit:
            first = None
            for k in self.entries:
                if first is None or self.entries[k][1] < self.entries[first][1]:
                    first = k
            del self.entries[first]
            self.evicted += 1
        self.entries[key] = [cmd.digest, until, RUNNING]
        return [key, cmd.digest, until, RUNNING]

    def finish(self, cmd_id: object, ack: bytes) -> list:
        """Record the ack `cmd_id` finished with; returns the row to persist ([] if forgotten)."""
        key = self.key(cmd_id)
        entry = self.entries.get(key)
        if entry is None:
            return []
        entry[2] = ack
        return [key, entry[0], entry[1], ack]

    def forget(self, cmd_id: object) -> bytes:
        """Drop an id (a command that never ran, e.g. busy); returns its key."""
        key = self.key(cmd_id)
        self.entries.pop(key, None)
        return key

    def expire(self, now: int) -> list:
        """Forget ids whose time has passed; returns their keys."""
        gone = [k for k in self.entries if self.entries[k][1] < now]
        for k in gone:
            del self.entries[k]
        return gone

    def rows(self) -> list:
        return [[k, e[0], e[1], e[2]] for k, e in self.entries.items()]

    def load(self, rows: list, now: int) -> int:
        """Take persisted rows; an entry still RUNNING (the gateway stopped while it ran) gets the
        `interrupted` ack. Returns how many were interrupted."""
        interrupted = 0
        for key, digest, until, ack_raw in rows:
            if until < now:
                continue
            if not ack_raw:
                try:
                    cmd_id = cbor.loads(key)
                except ProtocolError:
                    continue
                ack_raw = ack_bytes(cmd_id, False, refusal("interrupted"))
                interrupted += 1
            self.entries[bytes(key)] = [bytes(digest), until, bytes(ack_raw)]
        return interrupted


__all__ = ["CLOCK_SET_AFTER", "REFUSALS", "RUNNING", "SIGNED_MODES", "SWITCHING_ACTIONS", "Command",
           "IdMemory", "Refused", "ack", "ack_bytes", "check_policy", "is_switching", "needs_signature",
           "open_command", "peek_id", "recover_id", "refusal", "remember_until", "show", "valid_id"]
