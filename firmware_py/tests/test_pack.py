"""The firmware's in-place pack writer produces exactly the bytes of protocols.senml.encode."""

from decimal import Decimal

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from firmware_py.pack import PackWriter
from protocols import senml

names = st.sampled_from([("m1", "voltage"), ("m1", "energy"), ("lamp-07", "dim"), ("w.3", "flow_total")])
values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.floats(width=16, allow_nan=False),
    st.integers(-10**7, 10**7).map(lambda n: n / 1000),  # register x 0.001: decimal fractions
    st.integers(0, 10**5).map(lambda n: round(n * 0.1, 9)),  # as the agent scales (drivers.base.scaled)
    st.booleans(),
    st.text(max_size=12),
)


@given(st.lists(st.tuples(names, values, st.sampled_from([0, 0, 0, 1, 60])), min_size=1, max_size=40),
       st.integers(0, 2**32))
def test_same_bytes_as_shared_senml(rows, t0):
    w = PackWriter(4096, "gw-01:")
    readings = []
    t = t0
    for (device, point), value, dt in rows:
        t += dt
        assert w.add_name(device.encode() + b"/", point.encode(), value, t)
        readings.append((device, point, value, t))
    data = bytes(w.finish())
    assert data == senml.encode(readings, "gw-01:")
    assert len(cbor2.loads(data)) == len(readings)


def test_base_name_per_device_and_base_time_per_change():
    w = PackWriter(256, "gw:")
    for front, point, value, t in ((b"m1/", b"u", 230.1, 100000000), (b"m1/", b"i", 5, 100000000),
                                   (b"m2/", b"u", 0.5, 100000000), (b"m2/", b"i", 7, 100000002)):
        assert w.add_name(front, point, value, t)
    assert cbor2.loads(bytes(w.finish())) == [
        {0: "u", 2: Decimal("230.1"), -2: "gw:m1/", -3: 100000000}, {0: "i", 2: 5},
        {0: "u", 2: 0.5, -2: "gw:m2/"}, {0: "i", 2: 7, -3: 100000002}]


def test_full_buffer_and_time_going_back_refused():
    w = PackWriter(64, "gw:")
    n = 0
    while w.add_name(b"d/", b"p", 1.1, 1_700_000_000 + n):
        n += 1
    assert 0 < n < 10
    before = bytes(w.finish())
    assert not w.add_name(b"d/", b"p", 1, 1_700_000_000)
    assert bytes(w.finish()) == before
    assert senml.decode(before)[0]["n"] == "gw:d/p"
    w.reset()
    assert w.add_name(b"d/", b"p", 2, 5) and bytes(w.finish()) == senml.encode([("d", "p", 2, 5)], "gw:")
