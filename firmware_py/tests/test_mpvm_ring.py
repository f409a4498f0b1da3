"""The flash ring and the pack writer under genuine MicroPython (WebAssembly build in Node.js)."""


from firmware_py.tests import mpvm
from protocols import senml

pytestmark = mpvm.vm_module()


def test_power_cuts_under_micropython():
    code = """
import sys, json, hostio
sys.path.insert(0, '/')
from firmware_py.tests import powercut
r = powercut.run_many(1, 60)
hostio.emit(json.dumps(r))
hostio.emit(json.dumps(sys.implementation.name))
"""
    res = mpvm.run(code, packages=("protocols", "firmware_py", "firmware_py/tests"))
    assert res.returncode == 0, res.stderr
    result, impl = res.values()
    assert impl == "micropython"
    assert result["scenarios"] == 60 and result["cuts"] > 20, result


def test_pack_bytes_match_cpython_senml():
    code = """
import hostio, binascii
from firmware_py.pack import PackWriter
w = PackWriter(512, 'gw-01:')
rows = [('m1', 'voltage', 230.1, 1700000000), ('m1', 'energy', 123456789, 1700000000),
        ('lamp', 'on', True, 1700000003), ('lamp', 'pf', 0.5, 1700000004), ('w', 'st', 'ok', 1700000004),
        ('m1', 'current', -1.25, 1700000010), ('m1', 'current', 0.123, 1700000010),
        ('m1', 'power', 1180.6, 1700000010), ('m1', 'ep', 44444412000.0, 1700000010)]
for d, p, v, t in rows:
    assert w.add_name((d + '/').encode(), p.encode(), v, t)
hostio.emit('"%s"' % binascii.hexlify(bytes(w.finish())).decode())
"""
    res = mpvm.run(code)
    assert res.returncode == 0, res.stderr
    rows = [("m1", "voltage", 230.1, 1700000000), ("m1", "energy", 123456789, 1700000000),
            ("lamp", "on", True, 1700000003), ("lamp", "pf", 0.5, 1700000004), ("w", "st", "ok", 1700000004),
            ("m1", "current", -1.25, 1700000010), ("m1", "current", 0.123, 1700000010),
            ("m1", "power", 1180.6, 1700000010), ("m1", "ep", 44444412000.0, 1700000010)]
    assert bytes.fromhex(res.values()[0]) == senml.encode(rows, "gw-01:")


def test_slot_files_and_the_move_from_one_file_under_micropython():
    """create() on MicroPython's own files: a one-file ring of an earlier version moves into the slot
    files with its packs; appends, acks and a restart on them keep every pack as written."""
    code = """
import sys, json, os, hostio
sys.path.insert(0, '/')
from firmware_py import ring as ringmod
from firmware_py.ring import Ring
from firmware_py.tests.powercut import payload_for
path = '/outbox.ring'
f = open(path, 'wb')
f.write(b'\\xff' * 4 * 64)
f.close()
f = open(path, 'r+b')
old = Ring(f, 4, 64)
seqs = [old.append(payload_for(n, 20 + n)) for n in (1, 2, 3)]
old.ack(seqs[0])
f.close()
files = ringmod.create(path, 4, 64)
moved = path not in ['/' + n for n in os.listdir('/')]
ring = Ring(files, 4, 64)
buf = bytearray(ring.max_payload)
kept = [bytes(ring.read(s, buf)) == payload_for(n, 20 + n) for s, n in zip(seqs[1:], (2, 3))]
more = [ring.append(payload_for(n, 40)) for n in (4, 5, 6)]  # 6 overwrites the oldest pending (2)
ring.ack(seqs[2])
files.close()
files = ringmod.create(path, 4, 64)
again = Ring(files, 4, 64)
buf = bytearray(again.max_payload)
after = [bytes(again.read(s, buf)) == payload_for(n, 40) for s, n in zip(more, (4, 5, 6))]
sizes = [os.stat(ringmod.slot_name(path, i))[6] for i in range(4)]
files.close()
hostio.emit(json.dumps([moved, kept, after, again.pending(), again.dropped, again.next_seq, sizes]))
"""
    res = mpvm.run(code, packages=("protocols", "firmware_py", "firmware_py/tests"))
    assert res.returncode == 0, res.stderr
    moved, kept, after, pending, dropped, next_seq, sizes = res.values()[0]
    assert moved and kept == [True, True] and after == [True, True, True]
    assert (pending, dropped, next_seq) == (3, 1, 7) and sizes == [64] * 4
