"""A simulated county for `fieldlink fleet report`: gateways, their devices, the city's totals, and
the true value of every indicator, worked out here from the plan itself (not from what a report reads).

    plan = plan_county(gateways=500, lamps=5000, meters=20000, seed=7, now=time.time())
    plan.totals_toml()          # the totals file the report is run with
    plan.truth(stale_hours=24)  # what L1P3, L1P9 and L2P4 must come out as, city and districts

What a county holds (all chosen by `seed`):

* **street gateways** (their share of the gateways is the lamps' share of the devices) with lamp
  controllers (`generic-lamp`) whose `lights` add up to `lamps`: mostly 1, every 15th a controller
  of 2 to 4 lamps; about 1 in 12 lamps has no `[[rules]]` fault rule (not fault-alarmed);
* **block gateways** with `meters` household meters: DL/T 645 electricity (`dlt645-1p`), CJ/T 188 water
  and gas (`cjt188-water`, `cjt188-gas`) serving 1 household each (the default), every 40th a building
  meter serving 12 to 60 (`serves.households`), every 50th a heat meter (not part of L1P9); and per
  block gateway a water flow meter on 800 to 2,500 m of the water network, on every 3rd a gas
  pressure sensor (500 to 1,500 m), on every 4th a feeder meter on 1,000 to 3,000 m of the power network;
* about 4 % of the devices not answering: half of them answered a few hours ago (still reporting
  within 24 h: meters and sensors count, lamps do not since they are offline), half not for days or never;
* about 4 % of the gateways stale: their health is 30 to 90 hours old; half of them dropped their
  connection (their will is their retained status), half still show their old online status. Both
  keep their inventory on the broker (…/inventory is retained apart from the status), so their devices
  are in the report, counted by their last report (hours too old: none counts).

Districts: gateway `i` is in district `i % districts`. The totals are the inventory's lights,
households and lengths divided by a coverage drawn per district (so the indicators land on various
stars), summed for the city.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from agent.fleet.indicators import stars_for
from agent.fleet.sites import model_address

__all__ = ["DISTRICTS", "CountyDevice", "CountyGateway", "CountyPlan", "plan_county"]

DISTRICTS = ("Lixia", "Shizhong", "Huaiyin", "Tianqiao", "Licheng", "Changqing", "Zhangqiu", "Laiwu")
UTILITY_OF = {"dlt645-1p": "electricity", "cjt188-water": "water", "cjt188-gas": "gas"}
HOUR = 3600.0


@dataclass
class CountyDevice:
    id: str
    model: str
    address: str
    serves: dict | None = None
    lights: int | None = None
    armed: bool = True  # lamps: a fault rule watches lamp_failure
    online: bool = True
    age: float | None = 0.0  # seconds between its last answer and its gateway's health; None: never


@dataclass
class CountyGateway:
    id: str
    site: str
    district: str
    kind: str  # "street" or "block"
    devices: list[CountyDevice] = field(default_factory=list)
    age: float = 0.0  # seconds its health is older than now
    will: bool = False  # its connection dropped: the broker holds its will as its status


@dataclass
class CountyPlan:
    gateways: list[CountyGateway]
    districts: list[str]
    coverage: dict[str, dict[str, float]]  # district -> indicator part -> coverage the totals are made for

    # -- the totals file ------------------------------------------------------------------------------

    def _inventory(self, district: str) -> dict[str, float]:
        """Lights, households per utility and metres per network of every device in the district."""
        out = {"lights": 0.0, "water": 0.0, "electricity": 0.0, "gas": 0.0, "net_water": 0.0,
               "net_power": 0.0, "net_gas": 0.0}
        for g in self.gateways:
            if g.district != district:
                continue
            for d in g.devices:
                if d.lights:
                    out["lights"] += d.lights
                if d.model in UTILITY_OF:
                    out[UTILITY_OF[d.model]] += (d.serves or {}).get("households", 1)
                if d.serves and "network" in d.serves:
                    out["net_" + d.serves["network"]] += d.serves["length_m"]
        return out

    def totals(self) -> dict[str, Any]:
        """The totals (public lights, households, network lengths), city and per district."""
        districts: dict[str, dict[str, Any]] = {}
        for name in self.districts:
            inv = self._inventory(name)
            cov = self.coverage[name]

            def total(key: str, inv: dict = inv, cov: dict = cov) -> int:
                return max(1, math.ceil(inv[key] / cov[key]))

            districts[name] = {
                "public_lights": total("lights"),
                "households": {u: total(u) for u in ("water", "electricity", "gas")},
                "network_length_m": {n: total("net_" + n) for n in ("water", "power", "gas")},
            }
        city = {
            "public_lights": sum(d["public_lights"] for d in districts.values()),
            "households": {u: sum(d["households"][u] for d in districts.values())
                           for u in ("water", "electricity", "gas")},
            "network_length_m": {n: sum(d["network_length_m"][n] for d in districts.values())
                                 for n in ("water", "power", "gas")},
        }
        return {"city": city, "districts": districts}

    def totals_toml(self) -> str:
        t = self.totals()

        def table(values: dict) -> str:
            return "{%s}" % ", ".join("%s = %d" % kv for kv in values.items())

        lines = ["# a simulated county (fieldlink sim county): public lights, households and network",
                 "# lengths, for fieldlink fleet report --totals", ""]
        city = t["city"]
        lines += ["public_lights = %d" % city["public_lights"], "households = %s" % table(city["households"]),
                  "network_length_m = %s" % table(city["network_length_m"])]
        for name, d in t["districts"].items():
            lines += ["", "[districts.%s]" % name, "public_lights = %d" % d["public_lights"],
                      "households = %s" % table(d["households"]),
                      "network_length_m = %s" % table(d["network_length_m"])]
        return "\n".join(lines) + "\n"

    # -- the truth ------------------------------------------------------------------------------------

    def truth(self, stale_hours: float = 24.0) -> dict:
        """What each indicator must come out as, city and per district, for a report made while the
        plan's ages hold (the ages stay clear of `stale_hours` by hours, so minutes do not matter)."""
        totals = self.totals()
        out = {"stale_hours": stale_hours, "city": self._scope(None, totals["city"], stale_hours),
               "districts": {name: self._scope(name, totals["districts"][name], stale_hours)
                             for name in self.districts}}
        out["gateways"] = len(self.gateways)
        out["devices"] = sum(len(g.devices) for g in self.gateways)
        out["devices_in_retained_inventories"] = out["devices"]  # a will does not remove the inventory
        return out

    def _scope(self, district: str | None, totals: dict, stale_hours: float) -> dict:
        limit = stale_hours * HOUR
        lamps = 0
        households = {"water": 0, "electricity": 0, "gas": 0}
        lengths = {"water": Fraction(0), "power": Fraction(0), "gas": Fraction(0)}
        for g in self.gateways:
            if district is not None and g.district != district:
                continue
            for d in g.devices:
                if d.age is None or g.age + d.age > limit:
                    continue  # not reporting within the limit
                if d.lights and d.online and d.armed:
                    lamps += d.lights
                if d.model in UTILITY_OF:
                    households[UTILITY_OF[d.model]] += (d.serves or {}).get("households", 1)
                if d.serves and "network" in d.serves:
                    lengths[d.serves["network"]] += Fraction(str(d.serves["length_m"]))
        l1p3 = Fraction(lamps, totals["public_lights"])
        parts9 = {u: min(Fraction(1), Fraction(households[u], totals["households"][u])) for u in households}
        l1p9 = sum(parts9.values(), Fraction(0)) / 3
        parts4 = {n: min(Fraction(1), lengths[n] / totals["network_length_m"][n]) for n in lengths}
        l2p4 = sum(parts4.values(), Fraction(0)) / 3
        return {
            "L1P3": {"counted": lamps, "total": totals["public_lights"], "ratio": _f(l1p3),
                     "stars": stars_for("L1P3", l1p3)},
            "L1P9": {"counted": households, "total": totals["households"], "ratio": _f(l1p9),
                     "stars": stars_for("L1P9", l1p9)},
            "L2P4": {"counted": {n: _num(v) for n, v in lengths.items()}, "total": totals["network_length_m"],
                     "ratio": _f(l2p4), "stars": stars_for("L2P4", l2p4)},
        }


