"""SPC-4 primary commands: INQUIRY and VPD pages, REQUEST SENSE, TEST UNIT READY,
REPORT LUNS, REPORT SUPPORTED OPERATION CODES, REPORT/SET TARGET PORT GROUPS,
START STOP UNIT.  MODE SENSE/SELECT live in ``modes``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import sense as S
from .alua import AccessState
from .api import GOOD, ScsiCommand, ScsiResult

if TYPE_CHECKING:
    from .disk import ScsiDisk

# Version descriptors (SPC-4 table 30): SAM-5, iSCSI, SPC-4, SBC-3.
VERSION_DESCRIPTORS = (0x00A0, 0x0960, 0x0460, 0x04C0)
SUPPORTED_VPD = (0x00, 0x80, 0x83, 0x86, 0xB0, 0xB1, 0xB2)
SUPPORTED_VPD_XCOPY = (0x00, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1, 0xB2)
# Designator header bytes.
_PROTO_ISCSI = 0x50
_CODE_BINARY, _CODE_ASCII, _CODE_UTF8 = 1, 2, 3
_PIV = 0x80
_ASSOC_LU, _ASSOC_PORT, _ASSOC_TARGET = 0x00, 0x10, 0x20


def alloc16(cdb: bytes, at: int) -> int:
    return (cdb[at] << 8) | cdb[at + 1]


def alloc32(cdb: bytes, at: int) -> int:
    return int.from_bytes(cdb[at:at + 4], "big")


def _pad(text: str, n: int) -> bytes:
    return text.encode("ascii").ljust(n, b" ")[:n]


# -- INQUIRY ----------------------------------------------------------------------------
def standard_inquiry(disk: ScsiDisk) -> bytes:
    cfg = disk.config
    data = bytearray(96)
    data[2] = 0x06  # SPC-4
    data[3] = 0x12  # HISUP, RESPONSE DATA FORMAT 2
    data[4] = len(data) - 5
    data[5] = (disk.alua.tpgs << 4) | (0x08 if _offers_xcopy(disk) else 0)
    ports = sum(len(g.relative_ports) for g in disk.alua.groups)
    data[6] = 0x10 if ports > 1 else 0  # MULTIP
    data[7] = 0x02  # CMDQUE
    data[8:16] = _pad(cfg.vendor, 8)
    data[16:32] = _pad(cfg.product, 16)
    data[32:36] = _pad(cfg.revision, 4)
    struct.pack_into(">4H", data, 58, *VERSION_DESCRIPTORS)
    return bytes(data)


def unmapped_inquiry() -> bytes:
    """Standard INQUIRY of a LUN with nothing behind it: qualifier 011b, type 1Fh."""
    data = bytearray(36)
    data[0] = 0x7F
    data[2] = 0x06
    data[3] = 0x12
    data[4] = len(data) - 5
    return bytes(data)


def _designator(code_set: int, kind: int, payload: bytes) -> bytes:
    return bytes((code_set & 0xFF, kind & 0xFF, 0, len(payload))) + payload


def _name_string(name: str) -> bytes:
    raw = name.encode("utf-8") + b"\x00"
    return raw + b"\x00" * (-len(raw) % 4)


def vpd_device_identification(disk: ScsiDisk, cmd: ScsiCommand) -> bytes:
    cfg, nexus = disk.config, cmd.nexus
    body = _designator(_CODE_BINARY, _ASSOC_LU | 0x03, disk.naa)
    body += _designator(_CODE_ASCII, _ASSOC_LU | 0x01, _pad(cfg.vendor, 8) + cfg.wwn.encode("ascii"))
    body += _designator(_PROTO_ISCSI | _CODE_BINARY, _PIV | _ASSOC_PORT | 0x04,
                        struct.pack(">HH", 0, nexus.relative_port & 0xFFFF))
    group = disk.alua.group_of_port(nexus.relative_port)
    if group is not None:
        body += _designator(_PROTO_ISCSI | _CODE_BINARY, _PIV | _ASSOC_PORT | 0x05,
                            struct.pack(">HH", 0, group.group_id & 0xFFFF))
    if nexus.target_port:
        body += _designator(_PROTO_ISCSI | _CODE_UTF8, _PIV | _ASSOC_PORT | 0x08,
                            _name_string(nexus.target_port))
    if nexus.target_name:
        body += _designator(_PROTO_ISCSI | _CODE_UTF8, _PIV | _ASSOC_TARGET | 0x08,
                            _name_string(nexus.target_name))
    return bytes((0, 0x83)) + struct.pack(">H", len(body)) + body


def vpd_block_limits(disk: ScsiDisk) -> bytes:
    cfg = disk.config
    data = bytearray(64)
    data[1] = 0xB0
    data[3] = 0x3C
    # WSNZ=0: WRITE SAME with zero blocks means "to the last LBA" (within MAXIMUM WRITE SAME LENGTH)
    data[5] = 1     # MAXIMUM COMPARE AND WRITE LENGTH
    units = max(1, disk.backend.object_size >> disk._shift)
    struct.pack_into(">H", data, 6, max(1, 4096 >> disk._shift))  # OPTIMAL TRANSFER LENGTH GRANULARITY
    struct.pack_into(">III", data, 8, cfg.max_transfer_blocks, cfg.max_transfer_blocks,
                     cfg.max_transfer_blocks)  # MAXIMUM / OPTIMAL TRANSFER, MAXIMUM PREFETCH
    struct.pack_into(">II", data, 20, max_unmap_blocks(disk), MAX_UNMAP_DESCRIPTORS)
    struct.pack_into(">II", data, 28, units, 0x80000000)  # OPTIMAL UNMAP GRANULARITY, UGAVALID + 0
    struct.pack_into(">Q", data, 36, max_write_same_blocks(disk))
    return bytes(data)


MAX_UNMAP_DESCRIPTORS = 256


def max_unmap_blocks(disk: ScsiDisk) -> int:
    return min(0x100000, max(1, (64 * disk.backend.object_size) >> disk._shift))


def max_write_same_blocks(disk: ScsiDisk) -> int:
    """65535 blocks (what WRITE SAME(10) can ask for; LIO's value), at most 64 objects.

    Larger would save few commands (WRITE SAME is served per RADOS object anyway) and
    makes libiscsi's WriteSame16.Unmap write 65536 blocks in one WRITE(16), far beyond
    MAXIMUM TRANSFER LENGTH."""
    return min(0xFFFF, max_unmap_blocks(disk))


def vpd_page(disk: ScsiDisk, cmd: ScsiCommand, page: int) -> bytes:
    if page == 0x00:
        pages = SUPPORTED_VPD_XCOPY if _offers_xcopy(disk) else SUPPORTED_VPD
        return bytes((0, 0, 0, len(pages))) + bytes(pages)
    if page == 0x80:
        serial = disk.config.wwn.encode("ascii")
        return bytes((0, 0x80, 0, len(serial))) + serial
    if page == 0x83:
        return vpd_device_identification(disk, cmd)
    if page == 0x86:
        data = bytearray(64)
        data[1], data[3] = 0x86, 0x3C
        data[5] = 0x01  # SIMPSUP
        data[6] = 0x01 if disk.backend.write_cache else 0  # V_SUP
        data[7] = 0x01  # LUICLR
        return bytes(data)
    if page == 0x8F and _offers_xcopy(disk):
        from .xcopy import vpd_third_party_copy

        return vpd_third_party_copy(disk)
    if page == 0xB0:
        return vpd_block_limits(disk)
    if page == 0xB1:
        data = bytearray(64)
        data[1], data[3] = 0xB1, 0x3C
        if disk.config.non_rotational:
            data[5] = 1  # MEDIUM ROTATION RATE: non-rotating
        return bytes(data)
    if page == 0xB2:
        # LBPU, LBPWS, LBPWS10, LBPRZ (UNMAP zeroes via write_zeroes); thin provisioned.
        return bytes((0, 0xB2, 0, 4, 0, 0x80 | 0x40 | 0x20 | 0x04, 0x02, 0))
    raise S.invalid_cdb(2)


async def inquiry(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    alloc = alloc16(cdb, 3)
    if cdb[1] & 0x01:
        data = vpd_page(disk, cmd, cdb[2])
    else:
        if cdb[2]:
            raise S.invalid_cdb(2)
        data = standard_inquiry(disk)
    return ScsiResult(data=data[:alloc])


# -- REQUEST SENSE / TEST UNIT READY / START STOP UNIT -----------------------------------
async def request_sense(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    code = disk.ua.pop(cmd.nexus) or S.NO_ADDITIONAL_SENSE
    return ScsiResult(data=sense_data(code, cmd.cdb))


def sense_data(code: S.Asc, cdb: bytes) -> bytes:
    data = S.build_sense(code, descriptor=bool(cdb[1] & 0x01))
    return data[:cdb[4]]


async def test_unit_ready(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    return GOOD


async def start_stop_unit(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    # A virtual disk is always spun up: START=1 is a no-op, stopping it is not offered.
    if not cmd.cdb[4] & 0x01:
        raise S.invalid_cdb(4, 0)
    return GOOD


# -- REPORT LUNS -------------------------------------------------------------------------
def encode_lun(lun: int) -> bytes:
    if lun < 256:
        return bytes((0, lun)) + bytes(6)
    return bytes((0x40 | ((lun >> 8) & 0x3F), lun & 0xFF)) + bytes(6)


def report_luns_data(cdb: bytes, luns: Iterable[int]) -> bytes:
    """REPORT LUNS parameter data for ``luns``; raises for an unsupported SELECT REPORT."""
    select = cdb[2]
    if select not in (0x00, 0x01, 0x02):
        raise S.invalid_cdb(2)
    alloc = alloc32(cdb, 6)
    if alloc < 4:
        raise S.invalid_cdb(6)
    listed = sorted(luns) if select != 0x01 else []  # no well-known logical units
    body = b"".join(encode_lun(n) for n in listed)
    return (struct.pack(">II", len(body), 0) + body)[:alloc]


async def report_luns(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    # Normally answered by the LunTable; a disk on its own knows only the LUN it was asked on.
    return ScsiResult(data=report_luns_data(cmd.cdb, [cmd.lun]))


# -- MAINTENANCE IN/OUT -------------------------------------------------------------------
async def report_supported_opcodes(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    rctd = bool(cdb[2] & 0x80)
    option = cdb[2] & 0x07
    opcode, sa = cdb[3], alloc16(cdb, 4)
    alloc = alloc32(cdb, 6)
    table, timeout = disk.table, disk.config.osd_op_timeout
    if option == 0:
        data = table.report_all(rctd, timeout)
    elif option == 1:
        if table.has_service_actions(opcode):
            raise S.invalid_cdb(2, 2)
        data = table.report_one(table.plain[opcode], rctd, timeout)
    elif option == 2:
        if table.plain[opcode] is not None:
            raise S.invalid_cdb(2, 2)
        data = table.report_one(table.lookup(opcode, sa) if sa <= 0x1F else None, rctd, timeout)
    elif option == 3:
        if table.has_service_actions(opcode):
            spec = table.lookup(opcode, sa) if sa <= 0x1F else None
        else:
            spec = table.plain[opcode] if sa == 0 else None
        data = table.report_one(spec, rctd, timeout)
    else:
        raise S.invalid_cdb(2, 2)
    return ScsiResult(data=data[:alloc])


async def report_target_port_groups(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    fmt = cdb[1] >> 5
    if fmt > 1:
        raise S.invalid_cdb(1, 7)
    return ScsiResult(data=disk.alua.rtpg(extended=fmt == 1)[:alloc32(cdb, 6)])


async def set_target_port_groups(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    plen = alloc32(cmd.cdb, 6)
    if plen == 0:
        return GOOD
    data = bytes(cmd.data_out or b"")[:plen]
    if len(data) < plen or plen < 4 or (plen - 4) % 4:
        raise S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)
    known = {g.group_id for g in disk.alua.groups}
    requests: dict[int, AccessState] = {}
    for off in range(4, plen, 4):
        state = data[off] & 0x0F
        group = struct.unpack_from(">H", data, off + 2)[0]
        if state not in (0, 1, 2, 3) or group not in known:
            raise S.invalid_param(off if state > 3 else off + 2)
        requests[group] = AccessState(state)
    handler = disk.alua.stpg
    if handler is None:
        raise S.CheckCondition(S.INVALID_COMMAND_OPERATION_CODE, field=0)
    disk.set_alua(await handler(requests))
    return GOOD


def _offers_xcopy(disk: ScsiDisk) -> bool:
    """3PC, VPD 8Fh and the copy commands go together (see commands.build_table)."""
    return disk.config.xcopy and disk.registry is not None
