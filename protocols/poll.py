"""Poll backoff and the online/offline state machine, one copy for agent and board.

A device that answers a poll cycle (even with an error reply: it is there) is online; its next poll
is due one interval after the last was due (or now, when that is already past: the poll is late).
A cycle without any answer is a failure: after `offline_after` failures in a row the device is
reported offline, and it is retried after max(interval, `BACKOFF_TIMEOUTS` response timeouts),
doubling with every further failure up to max(`backoff_max`, interval). So a silent device costs
its neighbours on the bus at most a tenth of the line, halving with every failure, and the first
answer brings it back online. Times are in the caller's unit (seconds on the agent, ms on the board).
"""

OFFLINE_AFTER = 3  # failed poll cycles before a device is reported offline
BACKOFF_TIMEOUTS = 10  # a silent device is retried after max(interval, 10 response timeouts), doubling
BACKOFF_MAX_S = 300  # the longest retry delay (seconds), unless the interval is longer


def retry_delay(failures: int, interval: float, timeout: float, backoff_max: float) -> float:
    """The wait before the next poll of a device after `failures` (>= 1) failed cycles in a row."""
    base = max(interval, BACKOFF_TIMEOUTS * timeout)
    return min(base * (1 << min(failures - 1, 16)), max(backoff_max, interval))


def next_due(due: float, interval: float, now: float) -> float:
    """When an answering device is polled next: one interval after it was due, or now when late."""
    later = due + interval
    return later if later > now else now


def offline_now(failures: int, offline_after: int = OFFLINE_AFTER) -> bool:
    """True when a device with `failures` failed cycles in a row is to be reported offline."""
    return failures >= offline_after


def online_reason(failed: bool) -> str:
    """Why a device that answered is online (the comms alarm's cleared value)."""
    return "answering with errors" if failed else "answering"


def offline_reason(failures: int, last_error: str) -> str:
    """Why a device is offline (the comms alarm's raised value)."""
    return "no reply to %d polls (%s)" % (failures, last_error)
