"""Schedules replaced by signed commands, kept across restarts in a small JSON file beside the outbox.

    {"format": 1, "schedules": {"main street": {"target": "main_street", "schedule": {...},
                                                "id": "c-9", "time": 1781958840}}}

`schedule` is the command's map (name, steps) and `target` the command's device (a group or a device),
so the file is checked again at every start against the config of the day. The file is written to a
temporary file, flushed to disk and renamed over the old one (a power cut leaves the old or the new
file, never half of one), 0600 in a 0700 folder (agent/private.py). At most MAX_SCHEDULES entries.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from agent.private import private_dir, private_file

__all__ = ["MAX_SCHEDULES", "ScheduleStore", "StoreError"]

log = logging.getLogger("fieldlink.lighting")

FORMAT = 1
MAX_SCHEDULES = 64


class StoreError(OSError):
    """The store cannot be read or written (names the file and why)."""


class ScheduleStore:
    """name -> {target, schedule, id, time}; `put` and `drop` are on disk when they return."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.entries: dict[str, dict[str, Any]] = {}
        self.problem = ""  # why the file on disk was not usable at load, for the log and health
        self._load()

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            self.problem = "%s cannot be read (%s); the config's schedules run" % (self.path, exc)
            log.error("event=schedule_store_unreadable %s", self.problem)
            return
        entries = data.get("schedules") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(entries, dict):
            self.problem = "%s is not a schedule store of format %d; the config's schedules run" % (
                self.path, FORMAT)
            log.error("event=schedule_store_unreadable %s", self.problem)
            return
        for name, entry in entries.items():
            if isinstance(entry, dict) and isinstance(entry.get("target"), str) and "schedule" in entry:
                self.entries[str(name)] = entry

    def put(self, name: str, target: str, schedule: dict, cmd_id: object, when: int) -> None:
        """Keep `schedule` (replacing an entry of that name); StoreError when it cannot be written or
        the store is full."""
        with self._lock:
            entries = dict(self.entries)
            if name not in entries and len(entries) >= MAX_SCHEDULES:
                raise StoreError("%s already keeps %d replaced schedules; restore one first" % (
                    self.path, MAX_SCHEDULES))
            entries[name] = {"target": target, "schedule": schedule, "id": cmd_id, "time": when}
            self._write(entries)
            self.entries = entries

    def drop(self, name: str) -> bool:
        """Forget the replacement of `name`; False when there was none."""
        with self._lock:
            if name not in self.entries:
                return False
            entries = dict(self.entries)
            del entries[name]
            self._write(entries)
            self.entries = entries
            return True

    def _write(self, entries: dict) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = self.path + ".tmp"
        try:
            private_dir(folder)
            if os.path.exists(tmp):
                os.unlink(tmp)
            private_file(tmp)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "schedules": entries}, f, sort_keys=True, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError("cannot write %s: %s" % (self.path, exc.strerror or exc)) from None
