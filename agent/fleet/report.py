"""`fieldlink fleet report`'s work: collect the fleet from the broker, compute, show.

How it knows it has every gateway: status, inventory and health are retained (docs/payload.md §1), and a
broker sends a new subscription's retained messages right after its SUBACK. The report subscribes to
`<prefix>/+/+/status`, `<prefix>/+/+/inventory` and `<prefix>/+/+/health`, then publishes one empty
message to a topic of its own (`fieldlink-report/<random>`, outside the prefix, also subscribed): the
broker handles one client's packets in order, so that marker comes back after every retained message
queued for the report. Once it is back and nothing came for `settle` seconds, the collection is
complete. A broker that does not let the report publish (an ACL) never returns the marker: the report
then stops after `quiet` seconds with no message, and says so.
"""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from agent.fleet.indicators import CityTotals, ScopeReport, report
from agent.fleet.mqtt import MqttError, Session
from agent.fleet.view import LEAVES, FleetView

__all__ = ["Collected", "as_dict", "collect", "csv_text", "plot", "text"]


@dataclass
class Collected:
    seconds: float
    marker: bool  # the end marker came back (else the collection ended on `quiet`)
    messages: int


async def collect(view: FleetView, host: str, port: int, username: str | None = None,
                  password: str | None = None, timeout: float = 60.0, settle: float = 0.3,
                  quiet: float = 3.0) -> Collected:
    """Subscribe, take every retained status, inventory and health into `view`, return when complete
    (above)."""
    loop = asyncio.get_running_loop()
    token = secrets.token_hex(6)
    marker = "fieldlink-report/%s" % token
    state = {"marker": False, "last": loop.time()}

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        state["last"] = loop.time()
        if topic == marker:
            state["marker"] = True
        else:
            view.handle(topic, payload)

    session = Session("fieldlink-report-%s" % token, keepalive=30, on_message=on_message,
                      username=username, password=password, max_packet=view.max_payload + 65536)
    started = time.monotonic()
    await session.connect(host, port)
    try:
        topics = [("%s/+/+/%s" % (view.prefix, leaf), 1) for leaf in LEAVES]
        granted = await session.subscribe([*topics, (marker, 1)])
        refused = [t for (t, _), g in zip(topics, granted) if g == 0x80]
        if refused:
            raise MqttError("the broker refused the subscription to %s (not authorised: check its ACL "
                            "for this user)" % ", ".join(refused))
        session.publish(marker, b"", qos=1)
        state["last"] = loop.time()
        while True:
            await asyncio.sleep(0.05)
            idle = loop.time() - state["last"]
            if state["marker"] and idle >= settle:
                break
            if not state["marker"] and idle >= quiet:
                break
            if time.monotonic() - started > timeout:
                raise MqttError("the broker was still sending after %g s (%d messages); raise --timeout"
                                % (timeout, view.messages))
            if not session.up:
                raise MqttError("the broker closed the connection: %s" % (session.error or "no reason"))
    finally:
        await session.disconnect()
    return Collected(time.monotonic() - started, bool(state["marker"]), view.messages)


# -- presentation -------------------------------------------------------------------------------


def _fraction(f: Fraction) -> str:
    return "%d/%d" % (f.numerator, f.denominator)


def _number(f: Fraction) -> int | float:
    return f.numerator if f.denominator == 1 else float(f)


def as_dict(scopes: list[ScopeReport], view: FleetView, now: float, stale_hours: float) -> dict[str, Any]:
    """Everything the report found, for --json (ratios exact as "n/d", and as numbers)."""
    return {
        "time": int(now), "stale_hours": stale_hours, "gateways": view.summary(now, stale_hours),
        "scopes": [{
            "scope": s.scope,
            "indicators": [{
                "code": i.code, "title": i.title, "ratio": _fraction(i.ratio), "value": float(i.ratio),
                "percent": i.percent, "stars": i.stars, "next_star": i.next_star,
                "parts": [{"name": p.name, "counted": _number(p.counted), "total": _number(p.total),
                           "coverage": float(p.coverage)} for p in i.parts],
            } for i in s.indicators],
            "excluded": dict(s.excluded),
        } for s in scopes],
        "problems": dict(view.problems), "problem_examples": list(view.examples),
    }


