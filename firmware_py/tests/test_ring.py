"""Flash ring: power cuts at every kind of point never yield a corrupted pack or lose a committed one."""

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_py import ring as ringmod
from firmware_py.ring import Ring
from firmware_py.tests.powercut import Flash, payload_for, run_many, scenario

op = st.one_of(
    st.tuples(st.just("a"), st.integers(0, 60)),
    st.just(("k",)),
    st.just(("r",)),
)


@settings(max_examples=600)
@given(
    ops=st.lists(op, max_size=30),
    cut=st.integers(-1, 1500),
    garbage=st.integers(-1, 10_000),
    slots=st.integers(2, 6),
)
def test_power_cut_anywhere(ops, cut, garbage, slots):
    scenario(ops, cut, slots=slots, slot_size=64, garbage=garbage)


def test_every_byte_of_one_append_and_ack():
    """Exhaustive: a cut before each byte of a fill, overwrite and ack sequence."""
    ops = [("a", 40), ("a", 10), ("k",), ("a", 45), ("a", 0), ("a", 30), ("k",), ("a", 20)]
    cuts = 0
    for cut in range(0, 600):
        for garbage in (-1, cut):
            result = scenario(ops, cut, slots=3, slot_size=64, garbage=garbage)
            cuts += result["cut"]
    assert cuts > 500


def test_seeded_batch_same_as_micropython_subset():
    result = run_many(1, 200)
    assert result["cuts"] > 100


