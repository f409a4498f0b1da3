"""CJ/T 188-2004 water, gas and heat meters: what generic code asks (see protocols/family.py).

Every field comes from one 901F request; its reply is 0x16 data bytes (water, gas) or 0x2E (heat).
"""

from protocols import cjt188, family
from protocols.family import Option, PlannedRequest, number

#: the options a device may set (config `options = {...}`)
OPTIONS = {"meter_type": Option("int", 1, 255), "di_order": Option(), "preamble": Option("int", 0, 8),
    "status": Option(), "unit_code": Option(), "reply_delay_ms": Option("int", 0, 60000)}


class Family(family.Family):
    folder = "cjt188"
    title = "CJ/T 188"
    point_keys = ("field",)
    options = OPTIONS
    address_digits = 14
    address_what = "a CJ/T 188 meter address of up to 14 digits"
    link = (2400, "E")
    default_profile = "cjt188-water"
    simulator = "simulator.servers.cjt188:Cjt188Server"
    households = 1  # a CJ/T 188 meter is a household's water, gas or heat meter

    def check_point(self, spec: dict) -> "str | None":
        if type(spec.get("field")) is not str:
            return "field (such as flow_total) is required"
        return None

    def plan(self, device: str, points: list, options: dict, single: bool = False) -> list:
        preamble = int(options.get("preamble", 4))
        meter_type = int(options.get("meter_type", cjt188.METER_COLD_WATER))
        heat = 0x20 <= meter_type <= 0x2F
        return [PlannedRequest(device, self.name, [(p, 0) for p in points], di=0x901F,
                               request_bytes=preamble + 13 + 3, reply_bytes=13 + (0x2E if heat else 0x16))]

    def describe(self, request: PlannedRequest) -> str:
        di: int = request.di  # type: ignore[assignment]
        return "read %04X: %s" % (di, ", ".join(p.name for p, _ in request.points))

    def request_frame(self, address: str, options: dict, request: PlannedRequest) -> bytes:
        meter_type = int(options.get("meter_type", cjt188.METER_COLD_WATER))
        return cjt188.read_request(meter_type, address, 0x901F, 0, str(options.get("di_order", "lo_first")),
                                   int(options.get("preamble", 4)))

    def decode_spec(self, point: object, offset: int, name: int) -> list:
        p = point
        return [name, p.field, number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def write_spec(self, point: object, options: dict) -> list:
        return [point.field, int(options.get("meter_type", cjt188.METER_COLD_WATER)),  # type: ignore[attr-defined]
                str(options.get("di_order", "lo_first")), int(options.get("preamble", 4))]

    def compiled_entry(self, options: dict, tcp: bool = False) -> dict:
        opts = {}
        for k in ("meter_type", "unit_code"):
            if k in options:
                opts[k] = options[k]
        if type(options.get("status")) is dict:  # over the defaults
            opts["status"] = dict(cjt188.STATUS_DEFAULT, **options["status"])
        return {"options": opts}

    def probe_hint(self, profile: object, register: int) -> object:
        o = profile.options  # type: ignore[attr-defined]
        return (int(o.get("meter_type", 0x10)), o.get("di_order", "lo_first"))
