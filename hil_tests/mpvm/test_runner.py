"""runner.mjs and its host bridge: exit codes, arguments, a pty and a localhost TCP socket."""

from __future__ import annotations

import os
import socket
import threading
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.mpvm.vm import micropython_available, run_micropython
from simulator.pty import open_pty

pytestmark = pytest.mark.skipif(not micropython_available(), reason="MicroPython VM missing")


def test_exit_status_and_argv() -> None:
    assert run_micropython("import sys\nprint(sys.argv[1:])\nsys.exit(3)", args=["a", "b"]).returncode == 3
    result = run_micropython("import sys\nprint(sys.argv[1:])", args=["a", "b"])
    assert (result.returncode, result.stdout) == (0, "['a', 'b']\n")


def test_timeout_is_124() -> None:
    code = "import asyncio\nasync def f():\n    while True:\n        await asyncio.sleep(0.05)\n"
    code += "asyncio.run(f())\n"
    assert run_micropython(code, timeout=0.5).returncode == 124


def test_script_runs_from_its_mount(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("NAME = 'pkg'\n")
    (tmp_path / "main.py").write_text("import pkg\nprint(pkg.NAME, __file__)\nraise ValueError('boom')\n")
    result = run_micropython(tmp_path / "main.py", {"site": tmp_path})
    assert result.stdout == "pkg /app/site/main.py\n"
    assert result.returncode == 1 and 'File "/app/site/main.py", line 3' in result.stderr


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    controller, device, _path = open_pty()
    tty.setraw(device)
    try:
        yield controller, os.ttyname(device)
    finally:
        os.close(controller)
        os.close(device)


def test_pty_bridge(pty_pair: tuple[int, str]) -> None:
    controller, path = pty_pair
    os.write(controller, b"\x01\x03\x00\x00")  # waiting in the pty before the VM starts
    code = (
        "import sys, asyncio, hostio\n"
        "async def main():\n"
        "    port = hostio.HostFd(sys.argv[1])\n"
        "    got = await port.read_wait(16, 2000)\n"
        "    print(got.hex(), port.read(4))\n"
        "    port.write(b'\\x01\\x83\\x02' + got[1:2])\n"
        "    port.close()\n"
        "asyncio.run(main())\n"
    )
    result = run_micropython(code, args=[path], timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "01030000 None\n"
    assert os.read(controller, 16) == b"\x01\x83\x02\x03"


@pytest.fixture
def echo_server() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(20)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(256):
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(5)


def test_tcp_bridge(echo_server: int) -> None:
    code = (
        "import sys, hostio\n"
        "async def main():\n"
        "    s = await hostio.TcpStream.connect('127.0.0.1', int(sys.argv[1]))\n"
        "    await s.send(b'ping\\x00')\n"
        "    print(await s.recv_exactly(5))\n"
        "    s.close()\n"
        "    try:\n"
        "        await hostio.TcpStream.connect('127.0.0.1', 1, 2000)\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
        "import asyncio\nasyncio.run(main())\n"
    )
    result = run_micropython(code, args=[str(echo_server)], timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b'PING\\x00'\nrefused 111\n"


def test_top_level_await_pins_watchdog_and_report() -> None:
    code = (
        "import asyncio, hostio\n"
        "de = hostio.Pin(4)\n"
        "wdt = hostio.WDT(3000)\n"
        "for level in (1, 0, 1, 0):\n"
        "    de.value(level)\n"
        "    await asyncio.sleep_ms(20)\n"
        "    wdt.feed()\n"
        "print(hostio.Pin(22).value(), hostio.Pin(0).value(), hostio.js_gc())\n"
    )
    result = run_micropython(code, pins_low=[22])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0 1 True\n"
    host: dict = result.host
    assert host["pins"] == {"%4": [2, 2]}
    assert host["wdt_timeout"] == 3000 and host["wdt_feeds"] == 4 and 15 <= host["wdt_max_gap_ms"] < 1000


def test_folder_beside_a_module_is_not_copied(tmp_path: Path) -> None:
    """MicroPython would import the folder (namespace package) instead of profiles.py."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "profiles.py").write_text("NAME = 'module'\n")
    (tmp_path / "pkg" / "profiles").mkdir()
    (tmp_path / "pkg" / "profiles" / "meter.json").write_text("{}\n")
    (tmp_path / "pkg" / "data").mkdir()
    (tmp_path / "pkg" / "data" / "table.json").write_text("{}\n")
    code = "import os, pkg.profiles\nprint(pkg.profiles.NAME, sorted(os.listdir('pkg')))\n"
    result = run_micropython(code, {"pkg": tmp_path / "pkg"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "module ['data', 'profiles.py']\n"


def test_tcp_non_blocking_and_cut(echo_server: int) -> None:
    code = (
        "import sys, asyncio, hostio\n"
        "s = await hostio.TcpStream.connect('127.0.0.1', int(sys.argv[1]))\n"
        "buf = bytearray(8)\n"
        "print(s.readinto(buf), s.write(memoryview(b'xxabc')[2:]))\n"
        "while s.readinto(buf) is None:\n"
        "    await asyncio.sleep_ms(2)\n"
        "print(bytes(buf[:3]), hostio.tcp_drop_all())\n"
        "await asyncio.sleep_ms(50)\n"
        "print(s.readinto(buf))\n"
        "try:\n"
        "    s.write(b'more')\n"
        "except OSError as e:\n"
        "    print('closed', e.errno)\n"
    )
    result = run_micropython(code, args=[str(echo_server)], timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "None 3\nb'ABC' 1\n0\nclosed 32\n"
    assert result.host["tcp_connects"] == 1 and result.host["tcp_tx"] == 3 and result.host["tcp_rx"] == 3
