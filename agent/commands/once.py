"""`fieldlink run --once FILE`: the install-time check. Polls every device of a config once (each bus
in its own thread, as the agent does), prints one table (device, point, value, unit, quality) and exits
0 when every device answered, 1 naming the ones that did not, with the likely cause. Nothing is
published and no outbox is opened: it runs beside a stopped agent (the ports must be free).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from agent import os_thread
from agent.commands.read import read_with_retries
from agent.config_model import Config
from agent.diagnosis import Where, explain
from agent.drivers import Driver, error_kind, make_driver
from agent.link import LinkClosed, LinkError, LinkTimeout, open_link
from agent.units import show
from protocols.errors import ProtocolError

__all__ = ["DeviceResult", "poll_once", "run_once"]


@dataclass
class DeviceResult:
    """One device's poll: rows (point, value, unit, quality) and why it failed, if it did."""

    device: str
    bus: str
    rows: list[tuple[str, Any, str, str]] = field(default_factory=list)
    answered: bool = False
    error: str = ""
    cause: str = ""


def _poll_device(driver: Driver, link: Any, where: Where, retries: int, si: bool) -> DeviceResult:
    result = DeviceResult(driver.id, str(driver.bus.name))
    profile = driver.profile
    for request in driver.requests:
        try:
            got = read_with_retries(driver, link, request, retries)
        except (LinkError, ProtocolError) as exc:
            kind = error_kind(exc)
            result.error = result.error or "%s: %s" % (kind, exc)
            result.cause = result.cause or explain(exc, where)
            for point, _offset in request.points:
                result.rows.append((point.name, "", "", kind))
            if kind in ("exception", "abnormal"):
                result.answered = True  # it is there; it refused this request
                continue
            if isinstance(exc, (LinkTimeout, LinkClosed)):
                break  # a silent device gets no more of the line
            continue
        result.answered = True
        for name, value in got.values:
            point = profile.point(name)
            number, unit = show(value, point.unit, point.resolution, si, name)
            result.rows.append((name, number, unit, "good"))
        for name, quality in got.bad:
            result.rows.append((name, "", "", str(quality)))
    return result


def poll_once(config: Config, retries: int = 1, si: bool = False) -> list[DeviceResult]:
    """Every device of `config` polled once, in config order; each bus on its own thread."""
    buses = {bus.name: bus for bus in config.buses}
    by_bus: dict[str, list[Any]] = {}
    for device in config.devices:
        by_bus.setdefault(device.bus, []).append(device)
    results: dict[str, DeviceResult] = {}

    def poll_bus(name: str) -> None:
        bus = buses[name]
        link = open_link(bus)
        try:
            for device in by_bus[name]:
                profile = config.profiles[device.profile]
                where = Where.of(bus, str(device.address), profile, device.id)
                driver = make_driver(device, profile, bus)
                try:
                    link.ensure_open()
                except LinkClosed as exc:
                    results[device.id] = DeviceResult(
                        device.id, name, error="port: %s" % exc, cause=explain(exc, where)
                    )
                    continue
                results[device.id] = _poll_device(driver, link, where, retries, si)
        finally:
            link.close()

    threads = [os_thread.thread(functools.partial(poll_bus, name), "once-%s" % name) for name in by_bus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[d.id] for d in config.devices if d.id in results]


def run_once(
    config: Config, out: TextIO = sys.stdout, err: TextIO = sys.stderr, retries: int = 1, si: bool = False
) -> int:
    """Poll once, print the table and the failures; 0 every device answered, 1 otherwise."""
    results = poll_once(config, retries, si)
    rows = [(r.device, p, v, u, q) for r in results for p, v, u, q in r.rows]
    head = ("device", "point", "value", "unit", "quality")
    widths = [max([len(head[i])] + [len(str(row[i])) for row in rows]) for i in range(5)]
    fmt = "%-*s  %-*s  %*s  %-*s  %s"
    print(
        fmt % (widths[0], head[0], widths[1], head[1], widths[2], head[2], widths[3], head[3], head[4]),
        file=out,
    )
    for row in rows:
        print(
            fmt % (widths[0], row[0], widths[1], row[1], widths[2], row[2], widths[3], row[3], row[4]),
            file=out,
        )
    silent = [r for r in results if not r.answered]
    for r in results:
        if r.error:
            print("%s: %s %s" % ("FAILED" if not r.answered else "warning", r.device, r.error), file=err)
            print("  likely cause: %s" % r.cause, file=err)
    answered = len(results) - len(silent)
    if silent:
        print(
            "%d of %d devices answered; no answer from: %s"
            % (answered, len(results), ", ".join(r.device for r in silent)),
            file=out,
        )
        return 1
    print("all %d devices answered" % len(results), file=out)
    return 0
