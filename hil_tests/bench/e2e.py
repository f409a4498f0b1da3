"""The end-to-end rows of issue #12, each measured side by side in one run (see docs/benchmarks.md)."""

from __future__ import annotations

import os
import time
from typing import Any

import cbor2

from hil_tests.bench.common import NOT_INSTALLED, Tap, percentile, ratio, say
from hil_tests.bench.peers import TbGateway, pymodbus_reads, tb_installed
from hil_tests.bench.site import SiteRun, lamp_scenario
from hil_tests.bench.wire import Sizes, data_records, last_inventory, layout_steps, sizes

BATCH_AGE = 5.0  # the agent's default batch.max_age: a reading is published at most this late


def print_sizes(title: str, s: Sizes, tb_real: tuple[int, int] | None = None) -> None:
    print("  %-44s %10s %10s" % (title + " (%d readings, %d packs)" % (s.readings, s.packs), "B/reading",
                                 "vs TB JSON"))
    tb = s.per("tb")
    print("  %-44s %10.2f %10s" % ("  SenML-CBOR as published", s.per("senml"), ratio(s.per("senml"), tb)))
    print("  %-44s %10.2f %10s" % ("  compact, same packs", s.per("compact"), ratio(s.per("compact"), tb)))
    print("  %-44s %10.2f %10s" % ("  ThingsBoard gateway JSON, same readings", tb, "1.00x"))
    if tb_real is not None and tb_real[0]:
        print("  %-44s %10.2f %10s" % ("  ThingsBoard gateway as it published", tb_real[1] / tb_real[0],
                                       ratio(tb_real[1] / tb_real[0], tb)))


def street_cpu(workdir: str, seconds: float) -> None:
    """Agent CPU per 1k readings and per Modbus transaction on the street site (instant simulator, 1 s
    polls), then a pymodbus sync client doing only the same reads, then the ThingsBoard gateway."""
    print("\nAgent CPU end to end: street site (42 Modbus devices), simulator without line timing, %g s "
          "windows, one run" % seconds)
    with SiteRun("street", os.path.join(workdir, "street-cpu"), instant=True, interval=1.0) as run:
        print("  poll intervals (1 s asked; fieldlink sim-config raises it to what the bus's line time "
              "allows at 9600 baud): %s" % intervals(run.config))
        say("street site: agent running, waiting for its first pack")
        run.wait_data()
        time.sleep(min(3.0, seconds))  # past start-up
        say("measuring the agent for %g s" % seconds)
        w = run.window(seconds, settle=BATCH_AGE + 1.5)
        assert run.tap is not None and run.site is not None and run.broker is not None
        published = sizes(run.tap.on("/data"), last_inventory(run.tap.messages))
        run.stop_agent()
        peer, paced, bare, bare_paced = every_client(run, seconds)
        tb: dict[str, Any] | None = None
        if tb_installed():
            say("the ThingsBoard gateway on the same site for %g s" % seconds)
            tb = tb_window(run, seconds)
        rows = [("FieldLink agent", w.cpu, w.readings, w.transactions, w.peak_rss_kib)]
    pm_per = per_transaction(peer)
    paced_per = per_transaction(paced)
    print("  %-34s %9s %9s %11s %13s %12s %9s" % ("", "CPU s", "readings", "Modbus txns", "CPU/1k readings",
                                                 "CPU/txn", "peak RSS"))
    for name, cpu, readings, txns, rss in rows:
        print("  %-34s %9.2f %9d %11d %11.1fms %10.1fus %7.1fMB" % (
            name, cpu, readings, txns, w.per_1k_readings * 1000, w.per_transaction * 1e6, rss / 1024))
    print("  %-34s %9.2f %9s %11d %13s %10.1fus %9s" % ("pymodbus sync, reads only, flat out", peer["cpu"],
                                                       "-", peer["transactions"], "-", pm_per * 1e6, "-"))
    print("  %-34s %9.2f %9s %11d %13s %10.1fus %9s" % ("pymodbus sync, reads only, paced", paced["cpu"],
                                                       "-", paced["transactions"], "-", paced_per * 1e6, "-"))
    floors = (("bare RTU loop (floor), flat out", bare), ("bare RTU loop (floor), paced", bare_paced))
    for name, result in floors:
        print("  %-34s %9.2f %9s %11d %13s %10.1fus %9s" % (
            name, result["cpu"], "-", result["transactions"], "-", per_transaction(result) * 1e6, "-"))
    if tb is None:
        print("  %-34s %s" % ("ThingsBoard IoT Gateway", NOT_INSTALLED))
        tb_per_1k = None
    else:
        tb_per_1k = tb["cpu"] / tb["values"] * 1000 if tb["values"] else float("nan")
        per_txn = "%.1fus" % (tb["cpu"] / tb["transactions"] * 1e6) if tb["transactions"] else "-"
        print("  %-34s %9.2f %9d %11d %11.1fms %12s %7.1fMB" % (
            "ThingsBoard IoT Gateway %s" % tb["version"], tb["cpu"], tb["values"], tb["transactions"],
            tb_per_1k * 1000, per_txn, tb["rss"] / 1024))
    print("  the agent's CPU per Modbus transaction by thread: %s" % w.by_thread())
    print("  agent CPU per Modbus transaction vs pymodbus reads only, flat out: %s (acceptance: <= 0.5x)"
          % ratio(w.per_transaction, pm_per))
    print("  agent CPU per Modbus transaction vs pymodbus reads only, paced at the agent's schedule: %s "
          "(acceptance: <= 0.5x)" % ratio(w.per_transaction, paced_per))
    print("  agent CPU per Modbus transaction vs the bare loop, paced (the floor of any Python master at "
          "this schedule): %s; pymodbus paced vs the same floor: %s"
          % (ratio(w.per_transaction, per_transaction(bare_paced)),
             ratio(paced_per, per_transaction(bare_paced))))
    print("  agent CPU per 1k readings vs ThingsBoard gateway: %s (goal: <= 0.1x)"
          % (ratio(w.per_1k_readings, tb_per_1k) if tb is not None else NOT_INSTALLED))
    print_failures((peer, paced, bare, bare_paced))
    print_sizes("payload, this run", published, (tb["values"], tb["bytes"]) if tb else None)


