"""The firmware's main object: the board's jobs, built from the compiled config, and their supervision.

Jobs (asyncio, so the same loop runs on a board and under the WebAssembly VM), each a module:
- polling (firmware_py/poller.py): one task per bus, devices in turn when due, commands between
  polls; the transactions are the protocols' device steps (firmware_py/bus.py);
- packing (firmware_py/packs.py): readings into SenML-CBOR packs, packs and alarms into the flash ring;
- alarms (firmware_py/alarms.py): threshold rules, point quality, comms;
- commands (firmware_py/commands.py): check, queue and ack the commands from …/cmd;
- the uplink (firmware_py/uplink.py): the MQTT session that empties the ring;
- lighting (firmware_py/lighting.py, only when the config has schedules): the street's schedules on
  the board's own clock, no network needed;
- health (firmware_py/health.py): the health map;
and here the supervision: the watchdog is fed by the main loop only while every task made progress
recently.

State is preallocated at start (see docs/flashing.md, "Memory"): polling allocates only the
short-lived values the codecs and steps return.
"""

import asyncio
import sys

from firmware_py import boots, health, log, rt
from firmware_py.alarms import Alarms
from firmware_py.bus import UartBus
from firmware_py.commands import Commands, Remote
from firmware_py.health import ERRORS
from firmware_py.inventory import Inventory
from firmware_py.packs import Packs
from firmware_py.poller import Poller
from firmware_py.uplink import Uplink
from protocols.quality import QUALITY  # noqa: F401  (a point's quality code -> its name)

#: the longest hardware watchdog a port has: an RP2040 counts at most 8388 ms (an RP2350 16777), and
#: machine.WDT refuses more ("timeout exceeds 8388"); an ESP32 takes any
WDT_MAX_MS = {"rp2": 8000}


def wdt_timeout(watchdog_ms: int, platform: str = sys.platform) -> int:
    """The hardware watchdog's timeout for config `watchdog_ms` on `platform`. The main loop stops
    feeding it when a task shows no progress for `watchdog_ms` // 2, whatever the hardware's timeout."""
    return min(watchdog_ms, WDT_MAX_MS.get(platform, watchdog_ms))


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COUNTERS = ("made", "connects", "disconnects", "connect_failures", "packs", "alarms", "commands",
            "commands_bad", "acks", "acks_dropped", "inventories", "subscribes", "mended", "unmended")


class Firmware:
    """The gateway on a board; `main()` runs it."""

    def __init__(self, cfg: dict, hw) -> None:
        """Build everything from the compiled config; `cfg` is not kept (drop it after this)."""
        self.hw = hw
        log.set_level(cfg.get("log_level", "info"))
        g = cfg["gateway"]
        self.gateway_id = g["id"]
        self.site = g["site"]
        self.packs = Packs(cfg, hw)
        self.ring = self.packs.ring
        self.stats = {"polls": 0}
        for k in ERRORS:
            self.stats[k] = 0
        self.counters = {}
        for k in COUNTERS:
            self.counters[k] = 0
        inv = Inventory(cfg)
        self.inv = inv
        self.buses = [UartBus(spec, hw.uart(spec), self.stats) for spec in cfg["buses"]]
        self.boot = boots.count()
        self.packs.boot = self.boot  # marks what is recorded before the clock is set (firmware_py/clock.py)
        self.alarms = Alarms(inv, self.packs, self.counters, self.boot)
        self.quality = self.alarms.quality
        self.bad_answers = self.alarms.bad_answers
        for bus in self.buses:
            bus.quality = self.quality
            bus.on_quality = self.alarms.point_quality
        for d in range(inv.count):
            bus = self.buses[inv.bus[d]]
            bus.devices.append(d)
            bus.reader(inv, d)  # device steps, codecs and frame readers are loaded now, not later
        if inv.writes:
            from protocols import profiles  # noqa: F401  (Point.check_write for commands)
        spec = cfg.get("commands") or {}
        self.remote = Remote(spec, self.gateway_id, spec.get("path", "/cmdids.cbor"))
        zone = None
        if "zone" in cfg:  # the schedules' local time, and relay deadlines in the meters' local time
            from protocols.compiled import CompiledError
            from protocols.zone import zone_from_dict

            try:
                zone = zone_from_dict(cfg["zone"])
            except ValueError as exc:
                raise CompiledError("config.json: zone: %s" % exc) from None
        self.commands = Commands(inv, self.buses, self.counters, self.remote, zone)
        self.poller = Poller(inv, self.buses, self.packs, self.alarms, self.commands, self.counters)
        self.online = self.poller.online
        self.lighting: Any = None  # firmware_py.lighting.Lighting when the config has schedules
        if "lighting" in cfg:  # protocols/schedule, solar, zone and lighting are loaded only then
            from firmware_py.lighting import Lighting

            self.lighting = Lighting(cfg["lighting"], zone, inv, self.buses, self.poller, self.alarms,
                                     self.packs, self.ring.max_payload)
            self.poller.lighting = self.lighting
            self.commands.lighting = self.lighting
        self.uplink = Uplink(cfg, hw, self.packs, self.commands, self.counters, lambda: health.health(self),
                             self.boot)
        self.watchdog_ms = cfg.get("watchdog_ms", 30000)
        self.started = rt.ticks_ms()
        # a slot per task: buses, uplink, lighting (when there is one)
        self.beats = [rt.ticks_ms()] * (len(self.buses) + (2 if self.lighting is not None else 1))
        self.running = True
        log.info("boot %s (%s): %d buses, %d devices"
                 % (self.gateway_id, self.site, len(self.buses), inv.count))

    def alarm(self, d: int, point, kind: str, value, raised: bool, now: int) -> None:
        self.alarms.alarm(d, point, kind, value, raised, now)

    def _running(self) -> bool:
        return self.running

    async def main(self, run_ms: int = 0) -> None:
        """Run everything; feed the watchdog while every task shows progress. `run_ms` > 0 stops."""
        tasks = [asyncio.create_task(self.poller.poll_bus(b, self.beats, i, self._running))
                 for i, b in enumerate(self.buses)]
        tasks.append(asyncio.create_task(self.uplink.run(self.beats, len(self.buses), self._running)))
        if self.lighting is not None:
            slot = len(self.buses) + 1
            tasks.append(asyncio.create_task(self.lighting.run(self.beats, slot, self._running)))
        wdt = self.hw.wdt(wdt_timeout(self.watchdog_ms))
        limit = self.watchdog_ms // 2  # a task this long without progress: no more feeding
        start = rt.ticks_ms()
        while self.running:
            now = rt.ticks_ms()
            stuck = False
            for b in self.beats:
                if rt.ticks_diff(now, b) > limit:
                    stuck = True
            if not stuck:
                wdt.feed()
            self.packs.write_late()  # a pack kept in RAM whose PUBACK is late goes to flash
            if run_ms and rt.ticks_diff(now, start) >= run_ms:
                break
            await rt.sleep_ms(200)
        self.running = False
        self.packs.commit()
        await rt.sleep_ms(50)
        for t in tasks:
            t.cancel()
        await self.uplink.stop()
        self.ring.write_fresh()  # still not acknowledged: on flash for the next start
