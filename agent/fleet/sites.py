"""What the simulated gateways of `fieldlink sim fleet` hold: a city's mix of sites.

Gateway `i` of a fleet is one of three kinds of site, in turn (street, street, block, block, pump):

* **street** — a lighting cabinet (`lighting-cabinet`) and lamp controllers (`generic-lamp`);
* **block** — a residential block: DL/T 645 single-phase meters (`dlt645-1p`) and CJ/T 188 water
  meters (`cjt188-water`), alternating;
* **pump** — a pump house: pressure, flow, level, water quality sensors and a three-phase meter
  (`pressure-sensor`, `ultrasonic-flow`, `level-sensor`, `water-quality`, `dtsu666`) in turn.

Every device is polled for all of its profile's points, as the agent does without `points = [...]`.
`--mix street|block|pump` makes every gateway the same kind.
"""

from __future__ import annotations

import functools

from agent.config_model import CommandsConfig, Config
from agent.fleet.model import make_config
from protocols import registry
from protocols.profiles import Profile, load_profile

__all__ = ["KINDS", "MIXES", "device_address", "fleet_configs", "load_profiles", "model_address",
           "site_devices"]

KINDS = {
    "street": ("lighting-cabinet", "generic-lamp"),
    "block": ("dlt645-1p", "cjt188-water"),
    "pump": ("pressure-sensor", "ultrasonic-flow", "level-sensor", "water-quality", "dtsu666"),
}
MIXES = ("mixed", "street", "block", "pump")
_MIXED = ("street", "street", "block", "block", "pump")


def load_profiles(models: list[str] | None = None) -> dict[str, Profile]:
    """The packaged profiles the simulated sites use (each loaded once, shared by every gateway)."""
    names = models or sorted({m for kind in KINDS.values() for m in kind})
    return {m: load_profile(m) for m in names}


def device_address(protocol: str, n: int) -> str:
    """The `n`th address (from 0) on a bus as the config writes it, as the protocol's family numbers
    them: a meter's `n + 1` zero-filled to its digits (DL/T 645: 12, CJ/T 188: 14), otherwise the
    family's `--sweep` range in turn (a Modbus unit id 1..247)."""
    family = registry.family(protocol)
    if family.address_digits:
        return family.address_label(n + 1)
    low, high = family.sweep
    return family.address_label(low + n % (high - low + 1))


@functools.cache
def _protocol(model: str) -> str:
    return str(load_profile(model).protocol)


def model_address(model: str, n: int) -> str:
    """`device_address` for a device of profile `model`."""
    return device_address(_protocol(model), n)


def site_devices(kind: str, count: int, profiles: dict[str, Profile]) -> list[tuple[str, str, str]]:
    """(id, profile model, address) of the `count` devices of a site of `kind`."""
    out = []
    for n in range(count):
        if kind == "street":
            model = KINDS["street"][0] if n == 0 else KINDS["street"][1]
            ident = "cabinet" if n == 0 else "lamp-%03d" % n
        else:
            model = KINDS[kind][n % len(KINDS[kind])]
            ident = "%s-%03d" % (profiles[model].kind.replace("_", "-"), n + 1)
        out.append((ident, model, device_address(profiles[model].protocol, n)))
    return out


def fleet_configs(gateways: int, devices: int, interval: float, payload: str = "senml",
                  prefix: str = "fieldlink", health_interval: float = 60.0, mix: str = "mixed",
                  commands: CommandsConfig | None = None) -> list[Config]:
    """One `Config` per simulated gateway: ids `gw-00001`…, sites `site-00001`…"""
    if mix not in MIXES:
        raise ValueError("--mix must be one of %s, not %r" % (", ".join(MIXES), mix))
    profiles = load_profiles()
    out = []
    for i in range(gateways):
        kind = _MIXED[i % len(_MIXED)] if mix == "mixed" else mix
        out.append(make_config("gw-%05d" % (i + 1), "site-%05d" % (i + 1),
                               site_devices(kind, devices, profiles), profiles, interval, prefix=prefix,
                               payload=payload,
                               health_interval=health_interval, commands=commands))
    return out
