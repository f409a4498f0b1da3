"""The `fieldlink` command line: one small module per subcommand, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from agent import __version__

# name -> (module, one-line help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agent.commands.run", "run the gateway agent in the foreground"),
    "check-config": ("agent.commands.check_config", "validate a gateway config file"),
    "plan": ("agent.commands.plan", "print the poll plan of a config without touching a bus"),
    "read": ("agent.commands.read", "read points from one device on a serial port"),
    "scan": ("agent.commands.scan", "find the device addresses on a bus"),
    "monitor": ("agent.commands.monitor", "show decoded readings from a broker live"),
    "status": ("agent.commands.status", "one screen for one gateway: broker, outbox, buses, devices"),
    "modbus": ("agent.commands.modbus", "read or write Modbus registers and coils by number (like mbpoll)"),
    "send": ("agent.commands.send", "send a command (signed with a key file) to a gateway and print its ack"),
    "schedule": ("agent.commands.schedule", "print the lighting schedules' steps of one day in local time"),
    "sim": ("simulator.cli", "run a simulated site (virtual devices on pseudo-terminals)"),
    "sim-config": ("agent.commands.sim_config", "write an agent config for a running simulator"),
    "firmware": ("agent.commands.firmware", "firmware host tools: build, flash, config"),
    "firmware-config": ("agent.firmware.config", "compile a config to firmware JSON (= firmware config)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; subcommand modules are imported lazily (only `only` when given)."""
    parser = argparse.ArgumentParser(
        prog="fieldlink",
        description="FieldLink edge gateway: field devices on RS-485/Modbus to SenML-CBOR over MQTT.",
    )
    parser.add_argument("--version", action="version", version="fieldlink %s" % __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fieldlink` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    only = name if name in COMMANDS else None
    try:
        parser = build_parser(only)
    except ImportError as exc:
        print("fieldlink %s: not available: %s" % (name, exc), file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return closed_pipe()
    except SystemExit as exc:
        if isinstance(exc.code, str):  # raise SystemExit("fieldlink: ...") in a command: wrong input
            print(exc.code, file=sys.stderr)
            return 2
        raise


def closed_pipe() -> int:
    """The reader of our output went away (`fieldlink plan | head`): no traceback, nothing more to say.
    Later writes (and the interpreter's flush at exit) go to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
