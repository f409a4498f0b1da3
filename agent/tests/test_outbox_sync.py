"""fsync `normal`: the outbox fsyncs its WAL within `sync_every` s of a commit (a power cut then costs at
most the commits of the last `sync_every` s; SQLite's NORMAL alone syncs at checkpoints only, about 4 MB
of packs), from the uplink's batch thread, at most once per `sync_every` and never while nothing was
written. What reaches the disk is watched by spying on the sync call: which file, and when."""

from __future__ import annotations

import errno
import logging
import os
import time

import pytest

from agent import outbox as outbox_mod
from agent import uplink as uplink_mod
from agent.config_model import BatchConfig, BrokerConfig, Config, GatewayConfig, OutboxConfig
from agent.outbox import Outbox
from agent.uplink import Uplink
from hil_tests.link import wait_until

INVENTORY = [{"id": "lamp-1", "kind": "lamp", "model": "generic-lamp", "protocol": "modbus",
              "address": 1, "points": [{"name": "dim", "unit": "/"}]}]


@pytest.fixture
def synced(monkeypatch) -> list[tuple[str, float]]:
    """Every sync the outbox makes from now on: (the file's path, time.monotonic())."""
    calls: list[tuple[str, float]] = []
    real = outbox_mod._datasync

    def spy(fd: int) -> None:
        calls.append((os.readlink("/proc/self/fd/%d" % fd), time.monotonic()))
        real(fd)

    monkeypatch.setattr(outbox_mod, "_datasync", spy)
    return calls


def after_maintain(ob: Outbox, predicate):  # type: ignore[no-untyped-def]
    """A condition checked right after `ob.maintain()` (the batch thread's turn), for `wait_for`."""
    def check() -> bool:
        ob.maintain()
        return bool(predicate())
    return check


def test_a_commit_is_fsynced_once_it_waited_sync_every(tmp_path, synced) -> None:
    path = str(tmp_path / "outbox.sqlite")
    ob = Outbox(path, sync_every=0.3)
    try:
        assert ob.due() is None and ob.stats()["sync_every"] == 0.3
        ob.put("t", b"x" * 100, records=1)
        committed = time.monotonic()
        due = ob.due()
        assert due is not None and committed - 0.01 <= due - 0.3 <= committed
        ob.maintain()
        assert synced == []  # not due yet: the next packs share the fsync
        ob.put("t", b"y" * 100, records=1)
        assert ob.due() == due  # the first unsynced commit sets when
        assert wait_until(after_maintain(ob, lambda: bool(synced)), 10, 0.01)
        (file, when), = synced
        assert file == path + "-wal"
        assert when >= due
        turn = ob.due()  # the next turn, `sync_every` on: a commit before it is fsynced then
        assert turn is not None and turn >= when + 0.3 - 0.01
        assert wait_until(after_maintain(ob, lambda: ob.due() is None), 10, 0.01)  # nothing written
        assert len(synced) == 1  # no write, no fsync
        ob.put("t", b"z" * 100, records=1)
        assert ob.due() is not None
        assert wait_until(after_maintain(ob, lambda: len(synced) == 2), 10, 0.01)
    finally:
        ob.close()


@pytest.mark.parametrize("fsync, sync_every, where", [("full", 1.0, "file"), ("normal", 0.0, "file"),
                                                      ("normal", 1.0, ":memory:")])
def test_no_sync_of_its_own_where_none_is_wanted(tmp_path, synced, fsync, sync_every, where) -> None:
    """`full` has SQLite fsync every commit; `sync_every = 0` leaves it to SQLite's checkpoints (the
    behaviour before); an outbox in memory has no file."""
    ob = Outbox(str(tmp_path / "o.sqlite") if where == "file" else where, fsync=fsync, sync_every=sync_every)
    try:
        ob.put("t", b"x", records=1)
        assert ob.due() is None
        ob.maintain()
        assert synced == [] and ob.stats()["sync_every"] == 0.0
    finally:
        ob.close()


def test_a_failed_fsync_is_counted_said_once_and_tried_again(tmp_path, monkeypatch, caplog) -> None:
    ob = Outbox(str(tmp_path / "outbox.sqlite"), sync_every=0.05)
    real = outbox_mod._datasync
    failing = [True]

    def flaky(fd: int) -> None:
        if failing[0]:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(outbox_mod, "_datasync", flaky)
    caplog.set_level(logging.WARNING, "agent.outbox")
    try:
        ob.put("t", b"x", records=1)
        assert wait_until(after_maintain(ob, lambda: ob.stats()["sync_failures"] >= 2), 10, 0.01)
        assert ob.due() is not None  # still owed
        said = [r.getMessage() for r in caplog.records if "fsync" in r.getMessage()]
        assert len(said) == 1 and "may not survive a power cut" in said[0], said
        failing[0] = False
        assert wait_until(after_maintain(ob, lambda: ob.due() is None), 10, 0.01)
        assert any("fsynced again" in r.getMessage() for r in caplog.records)
        failures = ob.stats()["sync_failures"]
    finally:
        ob.close()
    reopened = Outbox(str(tmp_path / "outbox.sqlite"))
    try:
        assert reopened.stats()["sync_failures"] == failures  # kept with the other counters
    finally:
        reopened.close()


def test_the_batch_thread_fsyncs_a_pack_with_nothing_else_to_do(tmp_path, synced, monkeypatch) -> None:
    """No broker (nothing is published), the batch's age and the batch thread's longest sleep an hour:
    a pack committed after a quiet stretch wakes the thread (`on_due`), which fsyncs the WAL
    `sync_every` later (without that wake-up it would sleep for the hour)."""
    monkeypatch.setattr(uplink_mod, "_IDLE", 3600.0)
    path = str(tmp_path / "outbox.sqlite")
    config = Config(
        path="<test>",
        gateway=GatewayConfig(site="s1", id="gw1", health_interval=3600),
        broker=BrokerConfig(host="127.0.0.1", port=1, reconnect_min=60, reconnect_max=60),
        outbox=OutboxConfig(path=path, sync_every=0.2),
        batch=BatchConfig(max_age=3600, adaptive=False, max_records=1),
    )
    uplink = Uplink(config, INVENTORY)
    uplink.start()
    try:
        assert wait_until(lambda: uplink.outbox.due() is None, 10, 0.01)  # starting is fsynced: quiet
        del synced[:]
        uplink.submit([("lamp-1", "dim", 0.5, 1_700_000_000.0)])  # max_records 1: committed at once
        assert len(uplink.outbox) == 1
        assert wait_until(lambda: any(f == path + "-wal" for f, _ in synced), 10, 0.01), synced
    finally:
        uplink.stop(flush=False)
