"""The SCSI disk over the ctypes librbd backend, against the mini cluster.

What is proven here against real Ceph: data written through the device is
the image's data (python3-rbd sees it and vice versa), every backend call
(CAW with its miscompare offset, WRITE SAME, zeroing, allocation map, resize
events) does what the SCSI layer relies on, COMPARE AND WRITE stays atomic
between two processes with their own RADOS clients, a lock move between live
clients is a handoff and only an unresponsive holder is fenced, and a stalled
cluster makes commands fail with BUSY instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import pytest
import rbd

from tcmu_handler.api import LunTable, Nexus, ScsiCommand, Status
from tcmu_handler.backends.rbd import RbdBackend
from tcmu_handler.config import DiskConfig
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.lock import LockState

BS = 512
NX = Nexus("iqn.1994-05.com.redhat:host1", "iqn.1994-05.com.redhat:host1,i,0x1", "iqn.t", "iqn.t,t,0x1", 1, 1)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rw10(op: int, lba: int, n: int) -> bytes:
    return struct.pack(">BBIBHB", op, 0, lba, 0, n, 0)


def caw_cdb(lba: int) -> bytes:
    return struct.pack(">BBQ3xBBB", 0x89, 0, lba, 1, 0, 0)


async def open_backend(cluster, image: str, **kw) -> RbdBackend:
    return await RbdBackend.open(pool=cluster.pool, image=image, conf=str(cluster.conf_path),
                                 keyring=str(cluster.admin_keyring), **kw)


async def make_disk(cluster, image: str, *, lock: bool | None = None, timeout: int = 30):
    backend = await open_backend(cluster, image, osd_op_timeout=timeout)
    disk = ScsiDisk(DiskConfig(wwn=f"wwn-{image}", lock_failover=lock, osd_op_timeout=timeout), backend)
    table = LunTable({0: disk})

    async def run(cdb: bytes, data: bytes | None = None, tag: int = 0):
        return await table.execute(ScsiCommand(cdb, 0, NX, task_tag=tag, data_out=data,
                                               edtl=len(data) if data else 0))
    r = await run(rw10(0x00, 0, 0)[:6])
    assert r.status == Status.CHECK_CONDITION  # power-on unit attention
    return disk, backend, run


def test_device_writes_are_the_image_data_and_image_writes_are_device_data(ceph_cluster, ioctx, rbd_image):
    async def go():
        disk, backend, run = await make_disk(ceph_cluster, rbd_image, lock=True)
        payload = os.urandom(64 * BS)
        # the first write takes the exclusive lock, then runs
        assert (await run(rw10(0x2A, 100, 64), payload)).status == Status.GOOD
        assert disk.lock.state is LockState.LOCKED
        await backend.close()
        with rbd.Image(ioctx, rbd_image) as img:
            assert img.read(100 * BS, 64 * BS) == payload
            other = os.urandom(8 * BS)
            img.write(other, 4000 * BS)
        disk, backend, run = await make_disk(ceph_cluster, rbd_image)
        r = await run(rw10(0x28, 4000, 8))
        assert r.status == Status.GOOD and bytes(r.data) == other
        await backend.close()
    asyncio.run(go())


def test_backend_calls_do_what_the_scsi_layer_relies_on(ceph_cluster, ioctx, rbd_image):
    async def go():
        be = await open_backend(ceph_cluster, rbd_image)
        assert be.size == 64 << 20 and be.object_size == 4 << 20 and be.supports_lock
        await be.write(0, b"A" * 4096)
        assert await be.compare_and_write(0, b"A" * BS, b"B" * BS) is None
        assert await be.compare_and_write(0, b"B" * 300 + b"x" + b"B" * 211, b"C" * BS) == 300
        assert bytes(await be.read(0, BS)) == b"B" * BS
        await be.writesame(8 << 20, 1 << 20, b"w" * BS)
        assert bytes(await be.read((9 << 20) - BS, BS)) == b"w" * BS
        await be.write_zeroes(8 << 20, 4 << 20)  # a whole object: deallocated
        assert bytes(await be.read(8 << 20, 4096)) == bytes(4096)
        ext = await be.extents(0, 16 << 20)
        assert [(e.offset, e.allocated) for e in ext][0] == (0, True)
        assert not any(e.allocated and e.offset < (12 << 20) and e.offset + e.length > (8 << 20) for e in ext)
        await be.write_zeroes(BS, BS)  # a partial block range reads zero at once
        assert bytes(await be.read(0, 2 * BS)) == b"B" * BS + bytes(BS)
        await be.discard(16 << 20, 4 << 20)
        await be.flush()
        await be.close()
    asyncio.run(go())


def test_resize_raises_capacity_data_has_changed(ceph_cluster, ioctx, rbd_image):
    async def go():
        disk, backend, run = await make_disk(ceph_cluster, rbd_image)
        with rbd.Image(ioctx, rbd_image) as img:
            img.resize(128 << 20)
        for _ in range(300):
            if disk.num_blocks == (128 << 20) // BS:
                break
            await asyncio.sleep(0.01)
        r = await run(bytes((0x25,)) + bytes(9))
        assert r.status == Status.CHECK_CONDITION and r.sense[12:14] == b"\x2a\x09"
        r = await run(bytes((0x25,)) + bytes(9))
        assert struct.unpack(">II", r.data) == ((128 << 20) // BS - 1, BS)
        await backend.close()
    asyncio.run(go())


def test_a_write_through_another_client_is_handed_the_lock_without_fencing(ceph_cluster, rbd_image):
    async def go():
        d1, b1, run1 = await make_disk(ceph_cluster, rbd_image, lock=True)
        d2, b2, run2 = await make_disk(ceph_cluster, rbd_image, lock=True)
        try:
            await handoff(d1, run1, b1, d2, run2, b2)
        finally:
            await b1.close()
            await b2.close()

    async def handoff(d1, run1, b1, d2, run2, b2):
        before = blocklist(ceph_cluster)
        assert await d1.lock.acquire()
        assert (await run1(rw10(0x2A, 0, 1), b"1" * BS)).status == Status.GOOD
        assert (await d2.lock.owners()) == await b1.lock_owners()
        # a write through gateway 2 asks gateway 1, which hands the lock over: no fencing
        assert (await run2(rw10(0x2A, 0, 1), b"2" * BS)).status == Status.GOOD
        assert d2.stats.lock_handoffs_in == 1 and d2.lock.state is LockState.LOCKED
        assert d1.stats.lock_handoffs_out == 1 and d1.lock.state is LockState.UNLOCKED
        r = await run1(rw10(0x28, 0, 1))
        assert r.status == Status.GOOD and bytes(r.data) == b"2" * BS
        # and back, the same way
        assert (await run1(rw10(0x2A, 0, 1), b"1" * BS)).status == Status.GOOD
        assert d1.stats.lock_handoffs_in == 1 and d2.stats.lock_handoffs_out == 1
        assert b1.reconnects == b2.reconnects == 0 and d1.stats.busy == d2.stats.busy == 0
        assert blocklist(ceph_cluster) == before
    asyncio.run(go())


def test_a_holder_that_does_not_hand_the_lock_over_is_fenced_and_its_write_is_busy(ceph_cluster, rbd_image):
    async def go():
        d1, b1, run1 = await make_disk(ceph_cluster, rbd_image, lock=True)
        d2, b2, run2 = await make_disk(ceph_cluster, rbd_image, lock=True)
        try:
            await takeover(d1, run1, b1, d2, run2)
        finally:
            await b1.close()
            await b2.close()

    async def takeover(d1, run1, b1, d2, run2):
        assert await d1.lock.acquire()
        assert (await run1(rw10(0x2A, 0, 1), b"1" * BS)).status == Status.GOOD
        d1.lock.release_requested = lambda asker: False  # gateway 1 does not hand it over
        assert (await run2(rw10(0x2A, 0, 1), b"2" * BS)).status == Status.GOOD
        assert d2.stats.lock_breaks == 1 and d2.lock.state is LockState.LOCKED
        # gateway 1 was blocklisted: a write of the session open then never lands -- refused
        # by the cluster (BUSY, not retried) or, once gateway 1 knows (its watch broke),
        # refused before it runs by dropping the connection
        for _ in range(2):
            r = await run1(rw10(0x2A, 0, 1), b"1" * BS)
            assert r.status == Status.BUSY, r
        assert r.drop_connection and d1.stats.lock_fenced == 1
        assert d1.lock.state is LockState.UNLOCKED
        # reads reconnect and see gateway 2's data
        r = await run1(rw10(0x28, 0, 1))
        assert r.status == Status.GOOD and bytes(r.data) == b"2" * BS
        # a new session through gateway 1 writes, the lock handed back by gateway 2
        nx2 = Nexus("iqn.1994-05.com.redhat:host2", "iqn.1994-05.com.redhat:host2,i,0x2", "iqn.t",
                    "iqn.t,t,0x1", 1, 1)
        await d1.execute(ScsiCommand(bytes(6), 0, nx2))
        r = await d1.execute(ScsiCommand(rw10(0x2A, 0, 1), 0, nx2, data_out=b"3" * BS, edtl=BS))
        assert r.status == Status.GOOD and d2.stats.lock_handoffs_out == 1
        assert b1.reconnects == 1
        r = await run2(rw10(0x28, 0, 1))
        assert r.status == Status.GOOD and bytes(r.data) == b"3" * BS
    asyncio.run(go())


def blocklist(cluster) -> set[str]:
    out = cluster.ceph("osd", "blocklist", "ls", "--format", "json")
    value, _ = json.JSONDecoder().raw_decode(out.strip())
    return {e["addr"] for e in value}


CAW_WORKER = textwrap.dedent("""
    import asyncio, json, struct, sys, time
    sys.path.insert(0, {repo!r})
    from tcmu_handler.api import Nexus, ScsiCommand, Status
    from tcmu_handler.backends.rbd import RbdBackend
    from tcmu_handler.config import DiskConfig
    from tcmu_handler.disk import ScsiDisk

    async def main(me, seconds, lock):
        be = await RbdBackend.open(pool={pool!r}, image={image!r}, conf={conf!r}, keyring={keyring!r})
        disk = ScsiDisk(DiskConfig(wwn="caw", lock_failover=lock), be)
        print("ready", flush=True)
        sys.stdin.readline()  # both clients race from here
        deadline = time.monotonic() + seconds
        nx = Nexus("iqn.w" + me, "iqn.w" + me + ",i,0x1", "iqn.t", "iqn.t,t,0x1", 1, 1)
        async def run(cdb, data=None):
            while True:  # an initiator retries BUSY (the lock moving between gateways)
                r = await disk.execute(ScsiCommand(cdb, 0, nx, data_out=data))
                if r.status != Status.BUSY:
                    return r
                await asyncio.sleep(0.01)
        await run(bytes(6))
        won = []
        i = 0
        while time.monotonic() < deadline:
            i += 1
            old = bytes((await run(struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0))).data)
            new = (me + ":" + str(i)).encode().ljust(512, b".")
            r = await run(struct.pack(">BBQ3xBBB", 0x89, 0, 0, 1, 0, 0), old + new)
            if r.status == Status.GOOD:
                won.append([old.rstrip(b".").decode(), new.rstrip(b".").decode()])
            elif r.status == Status.CHECK_CONDITION and r.sense[12] == 0x1D:
                pass
            else:
                raise SystemExit("unexpected result %r" % (r,))
        await disk.close()  # as a gateway stopping: hands the lock back, fences no one
        await be.close()
        print(json.dumps({{"won": won, "lock_acquired": disk.stats.lock_acquired,
                          "lock_breaks": disk.stats.lock_breaks}}))

    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3] == "lock"))
