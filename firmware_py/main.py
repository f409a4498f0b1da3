"""Runs after boot.py: the gateway, unless boot.py chose safe mode."""

import sys


def start() -> None:
    try:
        from boot import SAFE  # type: ignore[import-not-found]
    except ImportError:
        SAFE = False
    if SAFE:
        print("fieldlink: safe mode (pin low or /safe present): main loop skipped")
        return
    import asyncio
    import json

    from firmware_py import app, hw, net

    with open("/config.json") as f:
        cfg = json.load(f)
    net.up(cfg)
    gw = app.Gateway(cfg, hw.Board())
    try:
        asyncio.run(gw.main())
    except Exception as exc:  # log, then let the watchdog reset the board
        sys.print_exception(exc)  # type: ignore[attr-defined]
        while True:
            pass


start()
