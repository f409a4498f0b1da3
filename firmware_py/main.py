"""Runs after boot.py: the firmware, unless boot.py chose safe mode.

A start that fails stays at the prompt only when the config itself is wrong (it would fail again):
the error says what to fix. Anything else (memory, a UART or Wi-Fi that did not come up, a crash
while running) is printed and the board resets after RETRY_S, so a street cabinet recovers by itself
while a technician on the console has time to press Ctrl-C."""

import sys

RETRY_S = 60


def build(board):
    """Wi-Fi up, then the gateway from /config.json; the decoded JSON is not kept."""
    import json

    from firmware_py import app, net

    with open("/config.json") as f:
        cfg = json.load(f)
    net.up(cfg)
    return app.Firmware(cfg, board)


def config_fault(exc: BaseException) -> bool:
    """True for an error of config.json itself (bad JSON, another format, a key the check refuses)."""
    return isinstance(exc, (ValueError, KeyError, TypeError))  # CompiledError is a ValueError


def reset_later(retry_s: float) -> None:
    import time

    import machine  # type: ignore[import-not-found]

    print("fieldlink: resetting in %s s (Ctrl-C stays at the prompt)" % retry_s)
    time.sleep(retry_s)
    machine.reset()


def start(retry_s: float = RETRY_S) -> None:
    try:
        from boot import SAFE  # type: ignore[import-not-found]
    except ImportError:
        SAFE = False
    if SAFE:
        print("fieldlink: safe mode (pin low or /safe present): main loop skipped")
        return
    import asyncio
    import gc

    from firmware_py import hw

    try:
        firmware = build(hw.Board())
    except Exception as exc:
        sys.print_exception(exc)  # type: ignore[attr-defined]
        if config_fault(exc):
            print("fieldlink: /config.json cannot run on this firmware: compile it again (fieldlink "
                  "firmware config), copy it and reset; the board waits at the prompt")
            return
        reset_later(retry_s)
        return
    gc.collect()  # the decoded config is gone: only the gateway's tables stay
    try:
        asyncio.run(firmware.main())
    except Exception as exc:  # the watchdog resets the board if it is armed; else the timer does
        sys.print_exception(exc)  # type: ignore[attr-defined]
        reset_later(retry_s)


if __name__ == "__main__":  # main.py at boot; a test imports it and calls start
    start()
