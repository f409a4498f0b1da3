"""DL/T 645 data identifiers (DI), BCD value formats (names, formats, meter units, sign), the BCD
meter address and time formats, ERR bits and relay action codes; re-exported by protocols.dlt645.

Keys are DIs as printed in documents (DI3 DI2 DI1 DI0 for 2007, DI1 DI0 for 1997), upper-case hex.
Values are ``(name, format, unit, signed)``. Units are the meter's own (kWh, kW ...); profiles convert
them to SenML primary units with their ``scale``. Sources: protocol-facts.md §1.6 (2007). The 1997
formats marked below follow the common 1997 table (voltage in whole volts, current XX.XX A) and are
not verified against the standard text.
"""

import binascii

from protocols.bcd import bcd_to_int, int_to_bcd, is_bcd
from protocols.errors import EncodingError
from protocols.framing import SumFrame
from protocols.framing import hex_upper as _hex
from protocols.framing import reversed_bytes as _reverse

QUALITY_GOOD = "good"
QUALITY_NOT_AVAILABLE = "not_available"
QUALITY_BAD_BCD = "bad_bcd"

# relay control (C=1C, Q/GDW extension); action codes as commonly documented, unverified here
RELAY_TRIP = 0x1A
RELAY_CLOSE_ALLOWED = 0x1B
RELAY_CLOSE_DIRECT = 0x1C
RELAY_ALARM = 0x2A
RELAY_ALARM_RELEASE = 0x2B
RELAY_KEEP_POWER = 0x3A
RELAY_KEEP_POWER_RELEASE = 0x3B

# the ERR byte of an abnormal reply (protocol-facts §1.4)
ERR_BITS = {
    0: "other error",
    1: "no requested data (DI unknown or not supported)",
    2: "password error or not authorised",
    3: "baud rate cannot be changed",
    4: "year time-zone count exceeded",
    5: "daily time-slot count exceeded",
    6: "tariff count exceeded",
    7: "reserved bit 7",
}


def err_meaning(err: int) -> str:
    """Every meaning of the ERR byte of an abnormal reply, joined by "; "."""
    parts = [ERR_BITS[b] for b in range(8) if err & (1 << b)]
    return "; ".join(parts) if parts else "no error bit set"


DI_TABLE = {
    # energy (class 00), kWh / kvarh
    "00000000": ("combined_active_total", "XXXXXX.XX", "kWh", True),
    "00010000": ("forward_active_total", "XXXXXX.XX", "kWh", False),
    "00010100": ("forward_active_tariff1", "XXXXXX.XX", "kWh", False),
    "00010200": ("forward_active_tariff2", "XXXXXX.XX", "kWh", False),
    "00010300": ("forward_active_tariff3", "XXXXXX.XX", "kWh", False),
    "00010400": ("forward_active_tariff4", "XXXXXX.XX", "kWh", False),
    "0001FF00": ("forward_active_block", "XXXXXX.XX", "kWh", False),
    "00020000": ("reverse_active_total", "XXXXXX.XX", "kWh", False),
    "00030000": ("combined_reactive1_total", "XXXXXX.XX", "kvarh", True),
    "00040000": ("combined_reactive2_total", "XXXXXX.XX", "kvarh", True),
    # instantaneous variables (class 02)
    "02010100": ("voltage_a", "XXX.X", "V", False),
    "02010200": ("voltage_b", "XXX.X", "V", False),
    "02010300": ("voltage_c", "XXX.X", "V", False),
    "0201FF00": ("voltage_block", "XXX.X", "V", False),
    "02020100": ("current_a", "XXX.XXX", "A", True),
    "02020200": ("current_b", "XXX.XXX", "A", True),
    "02020300": ("current_c", "XXX.XXX", "A", True),
    "0202FF00": ("current_block", "XXX.XXX", "A", True),
    "02030000": ("active_power_total", "XX.XXXX", "kW", True),
    "02030100": ("active_power_a", "XX.XXXX", "kW", True),
    "02030200": ("active_power_b", "XX.XXXX", "kW", True),
    "02030300": ("active_power_c", "XX.XXXX", "kW", True),
    "02040000": ("reactive_power_total", "XX.XXXX", "kvar", True),
    "02040100": ("reactive_power_a", "XX.XXXX", "kvar", True),
    "02040200": ("reactive_power_b", "XX.XXXX", "kvar", True),
    "02040300": ("reactive_power_c", "XX.XXXX", "kvar", True),
    "02050000": ("apparent_power_total", "XX.XXXX", "kVA", True),
    "02050100": ("apparent_power_a", "XX.XXXX", "kVA", True),
    "02050200": ("apparent_power_b", "XX.XXXX", "kVA", True),
    "02050300": ("apparent_power_c", "XX.XXXX", "kVA", True),
    "02060000": ("power_factor_total", "X.XXX", "", True),
    "02060100": ("power_factor_a", "X.XXX", "", True),
    "02060200": ("power_factor_b", "X.XXX", "", True),
    "02060300": ("power_factor_c", "X.XXX", "", True),
    "02800002": ("frequency", "XX.XX", "Hz", False),
    "02800007": ("meter_temperature", "XXX.X", "Cel", True),
    # parameters (class 04)
    "04000101": ("date_weekday", "YYMMDDWW", "", False),
    "04000102": ("time", "hhmmss", "", False),
    "04000401": ("comm_address", "NNNNNNNNNNNN", "", False),
    "04000402": ("meter_number", "NNNNNNNNNNNN", "", False),
    # DL/T 645-1997 (2-byte DI); formats not verified against the standard text
    "9010": ("forward_active_total", "XXXXXX.XX", "kWh", False),
    "9011": ("forward_active_tariff1", "XXXXXX.XX", "kWh", False),
    "9012": ("forward_active_tariff2", "XXXXXX.XX", "kWh", False),
    "9013": ("forward_active_tariff3", "XXXXXX.XX", "kWh", False),
    "9014": ("forward_active_tariff4", "XXXXXX.XX", "kWh", False),
    "901F": ("forward_active_block", "XXXXXX.XX", "kWh", False),
    "9020": ("reverse_active_total", "XXXXXX.XX", "kWh", False),
    "B611": ("voltage_a", "XXX", "V", False),
    "B612": ("voltage_b", "XXX", "V", False),
    "B613": ("voltage_c", "XXX", "V", False),
    "B61F": ("voltage_block", "XXX", "V", False),
    "B621": ("current_a", "XX.XX", "A", False),
    "B622": ("current_b", "XX.XX", "A", False),
    "B623": ("current_c", "XX.XX", "A", False),
    "B630": ("active_power_total", "XX.XXXX", "kW", False),
    "B631": ("active_power_a", "XX.XXXX", "kW", False),
    "B632": ("active_power_b", "XX.XXXX", "kW", False),
    "B633": ("active_power_c", "XX.XXXX", "kW", False),
    "B650": ("power_factor_total", "X.XXX", "", False),
    "C010": ("date_weekday", "YYMMDDWW", "", False),
    "C011": ("time", "hhmmss", "", False),
    "C032": ("meter_number", "NNNNNNNNNNNN", "", False),
}

