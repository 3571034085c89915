"""The asyncio portal over real sockets: timers, live changes, hostile peers, digests.

The portal runs in-process (so controls can use timeouts shorter than the cfg file allows)
and is driven by gateway.iscsi.initiator over TCP on 127.0.4.20.
"""

from __future__ import annotations

import asyncio
import os

import iscsi_client
import pytest

from gateway.iscsi.constants import RejectReason
from gateway.iscsi.framing import frame
from gateway.iscsi.pdu import NopIn, NopOut, Reject
from gateway.portal.registry import ClientAcl, PortalSpec, Target, TargetControls, TargetRegistry, Tpg
from gateway.portal.server import PortalServer
from tcmu_handler.api import LunTable
from tcmu_handler.factory import memory_disk

IP = "127.0.4.20"
TARGET = "iqn.2003-01.org.example:portal-test"
ALICE = "iqn.2024-01.org.example:alice"
BOB = "iqn.2024-01.org.example:bob"


def read10(lba, blocks):
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + b"\0"


def write10(lba, blocks):
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + b"\0"


class Client(iscsi_client.Client):
    def __init__(self, port: int, name: str = ALICE, **kw) -> None:
        super().__init__(IP, port, name, TARGET, **kw)


@pytest.fixture
def portal():
    loop = asyncio.new_event_loop()
    disk = memory_disk(4 << 20)
    registry = TargetRegistry()
    controls = TargetControls(nopin_timeout=1, nopin_response_timeout=1, dataout_timeout=1)
    target = Target(TARGET, tpgs={1: Tpg(1, [], enabled=True)}, controls=controls,
                    clients={ALICE: ClientAcl(ALICE, LunTable({0: disk})),
                             BOB: ClientAcl(BOB, LunTable({0: disk}))})
    registry.set_target(target)
    server = PortalServer(registry, loop)
    _, port = loop.run_until_complete(server.listen(IP, 0))
    target.tpgs[1].portals = [PortalSpec(IP, port)]
    yield loop, server, registry, port
    loop.run_until_complete(server.close())
    loop.close()


