"""The alarm map published on `…/alarm`, one copy for agent and board (docs/payload.md).

    {device, point (None for a device's comms), kind (threshold, fault, leak, comms, quality),
     value, state ("raised" | "cleared"), time (POSIX seconds, int)}
"""

KINDS = ("threshold", "fault", "leak", "comms", "quality")


def alarm(device: str, point: "str | None", kind: str, value: object, raised: bool, when: float) -> dict:
    """The alarm map (CBOR-encode it for the wire)."""
    return {"device": device, "point": point, "kind": kind, "value": value,
            "state": "raised" if raised else "cleared", "time": int(when)}
