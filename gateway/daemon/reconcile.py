"""Reconcile: make this gateway's live targets match the cluster config.

``Reconciler.apply(cfg)`` is idempotent and incremental; it can be called with any config
at any time (a notify, the slow poll, a retry after a problem, SIGHUP):

1. the disks of every target this gateway serves are opened (new ones, and new instances of
   those whose image, WWN or controls changed; concurrently, off the event loop where librbd
   blocks); a disk that cannot be opened is a problem, its LUN is left out until a retry;
2. the portal registry gets every served target with *all* its TPGs (stable tags from the
   config; only this gateway's TPG enabled, every TPG's portals known so SendTargets and
   RTPG describe every path), ACLs with CHAP, LUN tables, controls; targets no longer served
   are removed.  The registry closes exactly the sessions that lost their right to exist (a
   removed client, target or TPG) and updates the LUN tables of the others in place;
3. disks no longer needed, and replaced instances, are closed (their lock released first);
4. every disk gets its ALUA model (the owner's group optimized) and, when this gateway's
   ownership changed, takes the free lock or releases it (``locks.LockKeeper``);
5. listeners follow the enabled portals.

Returns the problems found; the caller reports them (health "degraded") and retries.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.config import model
from gateway.daemon.alua import lun_alua
from gateway.daemon.disks import CountedLunTable, DiskOpener, DiskSpec
from gateway.daemon.locks import LockKeeper
from gateway.iscsi.chap import ChapCredentials, ChapSecret
from gateway.portal.registry import ClientAcl, PortalSpec, Target, TargetControls, TargetRegistry, Tpg
from gateway.settings import SettingsError
from tcmu_handler.disk import ScsiDisk

log = logging.getLogger(__name__)


@dataclass
class LiveDisk:
    """A disk this gateway serves."""

    spec: DiskSpec
    disk: ScsiDisk
    target: str = ""
    lun_id: int = -1
    owner: bool = False
    backstore_object_name: str = ""


@dataclass
class Applied:
    """What one ``apply`` did (for logs, status and tests)."""

    version: int
    problems: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)


def _unusable_secret() -> ChapCredentials:
    """CHAP nobody can answer: what a login gets when its real secret cannot be decrypted
    here (fail closed: no CHAP would let anyone in)."""
    return ChapCredentials(ChapSecret("sealed-secret", secrets.token_hex(16)))


def chap_credentials(auth: model.ChapAuth) -> tuple[ChapCredentials | None, bool]:
    """(credentials, usable); not usable when a secret is sealed (no private key here)."""
    if not auth.enabled:
        return None, True
    if auth.password_sealed or auth.mutual_password_sealed:
        return _unusable_secret(), False
    mutual = ChapSecret(auth.mutual_username, auth.mutual_password) if auth.mutual else None
    return ChapCredentials(ChapSecret(auth.username, auth.password), mutual), True


class Reconciler:
    """The live state of one gateway and the way to the desired one."""

    def __init__(self, gateway: str, registry: TargetRegistry, opener: DiskOpener, *,
                 target_defaults: dict[str, Any] | None = None, disk_defaults: dict[str, Any] | None = None,
                 server: Any = None, locks: LockKeeper | None = None) -> None:
        self.gateway = gateway
        self.registry = registry
        self.opener = opener
        self.server = server
        self.target_defaults = dict(target_defaults or {})
        self.disk_defaults = dict(disk_defaults or {})
        self.locks = locks or LockKeeper()
        self.disks: dict[str, LiveDisk] = {}
        self.disk_problems: dict[str, str] = {}  # disk -> why it is not served
        self.listen_problems: dict[tuple[str, int], str] = {}
        self.config: model.ClusterConfig | None = None  # the last applied

    # ---- the whole pass ------------------------------------------------------------------
    async def apply(self, cfg: model.ClusterConfig) -> Applied:
        done = Applied(cfg.version)
        me = self.gateway
        served = {iqn: t for iqn, t in cfg.targets.items() if me in t.portals}
        wanted: dict[str, tuple[model.Target, model.TargetLun, DiskSpec]] = {}
        for t in served.values():
            for lun in t.luns.values():
                disk = cfg.disks.get(lun.disk)
                if disk is None:
                    done.problems.append(f"target {t.iqn} LUN {lun.lun_id}: disk {lun.disk} is not defined")
                    continue
                wanted[lun.disk] = (t, lun, DiskSpec.of(disk, self.disk_defaults))

        retired = await self._open_disks(wanted, done)
        for name in list(self.disks):
            if name not in wanted:
                retired.append(self.disks.pop(name).disk)
        for name in list(self.disk_problems):
            if name not in wanted:
                del self.disk_problems[name]
        for name, (t, lun, _) in wanted.items():
            live = self.disks.get(name)
            if live is not None:
                live.target, live.lun_id = t.iqn, lun.lun_id
                live.backstore_object_name = cfg.disks[name].backstore_object_name

        for t in served.values():
            target, problems = self._registry_target(t)
            done.problems += problems
            self.registry.set_target(target)
        for iqn in list(self.registry.targets):
            if iqn not in served:
                self.registry.remove_target(iqn)
        creds, usable = chap_credentials(cfg.discovery_auth)
        if not usable:
            done.problems.append("discovery CHAP secret cannot be decrypted here (no private key); "
                                 "discovery logins are refused")
        self.registry.set_discovery_auth(creds)

        for disk in retired:
            done.closed.append(disk.name)
            await self._close(disk)

        for name, (t, lun, spec) in wanted.items():
            live = self.disks.get(name)
            if live is None:
                continue
            alua = lun_alua(t, lun, spec.osd_op_timeout)
            if live.disk.alua != alua:
                live.disk.set_alua(alua)
            owner = lun.owner == me
            if owner != live.owner:
                live.owner = owner
                self.locks.owner_changed(name, live.disk, owner)

        await self._sync_listeners(done)
        self.config = cfg
        for p in done.problems:
            log.warning("config version %d: %s", cfg.version, p)
        return done

    # ---- disks ---------------------------------------------------------------------------
    async def _open_disks(self, wanted: dict, done: Applied) -> list[ScsiDisk]:
        """Open what is missing or changed; returns the instances they replace."""
        todo = []
        for name, (t, lun, spec) in wanted.items():
            live = self.disks.get(name)
            if live is None or live.spec != spec:
                todo.append((name, spec, lun_alua(t, lun, spec.osd_op_timeout)))
        results = await asyncio.gather(*(self.opener.open(spec, alua) for _, spec, alua in todo),
                                       return_exceptions=True)
        retired = []
        for (name, spec, _), result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                msg = f"disk {name}: cannot open {spec.pool}/{spec.image}: {result}"
                done.problems.append(msg)
                self.disk_problems[name] = str(result)
                continue
            self.disk_problems.pop(name, None)
            old = self.disks.get(name)
            if old is not None:
                self.locks.forget(name)
                retired.append(old.disk)
            self.disks[name] = LiveDisk(spec, result)
            done.opened.append(name)
            log.info("serving disk %s (wwn %s)", name, spec.wwn)
        return retired

    async def _close(self, disk: ScsiDisk) -> None:
        self.locks.forget(disk.name)
        try:
            if disk.lock is not None:
                await disk.lock.release()
            await self.opener.close(disk)
        except Exception:  # closing must go on with the others
            log.exception("%s: closing failed", disk.name)
        log.info("stopped serving disk %s", disk.name)

    # ---- registry ------------------------------------------------------------------------
    def _registry_target(self, t: model.Target) -> tuple[Target, list[str]]:
        problems = []
        tpgs = {}
        for p in t.portals.values():
            specs = []
            for ip, port, host, adv_port in p.endpoints():
                moved = (host, adv_port) != (ip, port)
                specs.append(PortalSpec(ip, port, host if moved else None, adv_port if moved else None))
            tpgs[p.tpg_tag] = Tpg(p.tpg_tag, specs, enabled=p.gateway == self.gateway)
        try:
            controls = TargetControls.from_dict(dict(t.controls), self.target_defaults)
        except (SettingsError, TypeError) as e:
            problems.append(f"target {t.iqn} controls: {e}; using the defaults")
            controls = TargetControls.from_dict({}, self.target_defaults)
        units = {}
        for lun in t.luns.values():
            live = self.disks.get(lun.disk)
            if live is not None:
                units[lun.disk] = live.disk
        target_chap, usable = chap_credentials(t.auth)
        if not usable:
            problems.append(f"target {t.iqn}: CHAP secret cannot be decrypted here; logins are refused")
        clients = {}
        for c in t.clients.values():
            chap, usable = chap_credentials(c.auth)
            if not usable:
                problems.append(f"target {t.iqn} client {c.iqn}: CHAP secret cannot be decrypted here; "
                                "its logins are refused")
            table = {lun_id: units[disk] for disk, lun_id in c.luns.items() if disk in units}
            clients[c.iqn] = ClientAcl(c.iqn, CountedLunTable(table), chap)
        everyone = {lun.lun_id: units[lun.disk] for lun in t.luns.values() if lun.disk in units}
        target = Target(t.iqn, tpgs, acl_enabled=t.acl_enabled, chap=target_chap,
                        luns=CountedLunTable(everyone), clients=clients, controls=controls)
        return target, problems

    # ---- listeners -----------------------------------------------------------------------
    async def _sync_listeners(self, done: Applied) -> None:
        if self.server is None:
            return
        want = self.registry.enabled_portals()
        for key in list(self.server.servers):
            if key not in want:
                await self.server.stop_listening(*key)
        self.listen_problems = {k: v for k, v in self.listen_problems.items() if k in want}
        for ip, port in sorted(want):
            if (ip, port) in self.server.servers:
                continue
            try:
                await self.server.listen(ip, port)
                self.listen_problems.pop((ip, port), None)
            except OSError as e:
                self.listen_problems[(ip, port)] = str(e)
                done.problems.append(f"cannot listen on {ip}:{port}: {e.strerror or e}")

    # ---- shutdown ------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop serving everything: targets (their sessions close), locks, images."""
        await self.locks.close()
        for iqn in list(self.registry.targets):
            self.registry.remove_target(iqn)
        disks = [live.disk for live in self.disks.values()]
        self.disks.clear()
        await asyncio.gather(*(self._close(d) for d in disks))
