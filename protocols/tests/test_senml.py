"""protocols.senml: packs built from readings, RFC 8428 examples, resolution rules, cbor2 interop."""

import binascii

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
    assert pack == [
        {-2: BN, -3: T0, 0: "m01/ua", 2: 230.5}, {0: "m01/ia", 2: 5}, {0: "m01/ua", 2: 231.0, 6: 60},
        {0: "v1/open", 4: True, 6: 60}, {0: "v1/state", 3: "closed", 6: 61}, {0: "v1/raw", 8: b"\x01", 6: 1},
    ]
    assert type(pack[0][-3]) is int and type(pack[2][6]) is int
    assert cbor.loads(senml.encode(readings, BN)) == pack


def test_pack_encodes_deterministically() -> None:
    data = senml.encode([("m01", "ua", 230.5, T0)], BN)
    # [{0: "m01/ua", 2: 230.5, -2: "gw-01:", -3: 1710498030}]
    assert binascii.hexlify(data).decode() == "81a400666d30312f756102f95b3421666777" "2d30313a221a65f420ee"


def test_base_time_is_an_integer_even_for_float_times() -> None:
    t = 1276020076.001
    readings = [("d", "a", 1, t), ("d", "b", 2, t - 5), ("d", "c", 3, float(T0))]
    pack = senml.pack(readings, BN)
    assert pack[0][-3] == 1276020071 and type(pack[0][-3]) is int
    assert type(pack[2][6]) is int  # integral offset goes as an int
    resolved = senml.resolve(pack)
    assert [r["t"] for r in resolved] == [t - 5, t, T0]  # exact: bt + t reproduces every time
    assert senml.pack([("d", "a", 1, float(T0))], BN)[0] == {-2: BN, -3: T0, 0: "d/a", 2: 1}


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
        if "v" in rec:
            r["v"] = base["bv"] + rec["v"]
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
    assert type(pack[0][-3]) is int
    assert reference_resolve(pack) == expected


def test_senml_bytes_per_reading_on_meter_data() -> None:
    from protocols.tests.test_compact import meter_batch

    readings = meter_batch(minutes=1)
    data = senml.encode(readings, BN)
    per = len(data) / len(readings)
    print("\nSenML-CBOR: %d readings, %d bytes, %.2f bytes/reading" % (len(readings), len(data), per))
    assert senml.decode(data) == senml.resolve(cbor.loads(data))  # type: ignore[arg-type]
    assert per < 30
