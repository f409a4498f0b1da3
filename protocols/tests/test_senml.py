"""protocols.senml: packs built from readings, RFC 8428 examples, resolution rules, cbor2 interop."""

import binascii
import json
from decimal import Decimal

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import cbor, senml
from protocols.errors import SenmlError
from protocols.tests.test_cbor import RFC8428_CBOR, RFC8428_DETERMINISTIC

BN = "gw-01:"
T0 = 1710498030


def h(s: str) -> bytes:
    return binascii.unhexlify(s)


def test_pack_layout() -> None:
    readings = [("m01", "ua", 230.5, T0), ("m01", "ia", 5, T0), ("m01", "ua", 231.0, T0 + 60),
                ("v1", "open", True, T0 + 60), ("v1", "state", "closed", T0 + 61),
                ("v1", "raw", b"\x01", T0 + 1)]
    pack = senml.pack(readings, BN)
    # a base name per device, the point name alone in n, a base time wherever the time changes, no t
    assert pack == [
        {-2: BN + "m01/", -3: T0, 0: "ua", 2: 230.5}, {0: "ia", 2: 5}, {0: "ua", 2: 231, -3: T0 + 60},
        {-2: BN + "v1/", 0: "open", 4: True}, {0: "state", 3: "closed", -3: T0 + 61},
        {0: "raw", 8: b"\x01", -3: T0 + 1},
    ]
    assert type(pack[0][-3]) is int and type(pack[2][2]) is int  # 231.0 is integral: an int
    assert cbor.loads(senml.encode(readings, BN)) == pack


def test_pack_encodes_deterministically() -> None:
    data = senml.encode([("m01", "ua", 230.5, T0)], BN)
    # [{0: "ua", 2: 230.5, -2: "gw-01:m01/", -3: 1710498030}]
    assert binascii.hexlify(data).decode() == "81a40062756102f95b34216a67772d30313a6d30312f221a65f420ee"


def test_base_time_follows_each_reading_time_exactly() -> None:
    t = 1276020076.001
    readings = [("d", "a", 1, t), ("d", "b", 2, t), ("d", "c", 3, t - 5), ("d", "e", 4, float(T0))]
    pack = senml.pack(readings, BN)
    assert [rec.get(-3) for rec in pack] == [t, None, t - 5, T0]
    assert type(pack[3][-3]) is int  # an integral time goes as an int (always, on the firmware)
    assert all(6 not in rec for rec in pack)
    resolved = senml.resolve(pack)
    assert [r["t"] for r in resolved] == [t - 5, t, t, T0]  # every time exactly as read


def test_numbers_take_their_shortest_exact_form() -> None:
    tag = cbor.Tag
    cases = [(230.1, tag(4, [-1, 2301]), "c482201908fd"), (0.7, tag(4, [-1, 7]), "c4822007"),
             (0.123, tag(4, [-3, 123]), "c48222187b"), (-5.123, tag(4, [-3, -5123]), "c48222391402"),
             (0.5, 0.5, "f93800"), (12.25, 12.25, "f94a20"), (230.0, 230, "18e6"), (-0.0, 0, "00"),
             (1 / 3, 1 / 3, "fb3fd5555555555555"), (44444412000.5, 44444412000.5, "fb4224b22fd0c10000"),
             (7, 7, "07")]
    for value, item, hexed in cases:
        assert senml.number(value) == item, value
        assert binascii.hexlify(cbor.dumps(senml.number(value))).decode() == hexed, value
        back = cbor2.loads(cbor.dumps(senml.number(value)))  # an independent decoder: Decimal for tag 4
        assert float(back) == value
        assert senml.decode(senml.encode([("d", "p", value, T0)], BN))[0]["v"] == value
    nan = senml.number(float("nan"))
    assert nan != nan and senml.number(float("inf")) == float("inf")


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**9, 10**9).map(lambda n: n / 1000)
       | st.integers(-10**6, 10**6).map(lambda n: round(n * 0.1, 9)))
def test_a_number_is_never_longer_than_its_float_and_always_exact(x: float) -> None:
    item = senml.number(x)
    data = cbor.dumps(item)
    if x == int(x) and abs(x) <= 2**53:
        assert type(item) is int  # integral: an integer (energy counters stay exact integers, §3)
    else:
        assert len(data) <= cbor.float_size(x)  # never longer than the shortest exact binary float
    back = cbor2.loads(data)  # an independent decoder, then RFC 8428 section 6: convert to binary64
    assert (float(back) if isinstance(back, Decimal) else back) == x
    assert senml.decode(senml.encode([("d", "p", x, T0)], BN))[0]["v"] == x


@pytest.mark.parametrize("item,message", [
    (cbor.Tag(4, [-1000, 1]), "out of range"), (cbor.Tag(4, [1, 2**70]), "out of range"),
    (cbor.Tag(5, [-1, 3]), "decimal fraction"), (cbor.Tag(4, [1.5, 2]), "decimal fraction"),
    (cbor.Tag(4, [-1]), "decimal fraction"), (cbor.Tag(4, "x"), "decimal fraction"),
])
def test_hostile_decimal_fractions_are_refused(item: object, message: str) -> None:
    with pytest.raises(SenmlError, match=message):
        senml.decode(cbor.dumps([{0: "x", 2: item, -3: T0}]))
    assert senml.decode(cbor.dumps([{0: "x", 2: cbor.Tag(4, [2, 3]), -3: T0}]))[0]["v"] == 300


