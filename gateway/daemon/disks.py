"""Opening and closing the disks a gateway serves, and the per-ACL LUN tables that count I/O.

``DiskSpec`` is what a disk is opened with (image, WWN, controls); when the config changes
any of it the daemon opens a new instance and swaps it in.  Openers:

* ``RbdDisks``: librbd through ``tcmu_handler.factory.open_rbd_disk``, one LunRegistry per
  gateway (EXTENDED COPY between its disks), reservations in RADOS (cluster-wide PR);
* ``MemoryDisks``: the memory backend (``data_backend = memory``; unit tests, benchmarks),
  with a shared image table so several in-process gateways see the same data and lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config.model import Disk
from tcmu_handler.alua import AluaModel
from tcmu_handler.api import DataDirection, LogicalUnit, LunTable, ScsiCommand, ScsiResult
from tcmu_handler.config import DiskConfig
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.xcopy import LunRegistry

log = logging.getLogger(__name__)

# ceph-iscsi's INQUIRY identity (existing multipath.conf entries match on it).
VENDOR, PRODUCT = "LIO-ORG", "TCMU device"


@dataclass(frozen=True)
class DiskSpec:
    """Everything an open disk depends on; equal specs need no reopen."""

    pool: str
    image: str
    wwn: str
    controls: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, disk: Disk, defaults: dict[str, Any]) -> DiskSpec:
        """The disk's controls over this node's ``[target]`` defaults."""
        merged = {**defaults, **{k: v for k, v in disk.controls.items() if v is not None}}
        return cls(disk.pool, disk.image, disk.wwn, tuple(sorted(merged.items())))

    @property
    def name(self) -> str:
        return f"{self.pool}/{self.image}"

    def disk_config(self) -> DiskConfig:
        return DiskConfig.from_controls(self.wwn, dict(self.controls), vendor=VENDOR, product=PRODUCT)

    @property
    def osd_op_timeout(self) -> int:
        return int(dict(self.controls).get("osd_op_timeout", 30))


class DiskOpener(Protocol):
    #: seconds a lock holder has to answer a handoff request (the ``lock_handoff_timeout`` setting)
    lock_handoff_timeout: float

    async def open(self, spec: DiskSpec, alua: AluaModel) -> ScsiDisk: ...

    async def close(self, disk: ScsiDisk) -> None: ...

    def close_all(self) -> None: ...


class RbdDisks:
    """Disks on RBD images; each image on its own RADOS client (opened off the loop)."""

    def __init__(self, ceph: Any, settings: Any) -> None:
        self.ceph = ceph
        self.settings = settings
        self.lock_handoff_timeout = settings.lock_handoff_timeout  # SIGHUP updates it
        self.registry = LunRegistry()

    async def open(self, spec: DiskSpec, alua: AluaModel) -> ScsiDisk:
        from gateway.daemon.ceph import keyring_path
        from tcmu_handler.factory import open_rbd_disk

        ioctx = await asyncio.to_thread(self.ceph.ioctx, spec.pool)
        s = self.settings
        config = dataclasses.replace(spec.disk_config(), lock_handoff_timeout=self.lock_handoff_timeout)
        return await open_rbd_disk(config, pool=spec.pool, image=spec.image, conf=s.ceph_conf,
                                   client_name=s.cluster_client_name, keyring=keyring_path(s), alua=alua,
                                   registry=self.registry, reservation_ioctx=ioctx, name=spec.name,
                                   owner=False)

    async def close(self, disk: ScsiDisk) -> None:
        from tcmu_handler.factory import close_disk

        await close_disk(disk)

    def close_all(self) -> None:
        pass


class MemoryDisks:
    """Disks on the memory backend; ``images`` may be shared between in-process gateways."""

    def __init__(self, size: int = 64 << 20, images: dict[str, Any] | None = None, *,
                 lock_handoff_timeout: float = 2.0, instant: bool = False) -> None:
        self.size = size
        self.lock_handoff_timeout = lock_handoff_timeout
        self.instant = instant  # MemoryBackend(instant=...): the daemon's memory backend
        self.images = images if images is not None else {}
        self.registry = LunRegistry()
        self.missing: set[str] = set()  # names that fail to open (tests: a missing image)

    async def open(self, spec: DiskSpec, alua: AluaModel) -> ScsiDisk:
        from tcmu_handler.backends.memory import MemoryBackend, MemoryImage
        from tcmu_handler.prstore import MemoryReservationStore

        if spec.name in self.missing:
            raise OSError(2, f"image {spec.name} does not exist")
        image = self.images.get(spec.name)
        if image is None:
            image = self.images[spec.name] = MemoryImage(self.size)
        backend = MemoryBackend(image=image, supports_lock=True, instant=self.instant)
        config = dataclasses.replace(spec.disk_config(), lock_handoff_timeout=self.lock_handoff_timeout)
        disk = ScsiDisk(config, backend, alua=alua, reservations=MemoryReservationStore(),
                        registry=self.registry, name=spec.name)
        await disk.start()
        return disk

    async def close(self, disk: ScsiDisk) -> None:
        await disk.close()
        await disk.backend.close()

    def close_all(self) -> None:
        pass


class CountedLunTable(LunTable):
    """A LUN table (one per ACL) that counts commands and bytes per LUN, as LIO's
    ``scsi_auth_intr`` statistics do for ceph-iscsi's per-client metrics.

    ``counters[lun]`` is ``[commands, read bytes, write bytes]``, preallocated when the
    mapping changes so the command path only adds to integers."""

    def __init__(self, luns: dict[int, LogicalUnit] | None = None) -> None:
        super().__init__(dict(luns or {}))
        self.counters: dict[int, list[int]] = {lun: [0, 0, 0] for lun in self.luns}

    def set_luns(self, luns: dict[int, LogicalUnit]) -> None:
        old = self.luns
        super().set_luns(luns)
        self.counters = {lun: (self.counters.get(lun, [0, 0, 0]) if old.get(lun) is unit else [0, 0, 0])
                         for lun, unit in self.luns.items()}

    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        unit = self.plain_unit(cmd)
        result = await (unit.execute(cmd) if unit is not None else LunTable.execute(self, cmd))
        c = self.counters.get(cmd.lun)
        if c is not None:
            c[0] += 1
            if result.status == 0:
                if cmd.direction is DataDirection.WRITE:
                    c[2] += cmd.edtl
                elif result.data is not None:
                    c[1] += len(result.data)
        return result
