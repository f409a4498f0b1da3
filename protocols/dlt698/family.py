"""DL/T 698.45 meters: what generic code asks (see protocols/family.py).

Points name an attribute OAD ("00100200") and, for an array read whole, an element (1-based). The
planner reads each distinct OAD once and puts up to `max_oads` (profile option, device override; 10)
of them in one GET-Request-NormalList (one OAD alone: GET-Request-Normal). Line costs: the frame's
own bytes (68, length, control, SA flag, SA, CA, HCS, APDU, FCS, 16) with `preamble` FE bytes and the
meter's reply delay; a response's data size is estimated from the OAD table (arrays as many elements
as the points ask, at least one).
"""

from protocols import dlt698, family
from protocols.dlt698.table import OAD_TABLE, attribute_oad, element_index
from protocols.family import Option, PlannedRequest, number

#: the options a device may set (config `options = {...}`)
OPTIONS = {"preamble": Option("int", 0, 8), "client_address": Option("int", 0, 255),
           "max_oads": Option("int", 1, dlt698.MAX_OADS), "reply_delay_ms": Option("int", 0, 60000)}

# A-XDR encoded size (tag included) of one value of a type, for the line-time estimate
_SIZES = {5: 5, 6: 5, 16: 3, 18: 3, 28: 8}
FRAME_BYTES = 17  # 68 L(2) C SA-flag SA(6) CA HCS(2) FCS(2) 16, for a 6-byte server address


def _hex(text: str) -> bool:
    for ch in text:
        if ch not in "0123456789abcdefABCDEF":
            return False
    return True


def data_bytes(oad: str, elements: int) -> int:
    """Estimated A-XDR bytes of the data of `oad` (an array: `elements` of them)."""
    entry = OAD_TABLE.get(attribute_oad(oad))
    if entry is None:
        return 5
    _name, tag, element_tag, _scaler, _unit = entry
    if element_tag is not None and not element_index(oad):
        return 2 + max(1, elements) * _SIZES.get(element_tag, 5)
    return _SIZES.get(element_tag if element_tag is not None else tag, 5)


class Family(family.Family):
    folder = "dlt698"
    title = "DL/T 698.45"
    point_keys = ("oad", "element")
    exclusive_keys = ("element",)
    options = OPTIONS
    address_digits = 12
    address_what = "a DL/T 698.45 server address of up to 12 digits (as printed on the meter)"
    link = (2400, "E")
    default_profile = "dlt698-3p"
    simulator = "simulator.servers.dlt698:Dlt698Server"

    def check_point(self, spec: dict) -> "str | None":
        oad = spec.get("oad")
        if type(oad) is not str or len(oad) != 8 or not _hex(oad):
            return "oad must be 8 hex digits such as 00100200"
        element = spec.get("element")
        if element is not None:
            if type(element) is not int or not 1 <= element <= 255:
                return "element must be an integer 1..255 (1 is the first)"
            if oad[6:] != "00":
                return "element needs the whole attribute (OAD index 00), %s names element %d already" % (
                    oad, int(oad[6:], 16))
        return None

    def plan(self, device: str, points: list, options: dict, single: bool = False) -> list:
        limit = 1 if single else max(1, min(int(options.get("max_oads", 10)), dlt698.MAX_OADS))
        preamble = int(options.get("preamble", 4))
        oads: list = []  # distinct OADs in point order, with the points of each
        by_oad: dict = {}
        for p in points:
            oad = str(p.oad).upper()
            if oad not in by_oad:
                by_oad[oad] = []
                oads.append(oad)
            by_oad[oad].append(p)
        out = []
        for i in range(0, len(oads), limit):
            chunk = oads[i:i + limit]
            pts = [(p, 0) for oad in chunk for p in by_oad[oad]]
            apdu_out = 3 + (1 if len(chunk) > 1 else 0) + 4 * len(chunk) + 1
            apdu_in = 3 + (1 if len(chunk) > 1 else 0) + 2
            for oad in chunk:
                elements = max([p.element or 1 for p in by_oad[oad]])
                apdu_in += 5 + data_bytes(oad, elements)
            out.append(PlannedRequest(device, self.name, pts, di=chunk, request_bytes=preamble + FRAME_BYTES
                                      + apdu_out, reply_bytes=FRAME_BYTES + apdu_in))
        return out

    def describe(self, request: PlannedRequest) -> str:
        oads = request.di if type(request.di) is list else [request.di]
        return "GET %s: %s" % (" ".join(oads), ", ".join(p.name for p, _ in request.points))  # type: ignore[arg-type]

    def request_frame(self, address: str, options: dict, request: PlannedRequest) -> bytes:
        oads = request.di if len(request.di) > 1 else request.di[0]  # type: ignore[arg-type,index]
        return dlt698.read_request(address, oads, 0, int(options.get("client_address", 0)),  # type: ignore[arg-type]
                                   preamble=int(options.get("preamble", 4)))

    def decode_spec(self, point: object, offset: int, name: int) -> list:
        p = point
        return [name, str(p.oad).upper(), p.element or 0,  # type: ignore[attr-defined]
                number(p.scale), number(p.offset)]  # type: ignore[attr-defined]

    def compiled_entry(self, options: dict, tcp: bool = False) -> dict:
        return {"options": {"client": int(options.get("client_address", 0)),
                            "preamble": int(options.get("preamble", 4))}}

    def probe_hint(self, profile: object, register: int) -> object:
        return str(profile.points[0].oad)  # type: ignore[attr-defined]
