"""Threads the kernel knows by name: `top -H -p PID`, `ps -L -p PID` and `/proc/PID/task/*/comm` show
`bus-lamps` or `fieldlink-mqtt` instead of `python`, so a technician (and `make bench`) can tell which part
of the agent uses the CPU. Linux keeps the first 15 bytes of a thread's name; elsewhere nothing changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: the longest thread name the Linux kernel keeps (TASK_COMM_LEN, 16, less the terminating NUL)
KERNEL_NAME_BYTES = 15


def kernel_name(name: str) -> str:
    """`name` as the kernel will show it: its first 15 bytes of UTF-8, never a split character."""
    return name.encode()[:KERNEL_NAME_BYTES].decode(errors="ignore")


def name_this_thread(name: str) -> bool:
    """Give the calling thread `name` in the kernel; False where that cannot be done (not Linux, no /proc)."""
    try:
        with open("/proc/self/task/%d/comm" % threading.get_native_id(), "w") as f:
            f.write(kernel_name(name))
        return True
    except (OSError, AttributeError):
        return False


def kernel_names(pid: int | str = "self") -> dict[int, str]:
    """The kernel's name of each thread of process `pid` (what `ps -L -p PID` shows), by thread id; a thread
    that ends meanwhile is left out. Empty where there is no /proc."""
    names: dict[int, str] = {}
    try:
        tids = os.listdir("/proc/%s/task" % pid)
    except OSError:
        return names
    for tid in tids:
        try:
            with open("/proc/%s/task/%s/comm" % (pid, tid)) as f:
                names[int(tid)] = f.read().rstrip("\n")
        except OSError:
            pass
    return names


def named(target: Callable[[], None], name: str) -> Callable[[], None]:
    """`target` as a thread's body that first names its thread `name` in the kernel."""
    def run() -> None:
        name_this_thread(name)
        target()
    return run


def thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread called `name` in Python and in the kernel, not started yet."""
    return threading.Thread(target=named(target, name), name=name, daemon=True)


__all__ = ["KERNEL_NAME_BYTES", "kernel_name", "kernel_names", "name_this_thread", "named", "thread"]
