"""Initiator and target state machines wired together in memory, byte for byte."""

from __future__ import annotations

import asyncio

from gateway.iscsi.chap import ChapCredentials
from gateway.iscsi.connection import TargetConnection
from gateway.iscsi.constants import TmfResponse
from gateway.iscsi.events import CommandReady, LogoutRequested, TaskManagement
from gateway.iscsi.framing import PduReader, frame
from gateway.iscsi.initiator import CommandResult, Initiator, LoginOutcome
from gateway.iscsi.login import LOGIN_SEGMENT, TargetLogin
from gateway.portal.registry import ClientAcl, PortalSpec, Target, TargetControls, TargetRegistry, Tpg
from tcmu_handler.api import DataDirection, LunTable, ScsiCommand
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.factory import memory_disk

TARGET = "iqn.2003-01.org.example:target"
INITIATOR = "iqn.2024-01.org.example:initiator"
LOCAL = ("127.0.4.1", 3260)


_LOOP = asyncio.new_event_loop()


def run_sync(coro):
    """Run one SCSI command's coroutine to completion (the memory disk finishes at once)."""
    return _LOOP.run_until_complete(coro)


def make_registry(*, acl: bool = True, chap: ChapCredentials | None = None, disk_size: int = 1 << 20,
                  controls: dict | None = None, clients=(INITIATOR,)) -> tuple[TargetRegistry, ScsiDisk]:
    disk = memory_disk(disk_size)
    reg = TargetRegistry()
    target = Target(TARGET, tpgs={1: Tpg(1, [PortalSpec(*LOCAL)], enabled=True),
                                  2: Tpg(2, [PortalSpec("10.0.0.2", 3260)], enabled=False)},
                    acl_enabled=acl, chap=None if acl else chap, luns=LunTable({0: disk}),
                    controls=TargetControls.from_dict(controls or {}))
    for name in clients:
        target.clients[name] = ClientAcl(name, LunTable({0: disk}), chap if acl else None)
    reg.set_target(target)
    return reg, disk


class Pair:
    """An Initiator talking to the target machines; commands run on the registry's LUNs."""

    def __init__(self, registry: TargetRegistry, initiator: Initiator, *, auto: bool = True,
                 local=LOCAL) -> None:
        self.registry = registry
        self.ini = initiator
        self.authority = registry.authority(local, ("127.0.4.99", 40000))
        depth = 128
        self.login = TargetLogin(self.authority, cmdsn_depth=depth)
        self.reader = PduReader(LOGIN_SEGMENT)
        self.conn: TargetConnection | None = None
        self.auto = auto
        self.ready: list = []       # CommandReady events held when auto=False
        self.tmfs: list[TaskManagement] = []
        self.logouts: list[LogoutRequested] = []
        self.events: list = []      # initiator events
        self.login_failed = None

    # -- plumbing --------------------------------------------------------------------
    def target_receive(self, data: bytes) -> None:
        if self.conn is None:
            self.reader.receive_data(data)
            while not self.login.finished and (pdu := self.reader.next_pdu()) is not None:
                rsp = self.login.receive(pdu)
                self.ini.receive_data(b"".join(bytes(b) for b in frame(rsp)))
            if self.login.failed:
                self.login_failed = self.login.failed
            elif self.login.result is not None:
                res = self.login.result
                target = None if res.discovery else res.target_name
                self.conn = TargetConnection(res, cmdsn_depth=self.login.cmdsn_depth,
                                             catalogue=lambda v: self.registry.catalogue(v, target))
            return
        self.conn.receive_data(data)
        self.drain_target()

    def drain_target(self) -> None:
        conn = self.conn
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, CommandReady):
                if self.auto:
                    self.run(ev.task)
                else:
                    self.ready.append(ev)
            elif isinstance(ev, TaskManagement):
                self.tmfs.append(ev)
                if self.auto:
                    for t in ev.running:
                        conn.abort_running(t)
                    conn.task_management_response(ev.itt, TmfResponse.COMPLETE)
            elif isinstance(ev, LogoutRequested):
                self.logouts.append(ev)
                conn.logout_response(ev.itt)
        self.flush_target()

    def run(self, task) -> None:
        rec = self.authority.record
        cmd = ScsiCommand(cdb=task.cdb, lun=task.lun, nexus=rec.nexus, task_tag=task.itt,
                          direction=DataDirection.WRITE if task.write else DataDirection.READ,
                          edtl=task.edtl, data_out=task.data_out)
        res = run_sync(rec.luns.execute(cmd))
        self.conn.complete(task, res.status, res.data, res.sense, res.transfer_length)

    def flush_target(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.ini.receive_data(b"".join(bytes(b) for b in out))

    def pump(self) -> list:
        """Move bytes until both sides are quiet; returns new initiator events."""
        for _ in range(10000):
            data = self.ini.data_to_send()
            if not data:
                break
            self.target_receive(data)
        new = []
        while (ev := self.ini.next_event()) is not None:
            new.append(ev)
        self.events += new
        return new

    # -- conveniences ------------------------------------------------------------------
    def do_login(self, discovery: bool = False) -> LoginOutcome:
        self.ini.start_login(discovery)
        outcome = [e for e in self.pump() if isinstance(e, LoginOutcome)]
        assert outcome, "login produced no outcome"
        return outcome[-1]

    def command(self, cdb: bytes, **kw) -> CommandResult:
        itt = self.ini.scsi(cdb, **kw)
        results = [e for e in self.pump() if isinstance(e, CommandResult) and e.itt == itt]
        assert results, "no response to the command"
        return results[0]


def logged_in(registry=None, *, initiator_kw=None, auto=True, **reg_kw) -> Pair:
    if registry is None:
        registry, _ = make_registry(**reg_kw)
    ini = Initiator(INITIATOR, TARGET, **(initiator_kw or {}))
    pair = Pair(registry, ini, auto=auto)
    outcome = pair.do_login()
    assert outcome.status == (0, 0), outcome
    if auto and registry.targets[TARGET].luns.luns:
        # A new nexus first gets POWER ON, RESET (SPC-4 6.1.2); initiators consume it
        # at LUN scan, and so do we, with TEST UNIT READY.
        statuses = [pair.command(bytes(6)).status for _ in range(2)]
        assert statuses[-1] == 0, statuses
    return pair


def read10(lba: int, blocks: int) -> bytes:
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])


def write10(lba: int, blocks: int) -> bytes:
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])
