"""`fieldlink run FILE`: the gateway in the foreground.

SIGTERM/SIGINT: the poll in flight is finished, every reading made is committed to the outbox, the
agent publishes for a moment, goes offline and disconnects; exit 0 within 5 s. Exit 2 for a config
error, 1 when the outbox cannot be ours (another agent holds it: "outbox PATH is in use by pid N"; a
folder other users may write to).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from agent.config import ConfigError, load_config
from agent.logs import LOG_FORMAT

__all__ = ["LOG_FORMAT", "add_arguments", "run", "setup_logging"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="gateway config (TOML)")
    parser.add_argument("--once", action="store_true",
                        help="poll every device once, print a table, exit 0 if all answered, 1 naming "
                             "the ones that did not (publishes nothing)")
    parser.add_argument("--si", action="store_true", help="with --once: SenML units as on the wire")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log verbosity (default INFO)")


def setup_logging(level: str) -> None:
    """Log lines on stderr; with journald priorities under systemd (agent/logs.py)."""
    from agent.logs import setup

    setup(level)


def run(args: Any) -> int:
    setup_logging(args.log_level)
    log = logging.getLogger("fieldlink.run")
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    if args.once:
        from agent.commands.once import run_once

        return run_once(config, si=args.si)
    from agent.gateway import Gateway

    stop = threading.Event()
    interrupted: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        if signum == signal.SIGINT:
            interrupted.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from agent.outbox import OutboxInUse
    from agent.private import PrivateFileError

    try:
        gateway = Gateway(config)
    except (OutboxInUse, PrivateFileError) as exc:
        print("fieldlink run: %s" % (exc.strerror or exc), file=sys.stderr)
        return 1
    gateway.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        gateway.stop()
    return 130 if interrupted else 0  # docs/cli.md: Ctrl-C 130; SIGTERM (systemctl stop) 0
