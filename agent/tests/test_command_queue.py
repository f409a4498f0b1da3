"""Per-bus bounded command queues (agent/scheduler.BusWorker.offer): a blocked bus holds at most `queue`
commands and says busy beyond that, while another bus keeps serving its own commands at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from agent.config_model import BusConfig
from agent.scheduler import BusWorker


class IdleLink:
    """A link with no devices behind it: the bus owner only runs commands."""

    is_open = True
    port = "idle"
    timeout = 0.1

    def __init__(self) -> None:
        self.counters: dict = {}

    def ensure_open(self) -> None:
        pass

    def retry_in(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def IDLE() -> Any:
    return IdleLink()


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_blocked_bus_is_bounded_and_never_delays_another():
    a = BusWorker(BusConfig(name="a", port="-"), IDLE(), [], sink=lambda r: None, command_queue=3)
    b = BusWorker(BusConfig(name="b", port="-"), IDLE(), [], sink=lambda r: None, command_queue=3)
    release = threading.Event()
    done: list = []
    lock = threading.Lock()

    def record(name):
        def cb(result, exc):
            with lock:
                done.append((name, result, exc))
        return cb

    a.start()
    b.start()
    try:
        assert a.offer(lambda link: release.wait(30) and "a0", record("a0"))
        assert wait_for(lambda: a.waiting == 0)  # a0 is running: bus a is stuck in it
        def job(i: int) -> Any:
            return lambda link: "a%d" % i

        accepted = [a.offer(job(i), record("a%d" % i)) for i in range(1, 6)]
        assert accepted == [True, True, True, False, False] and a.waiting == 3
        assert a.counters["commands_busy"] == 2
        assert b.offer(lambda link: "b0", record("b0"))
        assert wait_for(lambda: any(name == "b0" for name, _, _ in done), 5)
        assert [name for name, _, _ in done] == ["b0"]  # served while bus a is full and blocked
        release.set()
        assert wait_for(lambda: len(done) == 5)
        assert [(n, r) for n, r, _ in done] == [("b0", "b0"), ("a0", "a0"), ("a1", "a1"), ("a2", "a2"),
                                                ("a3", "a3")]
        assert a.offer(lambda link: "a9", record("a9"))  # room again
    finally:
        release.set()
        a.stop(5)
        b.stop(5)


def test_commands_left_in_the_queue_when_the_bus_stops_are_reported_not_run():
    a = BusWorker(BusConfig(name="a", port="-"), IDLE(), [], sink=lambda r: None, command_queue=5)
    release = threading.Event()
    done: list = []
    ran: list = []
    a.start()
    assert a.offer(lambda link: release.wait(30), lambda r, e: done.append(("first", e)))
    assert wait_for(lambda: a.waiting == 0)
    assert a.offer(lambda link: ran.append(1), lambda r, e: done.append(("second", e)))
    a._stop.set()
    release.set()
    a.stop(5)
    assert not ran
    second = [e for name, e in done if name == "second"]
    assert second and "stopped before the command ran" in str(second[0])
