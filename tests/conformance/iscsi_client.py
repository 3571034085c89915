"""gateway.iscsi.initiator over a real asyncio TCP connection (for scripted scenarios)."""

from __future__ import annotations

from support.tcp_initiator import TcpInitiator

from gateway.iscsi.initiator import CommandResult, Initiator, LoginOutcome


class Client(TcpInitiator):
    """One iSCSI session: login, SCSI commands, task management, over TCP."""

    def __init__(self, ip: str, port: int, name: str, target: str, **kw) -> None:
        super().__init__(ip, port, Initiator(name, target, **kw))

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
