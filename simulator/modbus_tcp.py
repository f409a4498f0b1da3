"""An optional Modbus TCP server for a bus: the same devices, addressed by unit id over MBAP."""

from __future__ import annotations

import socketserver
import threading
from typing import TYPE_CHECKING

from protocols import modbus, registry
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from simulator.bus import Bus


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(0.5)
        buf = b""
        owner = self.server.owner
        while not owner.stopping.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 7:
                try:
                    need = modbus.tcp_adu_length(buf[:7])
                except ProtocolError:
                    return  # not Modbus TCP: drop the connection, as devices do
                if len(buf) < need:
                    break
                adu, buf = buf[:need], buf[need:]
                reply = owner.answer(adu)
                if reply is not None:
                    try:
                        sock.sendall(reply)
                    except OSError:
                        return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    owner: ModbusTcpServer


class ModbusTcpServer:
    """Serves the Modbus devices of one bus on 127.0.0.1:port (0: any free port)."""

    def __init__(self, bus: Bus, port: int = 0, host: str = "127.0.0.1") -> None:
        self.bus = bus
        self.stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.owner = self
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    def answer(self, adu: bytes) -> bytes | None:
        """One request ADU -> the reply ADU (None: no answer), wire faults no_answer and late applied."""
        try:
            transaction, unit, pdu = modbus.tcp_parse(adu)
        except ProtocolError:
            return None
        sim_t = self.bus.clock.now()
        for device in self.bus.devices:
            if not registry.family(device.protocol).tcp or device.server.unit != unit:
                continue
            device.counts["requests"] += 1
            if device.down(sim_t) or device.faults.fires("no_answer"):
                device.counts["silent"] += 1
                return None
            late = device.faults.fires("late")
            if late:
                self.stopping.wait(float(late["delay"]))
            reply = device.server.handle_pdu(unit, pdu, sim_t)
            if reply is None:
                return None
            device.counts["answered"] += 1
            return modbus.tcp_frame(transaction, unit, reply)
        return None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="modbus-tcp-%s" % self.bus.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