def street_planned_line_timed(workdir: str, seconds: float) -> None:
    """The same as `street_cpu` with the simulator's default line timing (9600 baud on the wire, as a
    real RS-485 line and `fieldlink sim` give it): the agent at its planned rate, then pymodbus and the
    bare loop doing only its reads, flat out and paced at its schedule, on the same simulator."""
    print("\nAgent CPU at the planned rate on a line-timed bus: street site, simulator with line timing "
          "(its default), %g s windows, one run" % seconds)
    with SiteRun("street", os.path.join(workdir, "street-timed"), instant=False, interval=1.0) as run:
        print("  poll intervals: %s" % intervals(run.config))
        say("street site, line timing: agent running, waiting for its first pack")
        run.wait_data(timeout=120)
        time.sleep(min(3.0, seconds))
        say("measuring the agent for %g s" % seconds)
        w = run.window(seconds, settle=BATCH_AGE + 1.5)
        run.stop_agent()
        results = every_client(run, seconds)
    peer, paced_peer, _bare, bare_paced = results
    print_rate_header()
    print_rate_row("FieldLink agent, planned rate", w.cpu, w.transactions, w.per_transaction,
                   w.transactions / (w.end - w.start))
    for (name, _client, _paced), result in zip(CLIENTS, results, strict=True):
        print_rate_row(name, result["cpu"], result["transactions"], per_transaction(result),
                       result["transactions"] / seconds)
    print("  the agent's CPU per Modbus transaction by thread: %s" % w.by_thread())
    print("  agent CPU per Modbus transaction on a line-timed bus vs pymodbus reads only, flat out: %s "
          "(acceptance: <= 0.5x)" % ratio(w.per_transaction, per_transaction(peer)))
    print("  agent CPU per Modbus transaction on a line-timed bus vs pymodbus reads only, paced at the "
          "agent's schedule: %s (acceptance: <= 0.5x)"
          % ratio(w.per_transaction, per_transaction(paced_peer)))
    print("  agent vs the bare loop, paced: %s" % ratio(w.per_transaction, per_transaction(bare_paced)))
    print_failures(results)


#: the clients that do only the agent's reads, beside it on the same simulator: (name, client, paced)
CLIENTS = (("pymodbus sync, reads only, flat out", "pymodbus", False),
           ("pymodbus sync, reads only, paced", "pymodbus", True),
           ("bare RTU loop, flat out", "bare", False),
           ("bare RTU loop, paced", "bare", True))


