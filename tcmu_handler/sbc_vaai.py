"""The thin-provisioning and atomic-test-and-set commands ESXi's VAAI relies on:
UNMAP, WRITE SAME(10/16) (+UNMAP, +NDOB), COMPARE AND WRITE, GET LBA STATUS.

Zeroing is honest: LBPRZ is reported because unmapping is done with
``write_zeroes`` (whole RBD objects are removed, partial ones zeroed), never
with a discard that librbd may skip below its granularity.  GET LBA STATUS
reports "deallocated" only for ranges the backend says are unallocated.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

from . import sense as S
from .api import GOOD, ScsiCommand, ScsiResult, Status
from .sbc import decode10, decode16, miscompare
from .spc import MAX_UNMAP_DESCRIPTORS, max_unmap_blocks, max_write_same_blocks

if TYPE_CHECKING:
    from .disk import ScsiDisk

_UNMAP_DESC = struct.Struct(">QI4x")
_UNMAP_PARALLEL = 16
_LBA_STATUS_WINDOW_OBJECTS = 8


def _bad_data_out(length: int) -> ScsiResult:
    return ScsiResult(status=Status.CHECK_CONDITION, transfer_length=length,
                      sense=S.build_sense(S.INVALID_FIELD_IN_COMMAND_IU))


def object_pieces(disk: ScsiDisk, offset: int, length: int) -> list[tuple[int, int]]:
    """Split a byte range at object boundaries so each backend call touches one object."""
    obj = disk.backend.object_size
    pieces = []
    end = offset + length
    while offset < end:
        stop = min(end, (offset // obj + 1) * obj)
        pieces.append((offset, stop - offset))
        offset = stop
    return pieces


async def zero_range(disk: ScsiDisk, lba: int, blocks: int) -> None:
    """Deallocate and zero whole blocks, object by object, a few objects at a time."""
    pieces = object_pieces(disk, lba << disk._shift, blocks << disk._shift)
    zero = disk.backend.write_zeroes
    for i in range(0, len(pieces), _UNMAP_PARALLEL):
        await asyncio.gather(*(zero(off, n) for off, n in pieces[i:i + _UNMAP_PARALLEL]))


# -- UNMAP -------------------------------------------------------------------------------------
async def unmap(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    plen = (cdb[7] << 8) | cdb[8]
    if plen == 0:
        return GOOD
    data = bytes(cmd.data_out or b"")[:plen]
    if plen < 8 or len(data) < plen:
        raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
    bd_len = struct.unpack_from(">H", data, 2)[0]
    count = min(bd_len, plen - 8) // 16
    if count > MAX_UNMAP_DESCRIPTORS:
        raise S.invalid_param(2)
    ranges = []
    total = 0
    for i in range(count):
        off = 8 + 16 * i
        lba, blocks = _UNMAP_DESC.unpack_from(data, off)
        disk.check_range(lba, blocks)
        total += blocks
        if blocks:
            ranges.append((lba, blocks))
    if total > max_unmap_blocks(disk):
        raise S.invalid_param(8 + 8)
    for lba, blocks in ranges:
        await zero_range(disk, lba, blocks)
    return GOOD


# -- WRITE SAME --------------------------------------------------------------------------------
async def _write_same(disk: ScsiDisk, cmd: ScsiCommand, lba: int, blocks: int, len_field: int,
                      unmap_bit: bool, ndob: bool) -> ScsiResult:
    if blocks == 0:  # WSNZ=0: from the LBA to the last one
        if lba >= disk.num_blocks:
            raise S.CheckCondition(S.LBA_OUT_OF_RANGE)
        blocks = disk.num_blocks - lba
    if blocks > max_write_same_blocks(disk):
        raise S.invalid_cdb(len_field)
    disk.check_range(lba, blocks)
    bs = disk.block_size
    if ndob:
        pattern = bytes(bs)
    else:
        data = cmd.data_out
        if data is None or len(data) != bs:
            return _bad_data_out(bs)
        pattern = bytes(data)
    if unmap_bit:
        # UNMAP: deallocate (SBC-4 lets the device write or unmap; LIO and tcmu-runner unmap
        # whatever the Data-Out block holds, and libiscsi's WriteSame10.UnmapUntilEnd sends
        # 0xFF and expects zeros).  Reads return zeros after (LBPRZ).
        await zero_range(disk, lba, blocks)
    else:
        # UNMAP=0 keeps the blocks mapped, even for a zero pattern (ESXi eager zeroing).
        await disk.backend.writesame(lba << disk._shift, blocks << disk._shift, pattern)
    disk.stats.write_bytes += blocks << disk._shift
    return ScsiResult(transfer_length=0 if ndob else bs)


async def write_same10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    lba, blocks = decode10(cmd.cdb)
    return await _write_same(disk, cmd, lba, blocks, 7, bool(cmd.cdb[1] & 0x08), False)


async def write_same16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    lba, blocks = decode16(cdb)
    return await _write_same(disk, cmd, lba, blocks, 10, bool(cdb[1] & 0x08), bool(cdb[1] & 0x01))


# -- COMPARE AND WRITE -------------------------------------------------------------------------
async def compare_and_write(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    lba = struct.unpack_from(">Q", cdb, 2)[0]
    blocks = cdb[13]
    if blocks > 1:
        raise S.invalid_cdb(13)  # MAXIMUM COMPARE AND WRITE LENGTH is 1
    disk.check_range(lba, blocks)
    if blocks == 0:
        return ScsiResult(transfer_length=0)
    nbytes = blocks << disk._shift
    data = cmd.data_out
    if data is None or len(data) != 2 * nbytes:
        return _bad_data_out(2 * nbytes)
    mv = memoryview(data)
    offset = lba << disk._shift
    await disk.reserve_area(2 * nbytes)
    try:
        mismatch = await disk.backend.compare_and_write(offset, mv[:nbytes], mv[nbytes:])
        if mismatch is None and cdb[1] & 0x08 and disk.backend.write_cache:
            await disk.backend.flush()
    finally:
        disk.release_area(2 * nbytes)
    if mismatch is not None:
        raise miscompare(mismatch)
    disk.stats.write_bytes += nbytes
    return ScsiResult(transfer_length=2 * nbytes)


# -- GET LBA STATUS ----------------------------------------------------------------------------
async def get_lba_status(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    lba = struct.unpack_from(">Q", cdb, 2)[0]
    alloc = struct.unpack_from(">I", cdb, 10)[0]
    if lba >= disk.num_blocks:
        raise S.CheckCondition(S.LBA_OUT_OF_RANGE)
    if alloc == 0:
        return ScsiResult(data=b"")
    shift = disk._shift
    window = _LBA_STATUS_WINDOW_OBJECTS * disk.backend.object_size
    start = lba << shift
    end = min(disk.num_blocks << shift, (start // disk.backend.object_size) * disk.backend.object_size
              + window)
    max_desc = max(1, (alloc - 8) // 16)
    body = bytearray()
    for ext in await disk.backend.extents(start, end - start):
        first = ext.offset >> shift
        count = (ext.offset + ext.length - (first << shift) + (1 << shift) - 1) >> shift
        while count and len(body) < 16 * max_desc:
            n = min(count, 0xFFFFFFFF)
            body += struct.pack(">QIB3x", first, n, 0 if ext.allocated else 1)
            first += n
            count -= n
        if len(body) >= 16 * max_desc:
            break
    return ScsiResult(data=(struct.pack(">II", len(body) + 4, 0) + bytes(body))[:alloc])
