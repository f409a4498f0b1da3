"""Bring the network up at boot (Wi-Fi on ESP32 / Pico W) and set the clock by NTP.

A board has no battery clock: after a power cut it knows the time only from NTP. The network may come
up later than the board (a street cabinet's router boots with it and takes a minute), so a failed NTP
at boot is tried again by the uplink each time it reaches the broker, and every few minutes while it stays
connected, as long as the clock is not set (`clock_due`), and once a day after NTP set it, against drift:
lighting schedules, commands with an expiry and reading times all need it (firmware_py/clock.py says when
the clock is set).
"""

import time

from firmware_py import clock, rt

RESYNC_S = 24 * 3600  # a set clock is set again after this long (an RTC drifts seconds a day)
_checked = [0]  # rt.now() when NTP last set the clock, or when boot found it set
_server = [""]  # config.json `ntp_host`: the site's NTP server on a network without internet ("": ntptime's)


def up(cfg: dict, timeout_ms: int = 20000) -> None:
    from firmware_py import log

    log.set_level(cfg.get("log_level", "info"))
    _server[0] = cfg.get("ntp_host") or ""
    clock.set_floor(cfg.get("clock_floor"))
    wifi = cfg.get("wifi")
    if wifi:
        import network  # type: ignore[import-not-found]

        log.info("wifi: connecting to %s" % wifi["ssid"])
        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        if not sta.isconnected():
            sta.connect(wifi["ssid"], wifi.get("password", ""))
            start = time.ticks_ms()  # type: ignore[attr-defined]
            while not sta.isconnected():
                if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:  # type: ignore[attr-defined]
                    log.warning("wifi: %s did not connect within %d ms; polling goes on, the uplink retries"
                                % (wifi["ssid"], timeout_ms))
                    break  # the uplink retries; polling and the ring work offline
                time.sleep_ms(100)  # type: ignore[attr-defined]
        if sta.isconnected():
            log.info("wifi: connected to %s, address %s" % (wifi["ssid"], sta.ifconfig()[0]))
    _checked[0] = rt.now()  # a clock set at boot (the host's, or kept over a watchdog reset): a day
    sync_clock()  # without a network: tried again by the uplink once the broker is reached


def sync_clock() -> bool:
    """Set the clock by NTP; True when it was set. Never raises (no network, no server, no ntptime)."""
    try:
        import ntptime  # type: ignore[import-not-found]

        if _server[0]:
            ntptime.host = _server[0]
        before = rt.now()
        ntptime.settime()
    except Exception:
        return False
    after = rt.now()
    clock.jumped(before, after)
    _checked[0] = after
    return True


def clock_due(now: int) -> bool:
    """True when NTP should be asked now: the clock is not set (`clock.is_set`), or it was set (by NTP,
    or found set at boot: the host's, or an ESP32's kept over a watchdog reset) `RESYNC_S` ago, or it
    went back since."""
    if not clock.is_set(now):
        return True
    # by the clock, not ticks: ticks_diff wraps after 2**29 ms (6.2 days) without a connect
    return not 0 <= now - _checked[0] <= RESYNC_S
