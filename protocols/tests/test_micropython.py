"""The codecs on genuine MicroPython: every protocols/tests/mp/check_*.py runs under CPython and under
MicroPython (WebAssembly port, hil_tests/mpvm) and must print the same lines, with no FAIL.

A check script prints one deterministic line per vector and ``FAIL <case>`` on a mismatch; it runs
from the repository root (``sys.path.insert(0, ".")``). Adding a script adds a test.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from hil_tests.mpvm.vm import ROOT, micropython_available, project_mounts, run_micropython, vm_report

PROTOCOLS = ROOT / "protocols"
CHECKS = sorted((PROTOCOLS / "tests" / "mp").glob("check_*.py"))
MODULES = sorted(
    ".".join(("protocols", *p.relative_to(PROTOCOLS).with_suffix("").parts)).removesuffix(".__init__")
    for p in PROTOCOLS.rglob("*.py")
    if "tests" not in p.parts and p != PROTOCOLS / "__init__.py"
)

pytestmark = pytest.mark.skipif(
    not micropython_available(), reason="MicroPython VM missing: needs node and `make setup`"
)


def run_cpython(script: Path) -> subprocess.CompletedProcess[str]:
    """The script under the interpreter running the tests (the venv's), from the repository root."""
    return subprocess.run(
        [sys.executable, str(script.relative_to(ROOT))], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def failures(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("FAIL")]


def assert_same_lines(cpython: str, micropython: str, name: str) -> None:
    if cpython.splitlines() == micropython.splitlines():
        return
    diff = difflib.unified_diff(
        cpython.splitlines(), micropython.splitlines(), "CPython " + name, "MicroPython " + name, lineterm=""
    )
    pytest.fail("output differs between CPython and MicroPython:\n" + "\n".join(diff), pytrace=False)


@pytest.mark.parametrize("script", CHECKS, ids=[p.stem for p in CHECKS])
def test_check_script_same_on_cpython_and_micropython(script: Path) -> None:
    cpython = run_cpython(script)
    assert cpython.returncode == 0, "CPython exit %d\n%s%s" % (
        cpython.returncode,
        cpython.stdout,
        cpython.stderr,
    )
    assert not failures(cpython.stdout), "\n".join(failures(cpython.stdout))

    micro = run_micropython(script, project_mounts("protocols"), timeout=120)
    assert micro.returncode == 0, "MicroPython exit %d\n%s%s" % (micro.returncode, micro.stdout, micro.stderr)
    assert not failures(micro.stdout), "\n".join(failures(micro.stdout))
    assert micro.stdout.strip(), "the check printed nothing"
    assert_same_lines(cpython.stdout, micro.stdout, script.name)


def test_every_protocols_module_imports_on_micropython() -> None:
    """Modules without a check script still prove they load (syntax, imports, module-level code)."""
    report = vm_report(MODULES, project_mounts("protocols"))
    print(
        "MicroPython %s (%s, %s); live heap after importing %d protocols modules: %d bytes"
        % (
            report["version"],
            report["banner"],
            report["machine"],
            len(MODULES),
            int(str(report["mem_alloc"])),
        )
    )
    assert report["imported"] == MODULES
    assert tuple(int(x) for x in str(report["version"]).split(".")[:2]) >= (1, 22)


def test_uncaught_exception_fails_with_micropython_traceback() -> None:
    """The harness itself: an error in a script is a non-zero exit with the VM's traceback."""
    result = run_micropython(
        "import protocols.errors as e\nraise e.CrcError('bad crc')\n", project_mounts("protocols")
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CrcError: bad crc" in result.stderr
