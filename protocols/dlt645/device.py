"""DL/T 645-2007 / -1997 device steps (sans-I/O), shared by the agent's driver and the board's bus.

Steps are generators (see protocols/modbus/device.py): they yield `(frame, accept)` and are sent
the reply frame. A read reply with the follow-up flag (B1) is followed by read-follow-up requests
(C=12, SEQ counting up) until the last frame (92), at most `max_followups` of them, through
`dlt645.FollowupAssembler`; a block DI (0001FF00: total + tariffs) is one request split into its
points by byte offset and length; a member that is short, all FF or not BCD is a bad point on its own.

Writes (C=14) and the relay actions (C=1C, 2007 only: `relay_trip` action 1A, `relay_close` 1C direct
close) need the meter's `password` option (never guessed: meters lock remote operation after wrong
passwords) and `operator` (default 00000000). A relay command carries a validity deadline (the runner
passes it: now + RELAY_VALID_S in the gateway's local time); a 9C reply is success, an abnormal DC
reply fails with its ERR bits decoded. No DI of our table carries the relay state: nothing is read back.

Decode spec: [name, DI, byte offset in the value, length (0: the whole value), format, signed, scale,
offset]. Write spec: [DI, format, signed, scale, offset]. Options (`options(entry)`, from the
compiled device entry): (max_followups, seq_start, reply_seq, preamble, version, password, operator).
"""

from protocols import dlt645, steps
from protocols.errors import EncodingError, ProtocolError, WriteRefused, no_action
from protocols.scaling import scaled

#: action name -> the C=1C action byte
RELAY_ACTIONS = {"relay_trip": dlt645.RELAY_TRIP, "relay_close": dlt645.RELAY_CLOSE_DIRECT}
#: how long a relay command stays valid at the meter (its deadline: now + this, local time)
RELAY_VALID_S = 300
ZERO4 = b"\0\0\0\0"


def options(entry: dict) -> tuple:
    """The steps' options from a compiled device entry (protocols/compiled.py)."""
    version = entry.get("version") or (1997 if entry["protocol"] == "dlt645_1997" else 2007)
    limit, seq_start, reply_seq, preamble = entry.get("followup") or (dlt645.MAX_FOLLOWUPS, 1, 1, 4)
    password, operator = entry.get("credentials") or (None, None)
    return (limit, seq_start, bool(reply_seq), preamble, version, password, operator)


def request_reader():  # type: ignore[no-untyped-def]
    """A reader of requests (the server side: the simulator)."""
    return dlt645.Dlt645FrameReader()


def reader(opts: object):  # type: ignore[no-untyped-def]
    return dlt645.Dlt645FrameReader()


def _accept(address: str):  # type: ignore[no-untyped-def]
    # a reply from this meter (AA bytes of a wildcard request match any); skips our own echoed request
    return lambda f: f.is_reply and dlt645.address_matches(address, f.address)


def read_value(device: str, address: str, opts: tuple, frame: bytes, di: str, accept=None):  # type: ignore[no-untyped-def]
    """The value bytes of one DI: the read frame, then C=12 follow-ups while the meter has more."""
    limit, seq_start, reply_seq, preamble, version = opts[:5]
    assembler = dlt645.FollowupAssembler(address, di, version, limit, seq_start, reply_seq, preamble)
    if accept is None:
        accept = _accept(address)
    request = frame  # then a follow-up request, None when complete
    while request is not None:
        try:
            request = assembler.feed((yield request, accept))  # type: ignore[assignment]
        except ProtocolError as exc:
            if assembler.followups:
                exc.args = ("%s (device %s, follow-up frame %d)" % (exc, device,
                                                                   assembler.followups),)
            raise
    return assembler.value


