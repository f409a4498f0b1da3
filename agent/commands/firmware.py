"""`fieldlink firmware build|flash|config`: the host tools of the MicroPython firmware (agent/firmware/).

    fieldlink firmware config site.toml -o config.json     (also: fieldlink firmware-config)
    fieldlink firmware build [--out build/firmware]        (make firmware)
    fieldlink firmware flash --port /dev/ttyUSB0 --config site.toml [--dry-run] [-- --wifi-ssid ...]
"""

from __future__ import annotations

import argparse
import importlib

TOOLS = {
    "config": ("agent.firmware.config", "compile a config to the board's JSON"),
    "build": ("agent.firmware.build", "compile protocols/ and firmware_py/ into an .mpy bundle"),
    "flash": ("agent.firmware.flash", "put the bundle and a compiled config on a board (mpremote)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", required=True)
    for name, (module_name, help_text) in TOOLS.items():
        module = importlib.import_module(module_name)
        tool = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(tool)
        tool.set_defaults(_tool=module)


def run(args: argparse.Namespace) -> int:
    return int(args._tool.run(args) or 0)