def test_units_optional() -> None:
    readings = [("m01", "ua", 230.5, T0), ("m01", "ep", 7, T0)]
    assert 1 not in senml.pack(readings, BN)[0]
    pack = senml.pack(readings, BN, units={("m01", "ua"): "V"})
    assert pack[0][1] == "V" and 1 not in pack[1]
    assert senml.resolve(pack)[1]["u"] == "V"


def test_resolve_round_trip() -> None:
    readings = [("m01", "ua", 230.5, T0 + 60), ("m01", "ua", 229.9, T0), ("lamp3", "on", False, T0)]
    assert senml.decode(senml.encode(readings, BN)) == [
        {"n": "gw-01:lamp3/on", "vb": False, "t": T0},
        {"n": "gw-01:m01/ua", "v": 229.9, "t": T0},
        {"n": "gw-01:m01/ua", "v": 230.5, "t": T0 + 60},
    ]


def test_rfc8428_section6_example_resolves() -> None:
    name = "urn:dev:ow:10e2073a0108006:current"
    expected = [{"n": name, "u": "A", "v": v, "t": 1276020076.001 + dt, "bver": 5}
                for dt, v in ((-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6), (0, 1.7))]
    expected.append({"n": "urn:dev:ow:10e2073a0108006:voltage", "u": "V", "v": 120.1, "t": 1276020076.001,
                     "bver": 5})
    expected.sort(key=lambda r: (r["t"], r["n"]))
    assert senml.decode(h(RFC8428_CBOR)) == expected
    assert senml.decode(h(RFC8428_DETERMINISTIC)) == expected


def test_rfc8428_json_examples_in_cbor() -> None:
    one = h("81a300781b75726e3a6465763a6f773a31306532303733613031303830303633016343656c02fb403719999999999a")
    assert senml.decode(one, now=T0) == [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1, "t": T0}]
    two = h("82a40067766f6c7461676501615602fb405e06666666666621781c75726e3a6465763a6f773a3130653230373361"
            "30313038303036333aa3006763757272656e7401614102fb3ff3333333333333")
    assert senml.decode(two, now=T0) == [
        {"n": "urn:dev:ow:10e2073a01080063:current", "u": "A", "v": 1.2, "t": T0},
        {"n": "urn:dev:ow:10e2073a01080063:voltage", "u": "V", "v": 120.1, "t": T0},
    ]


def test_resolution_rules() -> None:
    pack = [{-2: "a:", -3: T0, -4: "W", -5: 10, -6: 100, 0: "x", 2: 1, 6: 5, 7: 60},
            {0: "y", 1: "V", 5: 2}, {0: "z", -4: "A"}, {-2: "b:", 0: "w", 2: 1.5, "extra": 1, 99: 0}]
    assert senml.resolve(pack) == [
        {"n": "a:y", "u": "V", "v": 10, "s": 102, "t": T0},
        {"n": "a:z", "u": "A", "v": 10, "s": 100, "t": T0},
        {"n": "b:w", "u": "A", "v": 11.5, "s": 100, "t": T0},
        {"n": "a:x", "u": "W", "v": 11, "s": 100, "t": T0 + 5, "ut": 60},
    ]
    assert senml.resolve([{0: "r", 2: 1, 6: -10}], now=T0) == [{"n": "r", "v": 1, "t": T0 - 10}]


@pytest.mark.parametrize("pack,message", [
    ({0: "x"}, "array of records"),
    ([1], "not a map"),
    ([{-1: 11, 0: "x", 2: 1, -3: T0}], "version 11"),
    ([{-1: 26, 0: "x", 2: 1, -3: T0}], "version 26"),
    ([{-1: -1, 0: "x", 2: 1, -3: T0}], "unsigned"),
    ([{0: "x", 2: 1, -3: T0}, {-1: 5, 0: "y", 2: 1}], "differs"),
    ([{0: "x", 2: 1, -3: T0, "bu_": "x"}], "must-understand"),
    ([{0: "x", 2: 1, -3: T0, "foo_": 1}], "must-understand"),
    ([{0: "-x", 2: 1, -3: T0}], "must start"),
    ([{0: "a b", 2: 1, -3: T0}], "only A-Z"),
    ([{0: "caf\u00e9", 2: 1, -3: T0}], "only A-Z"),
    ([{2: 1, -3: T0}], "empty"),
    ([{0: "x", -3: T0}], "no value"),
    ([{0: "x", 2: 1, 4: True, -3: T0}], "more than one value"),
    ([{0: "x", 2: "1", -3: T0}], "v must be number"),
    ([{0: "x", 2: True, -3: T0}], "v must be number"),
    ([{0: "x", 3: b"s", -3: T0}], "vs must be text"),
    ([{0: "x", 4: 1, -3: T0}], "vb must be bool"),
    ([{0: "x", 8: "s", -3: T0}], "vd must be bytes"),
    ([{0: 5, 2: 1, -3: T0}], "n must be text"),
    ([{0: "x", 2: 1, -3: "now"}], "bt must be number"),
    ([{0: "x", 2: 1, -3: 2**70}], "bt must be number"),
    ([{0: "x", 2: 1, -3: float("inf")}], "not finite"),
    ([{0: "x", 2: 1}], "relative"),
])
def test_violations_raise_senml_error(pack: object, message: str) -> None:
    with pytest.raises(SenmlError, match=message):
        senml.resolve(pack)  # type: ignore[arg-type]


