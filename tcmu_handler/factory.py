"""Wiring for the gateway daemon: one call opens an RBD image as a SCSI disk.

    registry = LunRegistry()                   # one per gateway: EXTENDED COPY targets
    disk = await open_rbd_disk(
        DiskConfig.from_controls(wwn, controls, vendor=..., product=...),
        pool="rbd", image="disk1", conf="/etc/ceph/ceph.conf",
        client_name="client.admin", alua=implicit_model(owner_tag, ports),
        registry=registry, reservation_ioctx=ioctx)   # rados.Ioctx of the image's pool
    table = LunTable({0: disk, ...})           # per ACL / nexus, handed to the portal
    ...
    disk.set_alua(new_model)                   # owner moved, gateways added
    await close_disk(disk)
"""

from __future__ import annotations

import logging
from typing import Any

from .alua import AluaModel
from .backends.rbd import RbdBackend
from .config import DiskConfig
from .disk import ScsiDisk
from .prstore import MemoryReservationStore, ReservationStore
from .xcopy import LunRegistry

log = logging.getLogger(__name__)


async def open_rbd_disk(config: DiskConfig, *, pool: str, image: str, conf: str | None = None,
                        client_name: str = "client.admin", keyring: str | None = None, namespace: str = "",
                        alua: AluaModel | None = None, registry: LunRegistry | None = None,
                        reservation_ioctx: Any = None, name: str = "", owner: bool = False) -> ScsiDisk:
    """Open ``pool/image`` and return a started :class:`ScsiDisk`.

    ``reservation_ioctx`` (a ``rados.Ioctx`` on the image's pool) makes
    reservations cluster-wide (object ``gateway.pr.<image id>``); without it they
    are local to this gateway, which is only right for a single-gateway target.
    ``owner``: this gateway owns the disk (its group is Active/Optimized), so it
    takes the exclusive lock now; otherwise the first write through the AO path
    would be answered BUSY (Linux retries, libiscsi and some tools do not).
    """
    backend = await RbdBackend.open(pool=pool, image=image, conf=conf, name=client_name, keyring=keyring,
                                    namespace=namespace, osd_op_timeout=config.osd_op_timeout)
    store: ReservationStore
    try:
        if reservation_ioctx is not None:
            from .rados_prstore import RadosReservationStore, object_name

            store = await RadosReservationStore.open(reservation_ioctx, object_name(backend.image_id),
                                                     timeout=max(5, config.osd_op_timeout))
        else:
            store = MemoryReservationStore()
        disk = ScsiDisk(config, backend, alua=alua, reservations=store, registry=registry,
                        name=name or f"{pool}/{image}")
        await disk.start()
    except BaseException:
        await backend.close()
        raise
    if owner and disk.lock is not None and not await disk.lock.acquire():
        log.warning("%s: could not take the exclusive lock at start; the first write will take it", disk.name)
    return disk


async def close_disk(disk: ScsiDisk) -> None:
    """Stop serving: forget the disk, close its reservation store and the image."""
    await disk.close()
    await disk.reservations.store.close()
    await disk.backend.close()


def memory_disk(size: int, *, block_size: int = 512, wwn: str | None = None, name: str = "",
                registry: LunRegistry | None = None, alua: AluaModel | None = None,
                instant: bool = False) -> ScsiDisk:
    """A disk on the memory backend (tests, the standalone portal, the protocol benchmark);
    ``instant``: operations complete without yielding to the loop (see MemoryBackend)."""
    import uuid

    config = DiskConfig(wwn=wwn or str(uuid.uuid4()), block_size=block_size)
    from .backends.memory import MemoryBackend

    return ScsiDisk(config, MemoryBackend(size, instant=instant), alua=alua,
                    reservations=MemoryReservationStore(), registry=registry, name=name or "memory")


def parse_size(text: str) -> int:
    """'64M', '1G', '4096' -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
