"""The commands a disk implements: handler, CDB usage data and access rules.

Reading guide for a usage row: ``usage(0x28, 0x1A, ...)`` means byte 1 of
READ(10) may carry DPO (0x10), FUA (0x08) and FUA_NV (0x02); any other bit
(RDPROTECT, RARC) is rejected with INVALID FIELD IN CDB pointing at it.
Group-number bits (0x3F) are accepted and ignored everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import modes, pr, sbc, sbc_vaai, spc, xcopy
from .opcodes import (
    OTHER,
    PR_ALLOWED,
    PR_INFO,
    PR_OUT,
    PR_READ,
    PR_WRITE,
    READ,
    WRITE,
    OpSpec,
    OpTable,
    usage,
)

if TYPE_CHECKING:
    from .disk import ScsiDisk

F4 = (0xFF, 0xFF, 0xFF, 0xFF)
F8 = F4 + F4


def _spc_specs() -> list[OpSpec]:
    return [
        OpSpec(0x00, None, "TEST UNIT READY", usage(0x00, 0, 0, 0, 0, 0), spc.test_unit_ready,
               pr=PR_ALLOWED),
        OpSpec(0x03, None, "REQUEST SENSE", usage(0x03, 0x01, 0, 0, 0xFF, 0), spc.request_sense,
               pr=PR_ALLOWED, spc2_allowed=True, ua_exempt=True, medium=False),
        OpSpec(0x12, None, "INQUIRY", usage(0x12, 0x01, 0xFF, 0xFF, 0xFF, 0), spc.inquiry,
               pr=PR_ALLOWED, spc2_allowed=True, ua_exempt=True, medium=False),
        OpSpec(0x15, None, "MODE SELECT(6)", usage(0x15, 0x10, 0, 0, 0xFF, 0), modes.mode_select6,
               pr=PR_WRITE, medium=False),
        OpSpec(0x16, None, "RESERVE(6)", usage(0x16, 0, 0, 0, 0, 0), pr.reserve, pr=PR_WRITE),
        OpSpec(0x17, None, "RELEASE(6)", usage(0x17, 0, 0, 0, 0, 0), pr.release, pr=PR_ALLOWED,
               spc2_allowed=True),
        OpSpec(0x1A, None, "MODE SENSE(6)", usage(0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0), modes.mode_sense6,
               pr=PR_INFO, medium=False),
        OpSpec(0x55, None, "MODE SELECT(10)", usage(0x55, 0x10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0),
               modes.mode_select10, pr=PR_WRITE, medium=False),
        OpSpec(0x56, None, "RESERVE(10)", usage(0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0), pr.reserve,
               pr=PR_WRITE),
        OpSpec(0x57, None, "RELEASE(10)", usage(0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0), pr.release,
               pr=PR_ALLOWED, spc2_allowed=True),
        OpSpec(0x5A, None, "MODE SENSE(10)", usage(0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0),
               modes.mode_sense10, pr=PR_INFO, medium=False),
        OpSpec(0x5E, None, "PERSISTENT RESERVE IN",
               usage(0x5E, 0x1F, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0), pr.persistent_reserve_in,
               pr=PR_ALLOWED, medium=False),
        OpSpec(0x5F, None, "PERSISTENT RESERVE OUT",
               usage(0x5F, 0x1F, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0), pr.persistent_reserve_out,
               pr=PR_OUT, medium=False),
        OpSpec(0xA0, None, "REPORT LUNS", usage(0xA0, 0, 0xFF, 0, 0, 0, *F4, 0, 0), spc.report_luns,
               pr=PR_ALLOWED, spc2_allowed=True, ua_exempt=True, medium=False),
        OpSpec(0xA3, 0x0A, "REPORT TARGET PORT GROUPS",
               usage(0xA3, 0x3F, 0, 0, 0, 0, *F4, 0, 0, sa=0x0A), spc.report_target_port_groups,
               pr=PR_ALLOWED, spc2_allowed=True, medium=False),
        OpSpec(0xA3, 0x0C, "REPORT SUPPORTED OPERATION CODES",
               usage(0xA3, 0x1F, 0x87, 0xFF, 0xFF, 0xFF, *F4, 0, 0, sa=0x0C),
               spc.report_supported_opcodes, pr=PR_INFO, medium=False),
    ]


def _sbc_specs() -> list[OpSpec]:
    rw10 = (0x1A, *F4, 0x3F, 0xFF, 0xFF, 0)
    rw12 = (0x1A, *F4, *F4, 0x3F, 0)
    rw16 = (0x1A, *F8, *F4, 0x3F, 0)
    v10 = (0x16, *F4, 0x3F, 0xFF, 0xFF, 0)
    v12 = (0x16, *F4, *F4, 0x3F, 0)
    v16 = (0x16, *F8, *F4, 0x3F, 0)
    return [
        OpSpec(0x08, None, "READ(6)", usage(0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0), sbc.read6, READ, PR_READ),
        OpSpec(0x0A, None, "WRITE(6)", usage(0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0), sbc.write6, WRITE),
        OpSpec(0x1B, None, "START STOP UNIT", usage(0x1B, 0x01, 0, 0, 0x01, 0), spc.start_stop_unit,
               pr=PR_ALLOWED),
        OpSpec(0x25, None, "READ CAPACITY(10)", usage(0x25, 0, *F4, 0, 0, 0x01, 0), sbc.read_capacity10,
               pr=PR_ALLOWED),
        OpSpec(0x28, None, "READ(10)", usage(0x28, *rw10), sbc.read10, READ, PR_READ),
        OpSpec(0x2A, None, "WRITE(10)", usage(0x2A, *rw10), sbc.write10, WRITE),
        OpSpec(0x2E, None, "WRITE AND VERIFY(10)", usage(0x2E, *v10), sbc.write_verify10, WRITE),
        OpSpec(0x2F, None, "VERIFY(10)", usage(0x2F, *v10), sbc.verify10, READ, PR_READ),
        OpSpec(0x34, None, "PRE-FETCH(10)", usage(0x34, 0x02, *F4, 0x3F, 0xFF, 0xFF, 0), sbc.prefetch10,
               pr=PR_READ),
        OpSpec(0x35, None, "SYNCHRONIZE CACHE(10)", usage(0x35, 0x06, *F4, 0x3F, 0xFF, 0xFF, 0),
               sbc.synchronize_cache10),
        OpSpec(0x37, None, "READ DEFECT DATA(10)", usage(0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0),
               sbc.read_defect_data10, pr=PR_READ),
        OpSpec(0x41, None, "WRITE SAME(10)", usage(0x41, 0x08, *F4, 0x3F, 0xFF, 0xFF, 0),
               sbc_vaai.write_same10, WRITE),
        OpSpec(0x42, None, "UNMAP", usage(0x42, 0, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0), sbc_vaai.unmap,
               WRITE),
        OpSpec(0x88, None, "READ(16)", usage(0x88, *rw16), sbc.read16, READ, PR_READ),
        OpSpec(0x89, None, "COMPARE AND WRITE", usage(0x89, 0x1A, *F8, 0, 0, 0, 0xFF, 0x3F, 0),
               sbc_vaai.compare_and_write, WRITE),
        OpSpec(0x8A, None, "WRITE(16)", usage(0x8A, *rw16), sbc.write16, WRITE),
        OpSpec(0x8E, None, "WRITE AND VERIFY(16)", usage(0x8E, *v16), sbc.write_verify16, WRITE),
        OpSpec(0x8F, None, "VERIFY(16)", usage(0x8F, *v16), sbc.verify16, READ, PR_READ),
        OpSpec(0x90, None, "PRE-FETCH(16)", usage(0x90, 0x02, *F8, *F4, 0x3F, 0), sbc.prefetch16,
               pr=PR_READ),
        OpSpec(0x91, None, "SYNCHRONIZE CACHE(16)", usage(0x91, 0x06, *F8, *F4, 0x3F, 0),
               sbc.synchronize_cache16),
        OpSpec(0x93, None, "WRITE SAME(16)", usage(0x93, 0x09, *F8, *F4, 0x3F, 0),
               sbc_vaai.write_same16, WRITE),
        OpSpec(0x9E, 0x10, "READ CAPACITY(16)", usage(0x9E, 0x1F, *F8, *F4, 0x01, 0, sa=0x10),
               sbc.read_capacity16, pr=PR_ALLOWED),
        OpSpec(0x9E, 0x12, "GET LBA STATUS", usage(0x9E, 0x1F, *F8, *F4, 0, 0, sa=0x12),
               sbc_vaai.get_lba_status, pr=PR_READ),
        OpSpec(0xA8, None, "READ(12)", usage(0xA8, *rw12), sbc.read12, READ, PR_READ),
        OpSpec(0xAA, None, "WRITE(12)", usage(0xAA, *rw12), sbc.write12, WRITE),
        OpSpec(0xAE, None, "WRITE AND VERIFY(12)", usage(0xAE, *v12), sbc.write_verify12, WRITE),
        OpSpec(0xAF, None, "VERIFY(12)", usage(0xAF, *v12), sbc.verify12, READ, PR_READ),
        OpSpec(0xB7, None, "READ DEFECT DATA(12)", usage(0xB7, 0x1F, 0, 0, 0, 0, *F4, 0, 0),
               sbc.read_defect_data12, pr=PR_READ),
    ]


def _optional_specs(disk: ScsiDisk) -> list[OpSpec]:
    specs = []
    if disk.config.xcopy and disk.registry is not None:
        specs += [
            OpSpec(0x83, 0x00, "EXTENDED COPY(LID1)",
                   usage(0x83, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, *F4, 0, 0, sa=0x00), xcopy.extended_copy,
                   WRITE, PR_WRITE),
            OpSpec(0x84, 0x00, "RECEIVE COPY STATUS(LID1)",
                   usage(0x84, 0x1F, 0xFF, 0, 0, 0, 0, 0, 0, 0, *F4, 0, 0, sa=0x00),
                   xcopy.receive_copy_results, OTHER, PR_READ, medium=False),
            OpSpec(0x84, 0x03, "RECEIVE COPY OPERATING PARAMETERS",
                   usage(0x84, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, *F4, 0, 0, sa=0x03),
                   xcopy.receive_copy_results, OTHER, PR_READ, medium=False),
        ]
    if disk.alua.explicit and disk.alua.stpg is not None:
        specs.append(OpSpec(0xA4, 0x0A, "SET TARGET PORT GROUPS",
                            usage(0xA4, 0x1F, 0, 0, 0, 0, *F4, 0, 0, sa=0x0A), spc.set_target_port_groups,
                            pr=PR_WRITE, medium=False))
    return specs


def build_table(disk: ScsiDisk) -> OpTable:
    return OpTable(_spc_specs() + _sbc_specs() + _optional_specs(disk))
