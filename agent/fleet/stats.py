"""What the fleet engine measured (agent/fleet/engine.py): rates, latency percentiles, connections, CPU,
and whether the load was sustained; `Stats.summary()` is what `fieldlink sim fleet` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Stats", "ms", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded to 0.01."""
    return round(seconds * 1000, 2)


@dataclass
class Stats:
    """What the engine did; `summary()` is what `fieldlink sim fleet` prints."""

    gateways: int = 0
    devices: int = 0
    points: int = 0
    interval: float = 60.0
    expected_rps: float = 0.0  # readings per second the fleet's online devices should make
    messages: dict[str, int] = field(default_factory=dict)  # leaf -> PUBLISH packets sent
    message_bytes: dict[str, int] = field(default_factory=dict)
    readings_made: int = 0
    readings_published: int = 0  # records in packs whose PUBACK came
    packs_acked: int = 0
    latency: list[float] = field(default_factory=list)  # pack closed -> PUBACK, seconds
    wire: list[float] = field(default_factory=list)  # PUBLISH sent -> PUBACK, seconds
    connects: int = 0
    connect_failures: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    drops: int = 0  # connections dropped on purpose (the broker publishes their wills)
    lost: int = 0  # connections the broker or the network ended
    commands: int = 0
    acks: int = 0
    late_polls: int = 0
    max_lag: float = 0.0
    connected_after: float = float("nan")  # seconds until every gateway was connected once
    window: float = 0.0  # seconds measured (after every gateway connected)
    cpu: float = 0.0  # process CPU seconds in the window
    rss_mb: float = 0.0
    wire_bytes: int = 0  # bytes the sessions wrote in the window (MQTT headers and topics included)
    backlog: int = 0  # packs waiting in the outboxes at the end
    waiting: int = 0  # readings not yet acknowledged at the end (open packs, outboxes, in flight)
    max_age: float = 5.0  # [batch] max_age of the gateways: an open pack may wait this long

    @property
    def judged_after(self) -> float:
        """The shortest window `sustained` is judged on: one poll interval, and long enough that the
        readings allowed to wait at its end (open packs) are at most a tenth of it."""
        return max(self.interval, 10 * (self.max_age + 2.0))

    def rate(self, n: float) -> float:
        return n / self.window if self.window > 0 else float("nan")

    @property
    def sustained(self) -> bool:
        """Every reading the devices should make was made, and all but those of the last few seconds
        (open packs, at most `max_age` old, and packs in flight) were acknowledged by the broker."""
        if not self.window >= self.judged_after:  # a shorter window sees some gateways' polls only
            return False
        made = self.rate(self.readings_made) >= 0.97 * self.expected_rps
        recent = self.expected_rps * (self.max_age + 2.0)
        published = self.readings_published + recent >= self.readings_made
        return made and published and self.waiting <= recent and self.late_polls == 0

    def as_dict(self) -> dict:
        return {
            "gateways": self.gateways, "devices": self.devices, "points": self.points,
            "interval": self.interval,
            "window_s": round(self.window, 1), "connected_after_s": round(self.connected_after, 2),
            "messages": dict(self.messages), "message_bytes": dict(self.message_bytes),
            "messages_per_s": round(self.rate(sum(self.messages.values())), 1),
            "bytes_per_s": round(self.rate(sum(self.message_bytes.values())), 1),
            "wire_bytes_per_s": round(self.rate(self.wire_bytes), 1),
            "readings_expected_per_s": round(self.expected_rps, 1),
            "readings_made_per_s": round(self.rate(self.readings_made), 1),
            "readings_published_per_s": round(self.rate(self.readings_published), 1),
            "latency_ms": {"p50": ms(percentile(self.latency, 0.5)),
                           "p99": ms(percentile(self.latency, 0.99)),
                           "max": ms(max(self.latency) if self.latency else float("nan")),
                           "samples": len(self.latency)},
            "wire_ms": {"p50": ms(percentile(self.wire, 0.5)), "p99": ms(percentile(self.wire, 0.99))},
            "connects": self.connects, "connect_failures": self.connect_failures,
            "failure_reasons": dict(self.failure_reasons), "drops": self.drops, "lost": self.lost,
            "commands": self.commands, "acks": self.acks, "late_polls": self.late_polls,
            "max_lag_s": round(self.max_lag, 3), "cpu_s": round(self.cpu, 2),
            "cpu_percent_of_one_core": round(100 * self.cpu / self.window, 1) if self.window > 0 else None,
            "rss_mb": round(self.rss_mb, 1), "backlog_packs": self.backlog, "waiting_readings": self.waiting,
            "sustained": self.sustained,
        }

    def summary(self) -> str:
        d = self.as_dict()
        kinds = ", ".join("%s %d" % kv for kv in sorted(self.messages.items()))
        lines = [
            "measured over %.0f s after all %d gateways were connected (%.1f s to connect them)"
            % (self.window, self.gateways, self.connected_after),
            "  messages/s   %10.1f  (%s)" % (d["messages_per_s"], kinds),
            "  bytes/s      %10.0f" % d["bytes_per_s"],
            "  readings/s   %10.1f  published, %.1f made, %.1f expected from %d points every %g s"
            % (d["readings_published_per_s"], d["readings_made_per_s"], self.expected_rps, self.points,
               self.interval),
            "  latency      pack closed -> PUBACK p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d packs); "
            "PUBLISH -> PUBACK p50 %.1f ms, p99 %.1f ms"
            % (d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["latency_ms"]["max"], len(self.latency),
               d["wire_ms"]["p50"], d["wire_ms"]["p99"]),
            "  connections  %d connects, %d failed%s, %d dropped on purpose (wills), %d lost"
            % (self.connects, self.connect_failures,
               (" (" + "; ".join("%s: %d" % kv for kv in self.failure_reasons.items()) + ")")
               if self.failure_reasons else "", self.drops, self.lost),
            "  commands     %d received, %d acks sent" % (self.commands, self.acks),
            "  generator    CPU %.1f s (%s %% of one core), peak RSS %.0f MB, %d late polls "
            "(max lag %.2f s), %d readings waiting at the end"
            % (self.cpu, d["cpu_percent_of_one_core"], self.rss_mb, self.late_polls, self.max_lag,
               self.waiting),
            "  sustained    %s" % ("yes" if self.sustained else "NO" if self.window >= self.judged_after
                                   else "not judged: measure at least %g s (--seconds)" % self.judged_after),
        ]
        return "\n".join(lines)
