"""SenML (RFC 8428) packs with CBOR integer labels: build them from readings, resolve them back.

A reading is the tuple ``(device, point, value, time)`` (docs/architecture.md). ``pack`` turns a batch
into one SenML pack, record by record in the order given (docs/payload.md section 2 says what each choice
saves):

* ``bn`` = ``<base name><device>/`` (e.g. ``"gw-01:lamp-07/"``) on the first record and wherever the
  device changes; every record's ``n`` is then just the point name (``"voltage"``);
* ``bt`` = the reading's time on the first record and wherever the time changes (one per poll of a
  device), as an integer when the time is integral; records never carry ``t``;
* the value in ``vb`` (bool), ``vs`` (text), ``vd`` (bytes) or ``v``: an integer when the number is
  integral, else the shortest of a binary float that holds it exactly and a decimal fraction (CBOR tag 4,
  ``230.1`` = ``4([-1, 2301])``) that converts back to exactly the same binary64 (RFC 8428 section 6);
* units live in the birth message; a caller may still put them in records (``units``).

A caller that groups a batch's readings by device (the agent's batcher does) gets one ``bn`` per device.

``resolve`` applies the resolution rules of RFC 8428 section 4 and returns records with text labels
``n``, ``u`` (when known), one of ``v``/``vs``/``vb``/``vd``, ``s`` (when a sum is present), ``t``
(absolute POSIX seconds), ``ut`` and ``bver`` (when not 10), sorted by time then name. Numbers may be
CBOR integers, floats or decimal fractions (tag 4), which resolve to the binary64 they stand for.
Shared dialect: runs on CPython 3.11+ and MicroPython 1.22+.
"""

from protocols import cbor
from protocols.errors import SenmlError

BVER = -1
BN = -2
BT = -3
BU = -4
BV = -5
BS = -6
N = 0
U = 1
V = 2
VS = 3
VB = 4
S = 5
T = 6
UT = 7
VD = 8

VERSION = 10
RELATIVE_LIMIT = 268435456  # 2**28: smaller times are relative to "now"
_INT_LIMIT = 1 << 64
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./_"
_VALUE_KEYS = ((V, "v"), (VS, "vs"), (VB, "vb"), (VD, "vd"))
_LABELS = {BVER: "bver", BN: "bn", BT: "bt", BU: "bu", BV: "bv", BS: "bs", N: "n", U: "u", S: "s", T: "t",
           UT: "ut"}


def check_name(name: str, where: str = "") -> None:
    """Raise ``SenmlError`` unless ``name`` is a valid resolved SenML name (RFC 8428 section 4.5.1)."""
    if type(name) is not str or not name:
        raise SenmlError("%sthe resolved name is empty" % where)
    if name[0] in "-:./_":
        raise SenmlError("%sname %r must start with a letter or a digit" % (where, name))
    for c in name:
        if c not in _NAME_CHARS:
            raise SenmlError("%sname %r has %r; only A-Z a-z 0-9 - : . / _ are allowed" % (where, name, c))


def is_number(x: object) -> bool:
    """True for an int (not bool) inside the 64-bit CBOR range or any float."""
    t = type(x)
    return t is float or (t is int and -_INT_LIMIT <= x < _INT_LIMIT)  # type: ignore[operator]


def is_finite(x: object) -> bool:
    """True for a number that is neither infinite nor NaN."""
    return is_number(x) and x - x == 0  # type: ignore[operator]


def floor_int(x: float) -> int:
    """Largest integer <= ``x`` (finite numbers only; no ``math`` in the shared dialect)."""
    n = int(x)
    return n - 1 if n > x else n


def exact(x: float) -> object:
    """``x`` as an int when it is a float holding an integer (keeps CBOR short and ``bt`` integral)."""
    if type(x) is float and x - x == 0 and x == int(x) and -9007199254740992.0 <= x <= 9007199254740992.0:
        return int(x)
    return x


