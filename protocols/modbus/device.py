"""Modbus device steps (sans-I/O), shared by the agent's driver and the board's bus.

A step is a generator: it yields `(frame, accept)` — the bytes to send and which reply frame is
its answer — and is sent the reply frame; the runner around it (agent/drivers.py over a Link,
firmware_py/bus.py over the UART) does the I/O and throws a failed exchange (timeout, CRC, ...)
into it. Compiled request frames are RTU ADUs; `opts` (the device's compiled options) is 1 on
Modbus TCP, where the step sends the same PDU in an MBAP frame.

Decode spec of a point: [name, offset in the reply (registers or bits), type, order, scale, offset].
Write spec: [table, address, type, order, scale, offset].

A broadcast (`broadcast`) is one request to unit 0 on an RTU line: every device acts on it and none
answers, so it is a frame, not a step; the runner sends it and keeps the line idle for
`BROADCAST_DELAY_MS` (or the device's `broadcast_delay_ms` option) before the next request.
"""

from protocols import modbus, points
from protocols.errors import EncodingError, WriteRefused, no_action
from protocols.scaling import scaled

FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
#: after a broadcast the client keeps the line idle this long (the serial-line spec's "turnaround
#: delay", typically 100..200 ms: the devices act on the request and send nothing)
BROADCAST_DELAY_MS = 100


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
        _n, off, typ, order, scale, offset = specs[i]
        try:
            if bits:
                raw: object = bool(values[off])  # type: ignore[index]
            else:
                n = points.register_count(typ)
                raw = points.decode(values[off : off + n], typ, order)  # type: ignore[index]
        except (EncodingError, IndexError) as exc:
            emit(i, None, "decode: %s" % exc)
            continue
        emit(i, scaled(raw, scale, offset), None)


def read(device: str, address: object, opts: object, frame: bytes, specs: list, seq: int, emit):  # type: ignore[no-untyped-def]
    """One planned read: the compiled RTU frame's PDU to the unit, the reply decoded into `emit`."""
    pdu = bytes(frame[1:-2])
    reply = yield from exchange(frame[0], opts, pdu, seq)
    decode(pdu, modbus.parse_response(pdu, reply), specs, emit)


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
