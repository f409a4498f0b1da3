"""The firmware's in-place pack writer produces exactly the bytes of protocols.senml.encode."""

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from firmware_py.pack import PackWriter, text_item
from protocols import senml

names = st.sampled_from([("m1", "voltage"), ("m1", "energy"), ("lamp-07", "dim"), ("w.3", "flow_total")])
values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.floats(width=16, allow_nan=False),
    st.booleans(),
    st.text(max_size=12),
)


@given(st.lists(st.tuples(names, values, st.integers(0, 100)), min_size=1, max_size=40),
       st.integers(0, 2**32))
def test_same_bytes_as_shared_senml(rows, t0):
    w = PackWriter(4096, "gw-01:")
    readings = []
    t = t0
    for (device, point), value, dt in rows:
        t += dt
        assert w.add(text_item("%s/%s" % (device, point)), value, t)
        readings.append((device, point, value, t))
    data = bytes(w.finish())
    assert data == senml.encode(readings, "gw-01:")
    assert len(cbor2.loads(data)) == len(readings)


def test_full_buffer_and_time_going_back_refused():
    w = PackWriter(64, "gw:")
    item = text_item("d/p")
    n = 0
    while w.add(item, 1.1, 1_700_000_000 + n):
        n += 1
    assert 0 < n < 10
    before = bytes(w.finish())
    assert not w.add(item, 1, 1_700_000_000)
    assert bytes(w.finish()) == before
    assert senml.decode(before)[0]["n"] == "gw:d/p"
    w.reset()
    assert w.add(item, 2, 5) and bytes(w.finish()) == senml.encode([("d", "p", 2, 5)], "gw:")
