"""FieldLink gateway agent for CPython (Raspberry Pi)."""

__version__ = "0.1.0"
