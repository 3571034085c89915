"""Every command and rejection path, table-driven: CDB bytes -> status, sense, data.

Each case runs on a fresh 2048-block disk (512-byte blocks) on the memory
backend, after the power-on unit attention was consumed.  Expectations encode
what libiscsi 1.19's iscsi-test-cu checks (sense key/ASC/ASCQ) plus the field
pointers SPC-4 asks for.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest
from scsi_support import (
    BLOCKS,
    BS,
    Harness,
    Sense,
    caw,
    cdb6,
    inquiry,
    maint_in,
    mode_sense6,
    mode_sense10,
    run,
    rw6,
    rw10,
    rw12,
    rw16,
    sa16,
    unmap_cdb,
    unmap_list,
)

from tcmu_handler.api import Status

LAST = BLOCKS - 1
A = b"A" * BS
B = b"B" * BS
ZERO = bytes(BS)

ILLEGAL = 0x5
LBA_OOB = (ILLEGAL, 0x21, 0x00)
INVALID_CDB = (ILLEGAL, 0x24, 0x00)
INVALID_PARAM = (ILLEGAL, 0x26, 0x00)
PARAM_LEN = (ILLEGAL, 0x1A, 0x00)
INVALID_OPCODE = (ILLEGAL, 0x20, 0x00)
INVALID_IU = (ILLEGAL, 0x0E, 0x03)
MISCOMPARE = (0xE, 0x1D, 0x00)
SAVING_NOT_SUPPORTED = (ILLEGAL, 0x39, 0x00)


@dataclass
class Case:
    id: str
    cdb: bytes
    data_out: bytes | None = None
    status: int = Status.GOOD
    sense: tuple[int, int, int] | None = None
    #: (field, bit) of the sense-key specific field pointer (bit None = no bit pointer)
    pointer: tuple[int, int | None] | None = None
    in_cdb: bool = True
    data: bytes | None = None
    check: object = None  # callable(data) -> bool
    setup: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    #: after the command, these blocks must read back as given
    after: tuple[int, bytes] | None = None
    edtl: int | None = None
    transfer_length: int | None = None
    information: int | None = None


def bad(id, cdb, data_out=None, sense=INVALID_CDB, pointer=None, **kw) -> Case:
    return Case(id, cdb, data_out, Status.CHECK_CONDITION, sense, pointer, **kw)


def wr(lba: int, data: bytes) -> tuple[bytes, bytes]:
    return (rw10(0x2A, lba, len(data) // BS), data)


CASES = [
    # -- TEST UNIT READY / REQUEST SENSE / START STOP UNIT ---------------------------
    Case("tur", cdb6(0x00)),
    bad("tur-naca", bytes((0, 0, 0, 0, 0, 0x04)), pointer=(5, 2)),
    Case("request-sense-no-sense", cdb6(0x03, 0, 0, 0, 18),
         data=bytes((0x70, 0, 0, 0, 0, 0, 0, 10)) + bytes(10)),
    Case("request-sense-descriptor", cdb6(0x03, 1, 0, 0, 252), data=bytes((0x72, 0, 0, 0, 0, 0, 0, 0))),
    Case("request-sense-alloc-truncates", cdb6(0x03, 0, 0, 0, 4), data=bytes((0x70, 0, 0, 0))),
    Case("start-stop-start", cdb6(0x1B, 0, 0, 0, 0x01)),
    Case("start-stop-start-immed", cdb6(0x1B, 1, 0, 0, 0x01)),
    bad("start-stop-stop-refused", cdb6(0x1B, 0, 0, 0, 0x00), pointer=(4, 0)),
    bad("start-stop-eject-refused", cdb6(0x1B, 0, 0, 0, 0x02), pointer=(4, 1)),
    bad("start-stop-power-condition-refused", cdb6(0x1B, 0, 0, 0, 0x11), pointer=(4, 4)),
    # -- INQUIRY -----------------------------------------------------------------------
    Case("inquiry-standard", inquiry(), check=lambda d: (
        len(d) == 96 and d[0] == 0 and d[2] == 6 and d[3] == 0x12 and d[4] == 91
        and d[7] & 0x02 and d[8:16] == b"LIO-ORG " and d[16:32] == b"TCMU device     "
        and struct.unpack_from(">4H", d, 58) == (0x00A0, 0x0960, 0x0460, 0x04C0)
        and d[5] & 0x08)),  # 3PC: EXTENDED COPY offered
    Case("inquiry-alloc-5", inquiry(alloc=5), check=lambda d: len(d) == 5),
    Case("inquiry-alloc-16-bit", inquiry(alloc=512), check=lambda d: len(d) == 96),
    bad("inquiry-page-without-evpd", struct.pack(">BBBHB", 0x12, 0, 1, 255, 0), pointer=(2, None)),
    bad("inquiry-cmddt-refused", inquiry(b1=0x02), pointer=(1, 1)),
    Case("vpd-supported-pages", inquiry(0x00),
         data=bytes((0, 0, 0, 8, 0, 0x80, 0x83, 0x86, 0x8F, 0xB0, 0xB1, 0xB2))),
    Case("vpd-serial", inquiry(0x80), data=bytes((0, 0x80, 0, 36)) + b"4fc1071d-7e2f-4df0-95c8-925a6ea8b3c1"),
    Case("vpd-device-identification-naa", inquiry(0x83), check=lambda d: (
        d[1] == 0x83 and d[4:8] == bytes((0x01, 0x03, 0, 16))
        and d[8:24] == bytes.fromhex("60014054fc1071d7e2f4df095c8925a6"))),
    Case("vpd-extended-inquiry", inquiry(0x86), check=lambda d: d[1] == 0x86 and d[3] == 0x3C and d[5] == 1),
    Case("vpd-block-limits", inquiry(0xB0), check=lambda d: (
        len(d) == 64 and d[3] == 0x3C and not d[4] & 1 and d[5] == 1  # WSNZ=0, MAX CAW LENGTH 1
        and struct.unpack_from(">III", d, 8) == (1024, 1024, 1024)  # hw_max_sectors
        and struct.unpack_from(">Q", d, 36)[0] == min(0xFFFF, struct.unpack_from(">I", d, 20)[0])
        and struct.unpack_from(">I", d, 20)[0] > 0
        and struct.unpack_from(">I", d, 24)[0] == 256 and d[32] & 0x80)),
    Case("vpd-block-device-characteristics", inquiry(0xB1), check=lambda d: d[1] == 0xB1 and d[3] == 0x3C),
    Case("vpd-logical-block-provisioning", inquiry(0xB2), data=bytes((0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0))),
    bad("vpd-unknown-page", inquiry(0x89), pointer=(2, None)),
    # -- MODE SENSE / MODE SELECT -------------------------------------------------------------
    Case("mode-sense6-all-pages", mode_sense6(0x3F), check=lambda d: (
        d[0] == len(d) - 1 and d[2] == 0x10 and d[3] == 8 and d[12] == 0x01 and d[24] == 0x08
        and d[44] == 0x0A and len(d) == 4 + 8 + 12 + 20 + 12)),
    Case("mode-sense6-dbd", mode_sense6(0x0A, dbd=True), data=bytes((15, 0, 0x10, 0)) + bytes(
        (0x0A, 0x0A, 0x02, 0x10, 0, 0x40, 0, 0, 0xFF, 0xFF, 0, 0))),
    Case("mode-sense6-caching-wce-clear", mode_sense6(0x08, dbd=True),
         check=lambda d: d[4] == 0x08 and d[6] == 0),
    Case("mode-sense6-changeable-nothing", mode_sense6(0x0A, pc=1, dbd=True),
         data=bytes((15, 0, 0x10, 0, 0x0A, 0x0A)) + bytes(10)),
    Case("mode-sense6-alloc-4", mode_sense6(0x3F, alloc=4), check=lambda d: len(d) == 4),
    bad("mode-sense6-unknown-page", mode_sense6(0x1C), pointer=(2, 5)),
    bad("mode-sense6-saved-values", mode_sense6(0x3F, pc=3), sense=SAVING_NOT_SUPPORTED, pointer=(2, 7)),
    bad("mode-sense6-subpage", mode_sense6(0x0A, subpage=1), pointer=(3, None)),
    Case("mode-sense10-long-lba", mode_sense10(0x0A, b1=0x10), check=lambda d: (
        struct.unpack_from(">H", d, 6)[0] == 16 and d[4] & 1
        and struct.unpack_from(">Q", d, 8)[0] == BLOCKS)),
    Case("mode-select6-current-values", bytes((0x15, 0x10, 0, 0, 16, 0)),
         data_out=bytes((0, 0, 0, 0)) + bytes((0x0A, 0x0A, 0x02, 0x10, 0, 0x40, 0, 0, 0xFF, 0xFF, 0, 0))),
    bad("mode-select6-swp-not-changeable", bytes((0x15, 0x10, 0, 0, 16, 0)), sense=INVALID_PARAM,
        data_out=bytes((0, 0, 0, 0)) + bytes((0x0A, 0x0A, 0x02, 0x10, 0x08, 0x40, 0, 0, 0xFF, 0xFF, 0, 0)),
        pointer=(8, None), in_cdb=False),
    bad("mode-select6-pf-zero", bytes((0x15, 0x00, 0, 0, 16, 0)), pointer=(1, 4),
        data_out=bytes(16)),
    bad("mode-select6-save-pages", bytes((0x15, 0x11, 0, 0, 16, 0)), pointer=(1, 0), data_out=bytes(16)),
    bad("mode-select6-truncated-page", bytes((0x15, 0x10, 0, 0, 10, 0)), sense=PARAM_LEN,
        data_out=bytes((0, 0, 0, 0, 0x0A, 0x0A, 0x02, 0x10, 0, 0x40))),
    Case("mode-select6-empty", bytes((0x15, 0x10, 0, 0, 0, 0))),
    Case("mode-select10-caching", struct.pack(">BBxxxxxHB", 0x55, 0x10, 28, 0),
         data_out=bytes(8) + bytes((0x08, 0x12)) + bytes(18)),
    # -- READ CAPACITY ---------------------------------------------------------------------------
    Case("read-capacity10", bytes(10).replace(b"\0", b"\x25", 1), data=struct.pack(">II", LAST, BS)),
    bad("read-capacity10-lba-without-pmi", struct.pack(">BBIxxBB", 0x25, 0, 5, 0, 0), pointer=(2, None)),
    Case("read-capacity16", sa16(0x9E, 0x10), check=lambda d: (
        len(d) == 32 and struct.unpack_from(">QI", d) == (LAST, BS) and d[14] == 0xC0 and d[13] == 0)),
    Case("read-capacity16-alloc-0", sa16(0x9E, 0x10, alloc=0), data=b""),
    Case("read-capacity16-alloc-12", sa16(0x9E, 0x10, alloc=12), check=lambda d: len(d) == 12),
    bad("service-action-in-unknown-sa", sa16(0x9E, 0x13), pointer=(1, 4)),
    # -- READ --------------------------------------------------------------------------------------
    Case("read6", rw6(0x08, 1, 1), setup=[wr(1, A)], data=A),
    Case("read6-length-0-means-256", rw6(0x08, 0, 0), check=lambda d: len(d) == 256 * BS),
    bad("read6-beyond-end", rw6(0x08, LAST, 2), sense=LBA_OOB),
    Case("read10", rw10(0x28, 3, 2), setup=[wr(3, A + B)], data=A + B),
    Case("read10-zero-blocks", rw10(0x28, 0, 0), data=b""),
    Case("read10-zero-blocks-at-end", rw10(0x28, BLOCKS, 0), data=b""),
    bad("read10-zero-blocks-past-end", rw10(0x28, BLOCKS + 1, 0), sense=LBA_OOB),
    bad("read10-beyond-end", rw10(0x28, LAST, 2), sense=LBA_OOB),
    bad("read10-lba-minus-1", rw10(0x28, 0xFFFFFFFF, 1), sense=LBA_OOB),
    Case("read10-dpo-fua", rw10(0x28, 0, 1, b1=0x18), data=ZERO),
    bad("read10-rdprotect", rw10(0x28, 0, 1, b1=0x20), pointer=(1, 5)),
    bad("read10-rarc", rw10(0x28, 0, 1, b1=0x04), pointer=(1, 2)),
    # hw_max_sectors (1024) is what VPD B0 advertises; up to the data area is accepted
    Case("read10-beyond-hw-max-sectors", rw10(0x28, 0, 1025), data=ZERO * 1025),
    Case("read10-group-number-ignored", rw10(0x28, 0, 1, group=3), data=ZERO),
    Case("read12", rw12(0xA8, LAST, 1), setup=[wr(LAST, B)], data=B),
    bad("read12-beyond-end", rw12(0xA8, LAST, 2), sense=LBA_OOB),
    Case("read16", rw16(0x88, LAST, 1), setup=[wr(LAST, B)], data=B),
    bad("read16-lba-2-63", rw16(0x88, 1 << 63, 1), sense=LBA_OOB),
    bad("read16-rdprotect", rw16(0x88, 0, 1, b1=0xE0), pointer=(1, 7)),
    # -- WRITE ------------------------------------------------------------------------------------
    Case("write6", rw6(0x0A, 5, 1), A, after=(5, A), transfer_length=BS),
    Case("write10", rw10(0x2A, 7, 2), A + B, after=(7, A + B), transfer_length=2 * BS),
    Case("write10-fua", rw10(0x2A, 7, 1, b1=0x08), A, after=(7, A)),
    Case("write10-fua-nv", rw10(0x2A, 7, 1, b1=0x02), A, after=(7, A)),
    Case("write10-zero-blocks", rw10(0x2A, 0, 0), transfer_length=0),
    bad("write10-zero-blocks-past-end", rw10(0x2A, BLOCKS + 1, 0), sense=LBA_OOB),
    bad("write10-beyond-end", rw10(0x2A, LAST, 2), A + B, sense=LBA_OOB),
    bad("write10-wrprotect", rw10(0x2A, 0, 1, b1=0x40), A, pointer=(1, 6)),
    Case("write12", rw12(0xAA, 9, 1), B, after=(9, B)),
    Case("write16", rw16(0x8A, LAST, 1), B, after=(LAST, B)),
    bad("write16-beyond-end", rw16(0x8A, BLOCKS, 1), B, sense=LBA_OOB),
    # residuals (libiscsi iSCSIResiduals, transport reports the counts)
    Case("write10-edtl-larger-writes-cdb-length", rw10(0x2A, 0, 1), B + A, setup=[wr(0, A + A)],
         after=(0, B + A), transfer_length=BS),
    Case("write10-edtl-one-block-short-writes-what-came", rw10(0x2A, 0, 2), B, setup=[wr(0, A + A)],
         after=(0, B + A), transfer_length=2 * BS),
    Case("write10-edtl-zero-writes-nothing", rw10(0x2A, 0, 1), b"", setup=[wr(0, A)], after=(0, A),
         transfer_length=BS),
    bad("write10-edtl-partial-block-refused", rw10(0x2A, 0, 1), b"B" * 200, sense=INVALID_IU,
        setup=[wr(0, A)], after=(0, A), transfer_length=BS),
    # -- WRITE AND VERIFY / VERIFY -----------------------------------------------------------------
    Case("write-verify10-bytchk", rw10(0x2E, 4, 1, b1=0x02), B, after=(4, B)),
    Case("write-verify10-medium", rw10(0x2E, 4, 1), B, after=(4, B)),
    Case("write-verify10-dpo", rw10(0x2E, 4, 1, b1=0x12), B, after=(4, B)),
    Case("write-verify10-zero-blocks", rw10(0x2E, 0, 0)),
    bad("write-verify10-bytchk-2", rw10(0x2E, 4, 1, b1=0x04), B, pointer=(1, 2)),
    bad("write-verify10-wrprotect", rw10(0x2E, 4, 1, b1=0x20), B, pointer=(1, 5)),
    bad("write-verify10-beyond-end", rw10(0x2E, BLOCKS, 1), B, sense=LBA_OOB),
    Case("write-verify12", rw12(0xAE, 4, 1, b1=0x02), B, after=(4, B)),
    Case("write-verify16", rw16(0x8E, 4, 1, b1=0x02), B, after=(4, B)),
    Case("verify10-match", rw10(0x2F, 2, 1, b1=0x02), A, setup=[wr(2, A)]),
    bad("verify10-mismatch", rw10(0x2F, 2, 2, b1=0x02), A + A[:-27] + b"C" + A[-26:], sense=MISCOMPARE,
        setup=[wr(2, A + A)], information=2 * BS - 27),
    Case("verify10-no-bytchk-reads-medium", rw10(0x2F, 2, 4)),
    Case("verify10-one-block-for-all", rw10(0x2F, 2, 2, b1=0x06), A, setup=[wr(2, A + A)]),
    bad("verify10-one-block-mismatch", rw10(0x2F, 2, 2, b1=0x06), A, sense=MISCOMPARE, setup=[wr(2, A + B)],
        information=BS),
    bad("verify10-bytchk-2", rw10(0x2F, 2, 1, b1=0x04), A, pointer=(1, 2)),
    bad("verify10-vrprotect", rw10(0x2F, 2, 1, b1=0x22), A, pointer=(1, 5)),
    bad("verify10-beyond-end", rw10(0x2F, LAST, 2, b1=0x02), A + A, sense=LBA_OOB),
    bad("verify10-zero-blocks-past-end", rw10(0x2F, BLOCKS + 1, 0, b1=0x02), sense=LBA_OOB),
    Case("verify10-zero-blocks", rw10(0x2F, 0, 0, b1=0x02)),
    Case("verify10-dpo", rw10(0x2F, 0, 1, b1=0x10)),
    Case("verify12-match", rw12(0xAF, 2, 1, b1=0x02), A, setup=[wr(2, A)]),
    Case("verify16-match", rw16(0x8F, 2, 1, b1=0x02), A, setup=[wr(2, A)]),
    bad("verify16-mismatch", rw16(0x8F, 2, 1, b1=0x02), B, sense=MISCOMPARE, setup=[wr(2, A)], information=0),
    # -- SYNCHRONIZE CACHE / PRE-FETCH / READ DEFECT DATA -----------------------------------------------
    Case("synchronize-cache10", rw10(0x35, 0, 0)),
    Case("synchronize-cache10-immed", rw10(0x35, 0, 1, b1=0x02)),
    bad("synchronize-cache10-beyond-end", rw10(0x35, LAST, 2), sense=LBA_OOB),
    Case("synchronize-cache16", rw16(0x91, 0, 0)),
    bad("synchronize-cache16-beyond-end", rw16(0x91, BLOCKS, 1), sense=LBA_OOB),
    Case("prefetch10", rw10(0x34, 0, 16)),
    Case("prefetch10-immed-group", rw10(0x34, 0, 1, b1=0x02, group=3)),
    bad("prefetch10-beyond-end", rw10(0x34, LAST, 2), sense=LBA_OOB),
    Case("prefetch16", rw16(0x90, LAST, 1)),
    bad("prefetch16-lba-minus-1", rw16(0x90, (1 << 64) - 1, 1), sense=LBA_OOB),
    Case("read-defect-data10", struct.pack(">BBBxxxxHB", 0x37, 0, 0x0D, 32, 0), data=bytes((0, 0x0D, 0, 0))),
    Case("read-defect-data12", struct.pack(">BBxxxxIBB", 0xB7, 0x0D, 32, 0, 0),
         data=bytes((0, 0x0D)) + bytes(6)),
    # -- WRITE SAME ---------------------------------------------------------------------------------
    Case("write-same10", rw10(0x41, 10, 3), A, after=(10, A * 3), transfer_length=BS),
    Case("write-same10-unmap-zeroes", rw10(0x41, 10, 3, b1=0x08), ZERO, setup=[wr(10, B * 3)],
         after=(10, ZERO * 3)),
    Case("write-same10-unmap-deallocates-whatever-the-data", rw10(0x41, 10, 2, b1=0x08), A,
         setup=[wr(10, B * 2)], after=(10, ZERO * 2)),
    Case("write-same10-zero-blocks-to-the-last-lba", rw10(0x41, LAST - 2, 0), A,
         after=(LAST - 3, ZERO + A * 3)),
    bad("write-same10-zero-blocks-past-end", rw10(0x41, BLOCKS, 0), A, sense=LBA_OOB),
    bad("write-same10-anchor", rw10(0x41, 0, 1, b1=0x18), ZERO, pointer=(1, 4)),
    bad("write-same10-wrprotect", rw10(0x41, 0, 1, b1=0x20), ZERO, pointer=(1, 5)),
    bad("write-same10-beyond-end", rw10(0x41, LAST, 2), A, sense=LBA_OOB),
    bad("write-same10-half-block-data-out", rw10(0x41, 0, 1, b1=0x08), ZERO[:256], sense=INVALID_IU),
    bad("write-same10-two-block-data-out", rw10(0x41, 0, 1, b1=0x08), ZERO * 2, sense=INVALID_IU),
    Case("write-same16", rw16(0x93, LAST - 1, 2), B, after=(LAST - 1, B * 2)),
    Case("write-same16-ndob", rw16(0x93, 10, 2, b1=0x09), setup=[wr(10, A * 2)], after=(10, ZERO * 2),
         transfer_length=0),
    Case("write-same16-zero-blocks-unmap-to-the-last-lba", rw16(0x93, LAST - 1, 0, b1=0x08), ZERO,
         setup=[wr(LAST - 2, A * 3)], after=(LAST - 2, A + ZERO * 2)),
    bad("write-same16-over-65535-blocks", rw16(0x93, 0, 0x10000), A, pointer=(10, None)),
    bad("write-same16-too-many-blocks", rw16(0x93, 0, 0x10000000), A, pointer=(10, None)),
    bad("write-same16-beyond-end", rw16(0x93, BLOCKS, 1), A, sense=LBA_OOB),
    # -- UNMAP ----------------------------------------------------------------------------------------
    Case("unmap", unmap_cdb(24), unmap_list((20, 4)), setup=[wr(20, A * 4)], after=(20, ZERO * 4)),
    Case("unmap-single-block-reads-zero", unmap_cdb(24), unmap_list((21, 1)), setup=[wr(20, A * 3)],
         after=(20, A + ZERO + A)),
    Case("unmap-two-descriptors", unmap_cdb(40), unmap_list((20, 1), (22, 1)), setup=[wr(20, A * 3)],
         after=(20, ZERO + A + ZERO)),
    Case("unmap-no-descriptors", unmap_cdb(8), unmap_list()),
    Case("unmap-zero-blocks", unmap_cdb(24), unmap_list((5, 0))),
    Case("unmap-zero-length-list", unmap_cdb(0)),
    bad("unmap-list-shorter-than-header", unmap_cdb(6), bytes(6), sense=PARAM_LEN),
    bad("unmap-beyond-end", unmap_cdb(24), unmap_list((LAST, 2)), sense=LBA_OOB),
    bad("unmap-too-many-descriptors", unmap_cdb(8 + 16 * 257), unmap_list(*[(i, 1) for i in range(257)]),
        sense=INVALID_PARAM, in_cdb=False, pointer=(2, None)),
    bad("unmap-anchor", unmap_cdb(24, b1=0x01), unmap_list((1, 1)), pointer=(1, 0)),
    # -- COMPARE AND WRITE -----------------------------------------------------------------------------
    Case("caw-match-writes", caw(30), A + B, setup=[wr(30, A)], after=(30, B), transfer_length=2 * BS),
    bad("caw-miscompare-leaves-data", caw(30), A[:-27] + b"C" + A[-26:] + B, sense=MISCOMPARE,
        setup=[wr(30, A)], after=(30, A), information=BS - 27),
    bad("caw-unwritten-miscompare", caw(31), b"%" * BS + B, sense=MISCOMPARE, after=(31, ZERO),
        information=0),
    Case("caw-dpo-fua", caw(30, b1=0x18), A + B, setup=[wr(30, A)], after=(30, B)),
    Case("caw-zero-blocks", caw(30, n=0), transfer_length=0),
    bad("caw-two-blocks-over-limit", caw(30, n=2), A * 4, pointer=(13, None)),
    bad("caw-data-out-too-long", caw(30), A * 4, sense=INVALID_IU),
    bad("caw-data-out-too-short", caw(30), A, sense=INVALID_IU),
    bad("caw-beyond-end", caw(BLOCKS), A + B, sense=LBA_OOB),
    bad("caw-wrprotect", caw(30, b1=0x20), A + B, pointer=(1, 5)),
    # -- GET LBA STATUS -------------------------------------------------------------------------------
    Case("get-lba-status-deallocated", sa16(0x9E, 0x12, lba=100, alloc=24), check=lambda d: (
        struct.unpack_from(">IIQIB", d) [:3] == (20, 0, 100) and d[20] == 1)),
    Case("get-lba-status-mapped", sa16(0x9E, 0x12, lba=100, alloc=24), setup=[wr(100, A)],
         check=lambda d: struct.unpack_from(">Q", d, 8)[0] == 100 and d[20] == 0),
    Case("get-lba-status-after-unmap", sa16(0x9E, 0x12, lba=128, alloc=24),
         setup=[wr(128, A * 8), (unmap_cdb(24), unmap_list((128, 8)))], check=lambda d: d[20] == 1),
    Case("get-lba-status-last-block", sa16(0x9E, 0x12, lba=LAST, alloc=24),
         check=lambda d: struct.unpack_from(">QI", d, 8) == (LAST, 1)),
    bad("get-lba-status-past-end", sa16(0x9E, 0x12, lba=BLOCKS, alloc=24), sense=LBA_OOB),
    bad("get-lba-status-lba-minus-1", sa16(0x9E, 0x12, lba=(1 << 64) - 1, alloc=24), sense=LBA_OOB),
    # -- REPORT SUPPORTED OPERATION CODES / RTPG ------------------------------------------------------------
    Case("rsoc-all", maint_in(0x0C), check=lambda d: struct.unpack_from(">I", d)[0] == len(d) - 4
         and len(d) > 4 + 8 * 40),
    Case("rsoc-one-read10", maint_in(0x0C, b2=1, b3=0x28),
         data=bytes((0, 3, 0, 10, 0x28, 0x1A, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0))),
    Case("rsoc-one-unsupported-opcode", maint_in(0x0C, b2=1, b3=0x04), data=bytes((0, 1, 0, 0))),
    bad("rsoc-one-without-sa-for-sa-opcode", maint_in(0x0C, b2=1, b3=0x9E), pointer=(2, 2)),
    Case("rsoc-one-with-sa", maint_in(0x0C, b2=2, b3=0x9E, b45=0x10),
         check=lambda d: d[1] == 3 and d[4] == 0x9E),
    bad("rsoc-sa-for-plain-opcode", maint_in(0x0C, b2=2, b3=0x28), pointer=(2, 2)),
    Case("rsoc-rctd-timeouts", maint_in(0x0C, b2=0x81, b3=0x28), check=lambda d: d[1] & 0x80
         and struct.unpack_from(">H", d, 14)[0] == 0x0A),
    bad("rsoc-reporting-option-7", maint_in(0x0C, b2=7), pointer=(2, 2)),
    Case("rtpg-without-alua-groups", maint_in(0x0A), data=bytes(4)),
    Case("rtpg-extended-header", maint_in(0x0A, b1_high=0x20), data=bytes((0, 0, 0, 4, 0x10, 45, 0, 0))),
    bad("rtpg-format-2", maint_in(0x0A, b1_high=0x40), pointer=(1, 6)),
    bad("maintenance-in-unknown-sa", maint_in(0x05), pointer=(1, 4)),
    # -- commands not offered -------------------------------------------------------------------------------
    bad("format-unit", cdb6(0x04), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("sanitize", rw10(0x48, 0, 0), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("orwrite", rw16(0x8B, 0, 1), A, sense=INVALID_OPCODE, pointer=(0, None)),
    bad("write-atomic16", rw16(0x9C, 0, 1), A, sense=INVALID_OPCODE, pointer=(0, None)),
    bad("prevent-allow", cdb6(0x1E, 0, 0, 0, 1), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("send-diagnostic", cdb6(0x1D, 0x04), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("log-sense", rw10(0x4D, 0, 0), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("write-long", rw10(0x3F, 0, 0), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("read32-variable-length", bytes((0x7F,)) + bytes(31), sense=INVALID_OPCODE, pointer=(0, None)),
    bad("extended-copy-lid4", bytes((0x83, 0x01)) + bytes(14), pointer=(1, 4)),
    bad("set-target-port-groups-implicit-only", bytes((0xA4, 0x0A)) + bytes(10), sense=INVALID_OPCODE,
        pointer=(0, None)),
]


async def _run_case(case: Case) -> None:
    h = Harness()
    await h.ready()
    for cdb, data in case.setup:
        r = await h.run(cdb, data)
        assert r.status == Status.GOOD, f"setup {cdb.hex()}: {r}"
    r = await h.run(case.cdb, case.data_out, edtl=case.edtl)
    assert r.status == case.status, (r.status, r.sense and Sense.parse(r.sense))
    if case.sense is not None:
        s = Sense.parse(r.sense)
        assert s.code == case.sense, s
        if case.pointer is not None:
            assert s.sksv and s.in_cdb == case.in_cdb and (s.field, s.bit) == case.pointer, s
        if case.information is not None:
            assert s.information == case.information, s
    elif case.status == Status.GOOD:
        assert r.sense is None
    if case.data is not None:
        assert bytes(r.data) == case.data, bytes(r.data).hex()
    if case.check is not None:
        assert case.check(bytes(r.data)), bytes(r.data).hex()
    if case.transfer_length is not None:
        assert r.transfer_length == case.transfer_length
    if case.after is not None:
        lba, expected = case.after
        back = await h.run(rw10(0x28, lba, len(expected) // BS))
        assert bytes(back.data) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_command(case: Case) -> None:
    run(_run_case(case))


def test_every_offered_command_has_a_case() -> None:
    h = Harness()
    names = {s.name for s in h.disk.table.specs}
    covered = {
        "TEST UNIT READY": "tur", "REQUEST SENSE": "request-sense", "INQUIRY": "inquiry",
        "MODE SELECT(6)": "mode-select6", "MODE SELECT(10)": "mode-select10", "MODE SENSE(6)": "mode-sense6",
        "MODE SENSE(10)": "mode-sense10", "START STOP UNIT": "start-stop", "READ CAPACITY(10)":
        "read-capacity10", "READ CAPACITY(16)": "read-capacity16", "READ(6)": "read6", "READ(10)": "read10",
        "READ(12)": "read12", "READ(16)": "read16", "WRITE(6)": "write6", "WRITE(10)": "write10",
        "WRITE(12)": "write12", "WRITE(16)": "write16", "WRITE AND VERIFY(10)": "write-verify10",
        "WRITE AND VERIFY(12)": "write-verify12", "WRITE AND VERIFY(16)": "write-verify16",
        "VERIFY(10)": "verify10", "VERIFY(12)": "verify12", "VERIFY(16)": "verify16",
        "SYNCHRONIZE CACHE(10)": "synchronize-cache10", "SYNCHRONIZE CACHE(16)": "synchronize-cache16",
        "PRE-FETCH(10)": "prefetch10", "PRE-FETCH(16)": "prefetch16", "READ DEFECT DATA(10)":
        "read-defect-data10", "READ DEFECT DATA(12)": "read-defect-data12", "WRITE SAME(10)": "write-same10",
        "WRITE SAME(16)": "write-same16", "UNMAP": "unmap", "COMPARE AND WRITE": "caw",
        "GET LBA STATUS": "get-lba-status", "REPORT SUPPORTED OPERATION CODES": "rsoc",
        "REPORT TARGET PORT GROUPS": "rtpg",
    }
    ids = [c.id for c in CASES]
    # Commands covered in their own test modules: reservations, REPORT LUNS, EXTENDED COPY.
    elsewhere = {"RESERVE(6)", "RELEASE(6)", "RESERVE(10)", "RELEASE(10)", "PERSISTENT RESERVE IN",
                 "PERSISTENT RESERVE OUT", "REPORT LUNS", "EXTENDED COPY(LID1)",
                 "RECEIVE COPY STATUS(LID1)", "RECEIVE COPY OPERATING PARAMETERS"}
    for name in names - elsewhere:
        prefix = covered[name]
        assert any(i == prefix or i.startswith(prefix + "-") for i in ids), name
