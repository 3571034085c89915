"""Typed changes to a ``ClusterConfig``: what the API does, as functions over a model copy.

Use them inside ``store.update``::

    lun = store.update(lambda cfg: ops.map_lun(cfg, iqn, "rbd/disk1")).result

Each checks its preconditions and raises ``ValidationError`` (``NotFound``, ``AlreadyExists``)
with a message saying what to fix; on success it mutates ``cfg`` and returns the entity.
The store then checks the whole resulting state (``validation.violations``) before writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.config import allocation, validation
from gateway.config.errors import AlreadyExists, NotFound, ValidationError
from gateway.config.model import (
    DEFAULT_BACKSTORE,
    DEFAULT_ISCSI_PORT,
    ChapAuth,
    Client,
    ClusterConfig,
    Disk,
    Gateway,
    HostGroup,
    Portal,
    Target,
    TargetLun,
)
from gateway.settings import DISK_CONTROLS, TARGET_CONTROLS


# ---- lookups -----------------------------------------------------------------------------
def get_target(cfg: ClusterConfig, iqn: str) -> Target:
    target = cfg.targets.get(iqn.strip().lower())
    if target is None:
        raise NotFound(f"target {iqn} does not exist", "target")
    return target


def get_disk(cfg: ClusterConfig, name: str) -> Disk:
    disk = cfg.disks.get(name)
    if disk is None:
        raise NotFound(f"disk {name} is not defined", "disk")
    return disk


def get_client(target: Target, iqn: str) -> Client:
    client = target.clients.get(iqn.strip().lower())
    if client is None:
        raise NotFound(f"client {iqn} is not defined in target {target.iqn}", "client")
    return client


def get_group(target: Target, name: str) -> HostGroup:
    group = target.groups.get(name)
    if group is None:
        raise NotFound(f"host group {name} is not defined in target {target.iqn}", "group_name")
    return group


# ---- discovery ---------------------------------------------------------------------------
def set_discovery_auth(cfg: ClusterConfig, auth: ChapAuth) -> ChapAuth:
    validation.check_chap(auth)
    cfg.discovery_auth = auth
    return auth


# ---- targets -----------------------------------------------------------------------------
def add_target(cfg: ClusterConfig, iqn: str, controls: Mapping[str, Any] | None = None,
               defaults: Mapping[str, Any] | None = None) -> Target:
    iqn = validation.normalize_iqn(iqn)
    if iqn in cfg.targets:
        raise AlreadyExists(f"target {iqn} already exists", "target")
    target = Target(iqn, controls=validation.merge_controls(TARGET_CONTROLS, {}, controls or {}, defaults))
    cfg.targets[iqn] = target
    return target


def remove_target(cfg: ClusterConfig, iqn: str) -> None:
    """Refused while clients or disks remain; gateways serving nothing else are forgotten."""
    target = get_target(cfg, iqn)
    if target.clients or target.luns:
        raise ValidationError(f"target {target.iqn} still has {len(target.clients)} client(s) and "
                              f"{len(target.luns)} disk(s); remove them first", "target")
    del cfg.targets[target.iqn]
    _forget_unused_gateways(cfg, target.portals)


def set_target_controls(cfg: ClusterConfig, iqn: str, controls: Mapping[str, Any],
                        defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    target = get_target(cfg, iqn)
    target.controls = validation.merge_controls(TARGET_CONTROLS, target.controls, controls, defaults)
    return target.controls


def set_target_auth(cfg: ClusterConfig, iqn: str, auth: ChapAuth) -> ChapAuth:
    target = get_target(cfg, iqn)
    validation.check_chap(auth)
    if auth.enabled and target.acl_enabled:
        raise ValidationError(f"target {target.iqn} has ACLs enabled; target CHAP applies only with "
                              "acl_enabled=false (disable ACLs first, or set CHAP per client)", "username")
    target.auth = auth
    return auth


def set_acl_enabled(cfg: ClusterConfig, iqn: str, enabled: bool) -> None:
    target = get_target(cfg, iqn)
    if not enabled and target.clients:
        raise ValidationError(f"target {target.iqn} has {len(target.clients)} client(s); remove them "
                              "before disabling ACLs", "action")
    if enabled and target.auth.enabled:
        raise ValidationError(f"target {target.iqn} has target CHAP set; clear it before enabling ACLs",
                              "action")
    target.acl_enabled = enabled


# ---- gateways and portals ---------------------------------------------------------------
def add_portal(cfg: ClusterConfig, iqn: str, gateway: str, ip_addresses: Iterable[str], *,
               port: int = DEFAULT_ISCSI_PORT, advertise: Iterable[str] = ()) -> Portal:
    """Make ``gateway`` serve the target; it gets the lowest free TPG tag, kept for good.

    ``port``: where it listens; ``advertise``: what discovery announces instead of each
    address (NAT, containers), one entry per address, or none.
    """
    target = get_target(cfg, iqn)
    gateway = validation.check_gateway_name(gateway)
    if gateway in target.portals:
        raise AlreadyExists(f"gateway {gateway} already serves target {target.iqn}", "gateway")
    ips = _check_portal_ips(target, gateway, ip_addresses)
    portal = Portal(gateway, allocation.next_tpg_tag(target), ips, port=validation.check_port(port),
                    advertise=validation.check_advertise(ips, list(advertise)))
    target.portals[gateway] = portal
    cfg.gateways.setdefault(gateway, Gateway(gateway))
    for lun in target.luns.values():  # a target that had lost all its gateways
        if not lun.owner:
            lun.owner = gateway
    return portal


def set_portal_addresses(cfg: ClusterConfig, iqn: str, gateway: str, ip_addresses: Iterable[str]) -> Portal:
    target = get_target(cfg, iqn)
    portal = _get_portal(target, gateway)
    portal.ip_addresses = _check_portal_ips(target, gateway, ip_addresses)
    if portal.advertise and len(portal.advertise) != len(portal.ip_addresses):
        portal.advertise = []  # they described the old addresses
    return portal


def set_portal_endpoint(cfg: ClusterConfig, iqn: str, gateway: str, *, port: int | None = None,
                        advertise: Iterable[str] | None = None) -> Portal:
    """Change the port a gateway listens on and/or the addresses discovery announces for it
    (``advertise=[]`` announces the bound addresses again)."""
    target = get_target(cfg, iqn)
    portal = _get_portal(target, gateway)
    if port is not None:
        portal.port = validation.check_port(port)
    if advertise is not None:
        portal.advertise = validation.check_advertise(portal.ip_addresses, list(advertise))
    return portal


def remove_portal(cfg: ClusterConfig, iqn: str, gateway: str) -> None:
    """Stop serving a target from ``gateway``; no other gateway's TPG tag changes.

    LUNs it owned move to the remaining gateway owning the fewest.  Removing the last
    gateway is refused while disks or clients remain (ceph-iscsi silently dropped them).
    """
    target = get_target(cfg, iqn)
    _get_portal(target, gateway)
    if len(target.portals) == 1 and (target.luns or target.clients):
        raise ValidationError(f"{gateway} is the last gateway of target {target.iqn}; remove its "
                              "disks and clients first, or delete the target", "gateway")
    del target.portals[gateway]
    for lun in sorted(target.luns.values(), key=lambda lun: lun.lun_id):
        if lun.owner == gateway:
            lun.owner = allocation.choose_owner(cfg, target) if target.portals else ""
    _forget_unused_gateways(cfg, [gateway])


def _get_portal(target: Target, gateway: str) -> Portal:
    portal = target.portals.get(gateway)
    if portal is None:
        raise NotFound(f"gateway {gateway} does not serve target {target.iqn}", "gateway")
    return portal


def _check_portal_ips(target: Target, gateway: str, ip_addresses: Iterable[str]) -> list[str]:
    ips = [validation.check_ip_address(ip) for ip in ip_addresses]
    if not ips:
        raise ValidationError(f"gateway {gateway} needs at least one portal address", "ip_address")
    if len(set(ips)) != len(ips):
        raise ValidationError("portal addresses are listed more than once", "ip_address")
    for other in target.portals.values():
        clash = set(ips) & set(other.ip_addresses)
        if other.gateway != gateway and clash:
            raise AlreadyExists(f"address {sorted(clash)[0]} is already a portal of gateway "
                                f"{other.gateway} in target {target.iqn}", "ip_address")
    return ips


def _forget_unused_gateways(cfg: ClusterConfig, names: Iterable[str]) -> None:
    for name in names:
        if not any(name in t.portals for t in cfg.targets.values()):
            cfg.gateways.pop(name, None)


# ---- disks --------------------------------------------------------------------------------
def add_disk(cfg: ClusterConfig, pool: str, image: str, wwn: str | None = None, *,
             allocating_host: str = "", pool_id: int | None = None, backstore: str = DEFAULT_BACKSTORE,
             controls: Mapping[str, Any] | None = None,
             defaults: Mapping[str, Any] | None = None) -> Disk:
    """Register an image as a disk.  Pass the WWN the image carries (``image_identity``) so
    detach/attach keeps the device identity; a fresh one is generated otherwise."""
    validation.check_pool_name(pool)
    validation.check_image_name(image)
    name = f"{pool}/{image}"
    if name in cfg.disks:
        raise AlreadyExists(f"disk {name} is already defined", "disk")
    if len(cfg.disks) >= validation.MAX_DISKS:
        raise ValidationError(f"disk limit of {validation.MAX_DISKS} reached; remove a disk first", "disk")
    wwn = validation.check_wwn(wwn) if wwn else allocation.new_wwn()
    for other in cfg.disks.values():
        if other.wwn == wwn:
            raise AlreadyExists(f"wwn {wwn} is already used by disk {other.name}", "wwn")
    disk = Disk(pool, image, wwn=wwn, backstore=validation.check_backstore(backstore),
                backstore_object_name=allocation.backstore_object_name(cfg, pool, image),
                pool_id=pool_id, allocating_host=allocating_host,
                controls=validation.merge_controls(DISK_CONTROLS, {}, controls or {}, defaults))
    cfg.disks[name] = disk
    return disk


def remove_disk(cfg: ClusterConfig, name: str) -> Disk:
    disk = get_disk(cfg, name)
    users = cfg.disk_users(name)
    if users:
        raise ValidationError(f"disk {name} is in use by {', '.join(users)}; unmap it first", "disk")
    del cfg.disks[name]
    return disk


def set_disk_controls(cfg: ClusterConfig, name: str, controls: Mapping[str, Any],
                      defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    disk = get_disk(cfg, name)
    disk.controls = validation.merge_controls(DISK_CONTROLS, disk.controls, controls, defaults)
    return disk.controls


# ---- target LUNs --------------------------------------------------------------------------
def map_lun(cfg: ClusterConfig, iqn: str, disk: str, lun_id: int | str | None = None,
            owner: str | None = None, minimum_gateways: int = 1) -> TargetLun:
    """Map a disk into a target: explicit or lowest free LUN id; owner = least loaded gateway."""
    target = get_target(cfg, iqn)
    get_disk(cfg, disk)
    if len(target.portals) < minimum_gateways:
        raise ValidationError(f"at least {minimum_gateways} gateways must serve target {target.iqn} "
                              f"before disks can be mapped (it has {len(target.portals)})", "disk")
    mapped = cfg.target_of_disk(disk)
    if mapped is not None:
        raise AlreadyExists(f"disk {disk} is already mapped to target {mapped.iqn}", "disk")
    if owner is not None:
        _get_portal(target, owner)
    lun = TargetLun(disk, allocation.target_lun_id(target, lun_id),
                    owner if owner is not None else allocation.choose_owner(cfg, target))
    target.luns[disk] = lun
    return lun


def unmap_lun(cfg: ClusterConfig, iqn: str, disk: str) -> None:
    target = get_target(cfg, iqn)
    if disk not in target.luns:
        raise NotFound(f"disk {disk} is not mapped to target {target.iqn}", "disk")
    for group in target.groups.values():
        if disk in group.disks:
            raise ValidationError(f"disk {disk} belongs to host group {group.name}; remove it from "
                                  "the group first", "disk")
    users = [c.iqn for c in target.clients.values() if disk in c.luns]
    if users:
        raise ValidationError(f"disk {disk} is mapped to client(s) {', '.join(users)}; remove it "
                              "from them first", "disk")
    del target.luns[disk]


def set_lun_owner(cfg: ClusterConfig, iqn: str, disk: str, owner: str) -> TargetLun:
    target = get_target(cfg, iqn)
    lun = target.luns.get(disk)
    if lun is None:
        raise NotFound(f"disk {disk} is not mapped to target {target.iqn}", "disk")
    _get_portal(target, owner)
    lun.owner = owner
    return lun


def drain_portal(cfg: ClusterConfig, iqn: str, gateway: str) -> dict[str, str]:
    """Move every LUN ``gateway`` owns in the target to the target's other gateways (the
    least loaded first), so it can be taken down without initiators losing their optimized
    path.  Returns ``{disk: new owner}``.  The gateway keeps serving as a non-optimized path.
    """
    target = get_target(cfg, iqn)
    _get_portal(target, gateway)
    owned = sorted((lun for lun in target.luns.values() if lun.owner == gateway), key=lambda lun: lun.lun_id)
    if owned and len(target.portals) < 2:
        raise ValidationError(f"{gateway} is the only gateway of target {target.iqn}; add another "
                              "gateway before draining it", "gateway")
    moved = {}
    for lun in owned:
        lun.owner = allocation.choose_owner(cfg, target, exclude=(gateway,))
        moved[lun.disk] = lun.owner
    return moved


# ---- clients -------------------------------------------------------------------------------
def add_client(cfg: ClusterConfig, iqn: str, client_iqn: str, auth: ChapAuth | None = None,
               minimum_gateways: int = 1) -> Client:
    target = get_target(cfg, iqn)
    client_iqn = validation.normalize_initiator_name(client_iqn)
    if client_iqn in target.clients:
        raise AlreadyExists(f"client {client_iqn} already exists in target {target.iqn}", "client")
    if not target.acl_enabled:
        raise ValidationError(f"target {target.iqn} has ACLs disabled (any initiator may log in); "
                              "enable ACLs to define clients", "client")
    if len(target.portals) < minimum_gateways:
        raise ValidationError(f"at least {minimum_gateways} gateways must serve target {target.iqn} "
                              f"before clients can be defined (it has {len(target.portals)})", "client")
    auth = auth or ChapAuth()
    validation.check_chap(auth)
    client = Client(client_iqn, auth)
    target.clients[client_iqn] = client
    return client


def remove_client(cfg: ClusterConfig, iqn: str, client_iqn: str) -> None:
    """Refused while the client is in a host group (whether it is logged in is the API's check)."""
    target = get_target(cfg, iqn)
    client = get_client(target, client_iqn)
    if client.group_name:
        raise ValidationError(f"client {client.iqn} is a member of host group {client.group_name}; "
                              "remove it from the group first", "client")
    del target.clients[client.iqn]


def set_client_auth(cfg: ClusterConfig, iqn: str, client_iqn: str, auth: ChapAuth) -> ChapAuth:
    client = get_client(get_target(cfg, iqn), client_iqn)
    validation.check_chap(auth)
    client.auth = auth
    return auth


def add_client_lun(cfg: ClusterConfig, iqn: str, client_iqn: str, disk: str) -> int:
    """Give a client a disk of the target; returns the LUN id the client sees."""
    target = get_target(cfg, iqn)
    client = get_client(target, client_iqn)
    if client.group_name:
        raise ValidationError(f"client {client.iqn} gets its disks from host group {client.group_name}; "
                              "change the group's disks instead", "disk")
    if disk not in target.luns:
        raise NotFound(f"disk {disk} is not mapped to target {target.iqn}; map it first", "disk")
    if disk in client.luns:
        raise AlreadyExists(f"disk {disk} is already mapped to client {client.iqn}", "disk")
    lun_id = allocation.client_lun_id(target, client, disk)
    client.luns[disk] = lun_id
    return lun_id


def remove_client_lun(cfg: ClusterConfig, iqn: str, client_iqn: str, disk: str) -> None:
    target = get_target(cfg, iqn)
    client = get_client(target, client_iqn)
    if client.group_name:
        raise ValidationError(f"client {client.iqn} gets its disks from host group {client.group_name}; "
                              "change the group's disks instead", "disk")
    if disk not in client.luns:
        raise NotFound(f"disk {disk} is not mapped to client {client.iqn}", "disk")
    del client.luns[disk]


# ---- host groups --------------------------------------------------------------------------
def update_group(cfg: ClusterConfig, iqn: str, name: str, *, add_members: Iterable[str] = (),
                 remove_members: Iterable[str] = (), add_disks: Iterable[str] = (),
                 remove_disks: Iterable[str] = ()) -> HostGroup:
    """Create or change a host group: members see exactly the group's disks at its LUN ids.

    A new member must be a client of the target with no disks of its own and in no other
    group; a disk must be mapped to the target.  Members leaving keep their masking.
    """
    target = get_target(cfg, iqn)
    group = target.groups.get(name) or HostGroup(validation.check_group_name(name))
    for disk in remove_disks:
        if disk not in group.disks:
            raise NotFound(f"disk {disk} is not in host group {name}", "disks")
        del group.disks[disk]
        for member in group.members:
            target.clients[member].luns.pop(disk, None)
    for member_iqn in remove_members:
        member = get_client(target, member_iqn)
        if member.iqn not in group.members:
            raise NotFound(f"client {member.iqn} is not a member of host group {name}", "members")
        group.members.remove(member.iqn)
        member.group_name = ""
    for disk in add_disks:
        if disk not in target.luns:
            raise NotFound(f"disk {disk} is not mapped to target {target.iqn}; map it first", "disks")
        if disk not in group.disks:
            group.disks[disk] = allocation.group_lun_id(target, group, disk)
    for member_iqn in add_members:
        member = get_client(target, member_iqn)
        if member.iqn in group.members:
            continue
        if member.group_name:
            raise ValidationError(f"client {member.iqn} is already in host group {member.group_name}",
                                  "members")
        if member.luns:
            raise ValidationError(f"client {member.iqn} has disks mapped directly; remove them before "
                                  "adding it to a host group", "members")
        group.members.append(member.iqn)
        member.group_name = name
    for member in group.members:
        target.clients[member].luns = dict(group.disks)
    target.groups[name] = group
    return group


def remove_group(cfg: ClusterConfig, iqn: str, name: str) -> None:
    """Delete a host group; its members keep the disks they see (as ceph-iscsi does)."""
    target = get_target(cfg, iqn)
    group = get_group(target, name)
    for member in group.members:
        target.clients[member].group_name = ""
    del target.groups[name]


# ---- maintenance ----------------------------------------------------------------------------
def drain_gateway(cfg: ClusterConfig, gateway: str) -> dict[str, str]:
    """``drain_portal`` on every target ``gateway`` serves: before maintenance, all of its LUNs
    become Active/Optimized elsewhere.  Returns ``{disk: new owner}`` over all targets."""
    validation.check_gateway_name(gateway)
    served = [t.iqn for t in cfg.targets.values() if gateway in t.portals]
    if not served:
        raise NotFound(f"gateway {gateway} serves no target", "gateway")
    moved: dict[str, str] = {}
    for iqn in served:
        moved.update(drain_portal(cfg, iqn, gateway))
    return moved
