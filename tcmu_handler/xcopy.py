"""EXTENDED COPY (LID1) and RECEIVE COPY RESULTS: block-to-block copies (segment
descriptors 02h, and 0Ah with byte offsets) between disks served by this gateway
(VMware VAAI "clone"/"full copy").

Copy targets are named the way initiators know them: by the NAA designator
from VPD page 83h.  A :class:`LunRegistry` shared by the disks of one gateway
resolves those designators; a target not on this gateway is "not reachable"
(COPY ABORTED), and the initiator falls back to reading and writing itself.
"""

from __future__ import annotations

import asyncio
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import sense as S
from .api import GOOD, Nexus, ScsiCommand, ScsiResult, Status
from .opcodes import PR_READ, PR_WRITE, READ, WRITE, OpSpec
from .sbc import read_blocks, write_blocks

if TYPE_CHECKING:
    from .disk import ScsiDisk

MAX_TARGET_DESCRIPTORS = 2
MAX_SEGMENT_DESCRIPTORS = 8
MAX_DESCRIPTOR_LIST_LENGTH = 1024
MAX_HELD_RESULTS = 16
CHUNK_BYTES = 1 << 20
PARALLEL_CHUNKS = 4
_IDENT_DESCRIPTOR = 0xE4
_BLOCK_TO_BLOCK = 0x02
_BLOCK_TO_BLOCK_OFFSET = 0x0A
_SEGMENT_LENGTHS = {_BLOCK_TO_BLOCK: 0x18, _BLOCK_TO_BLOCK_OFFSET: 0x1C}  # DESCRIPTOR LENGTH field
_DESCRIPTOR_CODES = bytes((_BLOCK_TO_BLOCK, _BLOCK_TO_BLOCK_OFFSET, _IDENT_DESCRIPTOR))
_USAGE_HOLD, _USAGE_RESERVED = 0, 1


class LunRegistry:
    """The disks of one gateway by NAA designator: where EXTENDED COPY finds its targets."""

    def __init__(self) -> None:
        self._by_naa: dict[bytes, ScsiDisk] = {}

    def add(self, disk: ScsiDisk) -> None:
        self._by_naa[disk.naa] = disk

    def remove(self, disk: ScsiDisk) -> None:
        if self._by_naa.get(disk.naa) is disk:
            del self._by_naa[disk.naa]

    def find(self, naa: bytes) -> ScsiDisk | None:
        return self._by_naa.get(naa)

    def __len__(self) -> int:
        return len(self._by_naa)


@dataclass
class CopyResult:
    list_id: int
    segments: int
    bytes_copied: int


class CopyResults(OrderedDict):
    """Held results of one I_T nexus, by list identifier (oldest dropped first)."""


@dataclass
class _Segment:
    """One copy, in bytes: block-to-block (02h) segments are whole blocks, block-to-block
    with offset (0Ah) ones may start and end inside blocks."""

    src: int
    dst: int
    nbytes: int
    src_byte: int   # LBA * block size + byte offset
    dst_byte: int


def _param_len_error() -> S.CheckCondition:
    return S.CheckCondition(S.PARAMETER_LIST_LENGTH_ERROR)


def _unreachable() -> S.CheckCondition:
    return S.CheckCondition(S.COPY_TARGET_DEVICE_NOT_REACHABLE)


def _target_length(code: int) -> int | None:
    if 0xE0 <= code <= 0xE9:
        return 32
    if code in (0xEA, 0xEB):
        return 64
    return None


