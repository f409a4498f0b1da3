"""Unit scaling, the one rule for agent and board: published value = codec value * scale + offset."""


def scaled(raw: object, scale: object = 1, offset: object = 0) -> object:
    """`raw * scale + offset`; bools, text, bytes and None pass unchanged. Floats are rounded to 9
    decimals (2301 * 0.1 -> 230.1, not 230.10000000000002), and a whole result of whole inputs stays
    an int."""
    if raw is None or type(raw) is bool or type(raw) is str or type(raw) is bytes:
        return raw
    if scale == 1 and offset == 0:
        return raw
    value = raw * scale + offset  # type: ignore[operator]
    if type(value) is float:
        value = round(value, 9)
        if type(raw) is int and type(scale) is int and type(offset) is int and value == int(value):
            value = int(value)
    return value