def number(x: object) -> object:
    """The shortest exact CBOR item for a number: an int when it is integral, else the shorter of the
    shortest binary float and a decimal fraction (``cbor.Tag(4, [exponent, mantissa])``) equal to it."""
    if type(x) is not float or x - x != 0:  # type: ignore[operator]
        return x  # ints; NaN and infinities stay floats
    f: float = x  # type: ignore[assignment]
    if -9007199254740992.0 <= f <= 9007199254740992.0 and f == int(f):
        return int(f)
    size = cbor.float_size(f)
    found = cbor.decimal_fraction(f, size) if size > 4 else None
    if found is None:
        return f
    return cbor.Tag(4, [found[0], found[1]])


def value_field(value: object) -> tuple:
    """(label, value) for a reading value: bool -> vb, str -> vs, bytes -> vd, number -> v (see
    ``number``)."""
    t = type(value)
    if t is bool:
        return VB, value
    if t is int or t is float:
        return V, number(value)
    if t is str:
        return VS, value
    if t is bytes:
        return VD, value
    if isinstance(value, (bytearray, memoryview)):
        return VD, bytes(value)
    raise SenmlError("reading value must be a number, bool, str or bytes, not %s" % type(value).__name__)


def reading_times(readings: list) -> int:
    """Check every reading's shape and time; return the base time (floor of the earliest time)."""
    base = None
    last = None  # the time of the previous reading (a poll's readings share one: checked once)
    for r in readings:
        if (type(r) is not tuple and not isinstance(r, (tuple, list))) or len(r) != 4:
            raise SenmlError("a reading is a tuple (device, point, value, time), got %r" % (r,))
        t = r[3]
        if t is last:
            continue
        if not is_finite(t):
            raise SenmlError("reading %s/%s has time %r; a finite number is needed" % (r[0], r[1], t))
        if base is None or t < base:
            base = t
        last = t
    return 0 if base is None else floor_int(base)


def pack(readings: list, base_name: str, units: dict | None = None) -> list:
    """A SenML pack (list of maps with integer labels) for ``readings`` under ``base_name``.

    ``units`` optionally maps ``(device, point)`` to a SenML unit that then goes in the record.
    """
    rows = list(readings)
    if type(base_name) is not str:
        raise SenmlError("base name must be text, got %r" % (base_name,))
    reading_times(rows)
    fronts: dict = {}  # device -> its base name
    checked: dict = {}  # (device, point) whose full name was checked
    records: list = []
    bn = ""  # the base fields in force (RFC 8428: none yet means "" and 0)
    bt: object = 0
    for device, point, value, time in rows:
        front = fronts.get(device)
        if front is None:
            front = fronts[device] = "%s%s/" % (base_name, device)
        if (device, point) not in checked:
            check_name(front + point, "reading %s/%s: " % (device, point))
            checked[(device, point)] = True
        rec: dict = {N: point}
        if front != bn:
            rec[BN] = bn = front
        when = exact(time)
        if when != bt:
            rec[BT] = bt = when
        if units:
            unit = units.get((device, point))
            if unit:
                rec[U] = unit
        key, val = value_field(value)
        rec[key] = val
        records.append(rec)
    return records


def encode(readings: list, base_name: str, units: dict | None = None) -> bytes:
    """Deterministic SenML-CBOR bytes for ``readings``: exactly ``cbor.dumps(pack(readings, base_name,
    units))``, written record by record without the maps (the labels in their deterministic order: n,
    u, the value, bn, bt), with each device's base name and each point's name encoded once."""
    if units or type(base_name) is not str:
        return cbor.dumps(pack(readings, base_name, units))
    rows = readings if type(readings) is list else list(readings)
    reading_times(rows)
    buf = bytearray()
    cbor.append_head(buf, 0x80, len(rows))
    names = _names
    if len(names) > _NAMES_MAX:  # a bound for gateways whose devices come and go
        names.clear()
    bn = None  # the base name in force ("" until the first record sets it)
    bt: object = 0
    last = None  # the previous record's time, and its `exact` form
    when: object = 0
    for device, point, value, time in rows:
        key = (base_name, device, point)
        known = names.get(key)
        if known is None:
            front = "%s%s/" % (base_name, device)
            check_name(front + point, "reading %s/%s: " % (device, point))
            n = bytearray(b"\x00")
            cbor.append(n, point)
            f = bytearray(b"\x21")
            cbor.append(f, front)
            known = names[key] = (bytes(n), bytes(f))
        if time is not last:
            when = exact(time)
            last = time
        new_bt = when != bt
        new_bn = known[1] is not bn and known[1] != bn
        buf.append(0xA2 + new_bn + new_bt)
        buf += known[0]
        _value(buf, value)
        if new_bn:
            buf += known[1]
            bn = known[1]
        if new_bt:
            buf.append(0x22)
            cbor.append(buf, when)
            bt = when
    return bytes(buf)