def parse(data: bytes, block_sizes: int) -> tuple[int, int, list[bytes], list[_Segment]]:
    """Validate an EXTENDED COPY(LID1) parameter list; returns list id, usage, targets, segments."""
    plen = len(data)
    if plen < 16:
        raise _param_len_error()
    list_id, flags = data[0], data[1]
    usage = (flags >> 3) & 0x03
    if usage == _USAGE_RESERVED:
        raise S.invalid_param(1, 4)
    tdl = struct.unpack_from(">H", data, 2)[0]
    sdl, inline = struct.unpack_from(">II", data, 8)
    if 16 + tdl + sdl + inline > plen:
        raise _param_len_error()
    if tdl + sdl > MAX_DESCRIPTOR_LIST_LENGTH:
        raise _param_len_error()
    if inline:
        raise S.invalid_param(12)  # MAXIMUM INLINE DATA LENGTH is 0
    targets: list[bytes] = []
    pos, end = 16, 16 + tdl
    descs = []
    while pos < end:
        size = _target_length(data[pos]) or 32
        if pos + size > end:
            raise _param_len_error()
        descs.append((pos, size))
        pos += size
    if len(descs) > MAX_TARGET_DESCRIPTORS:
        raise S.CheckCondition(S.TOO_MANY_TARGET_DESCRIPTORS)
    for pos, _size in descs:
        if data[pos] != _IDENT_DESCRIPTOR:
            raise S.CheckCondition(S.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE, field=pos, in_cdb=False)
        if data[pos + 1] & 0x1F != 0:
            raise S.invalid_param(pos + 1)  # only block devices (peripheral type 0)
        if struct.unpack_from(">I", data, pos + 28)[0] & 0xFFFFFF != block_sizes:
            raise S.invalid_param(pos + 29)
        dlen = data[pos + 7]
        if dlen > 20:
            raise S.invalid_param(pos + 7)
        # code set, association/type and the designator itself
        targets.append(bytes((data[pos + 4] & 0x0F, data[pos + 5] & 0x3F)) + data[pos + 8:pos + 8 + dlen])
    positions: list[int] = []
    pos, end = 16 + tdl, 16 + tdl + sdl
    while pos < end:
        if pos + 4 > end:
            raise _param_len_error()
        size = 4 + struct.unpack_from(">H", data, pos + 2)[0]
        if pos + size > end:
            raise _param_len_error()
        positions.append(pos)
        pos += size
    if len(positions) > MAX_SEGMENT_DESCRIPTORS:
        raise S.CheckCondition(S.TOO_MANY_SEGMENT_DESCRIPTORS)
    parsed: list[_Segment] = []
    for pos in positions:
        kind = data[pos]
        if kind not in _SEGMENT_LENGTHS:
            raise S.CheckCondition(S.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE, field=pos, in_cdb=False)
        if struct.unpack_from(">H", data, pos + 2)[0] != _SEGMENT_LENGTHS[kind]:
            raise S.invalid_param(pos + 2)
        src, dst = struct.unpack_from(">HH", data, pos + 4)
        if src >= len(targets) or dst >= len(targets):
            raise _unreachable()
        if kind == _BLOCK_TO_BLOCK:
            blocks = struct.unpack_from(">H", data, pos + 10)[0]
            src_lba, dst_lba = struct.unpack_from(">QQ", data, pos + 12)
            parsed.append(_Segment(src, dst, blocks * block_sizes, src_lba * block_sizes,
                                   dst_lba * block_sizes))
        else:
            nbytes, src_lba, dst_lba, src_off, dst_off = struct.unpack_from(">IQQHH", data, pos + 8)
            if nbytes > max_segment_bytes(block_sizes):
                raise S.invalid_param(pos + 8)
            if src_off >= block_sizes or dst_off >= block_sizes:
                raise S.invalid_param(pos + (28 if src_off >= block_sizes else 30))
            parsed.append(_Segment(src, dst, nbytes, src_lba * block_sizes + src_off,
                                   dst_lba * block_sizes + dst_off))
    return list_id, usage, targets, parsed


def max_segment_bytes(block_size: int) -> int:
    """MAXIMUM SEGMENT LENGTH: what a block-to-block descriptor can ask for (65535 blocks)."""
    return 0xFFFF * block_size


def _resolve(disk: ScsiDisk, designator: bytes) -> ScsiDisk:
    code_set, kind, value = designator[0], designator[1], designator[2:]
    if disk.registry is None or code_set != 1 or kind != 0x03:  # binary NAA, LU association
        raise _unreachable()
    target = disk.registry.find(value)
    if target is None:
        raise _unreachable()
    return target


async def _read_bytes(disk: ScsiDisk, start: int, nbytes: int) -> memoryview:
    bs = disk.block_size
    first, end = start // bs, -(-(start + nbytes) // bs)
    data = await read_blocks(disk, first, end - first)
    return data[start - first * bs:start - first * bs + nbytes]


