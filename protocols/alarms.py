"""The alarm map published on `…/alarm`, one copy for agent and board (docs/payload.md).

    {device, point (None for a device's comms), kind (threshold, fault, leak, comms, quality),
     value, state ("raised" | "cleared"), time (POSIX seconds, int), n (the alarm's number)}

`n` is one more per alarm of a gateway (the agent keeps it in its outbox file, the board counts
boots * 65536 + alarms since boot): an alarm sent twice (its PUBACK lost) has the same `n`.
"""

KINDS = ("threshold", "fault", "leak", "comms", "quality")


def alarm(device: str, point: "str | None", kind: str, value: object, raised: bool, when: float,
          n: "int | None" = None) -> dict:
    """The alarm map (CBOR-encode it for the wire); `n` the alarm's number, when there is one."""
    out = {"device": device, "point": point, "kind": kind, "value": value,
           "state": "raised" if raised else "cleared", "time": int(when)}
    if n is not None:
        out["n"] = n
    return out
