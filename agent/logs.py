"""Logging for the agent's commands: plain lines on a terminal or in a file, and under systemd each line
prefixed with its journald priority (`<3>` error ... `<7>` debug, sd-daemon(3)), so `journalctl -p warning`
shows warnings and errors only.

systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connected to stderr; the prefix is used only
when stderr is that stream (a command run from a shell inside the service's environment keeps plain lines).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

__all__ = ["LOG_FORMAT", "JournalFormatter", "on_journal", "priority", "setup"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s %(message)s"  # journald stamps the time itself


def priority(levelno: int) -> int:
    """The syslog priority of a logging level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def on_journal(stream: TextIO | None = None) -> bool:
    """True when `stream` (stderr) is the journal stream systemd connected (JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)


class JournalFormatter(logging.Formatter):
    """Prefixes every line of a record (a traceback too) with `<N>`, its priority."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = "<%d>" % priority(record.levelno)
        return "\n".join(prefix + line for line in text.split("\n"))


def setup(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure the root logger for a command: journald priorities under systemd, plain lines otherwise."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if on_journal(stream):
        handler.setFormatter(JournalFormatter(JOURNAL_FORMAT))
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)
