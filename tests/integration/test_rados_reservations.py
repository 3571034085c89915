"""Reservations kept in RADOS: every gateway enforces the same reservation.

Two stores with separate RADOS clients on one object stand for two gateways
exporting the same image; each backs its own disk.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest

from tcmu_handler.api import LunTable, Nexus, ScsiCommand, Status
from tcmu_handler.backends.memory import MemoryBackend
from tcmu_handler.config import DiskConfig
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.rados_prstore import RadosReservationStore

WE_AR = 0x7


def nexus(host: str, tpgt: int) -> Nexus:
    return Nexus(f"iqn.h:{host}", f"iqn.h:{host},i,0x1", "iqn.t", f"iqn.t,t,0x{tpgt}", tpgt, tpgt)


def pr_out(sa: int, rtype: int = 0) -> bytes:
    return struct.pack(">BBB2xIB", 0x5F, sa, rtype, 24, 0)


def params(key: int = 0, sark: int = 0) -> bytes:
    return struct.pack(">QQ8x", key, sark)


@pytest.fixture
def pr_oid(ioctx):
    name = f"gateway.pr.test-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    try:
        ioctx.remove_object(name)
    except Exception:
        pass


@pytest.fixture
def second_client(ceph_cluster):
    client = ceph_cluster.rados_connect()
    yield client
    client.shutdown()


class Gateway:
    def __init__(self, store: RadosReservationStore, backend: MemoryBackend) -> None:
        self.store = store
        self.disk = ScsiDisk(DiskConfig(wwn="pr-test"), backend, reservations=store)
        self.table = LunTable({0: self.disk})

    async def run(self, nx: Nexus, cdb: bytes, data: bytes | None = None):
        r = await self.table.execute(ScsiCommand(cdb, 0, nx, data_out=data))
        if r.status == Status.CHECK_CONDITION and r.sense[2] == 0x6 and r.sense[12] == 0x29:
            r = await self.table.execute(ScsiCommand(cdb, 0, nx, data_out=data))
        return r


async def two_gateways(ceph_cluster, rados_client, second_client, oid):
    io1 = rados_client.open_ioctx(ceph_cluster.pool)
    io2 = second_client.open_ioctx(ceph_cluster.pool)
    s1 = await RadosReservationStore.open(io1, oid)
    s2 = await RadosReservationStore.open(io2, oid)
    be = MemoryBackend(8 << 20)
    return Gateway(s1, be), Gateway(s2, be.peer()), (io1, io2)


def test_reservation_through_one_gateway_is_enforced_by_the_other_at_once(
        ceph_cluster, rados_client, second_client, pr_oid):
    async def go():
        gw1, gw2, ioctxs = await two_gateways(ceph_cluster, rados_client, second_client, pr_oid)
        try:
            h1, h2 = nexus("a", 1), nexus("b", 2)
            write = struct.pack(">BBIBHB", 0x2A, 0, 0, 0, 1, 0)
            assert (await gw2.run(h2, write, bytes(512))).status == Status.GOOD
            assert (await gw1.run(h1, pr_out(6), params(sark=0xA))).status == Status.GOOD
            assert (await gw1.run(h1, pr_out(1, WE_AR), params(key=0xA))).status == Status.GOOD
            # no sleep: the PR OUT completed only after gateway 2 acknowledged the change
            assert (await gw2.run(h2, write, bytes(512))).status == Status.RESERVATION_CONFLICT
            assert (await gw2.run(h2, pr_out(6), params(sark=0xB))).status == Status.GOOD
            assert (await gw2.run(h2, write, bytes(512))).status == Status.GOOD  # all registrants
            assert (await gw1.run(h1, pr_out(3), params(key=0xA))).status == Status.GOOD  # CLEAR
            r = await gw2.run(h2, write, bytes(512))
            assert r.status == Status.CHECK_CONDITION and r.sense[12:14] == b"\x2a\x03"
            assert (await gw2.run(h2, write, bytes(512))).status == Status.GOOD
        finally:
            await gw1.store.close()
            await gw2.store.close()
            for io in ioctxs:
                io.close()
    asyncio.run(go())


def test_concurrent_updates_from_two_gateways_lose_nothing_and_persist(
        ceph_cluster, rados_client, second_client, pr_oid):
    async def go():
        gw1, gw2, ioctxs = await two_gateways(ceph_cluster, rados_client, second_client, pr_oid)
        try:
            jobs = [gw.run(nexus(f"h{i}", 1 + (i % 2)), pr_out(6), params(sark=0x100 + i))
                    for i, gw in enumerate([gw1, gw2] * 12)]
            results = await asyncio.gather(*jobs)
            assert all(r.status == Status.GOOD for r in results)
            state = await gw2.store.load()
            assert sorted(r.key for r in state.registrations) == [0x100 + i for i in range(24)]
            assert state.generation == 24
        finally:
            await gw1.store.close()
            await gw2.store.close()
        io = ioctxs[0]
        reopened = await RadosReservationStore.open(io, pr_oid)
        assert len((await reopened.load()).registrations) == 24
        await reopened.close()
        for io in ioctxs:
            io.close()
    asyncio.run(go())
