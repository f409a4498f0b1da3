"""Bring the network up at boot (Wi-Fi on ESP32 / Pico W) and set the clock by NTP."""

import time


def up(cfg: dict, timeout_ms: int = 20000) -> None:
    from firmware_py import log

    log.set_level(cfg.get("log_level", "info"))
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
    try:
        import ntptime  # type: ignore[import-not-found]

        ntptime.settime()
    except Exception:
        pass  # readings keep board time; the platform sees it in bt
