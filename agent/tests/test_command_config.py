"""`[commands]` in the config: the key file (0600, 64 hex characters, never shown), the policy warnings,
the id store beside the outbox; and the agent refusing to start with a key file others can read."""

from __future__ import annotations

import os
import subprocess
import sys

from agent.config import load_config, validate
from agent.tests.conftest import basic_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEY = "8f" * 32
LAMP = """
[[devices]]
id = "lamp-1"
bus = "line1"
profile = "generic-lamp"
address = 1
interval = 5
"""


def key_file(tmp_path, text: str, mode: int = 0o600) -> str:
    path = os.path.join(str(tmp_path), "gw.key")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def with_commands(tmp_path, table: str) -> str:
    return basic_config(str(tmp_path), "/dev/ttyFAKE0", LAMP + "\n[commands]\n" + table)


def issues(path: str) -> tuple[list[str], list[str]]:
    _config, errors, warnings = validate(path)
    return [str(i) for i in errors], [str(i) for i in warnings]


def test_keys_are_read_and_the_id_store_sits_beside_the_outbox(tmp_path, profile_dir):
    path = with_commands(tmp_path, 'key_file = "%s"\nqueue = 8\n' % key_file(
        tmp_path, "# gw key\n%s\n\n%s\n" % (KEY, "ab" * 32)))
    config = load_config(path)
    c = config.commands
    assert c.keys == [bytes.fromhex(KEY), bytes.fromhex("ab" * 32)]
    assert c.queue == 8 and c.signed == "switching"
    assert c.id_store == os.path.join(str(tmp_path), "command-ids.sqlite")
    assert KEY not in repr(config)


def test_a_key_file_others_can_read_is_an_error_that_never_shows_the_key(tmp_path, profile_dir):
    lax = key_file(tmp_path, KEY + "\n", 0o644)
    path = with_commands(tmp_path, 'key_file = "%s"\n' % lax)
    errors, _ = issues(path)
    assert any("commands.key_file" in e and "may be read by other users (mode 0644): run chmod 600" in e
               for e in errors), errors
    done = subprocess.run([sys.executable, "-m", "agent.cli", "run", path], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "chmod 600 %s" % lax in done.stderr
    assert KEY not in done.stderr + done.stdout


def test_a_bad_key_line_names_the_line_not_the_key(tmp_path, profile_dir):
    path = with_commands(tmp_path, 'key_file = "%s"\n' % key_file(tmp_path, "#\n%sZZ\n" % KEY[:62]))
    errors, _ = issues(path)
    want = "line 2: expected 64 hex characters (32 random bytes), got 64 characters (the key is not shown)"
    assert any(want in e for e in errors), errors
    assert not any(KEY[:62] in e for e in errors)


def test_warnings_no_key_and_signed_none(tmp_path, profile_dir):
    _, warnings = issues(with_commands(tmp_path, 'signed = "switching"\n'))
    want = "no key_file: switching commands of lamp-1 (on) will be refused"
    assert any(want in w for w in warnings), warnings
    _, warnings = issues(with_commands(tmp_path, 'signed = "none"\n'))
    assert any('signed = "none": every command runs unsigned' in w for w in warnings), warnings
    errors, _ = issues(with_commands(tmp_path, 'signed = "some"\nmax_bytes = 10\n'))
    assert any('commands.signed: expected one of "switching", "all", "none", got "some"' in e for e in errors)
    assert any("commands.max_bytes: expected an integer 256..1048576, got 10" in e for e in errors)
