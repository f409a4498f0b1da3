"""Modbus device steps (sans-I/O), shared by the agent's driver and the board's bus.

A step is a generator: it yields `(frame, accept)` — the bytes to send and which reply frame is
its answer — and is sent the reply frame; the runner around it (agent/drivers.py over a Link,
firmware_py/bus.py over the UART) does the I/O and throws a failed exchange (timeout, CRC, ...)
into it. Compiled request frames are RTU ADUs; `opts` (the device's compiled options) is 1 on
Modbus TCP, where the step sends the same PDU in an MBAP frame.

Decode spec of a point: [name, offset in the reply (registers or bits), type, order, scale, offset].
Write spec: [table, address, type, order, scale, offset].

A planned read is worked out once (`prepare`: the frame, its PDU, the reply's byte count, and per
point where its value lies in the reply and the `struct` format that reads it) and run on every poll
(`read_prepared`): the reply's values are read straight from its bytes, without a list of registers,
except for the types that need `points.decode` (BCD, text, word- or byte-swapped 32/64-bit values).

A broadcast (`broadcast`) is one request to unit 0 on an RTU line: every device acts on it and none
answers, so it is a frame, not a step; the runner sends it and keeps the line idle for
`BROADCAST_DELAY_MS` (or the device's `broadcast_delay_ms` option) before the next request.
"""

from struct import unpack_from

from protocols import modbus, points, steps
from protocols.errors import EncodingError, ExceptionResponse, WriteRefused, no_action
from protocols.scaling import scaled

FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
#: after a broadcast the client keeps the line idle this long (the serial-line spec's "turnaround
#: delay", typically 100..200 ms: the devices act on the request and send nothing)
BROADCAST_DELAY_MS = 100

# how a prepared field is read from the reply PDU
NUMBER = 0  # struct format at a byte offset
BIT = 1  # bit `arg` of the register read with the format at a byte offset (bit<N> types)
COIL = 2  # bit `arg` of the data byte at a byte offset (FC 1 / 2)
GENERAL = 3  # points.decode of the point's registers, or bits (the decode of a whole read)

# how the scale of a NUMBER field applies, decided once per field (`_rule`) rather than by `scaled` per value
SCALED = 0  # anything else: `scaled(raw, scale, offset)` itself
ROUNDED = 1  # a float comes out: round(raw * scale + offset, 9), as `scaled` rounds every float
WHOLE = 2  # integers all through: raw * scale + offset, an integer as `scaled` leaves it
DIVIDED = 3  # a 16-bit register times 10**-k (0.1, 0.01 ... 1e-9): raw / 10**k, which is that rounded value
# A 16-bit raw times fl(10**-k) is within |q| * 2**-52 (< 1.5e-11 for |raw| < 2**16) of q = raw / 10**k, a
# multiple of 1e-9, so round(raw * scale, 9) is the double nearest q, which is what raw / 10**k (an exact
# numerator and denominator, one correctly rounded division) gives; only where floats are doubles
_DOUBLE = float(16777217) != 16777216.0
_TENTHS = [(float("1e-%d" % k), 10**k) for k in range(1, 10)]  # (fl(10**-k), 10**k)

# (type, order) -> struct format of the value as it lies in the reply (the orders of protocols/points.py
# that are a plain byte order: big-endian ABCD, little-endian DCBA; 16-bit values only swap bytes)
_FORMATS = {}
for _t, _f in (("u16", "H"), ("s16", "h"), ("u32", "I"), ("s32", "i"), ("f32", "f"), ("u64", "Q"),
               ("s64", "q"), ("f64", "d")):
    _FORMATS[(_t, "ABCD")] = ">" + _f
    _FORMATS[(_t, "DCBA")] = "<" + _f
    if _t == "u16" or _t == "s16":
        _FORMATS[(_t, "CDAB")] = ">" + _f
        _FORMATS[(_t, "BADC")] = "<" + _f


def options(entry: dict) -> object:
    """The steps' options from a compiled device entry: 1 on Modbus TCP."""
    return entry.get("tcp")


def request_reader():  # type: ignore[no-untyped-def]
    """A reader of requests (the server side: the simulator)."""
    return modbus.RtuFrameReader("request")


def reader(opts: object):  # type: ignore[no-untyped-def]
    """A new reply frame reader for this device's transport."""
    if opts:
        return modbus.MbapFrameReader()
    return modbus.RtuFrameReader("response")


def exchange(unit: int, opts: object, pdu: bytes, tid: int):  # type: ignore[no-untyped-def]
    """Send one request PDU to `unit`; returns the reply PDU (a step, see the module text)."""
    if opts:
        tid = tid & 0xFFFF
        reply = yield modbus.tcp_frame(tid, unit, pdu), lambda f: f[0] == tid
        return bytes(reply[2])
    # a read request echoed by an adapter with local echo is not the reply (writes echo by design)
    reply = yield modbus.rtu_frame(unit, pdu), lambda f: (f[0] == unit and f[1][:1] != b""
                                                          and (f[1] != pdu or pdu[0] >= 5))
    return bytes(reply[1])


