"""`fieldlink check-config FILE`: validate a config; every error names file, line, key and expectation."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.config import validate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="gateway config (TOML)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: Any) -> int:
    config, issues, warnings = validate(args.file)
    for issue in issues:
        print(issue, file=sys.stderr)
    if not args.quiet:
        for warning in warnings:
            print("%s (warning)" % warning, file=sys.stderr)
    if issues or config is None:
        print("%s: %d error%s" % (args.file, len(issues), "" if len(issues) == 1 else "s"), file=sys.stderr)
        return 2  # docs/cli.md: the input is wrong
    if not args.quiet:
        nb, nd, nr = len(config.buses), len(config.devices), len(config.rules)
        print("%s: OK (%d bus%s, %d device%s, %d rule%s)" % (
            args.file, nb, "" if nb == 1 else "es", nd, "" if nd == 1 else "s", nr, "" if nr == 1 else "s"))
    return 0
