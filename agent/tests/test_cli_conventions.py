"""docs/cli.md's table, for every subcommand, as real subprocesses: 0 success, 1 the command found a
problem, 2 the input is wrong, 3 (status) no agent running, 130 interrupted; no traceback anywhere,
not even on a closed pipe; plain lines (no progress bar) when the output is not a terminal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from agent.cli import COMMANDS
from agent.tests.conftest import basic_config, write_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fieldlink(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released: connect() is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_refuses_an_unknown_option_with_2(name: str) -> None:
    argv = [name, "--no-such-option"]
    if name == "firmware":
        argv = ["firmware", "build", "--no-such-option"]
    done = fieldlink(*argv)
    assert done.returncode == 2, (name, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "error:" in done.stderr


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_has_help_with_0(name: str) -> None:
    done = fieldlink(name, "--help")
    assert done.returncode == 0 and "usage: fieldlink" in done.stdout, done.stderr


def test_no_command_and_an_unknown_command() -> None:
    assert fieldlink().returncode == 0
    done = fieldlink("no-such-command")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_wrong_input_is_2(tmp_path, profile_dir) -> None:
    bad = write_config(str(tmp_path), 'format = 1\n[gateway]\nsite = "a\n', name="broken.toml")
    missing = str(tmp_path / "missing.toml")
    for argv in (["check-config", bad], ["plan", bad], ["run", bad], ["run", "--once", bad],
                 ["status", "--config", bad], ["status", "--config", missing],
                 ["firmware", "config", bad], ["firmware-config", bad],
                 ["sim", str(tmp_path / "no-such-scenario.toml")], ["sim-config", missing],
                 ["read", "--port", "/dev/null", "--protocol", "modbus", "--address", "1"],  # no --profile
                 ["read", "--port", "/dev/null", "--protocol", "dlt645", "--address", "12x"],
                 ["scan", "--port", "tcp://127.0.0.1:1", "--protocol", "modbus", "--auto"],
                 ["modbus", "/dev/null", "--unit", "300", "read", "holding", "0", "1"],
                 ["modbus", "/dev/null", "--unit", "1", "read", "holding", "0", "1", "2"],
                 ["modbus", "/dev/null", "--unit", "1", "write", "input", "0", "1"],
                 ["send", "--broker", "127.0.0.1:1", "--site", "s", "--gateway", "g", "--device", "d",
                  "--point", "p"]):
        done = fieldlink(*argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, argv


def test_a_problem_found_is_1(tmp_path) -> None:
    port = closed_port()
    for argv in (["read", "--port", "/dev/nonexistent-tty", "--protocol", "dlt645", "--address", "1"],
                 ["scan", "--port", "/dev/nonexistent-tty", "--protocol", "modbus", "--sweep", "1-2"],
                 ["modbus", "/dev/nonexistent-tty", "--unit", "1", "read", "holding", "0", "1"],
                 ["monitor", "--broker", "127.0.0.1:%d" % port, "--timeout", "1"],
                 ["status", "--broker", "127.0.0.1:%d" % port, "--timeout", "1"],
                 ["send", "--broker", "127.0.0.1:%d" % port, "--site", "s", "--gateway", "g", "--device", "d",
                  "--read", "p", "--timeout", "1"]):
        done = fieldlink(*argv)
        assert done.returncode == 1, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, argv


def test_check_config_ok_is_0_and_status_without_agent_is_3(tmp_path, profile_dir) -> None:
    path = basic_config(str(tmp_path), "/dev/ttyFAKE0", "")
    assert fieldlink("check-config", path).returncode == 0
    done = fieldlink("status", "--config", path)
    assert done.returncode == 3 and "no agent running" in done.stderr


def test_a_closed_pipe_ends_quietly() -> None:
    """`fieldlink plan | head -1`: the reader goes away; no BrokenPipe traceback."""
    config = os.path.join(ROOT, "agent", "examples", "site.toml")
    proc = subprocess.Popen("%s -m agent.cli plan %s | head -1" % (sys.executable, config), shell=True,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert out.count("\n") == 1 and "Traceback" not in err and "BrokenPipe" not in err, err
    # the same when the pipe closes before the first write
    done = subprocess.run([sys.executable, "-c", "import subprocess, sys; "
                           "p = subprocess.Popen([sys.executable, '-m', 'agent.cli', 'plan', %r], "
                           "stdout=subprocess.PIPE, stderr=subprocess.PIPE); "
                           "p.stdout.close(); err = p.stderr.read(); p.wait(); "
                           "sys.stdout.write('%%d %%s' %% (p.returncode, err.decode()))" % config],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    code, _, err = done.stdout.partition(" ")
    assert code == "0" and "Traceback" not in err, done.stdout