async def _write_bytes(disk: ScsiDisk, start: int, data: memoryview) -> None:
    """Write a byte range; partial blocks at its ends are read, patched and rewritten."""
    bs = disk.block_size
    end = start + len(data)
    if start % bs == 0 and end % bs == 0:
        await write_blocks(disk, start // bs, data, False)
        return
    first, last = start // bs, -(-end // bs)
    blocks = bytearray(await read_blocks(disk, first, last - first))
    blocks[start - first * bs:end - first * bs] = data
    await write_blocks(disk, first, memoryview(blocks), False)


async def _copy_segment(src: ScsiDisk, dst: ScsiDisk, seg: _Segment) -> int:
    """Copy in chunks that end on destination block boundaries (so only the first and last
    chunk can share a block with data outside the copy), 4 at a time -- or one at a time
    from the end when a forward copy within one disk overlaps itself."""
    bs = dst.block_size
    bounds = [0]
    pos = seg.dst_byte
    end = seg.dst_byte + seg.nbytes
    while pos < end:
        nxt = min(end, (pos // CHUNK_BYTES + 1) * CHUNK_BYTES)
        if nxt < end and nxt % bs:
            nxt -= nxt % bs
        bounds.append(nxt - seg.dst_byte)
        pos = nxt
    chunks = list(zip(bounds, bounds[1:], strict=False))
    if src is dst and seg.src_byte < seg.dst_byte < seg.src_byte + seg.nbytes:
        chunks.reverse()
        step = 1
    else:
        step = PARALLEL_CHUNKS

    async def one(a: int, b: int) -> None:
        data = await _read_bytes(src, seg.src_byte + a, b - a)
        await _write_bytes(dst, seg.dst_byte + a, data)

    for i in range(0, len(chunks), step):
        await asyncio.gather(*(one(a, b) for a, b in chunks[i:i + step]))
    return seg.nbytes


_ACCESS_READ = OpSpec(0x28, None, "EXTENDED COPY source", bytes(10), None, READ, PR_READ)  # type: ignore
_ACCESS_WRITE = OpSpec(0x2A, None, "EXTENDED COPY destination", bytes(10), None, WRITE, PR_WRITE)  # type: ignore


async def _check_access(target: ScsiDisk, nexus: Nexus, write: bool) -> ScsiResult | None:
    """The copy runs on behalf of the initiator: its reservations apply to every target."""
    spec = _ACCESS_WRITE if write else _ACCESS_READ
    if target.reservations.restricts and target.reservations.conflicts(nexus, spec, b""):
        return ScsiResult(status=Status.RESERVATION_CONFLICT)
    if write and target.config.read_only:
        raise S.CheckCondition(S.WRITE_PROTECTED)
    return None


async def _admit_destinations(disk: ScsiDisk, nexus: Nexus,
                              targets: list[ScsiDisk]) -> tuple[list, ScsiResult | None]:
    """A destination whose exclusive lock is elsewhere is written only once the lock is here;
    the copy holds each destination's write admission until it ends (the issuing disk's was
    taken by the device).  Returns (admitted locks, or the refusal: BUSY when a lock did not
    come, the dropped connection of a session open when a destination's gateway was fenced)."""
    admitted: list = []
    refused = None
    for target in targets:
        lock = target.lock
        if target is disk or lock is None or any(lock is a for a in admitted):
            continue
        if target.stale(nexus):
            refused = target.refuse_stale(nexus)
        elif lock.enter() or await lock.wait_enter():
            admitted.append(lock)
            continue
        else:
            refused = ScsiResult(status=Status.BUSY)
        for a in admitted:
            a.leave()
        return [], refused
    return admitted, None


async def extended_copy(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    plen = int.from_bytes(cmd.cdb[10:14], "big")
    if plen == 0:
        return GOOD
    data = bytes(cmd.data_out or b"")
    if len(data) < plen:
        raise _param_len_error()
    list_id, usage, designators, segments = parse(data[:plen], disk.block_size)
    targets = [_resolve(disk, d) for d in designators]
    for seg in segments:
        src, dst = targets[seg.src], targets[seg.dst]
        if src.block_size != dst.block_size:
            raise S.CheckCondition(S.COPY_ABORTED_NO_SENSE)
        if (seg.src_byte + seg.nbytes > src.num_blocks * src.block_size
                or seg.dst_byte + seg.nbytes > dst.num_blocks * dst.block_size):
            raise S.CheckCondition(S.COPY_ABORTED_NO_SENSE)
    for seg in segments:
        for target, write in ((targets[seg.src], False), (targets[seg.dst], True)):
            refused = await _check_access(target, cmd.nexus, write)
            if refused is not None:
                return refused
    admitted, refused = await _admit_destinations(disk, cmd.nexus, [targets[seg.dst] for seg in segments])
    if refused is not None:
        return refused
    copied = 0
    try:
        for seg in segments:
            if seg.nbytes:
                copied += await _copy_segment(targets[seg.src], targets[seg.dst], seg)
    finally:
        for lock in admitted:
            lock.leave()
    if usage == _USAGE_HOLD:
        held = disk.copy_results.setdefault(cmd.nexus, CopyResults())
        held.pop(list_id, None)
        held[list_id] = CopyResult(list_id, len(segments), copied)
        while len(held) > MAX_HELD_RESULTS:
            held.popitem(last=False)
    return ScsiResult(transfer_length=plen)


def operating_parameters(disk: ScsiDisk) -> bytes:
    codes = _DESCRIPTOR_CODES
    data = bytearray(44)
    data[4] = 0x01  # SNLID: a copy without a list identifier is accepted
    struct.pack_into(">HHIIIII", data, 8, MAX_TARGET_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS,
                     MAX_DESCRIPTOR_LIST_LENGTH, max_segment_bytes(disk.block_size), 0, 0, 0)
    struct.pack_into(">HBBBB", data, 34, 1, 1, disk._shift, 0, 0)
    data[43] = len(codes)
    out = bytes(data) + codes
    return struct.pack(">I", len(out) - 4) + out[4:]


def _tpc_descriptor(kind: int, body: bytes) -> bytes:
    body += bytes(-(len(body) + 4) % 4)  # descriptors are padded to a multiple of 4
    return struct.pack(">HH", kind, len(body)) + body


def vpd_third_party_copy(disk: ScsiDisk) -> bytes:
    """Third-party Copy VPD page (SPC-4 7.8.17) for EXTENDED COPY(LID1): the commands and
    service actions offered, the same limits as RECEIVE COPY OPERATING PARAMETERS, the
    descriptor types, no CSCD IDs (LID1 names targets by descriptor index)."""
    commands = b""
    for opcode, sas in sorted(disk.table.by_sa.items()):
        if opcode in (0x83, 0x84):
            commands += bytes((opcode, len(sas), *sorted(sas)))
    supported = bytes((len(commands),)) + commands
    parameters = struct.pack(">4xHHII12x", MAX_TARGET_DESCRIPTORS, MAX_SEGMENT_DESCRIPTORS,
                             MAX_DESCRIPTOR_LIST_LENGTH, 0)
    codes = _DESCRIPTOR_CODES
    general = struct.pack(">IIIBB18x", 1, MAX_HELD_RESULTS, max_segment_bytes(disk.block_size),
                          disk._shift, 0)
    body = (_tpc_descriptor(0x0001, supported) + _tpc_descriptor(0x0004, parameters)
            + _tpc_descriptor(0x0008, bytes((len(codes),)) + codes)
            + _tpc_descriptor(0x000C, bytes(2)) + _tpc_descriptor(0x8001, general))
    return bytes((0, 0x8F)) + struct.pack(">H", len(body)) + body


async def receive_copy_results(disk: ScsiDisk, cmd: ScsiCommand) -> ScsiResult:
    cdb = cmd.cdb
    sa = cdb[1] & 0x1F
    alloc = int.from_bytes(cdb[10:14], "big")
    if sa == 0x03:
        return ScsiResult(data=operating_parameters(disk)[:alloc])
    if sa == 0x00:
        held = disk.copy_results.get(cmd.nexus)
        result = held.get(cdb[2]) if held else None
        if result is None:
            raise S.invalid_cdb(2)
        count, units = result.bytes_copied, 0x00
        if count > 0xFFFFFFFF:
            count, units = count >> 10, 0xF1  # kibibytes
        data = struct.pack(">IBHBI", 8, 0x00, min(result.segments, 0xFFFF), units, count)
        return ScsiResult(data=data[:alloc])
    raise S.invalid_cdb(1, 4)
