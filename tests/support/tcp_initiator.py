"""gateway.iscsi.initiator driven over an asyncio TCP connection: the loop both test clients
(tests/conformance/iscsi_client.Client and tests/gateway_support.Session) share."""

from __future__ import annotations

import asyncio

from gateway.iscsi.initiator import Initiator


class TcpInitiator:
    #: seconds ``pump`` waits when the caller gives no timeout
    default_timeout = 5.0

    def __init__(self, ip: str, port: int, ini: Initiator) -> None:
        self.ip, self.port = ip, port
        self.ini = ini
        self.events: list = []
        self.closed = False

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.ip, self.port)

    async def pump(self, until=lambda events: False, timeout: float | None = None) -> list:
        """Send what the initiator produced and feed it what arrives, until ``until(events)``
        holds, the connection closes, or ``timeout`` passes; returns every event so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.default_timeout if timeout is None else timeout)
        while True:
            out = self.ini.data_to_send()
            if out:
                self.writer.write(out)
                await self.writer.drain()
            while (ev := self.ini.next_event()) is not None:
                self.events.append(ev)
            if until(self.events):
                return self.events
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self.events
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), remaining)
            except TimeoutError:
                return self.events
            if not data:
                self.closed = True
                return self.events
            self.ini.receive_data(data)