_names: dict = {}  # (base name, device, point) -> (the n label and name, the bn label and base name), checked
_NAMES_MAX = 4096


_floats: dict = {}  # a non-integral finite float -> its label and item (readings repeat their values)
_FLOATS_MAX = 1024


def _value(buf: bytearray, value: object) -> None:
    """Append a reading value's label and item, as ``value_field`` and ``cbor.dumps`` give them."""
    t = type(value)
    if t is float:
        x: float = value  # type: ignore[assignment]
        done = _floats.get(x)
        if done is not None:
            buf += done
            return
        if x - x == 0:  # finite
            if -9007199254740992.0 <= x <= 9007199254740992.0 and x == int(x):
                buf.append(0x02)
                cbor.append(buf, int(x))
                return
            out = bytearray(b"\x02")
            size = cbor.float_size(x)
            found = cbor.decimal_fraction(x, size) if size > 4 else None
            if found is not None:
                out += b"\xc4\x82"  # tag 4 [exponent, mantissa]
                cbor.append(out, found[0])
                cbor.append(out, found[1])
            else:
                cbor.append(out, x)
            if len(_floats) >= _FLOATS_MAX:
                _floats.clear()
            _floats[x] = done = bytes(out)
            buf += done
            return
        buf.append(0x02)
        cbor.append(buf, x)
        return
    if t is int:  # value_field gives (v, the int itself) for every int
        buf.append(0x02)
        cbor.append(buf, value)
        return
    if t is bool:  # vb, then CBOR true (0xF5) or false (0xF4): a quarter of a street site's readings
        buf += b"\x04\xf5" if value else b"\x04\xf4"
        return
    label, item = value_field(value)
    buf.append(label)
    cbor.append(buf, item)


def decimal(item: cbor.Tag, where: str) -> object:
    """The number a CBOR decimal fraction (tag 4, ``[exponent, mantissa]``) stands for: ``mantissa /
    10**-exponent`` (correctly rounded to binary64) or ``mantissa * 10**exponent``."""
    pair = item.value
    if item.tag != 4 or type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int \
            or type(pair[1]) is not int:
        raise SenmlError("%s: a number may be an integer, a float or a decimal fraction, got %r"
                         % (where, item))
    e, m = pair
    if not -400 <= e <= 400 or not -_INT_LIMIT <= m < _INT_LIMIT:
        raise SenmlError("%s: decimal fraction %r is out of range" % (where, pair))
    return m / 10 ** -e if e < 0 else m * 10 ** e


def _field(rec: dict, key: int, kind: str, i: int) -> object:
    x = rec[key]
    if kind == "number" and type(x) is cbor.Tag:
        label = _LABELS.get(key) or dict(_VALUE_KEYS)[key]
        x = decimal(x, "record %d: %s" % (i, label))
    if kind == "text":
        ok = type(x) is str
    elif kind == "number":
        ok = is_number(x)
    elif kind == "bool":
        ok = type(x) is bool
    else:
        ok = type(x) is bytes
    if not ok:
        label = _LABELS.get(key) or dict(_VALUE_KEYS)[key]
        raise SenmlError("record %d: %s must be %s, got %r" % (i, label, kind, x))
    return x


