"""DL/T 698.45 device steps (sans-I/O), shared by the agent's driver and the board's bus.

Steps are generators (see protocols/modbus/device.py). A read sends the compiled GET-Request-Normal
or -NormalList frame and checks the response (direction, meter address, the OADs asked, in order);
each point's value is its OAD's data with the table's scaler applied (`dlt698.scaled`), the element
the point names picked from an array, then the profile's scale and offset. An OAD the meter refuses
with a DAR is a bad point on its own ("dar: <meaning>"); a response that refuses every OAD is the
meter's abnormal reply (`DarError`). No writes or actions: SET and ACTION are not covered by the
codec yet.

Decode spec: [name, OAD, element (0: the OAD's own value), scale, offset].
Options (`options(entry)`): (client address, preamble).
"""

from protocols import dlt698, steps
from protocols.errors import EncodingError, WriteRefused, no_action
from protocols.scaling import scaled


def options(entry: dict) -> tuple:
    o = entry.get("options") or {}
    return (o.get("client", 0), o.get("preamble", 4))


def request_reader():  # type: ignore[no-untyped-def]
    """A reader of requests (the server side: the simulator)."""
    return dlt698.Dlt698FrameReader()


def reader(opts: object):  # type: ignore[no-untyped-def]
    return dlt698.Dlt698FrameReader()


def _accept(address: str):  # type: ignore[no-untyped-def]
    # a response from this meter (A nibbles of a wildcard request match any); skips an echoed request
    return lambda f: f.from_server and dlt698.address_matches(address, f.address)


def _oads(specs: list) -> list:
    out: list = []
    for s in specs:
        if s[1] not in out:
            out.append(s[1])
    return out


def values(results: list, address: str, specs: list, bad) -> list:  # type: ignore[no-untyped-def]
    """The values of the points in spec order; None for a point without one, after `bad(i, why)`: its
    OAD missing from the response or refused with a DAR, or data that does not decode."""
    by_oad: dict = {}
    for r in results:
        by_oad[r.oad] = r
    out: list = []
    for i in range(len(specs)):
        _n, oad, element, scale, offset = specs[i]
        result = by_oad.get(oad)
        if result is None:
            bad(i, "missing")
            out.append(None)
            continue
        if result.dar is not None:
            bad(i, "dar: %s" % dlt698.dar_meaning(result.dar))
            out.append(None)
            continue
        try:
            value = dlt698.scaled(oad, result.data, element)
        except EncodingError as exc:
            bad(i, "decode: %s" % exc)
            out.append(None)
            continue
        out.append(scaled(value, scale, offset))
    return out



def prepare(address: str, opts: tuple, frame: bytes, specs: list) -> tuple:
    """What every poll of one planned read needs, worked out once: (frame, OADs asked, accept, specs)."""
    oads = _oads(specs)
    return (bytes(frame), oads if len(oads) > 1 else oads[0], _accept(address), specs)


def read_prepared(device: str, address: str, opts: tuple, prepared: tuple, seq: int, bad):  # type: ignore[no-untyped-def]
    """One planned read, prepared once (`prepare`); the values of its points in spec order (None for a
    point without one, reported by `bad(i, why)`)."""
    frame, oads, accept, specs = prepared
    reply = yield frame, accept
    results = dlt698.parse_read_response(reply, oads, None, address)
    refused = [r for r in results if r.dar is not None]
    if refused and len(refused) == len(results):  # the meter refused the whole request
        raise dlt698.DarError(refused[0].dar, reply.address, refused[0].oad)  # type: ignore[arg-type]
    return values(results, address, specs, bad)


def read(device: str, address: str, opts: tuple, frame: bytes, specs: list, seq: int, emit):  # type: ignore[no-untyped-def]
    yield from steps.read(prepare, read_prepared, device, address, opts, frame, specs, seq, emit)


def point_spec(ws: list) -> dict:
    return {}


def check_action(device: str, opts: object, name: object) -> None:
    raise no_action(device, "dlt698", name)


def action(device: str, address: str, opts: tuple, name: str, until: tuple, seq: int):  # type: ignore[no-untyped-def]
    check_action(device, opts, name)
    yield  # never reached: no DL/T 698.45 actions


def write(device: str, address: str, opts: tuple, name: str, ws: list, value: object, seq: int):  # type: ignore[no-untyped-def]
    raise WriteRefused("point %s: DL/T 698.45 writes (SET) are not supported" % name)
    yield  # never reached: a generator like every step


def probe(address: str, opts: tuple, oad: str, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: GET one OAD of the meter at `address`; "answers" when it replied."""
    yield dlt698.read_request(address, oad, 0, opts[0], preamble=opts[1]), lambda f: f.from_server
    return "answers"


def wildcard(opts: tuple, seq: int):  # type: ignore[no-untyped-def]
    """`fieldlink scan`: GET 40010200 to the wildcard address: the one meter on the bus answers."""
    frame = yield dlt698.read_address_request(0, opts[0], opts[1]), lambda f: f.from_server
    return dlt698.parse_read_address_response(frame), ""
