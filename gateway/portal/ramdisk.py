"""STAND-IN: a minimal in-memory logical unit for the portal's tests and standalone use.

It exists only until ``tcmu_handler`` (issue 5) provides the real SCSI device; it is
deliberately small: standard INQUIRY and VPD 00/80/83, TEST UNIT READY, REQUEST SENSE,
READ CAPACITY 10/16, READ/WRITE 6/10/12/16, WRITE AND VERIFY 10/12/16, VERIFY 10/12/16,
SYNCHRONIZE CACHE 10/16, minimal MODE SENSE 6/10.  Anything else is CHECK CONDITION,
ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE (05/20/00).  REPORT LUNS and unmapped LUNs
are the LunTable's job (tcmu_handler/api.py).

Residual rule for writes whose iSCSI EDTL differs from the CDB length (FCP-4 style, what
libiscsi's iSCSIResiduals tests accept): EDTL >= CDB length -> write the CDB length;
EDTL < CDB length and block aligned -> write EDTL bytes; otherwise 05/0E/03 (INVALID
FIELD IN COMMAND INFORMATION UNIT) without writing.  The transport reports the residual.
"""

from __future__ import annotations

import struct
import uuid

from tcmu_handler.api import Nexus, ScsiCommand, ScsiResult, Status

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def sense(key: int, asc: int, ascq: int) -> bytes:
    """Fixed-format sense data (SPC-4 4.5.3)."""
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


def check(key: int, asc: int, ascq: int, transfer_length: int | None = None) -> ScsiResult:
    return ScsiResult(status=Status.CHECK_CONDITION, sense=sense(key, asc, ascq),
                      transfer_length=transfer_length)


INVALID_OPCODE = (0x05, 0x20, 0x00)
LBA_OUT_OF_RANGE = (0x05, 0x21, 0x00)
INVALID_FIELD_IN_CDB = (0x05, 0x24, 0x00)
INVALID_FIELD_IN_IU = (0x05, 0x0E, 0x03)
MISCOMPARE = (0x0E, 0x1D, 0x00)

# opcode -> (lba offset, lba size, length offset, length size) for the block commands
_READS = {0x08: (1, 3, 4, 1), 0x28: (2, 4, 7, 2), 0xA8: (2, 4, 6, 4), 0x88: (2, 8, 10, 4)}
_WRITES = {0x0A: (1, 3, 4, 1), 0x2A: (2, 4, 7, 2), 0xAA: (2, 4, 6, 4), 0x8A: (2, 8, 10, 4),
           0x2E: (2, 4, 7, 2), 0xAE: (2, 4, 6, 4), 0x8E: (2, 8, 10, 4)}
_VERIFY = {0x2F: (2, 4, 7, 2), 0xAF: (2, 4, 6, 4), 0x8F: (2, 8, 10, 4)}
_SYNC = {0x35: (2, 4, 7, 2), 0x91: (2, 8, 10, 4)}


def _field(cdb: bytes, off: int, size: int) -> int:
    value = int.from_bytes(cdb[off:off + size], "big")
    if size == 3:
        value &= 0x1FFFFF
    return value


