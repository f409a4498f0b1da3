"""Fuzz the payload decoders: whatever the bytes, only ProtocolError subclasses escape.

Two generators per decoder: arbitrary bytes, and mutations (byte flips, insertions, truncations) of a valid
encoding, which reach far deeper than random bytes. Example counts follow the hypothesis profile
(``HYPOTHESIS_PROFILE=fuzz`` for 5000 per test); the counts seen are printed at the end (``-s``).
"""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from protocols import birth, cbor, compact, senml
from protocols.errors import ProtocolError
from protocols.tests.test_cbor import PROJECT_HEX, RFC8428_CBOR, h
from protocols.tests.test_compact import MIXED, MIXED_TABLE, T0

SEEN: Counter = Counter()
OUTCOME: Counter = Counter()

SENML_SEED = h(RFC8428_CBOR)
PROJECT_SEED = h(PROJECT_HEX)
COMPACT_SEED = compact.encode(
    [("em00", "ua", 230.5, T0), ("em01", "flag", True, T0 + 60), ("em02", "text", "ok", T0 + 61),
     ("em00", "ep", 36000 * 99, T0 + 60), ("em01", "num", 1.25, T0), ("em02", "blob", b"\x00", T0)],
    MIXED_TABLE,
)
BIRTH_SEED = birth.encode(MIXED)
WILL_SEED = birth.encode(birth.make_will("gw-01", "plant-3", 9))
SEEDS = [SENML_SEED, PROJECT_SEED, COMPACT_SEED, BIRTH_SEED, WILL_SEED]


def run(name: str, decode: object, data: bytes) -> None:
    SEEN[name] += 1
    try:
        decode(data)  # type: ignore[operator]
        OUTCOME[name + " ok"] += 1
    except ProtocolError:
        OUTCOME[name + " error"] += 1


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.integers(0, 9))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op < 6 and data:
            data[i] = draw(st.integers(0, 255))
        elif op < 8:
            data.insert(i, draw(st.integers(0, 255)))
        elif op == 8 and data:
            del data[i]
        else:
            data = data[: i + 1]
    return bytes(data)


# structure-level fuzz: well-formed CBOR of the right general shape, wrong in every other way
leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
        | st.binary(max_size=4) | st.sampled_from([T0, 0, -1, 2**28, 10, 11, "a:", "x_", "V"]))
labels = st.integers(-8, 10) | st.sampled_from(["n", "bver_", "x"])
records = st.dictionaries(labels, leaf | st.lists(leaf, max_size=2), max_size=6)
senml_like = st.lists(records, max_size=5)
compact_like = st.tuples(st.sampled_from([1, 2]), st.sampled_from([9, 8]), st.sampled_from([T0, 0, 1.5]),
                         st.lists(st.lists(leaf | st.lists(leaf, max_size=6), max_size=7), max_size=4))
birth_like = st.fixed_dictionaries({}, optional={
    "online": st.booleans() | leaf, "gateway": st.sampled_from(["gw-01", "", "a b"]) | leaf,
    "site": st.just("s") | leaf, "seq": st.integers(-1, 3) | leaf, "time": leaf, "payload": st.sampled_from(
        ["senml", "compact", "x"]), "base_name": st.sampled_from(["gw:", "-x", ""]) | leaf,
    "versions": st.dictionaries(leaf.filter(lambda x: x == x), leaf, max_size=2),
    "devices": st.lists(st.dictionaries(st.sampled_from(["id", "alias", "points", "address", "kind"]),
                                        leaf | st.lists(st.dictionaries(st.sampled_from(
                                            ["name", "unit", "alias", "resolution"]), leaf), max_size=2)),
                        max_size=3)})


@given(senml_like, compact_like, birth_like)
def test_structured_payloads(pack: list, items: tuple, status: dict) -> None:
    run("senml.decode structured", lambda d: senml.decode(d, now=T0), cbor.dumps(pack))
    run("compact.decode structured", lambda d: compact.decode(d, MIXED_TABLE, now=T0),
        cbor.dumps(list(items)))
    run("birth.decode structured", birth.decode, cbor.dumps(status))


DECODERS = {
    "cbor.loads": cbor.loads,
    "senml.decode": lambda d: senml.decode(d, now=T0),
    "senml.decode(no now)": senml.decode,
    "compact.decode": lambda d: compact.decode(d, MIXED_TABLE, now=T0),
    "birth.decode": birth.decode,
}


@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    for name, decode in DECODERS.items():
        run(name + " random", decode, data)


@given(mutated())
def test_mutated_valid_payloads(data: bytes) -> None:
    for name, decode in DECODERS.items():
        run(name + " mutated", decode, data)


@given(st.binary(max_size=64))
def test_prefixed_like_each_payload(tail: bytes) -> None:
    """Tails after a valid-looking head: a pack array, a record map, a compact header, a birth map."""
    for head in (b"\x81\xa2", b"\x84\x01\x09\x1a\x65\xf4\x20\xd0\x83", b"\xa9\x66online\xf5"):
        for name, decode in DECODERS.items():
            run(name + " headed", decode, head + tail)


def test_report_example_counts() -> None:
    """Prints how many inputs each decoder saw (run with -s; runs last in this file)."""
    print("\nfuzz example counts (inputs per decoder):")
    for name in sorted(SEEN):
        print("  %-40s %6d  (%d decoded, %d ProtocolError)"
              % (name, SEEN[name], OUTCOME[name + " ok"], OUTCOME[name + " error"]))