""")


@pytest.mark.parametrize("policy", ["librbd", "lock"])
def test_compare_and_write_is_atomic_between_two_rbd_clients(ceph_cluster, ioctx, rbd_image, policy):
    """Two processes, each its own RADOS client, race COMPARE AND WRITE on one block; with
    librbd passing the lock cooperatively, and with our lock policy (every lock move is a
    handoff between the two live gateways: nobody is fenced)."""
    with rbd.Image(ioctx, rbd_image) as img:
        img.write(b"init".ljust(BS, b"."), 0)
    script = CAW_WORKER.format(repo=REPO, pool=ceph_cluster.pool, image=rbd_image,
                               conf=str(ceph_cluster.conf_path), keyring=str(ceph_cluster.admin_keyring))
    procs = [subprocess.Popen([sys.executable, "-c", script, name, "1.5", policy], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    if policy == "lock":  # the lock really moved between the two clients
        assert sum(r["lock_acquired"] for r in results) > 2
        assert sum(r["lock_breaks"] for r in results) == 0
    results = [r["won"] for r in results]
    wins = [tuple(w) for r in results for w in r]
    olds = [old for old, _new in wins]
    assert len(olds) == len(set(olds)), "two COMPARE AND WRITEs succeeded on the same old value"
    # the successes form one chain of values starting at the initial one
    successor = dict(wins)
    value, steps = "init", 0
    while value in successor:
        value, steps = successor[value], steps + 1
    assert steps == len(wins)
    with rbd.Image(ioctx, rbd_image) as img:
        assert img.read(0, BS).rstrip(b".").decode() == value
    assert all(results), "each client should win at least once"


def test_stalled_cluster_turns_commands_into_busy_without_blocking_the_loop(ceph_cluster, rbd_image):
    async def go():
        disk, backend, run = await make_disk(ceph_cluster, rbd_image, timeout=2)
        try:
            await stall(disk, run)
        finally:
            await backend.close()

    async def stall(disk, run):
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1
        t = asyncio.create_task(ticker())
        ceph_cluster.ceph("osd", "pause")
        try:
            # the client learns of the pause flags with its next map; then reads stall
            for _ in range(10):
                start = time.monotonic()
                r = await run(rw10(0x28, 0, 8))
                elapsed = time.monotonic() - start
                if r.status != Status.GOOD:
                    break
                await asyncio.sleep(0.2)
        finally:
            ceph_cluster.ceph("osd", "unpause")
        t.cancel()
        assert r.status == Status.BUSY and disk.stats.timeouts == 1
        assert 2 <= elapsed < 30
        assert ticks >= elapsed / 0.05 * 0.5  # the loop kept running while librbd waited
        for _ in range(100):
            r = await run(rw10(0x28, 0, 8))
            if r.status == Status.GOOD:
                break
            await asyncio.sleep(0.1)
        assert r.status == Status.GOOD
    asyncio.run(go())


def test_factory_opens_disks_whose_reservations_are_cluster_wide(ceph_cluster, rados_client, rbd_image):
    from tcmu_handler.factory import close_disk, open_rbd_disk

    async def go():
        ioctx = rados_client.open_ioctx(ceph_cluster.pool)
        kw = dict(pool=ceph_cluster.pool, image=rbd_image, conf=str(ceph_cluster.conf_path),
                  keyring=str(ceph_cluster.admin_keyring), reservation_ioctx=ioctx)
        gw1 = await open_rbd_disk(DiskConfig(wwn="f1"), owner=True, **kw)
        gw2 = await open_rbd_disk(DiskConfig(wwn="f1"), **kw)
        try:
            other = Nexus("iqn.h2", "iqn.h2,i,0x1", "iqn.t", "iqn.t,t,0x2", 2, 2)
            for disk, nx in ((gw1, NX), (gw2, other)):
                await disk.execute(ScsiCommand(bytes(6), 0, nx))
            r = await gw1.execute(ScsiCommand(bytes(6).replace(b"\0", b"\x16", 1), 0, NX))  # RESERVE(6)
            assert r.status == Status.GOOD
            r = await gw2.execute(ScsiCommand(rw10(0x28, 0, 1), 0, other))
            assert r.status == Status.RESERVATION_CONFLICT
            assert ioctx.stat(f"gateway.pr.{gw1.backend.image_id}")[0] > 0
            assert gw1.lock.state is LockState.LOCKED  # the owner took the lock at open
            r = await gw1.execute(ScsiCommand(rw10(0x2A, 0, 1), 0, NX, data_out=bytes(BS)))
            assert r.status == Status.GOOD  # no BUSY on the owner's first write
        finally:
            await close_disk(gw1)
            await close_disk(gw2)
            ioctx.remove_object(f"gateway.pr.{gw1.backend.image_id}")
            ioctx.close()
    asyncio.run(go())
