"""Pure codecs shared by the FieldLink agent (CPython) and firmware (MicroPython). No I/O."""

__version__ = "0.1.0"
