"""agent/health.py: the health map from named getters, whole or only some of its parts."""

from __future__ import annotations

from agent.health import Health


def test_a_snapshot_of_some_parts_runs_only_their_getters_and_gives_the_same_figures() -> None:
    calls: list[str] = []

    def getter(name: str, value: object):
        def get() -> object:
            calls.append(name)
            return value
        return get

    health = Health("gw1", "s1", clock=lambda: 1796560000.5)
    health.add("outbox", getter("outbox", {"packs": 2, "pair": (1, 2)}))
    health.add("buses", getter("buses", {"line1": {"polls": 9}}))
    health.add("connected", getter("connected", True))

    def broken() -> object:
        raise RuntimeError("no counters")

    health.add("mqtt", broken)
    whole = health.snapshot()
    assert calls == ["outbox", "buses", "connected"]
    calls.clear()
    part = health.snapshot(("connected", "outbox", "mqtt", "not-there"))
    assert calls == ["outbox", "connected"]  # "buses" was not collected
    assert set(part) == {"gateway", "site", "time", "uptime", "outbox", "connected", "mqtt"}
    for name in ("outbox", "connected", "mqtt"):
        assert part[name] == whole[name]
    assert part["outbox"] == {"packs": 2, "pair": [1, 2]}  # plain, as in the whole map
    assert part["mqtt"] == {"error": "no counters"}
    assert (part["gateway"], part["site"], part["time"]) == ("gw1", "s1", 1796560000)
