"""The batcher: packs closed by count, size and age; thread-safe; both payload profiles decode."""

from __future__ import annotations

import threading

import cbor2
import pytest

from agent.batcher import Batcher, make_encoder
from protocols import birth as birth_msg
from protocols import compact, senml

INVENTORY = [
    {"id": "meter-1", "kind": "electricity_meter", "model": "m", "protocol": "dlt645",
     "address": "000000000161", "points": [{"name": "energy", "unit": "J", "resolution": 3600},
                                           {"name": "voltage", "unit": "V", "resolution": 0.1}]},
    {"id": "lamp-2", "kind": "lamp", "model": "l", "protocol": "modbus", "address": "2",
     "points": [{"name": "on", "unit": ""}, {"name": "dim", "unit": "/", "resolution": 0.01}]},
]
BIRTH = birth_msg.make_inventory("gw-01", "site-a", INVENTORY, seq=3)


def collect():
    packs: list[tuple[bytes, int]] = []
    return packs, lambda payload, n: packs.append((payload, n))


def values(packs):
    return [rec[2] for payload, _ in packs for rec in cbor2.loads(payload)]


def plain_encoder(readings):  # what the senml profile sends, minus the codec under test
    return cbor2.dumps([{0: "%s/%s" % (d, p), 2: v, 6: t} for d, p, v, t in readings])


def test_closes_by_record_count_and_flush():
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_records=3, max_age=60)
    b.add([("d", "p", i, 1.7e9 + i) for i in range(7)])
    assert [n for _, n in packs] == [3, 3] and b.pending == 1
    b.flush()
    assert [n for _, n in packs] == [3, 3, 1]
    assert values(packs) == list(range(7))


def test_closes_by_encoded_size_and_splits_what_does_not_fit():
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_records=1000, max_bytes=200, max_age=60)
    b.add([("device-with-a-long-name", "point", "x" * (i % 40), 1.7e9 + i) for i in range(100)])
    b.flush()
    assert all(len(p) <= 200 for p, _ in packs)
    assert sum(n for _, n in packs) == 100
    assert values(packs) == ["x" * (i % 40) for i in range(100)]


def test_closes_by_age_on_tick():
    now = [0.0]
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_records=100, max_age=5.0, clock=lambda: now[0])
    assert not b.tick()
    b.add([("d", "p", 1, 1.7e9)])
    now[0] = 4.9
    b.add([("d", "p", 2, 1.7e9 + 1)])
    assert not b.tick() and not packs
    now[0] = 5.0
    assert b.tick() and [n for _, n in packs] == [2]


def test_concurrent_adds_keep_each_stream_in_order():
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_records=37, max_age=60)

    def producer(k: int) -> None:
        for i in range(500):
            b.add([("dev%d" % k, "n", i, 1.7e9 + i)])

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.flush()
    records = [rec for payload, _ in packs for rec in cbor2.loads(payload)]
    assert len(records) == 2000
    for k in range(4):
        assert [r[2] for r in records if r[0] == "dev%d/n" % k] == list(range(500))


def test_a_bad_reading_is_left_out_and_counted_not_the_pack():
    packs, sink = collect()
    b = Batcher(make_encoder("senml", BIRTH), sink, max_records=10, max_age=60)
    good = [("meter-1", "voltage", 230.5 + i, 1710498030 + i) for i in range(5)]
    b.add([*good[:2], ("meter-1", "voltage", [1, 2], 1710498032), *good[2:]])
    b.flush()
    assert b.counters["rejected"] == 1
    assert [rec["v"] for p, _ in packs for rec in senml.decode(p)] == [r[2] for r in good]


def test_a_store_failure_is_counted():
    def broken(payload, n):
        raise OSError("disk full")

    b = Batcher(plain_encoder, broken, max_records=2, max_age=60)
    b.add([("d", "p", 1, 1.7e9), ("d", "p", 2, 1.7e9 + 1)])
    assert b.counters["unstored"] == 2


READINGS = [("meter-1", "energy", 44444412000, 1710498030), ("meter-1", "voltage", 230.5, 1710498030),
            ("lamp-2", "on", True, 1710498031), ("lamp-2", "dim", 0.75, 1710498031.5)]


