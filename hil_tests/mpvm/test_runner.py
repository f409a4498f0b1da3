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
    controller, device = os.openpty()
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
