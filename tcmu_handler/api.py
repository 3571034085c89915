"""The contract between a transport (iSCSI portal, TCMU ring) and the SCSI device layer.

A transport parses its wire format into a :class:`ScsiCommand`, hands it to the
:class:`LunTable` of the I_T nexus it arrived on, and turns the returned
:class:`ScsiResult` back into its wire format.  Nothing in here knows about iSCSI
PDUs or sockets, and nothing in a transport knows about CDB layouts.

Data movement rules:

* Data-Out: the transport collects *all* data the initiator sends for a command
  (immediate, unsolicited and solicited) before calling ``execute``; ``data_out``
  holds those bytes (``len(data_out) == edtl`` for a well-behaved initiator).
* Data-In: the device returns the bytes the command produces (e.g. a full INQUIRY
  page truncated to the CDB's allocation length).  The transport sends at most
  ``edtl`` of them.
* Residuals: the transport compares ``edtl`` with ``result.transfer_length`` (the
  number of bytes the *CDB* asks to move; for reads it defaults to the length of
  the data) and reports underflow/overflow.  A device that cannot accept a
  mismatch (e.g. a WRITE whose EDTL is smaller than the CDB's length) answers
  CHECK CONDITION itself.  The rule libiscsi's iSCSIResiduals tests accept (the FCP-4
  rule for FCP_DL mismatches they quote): EDTL >= CDB length -> write the CDB length,
  GOOD; EDTL < CDB length and a multiple of the block size -> write only EDTL bytes, GOOD; otherwise CHECK
  CONDITION, ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT (05/0E/03)
  and write nothing.  In every case set ``transfer_length`` (CDB length in bytes),
  also with CHECK CONDITION, so the transport reports the residual.
* Aborts: once ``abort_task`` returned True, or after ``abort_task_set`` /
  ``lun_reset``, the aborted commands' ``execute`` may end any way (a result, TASK
  ABORTED, or ``asyncio.CancelledError`` -- the transport may cancel it); the transport
  sends no response for them to the nexus that asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol


class Status(IntEnum):
    """SAM status codes."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class TaskAttr(IntEnum):
    """Task attributes as carried in the iSCSI SCSI Command PDU (ATTR field)."""

    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4


class DataDirection(IntEnum):
    NONE = 0
    READ = 1   # Data-In (device -> initiator)
    WRITE = 2  # Data-Out (initiator -> device)
    BIDI = 3


@dataclass(frozen=True, slots=True)
class Nexus:
    """An I_T nexus: who sent a command, through which target port.

    ``initiator_port`` is the SCSI initiator port name ``<iqn>,i,0x<isid>`` (unique
    per session); ``initiator_name`` is the bare IQN (what ACLs and reservations of
    type "all registrants" look at); ``target_port`` is ``<target iqn>,t,0x<tpgt>``;
    ``relative_port`` is the relative target port identifier reported in VPD 0x83
    and RTPG (the TPG tag of the portal group, stable cluster-wide).
    """

    initiator_name: str
    initiator_port: str
    target_name: str
    target_port: str
    tpgt: int
    relative_port: int


@dataclass(slots=True)
class ScsiCommand:
    cdb: bytes
    lun: int
    nexus: Nexus
    task_tag: int = 0
    attr: TaskAttr = TaskAttr.SIMPLE
    direction: DataDirection = DataDirection.NONE
    # Expected data transfer length from the transport (for BIDI: the write length).
    edtl: int = 0
    # Expected bidirectional read length (BIDI only).
    read_edtl: int = 0
    data_out: memoryview | bytes | None = None


@dataclass(slots=True)
class ScsiResult:
    status: int = Status.GOOD
    data: memoryview | bytes | bytearray | None = None
    sense: bytes | None = None
    # Bytes the CDB asked to move; None = len(data) for reads, 0 for no-data commands.
    transfer_length: int | None = None

    @property
    def data_length(self) -> int:
        return 0 if self.data is None else len(self.data)


GOOD = ScsiResult()


class LogicalUnit(Protocol):
    """A SCSI logical unit (a disk), shared by every nexus that maps it."""

    async def execute(self, cmd: ScsiCommand) -> ScsiResult: ...

    def abort_task(self, nexus: Nexus, task_tag: int) -> bool:
        """Abort one task of a nexus; True if it was found (and will not complete)."""
        ...

    def abort_task_set(self, nexus: Nexus) -> int:
        """ABORT TASK SET / CLEAR TASK SET for one nexus; returns how many were aborted."""
        ...

    def lun_reset(self, nexus: Nexus) -> None:
        """LOGICAL UNIT RESET: abort every task of every nexus, clear reservations
        (SPC-2) and set a POWER ON, RESET unit attention for the other nexuses."""
        ...


def _fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    return bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])


@dataclass
class LunTable:
    """What one I_T nexus sees: LUN id -> logical unit.

    The transport asks the table to run every command, so REPORT LUNS and commands
    to unmapped LUNs are answered the same way for every transport.
    """

    luns: dict[int, LogicalUnit] = field(default_factory=dict)

    def get(self, lun: int) -> LogicalUnit | None:
        """The logical unit mapped at ``lun`` (for task management), or None."""
        return self.luns.get(lun)

    def update(self, luns: dict[int, LogicalUnit]) -> None:
        """Replace the mapping while sessions use it (the SCSI layer's implementation
        raises REPORTED LUNS DATA HAS CHANGED for the nexuses that see the table)."""
        self.luns = dict(luns)

    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        """Run one command of this nexus: REPORT LUNS and unmapped LUNs are answered
        here, everything else by the logical unit."""
        lu = self.luns.get(cmd.lun)
        if cmd.cdb[0] == 0xA0:  # REPORT LUNS (any LUN, SPC-4 6.33)
            return self._report_luns(cmd.cdb)
        if lu is not None:
            return await lu.execute(cmd)
        if cmd.cdb[0] == 0x12 and not cmd.cdb[1] & 1:
            # INQUIRY to an unmapped LUN: peripheral qualifier 3, device type 1Fh.
            alloc = int.from_bytes(cmd.cdb[3:5], "big")
            data = bytes([0x7F, 0, 5, 0x12, 31]) + bytes(31)
            return ScsiResult(data=data[:alloc])
        if cmd.cdb[0] == 0x03:  # REQUEST SENSE: report why the LUN cannot be used
            alloc = cmd.cdb[4]
            return ScsiResult(data=_fixed_sense(0x05, 0x25, 0x00)[:alloc])
        return ScsiResult(status=Status.CHECK_CONDITION, sense=_fixed_sense(0x05, 0x25, 0x00))

    def _report_luns(self, cdb: bytes) -> ScsiResult:
        if len(cdb) < 12:
            return ScsiResult(status=Status.CHECK_CONDITION, sense=_fixed_sense(0x05, 0x24, 0x00))
        alloc = int.from_bytes(cdb[6:10], "big")
        body = bytearray()
        for lun in sorted(self.luns):
            first = lun if lun < 256 else 0x4000 | lun
            body += first.to_bytes(2, "big") + bytes(6)
        data = len(body).to_bytes(4, "big") + bytes(4) + bytes(body)
        return ScsiResult(data=data[:alloc], transfer_length=min(alloc, len(data)))
