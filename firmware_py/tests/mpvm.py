"""Run Python under genuine MicroPython (WebAssembly, Node.js) through hil_tests/mpvm/firmware_host.mjs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = os.path.join(ROOT, "hil_tests", "mpvm", "firmware_host.mjs")
WASM = os.path.join(ROOT, "hil_tests", "mpvm", "node_modules", "@micropython",
                    "micropython-webassembly-pyscript", "micropython.mjs")


def available() -> str | None:
    """None when the VM can run here, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not os.path.exists(WASM):
        return "the MicroPython VM is not installed (make setup: npm install in hil_tests/mpvm)"
    return None


class Result:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.lines = [ln[3:] for ln in proc.stdout.splitlines() if ln.startswith("@@ ")]
        host = [ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("@@HOST ")]
        self.host = json.loads(host[-1]) if host else {}

    def values(self) -> list:
        return [json.loads(ln) for ln in self.lines]


def run(code: str, files: dict | None = None, packages=("protocols", "firmware_py"), root: str = ROOT,
        timeout: float = 180, **extra: object) -> Result:
    spec = {"root": root, "packages": list(packages), "files": files or {}, "code": code,
            "timeout_s": int(timeout)}
    spec.update(extra)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    try:
        proc = subprocess.run(["node", "--expose-gc", HOST, f.name], capture_output=True, text=True,
                              timeout=timeout + 30)
    finally:
        os.unlink(f.name)
    return Result(proc)
