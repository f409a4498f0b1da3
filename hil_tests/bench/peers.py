"""The peers of the end-to-end rows: a pymodbus sync client doing only the agent's reads, and the
ThingsBoard IoT Gateway 3.8.5 (installed by `make bench-peers` in .peers/tb, a venv of its own).

    python -m hil_tests.bench.peers reads SPEC.json     # the pymodbus worker; prints its result as JSON

The pymodbus worker runs flat out (each bus's requests over and over) or paced (each device at its
planned interval, as the agent polls it).

Both poll the same simulated buses as the agent, in the same run, after the agent has stopped (one
client per RS-485 bus, as on a real line).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from hil_tests.bench.common import TB_PYTHON, Tap, cpu_seconds, rss_kib
from hil_tests.link import ROOT, Process

# ------------------------------------------------------------------------------------------- pymodbus


#: our protocol -> the ThingsBoard connector that reads it (the peer is measured on Modbus RTU only)
TB_CONNECTORS = {"modbus": "modbus"}


def read_plan(config_path: str) -> list[dict]:
    """The agent's Modbus requests per serial bus: [{path, baud, bits, requests: [[unit, fc, address,
    count]], devices: [{interval, requests}]}] (`bits` per character on the line; `requests` all of them
    in plan order; `devices` the same requests per device with the device's poll interval, for the paced
    worker)."""
    from agent.config import load_config
    from agent.link.serial_link import char_bits
    from agent.planner import plan_config

    config = load_config(config_path)
    out = []
    for plan in plan_config(config):
        if plan.tcp:
            continue
        devices: list[dict[str, Any]] = [
            {"interval": float(d.device.interval),
             "requests": [[int(d.device.address), r.function, r.address, r.count] for r in d.requests]}
            for d in plan.devices if d.profile.protocol in TB_CONNECTORS]
        reqs = [r for d in devices for r in d["requests"]]
        if reqs:
            bus = plan.bus
            bits = char_bits(bus.bytesize, bus.parity, bus.stopbits)
            out.append({"path": bus.port, "baud": bus.baud, "bits": bits, "requests": reqs,
                        "devices": devices})
    return out


def pymodbus_reads(config_path: str, seconds: float, workdir: str, paced: bool = False,
                   client: str = "pymodbus") -> dict:
    """Run the pymodbus worker over the agent's requests for `seconds`; its CPU and transaction count.
    Flat out (each bus's requests over and over), or `paced`: each device's requests at its planned
    interval, devices in deadline order, the thread sleeping until the next one is due (the agent's
    schedule: one thread per bus, a device polled one interval after it was due, or at once when late)."""
    spec = os.path.join(workdir, "%s-reads%s.json" % (client, "-paced" if paced else ""))
    with open(spec, "w") as f:
        json.dump({"seconds": seconds, "paced": paced, "client": client, "buses": read_plan(config_path)}, f)
    done = subprocess.run([sys.executable, "-m", "hil_tests.bench.peers", "reads", spec], cwd=ROOT,
                          capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError("%s worker failed: %s" % (client, done.stderr[-2000:]))
    return dict(json.loads(done.stdout))


def _drive(bus: dict, until: float, paced: bool, poll: Callable[[int], None]) -> None:
    """Poll the bus's devices (`poll(i)` reads device i's requests) until `until`: flat out, every device
    in plan order over and over, or `paced`: each device at its planned interval, devices in deadline
    order, sleeping until the next one is due, a device polled one interval after it was due or at once
    when late (the agent's scheduler; first polls 1 ms apart)."""
    count = len(bus["devices"])
    if not paced:
        while time.monotonic() < until:
            for i in range(count):
                poll(i)
        return
    start = time.monotonic()
    due = [(start + 0.001 * i, i) for i in range(count)]  # (due, device)
    heapq.heapify(due)
    while True:
        when, i = heapq.heappop(due)
        now = time.monotonic()
        if when >= until:
            break
        if when > now:
            time.sleep(when - now)
        poll(i)
        later = when + bus["devices"][i]["interval"]
        now = time.monotonic()
        heapq.heappush(due, (later if later > now else now, i))


def _read_loop(bus: dict, until: float, counts: dict[str, float], lock: threading.Lock,
               paced: bool = False) -> None:
    from pymodbus.client import ModbusSerialClient

    client = ModbusSerialClient(bus["path"], baudrate=bus["baud"], timeout=0.5, retries=0)
    if not client.connect():
        raise RuntimeError("pymodbus could not open %s" % bus["path"])
    calls = {1: client.read_coils, 2: client.read_discrete_inputs, 3: client.read_holding_registers,
             4: client.read_input_registers}
    done = errors = 0

    def read(requests: list) -> None:
        nonlocal done, errors
        for unit, function, address, count in requests:
            done += 1
            try:
                if calls[function](address, count=count, device_id=unit).isError():
                    errors += 1
            except Exception:  # pymodbus raises ModbusIOException on a timeout: counted, go on
                errors += 1

    try:
        _drive(bus, until, paced, lambda i: read(bus["devices"][i]["requests"]))
    finally:
        client.close()
        with lock:
            counts["transactions"] += done
            counts["errors"] += errors


def _bare_loop(bus: dict, until: float, counts: dict[str, float], lock: threading.Lock,
               paced: bool = False) -> None:
    """The floor of any Python RTU master on this machine: frames built once, os.write, the reply read
    with os.read (poll for what has not come yet) to its known length, t3.5 of silence before every
    request, no decode, no retries. Not a client anyone should ship (no CRC check, no error handling): it
    shows what the wake-ups and system calls of a transaction cost before any work is done.

    One wake-up per reply where a master can have it: the first reply shows how replies come. One piece
    (a simulator without line timing): poll until it is there, then sleep out t3.5 before the next
    request. In pieces, at line rate (a line-timed bus, as a real RS-485 line is): write, sleep until the
    whole reply and the t3.5 after it can have passed (the agent's timed read), read it at once; only a
    reply that is late then costs more wake-ups, and the next request waits t3.5 after it."""
    import select

    import serial

    from protocols import modbus

    port = serial.Serial(bus["path"], baudrate=bus["baud"], timeout=0)  # pyserial opens it non-blocking
    fd = port.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    t35 = modbus.t35(bus["baud"])
    char = bus["bits"] / bus["baud"]  # one character on the line

    def frame(unit: int, function: int, address: int, count: int) -> tuple[bytes, int, float]:
        size = 5 + (2 * count if function in (3, 4) else (count + 7) // 8)
        request = modbus.rtu_frame(unit, modbus.read_request(function, address, count))
        # the request's characters, the device's t3.5, the reply's characters and two more, the t3.5 after
        return request, size, (len(request) + size + 2) * char + 2 * t35

    devices = [[frame(*r) for r in d["requests"]] for d in bus["devices"]]
    done = errors = 0
    quiet_from = 0.0  # when the line last went quiet
    timed: bool | None = None  # replies come in pieces (learnt from the first one)
    late = True  # the last reply was not whole when the timed sleep ended: keep t3.5 after it

    def read(frames: list) -> None:
        nonlocal done, errors, quiet_from, timed, late
        for request, size, whole in frames:
            if late or not timed:
                wait = quiet_from + t35 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            os.write(fd, request)
            if timed:
                time.sleep(whole)
            got = pieces = 0
            deadline = time.monotonic() + 0.5
            at_once = bool(timed)  # after the timed sleep the reply is there: read it before any poll
            while got < size:
                if not at_once:
                    left = deadline - time.monotonic()
                    if left <= 0 or not poller.poll(left * 1000):
                        errors += 1
                        break
                try:
                    chunk = os.read(fd, 256)  # (a pty with nothing there reads 0 bytes or EAGAIN)
                except BlockingIOError:
                    chunk = b""
                if chunk:
                    got += len(chunk)
                    pieces += 1
                elif not at_once:
                    errors += 1  # readable but empty: the port went away
                    break
                if at_once:
                    late = got < size  # not whole when the timed sleep ended: t3.5 after it, then
                    at_once = False
            if timed is None and got >= size:
                timed = pieces > 1
            quiet_from = time.monotonic()
            done += 1

    try:
        _drive(bus, until, paced, lambda i: read(devices[i]))
    finally:
        port.close()
        with lock:
            counts["transactions"] += done
            counts["errors"] += errors


def reads_main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    counts: dict[str, float] = {"transactions": 0, "errors": 0}
    lock = threading.Lock()
    import pymodbus.client  # noqa: F401  (imported before the CPU count starts: not a transaction's cost)

    cpu0 = time.process_time()
    until = time.monotonic() + float(spec["seconds"])
    paced = bool(spec.get("paced"))
    loop = _bare_loop if spec.get("client") == "bare" else _read_loop
    threads = [threading.Thread(target=loop, args=(bus, until, counts, lock, paced))
               for bus in spec["buses"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts["cpu"] = time.process_time() - cpu0
    print(json.dumps(counts))
    return 0


# ------------------------------------------------------------------------------------------- ThingsBoard

TB_TYPES = {"u16": "16uint", "s16": "16int", "u32": "32uint", "s32": "32int", "u64": "64uint", "s64": "64int",
            "f32": "32float", "f64": "64float"}
TB_FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
SESSION_LIMITS = {"maxPayloadSize": 65536, "maxInflightMessages": 100,
                  "rateLimits": {"messages": "", "telemetryMessages": "", "telemetryDataPoints": ""}}


def tb_installed() -> bool:
    return os.access(TB_PYTHON, os.X_OK)


def tb_timeseries(profile: Any, names: list[str]) -> list[dict]:
    """The ThingsBoard Modbus connector's timeseries entries for our profile points (big-endian orders)."""
    out = []
    for name in names:
        p = profile.point(name)
        entry: dict[str, Any] = {"tag": name, "functionCode": TB_FUNCTIONS[p.table], "address": p.address}
        if p.table in ("coil", "discrete"):
            entry.update(type="bits", objectsCount=1)
        elif p.type.startswith("bit"):
            entry.update(type="bits", objectsCount=1, bit=int(p.type[3:]))
        elif p.type in TB_TYPES:
            entry.update(type=TB_TYPES[p.type], objectsCount=p.register_count())
        else:
            continue  # BCD and strings: not part of the compared sites
        if p.scale != 1:
            entry["multiplier"] = p.scale
        out.append(entry)
    return out


def tb_config(agent_config: str, directory: str, broker_port: int) -> str:
    """Write ThingsBoard gateway config files for the agent's Modbus RTU devices; returns the folder."""
    from agent.config import load_config

    config = load_config(agent_config)
    buses = {b.name: b for b in config.buses}
    slaves = []
    for device in config.devices:
        profile = config.profiles[device.profile]
        bus = buses[device.bus]
        if profile.protocol not in TB_CONNECTORS or bus.port.startswith("tcp://"):
            continue
        names = device.points if device.points is not None else profile.point_names()
        slaves.append({
            "type": "serial", "method": "rtu", "port": bus.port, "baudrate": bus.baud, "bytesize": 8,
            "parity": "N", "stopbits": bus.stopbits, "timeout": 1, "byteOrder": "BIG", "wordOrder": "BIG",
            "retries": False, "pollPeriod": int(device.interval * 1000), "unitId": int(device.address),
            "deviceName": device.id, "sendDataOnlyOnChange": False, "connectAttemptTimeMs": 500,
            "connectAttemptCount": 5, "waitAfterFailedAttemptsMs": 1000, "attributes": [],
            "timeseries": tb_timeseries(profile, names), "attributeUpdates": [], "rpc": []})
    conf = os.path.join(directory, "config")
    os.makedirs(conf, exist_ok=True)
    with open(os.path.join(conf, "modbus.json"), "w") as f:
        json.dump({"master": {"slaves": slaves}}, f, indent=1)
    main = {
        "thingsboard": {
            "host": "127.0.0.1", "port": broker_port, "remoteShell": False, "remoteConfiguration": False,
            "latencyDebugMode": False, "statistics": {"enable": False, "statsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False}, "maxPayloadSizeBytes": 65536, "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500, "checkConnectorsConfigurationInSeconds": 3600,
            "handleDeviceRenaming": False,
            "security": {"type": "accessToken", "accessToken": "bench"}, "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False}},
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": TB_CONNECTORS["modbus"], "name": "Modbus", "configuration": "modbus.json"}],
    }
    with open(os.path.join(conf, "tb_gateway.json"), "w") as f:
        json.dump(main, f, indent=1)
    return conf


class SessionLimits:
    """Answers the gateway's getSessionLimits RPC as a default ThingsBoard server would."""

    def __init__(self, host: str, port: int) -> None:
        self.tap = Tap(host, port, "v1/devices/me/rpc/request/+", client_id="bench-tb-server")
        self.tap.client.on_message = self._answer
        self.answered = 0

    def _answer(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            request = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(request, dict) and request.get("method") == "getSessionLimits":
            rid = msg.topic.rsplit("/", 1)[1]
            client.publish("v1/devices/me/rpc/response/" + rid, json.dumps(SESSION_LIMITS), qos=1)
            self.answered += 1

    def close(self) -> None:
        self.tap.close()


class TbGateway:
    """The ThingsBoard gateway as a subprocess (its own venv), its telemetry counted by a subscriber."""

    def __init__(self, agent_config: str, workdir: str, host: str, port: int) -> None:
        self.dir = os.path.join(workdir, "tb")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.conf = tb_config(agent_config, self.dir, port)
        self.server = SessionLimits(host, port)
        self.tap = Tap(host, port, "v1/gateway/#", client_id="bench-tb-tap")
        launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tb_launch.py")
        self.proc = Process("thingsboard-gateway", [TB_PYTHON, launcher, self.conf],
                            os.path.join(self.dir, "gateway.log"), cwd=self.dir)

    def telemetry(self, since: float = 0.0) -> tuple[int, int]:
        """(values, bytes) of the telemetry published since `since`."""
        values = size = 0
        for m in self.tap.on("v1/gateway/telemetry", since):
            size += len(m.payload)
            for entries in json.loads(m.payload).values():
                for entry in entries:
                    values += len(entry.get("values", {}))
        return values, size

    def wait_telemetry(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.alive:
            if self.telemetry()[0]:
                return True
            time.sleep(0.1)
        return False

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def peak_rss_kib(self) -> int:
        return rss_kib(self.proc.pid)[1]

    def log(self) -> str:
        return self.proc.log()[-3000:]

    def close(self) -> None:
        self.proc.stop(timeout=20)
        self.tap.close()
        self.server.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "reads":
        sys.exit(reads_main(sys.argv[2]))
    print("usage: python -m hil_tests.bench.peers reads SPEC.json", file=sys.stderr)
    sys.exit(2)
