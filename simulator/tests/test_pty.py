"""simulator/pty.py: ptys whose number no other process holds, for a machine shared with stray runs."""

from __future__ import annotations

import os
import subprocess
import sys

from simulator.pty import FLOOR, holders, number, open_pty


def test_a_pty_path_held_by_another_process_is_seen() -> None:
    master, slave, path = open_pty()
    try:
        assert holders(path) == []
        child = subprocess.Popen([sys.executable, "-c", "import os, sys; f = os.open(%r, os.O_RDWR); "
                                  "sys.stdout.write('open\\n'); sys.stdout.flush(); sys.stdin.read()" % path],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "open\n"
            assert holders(path) == [child.pid]
        finally:
            child.communicate("", timeout=10)
        assert holders(path) == []
    finally:
        os.close(master)
        os.close(slave)


def test_open_pty_hands_out_a_number_from_the_floor_up() -> None:
    ptys = [open_pty() for _ in range(3)]
    try:
        paths = [p for _m, _s, p in ptys]
        assert len(set(paths)) == 3
        assert all(number(p) >= FLOOR for p in paths), paths
        assert all(holders(p) == [] for p in paths)
    finally:
        for master, slave, _path in ptys:
            os.close(master)
            os.close(slave)
    assert number("/dev/pts/17") == 17 and number("/dev/ttyUSB0") == -1
