"""gateway.iscsi.initiator over a real asyncio TCP connection (for scripted scenarios)."""

from __future__ import annotations

import asyncio

from gateway.iscsi.initiator import CommandResult, Initiator, LoginOutcome


class Client:
    """One iSCSI session: login, SCSI commands, task management, over TCP."""

    def __init__(self, ip: str, port: int, name: str, target: str, **kw) -> None:
        self.ip = ip
        self.port = port
        self.ini = Initiator(name, target, **kw)
        self.events: list = []
        self.closed = False

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.ip, self.port)

    async def pump(self, until=lambda events: False, timeout: float = 5.0) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
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

    async def login(self) -> LoginOutcome:
        await self.connect()
        self.ini.start_login()
        await self.pump(lambda evs: any(isinstance(e, LoginOutcome) for e in evs))
        outcome = next(e for e in self.events if isinstance(e, LoginOutcome))
        if outcome.status == (0, 0) and not self.ini.discovery:
            # Consume the new nexus's POWER ON, RESET unit attention, as initiators do.
            for _ in range(2):
                if (await self.command(bytes(6))).status == 0:
                    break
        return outcome

    async def command(self, cdb: bytes, timeout: float = 5.0, **kw) -> CommandResult:
        itt = self.ini.scsi(cdb, **kw)
        await self.pump(lambda evs: any(isinstance(e, CommandResult) and e.itt == itt for e in evs), timeout)
        for e in reversed(self.events):
            if isinstance(e, CommandResult) and e.itt == itt:
                return e
        raise TimeoutError(f"no response to CDB {cdb.hex()} in {timeout:g}s")

    def close(self) -> None:
        self.writer.close()
