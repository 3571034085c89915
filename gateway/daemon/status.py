"""What this gateway reports about its live state (``GatewayStatus.details``).

The schema is ``gateway.config.status_details.GatewayDetails`` (the API reads it for
``_ping``, ``gatewayinfo``, ``targetinfo``, ``clientinfo`` and disk status).  Built on the
event loop from the registry, the portal server and the reconciler's disks: plain reads,
no I/O.
"""

from __future__ import annotations

from typing import Any

from gateway.config.status_details import (
    ClientSessions,
    DiskState,
    GatewayDetails,
    PortalState,
    TargetSessions,
)
from gateway.daemon.locks import LockMoveMonitor
from gateway.daemon.reconcile import Reconciler
from tcmu_handler.lock import LockState

try:
    from importlib.metadata import version as _version

    SOFTWARE_VERSION = _version("ceph-rbd-iscsi-gateway")
except Exception:  # not installed as a distribution (running from a checkout)
    SOFTWARE_VERSION = "0.1.0"


def peer_ip(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0]).removeprefix("::ffff:")
    return ""


def target_sessions(registry: Any) -> dict[str, TargetSessions]:
    """Logged-in (non-discovery) sessions per served target, grouped by initiator."""
    out = {iqn: TargetSessions() for iqn in registry.targets}
    for rec in list(registry.sessions.values()):
        if rec.discovery or rec.target not in out:
            continue
        t = out[rec.target]
        t.sessions += 1
        c = t.clients.get(rec.initiator)
        if c is None:
            c = t.clients[rec.initiator] = ClientSessions(sessions=0)
        c.sessions += 1
        ip = peer_ip(rec.peer)
        if ip and ip not in c.ip_addresses:
            c.ip_addresses.append(ip)
    return out


def disk_states(reconciler: Reconciler, monitor: LockMoveMonitor | None = None) -> dict[str, DiskState]:
    out = {}
    for name, live in reconciler.disks.items():
        d = live.disk
        stats = d.stats
        state, message = "ok", ""
        if monitor is not None and monitor.thrashing(name):
            state, message = "degraded", "excessive failovers (the exclusive lock keeps moving)"
        locked = d.lock is not None and d.lock.state is LockState.LOCKED
        out[name] = DiskState(size=int(d.backend.size), lock_owner=locked, state=state, message=message,
                              lock_lost_cnt=stats.lock_lost,
                              conn_lost_cnt=int(getattr(d.backend, "reconnects", 0)),
                              cmd_timed_out_cnt=stats.timeouts)
    for name, problem in reconciler.disk_problems.items():
        out[name] = DiskState(size=None, state="error", message=problem)
    return out


def gateway_details(reconciler: Reconciler, *, checkconf: str = "", ip_addresses: list[str] | None = None,
                    monitor: LockMoveMonitor | None = None) -> GatewayDetails:
    registry = reconciler.registry
    server = reconciler.server
    listening = set(server.servers) if server is not None else set()
    portals = [PortalState(ip, port, (ip, port) in listening)
               for ip, port in sorted(registry.enabled_portals())]
    return GatewayDetails(software_version=SOFTWARE_VERSION, checkconf=checkconf,
                          ip_addresses=list(ip_addresses or []), portals=portals,
                          targets=target_sessions(registry), disks=disk_states(reconciler, monitor))