def test_senml_profile_is_plain_rfc8428_without_units():
    packs, sink = collect()
    b = Batcher(make_encoder("senml", BIRTH), sink, max_records=10, max_age=60)
    b.add(READINGS)
    b.flush()
    pack = cbor2.loads(packs[0][0])
    assert pack[0][-2] == "gw-01:meter-1/" and pack[0][-3] == 1710498030
    assert all(1 not in rec and -4 not in rec for rec in pack), "units live in the birth message"
    got, bn, bt = [], "", 0
    for rec in pack:  # RFC 8428 resolution: base name and base time carry forward
        bn, bt = rec.get(-2, bn), rec.get(-3, bt)
        got.append((bn + rec[0], next(rec[k] for k in (2, 4) if k in rec), bt + rec.get(6, 0)))
    assert got == [("gw-01:%s/%s" % (d, p), v, t) for d, p, v, t in READINGS]


def test_senml_packs_name_each_device_once():
    packs, sink = collect()
    b = Batcher(make_encoder("senml", BIRTH), sink, max_records=10, max_age=60)
    # two buses polled in parallel: their readings interleave in the batch
    b.add([("meter-1", "energy", 1, 1710498030), ("lamp-2", "on", True, 1710498030.2),
           ("meter-1", "voltage", 230.5, 1710498031), ("lamp-2", "dim", 0.75, 1710498031.2)])
    b.flush()
    pack = cbor2.loads(packs[0][0])
    assert [rec.get(-2) for rec in pack] == ["gw-01:meter-1/", None, "gw-01:lamp-2/", None]
    assert sorted((r["n"], r["t"]) for r in senml.decode(packs[0][0])) == [
        ("gw-01:lamp-2/dim", 1710498031.2), ("gw-01:lamp-2/on", 1710498030.2),
        ("gw-01:meter-1/energy", 1710498030), ("gw-01:meter-1/voltage", 1710498031)]


def test_compact_profile_decodes_to_the_same_records_as_senml():
    senml_packs, s1 = collect()
    compact_packs, s2 = collect()
    for encoder, sink in ((make_encoder("senml", BIRTH), s1), (make_encoder("compact", BIRTH), s2)):
        b = Batcher(encoder, sink, max_records=10, max_age=60)
        b.add(READINGS)
        b.flush()
    assert len(compact_packs[0][0]) < len(senml_packs[0][0])
    assert cbor2.loads(compact_packs[0][0])[1] == 3  # the birth seq
    assert compact.decode(compact_packs[0][0], BIRTH) == senml.decode(senml_packs[0][0])


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="payload profile"):
        make_encoder("json", BIRTH)


def test_due_is_the_open_packs_deadline():
    """What the batch thread sleeps on: `due` is when the open pack reaches max_age (None with no pack
    open)."""
    now = [100.0]
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_records=3, max_age=5.0, clock=lambda: now[0])
    assert b.due() is None
    b.add([("d", "p", 1, 1.7e9)])  # opened a pack
    assert b.due() == 105.0
    now[0] = 102.0
    b.add([("d", "p", 2, 1.7e9)])  # joined the open pack: same deadline
    assert b.due() == 105.0
    b.add([("d", "p", 3, 1.7e9)])  # the third reading closed the pack: none open
    assert b.due() is None and len(packs) == 1
    b.add([("d", "p", i, 1.7e9) for i in range(4)])  # one full pack, then a new one open
    assert b.due() == 107.0 and len(packs) == 2
    now[0] = 107.0
    assert b.tick() and b.due() is None


