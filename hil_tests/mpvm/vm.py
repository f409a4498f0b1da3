"""Run Python code under genuine MicroPython (WebAssembly port, Node.js) from CPython tests.

    result = run_micropython(ROOT / "protocols/tests/mp/check_cbor.py", {"protocols": ROOT / "protocols"})
    assert result.returncode == 0, result.stderr

A `Path` is a script (run from its place in the mounts when it lies inside one); a `str` is source code
(it may `await` at top level). Mount keys are VM paths; a relative key lands under /app, the VM's
working directory, so {"protocols": ROOT / "protocols"} makes `import protocols` work as it does from
the repository root. `result.host` is the host's report: DE pin and watchdog bookkeeping, bytes moved.
`python -m hil_tests.mpvm.vm [MODULE...]` prints the VM report (version, live heap after imports).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNNER = HERE / "runner.mjs"
PACKAGE = HERE / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
TIMEOUT_STATUS = 124

__all__ = [
    "ROOT",
    "VmResult",
    "micropython_available",
    "project_mounts",
    "run_micropython",
    "vm_report",
]


def node_executable() -> str | None:
    """The Node.js binary on PATH, or None."""
    return shutil.which("node")


def micropython_available() -> bool:
    """True when Node.js and the npm MicroPython package (``make setup``) are both present."""
    return node_executable() is not None and PACKAGE.is_file() and RUNNER.is_file()


def project_mounts(*folders: str) -> dict[str, Path]:
    """Mounts for top-level project folders, e.g. project_mounts("protocols", "firmware_py")."""
    return {name: ROOT / name for name in folders}


class VmResult(subprocess.CompletedProcess[str]):
    """A finished VM run: returncode, stdout, stderr, and `host`, the host's report (runner.mjs
    --report): {"pins": {"%N": [times set low, times set high]}, "wdt_timeout", "wdt_feeds",
    "wdt_max_gap_ms", "fd_tx", "fd_rx", "tcp_connects", "tcp_tx", "tcp_rx"}; {} if the run wrote none."""

    host: dict[str, object]


def _result(cmd: list[str], returncode: int, stdout: str, stderr: str, report: str) -> VmResult:
    result = VmResult(cmd, returncode, stdout, stderr)
    try:
        with open(report) as f:
            result.host = json.load(f)
    except (OSError, ValueError):
        result.host = {}
    return result


def run_micropython(
    script_or_code: Path | str,
    mounts: Mapping[str, Path] | None = None,
    args: Sequence[str] = (),
    timeout: float = 60.0,
    *,
    paths: Sequence[str] = (),
    heap: int | None = None,
    call: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    pins_low: Sequence[int] = (),
) -> VmResult:
    """Run a script (Path) or code (str) under MicroPython; returns stdout, stderr, returncode, host.

    returncode is 0, the script's SystemExit code, 1 for an uncaught exception (MicroPython's
    traceback is in stderr), 2 for a runner usage error, 124 when `timeout` seconds ran out.
    `paths` are VM directories put first on sys.path; `call` ("module:function") is called after
    the script, and awaited when it returns a coroutine (a firmware main loop). `cwd` is the VM's
    working directory (default /app); `pins_low` are the input pins that read 0.
    """
    node = node_executable()
    if node is None or not PACKAGE.is_file():
        raise RuntimeError("MicroPython VM missing: needs node and `make setup` (npm install in %s)" % HERE)
    fd, report = tempfile.mkstemp(prefix="mpvm-report-", suffix=".json")
    os.close(fd)
    cmd = [node, str(RUNNER), "--timeout", str(timeout), "--report", report]
    for vm_path, host_path in (mounts or {}).items():
        cmd += ["--mount", "%s=%s" % (vm_path, Path(host_path).resolve())]
    for vm_path in paths:
        cmd += ["--path", vm_path]
    if heap is not None:
        cmd += ["--heap", str(heap)]
    if call is not None:
        cmd += ["--call", call]
    if cwd is not None:
        cmd += ["--cwd", cwd]
    for pin in pins_low:
        cmd += ["--pin-low", str(pin)]
    if isinstance(script_or_code, Path):
        cmd += [str(script_or_code.resolve()), "--", *args]
    else:
        cmd += ["-c", script_or_code, "--", *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout + 15, env=None if env is None else dict(env)
        )
        return _result(cmd, proc.returncode, proc.stdout, proc.stderr, report)
    except subprocess.TimeoutExpired as e:  # the runner's own timer failed: subprocess.run killed it
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return _result(cmd, TIMEOUT_STATUS, out, err + "\nkilled after %s s" % timeout, report)
    finally:
        os.unlink(report)


_REPORT = """
import gc, json, sys
for name in sys.argv[1:]:
    __import__(name)
gc.collect()
impl = sys.implementation
print(json.dumps({
    "version": "%d.%d.%d" % impl.version[:3],
    "banner": sys.version,
    "machine": getattr(impl, "_machine", ""),
    "mpy": getattr(impl, "_mpy", 0),
    "platform": sys.platform,
    "imported": sys.argv[1:],
    "mem_alloc": gc.mem_alloc(),
    "mem_free": gc.mem_free(),
}))
"""


def vm_report(modules: Sequence[str] = (), mounts: Mapping[str, Path] | None = None) -> dict[str, object]:
    """MicroPython version (sys.implementation) and live heap bytes (gc.mem_alloc() after gc.collect())
    once `modules` are imported. The heap of this build grows on demand: live bytes are the measure."""
    if mounts is None:
        mounts = project_mounts("protocols", "firmware_py")
    result = run_micropython(_REPORT, mounts, args=list(modules), timeout=60)
    if result.returncode != 0:
        raise RuntimeError("MicroPython report failed:\n" + result.stderr)
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m hil_tests.mpvm.vm [MODULE...]`: print the VM report as JSON."""
    if not micropython_available():
        print("MicroPython VM not available (node + make setup)", file=sys.stderr)
        return 1
    print(json.dumps(vm_report(list(sys.argv[1:] if argv is None else argv)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
