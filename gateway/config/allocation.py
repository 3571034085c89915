"""Identity allocation rules (ceph-iscsi's, reference H.5): pure functions over the model.

Nothing here renumbers what exists: freed ids are reused by later allocations only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from gateway.config.errors import ValidationError
from gateway.config.model import Client, ClusterConfig, HostGroup, Target
from gateway.config.validation import MAX_LUN_ID, MAX_TPG_TAG, check_lun_id


def lowest_free(used: Iterable[int], first: int, last: int, what: str) -> int:
    taken = set(used)
    for candidate in range(first, last + 1):
        if candidate not in taken:
            return candidate
    raise ValidationError(f"no free {what}: all of {first}..{last} are in use")


def target_lun_id(target: Target, requested: int | str | None = None) -> int:
    """The requested LUN id if free in the target, else the lowest free id from 0."""
    if requested is not None and requested != "":
        lun_id = check_lun_id(requested)
        holder = target.lun_by_id(lun_id)
        if holder is not None:
            raise ValidationError(f"LUN id {lun_id} is already used by disk {holder.disk} in target "
                                  f"{target.iqn}", "lun_id")
        return lun_id
    return lowest_free((lun.lun_id for lun in target.luns.values()), 0, MAX_LUN_ID,
                       f"LUN id in target {target.iqn}")


def client_lun_id(target: Target, client: Client, disk: str) -> int:
    """The LUN id a client sees a disk at.

    1. the id the client already has for the disk;
    2. else the disk's target LUN id, if it is free in this client's ACL and no other client
       of the target uses it for a different disk (ceph-iscsi checks any use by any client;
       a client mapping the *same* disk at that id does not block it here, which keeps ids
       consistent across clients);
    3. else the lowest id free in this client's ACL.
    """
    if disk in client.luns:
        return client.luns[disk]
    used = set(client.luns.values())
    preferred = target.luns[disk].lun_id
    others = {lun_id for c in target.clients.values() if c.iqn != client.iqn
              for d, lun_id in c.luns.items() if d != disk}
    if preferred not in used and preferred not in others:
        return preferred
    return lowest_free(used, 0, MAX_LUN_ID, f"LUN id for client {client.iqn}")


def group_lun_id(target: Target, group: HostGroup, disk: str) -> int:
    """The disk's target LUN id if free in the group, else the lowest id unused in the group."""
    if disk in group.disks:
        return group.disks[disk]
    used = set(group.disks.values())
    preferred = target.luns[disk].lun_id
    if preferred not in used:
        return preferred
    return lowest_free(used, 0, MAX_LUN_ID, f"LUN id in host group {group.name}")


def choose_owner(cfg: ClusterConfig, target: Target, exclude: Iterable[str] = ()) -> str:
    """The target's gateway owning the fewest LUNs cluster-wide; ties go to the lowest TPG tag.

    ceph-iscsi breaks ties by portal insertion order; the TPG tag is that order here.
    ``exclude`` leaves gateways out (a gateway being drained).
    """
    skip = set(exclude)
    portals = [p for p in target.portals_by_tag() if p.gateway not in skip]
    if not portals:
        raise ValidationError(f"target {target.iqn} has no other gateway to own its LUNs", "gateway")
    counts = {p.gateway: 0 for p in portals}
    for t in cfg.targets.values():
        for lun in t.luns.values():
            if lun.owner in counts:
                counts[lun.owner] += 1
    return min(portals, key=lambda p: (counts[p.gateway], p.tpg_tag)).gateway


def next_tpg_tag(target: Target) -> int:
    """The lowest TPG tag (from 1) no gateway of the target holds."""
    return lowest_free((p.tpg_tag for p in target.portals.values()), 1, MAX_TPG_TAG,
                       f"TPG tag in target {target.iqn}")


def backstore_object_name(cfg: ClusterConfig, pool: str, image: str) -> str:
    """``pool.image``, or ``pool.image.N`` when another disk already has that name."""
    taken = {d.backstore_object_name for d in cfg.disks.values()}
    base = f"{pool}.{image}"
    candidate, n = base, 0
    while candidate in taken:
        n += 1
        candidate = f"{base}.{n}"
    return candidate


def new_wwn() -> str:
    """A fresh unit serial: a random UUID, as ceph-iscsi (rtslib) generates."""
    return str(uuid.uuid4())
