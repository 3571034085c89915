"""Prometheus metrics of one gateway on ``prometheus_host:prometheus_port``.

ceph-iscsi's names and labels are kept (reference G): ``ceph_iscsi_gateway_tpg_total``,
``ceph_iscsi_lun_mapped``, ``ceph_iscsi_lun_size_bytes``, ``ceph_iscsi_lun_iops``,
``ceph_iscsi_lun_read_bytes``, ``ceph_iscsi_lun_write_bytes``, ``ceph_iscsi_client_login``,
``ceph_iscsi_client_lun``, ``ceph_iscsi_scrape_duration_seconds``.  ceph-iscsi wrote its
type lines as plain comments, so Prometheus saw those series untyped; the three per-client
counters stay untyped here so their names do not gain ``_total``.  Added, typed: per-LUN
latency histograms, operation/BUSY/timeout counters, lock moves and lock ownership, lock
thrashing, sessions per target, the applied config version and health.

A scrape runs on the HTTP server's thread; it asks the event loop for a snapshot (plain
numbers copied in one loop callback) so it never sees a half-changed registry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import CollectorRegistry

from gateway.config.status import HEALTHS
from tcmu_handler.lock import LockState

log = logging.getLogger(__name__)
SNAPSHOT_TIMEOUT = 5.0


@dataclass
class LunSample:
    name: str                # ceph-iscsi's lun_name: the backstore object name, pool.image
    disk: str                # pool/image
    size: int
    mapped: bool
    owner_ip: str            # portal IP of the owner's TPG (ceph-iscsi's gw_owner)
    owner: bool              # this gateway is the owner (its path is Active/Optimized)
    stats: dict[str, Any]
    lock_owner: bool
    thrashing: bool
    thrash_episodes: int
    reconnects: int


@dataclass
class Snapshot:
    gateway: str
    targets: list[str] = field(default_factory=list)
    tpgs: int = 0
    luns: list[LunSample] = field(default_factory=list)
    # (target, client) -> logged in
    clients: dict[tuple[str, str], bool] = field(default_factory=dict)
    # (client, lun_name) -> LUN id
    client_luns: dict[tuple[str, str], int] = field(default_factory=dict)
    # (client, lun_name) -> [commands, read bytes, write bytes]
    client_io: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    discovery_sessions: int = 0
    applied_version: int = -1
    health: str = "ok"
    lock_moves: int = 0


def take_snapshot(service: Any) -> Snapshot:
    """Copy what the metrics need (call on the event loop)."""
    rec = service.reconciler
    registry = rec.registry
    cfg = rec.config
    snap = Snapshot(service.gateway, applied_version=service.applied_version, health=service.health)
    snap.targets = sorted(registry.targets)
    snap.tpgs = sum(len(t.tpgs) for t in registry.targets.values())
    names = {live.disk: (live.backstore_object_name or name.replace("/", "."))
             for name, live in rec.disks.items()}
    mapped: set[str] = set()
    for iqn, t in registry.targets.items():
        logged = {r.initiator for r in registry.sessions.values() if r.target == iqn and not r.discovery}
        tables = [(c.iqn, c.luns) for c in t.clients.values()] if t.acl_enabled else [("any", t.luns)]
        for client, table in tables:
            if t.acl_enabled:
                snap.clients[(iqn, client)] = client in logged
            for lun_id, unit in table.luns.items():
                name = names.get(unit)
                if name is None:
                    continue
                mapped.add(name)
                snap.client_luns[(client, name)] = lun_id
                counters = getattr(table, "counters", {}).get(lun_id)
                if counters is not None:
                    io = snap.client_io.setdefault((client, name), [0, 0, 0])
                    for i in range(3):
                        io[i] += counters[i]
    for r in registry.sessions.values():
        if r.discovery:
            snap.discovery_sessions += 1
        else:
            snap.sessions[r.target] = snap.sessions.get(r.target, 0) + 1
    for name, live in rec.disks.items():
        d = live.disk
        owner_ip = ""
        if cfg is not None and live.target in cfg.targets:
            t = cfg.targets[live.target]
            lun = t.luns.get(name)
            portal = t.portals.get(lun.owner) if lun is not None else None
            if portal is not None and portal.ip_addresses:
                owner_ip = portal.ip_addresses[0]
        lun_name = names[d]
        stats = d.stats.as_dict()
        snap.lock_moves += d.stats.lock_acquired
        snap.luns.append(LunSample(
            lun_name, name, int(d.backend.size), lun_name in mapped, owner_ip, live.owner, stats,
            d.lock is not None and d.lock.state is LockState.LOCKED, service.monitor.thrashing(name),
            service.monitor.episodes.get(name, 0), int(getattr(d.backend, "reconnects", 0))))
    return snap


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any], timeout: float = SNAPSHOT_TIMEOUT) -> Any:
    """Run ``fn`` on the event loop from another thread and wait for its result."""
    fut: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            fut.set_exception(e)

    loop.call_soon_threadsafe(run)
    return fut.result(timeout)


def families(snap: Snapshot, scrape_seconds: float) -> Iterator[Metric]:
    """Every metric family of a snapshot."""
    gw = snap.gateway
    tpg = GaugeMetricFamily("ceph_iscsi_gateway_tpg_total", "Number of TPGs on this gateway (all targets)",
                            labels=["gw_iqn"])
    if snap.targets:
        tpg.add_metric([snap.targets[0]], snap.tpgs)
    yield tpg
    mapped = GaugeMetricFamily("ceph_iscsi_lun_mapped", "LUN mapped to a client (1) or not (0)",
                               labels=["lun_name", "gw_name", "gw_owner"])
    size = GaugeMetricFamily("ceph_iscsi_lun_size_bytes", "LUN size in bytes", labels=["lun_name", "gw_name"])
    for lun in snap.luns:
        mapped.add_metric([lun.name, gw, lun.owner_ip], 1 if lun.mapped else 0)
        size.add_metric([lun.name, gw], lun.size)
    yield mapped
    yield size
    labels = ["gw_name", "client_iqn", "lun_name"]
    iops = UnknownMetricFamily("ceph_iscsi_lun_iops", "Commands a client sent to a LUN through this gateway",
                               labels=labels)
    rbytes = UnknownMetricFamily("ceph_iscsi_lun_read_bytes", "Bytes a client read from a LUN", labels=labels)
    wbytes = UnknownMetricFamily("ceph_iscsi_lun_write_bytes", "Bytes a client wrote to a LUN", labels=labels)
    for (client, lun_name), (cmds, rb, wb) in sorted(snap.client_io.items()):
        iops.add_metric([gw, client, lun_name], cmds)
        rbytes.add_metric([gw, client, lun_name], rb)
        wbytes.add_metric([gw, client, lun_name], wb)
    yield iops
    yield rbytes
    yield wbytes
    login = GaugeMetricFamily("ceph_iscsi_client_login",
                              "Client logged in through this gateway (1) or not (0)",
                              labels=["gw_name", "client_iqn"])
    for (_target, client), logged in sorted(snap.clients.items()):
        login.add_metric([gw, client], 1 if logged else 0)
    yield login
    client_lun = GaugeMetricFamily("ceph_iscsi_client_lun", "LUN id a client sees a disk at",
                                   labels=["gw_name", "client_iqn", "lun_name"])
    for (client, lun_name), lun_id in sorted(snap.client_luns.items()):
        client_lun.add_metric([gw, client, lun_name], lun_id)
    yield client_lun
    yield from _lun_families(snap)
    yield from _gateway_families(snap)
    duration = GaugeMetricFamily("ceph_iscsi_scrape_duration_seconds", "Time to collect the metrics",
                                 labels=["gw_name"])
    duration.add_metric([gw], scrape_seconds)
    yield duration


def _lun_families(snap: Snapshot) -> Iterator[Metric]:
    gw = snap.gateway
    labels = ["gw_name", "lun_name"]
    latency = HistogramMetricFamily("ceph_iscsi_lun_latency_seconds",
                                    "SCSI command latency per LUN on this gateway", labels=labels)
    ops = CounterMetricFamily("ceph_iscsi_lun_ops", "SCSI commands per LUN by kind", labels=[*labels, "op"])
    nbytes = CounterMetricFamily("ceph_iscsi_lun_bytes", "Bytes read and written per LUN",
                                 labels=[*labels, "op"])
    busy = CounterMetricFamily("ceph_iscsi_lun_busy", "Commands answered BUSY (lock moving, timeouts)",
                               labels=labels)
    timeouts = CounterMetricFamily("ceph_iscsi_lun_timeouts", "Backend operations past osd_op_timeout",
                                   labels=labels)
    acquired = CounterMetricFamily("ceph_iscsi_lun_lock_acquired",
                                   "Times this gateway took the exclusive lock (lock moves onto it)",
                                   labels=labels)
    lost = CounterMetricFamily("ceph_iscsi_lun_lock_lost", "Times this gateway lost the exclusive lock",
                               labels=labels)
    handoffs = CounterMetricFamily("ceph_iscsi_lun_lock_handoffs",
                                   "Cooperative lock moves: handed over to this gateway (in) or by it (out)",
                                   labels=[*labels, "direction"])
    breaks = CounterMetricFamily("ceph_iscsi_lun_lock_breaks",
                                 "Times this gateway broke an unresponsive holder's lock (fencing it)",
                                 labels=labels)
    fenced = CounterMetricFamily("ceph_iscsi_lun_lock_fenced", "Times this gateway found itself fenced",
                                 labels=labels)
    fenced_writes = CounterMetricFamily("ceph_iscsi_lun_fenced_writes",
                                        "Writes refused (BUSY) because this gateway no longer held the lock",
                                        labels=labels)
    stale_drops = CounterMetricFamily("ceph_iscsi_lun_stale_session_drops",
                                      "Connections dropped on a write from a session open when this "
                                      "gateway was fenced", labels=labels)
    reconnects = CounterMetricFamily("ceph_iscsi_lun_reconnects",
                                     "New RADOS clients after this gateway was fenced", labels=labels)
    holder = GaugeMetricFamily("ceph_iscsi_lun_lock_owner", "This gateway holds the exclusive lock",
                               labels=labels)
    optimized = GaugeMetricFamily("ceph_iscsi_lun_alua_optimized",
                                  "This gateway owns the LUN (its path is Active/Optimized)", labels=labels)
    thrashing = GaugeMetricFamily("ceph_iscsi_lun_lock_thrashing",
                                  "The exclusive lock keeps moving between gateways (excessive failovers)",
                                  labels=labels)
    episodes = CounterMetricFamily("ceph_iscsi_lun_lock_thrashing_episodes",
                                   "Times the LUN entered lock thrashing", labels=labels)
    for lun in snap.luns:
        key = [gw, lun.name]
        s = lun.stats
        buckets = [("+Inf" if b == float("inf") else repr(b), n) for b, n in s["latency_buckets"]]
        latency.add_metric(key, buckets, s["latency_sum_ns"] / 1e9)
        ops.add_metric([*key, "read"], s["read_ops"])
        ops.add_metric([*key, "write"], s["write_ops"])
        ops.add_metric([*key, "other"], s["other_ops"])
        nbytes.add_metric([*key, "read"], s["read_bytes"])
        nbytes.add_metric([*key, "write"], s["write_bytes"])
        busy.add_metric(key, s["busy"])
        timeouts.add_metric(key, s["timeouts"])
        acquired.add_metric(key, s["lock_acquired"])
        lost.add_metric(key, s["lock_lost"])
        handoffs.add_metric([*key, "in"], s["lock_handoffs_in"])
        handoffs.add_metric([*key, "out"], s["lock_handoffs_out"])
        breaks.add_metric(key, s["lock_breaks"])
        fenced.add_metric(key, s["lock_fenced"])
        fenced_writes.add_metric(key, s["fenced_writes"])
        stale_drops.add_metric(key, s["stale_session_drops"])
        reconnects.add_metric(key, lun.reconnects)
        holder.add_metric(key, 1 if lun.lock_owner else 0)
        optimized.add_metric(key, 1 if lun.owner else 0)
        thrashing.add_metric(key, 1 if lun.thrashing else 0)
        episodes.add_metric(key, lun.thrash_episodes)
    yield from (latency, ops, nbytes, busy, timeouts, acquired, lost, handoffs, breaks, fenced,
                fenced_writes, stale_drops, reconnects, holder, optimized, thrashing, episodes)


def _gateway_families(snap: Snapshot) -> Iterator[Metric]:
    gw = snap.gateway
    sessions = GaugeMetricFamily("ceph_iscsi_sessions", "Logged-in sessions per target on this gateway",
                                 labels=["gw_name", "target_iqn"])
    for iqn in snap.targets:
        sessions.add_metric([gw, iqn], snap.sessions.get(iqn, 0))
    yield sessions
    discovery = GaugeMetricFamily("ceph_iscsi_discovery_sessions", "Open discovery sessions",
                                  labels=["gw_name"])
    discovery.add_metric([gw], snap.discovery_sessions)
    yield discovery
    moves = CounterMetricFamily("ceph_iscsi_gateway_lock_moves",
                                "Exclusive-lock moves onto this gateway, all LUNs", labels=["gw_name"])
    moves.add_metric([gw], snap.lock_moves)
    yield moves
    version = GaugeMetricFamily("ceph_iscsi_gateway_config_version",
                                "Cluster config version this gateway has applied", labels=["gw_name"])
    version.add_metric([gw], snap.applied_version)
    yield version
    health = GaugeMetricFamily("ceph_iscsi_gateway_health", "Health of this gateway (1 = current state)",
                               labels=["gw_name", "health"])
    for h in HEALTHS:
        health.add_metric([gw, h], 1 if snap.health == h else 0)
    yield health


class GatewayCollector:
    """A prometheus_client collector over a snapshot taken on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, service: Any) -> None:
        self.loop = loop
        self.service = service

    def collect(self) -> Iterator[Metric]:
        t0 = time.monotonic()
        try:
            snap = on_loop(self.loop, lambda: take_snapshot(self.service))
        except Exception as e:  # the loop is stopping or stuck: an empty scrape, not an error page
            log.warning("metrics snapshot failed: %s", e)
            return
        yield from families(snap, time.monotonic() - t0)


class MetricsServer:
    """The HTTP exporter (prometheus_client's threaded server) with its own registry."""

    def __init__(self, collector: GatewayCollector) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.httpd: Any = None
        self.thread: Any = None

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Serve; port 0 picks a free one.  Returns the bound address."""
        from prometheus_client import start_http_server

        addr = host.strip("[]") or "::"
        self.httpd, self.thread = start_http_server(port, addr=addr, registry=self.registry)
        return host, int(self.httpd.server_address[1])

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