def test_fifo_ack_and_drop_oldest_counter():
    flash = Flash(4 * 64)
    ring = Ring(flash, 4, 64)
    seqs = [ring.append(payload_for(n, 10)) for n in range(1, 7)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert ring.dropped == 2 and ring.pending() == 4
    assert ring.next_pending() == 3
    buf = bytearray(ring.max_payload)
    assert bytes(ring.read(3, buf)) == payload_for(3, 10)
    assert ring.ack(3) and not ring.ack(3)
    again = Ring(flash, 4, 64)  # survives a reset, counter included
    assert again.dropped == 2 and again.next_pending() == 4 and again.next_seq == 7
    assert again.used_bytes() == 30


def test_rotted_byte_is_skipped_not_sent():
    flash = Flash(4 * 64)
    ring = Ring(flash, 4, 64)
    ring.append(payload_for(1, 30))
    ring.append(payload_for(2, 30))
    flash.data[64 + 16 + 5] ^= 0x01  # bit rot inside pack 2 after it was committed
    buf = bytearray(ring.max_payload)
    assert ring.read(2, buf) is None
    assert ring.next_pending(1) == 0
    assert bytes(ring.read(1, buf)) == payload_for(1, 30)
    assert Ring(flash, 4, 64).pending() == 1


def test_random_corruption_never_yields_a_wrong_pack():
    rng = random.Random(7)
    for _ in range(300):
        flash = Flash(4 * 64)
        ring = Ring(flash, 4, 64)
        for n in range(1, 1 + rng.randrange(1, 6)):
            ring.append(payload_for(n, rng.randrange(40)))
        for _ in range(rng.randrange(1, 4)):
            flash.data[rng.randrange(len(flash.data))] = rng.randrange(256)
        again = Ring(flash, 4, 64)
        buf = bytearray(again.max_payload)
        seq = again.next_pending()
        while seq:
            view = again.read(seq, buf)
            if view is not None:
                assert bytes(view) == payload_for(seq, len(view))
            seq = again.next_pending(seq)


def test_oversized_pack_refused(tmp_path):
    f = ringmod.create(str(tmp_path / "ring.bin"), 3, 64)
    ring = Ring(f, 3, 64)
    with pytest.raises(ValueError):
        ring.append(bytes(ring.max_payload + 1))
    ring.append(b"x" * ring.max_payload)
    f.close()
    f = ringmod.create(str(tmp_path / "ring.bin"), 3, 64)
    assert Ring(f, 3, 64).pending() == 1


# ------------------------------------------------------------------ one file per slot (on the board)
def joined(path: str, slots: int) -> bytes:
    out = b""
    for i in range(slots):
        with open(ringmod.slot_name(path, i), "rb") as f:
            out += f.read()
    return out


def test_slot_files_hold_exactly_what_one_file_holds(tmp_path):
    """The same operations on a ring over one file and over slot files give the same answers, also
    across restarts, and the slot files side by side are the one file's bytes."""
    rng = random.Random(3)
    path = str(tmp_path / "outbox.ring")
    flash = Flash(5 * 64)
    files = ringmod.create(path, 5, 64)
    one, split = Ring(flash, 5, 64), Ring(files, 5, 64)
    buf_one, buf_split = bytearray(one.max_payload), bytearray(split.max_payload)
    for step in range(400):
        op = rng.randrange(3)
        if op == 0:
            payload = payload_for(step, rng.randrange(one.max_payload + 1))
            assert one.append(payload) == split.append(payload)
        elif op == 1:
            after = rng.randrange(step + 2)
            assert one.next_pending(after) == split.next_pending(after)
            oldest = one.next_pending()
            assert oldest == split.next_pending()
            if oldest:
                assert one.ack(oldest) == split.ack(oldest)
        else:
            seq = one.next_pending()
            a, b = one.read(seq, buf_one), split.read(seq, buf_split)
            assert (a is None) == (b is None) and (a is None or bytes(a) == bytes(b))
        if step % 60 == 59:  # a restart
            files.close()
            files = ringmod.create(path, 5, 64)
            one, split = Ring(flash, 5, 64), Ring(files, 5, 64)
        assert (one.pending(), one.dropped, one.next_seq) == (split.pending(), split.dropped, split.next_seq)
    files.close()
    assert joined(path, 5) == bytes(flash.data)


def test_a_ring_kept_in_one_file_moves_into_slot_files(tmp_path):
    path = str(tmp_path / "outbox.ring")
    with open(path, "wb") as f:  # the one-file ring of earlier versions, with packs in it
        f.write(b"\xff" * 4 * 64)
    with open(path, "r+b") as f:
        old = Ring(f, 4, 64)
        seqs = [old.append(payload_for(n, 20 + n)) for n in range(1, 4)]
        assert old.ack(seqs[0])
    with open(path, "rb") as f:
        image = f.read()
    with open(ringmod.slot_name(path, 1), "wb") as f:  # a move cut short by a power cut, earlier
        f.write(b"\x00" * 10)
    files = ringmod.create(path, 4, 64)
    assert not os.path.exists(path)
    ring = Ring(files, 4, 64)
    buf = bytearray(ring.max_payload)
    assert ring.pending() == 2 and ring.next_seq == 4
    assert [bytes(ring.read(s, buf)) for s in seqs[1:]] == [payload_for(n, 20 + n) for n in (2, 3)]
    files.close()
    assert joined(path, 4) == image


def test_a_ring_file_too_short_to_hold_its_slots_is_replaced_blank(tmp_path):
    path = str(tmp_path / "outbox.ring")
    with open(path, "wb") as f:
        f.write(b"\x00" * 100)
    files = ringmod.create(path, 3, 64)
    assert not os.path.exists(path) and Ring(files, 3, 64).pending() == 0
    files.close()
    assert joined(path, 3) == b"\xff" * 3 * 64


def test_a_slot_file_gone_is_made_again_blank(tmp_path):
    path = str(tmp_path / "outbox.ring")
    files = ringmod.create(path, 3, 64)
    ring = Ring(files, 3, 64)
    first = ring.append(payload_for(1, 30))  # slot 0: its file is the one open now
    os.remove(ringmod.slot_name(path, 1))
    os.remove(ringmod.slot_name(path, 2))
    second = ring.append(payload_for(2, 30))  # slot 1: its file is made again
    files.close()
    files = ringmod.create(path, 3, 64)  # slot 2's file made again at the start
    again = Ring(files, 3, 64)
    buf = bytearray(again.max_payload)
    assert again.pending() == 2 and bytes(again.read(second, buf)) == payload_for(2, 30)
    assert bytes(again.read(first, buf)) == payload_for(1, 30)
    files.close()
    assert os.path.getsize(ringmod.slot_name(path, 2)) == 64


def test_a_smaller_ring_gives_the_slot_files_beyond_it_back(tmp_path):
    path = str(tmp_path / "outbox.ring")
    files = ringmod.create(path, 6, 64)
    ring = Ring(files, 6, 64)
    seqs = [ring.append(payload_for(n, 20)) for n in range(1, 6)]
    files.close()
    files = ringmod.create(path, 4, 64)  # configured smaller: slots 4 and 5 go
    assert sorted(os.listdir(tmp_path)) == ["outbox.ring.%d" % i for i in range(4)]
    again = Ring(files, 4, 64)
    buf = bytearray(again.max_payload)
    assert again.pending() == 4 and [bytes(again.read(s, buf)) for s in seqs[:4]] == [
        payload_for(n, 20) for n in range(1, 5)]
    files.close()


# ------------------------------------------------------------------ a pack kept in RAM (append with defer)
def test_a_pack_acknowledged_from_ram_never_reaches_the_flash():
    flash = Flash(4 * 64)
    blank = bytes(flash.data)
    ring = Ring(flash, 4, 64)
    buf = bytearray(ring.max_payload)
    for n in range(1, 6):  # a stream: each pack published and acknowledged before the next one
        seq = ring.append(payload_for(n, 30), defer=True)
        assert seq == ring.fresh_seq == n and ring.next_pending() == seq and ring.next_pending(seq) == 0
        assert (ring.pending(), ring.used_bytes()) == (1, 30)
        assert bytes(ring.read(seq, buf)) == payload_for(n, 30)
        assert ring.ack(seq) and not ring.ack(seq)
        assert ring.pending() == 0
    assert bytes(flash.data) == blank and ring.written == 0


def test_a_late_pack_is_written_under_its_number_and_before_the_next():
    flash = Flash(4 * 64)
    ring = Ring(flash, 4, 64)
    first = ring.append(payload_for(1, 20), defer=True)
    ring.write_fresh()  # its PUBACK is late: on flash now, under its own number
    assert ring.fresh_seq == 0 and ring.written == 1 and ring.ack(first)  # the PUBACK acks the slot
    second = ring.append(payload_for(2, 20), defer=True)  # nothing pending: kept in RAM
    third = ring.append(payload_for(3, 20), defer=True)  # the second goes first; the third is not kept
    fourth = ring.append(payload_for(4, 20))
    assert ring.fresh_seq == 0 and ring.written == 4 and (second, third, fourth) == (2, 3, 4)
    again = Ring(flash, 4, 64)  # what a restart finds: in order, each under its number
    buf = bytearray(again.max_payload)
    got = []
    seq = again.next_pending()
    while seq:
        got.append((seq, bytes(again.read(seq, buf))))
        seq = again.next_pending(seq)
    assert got == [(n, payload_for(n, 20)) for n in (2, 3, 4)] and again.next_seq == 5


def test_a_pack_kept_in_ram_is_lost_to_a_power_cut_and_nothing_else():
    flash = Flash(4 * 64)
    ring = Ring(flash, 4, 64)
    kept = ring.append(payload_for(1, 20))
    assert ring.ack(kept)
    ring.append(payload_for(2, 20), defer=True)
    again = Ring(flash, 4, 64)  # the power goes: the flash has the first (acknowledged) only
    assert again.pending() == 0 and again.next_seq == 2
