"""DL/T 645-2007 (and -1997) electricity meters: one read per data identifier.

A reply with the follow-up flag (B1) is followed by read-follow-up requests (C=12, SEQ counting up)
until the last frame (92), at most `max_followups` of them; the value is the frames' data joined. A
block DI (0001FF00: total + tariffs) is read once and split into its points by `block_index`; a member
that is all FF or not BCD is a bad point on its own. Options (profile, device override):
`max_followups` (16), `followup_seq_start` (SEQ of the first C=12, 1), `followup_reply_seq` (the
92/B2 replies end with the SEQ byte, true) — the last two are not settled without the standard's text.

Actions (when the profile lists them): `relay_trip` / `relay_close` send C=1C (DL/T 645-2007 only) with
action 1A (trip) / 1C (direct close), the meter's `password` option (required: never guessed, since
meters lock remote operation after wrong passwords) and `operator` (default 00000000), 8 hex digits
each, and a validity deadline RELAY_VALID_S ahead in the gateway's local time. A 9C reply is
success; an abnormal DC reply fails with its ERR bits decoded. No DI of our table carries the relay state,
so nothing is read back (the ack value is None).
"""

from __future__ import annotations

import time
from typing import Any

from agent.drivers.base import Driver, ReadResult, WriteRefused, scaled
from agent.link.base import Link, LinkError
from agent.planner import PlannedRequest
from protocols import dlt645
from protocols.errors import EncodingError, ProtocolError

__all__ = ["RELAY_ACTIONS", "RELAY_VALID_S", "Dlt645Driver"]

#: action name -> the C=1C action byte
RELAY_ACTIONS = {"relay_trip": dlt645.RELAY_TRIP, "relay_close": dlt645.RELAY_CLOSE_DIRECT}
#: how long a relay command stays valid at the meter (its deadline: now + this, local time)
RELAY_VALID_S = 300


def _hex_bytes(text: object, default: bytes) -> bytes:
    if text is None:
        return default
    raw = bytes.fromhex(str(text))
    if len(raw) != 4:
        raise ValueError("needs 8 hex digits")
    return raw


class Dlt645Driver(Driver):
    protocol = "dlt645"
    actions = tuple(RELAY_ACTIONS)

    def __init__(self, device: Any, profile: Any, bus: Any) -> None:
        Driver.__init__(self, device, profile, bus)
        self.address = str(device.address)
        default_version = 1997 if profile.protocol == "dlt645_1997" else 2007
        self.version = int(self.options.get("version", default_version))
        self.preamble = int(self.options.get("preamble", 4))
        self.max_followups = int(self.options.get("max_followups", dlt645.MAX_FOLLOWUPS))
        self.seq_start = int(self.options.get("followup_seq_start", 1))
        self.reply_seq = bool(self.options.get("followup_reply_seq", True))

    def _reply(self, frame: Any) -> bool:
        return bool(frame.is_reply)  # skips our own request echoed by the adapter

    def transact(self, link: Link, request: bytes) -> Any:
        return link.transact(request, dlt645.Dlt645FrameReader(), accept=self._reply)

    def read_value(self, link: Link, di: str) -> bytes:
        """The value bytes of one DI, following a B1 reply with C=12 requests until the last frame."""
        assembler = dlt645.FollowupAssembler(self.address, di, self.version, self.max_followups,
                                             self.seq_start, self.reply_seq, self.preamble)
        request: bytes | None = dlt645.read_request(self.address, di, self.version, self.preamble)
        while request is not None:
            try:
                request = assembler.feed(self.transact(link, request))
            except ProtocolError as exc:
                if assembler.followups:
                    exc.args = ("%s (device %s, follow-up frame %d)" % (exc, self.id, assembler.followups),)
                raise
        return assembler.value

    def read(self, link: Link, request: PlannedRequest) -> ReadResult:
        raw = self.read_value(link, str(request.di))
        result = ReadResult()
        for point, _ in request.points:
            fmt = str(point.format)
            member = bytes(raw)
            try:
                if point.block_index is not None:
                    size = dlt645.format_info(fmt)[0]
                    start = point.block_index * size
                    member = member[start:start + size]
                    if len(member) < size:
                        result.bad.append((point.name, "decode: block %s has %d bytes, member %d needs %d"
                                           % (request.di, len(raw), point.block_index, start + size)))
                        continue
                value, quality = dlt645.decode_reading(member, fmt, point.signed)
            except EncodingError as exc:
                result.bad.append((point.name, "decode: %s" % exc))
                continue
            if quality != "good" or value is None:
                result.bad.append((point.name, quality))  # e.g. not_available: all FF
            else:
                result.values.append((point.name, scaled(value, point)))
        return result

    def _credentials(self) -> tuple[bytes, bytes]:
        """(password, operator) from the options; WriteRefused (without the value) when malformed."""
        try:
            password = _hex_bytes(self.options.get("password"), b"\0\0\0\0")
            operator = _hex_bytes(self.options.get("operator"), b"\0\0\0\0")
        except ValueError as exc:
            raise WriteRefused("device %s: password/operator option %s" % (self.id, exc)) from None
        return password, operator

    def check_action(self, name: Any) -> None:
        Driver.check_action(self, name)
        if self.version != 2007:
            raise WriteRefused("device %s: relay control (C=1C) is a DL/T 645-2007 command; this meter is "
                               "set to version %d" % (self.id, self.version))
        if "password" not in self.options:
            # no guessing: many meters lock remote operation after a few wrong passwords
            raise WriteRefused("device %s: relay control needs the meter's password: set options = { "
                               "password = \"<8 hex digits>\" } on this device in the config" % self.id)
        self._credentials()

    def action(self, link: Link, name: str) -> Any:
        """Relay trip / close (C=1C); None (no relay-state DI to read back), or the abnormal reply raised."""
        self.check_action(name)
        password, operator = self._credentials()
        until = tuple(time.localtime(time.time() + RELAY_VALID_S)[:6])
        request = dlt645.relay_request(self.address, RELAY_ACTIONS[name], until, password, operator,
                                       self.preamble)
        frame = self.transact(link, request)
        try:
            dlt645.parse_reply(frame, 0x1C, self.address, name)
        except dlt645.Dlt645AbnormalReply as exc:
            exc.args = ("meter %s refused %s (C=1C): error %02X: %s" % (self.address, name, exc.code,
                                                                      exc.meaning),)
            raise
        return None

    def write(self, link: Link, name: str, value: Any) -> Any:
        point = self.check_write(name, value)
        password, operator = self._credentials()
        raw: Any = value
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and (point.scale != 1 or point.offset):
            raw = (value - point.offset) / point.scale
        try:
            data = dlt645.encode_value(raw, str(point.format), point.signed)
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
        request = dlt645.write_request(self.address, str(point.di), data, password, operator, self.preamble)
        frame = self.transact(link, request)
        dlt645.parse_reply(frame, 0x14, self.address, str(point.di))
        try:
            planned = PlannedRequest(self.id, self.protocol, [(point, 0)], di=point.di)
            result = self.read(link, planned)
            return result.values[0][1] if result.values else None
        except (LinkError, ProtocolError):
            return None
