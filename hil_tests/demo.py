"""`make demo`: Mosquitto + the simulated `demo` site + the agent + `fieldlink monitor`, live.

    python -m hil_tests.demo [--seconds N] [--no-monitor] [--instant]

1. Mosquitto on a free loopback port (hil_tests/broker.py); without it, how to install it, exit 1;
2. `fieldlink sim simulator/scenarios/demo.toml` with real line timing (2400 baud meters take seconds
   per cycle, as in the field), its ports file in .demo/;
3. `fieldlink sim-config` writes .demo/agent.toml (outbox .demo/outbox.sqlite, a fresh one per run);
4. `fieldlink run .demo/agent.toml`;
5. `fieldlink monitor` in the foreground: the live table on a terminal, one line per reading otherwise.

Ctrl-C (SIGINT) or SIGTERM stops everything it started, by PID, newest first (monitor, agent,
simulator, broker), then prints where the logs are. `--seconds N` stops by itself after N seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from typing import Any

from hil_tests.broker import BrokerError, Mosquitto, find_mosquitto
from hil_tests.link import PYTHON, ROOT, Process, SimSite, sim_agent_config, start_agent

DEMO_DIR = os.path.join(ROOT, ".demo")
SCENARIO = os.path.join(ROOT, "simulator", "scenarios", "demo.toml")
INSTALL = """\
make demo needs Mosquitto, the MQTT broker, and it is not installed.
Install it, then run `make demo` again:

    Debian/Ubuntu:  sudo apt-get install mosquitto
    Fedora:         sudo dnf install mosquitto
    macOS:          brew install mosquitto

(`make demo` run as root installs it by itself via `make system-deps`.)"""


class Stop(Exception):
    """SIGTERM: leave the main loop and clean up, like Ctrl-C."""


def show(path: str) -> str:
    """A path as the user best reads it: relative to the current folder when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def say(text: str) -> None:
    print("demo: " + text, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hil_tests.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="stop everything after N seconds")
    parser.add_argument("--no-monitor", action="store_true", help="do not run `fieldlink monitor`")
    parser.add_argument("--instant", action="store_true", help="simulator without line timing (faster)")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, s (default 2)")
    parser.add_argument("--dir", default=DEMO_DIR, help="config, outbox and logs (default .demo/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if find_mosquitto() is None:
        print(INSTALL, file=sys.stderr)
        return 1
    work = os.path.abspath(args.dir)
    os.makedirs(work, exist_ok=True)
    for name in os.listdir(work):  # a fresh outbox and fresh logs each run
        if name.startswith(("outbox.sqlite", "agent.log", "sim.log", "mosquitto.log")):
            os.unlink(os.path.join(work, name))

    def on_term(signum: int, frame: Any) -> None:
        raise Stop()

    signal.signal(signal.SIGTERM, on_term)
    broker: Mosquitto | None = None
    site: SimSite | None = None
    agent: Process | None = None
    monitor: Process | None = None
    status = 0
    try:
        broker = Mosquitto(persistence=False)
        broker.start()
        say("mosquitto pid %d on %s" % (broker.proc.pid, broker.url))  # type: ignore[union-attr]
        site = SimSite(SCENARIO, work, instant=args.instant)  # assigned first: Ctrl-C while it starts
        site.start()
        say("simulator pid %s: site %s, %d devices on %s; control %s" % (
            site.pid, site.ports.get("site"), len(site.devices()),
            ", ".join("%s %s" % (b["name"], b.get("path") or b.get("tcp")) for b in site.ports["buses"]),
            site.control))
        config = sim_agent_config(site.ports_file, os.path.join(work, "agent.toml"), broker.url,
                                  os.path.join(work, "outbox.sqlite"), interval=args.interval,
                                  timeout_ms=500,
                                  settings={"gateway": {"health_interval": 5}, "batch": {"max_age": 1.0}})
        agent = start_agent(config, os.path.join(work, "agent.log"))
        say("agent pid %d: fieldlink run %s" % (agent.pid, show(config)))
        deadline = time.monotonic() + args.seconds if args.seconds is not None else None
        if not args.no_monitor:
            argv_monitor = [PYTHON, "-m", "agent.cli", "monitor", "--broker", broker.url]
            if args.seconds is not None:
                argv_monitor += ["--timeout", "%g" % args.seconds]
            # same session and process group: Ctrl-C reaches it directly; it writes to our terminal
            monitor = Process("monitor", argv_monitor, stdout=sys.stdout, new_session=False)
            say("monitor pid %d: fieldlink monitor --broker %s   (Ctrl-C stops the demo)"
                % (monitor.pid, broker.url))
        else:
            say("running without the monitor; see it with: .venv/bin/fieldlink monitor --broker %s   "
                "(Ctrl-C stops the demo)" % broker.url)
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
            if not agent.alive:
                say("the agent exited with %s; its log:\n%s" % (agent.returncode, agent.log()[-2000:]))
                status = 1
                break
            if not site.proc or not site.proc.alive:
                say("the simulator exited; its log:\n%s" % site.log())
                status = 1
                break
            if monitor is not None and not monitor.alive:
                break
    except (KeyboardInterrupt, Stop):
        pass
    except (BrokerError, RuntimeError, OSError) as exc:
        say("could not start: %s" % exc)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("", flush=True)
        if monitor is not None:
            monitor.interrupt(timeout=5)
            say("monitor pid %d stopped" % monitor.pid)
        if agent is not None:
            rc = agent.stop(timeout=20)
            say("agent pid %d stopped (exit %s)" % (agent.pid, rc))
        if site is not None:
            pid = site.pid
            site.stop()
            say("simulator pid %s stopped" % pid)
        if broker is not None:
            pid = broker.proc.pid if broker.proc else None
            broker.stop()
            if os.path.exists(broker.log):
                shutil.copy(broker.log, os.path.join(work, "mosquitto.log"))
            broker.close()
            say("mosquitto pid %s stopped" % pid)
        rel = show(work)
        say("logs: %s/agent.log, %s/sim.log, %s/mosquitto.log; config %s/agent.toml"
            % (rel, rel, rel, rel))
    return status


if __name__ == "__main__":
    sys.exit(main())
