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
  CHECK CONDITION itself.  The rule (libiscsi's iSCSIResiduals tests accept it; it is
  FCP-4's rule for FCP_DL mismatches): EDTL >= CDB length -> write the CDB length, GOOD;
  EDTL < CDB length and a multiple of the block size (0 included) -> write only the
  blocks received, GOOD; otherwise CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN
  COMMAND INFORMATION UNIT (05/0E/03) and write nothing.  COMPARE AND WRITE and WRITE
  SAME refuse any mismatch with 05/0E/03.  In every case ``transfer_length`` is set (CDB
  length in bytes), also with CHECK CONDITION, so the transport reports the residual.
* Aborts: after ``abort_task`` returned True, or after ``abort_task_set`` / ``lun_reset``,
  the aborted commands' ``execute`` returns TASK ABORTED once their in-flight I/O has
  finished; the transport answers the task management request only after that (so no
  aborted write lands after the TMF response) and sends no response for the tasks the
  requesting nexus aborted.  Other nexuses' aborted tasks get TASK ABORTED.
* Session end: the transport calls ``LunTable.nexus_lost(nexus)`` whenever an I_T nexus
  ends (logout, connection loss at ERL 0, reinstatement) -- also after it dropped a
  connection because a result said ``drop_connection``.
* Lock moves are invisible here: a write waits while its gateway obtains the exclusive lock
  (handed over by the holder, or taken by fencing an unresponsive one) and is BUSY only if
  the lock does not come within ``ExclusiveLockPolicy.write_wait``.  A write refused
  because the gateway was fenced is BUSY (never retried by the device); see
  ``ScsiResult.drop_connection`` for the sessions that were open at the fence.
* Resets: LOGICAL UNIT RESET and TARGET RESET reach every I_T nexus of the unit, on every
  gateway, the requesting one included (BUS DEVICE RESET FUNCTION OCCURRED); the transport
  awaits ``settle()`` before answering the TMF so that holds when the initiator hears of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol


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


class Nexus(NamedTuple):
    """An I_T nexus: who sent a command, through which target port.

    ``initiator_port`` is the SCSI initiator port name ``<iqn>,i,0x<isid>`` (unique
    per session); ``initiator_name`` is the bare IQN (what ACLs and reservations of
    type "all registrants" look at); ``target_port`` is ``<target iqn>,t,0x<tpgt>``;
    ``relative_port`` is the relative target port identifier reported in VPD 0x83
    and RTPG (the TPG tag of the portal group, stable cluster-wide).

    A named tuple: it is hashed several times per command (task set, unit attentions,
    the LUN table), and a tuple hashes and compares in C.
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
    # Do not answer: drop the connection (ERL 0 recovery), with every command still queued
    # on it.  Set for a write from a session that was already open when this gateway found
    # itself fenced (another gateway broke its exclusive lock because it did not answer in
    # time): the write may be stale (its initiator may have given up on it and written
    # through another path), and more of the session's commands may still be queued in the
    # socket.  It was not executed; the initiator logs in again and re-issues what it still
    # wants done.  (A write the cluster refused because of the fence is answered BUSY.)
    drop_connection: bool = False

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

    def nexus_lost(self, nexus: Nexus) -> None:
        """The I_T nexus ended (logout, connection loss, session reinstatement):
        abort its tasks, release its SPC-2 reservation, drop its unit attentions
        and held copy results.  Persistent reservations survive."""
        ...

    async def settle(self) -> None:
        """Wait until what ``lun_reset`` and ``nexus_lost`` started has reached every
        gateway serving the unit (reservation release, unit attentions, aborts there).
        The transport answers LOGICAL UNIT RESET / TARGET RESET after this.  Optional:
        a transport calls it only when the unit has it."""
        ...


# Commands answered for a LUN with nothing mapped (SPC-4 4.6.4).
_INQUIRY, _REQUEST_SENSE, _REPORT_LUNS = 0x12, 0x03, 0xA0


@dataclass
class LunTable:
    """What one I_T nexus sees: LUN id -> logical unit.

    The transport asks the table to run every command, so REPORT LUNS and commands
    to unmapped LUNs are answered the same way for every transport.  Replace the
    mapping with :meth:`set_luns` (not by assigning ``luns``) so every nexus that
    used the table gets REPORTED LUNS DATA HAS CHANGED.  One table may be shared
    by several nexuses (e.g. per ACL) or be per nexus.
    """

    luns: dict[int, LogicalUnit] = field(default_factory=dict)
    _seen: set[Nexus] = field(default_factory=set, init=False, repr=False)
    _luns_changed: set[Nexus] = field(default_factory=set, init=False, repr=False)

    def lookup(self, lun: int) -> LogicalUnit | None:
        """The logical unit behind a LUN, for task management functions."""
        return self.luns.get(lun)

    def set_luns(self, luns: dict[int, LogicalUnit]) -> None:
        """Change the mapping; nexuses that used the table get unit attention 3F/0E."""
        if set(luns.items()) != set(self.luns.items()):
            self._luns_changed |= self._seen
        self.luns = dict(luns)

    def plain_unit(self, cmd: ScsiCommand) -> LogicalUnit | None:
        """The unit that runs ``cmd`` when the table has nothing to add (no REPORTED LUNS
        DATA HAS CHANGED pending, not REPORT LUNS, a mapped LUN); None otherwise.  Lets a
        wrapper of :meth:`execute` call the unit directly (one coroutine less per command)."""
        self._seen.add(cmd.nexus)
        if self._luns_changed:
            return None
        cdb = cmd.cdb
        if not cdb or cdb[0] == _REPORT_LUNS:
            return None
        return self.luns.get(cmd.lun)

    async def execute(self, cmd: ScsiCommand) -> ScsiResult:
        cdb = cmd.cdb
        opcode = cdb[0] if cdb else -1
        nexus = cmd.nexus
        self._seen.add(nexus)
        if nexus in self._luns_changed and opcode not in (_INQUIRY, _REQUEST_SENSE, _REPORT_LUNS):
            self._luns_changed.discard(nexus)
            return ScsiResult(status=Status.CHECK_CONDITION,
                              sense=sense.build_sense(sense.REPORTED_LUNS_DATA_HAS_CHANGED))
        try:
            if opcode == _REPORT_LUNS:
                self._luns_changed.discard(nexus)
                if len(cdb) < 12:
                    raise sense.invalid_cdb(len(cdb))
                return ScsiResult(data=spc.report_luns_data(cdb, self.luns))
            lu = self.luns.get(cmd.lun)
            if lu is not None:
                return await lu.execute(cmd)
            if opcode == _INQUIRY and len(cdb) >= 6:
                if cdb[1] & 0x01:
                    raise sense.CheckCondition(sense.LOGICAL_UNIT_NOT_SUPPORTED)
                return ScsiResult(data=spc.unmapped_inquiry()[:(cdb[3] << 8) | cdb[4]])
            if opcode == _REQUEST_SENSE and len(cdb) >= 6:
                return ScsiResult(data=spc.sense_data(sense.LOGICAL_UNIT_NOT_SUPPORTED, cdb))
            raise sense.CheckCondition(sense.LOGICAL_UNIT_NOT_SUPPORTED)
        except sense.CheckCondition as e:
            return ScsiResult(status=Status.CHECK_CONDITION, sense=e.sense())

    def nexus_lost(self, nexus: Nexus) -> None:
        """Tell every mapped logical unit that ``nexus`` is gone."""
        self._seen.discard(nexus)
        self._luns_changed.discard(nexus)
        for lu in set(self.luns.values()):
            lu.nexus_lost(nexus)

    def reset(self, nexus: Nexus) -> None:
        """TARGET WARM/COLD RESET as seen through this table: reset every mapped unit."""
        for lu in set(self.luns.values()):
            lu.lun_reset(nexus)


# The SCSI layer answers for unmapped LUNs; imported last because it imports this module.
from . import sense, spc  # noqa: E402