def every_client(run: SiteRun, seconds: float) -> list[dict]:
    """Each of CLIENTS doing the reads of `run`'s agent config for `seconds`, in CLIENTS' order (the
    agent stopped): pymodbus flat out and at the agent's schedule, then the bare loop (the floor)."""
    results = []
    for name, client, paced in CLIENTS:
        say("%s on the same simulator for %g s" % (name, seconds))
        results.append(pymodbus_reads(run.config, seconds, run.workdir, paced=paced, client=client))
    return results


def print_failures(results: list[dict] | tuple[dict, ...]) -> None:
    """A line for each of CLIENTS' results (same order) whose transactions failed."""
    for (name, _client, _paced), result in zip(CLIENTS, results, strict=True):
        if result["errors"]:
            print("  (%s: %d of its transactions failed)" % (name, result["errors"]))


def print_rate_header() -> None:
    print("  %-34s %9s %11s %12s %9s" % ("", "CPU s", "Modbus txns", "CPU/txn", "txns/s"))


def print_rate_row(name: str, cpu: float, transactions: int, per_txn: float, rate: float) -> None:
    print("  %-34s %9.2f %11d %10.1fus %9.1f" % (name, cpu, transactions, per_txn * 1e6, rate))


def per_transaction(result: dict) -> float:
    """CPU seconds per transaction of a pymodbus worker's result."""
    return float(result["cpu"] / result["transactions"]) if result["transactions"] else float("nan")


def full_rate_intervals(config_path: str) -> dict[str, float]:
    """Each bus's poll cycle as the planner counts it (line time at the bus's baud): an interval the bus
    can just carry. Every device of the bus then polls at that interval (rounded up to 10 ms)."""
    import math

    from agent.config import load_config
    from agent.planner import plan_config

    return {plan.bus.name: math.ceil(plan.cycle_time * 100) / 100
            for plan in plan_config(load_config(config_path)) if plan.devices}


def set_intervals(config_path: str, by_bus: dict[str, float]) -> None:
    """Rewrite the `interval` of every device of the agent config by its bus."""
    with open(config_path) as f:
        head, *blocks = f.read().split("[[devices]]")
    out = [head]
    for block in blocks:
        bus = next(line.split("=", 1)[1].strip().strip('"') for line in block.splitlines()
                   if line.startswith("bus ="))
        lines = ["interval = %g" % by_bus[bus] if line.startswith("interval =") else line
                 for line in block.splitlines()]
        out.append("\n".join(lines) + ("\n" if block.endswith("\n") else ""))
    with open(config_path, "w") as f:
        f.write("[[devices]]".join(out))


def street_full_rate(workdir: str, seconds: float) -> None:
    """Agent CPU per Modbus transaction with the street site's buses as busy as they can be: the simulator
    keeps real line timing (9600 baud) and every device polls at its bus's whole poll cycle, so the agent
    polls back to back like a flat-out client; then pymodbus flat out on the same simulator."""
    print("\nAgent CPU at full bus rate: street site, simulator with line timing, every device polled at "
          "its bus's poll cycle, %g s windows, one run" % seconds)
    with SiteRun("street", os.path.join(workdir, "street-full"), instant=False, interval=5.0) as run:
        assert run.agent is not None
        run.stop_agent()  # restarted below with the intervals the buses can just carry
        by_bus = full_rate_intervals(run.config)
        set_intervals(run.config, by_bus)
        print("  poll intervals: %s" % intervals(run.config))
        assert run.tap is not None
        before = len(run.tap.on("/data"))  # packs the first start may have published
        run.start_agent()
        say("street site at full bus rate: waiting for the first pack")
        run.wait_data(packs=before + 1, timeout=120)
        time.sleep(min(3.0, seconds))
        say("measuring the agent for %g s" % seconds)
        w = run.window(seconds, settle=BATCH_AGE + 1.5)
        run.stop_agent()
        say("pymodbus sync client flat out on the same simulator for %g s" % seconds)
        peer = pymodbus_reads(run.config, seconds, run.workdir)
    pm_per = per_transaction(peer)
    print_rate_header()
    print_rate_row("FieldLink agent, full bus rate", w.cpu, w.transactions, w.per_transaction,
                   w.transactions / (w.end - w.start))
    print_rate_row("pymodbus sync, reads only, flat out", peer["cpu"], peer["transactions"], pm_per,
                   peer["transactions"] / seconds)
    print("  the agent's CPU per Modbus transaction by thread: %s" % w.by_thread())
    print("  agent CPU per Modbus transaction at full bus rate vs pymodbus flat out: %s (acceptance: <= 0.5x)"
          % ratio(w.per_transaction, pm_per))
    if peer["errors"]:
        print("  (pymodbus: %d of its transactions failed)" % peer["errors"])