def test_idle_due_is_linger_after_the_oldest_reading_was_taken():
    """While the uplink is idle the pack closes at `idle_due`: `linger` after its oldest reading was
    taken (the readings' own times), at once for readings already older than that, and never later than
    `linger` from now when the readings' times lie ahead (the clock was set back). `add` is True when
    that is sooner than the idle closer will look: here it has not looked yet (it waits to be woken)."""
    now, wall = [100.0], [1000.0]
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_age=5.0, clock=lambda: now[0], linger=0.25, wall=lambda: wall[0])
    assert b.idle_due() is None
    assert b.add([("d", "p", 1, 999.95)]) is True  # taken 50 ms ago: opened a pack
    assert b.idle_due() == pytest.approx(100.2)
    now[0] += 0.1
    wall[0] += 0.1
    assert b.add([("d", "p", 2, 1000.1), ("d", "q", 3, 1000.1)]) is False  # fresh: same deadline, no wake-up
    assert b.idle_due() == pytest.approx(100.2)
    assert b.add([("e", "p", 4, 1000.1), ("e", "q", 5, 999.0)]) is True  # a second old: due now, look again
    assert b.idle_due() == pytest.approx(100.1)
    assert b.due() == pytest.approx(105.0) and not packs  # idle_due closes nothing by itself
    b.flush()
    assert b.idle_due() is None and len(packs) == 1
    assert b.close_due(True) is None  # the closer looks: nothing open, no stream: wake me
    assert b.add([("d", "p", 6, 5000.0)]) is True  # times ahead of the wall clock: linger from now at most
    assert b.idle_due() == pytest.approx(100.35)


def test_the_idle_closer_closes_once_per_linger_while_readings_stream():
    """`close_due` (the network thread's turn): the open pack closes at its `idle_due`; while readings
    keep coming the next pack closes `linger` after the last one (no reading waits longer) and opening it
    wakes nobody; when the stream stops the closer sleeps until a pack opens; while the uplink is not
    idle it closes nothing and no reading wakes it (the PUBACK or the connection does)."""
    now, wall = [100.0], [1000.0]
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, max_age=60.0, clock=lambda: now[0], linger=0.25, wall=lambda: wall[0])

    def at(t):
        now[0], wall[0] = 100.0 + t, 1000.0 + t

    assert b.close_due(True) is None  # nothing open: asleep until woken
    assert b.add([("d", "p", 1, 1000.0)]) is True  # opening a pack wakes it
    assert b.close_due(True) == pytest.approx(100.25) and not packs  # woken early: looks at idle_due
    at(0.1)
    assert b.add([("d", "p", 2, 1000.1)]) is False
    at(0.25)
    assert b.close_due(True) == pytest.approx(100.5) and len(packs) == 1  # closed; next look: a linger on
    at(0.3)
    assert b.add([("d", "p", 3, 1000.3)]) is False  # due at 100.55, after the look at 100.5: no wake-up
    at(0.5)
    assert b.close_due(True) == pytest.approx(100.75) and len(packs) == 2  # closed at the tick, 0.2 s old
    at(0.6)
    assert b.add([("d", "p", 4, 999.0)]) is True  # a reading a second old: due now, sooner than 100.75
    assert b.close_due(True) == pytest.approx(100.85) and len(packs) == 3
    at(0.9)
    assert b.close_due(True) is None  # the tick came with nothing open: the stream stopped
    at(1.0)
    assert b.add([("d", "p", 5, 1001.0)]) is True
    assert b.close_due(False) is None  # a PUBACK is awaited: not idle, closes nothing
    at(1.5)
    assert b.add([("d", "p", 6, 999.0)]) is False and len(packs) == 3  # even old readings wake nobody
    assert b.close_due(True) == pytest.approx(101.75) and len(packs) == 4  # idle again: due, closed


def test_without_linger_each_poll_closes_its_own_pack():
    now = [7.0]
    packs, sink = collect()
    b = Batcher(plain_encoder, sink, clock=lambda: now[0])
    for i in range(3):
        assert b.add([("d", "p", i, 1.7e9)]) is True  # each poll wakes the closer
        assert b.close_due(True) is None and len(packs) == i + 1  # closed at once; no stream to wait for


def test_without_linger_an_idle_pack_is_due_when_it_opens():
    now = [7.0]
    _packs, sink = collect()
    b = Batcher(plain_encoder, sink, clock=lambda: now[0])
    assert b.add([("d", "p", 1, 1.7e9)]) is True
    assert b.idle_due() == 7.0
