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