def decode(pdu: bytes, values: object, specs: list, emit) -> None:  # type: ignore[no-untyped-def]
    """`emit(i, value, None)` for each spec the reply carries, `emit(i, None, why)` for the others."""
    bits = pdu[0] <= 2
    for i in range(len(specs)):
        value, why = _decode_one(bits, values, specs[i])
        emit(i, value, why)


def _decode_one(bits: bool, values: object, spec: list) -> tuple:
    """(value, None), or (None, why) for a point the reply cannot give."""
    _n, off, typ, order, scale, offset = spec
    try:
        if bits:
            raw: object = bool(values[off])  # type: ignore[index]
        else:
            n = points.register_count(typ)
            raw = points.decode(values[off : off + n], typ, order)  # type: ignore[index]
    except (EncodingError, IndexError) as exc:
        return None, "decode: %s" % exc
    return scaled(raw, scale, offset), None


def _rule(fmt: str, scale: object, offset: object) -> int:
    """How `scaled(raw, scale, offset)` treats every value a number of struct format `fmt` can have
    (never None, bool, text or bytes; scale and offset not 1 and 0): ROUNDED when raw, scale or offset
    is a float (then so is the result, which it rounds), WHOLE when all three are integers (the result
    is one, left as it is), else SCALED (a scale of another type: the general rule)."""
    if (type(scale) is not int and type(scale) is not float) or \
            (type(offset) is not int and type(offset) is not float):
        return SCALED
    if fmt[-1] in "fd" or type(scale) is float or type(offset) is float:
        return ROUNDED
    return WHOLE


def _divisor(fmt: str, scale: object, offset: object) -> int:
    """10**k when a ROUNDED field is a 16-bit register times 10**-k with no offset (DIVIDED), else 0."""
    if not _DOUBLE or fmt[-1] not in "Hh" or type(offset) is not int or offset != 0:
        return 0
    for tenth, divisor in _TENTHS:
        if scale == tenth:
            return divisor
    return 0


def _field(spec: list, function: int, count: int) -> tuple:
    """How one point's value is read from the reply PDU of a read of `count` items: (kind, byte
    offset, struct format, bit (a NUMBER's: how its scale applies, `_rule`), scale or None when it is
    1 with offset 0 (DIVIDED: the divisor), offset, spec)."""
    _n, off, typ, order, scale, offset = spec
    plain = scale == 1 and offset == 0
    if function <= 2:
        if 0 <= off < count:
            return (COIL, 2 + (off >> 3), "", off & 7, None, 0, spec)
        return (GENERAL, 0, "", 0, None, 0, spec)
    fmt = _FORMATS.get((typ, order))
    if fmt is not None:
        if 0 <= off and off + points.register_count(typ) <= count:
            if plain:
                return (NUMBER, 2 + 2 * off, fmt, 0, None, offset, spec)
            rule = _rule(fmt, scale, offset)
            divisor = _divisor(fmt, scale, offset) if rule == ROUNDED else 0
            if divisor:  # DIVIDED: the divisor where the scale would be
                return (NUMBER, 2 + 2 * off, fmt, DIVIDED, divisor, offset, spec)
            return (NUMBER, 2 + 2 * off, fmt, rule, scale, offset, spec)
    elif typ[:3] == "bit" and order in points.ORDERS and 0 <= off < count:
        try:
            points.register_count(typ)
        except EncodingError:
            return (GENERAL, 0, "", 0, None, 0, spec)
        fmt = "<H" if order[0] in "BD" else ">H"
        return (BIT, 2 + 2 * off, fmt, int(typ[3:]), None, 0, spec)
    return (GENERAL, 0, "", 0, None, 0, spec)


def _whole(fields: list) -> tuple:
    """One struct format that reads the leading fields of a reply at once (from byte 2 of its PDU), with
    pad bytes between them, and how many fields it reads: the longest run of plain numbers of one byte
    order from the first field on, in order, not overlapping; (None, 0) when the first field is not one.
    The fields after the run (bits of a register already read, a text, another byte order) are read one
    by one (a lamp's input registers: seven numbers in one unpack, then three bits of its fault word)."""
    order = ""
    parts = []
    at = 2
    n = 0
    for f in fields:
        if f[0] != NUMBER or f[1] < at or (order and f[2][0] != order):
            break
        order = f[2][0]
        if f[1] > at:
            parts.append("%dx" % (f[1] - at))
        parts.append(f[2][1])
        at = f[1] + (8 if f[2][1] in "qQd" else 4 if f[2][1] in "iIf" else 2)
        n += 1
    return (order + "".join(parts), n) if parts else (None, 0)


