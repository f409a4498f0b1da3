"""Runs after boot.py: the firmware, unless boot.py chose safe mode."""

import sys


def build(board):
    """Wi-Fi up, then the gateway from /config.json; the decoded JSON is not kept."""
    import json

    from firmware_py import app, net

    with open("/config.json") as f:
        cfg = json.load(f)
    net.up(cfg)
    return app.Firmware(cfg, board)


def start() -> None:
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

    firmware = build(hw.Board())
    gc.collect()  # the decoded config is gone: only the gateway's tables stay
    try:
        asyncio.run(firmware.main())
    except Exception as exc:  # log, then let the watchdog reset the board
        sys.print_exception(exc)  # type: ignore[attr-defined]
        while True:
            pass


start()
