"""What each gateway reports about itself, and how the API reads "applied everywhere".

Status lives apart from the desired state (in ``<gateway_conf>.status``): a heartbeat must
neither bump the config version nor wake every config watcher.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

HEALTH_OK = "ok"
HEALTH_DEGRADED = "degraded"  # running, but some of the desired state could not be applied
HEALTH_ERROR = "error"  # not serving (e.g. cannot reach the cluster)
HEALTHS = (HEALTH_OK, HEALTH_DEGRADED, HEALTH_ERROR)


@dataclass
class GatewayStatus:
    """One gateway's report: the config version it applied, when, and how it is doing.

    ``heartbeat`` is the reporter's wall clock (``time.time()``); gateways need synchronised
    clocks, as Ceph itself does.  ``details`` is free-form (sessions, per-LUN problems...).
    """

    gateway: str
    applied_version: int
    heartbeat: float = field(default_factory=time.time)
    health: str = HEALTH_OK
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, blob: bytes) -> GatewayStatus:
        raw = json.loads(blob)
        return cls(gateway=str(raw["gateway"]), applied_version=int(raw["applied_version"]),
                   heartbeat=float(raw.get("heartbeat", 0.0)), health=str(raw.get("health", HEALTH_OK)),
                   message=str(raw.get("message", "")), details=dict(raw.get("details", {})),
                   started=float(raw.get("started", 0.0)))

    def alive(self, now: float, dead_after: float) -> bool:
        return now - self.heartbeat <= dead_after


@dataclass
class ApplyReport:
    """Where a config version stands on the gateways asked about.

    ``applied``: reported this version or a later one (``degraded`` lists those of them
    whose health is not ok); ``pending``: alive but not there yet; ``down``: no heartbeat
    within ``dead_after`` (or never reported).  A down gateway converges when it returns.
    """

    version: int
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    down: list[str] = field(default_factory=list)
    degraded: dict[str, str] = field(default_factory=dict)  # gateway -> its message

    @property
    def complete(self) -> bool:
        """Every live gateway applied it (down ones do not block)."""
        return not self.pending

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify(version: int, gateways: list[str], statuses: dict[str, GatewayStatus],
             now: float, dead_after: float) -> ApplyReport:
    report = ApplyReport(version)
    for name in sorted(set(gateways)):
        status = statuses.get(name)
        if status is None or not status.alive(now, dead_after):
            report.down.append(name)
        elif status.applied_version >= version:
            report.applied.append(name)
            if status.health != HEALTH_OK:
                report.degraded[name] = status.message or status.health
        else:
            report.pending.append(name)
    return report