def _version(rec: dict, current: int, i: int) -> int:
    ver = rec[BVER]
    if type(ver) is not int or ver < 0:
        raise SenmlError("record %d: bver must be an unsigned integer, got %r" % (i, ver))
    if ver > VERSION:
        raise SenmlError("record %d: SenML version %d is not understood (this reader knows 10)" % (i, ver))
    if i and ver != current:
        raise SenmlError("record %d: bver %d differs from the pack's version %d" % (i, ver, current))
    return ver


def resolve(records: list, now: float | None = None) -> list:
    """Resolved records of a decoded pack (RFC 8428 section 4); ``SenmlError`` on any violation.

    Times below 2**28 are relative to ``now`` (POSIX seconds); without ``now`` they are an error.
    """
    if not isinstance(records, list):
        raise SenmlError("a SenML pack is an array of records, got %s" % type(records).__name__)
    bn = ""
    bt: object = 0
    bu = None
    bv: object = None
    bs: object = None
    ver = VERSION
    out = []
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            raise SenmlError("record %d is not a map" % i)
        for key in rec:
            if type(key) is str and key.endswith("_"):
                raise SenmlError("record %d: must-understand label %r is not supported" % (i, key))
        if BVER in rec:
            ver = _version(rec, ver, i)
        if BN in rec:
            bn = _field(rec, BN, "text", i)  # type: ignore[assignment]
        if BT in rec:
            bt = _field(rec, BT, "number", i)
        if BU in rec:
            bu = _field(rec, BU, "text", i)
        if BV in rec:
            bv = _field(rec, BV, "number", i)
        if BS in rec:
            bs = _field(rec, BS, "number", i)
        name = bn + (_field(rec, N, "text", i) if N in rec else "")  # type: ignore[operator]
        check_name(name, "record %d: " % i)
        res: dict = {"n": name}
        unit = _field(rec, U, "text", i) if U in rec else bu
        if unit is not None:
            res["u"] = unit
        found = 0
        for key, label in _VALUE_KEYS:
            if key in rec:
                found += 1
                if key == V:
                    x = _field(rec, V, "number", i)
                    res["v"] = x if bv is None else bv + x  # type: ignore[operator]
                else:
                    kind = "text" if key == VS else "bool" if key == VB else "bytes"
                    res[label] = _field(rec, key, kind, i)
        if found > 1:
            raise SenmlError("record %d (%s) has more than one value field" % (i, name))
        has_sum = S in rec or bs is not None
        if has_sum:
            s = _field(rec, S, "number", i) if S in rec else 0
            res["s"] = s if bs is None else bs + s  # type: ignore[operator]
        if not found:
            if bv is not None:
                res["v"] = bv
            elif not has_sum:
                raise SenmlError("record %d (%s) has no value and no sum" % (i, name))
        t = bt + (_field(rec, T, "number", i) if T in rec else 0)  # type: ignore[operator]
        if not is_finite(t):
            raise SenmlError("record %d (%s): time %r is not finite" % (i, name, t))
        if t < RELATIVE_LIMIT:
            if now is None:
                raise SenmlError("record %d (%s): time %r is relative (< 2**28) and no now was given"
                                 % (i, name, t))
            t = now + t
        res["t"] = t
        if UT in rec:
            res["ut"] = _field(rec, UT, "number", i)
        if ver != VERSION:
            res["bver"] = ver
        out.append(res)
    out.sort(key=_order)
    return out


def _order(rec: dict) -> tuple:
    return rec["t"], rec["n"]


def decode(data: bytes, now: float | None = None) -> list:
    """Resolved records of SenML-CBOR ``data``; ``CborError`` or ``SenmlError`` on bad input."""
    return resolve(cbor.loads(data), now)  # type: ignore[arg-type]


__all__ = ["RELATIVE_LIMIT", "VERSION", "check_name", "decimal", "decode", "encode", "number", "pack",
           "resolve"]