def _f(x: Fraction) -> str:
    return "%d/%d" % (x.numerator, x.denominator)


def _num(x: Fraction) -> int | float:
    return x.numerator if x.denominator == 1 else float(x)


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def plan_county(gateways: int, lamps: int, meters: int, seed: int = 1, districts: int = 5) -> CountyPlan:
    """The county of the module docstring. ValueError when the numbers cannot make one."""
    if gateways < 1 or lamps < 0 or meters < 0 or lamps + meters < 1:
        raise ValueError("a county needs at least one gateway and some lamps or meters")
    if not 1 <= districts <= len(DISTRICTS):
        raise ValueError("--districts must be 1 to %d" % len(DISTRICTS))
    rng = random.Random(seed)
    street = 0 if lamps == 0 else gateways if meters == 0 else round(gateways * lamps / (lamps + meters))
    street = min(max(street, 1 if lamps else 0), gateways - (1 if meters else 0))
    if (lamps and street < 1) or (meters and gateways - street < 1):
        raise ValueError("%d gateways cannot hold both lamps and meters: use at least 2" % gateways)
    names = list(DISTRICTS[:districts])
    plan: list[CountyGateway] = []
    lamp_share = _shares(lamps, street) if street else []
    meter_share = _shares(meters, gateways - street) if gateways > street else []
    for i in range(gateways):
        kind = "street" if i < street else "block"
        g = CountyGateway(id="gw-%05d" % (i + 1), site="%s-%04d" % (names[i % districts].lower(), i + 1),
                          district=names[i % districts], kind=kind)
        if kind == "street":
            _street(g, lamp_share[i], rng)
        else:
            _block(g, meter_share[i - street], i - street, rng)
        plan.append(g)
    for g in plan:  # devices that stopped answering
        for d in g.devices:
            if rng.random() < 0.04:
                d.online = False
                d.age = rng.uniform(2, 20) * HOUR if rng.random() < 0.5 else (
                    None if rng.random() < 0.3 else rng.uniform(30, 100) * HOUR)
            else:
                d.age = rng.uniform(0, 120)  # answered at its last poll, a minute or two before the health
    for g in rng.sample(plan, max(1, round(gateways * 0.04)) if gateways >= 5 else 0):
        g.age = rng.uniform(30, 90) * HOUR
        g.will = rng.random() < 0.5
    coverage = {}
    for name in names:  # what share of the district's totals its inventory is: varied stars
        coverage[name] = {"lights": rng.choice((0.62, 0.78, 0.93, 1.0)),
                          "water": rng.uniform(0.45, 0.95), "electricity": rng.uniform(0.5, 1.0),
                          "gas": rng.uniform(0.4, 0.9), "net_water": rng.uniform(0.6, 1.0),
                          "net_power": rng.uniform(0.6, 1.0), "net_gas": rng.uniform(0.5, 1.0)}
    return CountyPlan(plan, names, coverage)


