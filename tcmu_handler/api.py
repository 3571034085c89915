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
  CHECK CONDITION itself.
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


@dataclass
class LunTable:
    """What one I_T nexus sees: LUN id -> logical unit.

    The transport asks the table to run every command, so REPORT LUNS and commands
    to unmapped LUNs are answered the same way for every transport.
    """

    luns: dict[int, LogicalUnit] = field(default_factory=dict)
