"""Modbus RTU / TCP: what generic code asks (see protocols/family.py).

Points of one device are merged per table (function code) into requests of at most `max_registers`
registers (profile option, device override; 125 at most), bridging gaps of up to `max_gap` unused
registers; line times follow protocol-facts §3.5 (characters on the line plus t3.5 around the reply).
"""

from protocols import family, modbus
from protocols.family import Option, PlannedRequest, number
from protocols.modbus import device

TABLES = ("holding", "input", "coil", "discrete")
FUNCTIONS = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
DEFAULT_MAX_GAP = 4


#: the options a device may set (config `options = {...}`)
OPTIONS = {"max_registers": Option("int", 1, 125), "max_gap": Option("int", 0, 124),
    "max_bits": Option("int", 1, 2000), "reply_delay_ms": Option("int", 0, 60000),
    "broadcast_delay_ms": Option("int", 0, 10000)}


class Family(family.Family):
    folder = "modbus"
    title = "Modbus"
    point_keys = ("table", "address", "type", "order")
    options = OPTIONS
    link = (9600, "N")
    tcp = True
    silence_framed = True
    reply_delay_ms = 0
    scan_timeout_ms = 100
    sweep = (1, 247)
    error_reply = "exception"
    simulator = "simulator.servers.modbus:ModbusServer"
    broadcast = True  # unit 0 on an RTU line (protocols/modbus/device.py: broadcast)

    def check_point(self, spec: dict) -> "str | None":
        table = spec.get("table", "holding")
        if table not in TABLES:
            return "table must be one of %s" % ", ".join(TABLES)
        address = spec.get("address")
        if type(address) is not int or not 0 <= address <= 65535:
            return "address must be an integer 0..65535"
        if type(spec.get("type", "u16")) is not str:
            return "type must be a string such as u16 or f32"
        return None

    def normalise_address(self, address: object, tcp: bool = False) -> str:
        high = 255 if tcp else 247
        text = str(address).strip() if type(address) is not bool else ""
        if not text.isdigit() or not 1 <= int(text) <= high:
            if tcp:
                raise ValueError("a Modbus unit id 0..255")
            raise ValueError("a Modbus unit address 1..247")
        return str(int(text))

    def birth_address(self, address: str) -> object:
        return int(address)  # a Modbus unit id is a uint (docs/payload.md)

    def config_address(self, address: object) -> str:
        return str(address)  # a unit is a number in TOML

    def plan(self, device: str, points: list, options: dict, single: bool = False) -> list:
        max_regs = min(int(options.get("max_registers", 125)), 125)
        max_bits = min(int(options.get("max_bits", 2000)), 2000)
        max_gap = int(options.get("max_gap", DEFAULT_MAX_GAP))
        out: list = []
        for table in TABLES:
            chosen = sorted([p for p in points if p.table == table], key=lambda p: (p.address, p.name))
            bits = table in ("coil", "discrete")
            limit = max_bits if bits else max_regs
            gap = max_gap * 16 if bits else max_gap
            current = None
            for p in chosen:
                n = p.register_count()
                if current is not None and not single:
                    end = current.address + current.count
                    new_end = max(end, p.address + n)
                    if p.address - end <= gap and new_end - current.address <= limit:
                        current.count = new_end - current.address
                        current.points.append((p, p.address - current.address))
                        continue
                current = PlannedRequest(device, self.name, [(p, 0)], function=FUNCTIONS[table], table=table,
                                         address=p.address, count=n)
                out.append(current)
        for r in out:
            r.request_bytes = 8
            r.reply_bytes = 5 + ((r.count + 7) // 8 if r.function <= 2 else 2 * r.count)
        return out

    def describe(self, request: PlannedRequest) -> str:
        names = ", ".join(p.name for p, _ in request.points)
        unit = "bits" if request.function <= 2 else "regs"
        last = request.address + request.count - 1
        return "FC%02d %s %d..%d (%d %s): %s" % (request.function, request.table, request.address, last,
                                                request.count, unit, names)

    def request_frame(self, address: str, options: dict, request: PlannedRequest) -> bytes:
        return modbus.rtu_frame(int(address), modbus.read_request(request.function, request.address,
                                                                  request.count))

    def decode_spec(self, point: object, offset: int, name: int) -> list:
        p = point
        return [name, offset, p.type, p.order, number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def write_spec(self, point: object, options: dict) -> list:
        p = point
        return [p.table, p.address, p.type, p.order, number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def broadcast_idle_ms(self, options: dict) -> int:
        return int(options.get("broadcast_delay_ms", device.BROADCAST_DELAY_MS))

    def compiled_entry(self, options: dict, tcp: bool = False) -> dict:
        return {"tcp": 1} if tcp else {}
