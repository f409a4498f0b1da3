"""The point quality rule, one copy for agent and board.

A point the device answered for without a usable value (DL/T 645 all-FF "not_available", non-BCD
"bad_bcd", a value that does not decode "decode: ...", a CJ/T 188 field in another unit "unit: ...")
is no reading. Its first bad answer (or a bad answer after good ones) raises a `quality` alarm whose
value is the quality text; later bad answers are only counted; its next good value clears the alarm
with the value "good". A failed transaction (timeout, CRC, ...) is a comms matter and leaves quality
alone. The board keeps one byte per point: the code of its quality (`code`), 0 when good.
"""

QUALITY = ("good", "not_available", "bad_bcd", "decode", "unit", "other")  # code -> name
GOOD_VALUE = "good"  # the value of a cleared quality alarm

NO_CHANGE = 0
RAISED = 1
CLEARED = 2


def code(text: "str | None") -> int:
    """The one-byte code of a quality text (0: good)."""
    if text is None or text == "good":
        return 0
    for i in range(1, len(QUALITY)):
        if text == QUALITY[i]:
            return i
    if text.startswith("decode"):
        return 3
    if text.startswith("unit"):
        return 4
    return 5


def is_decode(text: str) -> bool:
    """True for a value that did not decode (counted as a decode error), False for a value the
    device marked or sent as unusable (counted as a quality answer)."""
    return code(text) in (3, 4)


def change(was_bad: bool, text: "str | None") -> int:
    """What one answer does to a point that `was_bad`: `text` None is a good value. RAISED (alarm
    with the text), CLEARED (alarm with GOOD_VALUE) or NO_CHANGE."""
    if text is None:
        return CLEARED if was_bad else NO_CHANGE
    return NO_CHANGE if was_bad else RAISED
