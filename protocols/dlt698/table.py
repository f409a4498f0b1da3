"""DL/T 698.45 objects a gateway reads (OAD, type, scaler, unit), the unit codes and the DAR codes;
re-exported by protocols.dlt698.

Keys are attribute OADs as printed, 8 hex digits upper case, element index 00 ("00100200"). Values are
``(name, type, element type, scaler, unit)``: the A-XDR tag of the attribute, of its array elements
(None for a single value), the decimal scaler (value = integer x 10**scaler) and the meter's unit
("kWh", "V" ...; "" for none). Profiles convert meter units to SenML primary units with their
``scale``, as for DL/T 645. Element index k >= 1 selects element k of an array (for energy: 1 is the
total, 2.. the tariffs; for voltage and current 1..3 are phases A..C; for power and power factor 1 is
the total and 2..4 phases A..C).

Sources (docs/protocols/dlt698.md): the object table of PyPI dlt698 1.0.1 (its source column cites
DL/T 698.45-2017 clauses and Appendix E), two independent C / Java unit and DAR enumerations, and
published captures. Verified entries are tested against the package in test_dlt698_interop.py.
"""

from protocols.errors import EncodingError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DAR_MEANINGS", "OAD_TABLE", "UNIT_CODES", "attribute_oad", "dar_meaning", "element_index",
    "scaled", "unit_symbol",
]

# A-XDR tags used below (protocols.axdr has the full list)
_ARRAY, _DLONG, _DLONG_U, _OCTETS, _LONG, _LONG_U, _DTS = 1, 5, 6, 9, 16, 18, 28

OAD_TABLE = {
    # energy (interface class 1): array of total + tariffs 1..n, 0.01 kWh / kvarh
    "00000200": ("combined_active_energy", _ARRAY, _DLONG, -2, "kWh"),
    "00100200": ("forward_active_energy", _ARRAY, _DLONG_U, -2, "kWh"),
    "00200200": ("reverse_active_energy", _ARRAY, _DLONG_U, -2, "kWh"),
    "00300200": ("combined_reactive1_energy", _ARRAY, _DLONG, -2, "kvarh"),
    "00400200": ("combined_reactive2_energy", _ARRAY, _DLONG, -2, "kvarh"),
    # variables (interface classes 3, 4, 6)
    "20000200": ("voltage", _ARRAY, _LONG_U, -1, "V"),  # phases A, B, C
    "20010200": ("current", _ARRAY, _DLONG, -3, "A"),  # phases A, B, C
    "20040200": ("active_power", _ARRAY, _DLONG, -1, "W"),  # total, A, B, C
    "20050200": ("reactive_power", _ARRAY, _DLONG, -1, "var"),  # total, A, B, C
    "20060200": ("apparent_power", _ARRAY, _DLONG, -1, "VA"),  # total, A, B, C
    "200A0200": ("power_factor", _ARRAY, _LONG, -3, ""),  # total, A, B, C
    "200F0200": ("frequency", _LONG_U, None, -2, "Hz"),
    "20100200": ("meter_temperature", _LONG, None, -1, "Cel"),
    # parameters (Appendix E.5)
    "40000200": ("date_time", _DTS, None, 0, ""),
    "40010200": ("comm_address", _OCTETS, None, 0, ""),
    "40020200": ("meter_number", _OCTETS, None, 0, ""),
}

# unit enumeration (scaler_unit's unit): code -> symbol; SenML spellings where SenML has the unit
UNIT_CODES = {
    1: "a", 2: "mo", 3: "wk", 4: "d", 5: "h", 6: "min", 7: "s", 8: "deg", 9: "Cel", 10: "currency",
    11: "m", 12: "m/s", 13: "m3", 14: "m3 (corrected)", 15: "m3/h", 16: "m3/h (corrected)", 17: "m3/d",
    18: "m3/d (corrected)", 19: "l", 20: "kg", 21: "N", 22: "Nm", 23: "Pa", 24: "bar", 25: "J", 26: "J/h",
    27: "W", 28: "kW", 29: "VA", 30: "kVA", 31: "var", 32: "kvar", 33: "kWh", 34: "kVAh", 35: "kvarh",
    36: "A", 37: "C", 38: "V", 39: "V/m", 40: "F", 41: "Ohm", 42: "Ohm m2/m", 43: "Wb", 44: "T", 45: "A/m",
    46: "H", 47: "Hz", 48: "1/(Wh)", 49: "1/(varh)", 50: "1/(VAh)", 51: "%", 52: "byte", 53: "dBm",
    54: "currency/kWh", 55: "Ah", 56: "ms", 254: "other", 255: "",
}

