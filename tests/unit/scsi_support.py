"""Helpers for the SCSI device unit tests: CDB builders, a disk on the memory
backend behind a LUN table, and sense decoding."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from tcmu_handler.api import DataDirection, LunTable, Nexus, ScsiCommand, ScsiResult, Status
from tcmu_handler.backends.memory import MemoryBackend
from tcmu_handler.config import DiskConfig
from tcmu_handler.disk import ScsiDisk
from tcmu_handler.xcopy import LunRegistry

BS = 512
BLOCKS = 2048
WWN = "4fc1071d-7e2f-4df0-95c8-925a6ea8b3c1"
N1 = Nexus("iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
           "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test,i,0x23d000000001",
           "iqn.2003-01.com.example:gw", "iqn.2003-01.com.example:gw,t,0x1", 1, 1)
N2 = Nexus("iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
           "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2,i,0x23d000000002",
           "iqn.2003-01.com.example:gw", "iqn.2003-01.com.example:gw,t,0x1", 1, 1)
# The same initiator port as N1, through another gateway's portal group.
N1_GW2 = Nexus(N1.initiator_name, N1.initiator_port, N1.target_name,
               "iqn.2003-01.com.example:gw,t,0x2", 2, 2)


def cdb6(op: int, *rest: int) -> bytes:
    return bytes((op, *rest)).ljust(6, b"\0")


def rw6(op: int, lba: int, n: int) -> bytes:
    return bytes((op, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, n & 0xFF, 0))


def rw10(op: int, lba: int, n: int, b1: int = 0, group: int = 0) -> bytes:
    return struct.pack(">BBIBHB", op, b1, lba & 0xFFFFFFFF, group, n, 0)


def rw12(op: int, lba: int, n: int, b1: int = 0) -> bytes:
    return struct.pack(">BBIIBB", op, b1, lba & 0xFFFFFFFF, n, 0, 0)


def rw16(op: int, lba: int, n: int, b1: int = 0, group: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, b1, lba & 0xFFFFFFFFFFFFFFFF, n, group, 0)


def inquiry(page: int | None = None, alloc: int = 255, b1: int = 0) -> bytes:
    if page is None:
        return struct.pack(">BBBHB", 0x12, b1, 0, alloc, 0)
    return struct.pack(">BBBHB", 0x12, b1 | 1, page, alloc, 0)


def sa16(op: int, sa: int, lba: int = 0, alloc: int = 32, b14: int = 0) -> bytes:
    return struct.pack(">BBQIBB", op, sa, lba, alloc, b14, 0)


def maint_in(sa: int, b2: int = 0, b3: int = 0, b45: int = 0, alloc: int = 4096, b1_high: int = 0) -> bytes:
    return struct.pack(">BBBBHIBB", 0xA3, sa | b1_high, b2, b3, b45, alloc, 0, 0)


def report_luns(select: int = 0, alloc: int = 4096) -> bytes:
    return struct.pack(">BBBBBBIBB", 0xA0, 0, select, 0, 0, 0, alloc, 0, 0)


def mode_sense6(page: int, pc: int = 0, dbd: bool = False, subpage: int = 0, alloc: int = 255) -> bytes:
    return bytes((0x1A, 0x08 if dbd else 0, (pc << 6) | page, subpage, alloc, 0))


def mode_sense10(page: int, pc: int = 0, b1: int = 0, alloc: int = 1024) -> bytes:
    return struct.pack(">BBBBBBBHB", 0x5A, b1, (pc << 6) | page, 0, 0, 0, 0, alloc, 0)


def unmap_cdb(plen: int, b1: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x42, b1, 0, 0, plen, 0)


def unmap_list(*ranges: tuple[int, int]) -> bytes:
    descs = b"".join(struct.pack(">QI4x", lba, n) for lba, n in ranges)
    return struct.pack(">HH4x", len(descs) + 6, len(descs)) + descs


def caw(lba: int, n: int = 1, b1: int = 0) -> bytes:
    return struct.pack(">BBQ3xBBB", 0x89, b1, lba, n, 0, 0)


def pr_in(sa: int, alloc: int = 8192) -> bytes:
    return struct.pack(">BB5xHB", 0x5E, sa, alloc, 0)


def pr_out(sa: int, rtype: int = 0, scope: int = 0, plen: int = 24) -> bytes:
    return struct.pack(">BBB2xIB", 0x5F, sa, (scope << 4) | rtype, plen, 0)


def pr_params(key: int = 0, sark: int = 0, flags: int = 0) -> bytes:
    return struct.pack(">QQ4xBxH", key, sark, flags, 0)


@dataclass
class Sense:
    key: int
    asc: int
    ascq: int
    sksv: bool
    in_cdb: bool
    field: int | None
    bit: int | None
    information: int | None

    @classmethod
    def parse(cls, raw: bytes) -> Sense:
        assert raw[0] & 0x7F == 0x70, raw.hex()
        sksv = bool(raw[15] & 0x80)
        info = struct.unpack_from(">I", raw, 3)[0] if raw[0] & 0x80 else None
        return cls(raw[2] & 0xF, raw[12], raw[13], sksv, bool(raw[15] & 0x40),
                   struct.unpack_from(">H", raw, 16)[0] if sksv else None,
                   raw[15] & 0x7 if sksv and raw[15] & 0x08 else None, info)

    @property
    def code(self) -> tuple[int, int, int]:
        return (self.key, self.asc, self.ascq)


class Harness:
    """A disk on the memory backend behind LUN 0, with N1's power-on UA consumed."""

    def __init__(self, blocks: int = BLOCKS, store=None, registry: LunRegistry | None = None,
                 backend: MemoryBackend | None = None, alua=None, **config) -> None:
        self.backend = backend or MemoryBackend(blocks * config.get("block_size", BS),
                                                granularity=4096, object_size=64 << 10)
        self.registry = registry if registry is not None else LunRegistry()
        self.disk = ScsiDisk(DiskConfig(wwn=config.pop("wwn", WWN), **config), self.backend,
                             reservations=store, registry=self.registry, alua=alua)
        self.table = LunTable({0: self.disk})

    async def run(self, cdb: bytes, data_out: bytes | None = None, nexus: Nexus = N1, lun: int = 0,
                  edtl: int | None = None, tag: int = 0) -> ScsiResult:
        direction = DataDirection.WRITE if data_out is not None else DataDirection.READ
        cmd = ScsiCommand(cdb, lun, nexus, task_tag=tag, direction=direction,
                          edtl=len(data_out) if edtl is None and data_out is not None else (edtl or 0),
                          data_out=data_out)
        return await self.table.execute(cmd)

    async def ready(self, *nexuses: Nexus) -> None:
        """Consume the power-on unit attention of each nexus."""
        for nexus in nexuses or (N1,):
            r = await self.run(cdb6(0x00), nexus=nexus)
            assert r.status == Status.CHECK_CONDITION and Sense.parse(r.sense).code == (6, 0x29, 0)
            assert (await self.run(cdb6(0x00), nexus=nexus)).status == Status.GOOD


def run(coro):
    return asyncio.run(coro)


def good(r: ScsiResult) -> ScsiResult:
    assert r.status == Status.GOOD, (r.status, r.sense and Sense.parse(r.sense))
    return r


def check(r: ScsiResult) -> Sense:
    assert r.status == Status.CHECK_CONDITION, r.status
    return Sense.parse(r.sense)
