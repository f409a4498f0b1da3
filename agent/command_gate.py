"""What happens to a payload on `…/cmd`: the rules of protocols/commands.py, the id store, the bus queues.

    gate = CommandGate(config, scheduler, IdStore(config.commands.id_store), send_ack)
    publisher.commands = gate          # the network thread calls gate.take(payload, retained)

`take` never blocks on a bus: it refuses (too large, retained, not a command, a missing or bad
signature, expired, another command under a used id, the device's own checks, a full bus queue) with
an ack naming the reason, answers a repeat with its original ack, or hands the command to its bus
owner (Scheduler.submit) after its id is committed to the store. The bus owner calls back when the
command finished; the ack is stored with the id, then published. Every refusal is counted by reason
in `…/health` (`commands.refused_by`) and logged (at most 10 lines per reason and minute).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.command_store import IdStore
from protocols import commands as rules
from protocols.commands import Command, Refused

__all__ = ["CommandGate"]

log = logging.getLogger("fieldlink.commands")

_LOG_BURST = 10  # refusal log lines per reason and minute


class CommandGate:
    """Checks, remembers and queues the commands from the broker; see the module docstring."""

    def __init__(self, config: Any, scheduler: Any, store: IdStore | None,
                 send_ack: Callable[[bytes, bool], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        c = config.commands
        self.gateway_id = config.gateway.id
        self.mode = c.signed
        self.keys = list(c.keys)
        self.max_bytes = c.max_bytes
        self.id_window = c.id_window
        self.scheduler = scheduler
        self.store = store
        self.send_ack = send_ack or (lambda ack, ran: None)
        self.clock = clock
        self._lock = threading.Lock()
        self._counters = {"received": 0, "queued": 0, "done": 0, "failed": 0, "repeats": 0, "refused": 0}
        self._refused_by: dict[str, int] = {}
        self._log_window: dict[str, tuple[float, int]] = {}

    # -- the network thread ----------------------------------------------------------------------

    def take(self, payload: bytes, retained: bool = False) -> None:
        """One delivery on `…/cmd` (MQTT retain flag as received)."""
        self._count("received")
        size = len(payload)
        if size > self.max_bytes:
            self._refuse("too_large", rules.recover_id(bytes(payload[:70])),
                         rules.refusal("too_large", size, self.max_bytes))
            return
        data = bytes(payload)
        if retained:
            self._refuse("retained", rules.peek_id(data), rules.refusal("retained"))
            return
        try:
            cmd = rules.open_command(data, self.keys, self.gateway_id)
            switching = self.scheduler.switching(cmd.fields)
            now = int(self.clock())
            rules.check_policy(cmd, self.mode, switching, now, self.id_window)
            prior = self.store.check(cmd) if self.store is not None else None
        except Refused as exc:
            self._refuse(exc.reason, exc.cmd_id, exc.text)
            return
        if prior is not None:
            self._count("repeats")
            log.info("event=command_repeat id=%r device=%s: %s", cmd.id, cmd.device,
                     "original ack sent again" if prior else "still running; its ack follows")
            if prior:
                self.send_ack(prior, False)
            return
        self._queue(cmd, switching, now)

    def _queue(self, cmd: Command, switching: bool, now: int) -> None:
        until = rules.remember_until(cmd, now, self.id_window)
        remembered = []

        def before() -> None:
            if self.store is not None:
                self.store.begin(cmd, until)
                remembered.append(True)

        try:
            result = self.scheduler.submit(cmd.fields, lambda fields: self._finished(cmd, fields), before)
        except Exception as exc:  # the id could not be committed: at most once means not at all
            log.exception("event=command_store_failed id=%r", cmd.id)
            self._refuse("no_store", cmd.id, rules.refusal("no_store", exc))
            return
        if result is None:
            self._count("queued")
            log.info("event=command_queued id=%r device=%s %s signed=%s switching=%s", cmd.id, cmd.device,
                     cmd.what, cmd.signed, switching)
            return
        if remembered and self.store is not None:
            self.store.forget(cmd.id)  # it never ran: the platform may send it again
        self._refuse(str(result.get("reason", "device")), cmd.id, str(result.get("error")))

    # -- bus owners ------------------------------------------------------------------------------

    def _finished(self, cmd: Command, fields: dict) -> None:
        ok = bool(fields.get("ok"))
        ack = rules.ack_bytes(cmd.id, ok, fields.get("error") or "failed", fields.get("value"))
        if self.store is not None:
            try:
                self.store.finish(cmd.id, ack)
            except Exception:
                log.exception("event=command_store_failed id=%r", cmd.id)
        self._count("done" if ok else "failed")
        self.send_ack(ack, True)

    # -- counters and refusals -------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._counters[key] += 1

    def _refuse(self, reason: str, cmd_id: object, text: str) -> None:
        with self._lock:
            self._counters["refused"] += 1
            self._refused_by[reason] = self._refused_by.get(reason, 0) + 1
            start, n = self._log_window.get(reason, (0.0, 0))
            now = time.monotonic()
            if now - start >= 60.0:
                start, n = now, 0
            self._log_window[reason] = (start, n + 1)
        if n < _LOG_BURST:
            log.warning("event=command_refused reason=%s id=%r: %s%s", reason, cmd_id, text,
                        " (more of these this minute are counted, not logged)" if n == _LOG_BURST - 1 else "")
        if rules.valid_id(cmd_id):
            self.send_ack(rules.ack_bytes(cmd_id, False, text), False)

    def stats(self) -> dict:
        """`…/health` → `commands`: received, queued, done, failed, repeats, refused (and by reason),
        the ids remembered."""
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
            out["refused_by"] = dict(self._refused_by)
        out["signed"] = self.mode
        out["keys"] = len(self.keys)
        if self.store is not None:
            out.update(self.store.stats())
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