def prepare(address: object, opts: object, frame: bytes, specs: list) -> tuple:
    """What every poll of one planned read needs, worked out once: (unit, request PDU, RTU frame, the
    accept test of its reply, function, count, fields, the struct format of the leading fields (`_whole`)
    or None, the scaled fields among those as (index, scale, offset, how it applies: `_rule`), how many
    fields that format reads). EncodingError when the frame is not a read."""
    frame = bytes(frame)
    pdu = frame[1:-2]
    try:
        request = modbus.parse_request(pdu)
    except ExceptionResponse as exc:
        raise EncodingError("not a valid request PDU: %s" % exc) from None
    if request.function > 4:
        raise EncodingError("a planned read needs function 1-4, not %d" % request.function)
    unit = frame[0]
    fields = [_field(spec, request.function, request.count) for spec in specs]
    whole, first = _whole(fields)
    scaled_fields = [(i, fields[i][4], fields[i][5], fields[i][3]) for i in range(first)
                     if fields[i][4] is not None]

    def accept(f):  # type: ignore[no-untyped-def]
        # a read request echoed by an adapter with local echo is not the reply
        return f[0] == unit and f[1] != pdu and f[1][:1] != b""

    return (unit, pdu, frame, accept, request.function, request.count, fields, whole, scaled_fields, first)


def decode_prepared(prepared: tuple, reply: bytes, bad) -> list:  # type: ignore[no-untyped-def]
    """Check the reply PDU of a prepared read; the values of its points in spec order (None for a point
    without one, after `bad(i, why)`), as `decode` gives them."""
    function = prepared[4]
    modbus.check_read_response(function, prepared[5], reply)
    whole = prepared[7]
    fields = prepared[6]
    if whole is not None:  # leading plain numbers: one unpack, then the scale of those that have one
        values = list(unpack_from(whole, reply, 2))
        for i, scale, offset, rule in prepared[8]:  # what `scaled` would do, its type checks made once
            if rule == DIVIDED:  # scale holds the divisor
                values[i] = values[i] / scale
            elif rule == ROUNDED:
                values[i] = round(values[i] * scale + offset, 9)
            elif rule == WHOLE:
                values[i] = values[i] * scale + offset
            else:
                values[i] = scaled(values[i], scale, offset)
        first = prepared[9]
        if first == len(fields):
            return values
        values.extend([None] * (len(fields) - first))
    else:
        first = 0
        values = [None] * len(fields)
    registers = None  # the reply as a list of registers or bits, made only when a field needs it
    for i in range(first, len(fields)):  # the fields the unpack above did not read, one by one
        kind, pos, fmt, arg, scale, offset, spec = fields[i]
        if kind == NUMBER:
            raw = unpack_from(fmt, reply, pos)[0]
            if scale is None:
                values[i] = raw
            elif arg == DIVIDED:  # as for the leading numbers above
                values[i] = raw / scale
            elif arg == ROUNDED:
                values[i] = round(raw * scale + offset, 9)
            elif arg == WHOLE:
                values[i] = raw * scale + offset
            else:
                values[i] = scaled(raw, scale, offset)
        elif kind == COIL:
            values[i] = (reply[pos] >> arg) & 1 == 1
        elif kind == BIT:
            values[i] = (unpack_from(fmt, reply, pos)[0] >> arg) & 1 == 1
        else:
            if registers is None:
                registers = modbus.parse_response(prepared[1], reply)
            value, why = _decode_one(function <= 2, registers, spec)
            if why is None:
                values[i] = value
            else:
                bad(i, why)
    return values


def read_prepared(device: str, address: object, opts: object, prepared: tuple, seq: int, bad):  # type: ignore[no-untyped-def]
    """One planned read, prepared once (`prepare`): the frame to the unit; returns the values of its
    points in spec order (None for a point without one, reported by `bad(i, why)`)."""
    if opts:
        reply = yield from exchange(prepared[0], opts, prepared[1], seq)
    else:
        reply = (yield prepared[2], prepared[3])[1]
    return decode_prepared(prepared, reply, bad)


def plain_read(opts: object, prepared: tuple) -> "tuple | None":
    """(frame, accept) when a prepared read is one exchange of a frame fixed at `prepare` (Modbus RTU:
    nothing per poll, no transaction id), so a runner may send it and decode the reply frame with
    `decode_reply` itself instead of running `read_prepared`'s step (the agent's driver does, to save
    the generator per transaction); None on Modbus TCP."""
    if opts:
        return None
    return prepared[2], prepared[3]


