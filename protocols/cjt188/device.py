"""CJ/T 188-2004 device steps (sans-I/O), shared by the agent's driver and the board's bus.

Steps are generators (see protocols/modbus/device.py). Every point comes from one 901F reply; the
compiled request is sent with the device's next sequence number (SER), and the reply must echo it.
A field that arrives in another unit code than the profile expects (`options.unit_code`) is
converted with `cjt188.primary_value`, or is a bad point when the units do not convert. The valve
(DI A017) is the only writable point: "open" / "closed" (or true / false), read back from a 901F.

Decode spec: [name, 901F field, scale, offset]. Write spec: [field, meter type, DI order, preamble].
Options (`options(entry)`): (meter type, status map, unit codes).
"""

from protocols import cjt188, steps
from protocols.errors import EncodingError, WriteRefused, no_action
from protocols.scaling import scaled

VALVE = {"open": "open", "closed": "close", "close": "close", True: "open", False: "close"}


def options(entry: dict) -> tuple:
    o = entry.get("options") or {}
    return (o.get("meter_type"), o.get("status"), o.get("unit_code"))


def request_reader():  # type: ignore[no-untyped-def]
    """A reader of requests (the server side: the simulator)."""
    return cjt188.Cjt188FrameReader()


def reader(opts: object):  # type: ignore[no-untyped-def]
    return cjt188.Cjt188FrameReader()


def _accept(address: str):  # type: ignore[no-untyped-def]
    return lambda f: f.is_reply and f.address == address


def convert(field: str, value: object, fields: dict, units: object) -> object:
    """A value in the meter's unit code brought to the unit the profile expects; EncodingError when
    the units do not convert."""
    got = fields.get(field + "_unit")
    want = units.get(field) if units else None  # type: ignore[attr-defined]
    if got is None or want is None or got == want or type(value) is bool or type(value) is str:
        return value
    have, unit = cjt188.primary_value(value, got)  # type: ignore[arg-type]
    base, want_unit = cjt188.primary_value(1, want)
    if unit != want_unit:
        raise EncodingError("%s arrives in unit code %02X, expected %02X" % (field, got, want))
    return have / base


def values(fields: dict, specs: list, units: object, bad) -> list:  # type: ignore[no-untyped-def]
    """The values of a 901F reply's points in spec order; None for a point without one, after
    `bad(i, why)`: a field missing or with bad BCD, or in a unit that does not convert."""
    out: list = []
    for i in range(len(specs)):
        _n, field, scale, offset = specs[i]
        value = fields.get(field)
        if value is None:
            quality = fields.get("quality", "missing")
            bad(i, quality if quality != "good" else "missing")
            out.append(None)
            continue
        try:
            value = convert(field, value, fields, units)
        except EncodingError as exc:
            bad(i, "unit: %s" % exc)
            out.append(None)
            continue
        out.append(scaled(value, scale, offset))
    return out



def prepare(address: str, opts: tuple, frame: bytes, specs: list) -> tuple:
    """What every poll of one planned read needs, worked out once: (frame, accept test, specs)."""
    return (bytes(frame), _accept(address), specs)


def read_prepared(device: str, address: str, opts: tuple, prepared: tuple, seq: int, bad):  # type: ignore[no-untyped-def]
    """One planned read, prepared once (`prepare`): the frame with this exchange's SER; the values of
    its points in spec order (None for a point without one, reported by `bad(i, why)`)."""
    meter_type, status, units = opts
    ser = seq & 0xFF
    reply = yield cjt188.with_ser(prepared[0], ser), prepared[1]
    return values(cjt188.parse_901f(reply, meter_type, ser, status), prepared[2], units, bad)


def read(device: str, address: str, opts: tuple, frame: bytes, specs: list, seq: int, emit):  # type: ignore[no-untyped-def]
    yield from steps.read(prepare, read_prepared, device, address, opts, frame, specs, seq, emit)


def check_action(device: str, opts: object, name: object) -> None:
    raise no_action(device, "cjt188", name)


def action(device: str, address: str, opts: tuple, name: str, until: tuple, seq: int):  # type: ignore[no-untyped-def]
    check_action(device, opts, name)
    yield  # never reached: no CJ/T 188 actions


def point_spec(ws: list) -> dict:
    """The profile point keys a write spec stands for, for `Point.check_write` on the board."""
    return {"field": ws[0]}


def write(device: str, address: str, opts: tuple, name: str, ws: list, value: object, seq: int):  # type: ignore[no-untyped-def]
    """The valve: open / close (C=04 DI A017), then read back from a 901F reply."""
    field, meter_type, di_order, preamble = ws
    if field != "valve":
        raise WriteRefused("CJ/T 188 meters accept writes to the valve only, not %s" % name)
    verb = VALVE.get(value) if type(value) in (str, bool) else None  # type: ignore[call-overload]
    if verb is None:
        raise WriteRefused("valve needs open or closed, not %r" % (value,))
    ser = seq & 0xFF
    accept = _accept(address)
    reply = yield cjt188.valve_request(meter_type, address, verb, ser, di_order, preamble), accept
    cjt188.parse_write_reply(reply, cjt188.DI_VALVE, ser, opts[1])
    try:  # read back
        ser = (seq + 1) & 0xFF
        request = cjt188.read_request(meter_type, address, cjt188.DI_901F, ser, di_order, preamble)
        reply = yield request, accept
        fields = cjt188.parse_901f(reply, meter_type, ser, opts[1])
    except Exception:  # written, but the read-back failed
        return None
    return fields.get("valve")


def probe(address: str, opts: tuple, hint: object, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: a 901F read of the meter at `address`; "answers" when it replied."""
    meter_type = hint[0]  # type: ignore[index]
    di_order = hint[1]  # type: ignore[index]
    yield cjt188.read_request(meter_type, address, 0x901F, 0, di_order), lambda f: f.is_reply
    return "answers"


def wildcard(opts: object, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: the wildcard read-address (T=AA, C=03 DI 810A); (address, note)."""
    frame = yield cjt188.read_address_request(), lambda f: f.is_reply
    return frame.address, "meter type %02X" % frame.meter_type