# protocol-facts.md §1.6: the 1997 -> 2007 map (same quantity, new DI)
DI_1997_TO_2007 = {
    "9010": "00010000",
    "9011": "00010100",
    "9012": "00010200",
    "9013": "00010300",
    "9014": "00010400",
    "B611": "02010100",
    "B621": "02020100",
    "B630": "02030000",
    "901F": "0001FF00",
    "B61F": "0201FF00",
}


def format_info(fmt: str) -> tuple:
    """(nbytes, decimals, kind) of a format: kind "num" (X and .) or "digits" (YYMMDDWW, N...)."""
    digits = 0
    decimals = -1
    numeric = True
    for ch in fmt:
        if ch == ".":
            if decimals >= 0:
                raise EncodingError("format %r has two decimal points" % fmt)
            decimals = 0
            continue
        digits += 1
        if decimals >= 0:
            decimals += 1
        if ch != "X":
            numeric = False
    if digits == 0 or (digits % 2 and not numeric) or (decimals >= 0 and not numeric):
        raise EncodingError("format %r is not a BCD format" % fmt)
    return ((digits + 1) // 2, max(decimals, 0), "num" if numeric else "digits")


def decode_raw(raw: bytes, fmt: str, signed: bool = False) -> int:
    """The integer mantissa (value x 10**decimals) of a numeric value; EncodingError if not BCD."""
    nbytes, _, kind = format_info(fmt)
    if len(raw) != nbytes:
        raise EncodingError("format %s needs %d bytes, got %d (%s)" % (fmt, nbytes, len(raw), _hex(raw)))
    if kind != "num":
        raise EncodingError("format %s is not numeric" % fmt)
    negative = False
    if signed:
        top = raw[nbytes - 1]
        negative = bool(top & 0x80)
        raw = bytes(raw[:nbytes - 1]) + bytes([top & 0x7F])
    try:
        value = bcd_to_int(raw)
    except EncodingError:
        raise EncodingError("value %s is not BCD for format %s" % (_hex(_reverse(raw)), fmt)) from None
    return -value if negative else value


def decode_value(raw: bytes, fmt: str, signed: bool = False) -> "int | float | str":
    """Decode value bytes (offset removed, low byte first): int, float, or a digit string."""
    nbytes, decimals, kind = format_info(fmt)
    if kind == "digits":
        if len(raw) != nbytes:
            raise EncodingError("format %s needs %d bytes, got %d" % (fmt, nbytes, len(raw)))
        if not is_bcd(raw):
            raise EncodingError("value %s is not BCD for format %s" % (_hex(_reverse(raw)), fmt))
        return _hex(_reverse(raw))
    value = decode_raw(raw, fmt, signed)
    if decimals == 0:
        return value
    return value / (10 ** decimals)


def decode_reading(raw: bytes, fmt: str, signed: bool = False) -> tuple:
    """(value, quality): quality "good", "not_available" (all FF) or "bad_bcd"; value None if not good."""
    nbytes = format_info(fmt)[0]
    if len(raw) != nbytes:
        raise EncodingError("format %s needs %d bytes, got %d" % (fmt, nbytes, len(raw)))
    if raw and all(b == 0xFF for b in raw):
        return (None, QUALITY_NOT_AVAILABLE)
    try:
        return (decode_value(raw, fmt, signed), QUALITY_GOOD)
    except EncodingError:
        return (None, QUALITY_BAD_BCD)


def decode_block(raw: bytes, fmt: str, signed: bool = False) -> list:
    """An FF-block reply (e.g. 0201FF00) as a list of (value, quality), one per member."""
    n = format_info(fmt)[0]
    if len(raw) % n:
        raise EncodingError("block of %d bytes is not a multiple of %d (format %s)" % (len(raw), n, fmt))
    return [decode_reading(raw[i:i + n], fmt, signed) for i in range(0, len(raw), n)]


def encode_value(value: "int | float | str", fmt: str, signed: bool = False) -> bytes:
    """Encode a value for ``fmt`` (low byte first, no offset). EncodingError when it does not fit."""
    nbytes, decimals, kind = format_info(fmt)
    if kind == "digits":
        if not isinstance(value, str) or len(value) != 2 * nbytes or not value.isdigit():
            raise EncodingError("format %s needs %d digits, got %r" % (fmt, 2 * nbytes, value))
        return _reverse(binascii.unhexlify(value))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EncodingError("format %s needs a number, got %r" % (fmt, value))
    try:
        mantissa = round(value * 10 ** decimals) if isinstance(value, float) else value * 10 ** decimals
    except (ValueError, OverflowError):
        raise EncodingError("format %s cannot carry %r" % (fmt, value)) from None
    if mantissa < 0 and not signed:
        raise EncodingError("format %s is unsigned, cannot carry %r" % (fmt, value))
    if abs(mantissa) >= 10 ** fmt.count("X"):
        raise EncodingError("%r has more digits than format %s" % (value, fmt))
    out = bytearray(int_to_bcd(-mantissa if mantissa < 0 else mantissa, nbytes))
    if signed:
        if out[nbytes - 1] & 0x80:
            raise EncodingError("%r is too large for signed format %s" % (value, fmt))
        if mantissa < 0:
            out[nbytes - 1] |= 0x80
    return bytes(out)


#: the frame: 68 A0..A5 68 C L DATA CS 16 (the length byte is the tenth; the second 68 is fixed)
FRAME = SumFrame("DL/T 645", head=10, address_at=1, address_size=6, marks=((7, 0x68),))


def format_address(raw: bytes) -> str:
    """Six address bytes in wire order (A0 first) -> the address as printed (AA stays "AA")."""
    return FRAME.printed(raw)


def parse_address(address: str) -> bytes:
    """Printed address -> 6 wire bytes (A0 first).

    Shorter digit strings are padded with leading zeros; a byte may be "AA" (wildcard or
    abbreviated addressing). Anything else raises EncodingError.
    """
    return FRAME.address(address)


def abbreviated_address(address: str, keep_bytes: int) -> str:
    """Keep the low ``keep_bytes`` bytes of ``address`` and fill the rest with AA."""
    s = format_address(parse_address(address))
    if not 0 <= keep_bytes <= 6:
        raise EncodingError("keep_bytes must be 0..6, got %d" % keep_bytes)
    return "AA" * (6 - keep_bytes) + s[12 - 2 * keep_bytes:]


def address_matches(requested: str, replied: str) -> bool:
    """True when ``replied`` fits ``requested``; AA bytes in the request match any byte."""
    return FRAME.matches(requested, replied)


def _time_bytes(when: tuple, order: str) -> bytes:
    """(Y, M, D, h, m, s) -> 6 BCD bytes ss mm hh DD MM YY (ss_first) or YY .. ss (yy_first)."""
    if len(when) < 6:
        raise EncodingError("time must be (year, month, day, hour, minute, second), got %r" % (when,))
    y, mo, d, h, mi, s = when[0], when[1], when[2], when[3], when[4], when[5]
    ok = 2000 <= y <= 2099 and 1 <= mo <= 12 and 1 <= d <= 31
    if not (ok and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 59):
        raise EncodingError("time %r out of range for DL/T 645 (years 2000..2099)" % (when,))
    digits = int_to_bcd(((((y % 100) * 100 + mo) * 100 + d) * 100 + h) * 10000 + mi * 100 + s, 6)
    if order == "ss_first":
        return digits
    if order == "yy_first":
        return _reverse(digits)
    raise EncodingError("time byte order must be 'ss_first' or 'yy_first', got %r" % (order,))
