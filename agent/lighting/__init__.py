"""Street lighting on the CPython side: compiling the gateway's time zone for protocols/schedule.py."""
