"""Pseudo-terminals that no other process is holding: `open_pty()`.

On a shared machine a process left over from another run may keep reopening a /dev/pts/N path it was
once given; when the system hands that number to a new pty, the stray process reads the new owner's
bytes. The system hands out the lowest free number, so such paths are mostly low numbers. `open_pty`
therefore takes a number of at least FLOOR when it can (the lower ones it opened meanwhile are closed
again), and looks, before handing a pty out, whether any other process has its slave path open
(Linux: /proc/*/fd); if so it keeps that pty aside (its number stays taken) and takes another.
The caller owns the pty for its whole life and closes both ends when done. (The agent also opens a
serial port exclusive, so a stray agent of this release cannot share a port that one holds.)
"""

from __future__ import annotations

import os

MAX_TRIES = 48
FLOOR = 16  # numbers below are the ones stray processes were most likely given


def holders(path: str) -> list[int]:
    """PIDs of other processes with `path` open (those whose fds we may read)."""
    me = os.getpid()
    found = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        return []
    for pid in pids:
        fd_dir = "/proc/%s/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink("%s/%s" % (fd_dir, fd)) == path:
                    found.append(int(pid))
                    break
        except OSError:  # gone, or not ours to read
            continue
    return found


def number(path: str) -> int:
    """N of /dev/pts/N (-1 for another path)."""
    tail = path.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def open_pty() -> tuple[int, int, str]:
    """(master fd, slave fd, slave path) of a new pty whose path no other process holds open."""
    aside: list[tuple[int, int]] = []
    try:
        for _ in range(MAX_TRIES):
            master, slave = os.openpty()
            path = os.ttyname(slave)
            if number(path) >= FLOOR and not holders(path):
                return master, slave, path
            aside.append((master, slave))  # low, or someone else reads this number: take another
        master, slave = os.openpty()
        return master, slave, os.ttyname(slave)
    finally:
        for fds in aside:
            for fd in fds:
                os.close(fd)
