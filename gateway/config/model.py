"""The desired state of a gateway cluster as typed dataclasses.

This mirrors what ceph-iscsi keeps in ``gateway.conf`` (schema 11), with two changes that
give stable identities: each gateway serving a target has a TPG tag stored here (not derived
from list positions), and the owner of a LUN lives on the target's LUN mapping.  Counters
that ceph-iscsi stored and let drift (``active_luns``) are derived instead.

CHAP secrets are held in clear in memory; ``repr`` never shows them, and the codec encrypts
them at rest when a key pair is configured.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

TIME_FORMAT = "%Y/%m/%d %H:%M:%S"  # UTC, as ceph-iscsi writes timestamps
DEFAULT_BACKSTORE = "user:rbd"
DEFAULT_ISCSI_PORT = 3260
# Stands for a secret in redacted exports; not a valid CHAP secret, so it cannot be re-imported.
REDACTED_SECRET = "<redacted>"


def timestamp(when: float | None = None) -> str:
    """A UTC timestamp in ceph-iscsi's format."""
    return time.strftime(TIME_FORMAT, time.gmtime(time.time() if when is None else when))


def disk_name(pool: str, image: str) -> str:
    return f"{pool}/{image}"


@dataclass
class ChapAuth:
    """CHAP credentials (one way, or mutual); all empty means "no CHAP".

    ``*_sealed`` is true when the stored secret is ciphertext this process cannot open (no
    private key here): the value is then the ciphertext, kept verbatim so that rewriting
    the entity never loses the secret.
    """

    username: str = ""
    password: str = ""
    mutual_username: str = ""
    mutual_password: str = ""
    password_sealed: bool = False
    mutual_password_sealed: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.username or self.password)

    @property
    def mutual(self) -> bool:
        return bool(self.mutual_username or self.mutual_password)

    @property
    def mode(self) -> str:
        """``None``, ``CHAP`` or ``CHAP_MUTUAL``, as gwcli shows it."""
        if self.mutual:
            return "CHAP_MUTUAL"
        return "CHAP" if self.enabled else "None"

    def __repr__(self) -> str:
        def secret(value: str) -> str:
            return "<set>" if value else "<empty>"
        return (f"ChapAuth(username={self.username!r}, password={secret(self.password)}, "
                f"mutual_username={self.mutual_username!r}, "
                f"mutual_password={secret(self.mutual_password)})")

    __str__ = __repr__


@dataclass
class Gateway:
    """A gateway node known to the cluster (registered when it first serves a target)."""

    name: str
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Disk:
    """An RBD image registered as a SCSI disk.  ``wwn`` is its unit serial, generated once."""

    pool: str
    image: str
    wwn: str = ""
    backstore: str = DEFAULT_BACKSTORE
    backstore_object_name: str = ""
    pool_id: int | None = None
    allocating_host: str = ""
    controls: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return disk_name(self.pool, self.image)


@dataclass
class Portal:
    """A gateway serving a target: its stable TPG tag and its portal addresses.

    The gateway listens on ``ip_addresses`` at ``port``.  ``advertise`` (empty, or one entry
    per address, ``host`` or ``host:port``) is what discovery announces instead, for
    gateways reached through NAT, a container network or qemu's user networking.
    """

    gateway: str
    tpg_tag: int
    ip_addresses: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    port: int = DEFAULT_ISCSI_PORT
    advertise: list[str] = field(default_factory=list)

    def endpoints(self) -> list[tuple[str, int, str, int]]:
        """(bound ip, port, announced host, announced port) of each portal address."""
        out = []
        for i, ip in enumerate(self.ip_addresses):
            host, port = ip, self.port
            if i < len(self.advertise) and self.advertise[i]:
                host, port = split_host_port(self.advertise[i], self.port)
            out.append((ip, self.port, host, port))
        return out


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``v6addr``, ``[v6addr]:port`` -> (host, port); no validation."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:] else default_port
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port else default_port
    return text, default_port


@dataclass
class TargetLun:
    """A disk mapped into a target at ``lun_id``; ``owner`` is its Active/Optimized gateway."""

    disk: str
    lun_id: int
    owner: str = ""


@dataclass
class Client:
    """An initiator allowed on a target (a NodeACL), with its LUN masking."""

    iqn: str
    auth: ChapAuth = field(default_factory=ChapAuth)
    group_name: str = ""
    luns: dict[str, int] = field(default_factory=dict)  # disk name -> LUN id seen by this client
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostGroup:
    """Clients that see the same disks at the same LUN ids."""

    name: str
    members: list[str] = field(default_factory=list)
    disks: dict[str, int] = field(default_factory=dict)  # disk name -> LUN id
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    iqn: str
    acl_enabled: bool = True
    auth: ChapAuth = field(default_factory=ChapAuth)
    controls: dict[str, Any] = field(default_factory=dict)
    portals: dict[str, Portal] = field(default_factory=dict)  # gateway name -> portal
    luns: dict[str, TargetLun] = field(default_factory=dict)  # disk name -> mapping
    clients: dict[str, Client] = field(default_factory=dict)
    groups: dict[str, HostGroup] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def portals_by_tag(self) -> list[Portal]:
        """Portals in TPG tag order (the order in which they were added)."""
        return sorted(self.portals.values(), key=lambda p: p.tpg_tag)

    def lun_by_id(self, lun_id: int) -> TargetLun | None:
        for lun in self.luns.values():
            if lun.lun_id == lun_id:
                return lun
        return None


@dataclass
class ClusterConfig:
    """The whole desired state at one ``version`` (bumped by every committed change)."""

    version: int = 0
    targets: dict[str, Target] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    gateways: dict[str, Gateway] = field(default_factory=dict)
    discovery_auth: ChapAuth = field(default_factory=ChapAuth)
    created: str = ""
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Stored keys the codec could not place (unknown kind, orphan, undecodable), kept
    # verbatim so a rewrite never drops them; ``validation.violations`` reports them.
    stray: dict[str, bytes] = field(default_factory=dict)

    def copy(self) -> ClusterConfig:
        return copy.deepcopy(self)

    def target_of_disk(self, disk: str) -> Target | None:
        """The target a disk is mapped to (a disk is mapped to at most one)."""
        for target in self.targets.values():
            if disk in target.luns:
                return target
        return None

    def active_luns(self, gateway: str) -> int:
        """LUNs this gateway owns (is Active/Optimized for), over all targets."""
        return sum(1 for t in self.targets.values() for lun in t.luns.values() if lun.owner == gateway)

    def gateways_of(self, target_iqns: list[str] | None = None) -> list[str]:
        """Gateways serving the given targets (all targets when None), sorted."""
        names = set()
        for iqn, target in self.targets.items():
            if target_iqns is None or iqn in target_iqns:
                names.update(target.portals)
        return sorted(names)

    def disk_users(self, disk: str) -> list[str]:
        """Who uses a disk: ``target <iqn>``, ``client <iqn>``, ``group <name>`` entries."""
        users = []
        for target in self.targets.values():
            if disk in target.luns:
                users.append(f"target {target.iqn}")
            users.extend(f"client {c.iqn}" for c in target.clients.values() if disk in c.luns)
            users.extend(f"group {g.name}" for g in target.groups.values() if disk in g.disks)
        return users