class RamDisk:
    """An in-memory disk implementing tcmu_handler.api.LogicalUnit (stand-in)."""

    def __init__(self, size: int, block_size: int = 512, serial: str | None = None) -> None:
        if size % block_size:
            raise ValueError("size must be a multiple of the block size")
        self.block_size = block_size
        self.blocks = size // block_size
        self.storage = bytearray(size)
        self._view = memoryview(self.storage)
        self.serial = serial or uuid.uuid4().hex[:16]

    # -- LogicalUnit -------------------------------------------------------------------
    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        return self.execute_now(cmd)

    def abort_task(self, nexus: Nexus, task_tag: int) -> bool:
        return False        # every command completes synchronously: nothing to abort

    def abort_task_set(self, nexus: Nexus) -> int:
        return 0

    def lun_reset(self, nexus: Nexus) -> None:
        return None

    # -- dispatch ----------------------------------------------------------------------
    def execute_now(self, cmd: ScsiCommand) -> ScsiResult:
        cdb = cmd.cdb
        op = cdb[0]
        if op in _READS:
            return self._read(cdb, _READS[op])
        if op in _WRITES:
            return self._write(cmd, _WRITES[op])
        if op in _VERIFY:
            return self._verify(cmd, _VERIFY[op])
        if op in _SYNC:
            lba_at, lba_n, len_at, len_n = _SYNC[op]
            if _field(cdb, lba_at, lba_n) + _field(cdb, len_at, len_n) > self.blocks:
                return check(*LBA_OUT_OF_RANGE)
            return ScsiResult()
        handler = _SIMPLE.get(op)
        if handler is None:
            return check(*INVALID_OPCODE)
        return handler(self, cdb)

    def _range(self, cdb: bytes, spec: tuple[int, int, int, int]) -> tuple[int, int]:
        lba_at, lba_n, len_at, len_n = spec
        count = _field(cdb, len_at, len_n)
        if len_n == 1 and count == 0 and cdb[0] in (0x08, 0x0A):
            count = 256             # READ(6)/WRITE(6): 0 means 256 blocks
        return _field(cdb, lba_at, lba_n), count

    def _read(self, cdb: bytes, spec) -> ScsiResult:
        lba, count = self._range(cdb, spec)
        if lba + count > self.blocks:
            return check(*LBA_OUT_OF_RANGE)
        bs = self.block_size
        # A view, not a copy: the transport slices it into Data-In PDUs and the socket
        # layer copies it once (commands overlapping it in time have no defined order).
        return ScsiResult(data=self._view[lba * bs:(lba + count) * bs])

    def _write(self, cmd: ScsiCommand, spec) -> ScsiResult:
        lba, count = self._range(cmd.cdb, spec)
        bs = self.block_size
        wanted = count * bs
        if lba + count > self.blocks:
            return check(*LBA_OUT_OF_RANGE, transfer_length=wanted)
        data = cmd.data_out if cmd.data_out is not None else b""
        have = len(data)
        if have < wanted and have % bs:
            return check(*INVALID_FIELD_IN_IU, transfer_length=wanted)
        n = min(have, wanted)
        self.storage[lba * bs:lba * bs + n] = data[:n]
        return ScsiResult(transfer_length=wanted)

    def _verify(self, cmd: ScsiCommand, spec) -> ScsiResult:
        lba, count = self._range(cmd.cdb, spec)
        bs = self.block_size
        if lba + count > self.blocks:
            return check(*LBA_OUT_OF_RANGE)
        bytchk = (cmd.cdb[1] >> 1) & 3
        if bytchk == 0:
            return ScsiResult()
        if bytchk != 1:
            return check(*INVALID_FIELD_IN_CDB)
        data = bytes(cmd.data_out or b"")
        if len(data) < count * bs:
            return check(*INVALID_FIELD_IN_IU, transfer_length=count * bs)
        if self.storage[lba * bs:(lba + count) * bs] != data[:count * bs]:
            return check(*MISCOMPARE, transfer_length=count * bs)
        return ScsiResult(transfer_length=count * bs)

    # -- simple commands ---------------------------------------------------------------
    def _test_unit_ready(self, cdb: bytes) -> ScsiResult:
        return ScsiResult()

    def _request_sense(self, cdb: bytes) -> ScsiResult:
        return ScsiResult(data=sense(0, 0, 0)[:cdb[4]])

    def _inquiry(self, cdb: bytes) -> ScsiResult:
        alloc = _U16.unpack_from(cdb, 3)[0]
        if not cdb[1] & 1:
            if cdb[2]:
                return check(*INVALID_FIELD_IN_CDB)
            data = bytes([0, 0, 0x06, 0x12, 91, 0, 0, 0x02]) + b"RAMDISK STAND-IN RAMDISK0001" + bytes(60)
            return ScsiResult(data=data[:alloc])
        page = cdb[2]
        if page == 0x00:
            body = bytes([0x00, 0x80, 0x83])
        elif page == 0x80:
            body = self.serial.encode()
        elif page == 0x83:
            ident = b"RAMDISK " + self.serial.encode()
            naa = bytes([0x60, 0x01, 0x40, 0x50]) + bytes.fromhex(self.serial.ljust(24, "0")[:24])
            body = bytes([0x02, 0x01, 0, len(ident)]) + ident + bytes([0x01, 0x03, 0, 16]) + naa
        else:
            return check(*INVALID_FIELD_IN_CDB)
        data = bytes([0, page]) + _U16.pack(len(body)) + body
        return ScsiResult(data=data[:alloc])

    def _read_capacity10(self, cdb: bytes) -> ScsiResult:
        last = min(self.blocks - 1, 0xFFFFFFFF)
        return ScsiResult(data=_U32.pack(last) + _U32.pack(self.block_size))

    def _service_action_in(self, cdb: bytes) -> ScsiResult:
        if cdb[1] & 0x1F != 0x10:
            return check(*INVALID_FIELD_IN_CDB)
        alloc = _U32.unpack_from(cdb, 10)[0]
        data = _U64.pack(self.blocks - 1) + _U32.pack(self.block_size) + bytes(20)
        return ScsiResult(data=data[:alloc])

    def _mode_sense(self, cdb: bytes) -> ScsiResult:
        six = cdb[0] == 0x1A
        page = cdb[2] & 0x3F
        pages = {0x08: bytes([0x08, 0x12]) + bytes(18),                  # caching, WCE=0
                 0x0A: bytes([0x0A, 0x0A, 0x02, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0])}  # control
        if page == 0x3F:
            body = pages[0x08] + pages[0x0A]
        elif page in pages:
            body = pages[page]
        else:
            return check(*INVALID_FIELD_IN_CDB)
        if six:
            data = bytes([len(body) + 3, 0, 0, 0]) + body
            alloc = cdb[4]
        else:
            data = _U16.pack(len(body) + 6) + bytes(6) + body
            alloc = _U16.unpack_from(cdb, 7)[0]
        return ScsiResult(data=data[:alloc])


_SIMPLE = {
    0x00: RamDisk._test_unit_ready,
    0x03: RamDisk._request_sense,
    0x12: RamDisk._inquiry,
    0x25: RamDisk._read_capacity10,
    0x9E: RamDisk._service_action_in,
    0x1A: RamDisk._mode_sense,
    0x5A: RamDisk._mode_sense,
}


def parse_size(text: str) -> int:
    """'64M', '1G', '4096' -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
