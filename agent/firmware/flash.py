"""`fieldlink firmware flash --port P --config F` (`make flash`): put the bundle and a site's config on
a board.

Steps (printed before they run; `--dry-run` prints them only): compile the TOML with
`fieldlink firmware config` (same validation as the agent; Wi-Fi settings after `--`) into a private
temporary file removed in `finally`, then ONE mpremote session (steps chained with `+`): make the folders
that are missing, copy build/firmware/ (protocols/*.mpy, firmware_py/*.mpy, boot.py, main.py) and
config.json with a progress line per file printed by the board, reset. A board that does not answer gets
one clear message; a flashed board can be flashed again.
No umqtt is copied: the firmware has its own MQTT client (docs/flashing.md says why).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLE = os.path.join(ROOT, "build", "firmware")


def find_mpremote() -> list[str] | None:
    exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
    if os.path.exists(exe):
        return [exe]
    found = shutil.which("mpremote")
    return [found] if found else None


def plan(port: str, config_json: str, bundle: str = BUNDLE,
         mpremote: list[str] | None = None) -> list[list[str]]:
    """One mpremote command line for the whole bundle: its steps chained with `+` in one session
    (one connection, one soft reset), each file copied with `fs cp` and announced by an `echo` line
    (progress per file); folders made with `fs mkdir` and tolerated when they exist (a re-flash)."""
    mp = [*(mpremote or ["mpremote"]), "connect", port]
    dirs = set()
    copies = []
    for dirpath, _dirs, files in os.walk(bundle):
        rel = os.path.relpath(dirpath, bundle)
        if rel != ".":
            dirs.add(rel.replace(os.sep, "/"))
        for name in sorted(files):
            src = os.path.join(dirpath, name)
            dest = name if rel == "." else "%s/%s" % (rel.replace(os.sep, "/"), name)
            copies.append((src, dest))
    copies.append((config_json, "config.json"))
    steps: list[list[str]] = []
    # `exec` makes a folder only when it is missing: `fs mkdir` fails on a flashed board (EEXIST)
    for d in sorted(dirs):
        parent, _, leaf = d.rpartition("/")
        steps.append(["exec", "import os; %r in os.listdir(%r) or os.mkdir(%r)" % (leaf, "/" + parent, d)])
    for i, (src, dest) in enumerate(copies):
        steps.append(["exec", "print('flash: [%d/%d] %s')" % (i + 1, len(copies), dest)])
        steps.append(["fs", "cp", src, ":" + dest])
    steps.append(["reset"])
    cmd = list(mp)
    for i, step in enumerate(steps):
        if i:
            cmd.append("+")
        cmd += step
    return [cmd]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", default="", help="serial port of the board, e.g. /dev/ttyUSB0")
    parser.add_argument("--config", default="", help="the site's agent TOML")
    parser.add_argument("--board", default="esp32", choices=("esp32", "rp2040"))
    parser.add_argument("--dry-run", action="store_true", help="print the plan, touch nothing")
    parser.add_argument("config_options", nargs=argparse.REMAINDER,
                        help="after --: passed to `fieldlink firmware config` (--wifi-ssid ...)")


def run(args: argparse.Namespace) -> int:
    extra = [a for a in args.config_options if a != "--"]
    return flash(args, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fieldlink firmware flash", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args, extra = parser.parse_known_args(argv)  # extra: passed to firmware config (--wifi-ssid ...)
    return flash(args, extra + [a for a in args.config_options if a != "--"])


def flash(args: argparse.Namespace, extra: list[str]) -> int:
    """Compile the config, then run (or, with --dry-run, print) the mpremote plan."""
    if not args.config:
        print("flash: CONFIG is missing: make flash PORT=/dev/ttyUSB0 CONFIG=site.toml", file=sys.stderr)
        return 2
    if not os.path.isdir(BUNDLE):
        print("flash: no bundle in %s; run `make firmware` first" % BUNDLE, file=sys.stderr)
        return 2
    mpremote = find_mpremote()
    if not args.dry_run:
        if mpremote is None:
            print("flash: mpremote is not installed (pip install mpremote==1.22.0); "
                  "use --dry-run to see the plan", file=sys.stderr)
            return 2
        if not args.port:
            print("flash: PORT is missing: make flash PORT=/dev/ttyUSB0 CONFIG=site.toml", file=sys.stderr)
            return 2
        if not args.port.startswith(("rfc2217://", "socket://")) and not os.path.exists(args.port):
            print("flash: port %s does not exist (board plugged in? try `mpremote devs`)" % args.port,
                  file=sys.stderr)
            return 2
    # the compiled config holds the Wi-Fi password and the broker's credentials: a private folder
    # (0700, a 0600 file) removed in `finally`, whatever happens
    folder = tempfile.mkdtemp(prefix="fieldlink-flash-")
    out = os.path.join(folder, "config.json")
    try:
        return _flash(args, extra, out, mpremote)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _flash(args: argparse.Namespace, extra: list[str], out: str, mpremote: list[str] | None) -> int:
    from agent.cli import main as fieldlink

    rc = fieldlink(["firmware", "config", args.config, "--board", args.board, "-o", out, *extra])
    if rc != 0:
        return rc
    os.chmod(out, 0o600)
    cmds = plan(args.port or "PORT", out, BUNDLE, mpremote)
    files = sum(1 for c in cmds for i, a in enumerate(c) if a == "cp" and c[i - 1] == "fs")
    for cmd in cmds:
        print("$ " + " ".join(cmd).replace(out, "<compiled config>"))
        if not args.dry_run:
            proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                err = proc.stderr.strip()
                if "no device found" in err or "failed to access" in err or "could not" in err.lower():
                    print("flash: no board answers on %s (%s): is it plugged in, is another program (a "
                          "serial monitor, Thonny) holding the port? `mpremote devs` lists the boards"
                          % (args.port, err), file=sys.stderr)
                else:
                    print("flash: mpremote failed (exit %d): %s; the board keeps what was copied so far; run "
                          "it again" % (proc.returncode, err), file=sys.stderr)
                return 1
    print("flash: %s %d files (config.json among them) to %s%s" % (
        "would copy" if args.dry_run else "copied", files, args.port or "PORT",
        " (dry run)" if args.dry_run else "; board reset"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
