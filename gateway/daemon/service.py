"""The daemon's life: start, follow the config, report, drain and stop.

Start-up order (ceph-iscsi's where it applies): settings -> logging -> RADOS connection ->
remove stale blocklist entries of this gateway's address -> open the config store (create,
or import a ceph-iscsi ``gateway.conf`` once) -> metrics exporter -> follow the config
(watch + slow poll) and apply every new version -> heartbeat.

* A config apply that found problems reports health "degraded" and is retried every
  ``RETRY_INTERVAL`` seconds (e.g. an image that could not be opened yet).
* SIGHUP re-reads the settings file: target/disk control defaults, poll and heartbeat
  intervals, lock thrashing thresholds, log level and the metrics address apply at once
  (the config is re-applied); a new gateway name or cluster connection needs a restart.
* SIGTERM/SIGINT drain: stop accepting logins, let running commands finish (bounded),
  close the sessions, release the exclusive locks, close the images, report the gateway
  down (heartbeat 0), exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import Any

from gateway import settings as settings_mod
from gateway.config.errors import ConfigError
from gateway.config.follow import ConfigFollower
from gateway.config.model import ClusterConfig
from gateway.config.status import HEALTH_DEGRADED, HEALTH_ERROR, HEALTH_OK, GatewayStatus
from gateway.daemon.locks import LockMoveMonitor
from gateway.daemon.metrics import GatewayCollector, MetricsServer
from gateway.daemon.reconcile import Applied, Reconciler
from gateway.daemon.status import gateway_details
from gateway.portal.registry import TargetRegistry
from gateway.portal.server import PortalServer

log = logging.getLogger("rbd-target-gw")

RETRY_INTERVAL = 5.0
DRAIN_TIMEOUT = 10.0
EXIT_OK, EXIT_SETTINGS, EXIT_CLUSTER = 0, 2, 16


class GatewayService:
    """One running gateway."""

    def __init__(self, settings: Any, gateway: str, *, cfg_path: str | None = None,
                 overrides: dict[str, Any] | None = None, ready_file: str | None = None) -> None:
        self.settings = settings
        self.gateway = gateway
        self.cfg_path = cfg_path
        self.overrides = dict(overrides or {})
        self.ready_file = ready_file
        self.started = time.time()
        self.applied_version = -1
        self.health = HEALTH_OK
        self.message = ""
        self.problems: list[str] = []
        self.ceph: Any = None
        self.store: Any = None
        self.follower: ConfigFollower | None = None
        self.registry = TargetRegistry()
        self.server: PortalServer | None = None
        self.reconciler: Reconciler | None = None
        self.monitor = LockMoveMonitor(settings.lock_lost_cnt_threshhold, settings.stable_state_reset_count)
        self.metrics: MetricsServer | None = None
        self.metrics_address: tuple[str, int] | None = None
        self._latest: ClusterConfig | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._reported_sizes: dict[str, int | None] = {}
        self._report_lock = asyncio.Lock()
        self.ip_addresses: list[str] = []

    # ---- start ---------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        try:
            code = await self._start()
        except Exception:
            log.exception("start-up failed")
            code = EXIT_CLUSTER
        if code != EXIT_OK:
            await self._cleanup()
            return code
        log.info("gateway %s running (pid %d)", self.gateway, os.getpid())
        await self._stop.wait()
        log.info("stopping: draining sessions")
        await self.shutdown()
        return EXIT_OK

    async def _start(self) -> int:
        from gateway.config.crypto import cipher_from_settings
        from gateway.config.rados_store import RadosConfigStore
        from gateway.config.status_details import host_addresses
        from gateway.daemon.ceph import CephClient, CephError, address_ip
        from gateway.daemon.disks import MemoryDisks, RbdDisks

        s = self.settings
        self.ceph = CephClient(s)
        try:
            await asyncio.to_thread(self.ceph.connect)
            own = address_ip(await asyncio.to_thread(self.ceph.address))
            try:
                removed = await asyncio.to_thread(self.ceph.remove_stale_blocklist, {own})
                for addr in removed:
                    log.info("removed stale blocklist entry %s of this gateway's address", addr)
            except CephError as e:
                log.warning("blocklist clean-up skipped: %s", e)
            await asyncio.to_thread(self._resolve_deferred, s)
            ioctx = await asyncio.to_thread(self.ceph.ioctx, s.pool)
        except (CephError, ConfigError) as e:
            log.error("%s", e)
            return EXIT_CLUSTER
        self.store = RadosConfigStore(ioctx, s.gateway_conf, cipher=cipher_from_settings(s))
        try:
            opened = await asyncio.to_thread(self.store.open)
            log.info("config store %s/%s: %s", s.pool, s.gateway_conf, opened)
        except ConfigError as e:
            log.error("unable to open the configuration object: %s", e)
            return EXIT_CLUSTER
        self.ip_addresses = await asyncio.to_thread(host_addresses)
        loop = asyncio.get_running_loop()
        self.server = PortalServer(self.registry, loop)
        opener = (MemoryDisks(s.memory_disk_size_mb << 20, lock_handoff_timeout=s.lock_handoff_timeout,
                              instant=True) if s.data_backend == "memory"
                  else RbdDisks(self.ceph, s))
        self.reconciler = Reconciler(self.gateway, self.registry, opener, target_defaults=s.target_defaults,
                                     disk_defaults=s.disk_defaults, server=self.server)
        if s.prometheus_exporter:
            self.metrics = MetricsServer(GatewayCollector(loop, self))
            try:
                self.metrics_address = self.metrics.start(s.prometheus_host, s.prometheus_port)
                log.info("metrics on %s:%d", *self.metrics_address)
            except OSError as e:
                log.error("cannot serve metrics on %s:%s: %s", s.prometheus_host, s.prometheus_port, e)
                self.metrics = None
        else:
            log.info("prometheus_exporter is off: no metrics")
        self.follower = ConfigFollower(self.store, poll_interval=s.config_poll_interval)
        self._tasks = [loop.create_task(self._follow(), name="follow"),
                       loop.create_task(self._apply_loop(), name="apply"),
                       loop.create_task(self._heartbeat_loop(), name="heartbeat"),
                       loop.create_task(self._monitor_loop(), name="lock-monitor")]
        return EXIT_OK

    def _resolve_deferred(self, settings: Any) -> None:
        """``config://<key>`` values come from the mon config-key store (cephadm puts them there)."""
        if not settings.deferred or self.ceph is None:
            return

        def fetch(key: str) -> str:
            ret, out, err = self.ceph.mon_command({"prefix": "config-key get", "key": key})
            if ret != 0:
                raise ConfigError(f"config-key get {key} failed: {err}")
            return out.decode()

        try:
            settings.resolve_deferred(fetch)
        except settings_mod.SettingsError as e:
            raise ConfigError(str(e)) from None

    # ---- following the config ------------------------------------------------------------
    async def _follow(self) -> None:
        while True:
            try:
                async for cfg in self.follower:
                    self._latest = cfg
                    self._wake.set()
            except Exception as e:  # never stop following: a gateway that does is silently stale
                log.exception("following the config failed; again in %.0f s", RETRY_INTERVAL)
                self.follower.last_error = str(e)
                await asyncio.sleep(RETRY_INTERVAL)

    async def _apply_loop(self) -> None:
        while True:
            retry = RETRY_INTERVAL if self.problems else None
            try:
                await asyncio.wait_for(self._wake.wait(), retry)
            except TimeoutError:
                pass
            self._wake.clear()
            cfg = self._latest
            if cfg is None:
                continue
            try:
                await self.apply(cfg)
            except Exception:  # keep applying later versions
                log.exception("config version %d: apply failed", cfg.version)

    async def apply(self, cfg: ClusterConfig) -> Applied:
        t0 = time.monotonic()
        try:
            done = await self.reconciler.apply(cfg)
        except Exception as e:  # a bug must not stop the gateway from following the config
            log.exception("applying config version %d failed", cfg.version)
            done = Applied(cfg.version, [f"applying failed: {e}"])
        changed = cfg.version != self.applied_version
        self.applied_version = cfg.version
        self.problems = done.problems
        self._set_health()
        if changed or done.opened or done.closed:
            log.info("applied config version %d in %.0f ms%s", cfg.version, (time.monotonic() - t0) * 1000,
                     f" ({len(done.problems)} problem(s))" if done.problems else "")
        await self.report(announce=changed)
        self._write_ready_file()
        return done

    def _set_health(self) -> None:
        err = self.follower.last_error if self.follower else None
        if err and self.applied_version < 0:
            self.health, self.message = HEALTH_ERROR, f"cannot read the config: {err}"
        elif err:
            self.health, self.message = HEALTH_DEGRADED, f"cannot read the config: {err}"
        elif self.problems:
            self.health, self.message = HEALTH_DEGRADED, "; ".join(self.problems[:5])
        else:
            self.health, self.message = HEALTH_OK, ""

    # ---- status --------------------------------------------------------------------------
    def details(self) -> dict[str, Any]:
        d = gateway_details(self.reconciler, checkconf=self.settings.checkconf_hash(),
                            ip_addresses=self.ip_addresses, monitor=self.monitor)
        return d.to_dict()

    async def report(self, announce: bool = False, heartbeat: float | None = None) -> None:
        """Write the status; one report at a time, each built when its turn comes, so an older
        state never lands after a newer one."""
        async with self._report_lock:
            await self._report(announce, heartbeat)

    async def _report(self, announce: bool, heartbeat: float | None) -> None:
        if self.store is None or self.reconciler is None:
            return
        details = self.details()
        sizes = {name: d.get("size") for name, d in details.get("disks", {}).items()}
        if sizes != self._reported_sizes:
            announce = True  # the API waits for resizes to show
            self._reported_sizes = sizes
        status = GatewayStatus(self.gateway, self.applied_version, health=self.health, message=self.message,
                               details=details, started=self.started)
        if heartbeat is not None:
            status.heartbeat = heartbeat
        try:
            await asyncio.to_thread(self.store.report_status, status, announce)
        except ConfigError as e:
            log.warning("cannot report status: %s", e)
            if announce:
                self._reported_sizes = {}  # announce again with the next beat

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.gateway_heartbeat_interval)
            try:
                self._set_health()
                await self.report()
            except Exception:  # a missed beat, not a dead gateway
                log.exception("status report failed")

    async def _monitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.status_check_interval)
            self._poll_lock_moves()

    def _poll_lock_moves(self) -> None:
        if self.reconciler is not None:
            totals = {name: live.disk.stats.lock_acquired + live.disk.stats.lock_lost
                      for name, live in self.reconciler.disks.items()}
            for name in self.monitor.poll(totals):
                track = self.monitor.tracks[name]
                log.warning("%s: lock thrashing: the exclusive lock moved %d times in %d s; initiators "
                            "are writing through more than one gateway (use a failover path policy, "
                            "not round-robin)", name, track.last_delta, self.settings.status_check_interval)

    def _write_ready_file(self) -> None:
        if not self.ready_file:
            return
        info = {"pid": os.getpid(), "gateway": self.gateway, "applied_version": self.applied_version,
                "health": self.health, "listening": [f"{ip}:{port}" for ip, port in self.server.listening],
                "metrics": ":".join(map(str, self.metrics_address)) if self.metrics_address else ""}
        tmp = f"{self.ready_file}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(info, f)
            os.replace(tmp, self.ready_file)
        except OSError as e:
            log.warning("cannot write %s: %s", self.ready_file, e)

    # ---- SIGHUP --------------------------------------------------------------------------
    async def reload(self) -> None:
        from gateway.daemon import load_settings

        try:
            new = await asyncio.to_thread(load_settings, self.cfg_path, self.overrides)
            await asyncio.to_thread(self._resolve_deferred, new)
        except (settings_mod.SettingsError, ConfigError) as e:
            log.error("SIGHUP: settings not reloaded: %s", e)
            return
        old, self.settings = self.settings, new
        for key in ("cluster_name", "ceph_config_dir", "cluster_client_name", "pool", "gateway_conf",
                    "gateway_name", "data_backend", "memory_disk_size_mb"):
            if getattr(old, key) != getattr(new, key):
                log.warning("SIGHUP: %s changed; restart the gateway to use it", key)
        logging.getLogger().setLevel(new.logger_level)
        self.monitor.threshold = new.lock_lost_cnt_threshhold
        self.monitor.reset_after = new.stable_state_reset_count
        if self.follower is not None:
            self.follower.poll_interval = new.config_poll_interval
        if self.reconciler is not None:
            self.reconciler.target_defaults = new.target_defaults
            self.reconciler.disk_defaults = new.disk_defaults
            self.reconciler.opener.lock_handoff_timeout = new.lock_handoff_timeout
            for live in self.reconciler.disks.values():  # the disks open now, too
                if live.disk.lock is not None:
                    live.disk.lock.handoff_timeout = new.lock_handoff_timeout
        if (old.prometheus_host, old.prometheus_port, old.prometheus_exporter) != \
                (new.prometheus_host, new.prometheus_port, new.prometheus_exporter):
            await self._restart_metrics()
        log.info("SIGHUP: settings re-read from %s", new.path)
        if self._latest is not None:
            self._wake.set()  # re-apply with the new defaults

    async def _restart_metrics(self) -> None:
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
            self.metrics, self.metrics_address = None, None
        s = self.settings
        if s.prometheus_exporter:
            self.metrics = MetricsServer(GatewayCollector(asyncio.get_running_loop(), self))
            try:
                self.metrics_address = self.metrics.start(s.prometheus_host, s.prometheus_port)
                log.info("metrics now on %s:%d", *self.metrics_address)
            except OSError as e:
                log.error("cannot serve metrics on %s:%s: %s", s.prometheus_host, s.prometheus_port, e)
                self.metrics = None

    # ---- stop ----------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """Drain: no new logins, running commands finish, sessions close, locks released,
        images closed, the gateway reported down."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        server = self.server
        if server is not None:
            for key in list(server.servers):
                await server.stop_listening(*key)
            running = [t.user for c in list(server.connections) if c.conn is not None
                       for t in c.conn.running_tasks() if t.user is not None and not t.user.done()]
            if running:
                log.info("waiting for %d running command(s)", len(running))
                await asyncio.wait(running, timeout=DRAIN_TIMEOUT)
            await server.close()
        if self.reconciler is not None:
            await self.reconciler.close()
        self.health, self.message = HEALTH_ERROR, "stopped"
        await self.report(announce=True, heartbeat=0.0)
        await self._cleanup()
        log.info("stopped")

    async def _cleanup(self) -> None:
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
            self.metrics = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
            self.store = None
        if self.ceph is not None:
            await asyncio.to_thread(self.ceph.shutdown)
            self.ceph = None
