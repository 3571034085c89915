"""The exporter's text: ceph-iscsi's names and labels, our additions, valid exposition format."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from test_gateway_reconcile import ALICE, BOB, DISK1, IQN, base_config

from gateway.config import operations as ops
from gateway.daemon.disks import MemoryDisks
from gateway.daemon.locks import LockMoveMonitor
from gateway.daemon.metrics import GatewayCollector, MetricsServer, families, take_snapshot
from gateway.daemon.reconcile import Reconciler
from gateway.portal.registry import SessionRecord, TargetRegistry
from tcmu_handler.api import DataDirection, Nexus, ScsiCommand
from tcmu_handler.lock import LockState

CEPH_ISCSI = {
    "ceph_iscsi_gateway_tpg_total": {"gw_iqn"},
    "ceph_iscsi_lun_mapped": {"lun_name", "gw_name", "gw_owner"},
    "ceph_iscsi_lun_size_bytes": {"lun_name", "gw_name"},
    "ceph_iscsi_lun_iops": {"gw_name", "client_iqn", "lun_name"},
    "ceph_iscsi_lun_read_bytes": {"gw_name", "client_iqn", "lun_name"},
    "ceph_iscsi_lun_write_bytes": {"gw_name", "client_iqn", "lun_name"},
    "ceph_iscsi_client_login": {"gw_name", "client_iqn"},
    "ceph_iscsi_client_lun": {"gw_name", "client_iqn", "lun_name"},
    "ceph_iscsi_scrape_duration_seconds": {"gw_name"},
}


class FakeService:
    def __init__(self, reconciler):
        self.reconciler = reconciler
        self.gateway = reconciler.gateway
        self.applied_version = 7
        self.health = "ok"
        self.monitor = LockMoveMonitor()


async def _gateway_with_io():
    rec = Reconciler("gw1", TargetRegistry(), MemoryDisks(4 << 20))
    cfg = base_config()
    cfg.version = 7
    await rec.apply(cfg)
    for _ in range(100):  # the owner takes the free lock in the background
        if rec.disks[DISK1].disk.lock.state is LockState.LOCKED:
            break
        await asyncio.sleep(0.01)
    table = rec.registry.targets[IQN].clients[ALICE].luns
    nexus = Nexus(ALICE, f"{ALICE},i,0x1", IQN, f"{IQN},t,0x0001", 1, 1)
    rec.registry.sessions[1] = SessionRecord(1, ALICE, b"\1" * 6, IQN, 1, ("127.0.0.1", 5), (), False, nexus,
                                             table, None)
    write = bytes([0x2A, 0, 0, 0, 0, 0, 0, 0, 8, 0])
    read = bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
    await table.execute(ScsiCommand(bytes(6), 0, nexus))  # the POWER ON unit attention
    for cdb, direction, data in ((write, DataDirection.WRITE, bytes(4096)), (read, DataDirection.READ, None)):
        res = await table.execute(ScsiCommand(cdb, 0, nexus, direction=direction, edtl=4096, data_out=data))
        assert res.status == 0
    return rec


def _text(rec) -> str:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    class Direct:
        def collect(self):
            return families(take_snapshot(FakeService(rec)), 0.001)

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Direct())
    return generate_latest(reg).decode()


def test_ceph_iscsi_metric_names_and_labels_are_kept_and_parse():
    async def scenario():
        rec = await _gateway_with_io()
        text = _text(rec)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        for name, labels in CEPH_ISCSI.items():
            assert name in fams, name
            for s in fams[name].samples:
                assert set(s.labels) == labels, (name, s.labels)
        # The per-client counters keep their exact names (no _total), as ceph-iscsi exposed them.
        iops = {s.labels["client_iqn"]: s.value for s in fams["ceph_iscsi_lun_iops"].samples}
        assert iops[ALICE] == 3 and iops[BOB] == 0
        rb = {s.name: s.value for s in fams["ceph_iscsi_lun_read_bytes"].samples
              if s.labels["client_iqn"] == ALICE}
        wb = {s.name: s.value for s in fams["ceph_iscsi_lun_write_bytes"].samples
              if s.labels["client_iqn"] == ALICE}
        assert rb == {"ceph_iscsi_lun_read_bytes": 4096} and wb == {"ceph_iscsi_lun_write_bytes": 4096}
        login = {s.labels["client_iqn"]: s.value for s in fams["ceph_iscsi_client_login"].samples}
        assert login == {ALICE: 1, BOB: 0}
        mapped, = fams["ceph_iscsi_lun_mapped"].samples
        assert mapped.labels == {"lun_name": "rbd.disk1", "gw_name": "gw1", "gw_owner": "127.0.11.1"}
        assert fams["ceph_iscsi_gateway_tpg_total"].samples[0].value == 2
        await rec.close()
    asyncio.run(scenario())


def test_latency_histogram_sessions_lock_and_config_version_are_exported():
    async def scenario():
        rec = await _gateway_with_io()
        fams = {f.name: f for f in text_string_to_metric_families(_text(rec))}
        hist = fams["ceph_iscsi_lun_latency_seconds"]
        assert hist.type == "histogram"
        count = [s for s in hist.samples if s.name.endswith("_count")][0]
        inf = [s for s in hist.samples if s.labels.get("le") == "+Inf"][0]
        assert count.value == inf.value == 2  # the write and the read (the unit attention is not timed)
        sessions, = fams["ceph_iscsi_sessions"].samples
        assert sessions.labels["target_iqn"] == IQN and sessions.value == 1
        assert fams["ceph_iscsi_gateway_config_version"].samples[0].value == 7
        for name in ("ceph_iscsi_lun_lock_acquired", "ceph_iscsi_lun_lock_lost",
                     "ceph_iscsi_lun_lock_thrashing", "ceph_iscsi_gateway_lock_moves",
                     "ceph_iscsi_lun_alua_optimized", "ceph_iscsi_lun_lock_breaks",
                     "ceph_iscsi_lun_lock_fenced", "ceph_iscsi_lun_fenced_writes",
                     "ceph_iscsi_lun_stale_session_drops"):
            assert name in fams, name
        handoffs = {s.labels["direction"]: s.value for s in fams["ceph_iscsi_lun_lock_handoffs"].samples}
        assert handoffs == {"in": 0, "out": 0}
        opt, = fams["ceph_iscsi_lun_alua_optimized"].samples
        assert opt.value == 1  # gw1 owns rbd/disk1
        health = {s.labels["health"]: s.value for s in fams["ceph_iscsi_gateway_health"].samples}
        assert health == {"ok": 1, "degraded": 0, "error": 0}
        await rec.close()
    asyncio.run(scenario())


def test_the_http_exporter_serves_a_snapshot_taken_on_the_event_loop():
    async def scenario():
        rec = await _gateway_with_io()
        server = MetricsServer(GatewayCollector(asyncio.get_running_loop(), FakeService(rec)))
        _, port = server.start("127.0.0.1", 0)
        got = {}

        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                got["text"] = r.read().decode()

        t = threading.Thread(target=scrape)
        t.start()
        while t.is_alive():  # keep the loop turning: the collector runs its snapshot on it
            await asyncio.sleep(0.01)
        server.stop()
        names = {f.name for f in text_string_to_metric_families(got["text"])}
        assert set(CEPH_ISCSI) <= names
        await rec.close()
    asyncio.run(scenario())


def test_lock_thrashing_starts_at_the_threshold_and_ends_after_quiet_polls():
    m = LockMoveMonitor(threshold=4, reset_after=2)
    assert m.poll({DISK1: 0}) == []
    assert m.poll({DISK1: 3}) == [] and not m.thrashing(DISK1)
    assert m.poll({DISK1: 7}) == [DISK1] and m.thrashing(DISK1)
    assert m.poll({DISK1: 12}) == []  # still thrashing: reported once
    assert m.poll({DISK1: 12}) == [] and m.thrashing(DISK1)
    assert m.poll({DISK1: 13}) == [] and not m.thrashing(DISK1)
    assert m.episodes[DISK1] == 1
    assert m.poll({}) == [] and not m.thrashing(DISK1)


def test_drain_refuses_a_gateway_that_serves_nothing():
    import pytest

    from gateway.config.errors import NotFound

    cfg = base_config()
    with pytest.raises(NotFound):
        ops.drain_gateway(cfg, "gw9")
    ops.remove_portal(cfg, IQN, "gw2")
    with pytest.raises(Exception, match="only gateway"):
        ops.drain_gateway(cfg, "gw1")
    assert cfg.targets[IQN].luns[DISK1].owner == "gw1"
