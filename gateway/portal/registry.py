"""The live target configuration of one gateway, which the daemon updates at runtime.

Every gateway knows every target and every TPG (so SendTargets through any gateway lists
all paths); ``Tpg.enabled`` says whether this gateway serves it.  Changes apply at once:
new logins see them; sessions of a removed client, target or disabled TPG are closed; a
client's LunTable is updated in place so its sessions see the new LUNs; other sessions are
left alone.  The registry also answers the login questions (LoginAuthority) and keeps the
session table (TSIH allocation, reinstatement, listing for metrics/API).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.iscsi.chap import DEFAULT_ALLOWED, ChapCredentials
from gateway.iscsi.constants import LoginStatus
from gateway.iscsi.login import LoginAccess, LoginResult
from gateway.iscsi.negotiation import TargetOffers
from gateway.iscsi.text import Catalogue, PortalAddress
from gateway.settings import TARGET_CONTROLS, parse_controls
from tcmu_handler.api import LogicalUnit, LunTable, Nexus

log = logging.getLogger(__name__)
DISCOVERY_CMDSN_DEPTH = 16


@dataclass
class TargetControls:
    """The [target] controls of gateway/settings.py (ceph-iscsi TGT_SETTINGS) for one target."""

    cmdsn_depth: int = 128
    dataout_timeout: int = 20
    nopin_timeout: int = 5
    nopin_response_timeout: int = 5
    immediate_data: bool = True
    initial_r2t: bool = True
    max_outstanding_r2t: int = 1
    first_burst_length: int = 262144
    max_burst_length: int = 524288
    max_recv_data_segment_length: int = 262144
    max_xmit_data_segment_length: int = 262144

    @classmethod
    def from_dict(cls, controls: dict[str, Any], defaults: dict[str, Any] | None = None) -> TargetControls:
        """Validated controls (SettingsError names a bad key); None/"" = default."""
        values = dict(defaults or {})
        values.update({k: v for k, v in parse_controls(TARGET_CONTROLS, controls).items() if v is not None})
        return cls(**{k: v for k, v in values.items() if k in TARGET_CONTROLS})

    def offers(self) -> TargetOffers:
        return TargetOffers(
            max_recv_data_segment_length=self.max_recv_data_segment_length,
            max_xmit_data_segment_length=self.max_xmit_data_segment_length,
            max_burst_length=self.max_burst_length,
            first_burst_length=min(self.first_burst_length, self.max_burst_length),
            immediate_data=self.immediate_data, initial_r2t=self.initial_r2t,
            max_outstanding_r2t=self.max_outstanding_r2t)


@dataclass(frozen=True)
class PortalSpec:
    """A portal of a TPG: where it listens and, optionally, the address it announces
    (NAT, containers)."""

    ip: str
    port: int = 3260
    advertise_ip: str | None = None
    advertise_port: int | None = None

    def announced(self, tpgt: int) -> PortalAddress:
        return PortalAddress(self.advertise_ip or self.ip, self.advertise_port or self.port, tpgt)


@dataclass
class Tpg:
    tag: int
    portals: list[PortalSpec] = field(default_factory=list)
    enabled: bool = False            # served by this gateway


@dataclass
class ClientAcl:
    iqn: str
    luns: LunTable = field(default_factory=LunTable)
    chap: ChapCredentials | None = None


@dataclass
class Target:
    iqn: str
    tpgs: dict[int, Tpg] = field(default_factory=dict)
    acl_enabled: bool = True
    chap: ChapCredentials | None = None          # target-level CHAP (acl disabled)
    luns: LunTable = field(default_factory=LunTable)   # what everyone sees when acl disabled
    clients: dict[str, ClientAcl] = field(default_factory=dict)
    controls: TargetControls = field(default_factory=TargetControls)
    alias: str = ""


class LiveSession(Protocol):
    """What the registry needs of a logged-in connection (the portal implements it)."""

    def close(self, reason: str) -> None: ...

    def apply_controls(self, controls: TargetControls) -> None: ...


@dataclass
class SessionRecord:
    tsih: int
    initiator: str
    isid: bytes
    target: str              # "" for discovery sessions
    tpgt: int
    peer: tuple
    local: tuple
    discovery: bool
    nexus: Nexus | None
    luns: LunTable | None
    live: LiveSession | None = None

    def info(self) -> dict[str, Any]:
        return {"initiator": self.initiator, "isid": self.isid.hex(), "tsih": self.tsih,
                "peer": f"{self.peer[0]}:{self.peer[1]}" if self.peer else "",
                "target": self.target, "tpgt": self.tpgt, "discovery": self.discovery,
                "connections": 1}


class TargetRegistry:
    """Targets, TPGs, ACLs and sessions of this gateway (mutated by the daemon)."""

    def __init__(self, chap_algorithms: tuple[int, ...] = DEFAULT_ALLOWED) -> None:
        self.targets: dict[str, Target] = {}
        self.discovery_chap: ChapCredentials | None = None
        self.chap_algorithms = chap_algorithms
        self.sessions: dict[int, SessionRecord] = {}
        self._tsih = itertools.count(1)
        self.default_controls: dict[str, Any] = {}

    # ----------------------------------------------------------------- configuration
    def set_target(self, target: Target) -> None:
        """Add or replace a target; sessions on TPGs it no longer serves here are closed."""
        old = self.targets.get(target.iqn)
        self.targets[target.iqn] = target
        if old is None:
            return
        if old.luns is not target.luns:
            old.luns.set_luns(target.luns.luns)
            target.luns = old.luns
        for iqn, client in target.clients.items():
            prev = old.clients.get(iqn)
            if prev is not None and prev.luns is not client.luns:
                prev.luns.set_luns(client.luns.luns)
                client.luns = prev.luns
        for rec in self._sessions_of(target.iqn):
            tpg = target.tpgs.get(rec.tpgt)
            if tpg is None or not tpg.enabled:
                self._close(rec, "TPG no longer served by this gateway")
            elif target.acl_enabled and rec.initiator not in target.clients:
                self._close(rec, "client removed from the ACL")
            elif rec.live is not None:
                rec.live.apply_controls(target.controls)

    def remove_target(self, iqn: str) -> None:
        self.targets.pop(iqn, None)
        for rec in self._sessions_of(iqn):
            self._close(rec, "target removed")

    def set_client(self, target_iqn: str, client: ClientAcl) -> None:
        """Add or update an ACL entry; an existing client's LunTable is updated in place."""
        target = self.targets[target_iqn]
        prev = target.clients.get(client.iqn)
        if prev is not None and prev.luns is not client.luns:
            prev.luns.set_luns(client.luns.luns)
            client.luns = prev.luns
        target.clients[client.iqn] = client

    def remove_client(self, target_iqn: str, client_iqn: str) -> None:
        target = self.targets.get(target_iqn)
        if target is not None:
            target.clients.pop(client_iqn, None)
        for rec in self._sessions_of(target_iqn):
            if rec.initiator == client_iqn:
                self._close(rec, "client removed")

    def set_luns(self, target_iqn: str, luns: dict[int, LogicalUnit], client_iqn: str | None = None) -> None:
        """Change what a client (or, with acl disabled, everyone) sees; live sessions too."""
        target = self.targets[target_iqn]
        table = target.clients[client_iqn].luns if client_iqn else target.luns
        table.set_luns(luns)

    def set_controls(self, target_iqn: str, controls: TargetControls) -> None:
        target = self.targets[target_iqn]
        target.controls = controls
        for rec in self._sessions_of(target_iqn):
            if rec.live is not None:
                rec.live.apply_controls(controls)

    def close_target_sessions(self, target_iqn: str, reason: str) -> None:
        """End every session of a target on this gateway (TARGET COLD RESET)."""
        for rec in self._sessions_of(target_iqn):
            self._close(rec, reason)

    def set_discovery_auth(self, chap: ChapCredentials | None) -> None:
        self.discovery_chap = chap

    def enabled_portals(self) -> set[tuple[str, int]]:
        """(ip, port) this gateway must listen on."""
        out = set()
        for target in self.targets.values():
            for tpg in target.tpgs.values():
                if tpg.enabled:
                    out.update((p.ip, p.port) for p in tpg.portals)
        return out

    # ----------------------------------------------------------------- sessions
    def list_sessions(self) -> list[dict[str, Any]]:
        return [rec.info() for rec in self.sessions.values()]

    def _sessions_of(self, target_iqn: str) -> list[SessionRecord]:
        return [r for r in self.sessions.values() if r.target == target_iqn and not r.discovery]

    def _close(self, rec: SessionRecord, reason: str) -> None:
        if self.sessions.pop(rec.tsih, None) is not None:
            _nexus_lost(rec)
        if rec.live is not None:
            rec.live.close(reason)

    def unregister(self, tsih: int, live: LiveSession | None = None) -> None:
        rec = self.sessions.get(tsih)
        if rec is not None and (live is None or rec.live is live):
            del self.sessions[tsih]
            _nexus_lost(rec)

    def _new_tsih(self) -> int:
        for _ in range(65536):
            tsih = next(self._tsih) & 0xFFFF
            if tsih and tsih not in self.sessions:
                return tsih
            if tsih == 0xFFFF:
                self._tsih = itertools.count(1)
        raise RuntimeError("no free TSIH")

    def authority(self, local: tuple, peer: tuple) -> PortalAuthority:
        return PortalAuthority(self, local, peer)

    # ----------------------------------------------------------------- discovery
    def catalogue(self, value: str, session_target: str | None) -> Catalogue:
        """SendTargets data: every portal of every gateway, with TPG tags."""
        if session_target is not None and value in ("", "All"):
            names = [session_target]
        elif value == "All":
            names = sorted(self.targets)
        elif value == "":
            names = []
        else:
            names = [value]
        out: Catalogue = []
        for name in names:
            target = self.targets.get(name)
            if target is None:
                continue
            portals = [p.announced(tpg.tag) for _, tpg in sorted(target.tpgs.items()) for p in tpg.portals]
            out.append((name, portals))
        return out