@pytest.mark.parametrize("readings", [
    [("m 1", "ua", 1, T0)], [("m1", "ua", object(), T0)], [("m1", "ua", 1, "x")], [("m1", "ua", 1)],
    [("m1", "ua", 1, float("nan"))],
])
def test_pack_refuses_bad_readings(readings: list) -> None:
    with pytest.raises(SenmlError):
        senml.pack(readings, BN)


def reference_resolve(pack: list) -> list:
    """An independent RFC 8428 section 4 resolver over cbor2 output (absolute times only)."""
    labels = {-2: "bn", -3: "bt", -4: "bu", -5: "bv", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 6: "t",
              8: "vd"}
    base = {"bn": "", "bt": 0, "bu": None, "bv": 0}
    out = []
    for rec in pack:
        rec = {labels[k]: v for k, v in rec.items()}
        for key in ("bn", "bt", "bu", "bv"):
            base[key] = rec.get(key, base[key])
        r = {"n": base["bn"] + rec.get("n", ""), "t": base["bt"] + rec.get("t", 0)}
        unit = rec.get("u", base["bu"])
        if unit:
            r["u"] = unit
        for key in ("vs", "vb", "vd"):
            if key in rec:
                r[key] = rec[key]
        if "v" in rec:  # RFC 8428 section 6: a number converts to binary64 (cbor2: tag 4 is a Decimal)
            r["v"] = float(rec["v"]) if isinstance(rec["v"], Decimal) else base["bv"] + rec["v"]
        out.append(r)
    return sorted(out, key=lambda r: (r["t"], r["n"]))


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8).filter(
    lambda s: s[0].isalnum())
values = (st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | st.floats(allow_nan=False)
          | st.text(max_size=10) | st.binary(max_size=10))
times = st.integers(min_value=T0 - 86400, max_value=T0 + 86400) | st.floats(min_value=T0 - 86400.0,
                                                                           max_value=T0 + 86400.0)
readings_st = st.lists(st.tuples(names, names, values, times), min_size=1, max_size=30)


@given(readings_st)
def test_resolve_gives_back_every_reading(readings: list) -> None:
    resolved = senml.decode(senml.encode(readings, BN))
    label = {bool: "vb", str: "vs", bytes: "vd", int: "v", float: "v"}
    expected = sorted(
        ({"n": "%s%s/%s" % (BN, d, p), label[type(v)]: v, "t": t} for d, p, v, t in readings),
        key=lambda r: (r["t"], r["n"]),
    )
    assert resolved == expected
    pack = cbor2.loads(senml.encode(readings, BN))  # any CBOR library + the RFC reads what we send
    assert all(rec[-2] == "%s%s/" % (BN, d) for rec, (d, _, _, _) in zip(pack, readings) if -2 in rec)
    assert reference_resolve(pack) == expected


any_int = st.integers(-(2**70), 2**70)


@given(st.lists(st.tuples(names, names, values | any_int, times), min_size=1, max_size=30))
def test_encode_writes_the_bytes_of_the_general_path(readings: list) -> None:
    """`encode`'s fast paths (cached names, floats, ints, bools) give exactly `cbor.dumps(pack(...))`."""
    assert senml.encode(readings, BN) == cbor.dumps(senml.pack(readings, BN))


def tb_json(readings: list) -> bytes:
    """The ThingsBoard gateway telemetry JSON of the same readings (one ts entry per device and time)."""
    body: dict = {}
    for d, p, v, t in readings:
        body.setdefault(d, {}).setdefault(round(t * 1000), {})[p] = v
    message = {d: [{"ts": ts, "values": vs} for ts, vs in times.items()] for d, times in body.items()}
    return json.dumps(message, separators=(",", ":")).encode()


@pytest.mark.parametrize("minutes", [1, 15])
def test_senml_bytes_per_reading_on_meter_data(minutes: int) -> None:
    from protocols.tests.test_compact import meter_batch

    readings = meter_batch(minutes=minutes)
    data = senml.encode(readings, BN)
    per = len(data) / len(readings)
    json_per = len(tb_json(readings)) / len(readings)
    print("\nSenML-CBOR: %d readings, %d bytes, %.2f bytes/reading (%.2fx the ThingsBoard JSON)"
          % (len(readings), len(data), per, per / json_per))
    assert senml.decode(data) == senml.resolve(cbor.loads(data))  # type: ignore[arg-type]
    assert per <= 0.8 * json_per  # issue #12 item 1 (the simulated sites: make bench)
