"""agent/private.py: secret files 0600 in 0700 folders, and refusals that say how to fix them."""

from __future__ import annotations

import os
import stat

import pytest

from agent.private import (
    PrivateFileError,
    check_secret_file,
    private_dir,
    private_file,
    read_state,
    write_state,
)


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_folder_and_file_are_private(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        folder = private_dir(str(tmp_path / "a" / "b"))
        target = private_file(os.path.join(folder, "outbox.sqlite"))
    finally:
        os.umask(old)
    assert mode(folder) == 0o700
    assert mode(target) == 0o600


def test_existing_file_is_tightened(tmp_path) -> None:
    target = tmp_path / "ids.sqlite"
    target.write_bytes(b"")
    target.chmod(0o644)
    private_file(str(target))
    assert mode(str(target)) == 0o600


def test_world_writable_folder_is_refused_but_sticky_tmp_is_not(tmp_path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(PrivateFileError, match=r"chmod 700 .*open"):
        private_dir(str(open_dir))
    open_dir.chmod(0o1777)
    assert private_dir(str(open_dir)) == str(open_dir)
    assert private_dir(str(open_dir), strict=True) == str(open_dir)
    assert mode(str(open_dir)) == 0o1777  # a shared sticky folder such as /tmp is never tightened


def test_strict_tightens_a_readable_folder_of_ours(tmp_path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    folder.chmod(0o755)
    private_dir(str(folder), strict=True)
    assert mode(str(folder)) == 0o700


def test_secret_readable_by_others_is_refused(tmp_path) -> None:
    key = tmp_path / "gw.key"
    key.write_text("00" * 32)
    key.chmod(0o644)
    with pytest.raises(PrivateFileError, match=r"may be read by other users \(mode 0644\): run chmod 600"):
        check_secret_file(str(key))
    key.chmod(0o600)
    check_secret_file(str(key))
    with pytest.raises(PrivateFileError, match="cannot be read"):
        check_secret_file(str(tmp_path / "missing.key"))


def test_state_file_is_replaced_whole_and_private(tmp_path) -> None:
    path = str(tmp_path / "outbox.sqlite.status.json")
    assert read_state(path) is None  # none yet
    write_state(path, {"a": 1})
    write_state(path, {"b": [1, 2]})
    state = read_state(path)
    assert state is not None and state["b"] == [1, 2] and "a" not in state
    assert state["pid"] == os.getpid() and state["updated"] > 0
    assert mode(path) == 0o600
    assert os.listdir(tmp_path) == ["outbox.sqlite.status.json"]  # no temp file left
    with open(path, "w") as f:
        f.write("[1, 2")  # torn by someone else: not a state
    assert read_state(path) is None


def test_state_file_over_a_leftover_temp_file_or_a_planted_link(tmp_path) -> None:
    path = str(tmp_path / "x.json")
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:  # left by a crash, readable by others
        f.write("x" * 5000)
    os.chmod(tmp, 0o644)
    write_state(path, {"a": 1})
    state = read_state(path)
    assert state is not None and state["a"] == 1 and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["x.json"]
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    os.symlink(str(target), tmp)  # a link where the temp file goes: refused, the target untouched
    with pytest.raises(OSError):
        write_state(path, {"b": 2})
    assert target.read_text() == "keep"
    assert read_state(path) == state


def test_state_file_the_disk_refuses_leaves_no_temp_file(tmp_path) -> None:
    path = tmp_path / "x.json"
    (path / "in-the-way").mkdir(parents=True)  # a folder where the file should be: the rename fails
    with pytest.raises(OSError):
        write_state(str(path), {"a": 1})
    assert os.listdir(tmp_path) == ["x.json"]
    assert read_state(str(path)) is None