# DAR, the data access result of a refused GET (0 is success)
DAR_MEANINGS = {
    0: "success", 1: "hardware fault", 2: "temporary failure", 3: "read/write denied",
    4: "object undefined", 5: "object interface class inconsistent", 6: "object unavailable",
    7: "type unmatched", 8: "scope of access violated (index out of range)", 9: "data block unavailable",
    10: "segmented transfer cancelled", 11: "no segmented transfer in progress", 12: "block write cancelled",
    13: "no block write in progress", 14: "data block number invalid", 15: "password error or not authorised",
    16: "baud rate cannot be changed", 17: "year time zones exceeded", 18: "day time slots exceeded",
    19: "tariffs exceeded", 20: "security authentication mismatch", 21: "repeated top-up",
    22: "ESAM verification failed", 23: "security authentication failed", 24: "customer number mismatch",
    25: "top-up count error", 26: "purchase exceeds hoarding limit", 27: "address error",
    28: "symmetric decryption error", 29: "asymmetric decryption error", 30: "signature error",
    31: "meter suspended", 32: "time tag invalid", 33: "request timed out", 34: "ESAM P1P2 wrong",
    35: "ESAM LC wrong", 255: "other",
}


def dar_meaning(code: int) -> str:
    """The meaning of a DAR code ("object undefined"), or "unknown DAR N"."""
    return DAR_MEANINGS.get(code, "unknown DAR %d" % code)


def unit_symbol(code: int) -> str:
    """The symbol of a scaler_unit unit code ("kWh" for 33), or "unit N"."""
    return UNIT_CODES.get(code, "unit %d" % code)


def _check_oad(oad: object) -> str:
    if not isinstance(oad, str) or len(oad) != 8:
        raise EncodingError("OAD must be 8 hex digits such as 00100200, got %r" % (oad,))
    for ch in oad:
        if ch not in "0123456789abcdefABCDEF":
            raise EncodingError("OAD %r is not hex" % (oad,))
    return oad.upper()


def attribute_oad(oad: str) -> str:
    """The OAD of the whole attribute (element index 00): "00100201" -> "00100200"."""
    return _check_oad(oad)[:6] + "00"


def element_index(oad: str) -> int:
    """The element index of an OAD (its last byte): 0 for the whole attribute."""
    return int(_check_oad(oad)[6:], 16)


def _scale(raw: object, scaler: int, oad: str) -> "int | float":
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise EncodingError("OAD %s: expected a number, got %r" % (oad, raw))
    if scaler >= 0:
        return raw * 10 ** scaler
    return raw / 10 ** (-scaler)


def scaled(oad: str, data: tuple, element: int = 0) -> "Any":
    """The value of ``data`` read for ``oad``, in the meter's unit (OAD_TABLE's scaler applied).

    ``element`` (1-based) picks one element of an array read as a whole; with an OAD that already
    names an element (index >= 1) the data is that element. Arrays read whole give a list. Types
    other than the table's raise EncodingError (a meter answering a different layout); octet-strings
    come back as bytes, date_time_s as a tuple.
    """
    key = attribute_oad(oad)
    entry = OAD_TABLE.get(key)
    if entry is None:
        raise EncodingError("OAD %s is not in the DL/T 698.45 table (known: %s)"
                            % (oad, ", ".join(OAD_TABLE)))
    _name, tag, element_tag, scaler, _unit = entry
    if not isinstance(data, tuple) or len(data) != 2:
        raise EncodingError("OAD %s: expected A-XDR (tag, value) data, got %r" % (oad, data))
    index = element_index(oad)
    if index and element:
        raise EncodingError("OAD %s names element %d already; element %d cannot be picked"
                            % (oad, index, element))
    if element_tag is not None and not index:
        if data[0] != tag:
            raise EncodingError("OAD %s: expected an array, got type %d" % (oad, data[0]))
        items = data[1]
        for item in items:
            if item[0] != element_tag:
                raise EncodingError("OAD %s: array element of type %d, expected %d"
                                    % (oad, item[0], element_tag))
        if element:
            if not 1 <= element <= len(items):
                raise EncodingError("OAD %s: element %d asked, the meter sent %d"
                                    % (oad, element, len(items)))
            return _scale(items[element - 1][1], scaler, oad)
        return [_scale(item[1], scaler, oad) for item in items]
    want = element_tag if element_tag is not None else tag
    if data[0] != want:
        raise EncodingError("OAD %s: expected type %d, got type %d" % (oad, want, data[0]))
    if element:
        raise EncodingError("OAD %s is a single value; element %d cannot be picked" % (oad, element))
    if want in (_OCTETS, _DTS):
        return data[1]
    return _scale(data[1], scaler, oad)
