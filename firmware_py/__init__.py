"""FieldLink firmware for MicroPython boards (ESP32, RP2040)."""

VERSION = "0.1.0"
