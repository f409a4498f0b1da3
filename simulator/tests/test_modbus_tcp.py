"""The optional Modbus TCP server: pymodbus's TCP client reads the same devices as the pty bus."""

from __future__ import annotations

from pymodbus.client import ModbusTcpClient

TCP_SITE = """
[[bus]]
name = "station"
instant = true
tcp = 0
[[bus.device]]
id = "flow"
profile = "ultrasonic-flow"
address = 6
[[bus.device]]
id = "lamp"
profile = "generic-lamp"
address = 7
"""


def test_modbus_tcp(make_site) -> None:  # type: ignore[no-untyped-def]
    site = make_site(TCP_SITE)
    host, port = site.describe()["buses"][0]["tcp"].split(":")
    client = ModbusTcpClient(host, port=int(port), timeout=3, retries=1)
    assert client.connect()
    try:
        rr = client.read_input_registers(4, count=2, device_id=6)
        assert not rr.isError()
        volume = client.convert_from_registers(rr.registers, client.DATATYPE.UINT32) * 0.1  # type: ignore[operator]
        truth = site.device("flow").truth("volume", site.clock.now())
        assert abs(volume - truth) <= 0.2  # type: ignore[operator]
        assert not client.write_register(0, 0, device_id=7).isError()
        assert site.device("lamp").truth("power", site.clock.now()) == 0
        site.device("lamp").inject("exception", {"code": 4})
        rr = client.read_input_registers(0, count=1, device_id=7)
        assert rr.isError() and rr.exception_code == 4
    finally:
        client.close()