def intervals(config_path: str) -> str:
    """`bus: interval s` for each bus of an agent config."""
    from agent.config import load_config

    config = load_config(config_path)
    by_bus: dict[str, set[float]] = {}
    for d in config.devices:
        by_bus.setdefault(d.bus, set()).add(d.interval)
    return ", ".join("%s %s s" % (bus, "/".join("%g" % i for i in sorted(v))) for bus, v in by_bus.items())


def tb_window(run: SiteRun, seconds: float) -> dict[str, Any]:
    from hil_tests.bench.common import tb_version
    from hil_tests.bench.site import requests

    assert run.broker is not None and run.site is not None
    gw = TbGateway(run.config, run.workdir, run.broker.host, run.broker.port)
    try:
        if not gw.wait_telemetry(90):
            raise RuntimeError("the ThingsBoard gateway published no telemetry: %s" % gw.log())
        time.sleep(min(3.0, seconds))
        sim = run.site.client
        cpu0, req0, t0 = gw.cpu(), requests(sim), time.time()
        time.sleep(seconds)
        cpu1, req1 = gw.cpu(), requests(sim)
        values, size = gw.telemetry(t0)
        return {"cpu": cpu1 - cpu0, "transactions": req1 - req0, "values": values, "bytes": size,
                "rss": gw.peak_rss_kib(), "version": (tb_version() or "").split(" ")[0]}
    finally:
        gw.close()


def latency(scenario: str, workdir: str, seconds: float) -> tuple[Sizes, list[tuple[str, int, int]], str]:
    """Reading -> broker latency at field rates (real line timing, the agent's default batching)."""
    with SiteRun(scenario, os.path.join(workdir, "latency-" + scenario), instant=False, interval=5.0) as run:
        polls = intervals(run.config)
        say("%s site with line timing (%s): waiting for the first pack" % (scenario, polls))
        run.wait_data(timeout=120)
        start = time.time()
        say("collecting for %g s" % seconds)
        time.sleep(seconds)
        assert run.tap is not None
        messages = run.tap.on("/data", start)
        delays = [m.arrived - r.time for m, records in data_records(messages) for r in records]
        published = sizes(messages, last_inventory(run.tap.messages))
        steps = layout_steps(messages, last_inventory(run.tap.messages))
    rate = len(delays) / seconds
    worst = max(delays) if delays else float("nan")
    print("  %-10s %9d %9.1f %9.3f %9.3f %9.3f" % (scenario, len(delays), rate, percentile(delays, 50),
                                                   percentile(delays, 99), worst))
    return published, steps, polls


