"""What a disk is told by the gateway: identity and the ceph-iscsi disk controls.

The four disk controls of ceph-iscsi (``[target]`` section / per-disk
``controls``) keep their names and ranges; their meaning in this design:

* ``hw_max_sectors``: the transfer size initiators should use, in 512-byte
  sectors: VPD B0 MAXIMUM and OPTIMAL TRANSFER LENGTH.
* ``max_data_area_mb``: bytes of data in flight per LUN (reads and writes);
  a command that would exceed it waits for space.  It is also the largest
  single transfer accepted: like LIO with TCMU, a READ/WRITE larger than
  ``hw_max_sectors`` but within the data area runs (initiators that ignore
  MAXIMUM TRANSFER LENGTH -- older ESXi, some Windows HBAs, libiscsi's test
  tool -- are not failed); a larger one is INVALID FIELD IN CDB.
* ``qfull_timeout``: seconds such a command waits before TASK SET FULL
  (0 = answer TASK SET FULL at once).
* ``osd_op_timeout``: ``rados_osd_op_timeout`` of the RBD client, the
  deadline of every backend operation (a command never hangs longer), the
  lock-acquisition deadline, and ``+ 15`` the IMPLICIT TRANSITION TIME in RTPG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# IEEE company id 00-14-05 (OpenFabrics), used by LIO and tcmu-runner, so a disk
# keeps the NAA identifier initiators saw under ceph-iscsi.
NAA_PREFIX = "6001405"

_HEX = re.compile(r"[0-9a-fA-F]")


def naa_from_wwn(wwn: str) -> bytes:
    """The 16-byte NAA IEEE Registered Extended designator for a disk's WWN.

    ``6001405`` followed by the first 25 hex digits found in the WWN (other
    characters skipped, zero padded), exactly as LIO derives it from the unit
    serial, e.g. ``4fc1071d-7e2f-4df0-95c8-925a6...`` gives
    ``60014054fc1071d7e2f4df095c8925a6``.
    """
    digits = "".join(_HEX.findall(wwn))[:25].lower().ljust(25, "0")
    return bytes.fromhex(NAA_PREFIX + digits)


@dataclass(frozen=True)
class DiskConfig:
    """Per-disk settings; ``wwn`` is the stable serial (VPD 0x80) from the config."""

    wwn: str
    vendor: str = "LIO-ORG"
    product: str = "TCMU device"
    revision: str = "0002"
    block_size: int = 512
    hw_max_sectors: int = 1024
    max_data_area_mb: int = 8
    qfull_timeout: int = 5
    osd_op_timeout: int = 30
    read_only: bool = False
    #: EXTENDED COPY (3PC bit, VAAI "clone") between disks of this gateway
    xcopy: bool = True
    #: VPD B1 MEDIUM ROTATION RATE: True = 1 (SSD pool), False/None = not reported
    non_rotational: bool | None = None
    #: write-triggered exclusive-lock failover; None = whenever the backend supports locks
    lock_failover: bool | None = None
    #: seconds a lock holder has to answer a handoff request before its lock is broken
    #: (and it is fenced); RADOS counts whole seconds (``lock_handoff_timeout`` setting)
    lock_handoff_timeout: float = 2.0
    #: reported physical block size (READ CAPACITY(16) LBPPBE); None = the logical block size.
    #: 4096 on 512-byte blocks ("512e") makes initiators align I/O to 4 KiB, what BlueStore
    #: allocates, without changing the logical block size existing filesystems use.
    physical_block_size: int | None = None

    def __post_init__(self) -> None:
        if self.block_size not in (512, 1024, 2048, 4096):
            raise ValueError(f"block_size must be 512, 1024, 2048 or 4096, not {self.block_size}")
        if not self.wwn or not self.wwn.isascii() or not self.wwn.isprintable():
            raise ValueError("wwn must be non-empty printable ASCII")
        if len(self.wwn) > 250:
            raise ValueError("wwn is longer than a VPD page allows")
        for name, limit in (("vendor", 8), ("product", 16), ("revision", 4)):
            value = getattr(self, name)
            if not value.isascii() or not value.isprintable() or len(value) > limit:
                raise ValueError(f"{name} must be printable ASCII of at most {limit} characters")
        if self.hw_max_sectors * 512 < self.block_size:
            raise ValueError("hw_max_sectors is smaller than one block")
        if not 0 < self.lock_handoff_timeout <= 60:
            raise ValueError("lock_handoff_timeout must be more than 0 and at most 60 seconds")
        pbs = self.physical_block_size
        if pbs is not None and (pbs < self.block_size or pbs > 65536 or pbs & (pbs - 1)):
            raise ValueError("physical_block_size must be a power of two from the block size to 64 KiB")

    @property
    def lbppbe(self) -> int:
        """LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT."""
        if not 0 < self.lock_handoff_timeout <= 60:
            raise ValueError("lock_handoff_timeout must be more than 0 and at most 60 seconds")
        pbs = self.physical_block_size or self.block_size
        return (pbs // self.block_size).bit_length() - 1

    @property
    def naa(self) -> bytes:
        return naa_from_wwn(self.wwn)

    @property
    def max_transfer_blocks(self) -> int:
        """MAXIMUM/OPTIMAL TRANSFER LENGTH reported in VPD B0 (``hw_max_sectors``)."""
        return self.hw_max_sectors * 512 // self.block_size

    @property
    def transfer_limit_blocks(self) -> int:
        """The largest transfer accepted: the data area, at least ``hw_max_sectors``."""
        return max(self.max_transfer_blocks, self.data_area_bytes // self.block_size)

    @property
    def data_area_bytes(self) -> int:
        return self.max_data_area_mb << 20

    @classmethod
    def from_controls(cls, wwn: str, controls: dict[str, Any] | None = None, **kw: Any) -> DiskConfig:
        """Build from a disk's ``controls`` (as validated by gateway.settings.parse_controls)."""
        values = {k: v for k, v in (controls or {}).items() if v is not None}
        unknown = set(values) - {"hw_max_sectors", "max_data_area_mb", "qfull_timeout", "osd_op_timeout"}
        if unknown:
            raise ValueError(f"unknown disk controls: {', '.join(sorted(unknown))}")
        return cls(wwn=wwn, **values, **kw)
