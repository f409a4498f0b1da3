"""Runs first at every reset. Safe mode: hold the safe pin low (ESP32: BOOT button, GPIO 0; RP2040:
GPIO 22 to GND) or create the file /safe, and main.py returns at once so mpremote can take over."""

import os


def safe_mode() -> bool:
    try:
        os.stat("/safe")
        return True
    except OSError:
        pass
    try:
        import json

        import machine  # type: ignore[import-not-found]

        with open("/config.json") as f:
            pin = json.load(f).get("safe_pin", 0)
        return machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
    except Exception:
        return True  # no config or no pin: nothing to run anyway


SAFE = safe_mode()
