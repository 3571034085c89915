"""The gateways' live state as the API sees it: their status records, read defensively.

A gateway counts only while its heartbeat is younger than ``gateway_dead_after``; a gateway
that never reported, or stopped, is "down" and contributes nothing (no sessions, unknown
disk state).  Answers list such gateways under ``unknown`` so a caller can tell "zero"
from "could not ask".
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.config.status import GatewayStatus
from gateway.config.status_details import GatewayDetails


@dataclass
class GatewayLive:
    name: str
    status: GatewayStatus | None
    alive: bool
    details: GatewayDetails = field(default_factory=GatewayDetails)


class LiveState:
    """A snapshot of every gateway's report at one moment."""

    def __init__(self, statuses: dict[str, GatewayStatus], dead_after: float,
                 now: float | None = None) -> None:
        self.now = time.time() if now is None else now
        self.dead_after = dead_after
        self._gateways: dict[str, GatewayLive] = {}
        for name, status in statuses.items():
            alive = status.alive(self.now, dead_after)
            self._gateways[name] = GatewayLive(name, status, alive, GatewayDetails.from_dict(status.details))

    def gateway(self, name: str) -> GatewayLive:
        return self._gateways.get(name) or GatewayLive(name, None, False)

    def up(self, names: Iterable[str]) -> list[GatewayLive]:
        return [g for g in (self.gateway(n) for n in sorted(set(names))) if g.alive]

    def down(self, names: Iterable[str]) -> list[str]:
        return [n for n in sorted(set(names)) if not self.gateway(n).alive]

    def reported_addresses(self) -> set[str]:
        return {ip for g in self._gateways.values() if g.alive for ip in g.details.ip_addresses}

    # ---- sessions ------------------------------------------------------------------------
    def num_sessions(self, gateways: Iterable[str], target: str | None = None) -> int:
        return sum(g.details.sessions(target) for g in self.up(gateways))

    def client_info(self, target: str, client: str, gateways: Iterable[str]) -> dict[str, Any]:
        """ceph-iscsi's ``clientinfo`` shape, gathered from every live gateway of the target."""
        info: dict[str, Any] = {"alias": "", "state": {}, "ip_address": []}
        addresses: set[str] = set()
        for g in self.up(gateways):
            seen = g.details.logged_in(target, client)
            if seen is None:
                continue
            if seen.alias:
                info["alias"] = seen.alias
            info["state"].setdefault("LOGGED_IN", []).append(g.name)
            addresses.update(seen.ip_addresses)
        info["ip_address"] = sorted(addresses)
        return info

    def logged_in(self, target: str, gateways: Iterable[str]) -> dict[str, list[str]]:
        """Initiators logged in to a target: ``{initiator: [gateways]}``."""
        out: dict[str, list[str]] = {}
        for g in self.up(gateways):
            for initiator in g.details.initiators(target):
                out.setdefault(initiator, []).append(g.name)
        return out

    # ---- disks ---------------------------------------------------------------------------
    def disk_status(self, disk: str, gateways: Iterable[str]) -> dict[str, Any]:
        """ceph-iscsi's disk ``status`` shape: state, lock owner, per-gateway counters."""
        names = sorted(set(gateways))
        per_gateway: dict[str, Any] = {}
        states: list[str] = []
        messages: list[str] = []
        lock_owner = ""
        for g in self.up(names):
            state = (g.details.disks or {}).get(disk)
            if state is None:
                continue
            per_gateway[g.name] = {"lock_lost_cnt": state.lock_lost_cnt, "conn_lost_cnt": state.conn_lost_cnt,
                                   "cmd_timed_out_cnt": state.cmd_timed_out_cnt, "state": state.state}
            states.append(state.state)
            if state.message:
                messages.append(f"{g.name}: {state.message}")
            if state.lock_owner:
                lock_owner = g.name
        if not names:
            summary = "Unmapped"
        elif not states:
            summary = "Unknown"
        elif any(s != "ok" for s in states):
            summary = "Degraded - " + ("; ".join(messages) or "see gateways")
        else:
            summary = "Online"
        out: dict[str, Any] = {"state": summary, "lock_owner": lock_owner, "gateways": per_gateway}
        unknown = [n for n in names if n not in per_gateway]
        if unknown:
            out["unknown"] = unknown
        return out

    def disk_sizes(self, disk: str, gateways: Iterable[str]) -> dict[str, int | None]:
        """The size each live gateway reports for a disk (None = not reported)."""
        out = {}
        for g in self.up(gateways):
            state = (g.details.disks or {}).get(disk)
            out[g.name] = state.size if state else None
        return out
