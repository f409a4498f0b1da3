"""Compact packs: the metered-uplink payload profile (docs/payload.md, section "Compact packs").

A compact pack is one CBOR array (CDDL in docs/payload.md)::

    [1, seq, bt, [dt, device, [point, value, point, value, ...], device, [...], ...], [dt, ...], ...]

``1`` is the format, ``seq`` the sequence number of the birth message whose aliases the pack uses, ``bt``
the integer base time; each slot groups the readings of one time (``bt + dt``) by device alias, each
device lists (point alias, value) pairs. On a point whose birth entry declares a ``resolution`` an
integer value is a count of resolution steps (``round(value / resolution)``); any other item is the
value itself. Values otherwise take their shortest exact CBOR form (integral floats go as integers).

``decode`` returns the records ``senml.resolve`` gives for the SenML pack of the same readings (units
too when ``with_units`` and the SenML pack was built with ``units=birth.units(...)``). With a
resolution, the value comes back rounded to it; a value on the grid comes back exactly (resolution
``10**-k`` decodes as ``n / 10**k``, an integer resolution as ``n * resolution``).
Shared dialect: runs on CPython 3.11+ and MicroPython 1.22+.
"""

from protocols import cbor
from protocols.birth import DIVIDE, MULTIPLY, AliasTable, alias_table
from protocols.errors import EncodingError, SenmlError
from protocols.senml import RELATIVE_LIMIT, exact, is_finite, reading_times

FORMAT = 1
_LIMIT = 1 << 64


def _table(birth_or_table: object) -> AliasTable:
    if isinstance(birth_or_table, AliasTable):
        return birth_or_table
    return alias_table(birth_or_table)  # type: ignore[arg-type]


def _first(pair: tuple) -> int:
    return pair[0]


def _steps(value: object, scale: tuple, where: str) -> object:
    """Count of resolution steps for a finite number; the raw float when that count is out of range."""
    kind, factor = scale
    if type(value) is int and kind == MULTIPLY:
        n, rest = divmod(value, factor)
        if 2 * rest >= factor:
            n += 1
    elif kind == DIVIDE:
        n = round(value * factor)  # type: ignore[operator]
    else:
        n = round(value / factor)  # type: ignore[operator]
    if -_LIMIT <= n < _LIMIT:
        return n
    if type(value) is int:
        raise EncodingError("%s: %d is too large for its resolution" % (where, value))
    return value


def _wire(value: object, scale: tuple | None, where: str) -> object:
    """The CBOR item that carries ``value`` on a point with ``scale``."""
    t = type(value)
    if t is bool or t is str or t is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if t is not int and t is not float:
        raise EncodingError("%s: value must be a number, bool, str or bytes, not %s" % (where, t.__name__))
    if scale is not None and value - value == 0:  # type: ignore[operator]
        return _steps(value, scale, where)
    if scale is None:
        return exact(value)  # type: ignore[arg-type]
    return value  # NaN or infinity on a scaled point travels as a float


def pack(readings: list, birth_or_table: object, base_time: int | None = None) -> list:
    """The compact pack (a list ready for ``cbor.dumps``) for ``readings``."""
    table = _table(birth_or_table)
    rows = list(readings)
    bt = reading_times(rows)
    if base_time is not None:
        if type(base_time) is not int:
            raise EncodingError("base time must be an integer, got %r" % (base_time,))
        bt = base_time
    slots: dict = {}
    for device, point, value, time in rows:
        entry = table.by_name.get(device)
        pentry = entry[1].get(point) if entry is not None else None
        if pentry is None:
            raise EncodingError("%s/%s is not declared in birth seq %d" % (device, point, table.seq))
        dt = exact(time - bt)
        devices = slots.get(dt)
        if devices is None:
            devices = slots[dt] = {}
        pairs: list | None = devices.get(entry[0])  # type: ignore[index]
        if pairs is None:
            pairs = devices[entry[0]] = []  # type: ignore[index]
        pairs.append((pentry[0], _wire(value, pentry[1], "%s/%s" % (device, point))))
    out: list = [FORMAT, table.seq, bt]
    for dt in sorted(slots):
        slot: list = [dt]
        devices = slots[dt]
        for alias in sorted(devices):
            pairs = devices[alias]
            pairs.sort(key=_first)
            flat = []
            for p, v in pairs:
                flat.append(p)
                flat.append(v)
            slot.append(alias)
            slot.append(flat)
        out.append(slot)
    return out


