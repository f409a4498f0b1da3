"""DL/T 645-2007 and -1997 meters: what generic code asks (see protocols/family.py).

One request per data identifier; the members of a block DI such as 0001FF00, named by their
`block_index`, share it (a member's offset is its byte offset in the value). Line times follow
protocol-facts §1.8: wake-up preamble plus the meter's reply delay; follow-up frames are not counted
(whether a meter splits a reply is known only from its reply).
"""

from protocols import dlt645, family
from protocols.family import Option, PlannedRequest, number


def _hex(text: str) -> bool:
    for ch in text:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


def block_di(di: str, version: int) -> bool:
    """True for a block DI: 2007 FF in DI1 or DI0 (0001FF00); 1997 an F digit below DI1's high digit."""
    di = di.upper()
    if version == 2007:
        return di[4:6] == "FF" or di[6:8] == "FF"
    return "F" in di[1:]


def value_bytes(fmt: str) -> int:
    """Bytes of a value of format `fmt` (XXXXXX.XX -> 4)."""
    try:
        return int(dlt645.format_info(fmt)[0])
    except Exception:
        return (len(fmt.replace(".", "")) + 1) // 2


#: the options a device may set (config `options = {...}`)
OPTIONS = {"version": Option(), "preamble": Option("int", 0, 8), "time_sync_order": Option(),
    "baud_probe": Option(), "password": Option("hex4", secret=True), "operator": Option("hex4"),
    "reply_delay_ms": Option("int", 0, 60000)}


class Family(family.Family):
    folder = "dlt645"
    title = "DL/T 645"
    point_keys = ("di", "format", "signed", "block_index")
    exclusive_keys = ("block_index",)
    actions = ("relay_trip", "relay_close")
    options = OPTIONS
    address_digits = 12
    address_what = "a DL/T 645 meter address of up to 12 digits (as printed on the meter)"
    simulator = "simulator.servers.dlt645:Dlt645Server"
    households = 1  # a DL/T 645 meter is a household's electricity meter

    def __init__(self, name: str) -> None:
        family.Family.__init__(self, name)
        self.version = 1997 if name == "dlt645_1997" else 2007
        if self.version == 1997:
            self.title = "DL/T 645-1997"
            self.link = (1200, "E")
            self.default_profile = "dlt645-1997"
            self.actions = ()  # type: ignore[assignment]
        else:
            self.link = (2400, "E")
            self.default_profile = "dlt645-3p"

    def check_point(self, spec: dict) -> "str | None":
        di = spec.get("di")
        width = 8 if self.version == 2007 else 4
        if type(di) is not str or len(di) != width or not _hex(di):
            return "di must be %d hex digits" % width
        if type(spec.get("format")) is not str:
            return "format (such as XXXXXX.XX) is required"
        member = spec.get("block_index")
        if member is not None:
            if type(member) is not int or member < 0:
                return "block_index must be an integer >= 0"
            if not block_di(di, self.version):
                return ("block_index needs a block DI (FF in DI1 or DI0, 1997: an F digit), %s is a "
                        "single item" % di)
        return None

    def plan(self, device: str, points: list, options: dict, single: bool = False) -> list:
        preamble = int(options.get("preamble", 4))
        di_len = 4 if self.version == 2007 else 2
        requests: list = []
        by_di: dict = {}
        for p in points:
            di = str(p.di)
            # a block DI (0001FF00): the point's byte offset in the value and the reply up to its member
            size = value_bytes(p.format or "")
            index = p.block_index or 0
            reply_bytes = 12 + di_len + (index + 1) * size  # replies: FE optional; follow-ups not counted
            if di in by_di:  # points of one DI (block members, or scaled twice) share the request
                by_di[di].points.append((p, index * size))
                by_di[di].reply_bytes = max(by_di[di].reply_bytes, reply_bytes)
                continue
            r = PlannedRequest(device, self.name, [(p, index * size)], di=p.di,
                               request_bytes=preamble + 12 + di_len, reply_bytes=reply_bytes)
            by_di[di] = r
            requests.append(r)
        return requests

    def describe(self, request: PlannedRequest) -> str:
        return "read DI %s: %s" % (request.di, ", ".join(p.name for p, _ in request.points))

    def _version(self, options: dict) -> int:
        return int(options.get("version", self.version))

    def request_frame(self, address: str, options: dict, request: PlannedRequest) -> bytes:
        return dlt645.read_request(address, str(request.di), self._version(options),
                                   int(options.get("preamble", 4)))

    def decode_spec(self, point: object, offset: int, name: int) -> list:
        p = point
        # a block member: its bytes in the value; a point of its own: length 0, the whole value
        size = dlt645.format_info(p.format)[0] if p.block_index is not None else 0  # type: ignore[attr-defined]
        return [name, p.di, offset, size, p.format, bool(p.signed),  # type: ignore[attr-defined]
                number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def write_spec(self, point: object, options: dict) -> list:
        p = point
        return [p.di, p.format, bool(p.signed), number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def compiled_entry(self, options: dict, tcp: bool = False) -> dict:
        # how a B1 reply is followed up (C=12): bound, first SEQ, SEQ byte in replies, preamble
        out: dict = {"followup": [int(options.get("max_followups", dlt645.MAX_FOLLOWUPS)),
                                  int(options.get("followup_seq_start", 1)),
                                  int(bool(options.get("followup_reply_seq", True))),
                                  int(options.get("preamble", 4))]}
        if self._version(options) != self.version:
            out["version"] = self._version(options)
        if "password" in options:  # writes and relay actions (C=14, C=1C) need them on the board too
            out["credentials"] = [options["password"], options.get("operator")]
        return out

    def probe_hint(self, profile: object, register: int) -> object:
        return profile.points[0].di  # type: ignore[attr-defined]
