"""Run firmware code under genuine MicroPython (WebAssembly, Node.js) on hil_tests/mpvm's runner.

The VM is laid out as a board's flash: packages at /protocols, /firmware_py (copied from `root`, the
repository or a `make firmware` bundle), extra files at their VM paths, working directory `/`. The
code may `await` at top level; what it reports with `hostio.emit(json)` comes back in `values()`, and
the host's pin and watchdog bookkeeping in `host`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil_tests.mpvm.vm import ROOT as _ROOT
from hil_tests.mpvm.vm import VmResult, micropython_available, node_executable, run_micropython

ROOT = str(_ROOT)
HEAP = 8 * 1024 * 1024  # initial heap; this build grows it, the tests measure live bytes


def available() -> str | None:
    """None when the VM can run here, else why not."""
    if node_executable() is None:
        return "node is not installed"
    if not micropython_available():
        return "the MicroPython VM is not installed (make setup: npm install in hil_tests/mpvm)"
    return None


def needs_vm(test):  # type: ignore[no-untyped-def]
    """A test that runs code under the VM: skipped (with the reason) where it cannot run, and `slow`."""
    missing = available()
    return pytest.mark.slow(pytest.mark.skipif(missing is not None, reason=str(missing))(test))


def vm_module() -> list:
    """`pytestmark` of a module whose every test runs under the VM."""
    missing = available()
    return [pytest.mark.slow, pytest.mark.skipif(missing is not None, reason=str(missing))]


class Result:
    def __init__(self, run: VmResult) -> None:
        self.returncode = run.returncode
        self.stdout = run.stdout
        self.stderr = run.stderr
        self.lines = [ln[3:] for ln in run.stdout.splitlines() if ln.startswith("@@ ")]
        self.host = run.host

    def values(self) -> list:
        return [json.loads(ln) for ln in self.lines]


def run(
    code: str,
    files: dict | None = None,
    packages=("protocols", "firmware_py"),
    root: str = ROOT,
    timeout: float = 180,
    pins_low=(),
) -> Result:
    """Run `code` with `packages` of `root` and `files` ({VM path: host path}, copied after them)."""
    mounts = {"/" + pkg: Path(root) / pkg for pkg in packages}
    mounts.update({vm: Path(host) for vm, host in (files or {}).items()})
    return Result(run_micropython(code, mounts, timeout=timeout, cwd="/", heap=HEAP, pins_low=list(pins_low)))