def test_garbage_from_one_peer_does_not_disturb_another_session(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        for junk in (os.urandom(4096), b"\xff" * 48 + os.urandom(100), b"\x01" + b"\0" * 47):
            r, w = await asyncio.open_connection(IP, port)
            w.write(junk)
            await w.drain()
            await asyncio.sleep(0.05)
            w.close()
        data = os.urandom(8 * 512)
        assert (await alice.command(write10(0, 8), write=data)).status == 0
        assert (await alice.command(read10(0, 8), read_length=len(data))).data == data
        alice.close()

    loop.run_until_complete(scenario())


def test_disconnect_in_the_middle_of_a_write_is_harmless(portal):
    loop, server, registry, port = portal

    async def scenario():
        bob = Client(port, BOB, keys={"ImmediateData": "No", "InitialR2T": "Yes"})
        assert (await bob.login()).status == (0, 0)
        bob.ini._send_data = lambda *a, **k: None       # never answers the R2T
        bob.ini.scsi(write10(0, 64), write=b"x" * 64 * 512)
        await bob.pump(timeout=0.2)
        bob.close()
        await asyncio.sleep(0.1)
        assert registry.list_sessions() == []
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        assert (await alice.command(bytes(6))).status == 0
        alice.close()

    loop.run_until_complete(scenario())


def test_idle_connection_is_pinged_and_dropped_when_the_ping_is_not_answered(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        # An initiator that answers pings stays connected...
        await alice.pump(timeout=2.5)
        assert not alice.closed and any(isinstance(e, NopIn) for e in alice.events)
        # ...one that does not is dropped after nopin_timeout + nopin_response_timeout.
        alice.ini._send = lambda *a, **k: None
        await alice.pump(timeout=5)
        assert alice.closed

    loop.run_until_complete(scenario())


def test_write_without_data_out_is_dropped_after_dataout_timeout(portal):
    loop, server, registry, port = portal

    async def scenario():
        bob = Client(port, BOB, keys={"ImmediateData": "No", "InitialR2T": "Yes"})
        assert (await bob.login()).status == (0, 0)
        bob.ini._send_data = lambda *a, **k: None
        bob.ini.scsi(write10(0, 8), write=b"y" * 8 * 512)
        await bob.pump(timeout=5)
        assert bob.closed

    loop.run_until_complete(scenario())


def test_removing_a_client_closes_its_session_and_leaves_others_running(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice, bob = Client(port), Client(port, BOB)
        assert (await alice.login()).status == (0, 0)
        assert (await bob.login()).status == (0, 0)
        registry.remove_client(TARGET, BOB)
        await bob.pump(timeout=1)
        assert bob.closed
        assert (await alice.command(bytes(6))).status == 0
        assert [s["initiator"] for s in server.sessions()] == [ALICE]
        # A LUN mapped now is visible to the running session.
        registry.set_luns(TARGET, {0: memory_disk(1 << 20), 5: memory_disk(1 << 20)}, client_iqn=ALICE)
        # announced with REPORTED LUNS DATA HAS CHANGED, then the new LUN's power-on UA
        statuses = [(await alice.command(read10(0, 1), read_length=512, lun=5)).status for _ in range(3)]
        assert statuses == [2, 2, 0]
        alice.close()

    loop.run_until_complete(scenario())


def test_stopping_a_listener_keeps_established_sessions(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        await server.stop_listening(IP, port)
        with pytest.raises(OSError):
            await asyncio.open_connection(IP, port)
        assert (await alice.command(bytes(6))).status == 0
        alice.close()

    loop.run_until_complete(scenario())


def test_session_reinstatement_closes_the_old_connection(portal):
    loop, server, registry, port = portal

    async def scenario():
        first, second = Client(port), Client(port)           # same name, same ISID
        assert (await first.login()).status == (0, 0)
        assert (await second.login()).status == (0, 0)
        await first.pump(timeout=1)
        assert first.closed
        assert (await second.command(bytes(6))).status == 0
        second.close()

    loop.run_until_complete(scenario())


def test_oversize_data_segment_is_rejected_and_the_connection_survives(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        alice.ini.out.extend(frame(NopOut(immediate=True, itt=0x55, data=b"z" * (300 * 1024))))
        events = await alice.pump(lambda evs: any(isinstance(e, Reject) for e in evs))
        assert [e.reason for e in events if isinstance(e, Reject)] == [RejectReason.PROTOCOL_ERROR]
        assert (await alice.command(bytes(6))).status == 0
        alice.close()

    loop.run_until_complete(scenario())


def test_header_and_data_digests_over_tcp_with_large_transfers(portal):
    loop, server, registry, port = portal

    async def scenario():
        alice = Client(port, keys={"HeaderDigest": "CRC32C", "DataDigest": "CRC32C",
                                   "MaxRecvDataSegmentLength": "65536"})
        assert (await alice.login()).status == (0, 0)
        assert alice.ini.hd and alice.ini.dd
        data = os.urandom(1024 * 512)          # 512 KiB (the disk's maximum transfer): several bursts
        assert (await alice.command(write10(100, 1024), write=data)).status == 0
        assert (await alice.command(read10(100, 1024), read_length=len(data))).data == data
        alice.close()

    loop.run_until_complete(scenario())


def test_sync_listeners_follows_the_tpgs_enabled_on_this_gateway(portal):
    loop, server, registry, port = portal
    import socket
    with socket.socket() as s:
        s.bind(("127.0.4.21", 0))
        free = s.getsockname()[1]
    target = registry.targets[TARGET]
    target.tpgs[2] = Tpg(2, [PortalSpec("127.0.4.21", free)], enabled=True)

    async def scenario():
        await server.stop_listening(IP, port)
        target.tpgs[1].enabled = False
        await server.sync_listeners()
        assert server.listening == [("127.0.4.21", free)]
        r, w = await asyncio.open_connection("127.0.4.21", free)
        w.close()
        target.tpgs[2].enabled = False
        await server.sync_listeners()
        assert server.listening == []

    loop.run_until_complete(scenario())


def test_task_management_through_the_portal(portal):
    loop, server, registry, port = portal
    from gateway.iscsi.constants import TmfFunction, TmfResponse
    from gateway.iscsi.pdu import TaskManagementResponse

    async def answer(client, itt):
        def mine(e):
            return isinstance(e, TaskManagementResponse) and e.itt == itt
        await client.pump(lambda evs: any(mine(e) for e in evs))
        return next(e.response for e in client.events if mine(e))

    async def scenario():
        alice = Client(port)
        assert (await alice.login()).status == (0, 0)
        done = await alice.command(bytes(6))
        assert await answer(alice, alice.ini.tmf(TmfFunction.ABORT_TASK, ref_itt=done.itt,
                                                 ref_cmdsn=0)) == TmfResponse.TASK_DOES_NOT_EXIST
        assert await answer(alice, alice.ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=7)) == \
            TmfResponse.LUN_DOES_NOT_EXIST
        reset = alice.ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=0)
        assert await answer(alice, reset) == TmfResponse.COMPLETE
        assert await answer(alice, alice.ini.tmf(TmfFunction.TARGET_WARM_RESET)) == TmfResponse.COMPLETE
        # the reset is reported to every nexus, the one that asked for it included
        ua = await alice.command(bytes(6))
        assert ua.status == 2 and ua.sense[12:14] == bytes((0x29, 0x03))
        assert (await alice.command(bytes(6))).status == 0
        alice.close()

    loop.run_until_complete(scenario())


def test_target_cold_reset_answers_then_ends_every_session_of_the_target(portal):
    loop, server, registry, port = portal
    from gateway.iscsi.constants import TmfFunction, TmfResponse
    from gateway.iscsi.pdu import TaskManagementResponse

    async def scenario():
        alice, bob = Client(port), Client(port, BOB)
        assert (await alice.login()).status == (0, 0)
        assert (await bob.login()).status == (0, 0)
        itt = alice.ini.tmf(TmfFunction.TARGET_COLD_RESET)
        await alice.pump(lambda evs: alice.closed)
        rsp = [e for e in alice.events if isinstance(e, TaskManagementResponse) and e.itt == itt]
        assert rsp and rsp[0].response == TmfResponse.COMPLETE and alice.closed
        await bob.pump(lambda evs: bob.closed)
        assert bob.closed and server.sessions() == []
        # a new login works, and sees the reset
        carol = Client(port, BOB)
        assert (await carol.login()).status == (0, 0)
        carol.close()

    loop.run_until_complete(scenario())
