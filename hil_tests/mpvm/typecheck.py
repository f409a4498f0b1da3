"""`python -m hil_tests.mpvm.typecheck [PATH...]`: mypy for protocols/ and firmware_py/ against the
MicroPython stubs instead of CPython's typeshed.

Configuration (found by trial with mypy 2.4 and the 1.29 stubs):
- `--custom-typeshed-dir site-packages`: micropython-stdlib-stubs installs a typeshed-shaped `stdlib/`
  (with VERSIONS) there, so builtins and the standard library are MicroPython's: a module MicroPython
  lacks (`dataclasses`, `typing` at runtime aside) is an import error, a missing method an attr error.
- the port stubs (micropython-rp2-stubs: `machine`, `micropython`, `network`, `time.ticks_ms`, ...) are
  bare top-level .pyi files, not PEP 561 packages, so mypy would not find them in site-packages;
  they are linked into .mypy_cache/micropython/stubs and put on MYPYPATH, with `_mpy_shed` (helpers
  the stdlib stubs import). Errors *inside* the stubs (there are some) are silenced per module.
- our own config (not pyproject's [tool.mypy]): `ignore_missing_imports` stays off, because a missing
  module is exactly what this check is for; its own cache dir, since a cache built on CPython's
  typeshed must not mix with this one.
- the dual-runtime shims (protocols/compat.py, firmware_py/rt.py) are not checked here and are seen
  as `Any` by their callers: their CPython branches redefine MicroPython names by design (`const`,
  `time.ticks_ms` falling back to `time.monotonic`), and the stubs model ticks as an opaque type
  that `int` annotations in the firmware would otherwise trip over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDERS = ("protocols", "firmware_py")
HOST_ONLY: set[str] = set()  # firmware_py/ holds board code only (host tools: agent/firmware/)
VM_FILES = ("hil_tests/mpvm/vmlib/hw_host.py",)  # the VM's stand-in for the board's hw.py
SHIMS = {"protocols/compat.py": "protocols.compat", "firmware_py/rt.py": "firmware_py.rt"}
WORK = ROOT / ".mypy_cache" / "micropython"
PYTHON_VERSION = "3.11"


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _stub_entries(site: Path, dist_prefix: str) -> list[str]:
    """Top-level names a stub distribution installed, from its RECORD."""
    records = sorted(site.glob(dist_prefix + "-*.dist-info/RECORD"))
    if not records:
        raise SystemExit("%s is not installed in %s (pip install -e '.[dev]')" % (dist_prefix, site))
    names = set()
    for line in records[-1].read_text().splitlines():
        top = line.split(",")[0].split("/")[0]
        if top.endswith((".pyi", ".py")) or ("/" in line.split(",")[0] and not top.endswith(".dist-info")):
            names.add(top)
    return sorted(n for n in names if not n.startswith("__pycache__"))


def prepare_stubs(site: Path) -> tuple[Path, list[str]]:
    """Link the port stubs (and _mpy_shed) into one directory for MYPYPATH; return it and the modules."""
    stubs = WORK / "stubs"
    if stubs.exists():
        shutil.rmtree(stubs)
    stubs.mkdir(parents=True)
    entries = _stub_entries(site, "micropython_rp2_stubs")
    if (site / "_mpy_shed").is_dir():
        entries.append("_mpy_shed")
    for name in entries:
        try:
            (stubs / name).symlink_to(site / name)
        except OSError:  # no symlinks here: copy
            (shutil.copytree if (site / name).is_dir() else shutil.copy)(site / name, stubs / name)
    modules = sorted({Path(n).stem if n.endswith((".pyi", ".py")) else n for n in entries})
    return stubs, modules


def write_config(stub_modules: Sequence[str]) -> Path:
    sections = [
        "[mypy]",
        "check_untyped_defs = True",
        "warn_unused_ignores = False",
        "show_error_codes = True",
        "",
    ]
    quiet = ",".join(m for name in stub_modules for m in (name, name + ".*"))
    sections += ["[mypy-%s]" % quiet, "ignore_errors = True", ""]
    sections += [
        "[mypy-%s]" % ",".join(SHIMS.values()),
        "follow_imports = skip",
        "follow_imports_for_stubs = True",
        "",
    ]
    config = WORK / "mypy.ini"
    config.write_text("\n".join(sections))
    return config


def default_targets() -> list[str]:
    """protocols/ and firmware_py/ sources, without tests, host-only tools and the shims."""
    targets = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "tests" in rel.parts or path.name in HOST_ONLY or rel.as_posix() in SHIMS:
                continue
            targets.append(rel.as_posix())
    return targets + list(VM_FILES)


def command(targets: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    site = site_packages()
    if not (site / "stdlib" / "VERSIONS").is_file():
        raise SystemExit("micropython-stdlib-stubs missing: no %s" % (site / "stdlib" / "VERSIONS"))
    stubs, stub_modules = prepare_stubs(site)
    config = write_config(stub_modules)
    cmd = [
        sys.executable, "-m", "mypy",
        "--config-file", str(config),
        "--custom-typeshed-dir", str(site),
        "--python-version", PYTHON_VERSION,
        "--cache-dir", str(WORK / "cache"),
        *targets,
    ]  # fmt: skip
    env = dict(os.environ, MYPYPATH=str(stubs))
    return cmd, env


def main(argv: Sequence[str] | None = None) -> int:
    targets = list(sys.argv[1:] if argv is None else argv) or default_targets()
    cmd, env = command(targets)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stdout.write(result.stdout.replace(str(WORK) + os.sep, ""))
    sys.stderr.write(result.stderr)
    if result.returncode == 0:
        print("MicroPython stubs: %d files clean" % len(targets))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
