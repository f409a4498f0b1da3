"""How the CLI shows values to a person (shared by `read` and `monitor`)."""

from __future__ import annotations

from typing import Any


def show_value(value: Any) -> str:
    """A reading value for a human: floats with up to 10 significant digits, bytes in hex."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "%.10g" % value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)