def _street(g: CountyGateway, lights: int, rng: random.Random) -> None:
    n = 0
    while lights > 0:
        n += 1
        size = min(lights, rng.randint(2, 4)) if n % 15 == 0 else 1
        lights -= size
        g.devices.append(CountyDevice("lamp-%03d" % n, "generic-lamp", model_address("generic-lamp", n - 1),
                                      lights=size,
                                      armed=rng.random() >= 1 / 12))


def _block(g: CountyGateway, meters: int, index: int, rng: random.Random) -> None:
    kinds = ("dlt645-1p", "dlt645-1p", "cjt188-water", "dlt645-1p", "cjt188-water", "cjt188-gas",
             "dlt645-1p", "cjt188-water", "cjt188-gas")
    for n in range(meters):
        model = "cjt188-heat" if (index * 7 + n) % 50 == 49 else kinds[(index + n) % len(kinds)]
        serves = None
        if model in UTILITY_OF and (index * 3 + n) % 40 == 39:
            serves = {"households": rng.randint(12, 60)}
        g.devices.append(CountyDevice("meter-%03d" % (n + 1), model, model_address(model, n), serves=serves))
    units = 200
    g.devices.append(CountyDevice("flow-1", "ultrasonic-flow", str(units + 1),
                                  serves={"network": "water", "length_m": float(rng.randint(800, 2500))}))
    if index % 3 == 0:
        g.devices.append(CountyDevice("pressure-1", "pressure-sensor", str(units + 2),
                                      serves={"network": "gas", "length_m": float(rng.randint(500, 1500))}))
    if index % 4 == 0:
        length = float(rng.randint(1000, 3000))
        g.devices.append(CountyDevice("feeder-1", "dtsu666", str(units + 3),
                                      serves={"network": "power", "length_m": length}))

