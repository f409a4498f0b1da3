"""Files only the agent may read: the outbox, the command-id store, keys (0600 in a 0700 folder).

    private_dir("/var/lib/fieldlink")          # created 0700 if missing; PrivateFileError if others
                                               # may write into it (or read it, when strict)
    private_file("/var/lib/fieldlink/x.db")    # created 0600 if missing, else tightened to 0600
    check_secret_file("/etc/fieldlink/gw.key") # PrivateFileError when group or others can read it
    write_state(path, {"a": 1})                # a state file replaced whole: a 0600 temp file, renamed
    read_state(path)                           # its dict, or None (missing, unreadable, not a dict)

A folder we create ourselves is made 0700; an existing folder that is not ours (for instance /tmp, or
a folder a technician made) is left as it is unless others may write into it, which would let them
swap our files. Every message names the path and what to run to fix it.
"""

from __future__ import annotations

import json
import os
import stat
import time

__all__ = ["PrivateFileError", "check_secret_file", "private_dir", "private_file", "read_state",
           "write_state"]


class PrivateFileError(OSError):
    """A file or folder whose permissions would expose or endanger what it holds."""


def private_dir(path: str, strict: bool = False) -> str:
    """Make sure `path` exists as a folder only we control; return it.

    A missing folder (and its missing parents' last level) is created 0700. A shared sticky folder (as
    /tmp) is accepted as it is. Another existing folder that group or others may write to is refused;
    with `strict`, one that group or others may read is tightened to 0700 when we own it.
    """
    path = path or "."
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # makedirs honours the umask; be exact
        return path
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_ISVTX:
        return path  # a shared sticky folder such as /tmp: others cannot replace our files; leave it
    if mode & 0o022:
        raise PrivateFileError("folder %s may be written by other users (mode %04o): run chmod 700 %s"
                               % (path, mode, path))
    if strict and mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, 0o700)
    return path


def private_file(path: str) -> str:
    """Create `path` empty with mode 0600 if it does not exist; tighten an existing one of ours to 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, 0o600)
        return path
    os.close(fd)
    return path


def check_secret_file(path: str, what: str = "key file") -> None:
    """PrivateFileError when a secret `path` may be read by group or others (or is not a file)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PrivateFileError("%s %s cannot be read: %s" % (what, path, exc.strerror)) from None
    if not stat.S_ISREG(st.st_mode):
        raise PrivateFileError("%s %s is not a file" % (what, path))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise PrivateFileError("%s %s may be read by other users (mode %04o): run chmod 600 %s"
                               % (what, path, mode, path))


def write_state(path: str, state: dict) -> None:
    """Replace the JSON state file `path` with `state` plus the writer's `pid` and the time it was
    `updated`: written whole to a 0600 temp file beside it, then renamed over it, so a reader never
    sees half a file. OSError when the disk refuses (the temp file is removed)."""
    data = dict(state, pid=os.getpid(), updated=round(time.time(), 1))
    # dumps, then one write: json.dump streams through the pure-Python encoder (a write per token,
    # thousands per file); dumps uses the C one
    text = json.dumps(data, sort_keys=True, default=str).encode("utf-8")
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        # one open, made 0600 (a temp file left by a crash too), never through a link planted there
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(text)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_state(path: str) -> dict | None:
    """The state a `write_state` left in `path`, or None when there is none or it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