def decode_reply(prepared: tuple, frame: tuple, bad) -> list:  # type: ignore[no-untyped-def]
    """What `read_prepared` returns when `frame` (unit, PDU) answers a plain read (`plain_read`)."""
    return decode_prepared(prepared, frame[1], bad)


def read(device: str, address: object, opts: object, frame: bytes, specs: list, seq: int, emit):  # type: ignore[no-untyped-def]
    """One planned read: the compiled RTU frame's PDU to the unit, the reply decoded into `emit`."""
    yield from steps.read(prepare, read_prepared, device, address, opts, frame, specs, seq, emit)


def check_action(device: str, opts: object, name: object) -> None:
    raise no_action(device, "modbus", name)



def point_spec(ws: list) -> dict:
    """The profile point keys a write spec stands for, for `Point.check_write` on the board."""
    return {"table": ws[0], "address": ws[1], "type": ws[2], "order": ws[3], "scale": ws[4], "offset": ws[5]}


def write_pdu(name: str, ws: list, value: object) -> bytes:
    """The request PDU that writes `value` to a coil or whole registers (FC 05, 06 or 16); true/false on
    a register point (an on/off register: Point.check_write allows no other) is 1/0. WriteRefused when
    the point cannot carry the value."""
    table, reg, typ, order, scale, offset = ws
    try:
        if table == "coil":
            return modbus.write_coil_request(reg, bool(value))
        if value is True or value is False:
            value = 1 if value else 0
        registers = points.encode(value, typ, order, scale, offset)  # type: ignore[arg-type]
    except EncodingError as exc:
        raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
    if len(registers) == 1:
        return modbus.write_register_request(reg, registers[0])
    return modbus.write_registers_request(reg, registers)


def write(device: str, address: object, opts: object, name: str, ws: list, value: object, seq: int):  # type: ignore[no-untyped-def]
    """Write one point (limits already checked); returns the value read back, None when the read-back
    failed. WriteRefused (nothing sent) when the point cannot carry the value."""
    unit = int(address)  # type: ignore[call-overload]
    table, reg, typ, order, scale, offset = ws
    if table == "input" or table == "discrete":
        raise WriteRefused("point %s is in the %s table, which cannot be written" % (name, table))
    if table != "coil" and typ.startswith("bit"):
        try:
            mask = points.encode(True, typ, order)[0]
        except EncodingError as exc:
            raise WriteRefused("point %s cannot carry %r: %s" % (name, value, exc)) from None
        current = modbus.read_request(3, reg, 1)
        register = modbus.parse_response(current, (yield from exchange(unit, opts, current, seq)))[0]
        seq += 1
        register = (register | mask) if value else (register & ~mask & 0xFFFF)
        pdu = modbus.write_register_request(reg, register)
    else:
        pdu = write_pdu(name, ws, value)
    modbus.parse_response(pdu, (yield from exchange(unit, opts, pdu, seq)))
    got: list = []
    try:  # read back
        count = 1 if table == "coil" or table == "discrete" else points.register_count(typ)
        request = modbus.read_request(FUNCTIONS[table], reg, count)
        values = modbus.parse_response(request, (yield from exchange(unit, opts, request, seq + 1)))
        decode(request, values, [(0, 0, typ, order, scale, offset)], lambda i, v, bad: got.append(v))
    except Exception:  # written, but the read-back failed
        return None
    return got[0] if got else None


def broadcast_refusal(opts: object, name: str, ws: list) -> "str | None":
    """None when point `name` (write spec `ws`) can be written to every device of the line by one
    broadcast, else why not: Modbus TCP has no broadcast, and a bit inside a register needs its
    register read first."""
    if opts:
        return "Modbus TCP has no broadcast (unit 0 is for RTU lines)"
    table, typ = ws[0], ws[2]
    if table != "coil" and (table != "holding" or typ.startswith("bit")):
        return "point %s is not a coil or whole holding registers" % name
    return None


def broadcast(opts: object, name: str, ws: list, value: object) -> bytes:
    """The RTU frame that writes `value` to point `name` of every device on the line (unit 0, which no
    device answers; limits already checked). WriteRefused (nothing to send) when it cannot."""
    why = broadcast_refusal(opts, name, ws)
    if why is not None:
        raise WriteRefused(why)
    return modbus.rtu_frame(0, write_pdu(name, ws, value))


def action(device: str, address: object, opts: object, name: str, until: tuple, seq: int):  # type: ignore[no-untyped-def]
    check_action(device, opts, name)
    yield  # never reached: no Modbus actions


def probe(address: object, opts: object, register: int, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: read one holding register; the reply PDU (an exception reply raises)."""
    request = modbus.read_request(3, register, 1)
    reply = yield from exchange(int(address), opts, request, seq)  # type: ignore[call-overload]
    modbus.parse_response(request, reply)
    return "answers"