def throughput(workdir: str, total: int) -> None:
    """Readings per second through batcher + durable outbox (SQLite WAL) + publisher to Mosquitto."""
    from agent.config import load_config
    from agent.gateway import inventory
    from agent.uplink import Uplink
    from hil_tests.broker import Mosquitto

    folder = os.path.join(workdir, "throughput")
    os.makedirs(folder, exist_ok=True)
    with Mosquitto() as broker:
        path = os.path.join(folder, "agent.toml")
        outbox = os.path.join(folder, "outbox.sqlite")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(outbox + suffix):
                os.unlink(outbox + suffix)
        lines = ["format = 1", "[gateway]", 'site = "load"', 'id = "gw1"', "[broker]", 'host = "127.0.0.1"',
                 "port = %d" % broker.port, "[outbox]", 'path = "%s"' % outbox,
                 "[[buses]]", 'name = "lamps"', 'port = "/dev/null"']
        for i in range(40):
            lines += ["[[devices]]", 'id = "lamp-%02d"' % (i + 1), 'bus = "lamps"',
                      'profile = "generic-lamp"', "address = %d" % (i + 1), "interval = 10"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        config = load_config(path)
        uplink = Uplink(config, inventory(config))
        points = [p["name"] for p in inventory(config)[0]["points"]]
        uplink.start()
        try:
            deadline = time.monotonic() + 30
            while not uplink.connected and time.monotonic() < deadline:
                time.sleep(0.02)
            now = time.time()
            batches = []
            made = 0
            while made < total:  # one "poll" = one device's points at one time
                device = "lamp-%02d" % (made // len(points) % 40 + 1)
                t = now + made // (len(points) * 40)
                batches.append([(device, p, 2301 + made % 7 if p != "dim" else 0.7, t) for p in points])
                made += len(points)
            cpu0, t0 = time.process_time(), time.monotonic()
            for batch in batches:
                uplink.submit(batch)
            uplink.batcher.flush()
            submitted = time.monotonic() - t0
            deadline = time.monotonic() + 300
            while uplink.publisher.stats()["records_published"] < made and time.monotonic() < deadline:
                time.sleep(0.01)
            elapsed = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            published = uplink.publisher.stats()["records_published"]
        finally:
            uplink.stop(drain=0.5)
    print("  %d readings submitted in %.2f s, %d acknowledged by the broker after %.2f s: %.0f readings/s "
          "(outbox fsync %s; %.1f ms CPU per 1k readings, bench process)"
          % (made, submitted, published, elapsed, published / elapsed, config.outbox.fsync,
             cpu / published * 1e6 if published else float("nan")))
    print("  goal (issue #12, item 3): >= 20000 readings/s with the durable outbox")


def reconnect(workdir: str, outages: list[float]) -> None:
    """Broker stopped for N s, started again (each outage in turn, one agent run): time to the first new
    data publish, and the bytes the agent publishes on …/status and …/inventory when it reconnects."""
    backs: list[float] = []
    with SiteRun("street", os.path.join(workdir, "reconnect"), instant=True, interval=1.0,
                 persistence=True) as run:
        run.wait_data()
        time.sleep(2.0)
        assert run.broker is not None and run.tap is not None
        first_inventory = last_inventory(run.tap.messages) or b""
        devices = len(cbor2.loads(first_inventory)["devices"]) if first_inventory else 1
        print("  inventory at the first connect: %d B for %d devices (%d B/device)" % (
            len(first_inventory), devices, len(first_inventory) // devices))
        run.tap.close()
        run.tap = None
        for outage in outages:
            say("broker stopped for %g s" % outage)
            run.broker.stop()
            time.sleep(outage)
            run.broker.start()
            back = time.time()
            tap = Tap(run.broker.host, run.broker.port, "fieldlink/#", client_id="bench-tap-2")
            try:
                got = tap.wait_for("/data", 1, 90)
                first = tap.on("/data")[0].arrived - back if got else float("nan")
                time.sleep(1.0)
                live = [m for m in tap.on("/status") + tap.on("/inventory") if not m.retain]
                status_bytes = sum(len(m.payload) for m in live)
            finally:
                tap.close()
            backs.append(first)
            print("  broker down %5.1f s: first new publish %.2f s after it was back; %d B on status and "
                  "inventory at reconnect (%d B/device)"
                  % (outage, first, status_bytes, status_bytes // devices))
            time.sleep(2.0)  # publishing steadily again before the next outage
    print("  back online: worst %.2f s, median %.2f s of %d outages" % (max(backs), percentile(backs, 50),
                                                                        len(backs)))
    print("  goals (issue #12, items 4 and 5): publishing again <= 2 s; a reconnect costs <= 1 KB when the "
          "inventory has not changed")


def scale(workdir: str, sizes_: list[int], seconds: float) -> None:
    """How the agent's costs grow with devices: lamp sites of 10..400 devices, each polled every 10 s (what
    a 9600-baud line of 100 lamps allows)."""
    print("  %8s %12s %10s %15s %10s %12s %12s" % ("devices", "readings/s", "CPU s", "CPU/1k readings",
                                                   "peak RSS", "inventory B", "SenML B/rdg"))
    for n in sizes_:
        folder = os.path.join(workdir, "scale-%d" % n)
        os.makedirs(folder, exist_ok=True)
        scenario = lamp_scenario(os.path.join(folder, "lamps.toml"), n)
        with SiteRun(scenario, folder, instant=True, interval=10.0) as run:
            say("%d devices: waiting for data" % n)
            run.wait_data(timeout=120)
            w = run.window(seconds, settle=BATCH_AGE + 1.5)
            assert run.tap is not None
            inventory = last_inventory(run.tap.messages) or b""
            s = sizes(run.tap.on("/data"), None)
        print("  %8d %12.1f %10.2f %13.1fms %8.1fMB %12d %12.2f" % (
            n, w.readings / (w.end - w.start), w.cpu, w.per_1k_readings * 1000, w.peak_rss_kib / 1024,
            len(inventory), s.per("senml")))


__all__ = ["latency", "print_sizes", "reconnect", "scale", "street_cpu", "street_full_rate", "throughput"]
