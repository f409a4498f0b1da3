"""Bring the network up at boot (Wi-Fi on ESP32 / Pico W) and set the clock by NTP."""

import time


def up(cfg: dict, timeout_ms: int = 20000) -> None:
    wifi = cfg.get("wifi")
    if wifi:
        import network  # type: ignore[import-not-found]

        sta = network.WLAN(network.STA_IF)
        sta.active(True)
        if not sta.isconnected():
            sta.connect(wifi["ssid"], wifi.get("password", ""))
            start = time.ticks_ms()  # type: ignore[attr-defined]
            while not sta.isconnected():
                if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:  # type: ignore[attr-defined]
                    break  # the uplink retries; polling and the ring work offline
                time.sleep_ms(100)  # type: ignore[attr-defined]
    try:
        import ntptime  # type: ignore[import-not-found]

        ntptime.settime()
    except Exception:
        pass  # readings keep board time; the platform sees it in bt
