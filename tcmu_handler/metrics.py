"""Per-LUN counters the gateway daemon exports as Prometheus metrics.

Plain integers updated on the event loop (no locks, no allocation per
command); the daemon reads them when it is scraped.  Latency buckets are
cumulative-ready: ``latency_buckets[i]`` counts commands whose latency was
<= ``LATENCY_BOUNDS[i]`` seconds and greater than the previous bound; the
last slot is +Inf.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

LATENCY_BOUNDS: tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BOUNDS)


@dataclass
class LunStats:
    """Counters of one logical unit (one RBD image on this gateway)."""

    read_ops: int = 0
    write_ops: int = 0
    other_ops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    #: commands answered CHECK CONDITION / BUSY / TASK SET FULL / RESERVATION CONFLICT
    check_conditions: int = 0
    busy: int = 0
    task_set_full: int = 0
    reservation_conflicts: int = 0
    aborted: int = 0
    #: backend operations that hit osd_op_timeout
    timeouts: int = 0
    #: times this gateway took the exclusive lock (any way: free, handed over, broken)
    lock_acquired: int = 0
    #: times this gateway lost the lock (handed over, released, or fenced)
    lock_lost: int = 0
    lock_acquire_failures: int = 0
    #: acquisitions handed over by a live holder on request (cooperative moves onto this gateway)
    lock_handoffs_in: int = 0
    #: times this gateway handed the lock over on another gateway's request
    lock_handoffs_out: int = 0
    #: acquisitions that broke an unresponsive holder's lock (Ceph fenced that gateway)
    lock_breaks: int = 0
    #: handoff requests received from other gateways
    lock_requests: int = 0
    #: times this gateway found itself fenced
    lock_fenced: int = 0
    #: writes refused by the cluster because this gateway was fenced (answered BUSY)
    fenced_writes: int = 0
    #: connections dropped: a write from a session open when this gateway was fenced
    stale_session_drops: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(_BOUNDS_NS) + 1))
    latency_sum_ns: int = 0
    latency_count: int = 0

    def observe(self, ns: int) -> None:
        self.latency_buckets[bisect_left(_BOUNDS_NS, ns)] += 1
        self.latency_sum_ns += ns
        self.latency_count += 1

    def cumulative_buckets(self) -> list[tuple[float, int]]:
        """(upper bound, cumulative count) pairs, Prometheus histogram style."""
        out, total = [], 0
        for bound, n in zip((*LATENCY_BOUNDS, float("inf")), self.latency_buckets, strict=True):
            total += n
            out.append((bound, total))
        return out

    def as_dict(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "latency_buckets"}
        d["latency_buckets"] = self.cumulative_buckets()
        return d
