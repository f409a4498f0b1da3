"""The MicroPython stubs check passes on the tree and catches what CPython's typeshed would not."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil_tests.mpvm import typecheck


def run(capsys: pytest.CaptureFixture[str], targets: list[str]) -> tuple[int, str]:
    status = typecheck.main(targets)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_tree_is_clean_against_micropython_stubs(capsys: pytest.CaptureFixture[str]) -> None:
    status, output = run(capsys, [])
    assert status == 0, output


def test_real_errors_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad_firmware.py"
    bad.write_text(
        "import machine\n"
        "import dataclasses\n"  # a CPython module MicroPython does not have
        "uart = machine.UART(1, baudrate=9600)\n"
        'uart.sendall(b"x")\n'  # a socket method the UART does not have
        "count: int = 'three'\n"  # a plain type error
    )
    status, output = run(capsys, [str(bad)])
    assert status != 0
    assert (
        'bad_firmware.py:2: error: Cannot find implementation or library stub for module named "dataclasses"'
        in output
    )
    assert "bad_firmware.py:4: error" in output and "bad_firmware.py:5: error" in output


def test_micropython_only_api_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What CPython's typeshed rejects (time.ticks_ms, micropython.const) is fine here."""
    good = tmp_path / "good_firmware.py"
    good.write_text(
        "import time\nfrom micropython import const\n"
        "PERIOD = const(100)\n"
        "start = time.ticks_ms()\n"
        "late = time.ticks_diff(time.ticks_ms(), start) > PERIOD\n"
    )
    status, output = run(capsys, [str(good)])
    assert status == 0, output
