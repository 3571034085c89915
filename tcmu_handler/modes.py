"""MODE SENSE(6/10) and MODE SELECT(6/10) with pages 01h, 08h, 0Ah (and 3Fh = all).

No mode parameter is changeable (the changeable-values mask is all zeros):
the caching page tells the truth about the backend (WCE is set only if it
has a volatile write cache, which the RBD backend never has), and the
control page describes what the device does.  MODE SELECT is accepted only
when it asks for the current values, so tools that "set" a page to what it
already is keep working.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from . import sense as S
from .api import GOOD, ScsiCommand, ScsiResult
from .spc import alloc16

if TYPE_CHECKING:
    from .disk import ScsiDisk

PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = 0, 1, 2, 3


def _rw_error_recovery(disk: ScsiDisk) -> bytes:
    return bytes((0x01, 0x0A)) + bytes(10)


def _caching(disk: ScsiDisk) -> bytes:
    page = bytearray(20)
    page[0], page[1] = 0x08, 0x12
    if disk.backend.write_cache:
        page[2] = 0x04  # WCE
    return bytes(page)


def _control(disk: ScsiDisk) -> bytes:
    page = bytearray(12)
    page[0], page[1] = 0x0A, 0x0A
    page[2] = 0x02  # GLTSD (no log parameters are saved); D_SENSE 0: fixed-format sense
    page[3] = 0x10  # QUEUE ALGORITHM MODIFIER 1: unrestricted reordering; QERR 0
    page[5] = 0x40  # TAS: tasks aborted by another nexus end with TASK ABORTED
    struct.pack_into(">H", page, 8, 0xFFFF)  # BUSY TIMEOUT PERIOD: unlimited
    return bytes(page)


PAGES = {0x01: _rw_error_recovery, 0x08: _caching, 0x0A: _control}


def _page(disk: ScsiDisk, code: int, pc: int) -> bytes:
    page = PAGES[code](disk)
    if pc == PC_CHANGEABLE:
        return page[:2] + bytes(len(page) - 2)
    return page


def _pages(disk: ScsiDisk, code: int, subpage: int, pc: int, field: int) -> bytes:
    if code == 0x3F:
        if subpage not in (0x00, 0xFF):
            raise S.invalid_cdb(field + 1)
        return b"".join(_page(disk, c, pc) for c in sorted(PAGES))
    if code not in PAGES:
        raise S.invalid_cdb(field, 5)
    if subpage != 0:
        raise S.invalid_cdb(field + 1)
    return _page(disk, code, pc)


def _block_descriptor(disk: ScsiDisk, long_lba: bool) -> bytes:
    if long_lba:
        return struct.pack(">QII", disk.num_blocks, 0, disk.block_size)
    blocks = min(disk.num_blocks, 0xFFFFFFFF)
    return struct.pack(">II", blocks, disk.block_size & 0xFFFFFF)


def _device_specific(disk: ScsiDisk) -> int:
    return (0x80 if disk.config.read_only else 0) | 0x10  # WP, DPOFUA


async def mode_sense6(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    pc = cdb[2] >> 6
    if pc == PC_SAVED:
        raise S.CheckCondition(S.SAVING_PARAMETERS_NOT_SUPPORTED, field=2, bit=7)
    pages = _pages(disk, cdb[2] & 0x3F, cdb[3], pc, 2)
    bd = b"" if cdb[1] & 0x08 else _block_descriptor(disk, False)
    header = bytes((3 + len(bd) + len(pages), 0, _device_specific(disk), len(bd)))
    data = header + bd + pages
    return ScsiResult(data=data[:cdb[4]])


async def mode_sense10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    pc = cdb[2] >> 6
    if pc == PC_SAVED:
        raise S.CheckCondition(S.SAVING_PARAMETERS_NOT_SUPPORTED, field=2, bit=7)
    pages = _pages(disk, cdb[2] & 0x3F, cdb[3], pc, 2)
    long_lba = bool(cdb[1] & 0x10)
    bd = b"" if cdb[1] & 0x08 else _block_descriptor(disk, long_lba)
    header = struct.pack(">HBBBBH", 6 + len(bd) + len(pages), 0, _device_specific(disk),
                         0x01 if bd and long_lba else 0, 0, len(bd))
    data = header + bd + pages
    return ScsiResult(data=data[:alloc16(cdb, 7)])


async def mode_select6(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return _mode_select(disk, cmd, cmd.cdb[4], 4)


async def mode_select10(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return _mode_select(disk, cmd, alloc16(cmd.cdb, 7), 8)


def _mode_select(disk: ScsiDisk, cmd: ScsiCommand, plen: int, header_len: int) -> ScsiResult:
    if not cmd.cdb[1] & 0x10:
        raise S.invalid_cdb(1, 4)  # PF=0: vendor-specific page format is not offered
    if plen == 0:
        return GOOD
    data = bytes(cmd.data_out or b"")[:plen]
    if len(data) < plen or plen < header_len:
        raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
    if header_len == 4:
        bd_len = data[3]
        long_lba = False
    else:
        bd_len = struct.unpack_from(">H", data, 6)[0]
        long_lba = bool(data[4] & 0x01)
    pos = header_len
    if bd_len:
        size = 16 if long_lba else 8
        if bd_len != size or pos + bd_len > plen:
            raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
        current = _block_descriptor(disk, long_lba)
        blocks_len = 8 if long_lba else 4
        given = data[pos:pos + bd_len]
        if given[blocks_len:] != current[blocks_len:]:
            raise S.invalid_param(pos + blocks_len)
        if any(given[:blocks_len]) and given[:blocks_len] != current[:blocks_len]:
            raise S.invalid_param(pos)
        pos += bd_len
    while pos < plen:
        if pos + 2 > plen:
            raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
        code = data[pos] & 0x3F
        if data[pos] & 0x40 or code not in PAGES:  # subpage format: none offered
            raise S.invalid_param(pos)
        current = _page(disk, code, PC_CURRENT)
        end = pos + 2 + data[pos + 1]
        if data[pos + 1] != current[1]:
            raise S.invalid_param(pos + 1)
        if end > plen:
            raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
        given = data[pos:end]
        for i in range(2, len(current)):
            if given[i] != current[i]:
                raise S.invalid_param(pos + i)
        pos = end
    return GOOD