def encode(readings: list, birth_or_table: object, base_time: int | None = None) -> bytes:
    """Deterministic CBOR bytes of the compact pack for ``readings`` (see ``pack``)."""
    return cbor.dumps(pack(readings, birth_or_table, base_time))


def _value(item: object, scale: tuple | None, where: str) -> tuple:
    """(SenML value label, value) for a wire item."""
    t = type(item)
    if t is int:
        if not -_LIMIT <= item < _LIMIT:  # type: ignore[operator]
            raise SenmlError("%s: integer %r is out of range" % (where, item))
        if scale is None:
            return "v", item
        kind, factor = scale
        # an integral value comes back as an int, as the SenML profile sends it
        if kind == DIVIDE:
            return "v", exact(item / factor)  # type: ignore[operator]
        return "v", exact(item * factor)  # type: ignore[operator]
    if t is float:
        return "v", item
    if t is bool:
        return "vb", item
    if t is str:
        return "vs", item
    if t is bytes:
        return "vd", item
    raise SenmlError("%s: a value cannot be %s" % (where, t.__name__))


def _order(rec: dict) -> tuple:
    return rec["t"], rec["n"]


def resolve(items: object, birth_or_table: object, now: float | None = None,
            with_units: bool = False) -> list:
    """Resolved SenML records (as ``senml.resolve`` gives them) of a decoded compact pack."""
    table = _table(birth_or_table)
    if type(items) is not list or len(items) < 3 or type(items[0]) is not int:
        raise SenmlError("a compact pack is an array [1, seq, bt, slots...]")
    if items[0] != FORMAT:
        raise SenmlError("compact pack format %r is not understood (this reader knows 1)" % (items[0],))
    if type(items[1]) is not int or items[1] != table.seq:
        raise SenmlError("pack uses the aliases of birth seq %r, the birth at hand is seq %d"
                         % (items[1], table.seq))
    bt = items[2]
    if type(bt) is not int or not -_LIMIT <= bt < _LIMIT:
        raise SenmlError("compact pack base time must be an integer, got %r" % (bt,))
    out = []
    for s in range(3, len(items)):
        slot = items[s]
        if type(slot) is not list or len(slot) % 2 != 1:
            raise SenmlError("slot %d must be [dt, device, [point, value...], ...]" % (s - 3))
        t = bt + slot[0] if is_finite(slot[0]) else None
        if t is None or not is_finite(t):
            raise SenmlError("slot %d: time offset %r is not a finite number" % (s - 3, slot[0]))
        if t < RELATIVE_LIMIT:
            if now is None:
                raise SenmlError("slot %d: time %r is relative (< 2**28) and no now was given" % (s - 3, t))
            t = now + t
        for j in range(1, len(slot), 2):
            entry = table.by_alias.get(slot[j]) if type(slot[j]) is int else None
            pairs = slot[j + 1]
            if entry is None:
                raise SenmlError("slot %d: device alias %r is not in birth seq %d"
                                 % (s - 3, slot[j], table.seq))
            device, points = entry
            if type(pairs) is not list or len(pairs) % 2:
                raise SenmlError("slot %d, device %s: readings must be [point, value, ...]" % (s - 3, device))
            for k in range(0, len(pairs), 2):
                pentry = points.get(pairs[k]) if type(pairs[k]) is int else None
                if pentry is None:
                    raise SenmlError("device %s: point alias %r is not in birth seq %d"
                                     % (device, pairs[k], table.seq))
                name, unit, scale = pentry
                where = "%s/%s" % (device, name)
                key, value = _value(pairs[k + 1], scale, where)
                rec = {"n": table.base_name + where, key: value, "t": t}
                if with_units and unit:
                    rec["u"] = unit
                out.append(rec)
    out.sort(key=_order)
    return out


def decode(data: bytes, birth_or_table: object, now: float | None = None, with_units: bool = False) -> list:
    """Resolved SenML records of compact pack ``data``; ``CborError``/``SenmlError`` when malformed."""
    return resolve(cbor.loads(data), birth_or_table, now, with_units)


__all__ = ["FORMAT", "decode", "encode", "pack", "resolve"]
