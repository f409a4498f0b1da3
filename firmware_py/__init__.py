"""FieldLink firmware for MicroPython boards (ESP32, RP2040)."""

VERSION = "0.1.0"  # the release; the compiled inventory carries protocols.__version__, the same number