def text(scopes: list[ScopeReport], view: FleetView, now: float, stale_hours: float) -> str:
    """The report as a technician reads it."""
    g = view.summary(now, stale_hours)
    out = ["FieldLink fleet report, %s: %s gateways, %s devices in their inventories; a device counts "
           "when it reported within %g h" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)),
                                             "{:,}".format(g["gateways"]), "{:,}".format(g["devices"]),
                                             stale_hours)]
    notes = []
    if g["offline"]:
        notes.append("%d offline (their devices count by their last report)" % g["offline"])
    if g["offline_without_inventory"]:
        notes.append("%d offline from before the status/inventory split (their last will replaced the "
                     "birth: inventory unknown, nothing counted)" % g["offline_without_inventory"])
    if g["without_health"]:
        notes.append("%d without health" % g["without_health"])
    if g["stale_health"]:
        notes.append("%d whose health is older than %g h" % (g["stale_health"], stale_hours))
    if notes:
        out.append("  gateways: " + "; ".join(notes))
    for s in scopes:
        out.append("")
        out.append(s.scope if s.scope == "city" else "district %s" % s.scope)
        for i in s.indicators:
            out.append("  " + i.line())
            details = ", ".join("%s %s of %s" % (p.name, _count(p.counted), _count(p.total)) for p in i.parts)
            out.append("      %s" % details)
        if s.excluded:
            out.append("  left out: " + "; ".join("%s: %s" % (reason, "{:,}".format(n))
                                                  for reason, n in sorted(s.excluded.items())))
    if view.problems:
        out.append("")
        out.append("refused messages: " + ", ".join("%s %d" % kv for kv in sorted(view.problems.items())))
        out.extend("  " + e for e in view.examples[:5])
    return "\n".join(out)


def _count(f: Fraction) -> str:
    n = _number(f)
    return "{:,}".format(n) if isinstance(n, int) else "{:,.1f}".format(n)


def csv_text(scopes: list[ScopeReport]) -> str:
    """One row per scope, indicator and part (utility, network or lamps)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scope", "indicator", "title", "ratio", "percent", "stars", "next_star", "part", "counted",
                "total", "coverage"])
    for s in scopes:
        for i in s.indicators:
            for p in i.parts:
                w.writerow([s.scope, i.code, i.title, "%.6f" % float(i.ratio), i.percent, i.stars,
                            i.next_star, p.name, _number(p.counted), _number(p.total),
                            "%.6f" % float(p.coverage)])
    return buf.getvalue()


def plot(scopes: list[ScopeReport], path: str) -> None:
    """Coverage by district (and the city) of each indicator, with its star thresholds, as a PNG.
    matplotlib is imported here only (an optional dependency: pip install 'fieldlink[plot]')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agent.fleet.indicators import STARS

    names = [s.scope for s in scopes]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(names) * 3 / 2, 4.5), sharey=True)
    for ax, index in zip(axes, range(3)):
        code = scopes[0].indicators[index].code
        values = [float(s.indicators[index].ratio) * 100 for s in scopes]
        bars = ax.bar(names, values, color=["#4c72b0" if n == "city" else "#8da0cb" for n in names])
        for percent, stars in STARS[code]:
            ax.axhline(percent, color="#999999", linestyle="--", linewidth=0.8)
            ax.text(len(names) - 0.5, percent, " %d*" % stars, va="center", fontsize=8, color="#555555")
        for bar, s in zip(bars, scopes):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 1,
                    "%d*" % s.indicators[index].stars, ha="center", fontsize=8)
        ax.set_title("%s %s" % (code, scopes[0].indicators[index].title), fontsize=9)
        ax.set_ylim(0, 110)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    axes[0].set_ylabel("coverage, %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compute(view: FleetView, totals: CityTotals, now: float, stale_hours: float) -> list[ScopeReport]:
    return report(view.facts(now), totals, now, stale_hours)