def values(raw: bytes, di: str, specs: list, bad) -> list:  # type: ignore[no-untyped-def]
    """The values of a DI's points in spec order (block members by offset); None for a point without
    one, after `bad(i, why)`: short, all FF (not_available) or not BCD (bad_bcd)."""
    out: list = []
    for i in range(len(specs)):
        _n, _di, off, size, fmt, signed, scale, offset = specs[i]
        try:
            if size and off + size > len(raw):
                raise EncodingError("block %s has %d bytes, member %d needs %d"
                                    % (di, len(raw), off // size, off + size))
            value, quality = dlt645.decode_reading(raw[off : off + size] if size else raw, fmt, signed)
        except EncodingError as exc:
            bad(i, "decode: %s" % exc)
            out.append(None)
            continue
        if value is None:
            bad(i, quality)  # not_available (all FF), bad_bcd
            out.append(None)
        else:
            out.append(scaled(value, scale, offset))
    return out


def decode(raw: bytes, di: str, specs: list, emit) -> None:  # type: ignore[no-untyped-def]
    """`emit(i, value, None)` for each point with a value, `emit(i, None, why)` for the others."""
    why: dict = {}

    def bad(i, text):  # type: ignore[no-untyped-def]
        why[i] = text

    steps.emit_values(values(raw, di, specs, bad), why, emit)


def prepare(address: str, opts: tuple, frame: bytes, specs: list) -> tuple:
    """What every poll of one planned read needs, worked out once: (frame, DI, accept test, specs)."""
    return (bytes(frame), specs[0][1], _accept(address), specs)  # every point of a request has its DI


def read_prepared(device: str, address: str, opts: tuple, prepared: tuple, seq: int, bad):  # type: ignore[no-untyped-def]
    """One planned read, prepared once (`prepare`): the DI's value (with follow-ups); the values of its
    points in spec order (None for a point without one, reported by `bad(i, why)`)."""
    frame, di, accept, specs = prepared
    raw = yield from read_value(device, address, opts, frame, di, accept)
    return values(raw, di, specs, bad)


def read(device: str, address: str, opts: tuple, frame: bytes, specs: list, seq: int, emit):  # type: ignore[no-untyped-def]
    yield from steps.read(prepare, read_prepared, device, address, opts, frame, specs, seq, emit)


def _hex_bytes(text: object) -> bytes:
    if text is None:
        return ZERO4
    try:
        raw = bytes.fromhex(str(text))
    except ValueError:
        raw = b""
    if len(raw) != 4:
        raise ValueError("needs 8 hex digits")
    return raw


def credentials(device: str, opts: tuple) -> tuple:
    """(password, operator) bytes; WriteRefused (without the value) when malformed."""
    try:
        return _hex_bytes(opts[5]), _hex_bytes(opts[6])
    except ValueError as exc:
        raise WriteRefused("device %s: password/operator option %s" % (device, exc)) from None


def check_action(device: str, opts: tuple, name: object) -> None:
    """Nothing when relay action `name` can be sent to this meter; WriteRefused saying why not."""
    if name not in RELAY_ACTIONS:
        raise no_action(device, "dlt645", name)
    if opts[4] != 2007:
        raise WriteRefused("device %s: relay control (C=1C) is a DL/T 645-2007 command; this meter is "
                           "set to version %d" % (device, opts[4]))
    if opts[5] is None:
        # no guessing: many meters lock remote operation after a few wrong passwords
        raise WriteRefused("device %s: relay control needs the meter's password: set options = { "
                           "password = \"<8 hex digits>\" } on this device in the config" % device)
    credentials(device, opts)


def _quoted(name: object) -> str:
    return '"%s"' % name if type(name) is str else repr(name)


def action(device: str, address: str, opts: tuple, name: str, until: tuple, seq: int):  # type: ignore[no-untyped-def]
    """Relay trip / close (C=1C); None (no relay-state DI to read back), or the abnormal reply raised."""
    check_action(device, opts, name)
    password, operator = credentials(device, opts)
    request = dlt645.relay_request(address, RELAY_ACTIONS[name], until, password, operator, opts[3])
    frame = yield request, _accept(address)
    try:
        dlt645.parse_reply(frame, 0x1C, address, name)
    except dlt645.Dlt645AbnormalReply as exc:
        exc.args = ("meter %s refused %s (C=1C): error %02X: %s" % (address, name, exc.code, exc.meaning),)
        raise
    return None


def point_spec(ws: list) -> dict:
    """The profile point keys a write spec stands for, for `Point.check_write` on the board."""
    return {"di": ws[0], "format": ws[1], "signed": ws[2], "scale": ws[3], "offset": ws[4]}


def write(device: str, address: str, opts: tuple, name: str, ws: list, value: object, seq: int):  # type: ignore[no-untyped-def]
    """Write one point (C=14, limits already checked); the value read back, None when that failed."""
    di, fmt, signed, scale, offset = ws
    password, operator = credentials(device, opts)
    raw = value
    if type(value) in (int, float) and (scale != 1 or offset):
        raw = (value - offset) / scale  # type: ignore[operator]
    try:
        data = dlt645.encode_value(raw, fmt, signed)  # type: ignore[arg-type]
    except EncodingError as exc:
        raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
    accept = _accept(address)
    reply = yield dlt645.write_request(address, di, data, password, operator, opts[3]), accept
    dlt645.parse_reply(reply, 0x14, address, di)
    got: list = []
    try:  # read back
        frame = dlt645.read_request(address, di, opts[4], opts[3])
        raw_back = yield from read_value(device, address, opts, frame, di)
        decode(raw_back, di, [(0, di, 0, 0, fmt, signed, scale, offset)], lambda i, v, bad: got.append(v))
    except Exception:  # written, but the read-back failed
        return None
    return got[0] if got else None


def probe(address: str, opts: tuple, di: str, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: read one DI of the meter at `address`; "answers" when it replied."""
    yield dlt645.read_request(address, di, opts[4]), lambda f: f.is_reply
    return "answers"


def wildcard(opts: tuple, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: the wildcard read-address (C=13); (address, note)."""
    frame = yield dlt645.read_address_request(), lambda f: f.is_reply
    return dlt645.parse_read_address_reply(frame), ""