class PortalAuthority:
    """LoginAuthority for one connection (knows the local portal it arrived on)."""

    def __init__(self, registry: TargetRegistry, local: tuple, peer: tuple) -> None:
        self.registry = registry
        ip = local[0] if local else ""
        # A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6 addresses.
        self.local = (ip.removeprefix("::ffff:") if "." in ip else ip, local[1] if local else 0)
        self.peer = peer
        self.target: Target | None = None
        self.tpg: Tpg | None = None
        self.luns: LunTable | None = None
        self.record: SessionRecord | None = None

    def _tpg_here(self, target: Target) -> Tpg | None:
        ip, port = self.local
        for tpg in target.tpgs.values():
            if tpg.enabled and any(p.port == port and p.ip in (ip, "0.0.0.0", "::") for p in tpg.portals):
                return tpg
        return None

    def resolve(self, initiator_name: str, target_name: str | None, discovery: bool) -> LoginAccess:
        reg = self.registry
        if discovery:
            return LoginAccess(chap=reg.discovery_chap, chap_algorithms=reg.chap_algorithms,
                               offers=TargetOffers(), tpgt=0, cmdsn_depth=DISCOVERY_CMDSN_DEPTH)
        target = reg.targets.get(target_name or "")
        if target is None:
            return LoginAccess(status=LoginStatus.NOT_FOUND)
        tpg = self._tpg_here(target)
        if tpg is None:
            return LoginAccess(status=LoginStatus.NOT_FOUND)
        if target.acl_enabled:
            client = target.clients.get(initiator_name)
            if client is None:
                log.info("login of %s to %s refused: not in the ACL", initiator_name, target.iqn)
                return LoginAccess(status=LoginStatus.AUTHORIZATION_FAILURE)
            chap, self.luns = client.chap, client.luns
        else:
            chap, self.luns = target.chap, target.luns
        self.target, self.tpg = target, tpg
        return LoginAccess(chap=chap, chap_algorithms=reg.chap_algorithms, offers=target.controls.offers(),
                           tpgt=tpg.tag, target_alias=target.alias, cmdsn_depth=target.controls.cmdsn_depth)

    def admit(self, login: LoginResult) -> int | tuple[int, int]:
        reg = self.registry
        if not login.discovery:
            # Session reinstatement: same initiator port (name + ISID) on the same target port.
            for rec in list(reg.sessions.values()):
                if (rec.initiator == login.initiator_name and rec.isid == login.isid
                        and rec.target == login.target_name and rec.tpgt == login.tpgt and not rec.discovery):
                    reg._close(rec, "session reinstated by a new login with the same ISID")
        tsih = reg._new_tsih()
        nexus = None
        if not login.discovery:
            nexus = Nexus(initiator_name=login.initiator_name,
                          initiator_port=f"{login.initiator_name},i,0x{login.isid.hex()}",
                          target_name=login.target_name,
                          target_port=f"{login.target_name},t,0x{login.tpgt:04x}",
                          tpgt=login.tpgt, relative_port=login.tpgt)
        self.record = SessionRecord(tsih, login.initiator_name, login.isid, login.target_name, login.tpgt,
                                    self.peer, self.local, login.discovery, nexus, self.luns)
        reg.sessions[tsih] = self.record
        return tsih


def _nexus_lost(rec: SessionRecord) -> None:
    """The I_T nexus of a session ended: the SCSI layer aborts its tasks and releases its
    SPC-2 reservation.  Called when the session leaves the table, before a reinstating
    session with the same nexus can send a command."""
    if rec.nexus is not None and rec.luns is not None:
        rec.luns.nexus_lost(rec.nexus)
