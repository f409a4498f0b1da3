"""One agent per outbox: an exclusive lock on `<outbox>.lock`, holding the owner's pid.

    lock = OutboxLock("/var/lib/fieldlink/outbox.sqlite")
    lock.acquire()          # InUseError("outbox /var/lib/fieldlink/outbox.sqlite is in use by pid 812")
    ...
    lock.release()          # also released by the kernel when the process ends, however it ends

The lock is flock(2) on a separate file (SQLite's own fcntl locks on the database are independent of
it). The file stays after the lock is released: deleting a lock file races with the next owner. The
holder writes its pid into the file so that a refused second agent can name the first one.

On a read-only file system the lock file cannot be created: an existing one is locked read-only
(its pid is then stale), else the outbox's folder itself is locked, and a refusal cannot name a pid.
"""

from __future__ import annotations

import errno
import fcntl
import os

__all__ = ["InUseError", "OutboxLock"]


class InUseError(OSError):
    """Another process holds the outbox."""


class OutboxLock:
    """An exclusive, non-blocking lock that names the outbox it guards."""

    def __init__(self, outbox_path: str) -> None:
        self.outbox_path = outbox_path
        self.path = outbox_path + ".lock"
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock; InUseError naming the holder's pid when another process has it."""
        if self._fd is not None:
            return
        fd, writable = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = "pid %d" % holder if holder else "another process"
                raise InUseError(exc.errno, "outbox %s is in use by %s" % (self.outbox_path, who)) from None
            raise
        if writable:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, b"%d\n" % os.getpid(), 0)
            except OSError:
                pass  # a full disk: the lock holds all the same, only the pid in it is missing
        self._fd = fd
        st = os.fstat(fd)
        self._ident = (st.st_dev, st.st_ino)

    def _open(self) -> tuple[int, bool]:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600), True
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.ENOSPC, errno.EDQUOT):
                raise
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC), False
        except FileNotFoundError:
            folder = os.path.dirname(os.path.abspath(self.outbox_path))
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), False

    def still_ours(self) -> bool:
        """False when the lock file was deleted or replaced since we locked it (then `renew`)."""
        if self._ident is None:
            return False
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._ident

    def renew(self) -> None:
        """Lock the file now at the lock path (after ours was deleted with the outbox's folder)."""
        self.release()
        self.acquire()

    def release(self) -> None:
        fd, self._fd, self._ident = self._fd, None, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0)
    except OSError:
        return 0
    try:
        return int(text.strip() or b"0")
    except ValueError:
        return 0
