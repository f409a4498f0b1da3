"""The agent's threads carry their names into the kernel (agent/os_thread.py): `top -H` and `ps -L`
tell `bus-lamps` from `fieldlink-mqtt`."""

from __future__ import annotations

import sys
import threading

import pytest

from agent import os_thread


def test_the_kernel_keeps_15_bytes_and_never_half_a_character() -> None:
    assert os_thread.kernel_name("bus-lamps") == "bus-lamps"
    assert os_thread.kernel_name("fieldlink-lighting") == "fieldlink-light"
    assert os_thread.kernel_name("bus-路灯总线一号") == "bus-路灯总"  # 4 + 3 x 3 bytes: the 4th would split
    assert os_thread.kernel_name("bus-" + "é" * 20) == "bus-" + "é" * 5  # 4 + 5 x 2 bytes


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's thread names are Linux's")
def test_a_thread_is_named_in_the_kernel_while_it_runs() -> None:
    seen: dict[str, object] = {}
    started = threading.Event()
    release = threading.Event()

    def body() -> None:
        seen["tid"] = threading.get_native_id()
        started.set()
        release.wait(10)

    t = os_thread.thread(body, "bus-cabinet-north-street")
    assert t.daemon and t.name == "bus-cabinet-north-street" and not t.is_alive()
    t.start()
    try:
        assert started.wait(10)
        assert os_thread.kernel_names()[seen["tid"]] == "bus-cabinet-nor"  # type: ignore[index]
        assert os_thread.kernel_names()[threading.get_native_id()] != "bus-cabinet-nor"  # only that thread
    finally:
        release.set()
        t.join(10)


def test_naming_where_the_kernel_cannot_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> object:
        raise FileNotFoundError("/proc/self/task/1/comm")

    monkeypatch.setattr("builtins.open", refuse)
    assert os_thread.name_this_thread("bus-lamps") is False
