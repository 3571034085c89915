"""What every request handler works with: settings, the config store, RBD, tasks, and the
one way to change the config (``change``): validate + compare-and-set + wait for the live
gateways of the affected targets, answering which applied it, which are pending and which
are down.  No gateway is ever called: the store is the coordination point.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from api.auth import SourcePolicy
from api.images import ImageService
from api.live import LiveState
from api.tasks import TaskRegistry
from gateway.config.model import ClusterConfig
from gateway.config.status import ApplyReport
from gateway.config.store import Committed, ConfigStore

log = logging.getLogger("api")

Targets = Iterable[str] | Callable[[ClusterConfig], Iterable[str]] | None


@dataclass
class Change:
    """A committed change and where it stands on the gateways."""

    done: Committed
    report: ApplyReport

    def body(self, message: str, **extra: Any) -> dict[str, Any]:
        r = self.report
        return {"message": message, "version": self.done.version, "applied": r.applied,
                "pending": r.pending, "down": r.down, "degraded": r.degraded, **extra}


def local_gateway_name(settings: Any) -> str:
    """This node's gateway name: ``gateway_name`` from the cfg, else the FQDN."""
    return settings.gateway_name or socket.getfqdn()


class ApiContext:
    def __init__(self, settings: Any, store: ConfigStore, images: ImageService | None = None,
                 tasks: TaskRegistry | None = None, gateway_name: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.images = images
        self.tasks = tasks or TaskRegistry()
        self.gateway_name = gateway_name or local_gateway_name(settings)
        self.sources = SourcePolicy(settings.trusted_ip_list, self._source_addresses)
        self._watch: Any = None
        # Writers of this process take turns: compare-and-set conflicts between our own
        # request threads only cost retries (measured: 8 threads went from 54 to 13
        # changes/s); conflicts with other API nodes are still resolved by the store.
        self._writer = threading.Lock()

    def start(self) -> None:
        """Follow config changes so a newly added gateway's addresses are trusted at once."""
        try:
            self._watch = self.store.watch(self.sources.mark_stale)
        except Exception as e:  # polling (max_age) still covers it
            log.warning("cannot watch the config for source-address changes: %s", e)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self.tasks.shutdown()

    # ---- reading -------------------------------------------------------------------------
    def load(self) -> ClusterConfig:
        return self.store.load()

    def live(self) -> LiveState:
        return LiveState(self.store.read_statuses(), self.settings.gateway_dead_after)

    def _source_addresses(self) -> tuple[set[str], set[str]]:
        cfg = self.store.load()
        addresses = {ip for t in cfg.targets.values() for p in t.portals.values() for ip in p.ip_addresses}
        addresses |= self.live().reported_addresses()
        return addresses, set(cfg.gateways) | set(cfg.gateways_of())

    # ---- changing -------------------------------------------------------------------------
    def change(self, fn: Callable[..., Any], *args: Any, targets: Targets = None, everywhere: bool = False,
               **kwargs: Any) -> Change:
        """Commit ``fn(cfg, *args, **kwargs)`` and wait for the gateways it concerns.

        ``targets`` (iqns, or a function of the state giving them) name the targets whose
        gateways must apply the change, before and after it (a removed gateway must tear
        down too); ``everywhere`` means every gateway (discovery auth).
        """
        before: set[str] = set()

        def apply(cfg: ClusterConfig) -> Any:
            before.clear()
            before.update(self._concerned(cfg, targets, everywhere))
            return fn(cfg, *args, **kwargs)

        with self._writer:
            done = self.store.update(apply)
        gateways = before | self._concerned(done.config, targets, everywhere)
        return Change(done, self.wait(done.version, gateways))

    def wait(self, version: int, gateways: Iterable[str]) -> ApplyReport:
        names = sorted(set(gateways))
        if not names:
            return ApplyReport(version)
        return self.store.wait_applied(version, names, timeout=self.settings.apply_timeout,
                                       dead_after=self.settings.gateway_dead_after)

    @staticmethod
    def _concerned(cfg: ClusterConfig, targets: Targets, everywhere: bool) -> set[str]:
        if everywhere:
            return set(cfg.gateways) | set(cfg.gateways_of())
        if targets is None:
            return set()
        iqns = targets(cfg) if callable(targets) else targets
        return set(cfg.gateways_of([i for i in iqns if i]))

    def wait_sizes(self, disk: str, gateways: Iterable[str], size: int) -> ApplyReport:
        """Wait until every live gateway exposes ``disk`` with at least ``size`` bytes."""
        names = sorted(set(gateways))
        deadline = time.monotonic() + self.settings.apply_timeout
        while True:
            live = self.live()
            report = ApplyReport(self.store.read_version())
            for name in names:
                g = live.gateway(name)
                if not g.alive:
                    report.down.append(name)
                    continue
                state = (g.details.disks or {}).get(disk)
                if state is not None and state.size is not None and state.size >= size:
                    report.applied.append(name)
                else:
                    report.pending.append(name)
            if report.complete or time.monotonic() >= deadline:
                return report
            time.sleep(0.2)
