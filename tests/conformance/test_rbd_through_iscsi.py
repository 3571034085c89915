"""RBD images through the portal, with real initiators: what qemu-img (libiscsi) writes is what
python3-rbd reads and the other way round; COMPARE AND WRITE from two initiators through two
gateway processes is atomic."""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import subprocess
import uuid

import pytest
import rbd
from iscsi_client import Client
from portal_process import running_portal
from support.rbd_images import remove_image

TARGET = "iqn.2003-01.org.ceph.iscsi-gw:rbd-data"
BS = 512
MiB = 1 << 20
ALICE = "iqn.2024-01.org.example:alice"
BOB = "iqn.2024-01.org.example:bob"


@pytest.fixture
def image(ceph_cluster):
    """A fresh image; removed with its reservation and lock handoff objects afterwards."""
    cluster = ceph_cluster.rados_connect()
    ioctx = cluster.open_ioctx(ceph_cluster.pool)
    name = f"data-{uuid.uuid4().hex[:8]}"
    rbd.RBD().create(ioctx, name, 32 * MiB, old_format=False,
                     features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                     | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
    yield ioctx, name
    remove_image(ioctx, name)
    ioctx.close()
    cluster.shutdown()


def portal_args(ceph_cluster, ioctx, name: str, *more: str) -> list[str]:
    return ["--rbd", f"{ioctx.get_pool_name()}/{name}", "--ceph-conf", str(ceph_cluster.conf_path), *more]


def qemu_img(*args: str) -> None:
    out = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_data_written_with_rbd_reads_back_through_iscsi_and_the_other_way(ceph_cluster, image, tmp_path):
    ioctx, name = image
    before, after = os.urandom(32 * MiB), os.urandom(32 * MiB)
    with rbd.Image(ioctx, name) as img:
        img.write(before, 0)
    src, back = tmp_path / "src.raw", tmp_path / "back.raw"
    src.write_bytes(after)
    with running_portal("127.0.10.21", *portal_args(ceph_cluster, ioctx, name), iqn=TARGET) as portal:
        opts = f"driver=iscsi,transport=tcp,portal={portal.address},target={TARGET},lun=0"
        qemu_img("convert", "-O", "raw", "--image-opts", opts, str(back))
        assert sha(back.read_bytes()) == sha(before)  # python3-rbd -> iSCSI
        qemu_img("convert", "-n", "-f", "raw", "--target-image-opts", str(src), opts)
        with rbd.Image(ioctx, name, read_only=True) as img:  # reads need no lock: while serving
            assert sha(img.read(0, 32 * MiB)) == sha(after)  # iSCSI -> python3-rbd
    with rbd.Image(ioctx, name) as img:
        assert sha(img.read(0, 32 * MiB)) == sha(after)


# -- COMPARE AND WRITE through two gateways -------------------------------------------------------------
READ10 = struct.pack(">BBIBHB", 0x28, 0, 0, 0, 1, 0)
CAW = struct.pack(">BBQ3xBBB", 0x89, 0, 0, 1, 0, 0)


async def hammer(client: Client, me: str, start: asyncio.Event, seconds: float) -> dict:
    """Read block 0, then COMPARE AND WRITE it from what was read to a value of our own,
    again and again.  BUSY is retried, as an initiator does (a lock move that took too long)."""
    loop = asyncio.get_running_loop()
    await start.wait()
    deadline = loop.time() + seconds
    tried, won, busy, i = [], [], 0, 0
    while loop.time() < deadline:
        i += 1
        r = await client.command(READ10, read_length=BS, timeout=60)
        assert r.status == 0, r
        old = r.data
        new = f"{me}:{i}".encode().ljust(BS, b".")
        while True:
            r = await client.command(CAW, write=old + new, timeout=60)
            if r.status != 8:
                break
            busy += 1
            await asyncio.sleep(0.01)
        tried.append(old.rstrip(b".").decode())
        if r.status == 0:
            won.append((old.rstrip(b".").decode(), new.rstrip(b".").decode()))
        else:
            assert r.status == 2 and r.sense[2] & 0x0F == 0x0E and r.sense[12:14] == b"\x1d\x00", r
    return {"tried": tried, "won": won, "busy": busy}


def test_compare_and_write_through_two_gateways_never_succeeds_twice_on_one_old_value(ceph_cluster, image):
    """Two initiators, each through its own gateway process (own RADOS clients, the exclusive
    lock moving between them on every write), race COMPARE AND WRITE on block 0.  Both
    gateways are alive, so every lock move is a handoff: nobody is fenced."""
    ioctx, name = image
    with rbd.Image(ioctx, name) as img:
        img.write(b"init".ljust(BS, b"."), 0)
    acl = ["--acl", ALICE, "--acl", BOB, "--alua-tpgs", "1,2"]
    with running_portal("127.0.10.22", *portal_args(ceph_cluster, ioctx, name, "--tpg", "1", *acl),
                        iqn=TARGET) as gw1, \
            running_portal("127.0.10.23", *portal_args(ceph_cluster, ioctx, name, "--tpg", "2", *acl),
                           iqn=TARGET) as gw2:
        async def race():
            alice, bob = Client(gw1.ip, gw1.port, ALICE, TARGET), Client(gw2.ip, gw2.port, BOB, TARGET)
            for c in (alice, bob):
                assert (await c.login()).status == (0, 0)
            start = asyncio.Event()
            runs = [asyncio.create_task(hammer(c, who, start, 4.0)) for c, who in ((alice, "a"), (bob, "b"))]
            start.set()
            results = await asyncio.gather(*runs)
            for c in (alice, bob):
                c.close()
            return results
        a, b = asyncio.run(race())
        logs = gw1.log() + gw2.log()
        moves = logs.count("exclusive lock acquired")
        handed, fenced = logs.count("lock acquired (handed over by"), logs.count("lock acquired (fenced")
    wins = a["won"] + b["won"]
    olds = [old for old, _new in wins]
    assert len(olds) == len(set(olds)), "two COMPARE AND WRITEs succeeded on the same old value"
    successor = dict(wins)
    value, steps = "init", 0
    while value in successor:  # the successes form one chain from the initial value
        value, steps = successor[value], steps + 1
    assert steps == len(wins)
    with rbd.Image(ioctx, name) as img:
        assert img.read(0, BS).rstrip(b".").decode() == value
    contested = set(a["tried"]) & set(b["tried"])
    print(f"\nCAW race through two gateways: {len(a['tried'])} + {len(b['tried'])} attempts, "
          f"{len(a['won'])} + {len(b['won'])} won, {len(contested)} old values raced by both, "
          f"{a['busy'] + b['busy']} BUSY, {moves} lock acquisitions: {handed} handed over by the "
          f"holder, {fenced} by fencing it")
    assert contested, "the two initiators never raced on the same old value"
    assert a["won"] and b["won"] and moves > 2
    assert fenced == 0 and handed > 0, "a live gateway was fenced"
