"""FieldLink firmware for MicroPython boards (ESP32, RP2040)."""
