"""SBC-3 block commands: READ/WRITE 6/10/12/16, WRITE AND VERIFY, VERIFY,
READ CAPACITY, SYNCHRONIZE CACHE, PRE-FETCH, READ DEFECT DATA.

Data movement follows the transport contract: a READ returns exactly the
bytes the CDB asks for; a WRITE writes the CDB's length when the initiator
sent at least that much, only the whole blocks it did send when it sent less
(EDTL < CDB length, as libiscsi's residual tests require), and refuses a
partial block with INVALID FIELD IN COMMAND INFORMATION UNIT.  The unmap and
compare-and-write family lives in ``sbc_vaai``.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from . import sense as S
from .api import GOOD, ScsiCommand, ScsiResult, Status

if TYPE_CHECKING:
    from .disk import ScsiDisk

_LBA10 = struct.Struct(">xxIxH")      # READ/WRITE/VERIFY(10): LBA 2-5, length 7-8
_LBA12 = struct.Struct(">xxII")       # (12): LBA 2-5, length 6-9
_LBA16 = struct.Struct(">xxQI")       # (16): LBA 2-9, length 10-13
_EMPTY = memoryview(b"")
_VERIFY_CHUNK_BLOCKS = 2048


def decode6(cdb: bytes) -> tuple[int, int]:
    return ((cdb[1] & 0x1F) << 16) | (cdb[2] << 8) | cdb[3], cdb[4] or 256


def decode10(cdb: bytes) -> tuple[int, int]:
    return _LBA10.unpack_from(cdb)


def decode12(cdb: bytes) -> tuple[int, int]:
    return _LBA12.unpack_from(cdb)


def decode16(cdb: bytes) -> tuple[int, int]:
    return _LBA16.unpack_from(cdb)


# Length-field offset per CDB size (for field pointers).
_LEN_FIELD = {6: 4, 10: 7, 12: 6, 16: 10}
_DECODE = {6: decode6, 10: decode10, 12: decode12, 16: decode16}


# -- READ ----------------------------------------------------------------------------------
# The per-command handlers are plain functions returning the coroutine that does the work:
# one coroutine per command instead of three (this is the 4 KiB hot path).
async def read_blocks(disk: ScsiDisk, lba: int, blocks: int) -> memoryview:
    """Read whole blocks through the data-area accounting."""
    nbytes = blocks << disk._shift
    if not disk.try_reserve_area(nbytes):
        await disk.reserve_area(nbytes)
    try:
        data = await disk.backend.read(lba << disk._shift, nbytes)
    finally:
        disk.release_area(nbytes)
    disk.stats.read_bytes += nbytes
    return data


async def _read(disk: ScsiDisk, lba: int, blocks: int, len_field: int) -> ScsiResult:
    if lba + blocks > disk.num_blocks:
        raise S.CheckCondition(S.LBA_OUT_OF_RANGE)
    if blocks == 0:
        return ScsiResult(data=_EMPTY)
    if blocks > disk._transfer_limit:
        raise S.invalid_cdb(len_field)
    # read_blocks inlined: a coroutine fewer per READ (the 4 KiB hot path)
    nbytes = blocks << disk._shift
    if not disk.try_reserve_area(nbytes):
        await disk.reserve_area(nbytes)
    try:
        data = await disk.backend.read(lba << disk._shift, nbytes)
    finally:
        disk.release_area(nbytes)
    disk.stats.read_bytes += nbytes
    return ScsiResult(data=data)


def read6(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    lba, blocks = decode6(cmd.cdb)
    return _read(disk, lba, blocks, 4)


def read10(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    lba, blocks = _LBA10.unpack_from(cmd.cdb)
    return _read(disk, lba, blocks, 7)


def read12(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    lba, blocks = _LBA12.unpack_from(cmd.cdb)
    return _read(disk, lba, blocks, 6)


def read16(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    lba, blocks = _LBA16.unpack_from(cmd.cdb)
    return _read(disk, lba, blocks, 10)


# -- WRITE ---------------------------------------------------------------------------------
def data_out_blocks(disk: ScsiDisk, cmd: ScsiCommand, nbytes: int) -> memoryview | ScsiResult:
    """The Data-Out bytes to write for a CDB asking for ``nbytes``.

    EDTL >= CDB length: the CDB's bytes (the rest is the transport's underflow).
    EDTL < CDB length: only the whole blocks received (overflow), or CHECK
    CONDITION for a partial block -- never a torn block on disk.
    """
    data = cmd.data_out
    got = 0 if data is None else len(data)
    if got >= nbytes:
        mv = data if isinstance(data, memoryview) else memoryview(data)
        return mv if got == nbytes else mv[:nbytes]
    if got & (disk.block_size - 1):
        return ScsiResult(status=Status.CHECK_CONDITION, transfer_length=nbytes,
                          sense=S.build_sense(S.INVALID_FIELD_IN_COMMAND_IU))
    if got == 0:
        return _EMPTY
    mv = data if isinstance(data, memoryview) else memoryview(data)
    return mv


async def write_blocks(disk: ScsiDisk, lba: int, data: memoryview, fua: bool) -> None:
    nbytes = len(data)
    if not disk.try_reserve_area(nbytes):
        await disk.reserve_area(nbytes)
    try:
        await disk.backend.write(lba << disk._shift, data, fua)
        if fua and disk.backend.write_cache:
            await disk.backend.flush()
    finally:
        disk.release_area(nbytes)
    disk.stats.write_bytes += nbytes


async def _write(disk: ScsiDisk, cmd: ScsiCommand, lba: int, blocks: int, len_field: int,
                 fua: bool) -> ScsiResult:
    if lba + blocks > disk.num_blocks:
        raise S.CheckCondition(S.LBA_OUT_OF_RANGE)
    nbytes = blocks << disk._shift
    if blocks == 0:
        return ScsiResult(transfer_length=0)
    if blocks > disk._transfer_limit:
        raise S.invalid_cdb(len_field)
    data = data_out_blocks(disk, cmd, nbytes)
    if data.__class__ is ScsiResult:
        return data
    n = len(data)
    if n:  # write_blocks inlined: a coroutine fewer per WRITE (the hot path)
        if not disk.try_reserve_area(n):
            await disk.reserve_area(n)
        backend = disk.backend
        try:
            await backend.write(lba << disk._shift, data, fua)
            if fua and backend.write_cache:
                await backend.flush()
        finally:
            disk.release_area(n)
        disk.stats.write_bytes += n
    return ScsiResult(transfer_length=nbytes)


def write6(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    lba, blocks = decode6(cmd.cdb)
    return _write(disk, cmd, lba, blocks, 4, False)


def write10(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    cdb = cmd.cdb
    lba, blocks = _LBA10.unpack_from(cdb)
    return _write(disk, cmd, lba, blocks, 7, bool(cdb[1] & 0x08))


def write12(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    cdb = cmd.cdb
    lba, blocks = _LBA12.unpack_from(cdb)
    return _write(disk, cmd, lba, blocks, 6, bool(cdb[1] & 0x08))


def write16(disk: ScsiDisk, cmd: ScsiCommand) -> Awaitable[ScsiResult]:
    cdb = cmd.cdb
    lba, blocks = _LBA16.unpack_from(cdb)
    return _write(disk, cmd, lba, blocks, 10, bool(cdb[1] & 0x08))


# -- VERIFY / WRITE AND VERIFY ----------------------------------------------------------------
def _first_difference(a: memoryview | bytes, b: memoryview | bytes) -> int | None:
    if a == b:
        return None
    a, b = bytes(a), bytes(b)
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect on equal slices, then scan
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    for i in range(lo, hi):
        if a[i] != b[i]:
            return i
    return None


def miscompare(offset: int) -> S.CheckCondition:
    return S.CheckCondition(S.MISCOMPARE_DURING_VERIFY, information=offset)


async def _verify_medium(disk: ScsiDisk, lba: int, blocks: int) -> None:
    """BYTCHK=0: read the range back (a readable medium is a verified one)."""
    while blocks:
        n = min(blocks, _VERIFY_CHUNK_BLOCKS, disk.config.max_transfer_blocks)
        await read_blocks(disk, lba, n)
        lba += n
        blocks -= n


async def _compare(disk: ScsiDisk, lba: int, blocks: int, expected: memoryview, one_block: bool) -> None:
    current = await read_blocks(disk, lba, blocks)
    if one_block:
        bs = disk.block_size
        for i in range(blocks):
            diff = _first_difference(current[i * bs:(i + 1) * bs], expected)
            if diff is not None:
                raise miscompare(i * bs + diff)
        return
    diff = _first_difference(current, expected)
    if diff is not None:
        raise miscompare(diff)


async def _verify(disk: ScsiDisk, cmd: ScsiCommand, size: int) -> ScsiResult:
    cdb = cmd.cdb
    lba, blocks = _DECODE[size](cdb)
    bytchk = (cdb[1] >> 1) & 0x03
    if bytchk == 2:
        raise S.invalid_cdb(1, 2)
    disk.check_range(lba, blocks)
    if blocks == 0:
        return ScsiResult(transfer_length=0)
    if bytchk == 0:
        await _verify_medium(disk, lba, blocks)
        return GOOD
    disk.check_transfer(blocks, _LEN_FIELD[size])
    want = disk.block_size if bytchk == 3 else blocks << disk._shift
    data = cmd.data_out
    if data is None or len(data) < want:
        return ScsiResult(status=Status.CHECK_CONDITION, transfer_length=want,
                          sense=S.build_sense(S.INVALID_FIELD_IN_COMMAND_IU))
    await _compare(disk, lba, blocks, memoryview(data)[:want], bytchk == 3)
    return ScsiResult(transfer_length=want)


async def verify10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _verify(disk, cmd, 10)


async def verify12(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _verify(disk, cmd, 12)


async def verify16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _verify(disk, cmd, 16)


async def _write_and_verify(disk: ScsiDisk, cmd: ScsiCommand, size: int) -> ScsiResult:
    cdb = cmd.cdb
    lba, blocks = _DECODE[size](cdb)
    bytchk = (cdb[1] >> 1) & 0x03
    if bytchk > 1:
        raise S.invalid_cdb(1, 2)
    disk.check_range(lba, blocks)
    nbytes = blocks << disk._shift
    if blocks == 0:
        return ScsiResult(transfer_length=0)
    disk.check_transfer(blocks, _LEN_FIELD[size])
    data = data_out_blocks(disk, cmd, nbytes)
    if data.__class__ is ScsiResult:
        return data
    if len(data):
        await write_blocks(disk, lba, data, False)
        written = len(data) >> disk._shift
        if bytchk:
            await _compare(disk, lba, written, data, False)
        else:
            await _verify_medium(disk, lba, written)
    return ScsiResult(transfer_length=nbytes)


async def write_verify10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _write_and_verify(disk, cmd, 10)


async def write_verify12(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _write_and_verify(disk, cmd, 12)


async def write_verify16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return await _write_and_verify(disk, cmd, 16)


# -- capacity, cache, prefetch, defects -------------------------------------------------------
async def read_capacity10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if not cdb[8] & 0x01 and any(cdb[2:6]):
        raise S.invalid_cdb(2)  # an LBA without PMI
    last = disk.num_blocks - 1
    return ScsiResult(data=struct.pack(">II", min(last, 0xFFFFFFFF), disk.block_size))


async def read_capacity16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    if not cdb[14] & 0x01 and any(cdb[2:10]):
        raise S.invalid_cdb(2)
    data = bytearray(32)
    struct.pack_into(">QI", data, 0, disk.num_blocks - 1, disk.block_size)
    data[13] = disk.config.lbppbe
    data[14] = 0x80 | 0x40  # LBPME (thin provisioned), LBPRZ (unmapped blocks read zero)
    return ScsiResult(data=bytes(data[:int.from_bytes(cdb[10:14], "big")]))


async def synchronize_cache10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    lba, blocks = _LBA10.unpack_from(cmd.cdb)
    return await _sync(disk, lba, blocks)


async def synchronize_cache16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    lba, blocks = _LBA16.unpack_from(cmd.cdb)
    return await _sync(disk, lba, blocks)


async def _sync(disk: ScsiDisk, lba: int, blocks: int) -> ScsiResult:
    disk.check_range(lba, blocks)
    await disk.backend.flush()
    return GOOD


async def prefetch10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    lba, blocks = _LBA10.unpack_from(cmd.cdb)
    disk.check_range(lba, blocks)
    # No cache to fill (rbd_cache is off): SBC-3 answers GOOD when the blocks do not fit.
    return GOOD


async def prefetch16(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    lba, blocks = _LBA16.unpack_from(cmd.cdb)
    disk.check_range(lba, blocks)
    return GOOD


async def read_defect_data10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    # A virtual disk has no primary or grown defects: an empty list in the format asked for.
    data = bytes((0, cdb[2] & 0x1F, 0, 0))
    return ScsiResult(data=data[:(cdb[7] << 8) | cdb[8]])


async def read_defect_data12(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    data = bytes((0, cdb[1] & 0x1F, 0, 0, 0, 0, 0, 0))
    return ScsiResult(data=data[:int.from_bytes(cdb[6:10], "big")])
