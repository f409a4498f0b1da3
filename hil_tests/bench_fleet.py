"""`make bench-fleet`: the fleet tools measured on this machine against one private Mosquitto.

1. the MQTT client of the fleet tools (agent/fleet/mqtt.py) against paho-mqtt driven from one selector
   loop: the same QoS 1 publishes over the same connections, CPU per message;
2. `sim fleet` with N gateways x M devices at an interval, SenML and compact: messages, bytes, readings,
   publish latency, the generator's CPU and the broker's CPU (from /proc), per second and per gateway
   per day (the figures docs/scaling.md is written from);
3. `sim county` + `fleet report` for 500 gateways, 5,000 lamps and 20,000 meters: the report's time and
   whether it equals the truth.

    .venv/bin/python -m hil_tests.bench_fleet [--quick] [--gateways 1000 --devices 40 --interval 60
                                               --seconds 180] [--json FILE]

Figures are printed, never asserted: a shared 2-core machine gives what it has at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from typing import Any

from hil_tests.broker import Mosquitto

DAY = 86400.0


def broker_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_rss_mb(pid: int) -> float:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- 1. client comparison -------------------------------------------------------------------------


def client_comparison(connections: int, messages: int, size: int) -> list[tuple[str, float, float]]:
    """(client, seconds, CPU microseconds per message) for `connections` x `messages` QoS 1 publishes."""
    from agent.fleet.mqtt import Session

    payload = os.urandom(size)
    out = []
    with Mosquitto() as broker:
        async def ours() -> tuple[float, float]:
            sessions = [Session("ours-%d" % i) for i in range(connections)]
            await asyncio.gather(*(s.connect(broker.host, broker.port) for s in sessions))
            t0, c0 = time.perf_counter(), _cpu()

            async def one(s: Session, i: int) -> None:
                window: list[Any] = []
                for _ in range(messages):
                    window.append(s.publish("bench/ours/%d/data" % i, payload, 1))
                    if len(window) >= 20:
                        await window.pop(0)
                await asyncio.gather(*window)

            await asyncio.gather(*(one(s, i) for i, s in enumerate(sessions)))
            took, cpu = time.perf_counter() - t0, _cpu() - c0
            for s in sessions:
                await s.disconnect()
            return took, cpu

        took, cpu = asyncio.run(ours())
        out.append(("FieldLink asyncio client", took, cpu / (connections * messages) * 1e6))
        took, cpu = _paho(broker, connections, messages, payload)
        out.append(("paho-mqtt 2.1, one selector loop", took, cpu / (connections * messages) * 1e6))
    return out


def _paho(broker: Mosquitto, connections: int, messages: int, payload: bytes) -> tuple[float, float]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    sel = selectors.DefaultSelector()
    acked = [0]
    clients = []
    for i in range(connections):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-%d" % i, clean_session=True)
        c.max_inflight_messages = 20
        c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
        c.connect(broker.host, broker.port, 60)
        clients.append(c)
    for c in clients:
        while not c.is_connected():
            c.loop(0.01)
        sel.register(c.socket(), selectors.EVENT_READ, c)  # type: ignore[arg-type]
    t0, c0 = time.perf_counter(), _cpu()
    sent = [0] * connections
    while acked[0] < connections * messages:
        for i, c in enumerate(clients):
            while sent[i] < messages and len(c._out_messages) < 20:  # the same window of 20 as ours
                c.publish("bench/paho/%d/data" % i, payload, 1)
                sent[i] += 1
            if c.want_write():
                c.loop_write()
        for key, _ in sel.select(0.01):
            key.data.loop_read()
        for c in clients:
            c.loop_misc()
    took, cpu = time.perf_counter() - t0, _cpu() - c0
    for c in clients:
        c.disconnect()
    return took, cpu


# -- 2. the fleet ---------------------------------------------------------------------------------


def consume(host: str, port: int) -> None:
    """A platform consumer in its own process: subscribes to every gateway's topics at QoS 1, counts,
    prints the count when SIGTERM comes (`--consume HOST:PORT`)."""
    import signal

    from agent.fleet.mqtt import Session

    count = [0, 0]

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        count[0] += 1
        count[1] += len(payload)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        s = Session("bench-consumer", on_message=on_message, max_packet=16 << 20)
        await s.connect(host, port)
        await s.subscribe([("fieldlink/#", 1)])
        print("subscribed", flush=True)
        await stop.wait()
        print(json.dumps({"messages": count[0], "bytes": count[1]}), flush=True)

    asyncio.run(main())


def fleet(gateways: int, devices: int, interval: float, seconds: float, payload: str,
          consumer: bool = False) -> dict:
    """One `sim fleet` run in this process; the engine's figures plus the broker's CPU and memory
    (with `consumer`, one platform consumer subscribed to everything in another process)."""
    from agent.config_model import CommandsConfig
    from agent.fleet.engine import Engine, Options, raise_fd_limit
    from agent.fleet.model import GatewayModel
    from agent.fleet.sites import fleet_configs

    raise_fd_limit(gateways + 64)
    configs = fleet_configs(gateways, devices, interval, payload=payload,
                            commands=CommandsConfig(signed="switching"))
    models = [GatewayModel(c, seed=i, clock=time.time, monotonic=time.monotonic, run_later=lambda d, f: None)
              for i, c in enumerate(configs)]
    with Mosquitto() as broker:
        assert broker.proc is not None
        pid = broker.proc.pid
        marks: dict[str, float] = {}
        reader = None
        if consumer:
            reader = subprocess.Popen([sys.executable, "-m", "hil_tests.bench_fleet", "--consume",
                                       broker.url], stdout=subprocess.PIPE, text=True)
            assert reader.stdout is not None and reader.stdout.readline().strip() == "subscribed"

        def window(edge: str) -> None:
            marks[edge] = broker_cpu(pid)
            marks[edge + "_rss"] = broker_rss_mb(pid)

        engine = Engine(models, Options(host=broker.host, port=broker.port, on_window=window))
        stats = asyncio.run(engine.run(seconds))
        consumed = None
        if reader is not None:
            reader.terminate()
            text, _ = reader.communicate(timeout=30)
            consumed = json.loads(text.strip().splitlines()[-1])
    out = stats.as_dict()
    out["payload"] = payload
    out["consumer"] = consumed
    out["broker_cpu_s"] = round(marks["end"] - marks["begin"], 2)
    out["broker_cpu_percent_of_one_core"] = round(100 * out["broker_cpu_s"] / stats.window, 1)
    out["broker_rss_mb"] = round(marks["end_rss"], 1)
    per_day = DAY / stats.window / gateways
    out["per_gateway_per_day"] = {
        "messages": round(sum(stats.messages.values()) * per_day),
        "data_messages": round(stats.messages.get("data", 0) * per_day),
        "payload_bytes": round(sum(stats.message_bytes.values()) * per_day),
        "data_payload_bytes": round(stats.message_bytes.get("data", 0) * per_day),
        "wire_bytes": round(stats.wire_bytes * per_day),
        "readings": round(stats.readings_published * per_day),
        "broker_cpu_s": round(out["broker_cpu_s"] * per_day, 3),
        "generator_cpu_s": round(stats.cpu * per_day, 3),
    }
    return out


# -- 3. county and report -------------------------------------------------------------------------


def county_report(gateways: int, lamps: int, meters: int) -> dict:
    from hil_tests.link import PYTHON, ROOT

    cli = [PYTHON, "-m", "agent.cli"]
    with Mosquitto() as broker, tempfile.TemporaryDirectory() as tmp:
        truth, totals = os.path.join(tmp, "truth.json"), os.path.join(tmp, "totals.toml")
        t0 = time.perf_counter()
        subprocess.run([*cli, "sim", "county", "--broker", broker.url, "--gateways", str(gateways), "--lamps",
                        str(lamps), "--meters", str(meters), "--truth", truth, "--totals", totals], cwd=ROOT,
                       check=True, capture_output=True, timeout=600)
        county_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = subprocess.run([*cli, "fleet", "report", "--broker", broker.url, "--totals", totals, "--json"],
                              cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
        report_s = time.perf_counter() - t0
        report = json.loads(done.stdout)
        with open(truth) as f:
            want = json.load(f)
    got = {s["scope"]: {i["code"]: (i["ratio"], i["stars"]) for i in s["indicators"]}
           for s in report["scopes"]}
    equal = all(got[name][code] == (w[code]["ratio"], w[code]["stars"])
                for name, w in [("city", want["city"]), *want["districts"].items()] for code in w
                if code.startswith("L"))
    return {"gateways": gateways, "lamps": lamps, "meters": meters, "devices": want["devices"],
            "county_s": round(county_s, 2), "report_s": round(report_s, 2),
            "collect_s": report["collected"]["seconds"], "compute_s": report["collected"]["compute_seconds"],
            "messages": report["collected"]["messages"], "equals_truth": equal}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 gateways x 10 devices, 20 s")
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--payloads", default="senml,compact")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: clients, fleet, county")
    parser.add_argument("--consumer", action="store_true",
                        help="also run a platform consumer subscribed to fieldlink/# (QoS 1) during the "
                             "fleet runs")
    parser.add_argument("--consume", metavar="HOST:PORT", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    args = parser.parse_args(argv)
    if args.consume:
        host, _, port = args.consume.rpartition(":")
        consume(host, int(port))
        return 0
    if args.quick:
        args.gateways, args.devices, args.seconds = 100, 10, 20.0
    skip = set(filter(None, args.skip.split(",")))
    figures: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                               "load_before": os.getloadavg()}
    if "clients" not in skip:
        n, m = (50, 40) if args.quick else (200, 100)
        print("MQTT client, %d connections x %d QoS 1 publishes of 1,500 bytes" % (n, m))
        rows = client_comparison(n, m, 1500)
        for name, took, per in rows:
            print("  %-36s %7.2f s  %6.1f us CPU per message" % (name, took, per))
        figures["clients"] = [{"client": n_, "seconds": round(t, 3), "cpu_us_per_message": round(p, 1)}
                              for n_, t, p in rows]
    if "fleet" not in skip:
        figures["fleet"] = []
        for payload in args.payloads.split(","):
            print("\nsim fleet: %d gateways x %d devices every %g s, %s, %g s measured%s"
                  % (args.gateways, args.devices, args.interval, payload, args.seconds,
                     ", one consumer of everything" if args.consumer else ""), flush=True)
            f = fleet(args.gateways, args.devices, args.interval, args.seconds, payload, args.consumer)
            figures["fleet"].append(f)
            d = f["per_gateway_per_day"]
            print("  messages/s %.1f, readings/s %.1f (expected %.1f), payload %.0f B/s, wire %.0f B/s"
                  % (f["messages_per_s"], f["readings_published_per_s"], f["readings_expected_per_s"],
                     f["bytes_per_s"], f["wire_bytes_per_s"]))
            print("  latency pack closed -> PUBACK p50 %.1f ms p99 %.1f ms; generator CPU %s %%, broker CPU "
                  "%s %% of one core, broker RSS %.0f MB; sustained %s"
                  % (f["latency_ms"]["p50"], f["latency_ms"]["p99"], f["cpu_percent_of_one_core"],
                     f["broker_cpu_percent_of_one_core"], f["broker_rss_mb"], f["sustained"]))
            print("  per gateway per day: %d messages (%d data), %.2f MB payload, %.2f MB on the wire, "
                  "%d readings, broker CPU %.2f s"
                  % (d["messages"], d["data_messages"], d["payload_bytes"] / 1e6, d["wire_bytes"] / 1e6,
                     d["readings"], d["broker_cpu_s"]))
    if "county" not in skip:
        g, lamps, meters = (100, 1000, 4000) if args.quick else (500, 5000, 20000)
        print("\nsim county + fleet report: %d gateways, %d lamps, %d meters" % (g, lamps, meters),
              flush=True)
        c = county_report(g, lamps, meters)
        figures["county"] = c
        print("  county published in %.1f s; report %.1f s (collect %.1f s, compute %.2f s, %d messages); "
              "equals truth: %s" % (c["county_s"], c["report_s"], c["collect_s"], c["compute_s"],
                                    c["messages"], c["equals_truth"]))
    figures["load_after"] = os.getloadavg()
    print("\nload average before %s, after %s (2-core machine shared with other developers)"
          % (tuple(round(x, 1) for x in figures["load_before"]),
             tuple(round(x, 1) for x in figures["load_after"])))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
