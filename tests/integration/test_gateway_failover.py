"""Failover between two rbd-target-gw processes: data safety, lock handoff and fencing.

QEMU's libiscsi driver (qemu-io) is the initiator that writes and verifies: it retries BUSY
as a host does, so the write that moves the exclusive lock succeeds once the lock moved.
Our own initiator is used where the exact timing of one PDU matters (a write queued to a
frozen gateway).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid

import pytest
from gateway_support import (
    BUSY,
    CHAP_PASSWORD,
    CHAP_USER,
    GOOD,
    INITIATOR_A,
    Session,
    qemu_io_ok,
    read10,
    write10,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import operations as ops
from gateway.config.model import ChapAuth
from gateway.testing.gateways import GatewayCluster

IQN = "iqn.2003-01.com.example.gw-test:failover"
KB64 = 64 << 10


@pytest.fixture(scope="module")
def pair(ceph_cluster, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    image = f"gwf-{tag}"
    ceph_cluster.rbd("create", "--size", "64M", f"{ceph_cluster.pool}/{image}")
    gc = GatewayCluster(ceph_cluster, tmp_path_factory.mktemp("pair"), gateway_conf=f"gw-failover-{tag}",
                        device_status={"lock_lost_cnt_threshhold": 2, "status_check_interval": 2})
    gc.add("gw-a", "127.0.11.1")
    gc.add("gw-b", "127.0.11.2")
    disk = f"{ceph_cluster.pool}/{image}"

    def setup(cfg):
        ops.add_target(cfg, IQN)
        for name in ("gw-a", "gw-b"):
            ip, port = gc.addresses[name]
            ops.add_portal(cfg, IQN, name, [ip], port=port)
        ops.add_disk(cfg, ceph_cluster.pool, image)
        ops.map_lun(cfg, IQN, disk, owner="gw-a")
        ops.add_client(cfg, IQN, INITIATOR_A, ChapAuth(CHAP_USER, CHAP_PASSWORD))
        ops.add_client_lun(cfg, IQN, INITIATOR_A, disk)

    gc.version = gc.store.update(setup).version
    gc.disk = disk
    gc.written = {}  # offset -> pattern of every acknowledged write
    gc.start_all()
    gc.wait_applied(gc.version, timeout=60)
    yield gc
    gc.close()
    ceph_cluster.rbd("rm", disk)


def write_and_verify(gc, name: str, writes: dict[int, int]) -> None:
    """Write 64 KiB patterns through one gateway; each is read back in the same qemu-io run."""
    cmds = [c for off, pat in writes.items()
            for c in (f"write -P {pat} {off} 64k", f"read -P {pat} {off} 64k")]
    qemu_io_ok(gc.portal(name), IQN, *cmds)
    gc.written.update(writes)


def verify_all(gc, name: str) -> None:
    qemu_io_ok(gc.portal(name), IQN, *(f"read -P {pat} {off} 64k" for off, pat in sorted(gc.written.items())))


def lock_holders(gc) -> list[str]:
    """Live gateways (heartbeat within 3 s; they beat every second) that report holding the lock."""
    st = gc.store.read_statuses()
    now = time.time()
    return sorted(n for n, s in st.items()
                  if s.alive(now, 3) and s.details.get("disks", {}).get(gc.disk, {}).get("lock_owner"))


def wait_holders(gc, want: list[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := lock_holders(gc)) != want:
        assert time.monotonic() < deadline, f"lock holders {got}, expected {want}"
        time.sleep(0.1)


def blocklist(cluster) -> set[str]:
    out = cluster.ceph("osd", "blocklist", "ls", "--format", "json")
    value, _ = json.JSONDecoder().raw_decode(out.strip())
    return {e["addr"] for e in value}


def test_acknowledged_writes_survive_kill_9_of_the_owning_gateway(pair, ceph_cluster):
    wait_holders(pair, ["gw-a"])
    write_and_verify(pair, "gw-a", {i * KB64: 0x10 + i for i in range(8)})
    fences_before = blocklist(ceph_cluster)
    pair.gateways["gw-a"].kill()
    t0 = time.monotonic()
    # The first write through gw-b asks gw-a for the lock; dead, it does not answer within
    # lock_handoff_timeout, so gw-b breaks the lock, fencing gw-a (the write waits meanwhile).
    write_and_verify(pair, "gw-b", {8 * KB64: 0x30, 0: 0x31, 9 * KB64: 0x32})
    print(f"\nwrites continued through gw-b {time.monotonic() - t0:.2f} s after kill -9 of gw-a")
    verify_all(pair, "gw-b")
    wait_holders(pair, ["gw-b"])
    assert blocklist(ceph_cluster) - fences_before, "taking the lock did not blocklist gw-a's client"


def test_a_restarted_gateway_serves_current_data_and_does_not_steal_the_lock(pair):
    gw = pair.gateways["gw-a"]
    gw.start()
    pair.wait_applied(pair.store.read_version(), ["gw-a"], timeout=60)
    # gw-a is the configured owner, but gw-b holds the lock and is alive: gw-a leaves it there.
    time.sleep(2)
    assert lock_holders(pair) == ["gw-b"]
    verify_all(pair, "gw-a")  # reads do not take the lock
    assert lock_holders(pair) == ["gw-b"]


def test_a_live_holder_hands_the_lock_over_and_nobody_is_blocklisted(pair, ceph_cluster):
    """Both gateways alive: a write through the one without the lock asks the holder, which
    hands the lock over once its writes are done, and back again -- no blocklist entry."""
    wait_holders(pair, ["gw-b"])
    before = blocklist(ceph_cluster)
    breaks = {n: gw.log_tail(10**8).count("breaking its lock") for n, gw in pair.gateways.items()}
    lba = 30 * KB64 // 512

    async def writes() -> list[tuple[str, float]]:
        sessions = {n: Session(*pair.addresses[n], IQN) for n in ("gw-a", "gw-b")}
        for s in sessions.values():
            await s.login()
        took = []
        try:
            for name in ("gw-b", "gw-a", "gw-b", "gw-a", "gw-b"):  # the holder first: no move
                t0 = time.monotonic()
                res = await sessions[name].command(write10(lba, 1), write=bytes([len(took)]) * 512)
                took.append((name, time.monotonic() - t0))
                assert res.status == GOOD, (name, res)
        finally:
            for s in sessions.values():
                s.close()
        return took

    took = asyncio.run(writes())
    print("\nwrite latency: through the holder {:.1f} ms, moving the lock by handoff {}".format(
        took[0][1] * 1000, ", ".join(f"{t * 1000:.1f} ms" for _, t in took[1:])))
    assert blocklist(ceph_cluster) == before, "a handoff between live gateways fenced one of them"
    wait_holders(pair, ["gw-b"])
    assert "asks for the exclusive lock: handing it over" in pair.gateways["gw-a"].log_tail(200000)
    assert breaks == {n: gw.log_tail(10**8).count("breaking its lock") for n, gw in pair.gateways.items()}


def test_a_frozen_gateway_that_lost_the_lock_cannot_write_stale_data(pair, ceph_cluster):
    """gw-b holds the lock and freezes (SIGSTOP) with a write queued; the initiator moves to
    gw-a, which asks gw-b for the lock, gets no answer within lock_handoff_timeout, and breaks
    gw-b's lock (Ceph fences gw-b).  Thawed, gw-b must not land the queued write."""
    lba = 10 * KB64 // 512
    stale = bytes([0xEE]) * KB64

    async def scenario():
        s = Session(*pair.addresses["gw-b"], IQN)
        await s.login()
        res = await s.command_past_unit_attention(read10(lba, 1), read_length=512)
        assert res.status == GOOD
        pair.gateways["gw-b"].pause()
        try:
            itt = s.send(write10(lba, KB64 // 512), write=stale)
            await s.flush()
            t0 = time.monotonic()
            await asyncio.to_thread(write_and_verify, pair, "gw-a", {10 * KB64: 0x44})
            print(f"\nwrite through gw-a, fencing the frozen holder: {time.monotonic() - t0:.2f} s "
                  f"(qemu-io included)")
        finally:
            pair.gateways["gw-b"].resume()
        res = await s.result(itt, timeout=60)
        s.close()
        return res

    wait_holders(pair, ["gw-b"])
    before = blocklist(ceph_cluster)
    res = asyncio.run(scenario())
    print(f"\nthe write queued to the frozen gateway got {'no answer' if res is None else hex(res.status)}")
    assert blocklist(ceph_cluster) - before, "the frozen holder was not fenced"
    assert "did not answer within 2 s: breaking its lock" in pair.gateways["gw-a"].log_tail(200000)
    assert res is None or res.status != GOOD, "the fenced gateway acknowledged a stale write"
    if res is not None:
        assert res.status == BUSY
    verify_all(pair, "gw-a")
    wait_holders(pair, ["gw-a"])
    # gw-b recovers by itself (a new RADOS client) and reads current data again.
    deadline = time.monotonic() + 30
    while True:
        try:
            verify_all(pair, "gw-b")
            break
        except AssertionError:
            assert time.monotonic() < deadline, "gw-b never recovered from being fenced"
            time.sleep(0.5)


def test_lock_ping_pong_is_detected_logged_and_exported(pair):
    """Writing through both gateways alternately moves the lock on every write (what a
    round-robin path policy does): the gateways flag it as thrashing, though every move is
    a cooperative handoff."""
    lba = 20 * KB64 // 512
    data = bytes(512)

    async def ping_pong():
        sessions = {n: Session(*pair.addresses[n], IQN) for n in ("gw-a", "gw-b")}
        for s in sessions.values():
            await s.login()
        moves = 0
        try:
            for _ in range(40):
                for s in sessions.values():
                    for _ in range(100):  # BUSY while the lock moves here
                        res = await s.command_past_unit_attention(write10(lba, 1), write=data)
                        if res.status == GOOD:
                            break
                        assert res.status == BUSY, res
                        await asyncio.sleep(0.05)
                    moves += 1
                if await asyncio.to_thread(_thrashing, pair):
                    return moves
        finally:
            for s in sessions.values():
                s.close()
        return moves

    moves = asyncio.run(ping_pong())
    flagged = _thrashing(pair)
    assert flagged, f"{moves} lock moves and no gateway reports thrashing"
    assert any("lock thrashing" in pair.gateways[n].log_tail(200000) for n in flagged)


def _thrashing(gc) -> list[str]:
    out = []
    for name, gw in gc.gateways.items():
        with urllib.request.urlopen(gw.metrics_url, timeout=10) as r:
            text = r.read().decode()
        for fam in text_string_to_metric_families(text):
            if fam.name == "ceph_iscsi_lun_lock_thrashing" and any(s.value == 1 for s in fam.samples):
                out.append(name)
    return out
